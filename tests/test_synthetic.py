"""The synthetic shapes generator: deterministic, exact boxes, valid COCO, the promised clutter and overlap limits."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.synthetic.dataset import scene_at, write_coco
from edge_lwdetr.synthetic.shapes import CATEGORIES, MAX_COVERED, MAX_SIZE, MIN_SIZE, Scene, render
from edge_lwdetr.synthetic.video import write_video


def test_same_seed_same_files_other_seed_other_scenes(tmp_path):
    first, again, other = (write_coco(tmp_path / name, 4, seed) for name, seed in (("a", 3), ("b", 3), ("c", 4)))
    assert first.read_bytes() == again.read_bytes()
    for index in range(4):
        name = f"images/{index:06d}.png"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert json.loads(first.read_text())["annotations"] != json.loads(other.read_text())["annotations"]


@pytest.mark.parametrize("index", range(12))
def test_box_is_the_extent_of_the_drawn_pixels(index):
    """Each shape drawn alone over its background covers the pixels of its box, to about a pixel.

    A pixel counts as covered when it moved more than half-way from the background to the shape's colour (edge
    pixels are anti-aliased blends).
    """
    scene = scene_at(5, index)
    size = 512
    background = render(Scene((), scene.background_seed), size).astype(int)
    for shape in scene.shapes:
        image = render(Scene((shape,), scene.background_seed), size).astype(int)
        contrast = np.abs(np.array(shape.colour) - background).sum(2)
        ys, xs = np.nonzero(np.abs(image - background).sum(2) > 0.5 * contrast)
        drawn = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        assert np.abs(drawn - np.array(shape.box()) * size).max() <= 1.25, (CATEGORIES[shape.category], drawn)


def test_coco_file_sizes_classes_and_overlap(tmp_path):
    from pycocotools.coco import COCO

    path = write_coco(tmp_path / "data", 40, seed=2, size=192)
    coco = COCO(str(path))
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == sorted(CATEGORIES.values())
    per_image = [coco.getAnnIds(imgIds=i) for i in coco.getImgIds()]
    assert all(ids for ids in per_image) and max(map(len, per_image)) >= 5
    assert {a["category_id"] for a in coco.loadAnns(coco.getAnnIds())} == set(CATEGORIES)
    assert cv2.imread(str(tmp_path / "data" / coco.loadImgs(1)[0]["file_name"])).shape == (192, 192, 3)
    sides = []
    for ids in per_image:
        boxes = [a["bbox"] for a in coco.loadAnns(ids)]
        for i, (x, y, w, h) in enumerate(boxes):
            assert 0 <= x and 0 <= y and x + w <= 192.001 and y + h <= 192.001
            sides.append(max(w, h) / 192)
            for x2, y2, w2, h2 in boxes[:i]:
                inter = max(0, min(x + w, x2 + w2) - max(x, x2)) * max(0, min(y + h, y2 + h2) - max(y, y2))
                assert inter <= MAX_COVERED * min(w * h, w2 * h2) + 1e-3
    # Extents span the promised range (a rotated, stretched shape's box can exceed its nominal diameter a little).
    assert min(sides) < MIN_SIZE * 1.5 and max(sides) > MAX_SIZE * 0.8


def test_background_is_cluttered():
    """The background is not flat: lines and specks give edges that are none of the classes."""
    image = render(Scene((), 11), 256)
    edges = cv2.Canny(image, 50, 150)
    assert (edges > 0).mean() > 0.01


def test_video_frames(tmp_path):
    path = write_video(tmp_path / "demo.mp4", seconds=1.0, fps=10, size=128)
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 10 and frames[0].shape == (128, 128, 3)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1  # the shapes move
    with pytest.raises(EdgeLwdetrError, match=r"\.mp4 or \.avi"):
        write_video(tmp_path / "demo.gif")
