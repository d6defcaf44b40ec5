"""COCO mAP of any backend on a COCO-format folder (pycocotools), with an optional floor for CI gates.

Labels are COCO category ids (the DETR convention the checkpoints follow), so detections map to `category_id` as
they are. Every top-k detection is kept (no score threshold), as the reference evaluation does.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
from tqdm import tqdm

from edge_lwdetr.backends import Backend
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.predict import detect

METRICS = ("mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large")


def find_annotations(data: Path) -> Path:
    for candidate in (data / "annotations.json", *sorted((data / "annotations").glob("*.json")), *sorted(data.glob("*.json"))):
        if candidate.is_file():
            return candidate
    raise EdgeLwdetrError(f"{data} has no COCO annotations: expected annotations.json or annotations/*.json")


def evaluate(backend: Backend, data: Path, max_images: int | None = None) -> dict:
    """COCO bbox metrics of `backend` on the images of `data`."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not data.is_dir():
        raise EdgeLwdetrError(f"--data {data} is not a folder (it should hold the images and annotations.json)")
    annotations = find_annotations(data)
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            ground_truth = COCO(str(annotations))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise EdgeLwdetrError(f"{annotations} is not COCO-format JSON ({error})") from None
    image_ids = sorted(ground_truth.getImgIds())[:max_images]
    if not image_ids:
        raise EdgeLwdetrError(f"{annotations} lists no images")
    results = []
    for image_id in tqdm(image_ids, desc="evaluating", unit="img"):
        name = ground_truth.loadImgs(image_id)[0]["file_name"]
        path = next((p for p in (data / name, data / "images" / name) if p.is_file()), None)
        image = cv2.imread(str(path)) if path else None
        if image is None:
            raise EdgeLwdetrError(f"image {name} of {annotations} is missing or unreadable under {data}")
        for det in detect(backend, image, conf=0.0):
            x1, y1, x2, y2 = det.box
            results.append({"image_id": image_id, "category_id": det.label, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": det.score})

    metrics = dict.fromkeys(METRICS, 0.0)
    known = set(ground_truth.getCatIds())
    results = [r for r in results if r["category_id"] in known]
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
            evaluation.params.imgIds = image_ids
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        metrics = {name: max(float(value), 0.0) for name, value in zip(METRICS, evaluation.stats)}
    return {"images": len(image_ids), "annotations": str(annotations), **metrics}
