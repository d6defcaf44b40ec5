"""Pre/post-processing against transformers' DeformableDetr image processor (the reference's PIL pipeline)."""

import cv2
import numpy as np
import pytest
import torch

from edge_lwdetr.labels import default_id2label
from edge_lwdetr.processing import normalize, postprocess, to_model_input


@pytest.fixture(scope="module")
def processor():
    from transformers import DeformableDetrImageProcessorPil

    return DeformableDetrImageProcessorPil(size={"height": 640, "width": 640})


def scene(height, width, seed=0):
    """Gradients, filled rectangles and one-pixel lines (which alias when shrunk without a filter)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) % 256], -1).astype(np.uint8)
    for _ in range(30):
        x, y = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 60))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(image, (x, y), (x + int(rng.integers(10, 200)), y + int(rng.integers(10, 200))), colour, -1)
    image[::7] = 255
    return image


@pytest.mark.parametrize("height, width, tolerance", [(1080, 1920, 0.08), (240, 320, 0.01)])
def test_preprocessing_close_to_reference(processor, height, width, tolerance):
    image = scene(height, width)
    reference = processor(images=cv2.cvtColor(image, cv2.COLOR_BGR2RGB), return_tensors="np")["pixel_values"][0]
    ours = normalize(to_model_input(image, 640)[None])[0]
    assert ours.shape == reference.shape == (3, 640, 640)
    assert np.abs(ours - reference).mean() < tolerance


# Distances to PIL's bilinear resize (0-255 levels) on `scene`, measured: (max, mean) for one OpenCV call with
# INTER_AREA whenever an axis shrinks, the former method, and for the per-axis resize. Lines every 7 rows make a
# vertical shrink differ most: PIL's shrinking filter is a triangle, wider than OpenCV's area box. A growing axis
# matches PIL to the level (INTER_LINEAR_EXACT).
PIL_DISTANCES = {
    "shrink 1920x1080": ((1080, 1920), (53, 3.64), (53, 3.64)),
    "shrink 1280x720": ((720, 1280), (51, 1.41), (51, 1.31)),
    "grow 320x240": ((240, 320), (1, 0.058), (0, 0.0)),
    "mixed 1280x480": ((480, 1280), (61, 3.26), (47, 0.17)),
    "mixed 800x600": ((600, 800), (27, 0.69), (24, 0.034)),
    "mixed 480x1280": ((1280, 480), (82, 9.08), (63, 9.03)),
}


@pytest.mark.parametrize("case", list(PIL_DISTANCES))
def test_resize_close_to_pil_bilinear(case):
    from PIL import Image

    (height, width), _, (max_levels, mean_levels) = PIL_DISTANCES[case]
    image = scene(height, width)
    reference = np.asarray(Image.fromarray(image).resize((640, 640), Image.BILINEAR)).astype(int)
    ours = np.rint(to_model_input(image, 640) * 255).astype(int).transpose(1, 2, 0)[..., ::-1]  # back to BGR levels
    distance = np.abs(ours - reference)
    assert distance.max() <= max_levels and distance.mean() <= mean_levels * 1.05 + 0.005


@pytest.mark.parametrize("factor", [2, 3, 4])
@pytest.mark.parametrize("axis", ["width", "height"])
def test_whole_factor_shrink_is_the_area_average(factor, axis):
    """The faster shrink by a whole factor (1280 -> 640, 1920 -> 640) gives OpenCV's INTER_AREA, to one level."""
    from edge_lwdetr.processing import resize_like_pil

    image = scene(480 * (factor if axis == "height" else 1), 640 * (factor if axis == "width" else 1), seed=factor)
    ours = resize_like_pil(image, 640, 480)
    area = cv2.resize(image, (640, 480), interpolation=cv2.INTER_AREA)
    assert ours.shape == area.shape == (480, 640, 3)
    assert np.abs(ours.astype(int) - area).max() <= 1


def test_model_input_is_rgb_in_unit_range():
    image = np.zeros((50, 70, 3), np.uint8)
    image[..., 2] = 255  # pure red in BGR
    x = to_model_input(image, 64)
    assert x.dtype == np.float32 and x.shape == (3, 64, 64)
    assert np.allclose(x[0], 1.0) and np.allclose(x[1:], 0.0)


def test_postprocess_matches_transformers(processor):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 300, 91, generator=generator) * 3
    boxes = torch.rand(1, 300, 4, generator=generator) * 0.5 + 0.1
    from transformers.models.lw_detr.modeling_lw_detr import LwDetrObjectDetectionOutput

    reference = processor.post_process_object_detection(
        LwDetrObjectDetectionOutput(logits=logits, pred_boxes=boxes), threshold=0.3, target_sizes=[(480, 640)], top_k=300
    )[0]
    ours = postprocess(logits[0].numpy(), boxes[0].numpy(), (480, 640), default_id2label(91), conf=0.3, top_k=300)
    assert len(ours) == len(reference["scores"]) > 0
    np.testing.assert_allclose([d.score for d in ours], reference["scores"].numpy(), rtol=1e-6)
    assert [d.label for d in ours] == reference["labels"].tolist()
    np.testing.assert_allclose([d.box for d in ours], reference["boxes"].numpy(), atol=1e-3)


def test_postprocess_keeps_top_k_with_zero_conf():
    logits = np.random.default_rng(1).normal(size=(100, 91)).astype(np.float32)
    boxes = np.full((100, 4), 0.5, np.float32)
    detections = postprocess(logits, boxes, (100, 200), default_id2label(91), conf=0.0)
    assert len(detections) == 100  # k = the number of queries
    scores = [d.score for d in detections]
    assert scores == sorted(scores, reverse=True)
    assert detections[0].box == [50.0, 25.0, 150.0, 75.0]
