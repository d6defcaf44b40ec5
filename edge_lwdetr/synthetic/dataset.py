"""COCO-format datasets of synthetic scenes: image `index` of split seed `seed` is always the same scene."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.outputs import atomic_folder
from edge_lwdetr.synthetic.shapes import CATEGORIES, Scene, render, sample_scene
from edge_lwdetr.progress import progress_bar


def scene_at(seed: int, index: int) -> Scene:
    return sample_scene(np.random.default_rng([seed, index]))


def coco_annotations(scene: Scene, width: int, height: int, image_id: int, first_id: int) -> list[dict]:
    annotations = []
    for offset, shape in enumerate(scene.shapes):
        x1, y1, x2, y2 = shape.box()
        w, h = (x2 - x1) * width, (y2 - y1) * height
        annotations.append({
            "id": first_id + offset, "image_id": image_id, "category_id": shape.category,
            "bbox": [round(x1 * width, 3), round(y1 * height, 3), round(w, 3), round(h, 3)],
            "area": round(w * h, 3), "iscrowd": 0,
        })  # fmt: skip
    return annotations


def write_coco(folder: Path, count: int, seed: int, size: int = 256) -> Path:
    """`count` PNG images of `size` px and their annotations.json under `folder`; returns the annotations path.

    The dataset is written into a temporary folder beside `folder` and renamed into place when complete, so an
    error or interruption (a full disk, Ctrl-C) leaves what was there before, never half a dataset.
    """
    if count < 1 or size < 32:
        raise EdgeLwdetrError(f"a synthetic dataset needs at least 1 image of at least 32 px (got {count}, {size})")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(folder) as partial:
        (partial / "images").mkdir()
        images, annotations = [], []
        for index in progress_bar(f"writing {folder}", "img", iterable=range(count)):
            scene = scene_at(seed, index)
            name = f"images/{index:06d}.png"
            ok, png = cv2.imencode(".png", render(scene, size))
            (partial / name).write_bytes(png.tobytes())
            images.append({"id": index + 1, "file_name": name, "width": size, "height": size})
            annotations += coco_annotations(scene, size, size, index + 1, len(annotations) + 1)
        categories = [{"id": i, "name": name, "supercategory": "shape"} for i, name in CATEGORIES.items()]
        document = {"images": images, "annotations": annotations, "categories": categories}
        (partial / "annotations.json").write_text(json.dumps(document))
    return folder / "annotations.json"
