"""COCO mAP of any backend on a COCO-format folder (pycocotools), with an optional floor for CI gates.

Labels are COCO category ids (the DETR convention the checkpoints follow), so detections map to `category_id` as
they are. Every top-k detection is kept (no score threshold), as the reference evaluation does.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path

import cv2

from edge_lwdetr.backends import Backend
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.predict import detect
from edge_lwdetr.progress import progress_bar

METRICS = ("mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large")


def find_annotations(data: Path) -> Path:
    for candidate in (data / "annotations.json", *sorted((data / "annotations").glob("*.json")), *sorted(data.glob("*.json"))):
        if candidate.is_file():
            return candidate
    raise EdgeLwdetrError(f"{data} has no COCO annotations: expected annotations.json or annotations/*.json")


def _read_coco(annotations: Path):
    """pycocotools' COCO of `annotations`, or a one-line error saying what is wrong with the file."""
    from pycocotools.coco import COCO

    try:
        data = json.loads(annotations.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EdgeLwdetrError(f"{annotations} is not valid JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        found = type(data).__name__ if not isinstance(data, dict) else f"keys {sorted(data)[:6]}"
        raise EdgeLwdetrError(
            f"{annotations} is not COCO-format: expected an object with 'images', 'annotations' and 'categories' "
            f"lists, found {found}"
        )
    data.setdefault("annotations", [])
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            coco.createIndex()
        except (KeyError, TypeError) as error:
            raise EdgeLwdetrError(f"{annotations} is not COCO-format JSON (an entry lacks {error})") from None
    return coco


def evaluate(backend: Backend, data: Path, max_images: int | None = None, log=print) -> dict:
    """COCO bbox metrics of `backend` on the images of `data`; images that are missing or unreadable are skipped
    (counted in `skipped_images`, each named in a warning)."""
    from pycocotools.cocoeval import COCOeval

    if not data.is_dir():
        raise EdgeLwdetrError(f"--data {data} is not a folder (it should hold the images and annotations.json)")
    annotations = find_annotations(data)
    ground_truth = _read_coco(annotations)
    image_ids = sorted(ground_truth.getImgIds())[:max_images]
    if not image_ids:
        raise EdgeLwdetrError(f"{annotations} lists no images")
    known = set(ground_truth.getCatIds())
    labels = set(getattr(backend, "id2label", {}) or {})
    if known and labels and not known & labels:
        raise EdgeLwdetrError(
            f"the category ids of {annotations} ({_ids(known)}) match none of the model's labels ({_ids(labels)}): "
            "the annotations are for another label set; map them to the model's ids"
        )
    results, evaluated = [], []
    started = time.perf_counter()
    for image_id in progress_bar("evaluating", "img", iterable=image_ids):
        name = ground_truth.loadImgs(image_id)[0].get("file_name", "")
        path = next((p for p in (data / name, data / "images" / name) if name and p.is_file()), None)
        image = cv2.imread(str(path)) if path else None
        if image is None:
            log(f"edge-lwdetr: warning: skipping image {name!r} of {annotations}: missing or unreadable under {data}")
            continue
        evaluated.append(image_id)
        for det in detect(backend, image, conf=0.0):
            x1, y1, x2, y2 = det.box
            results.append({"image_id": image_id, "category_id": det.label, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": det.score})
    if not evaluated:
        raise EdgeLwdetrError(f"none of the {len(image_ids)} images of {annotations} could be read under {data}")
    seconds = time.perf_counter() - started

    metrics = dict.fromkeys(METRICS + ("AR100",), 0.0)
    per_class = {ground_truth.cats[c].get("name", str(c)): 0.0 for c in sorted(known)}
    results = [r for r in results if r["category_id"] in known]
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
            evaluation.params.imgIds = evaluated
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        metrics = {name: max(float(value), 0.0) for name, value in zip(METRICS, evaluation.stats)}
        metrics["AR100"] = max(float(evaluation.stats[8]), 0.0)
        # precision[T, R, K, A, M]: all IoU thresholds and recall points, class k, all areas, 100 detections.
        precision = evaluation.eval["precision"]
        for k, category in enumerate(evaluation.params.catIds):
            values = precision[:, :, k, 0, -1]
            per_class[ground_truth.cats[category].get("name", str(category))] = (
                float(values[values > -1].mean()) if (values > -1).any() else 0.0
            )
    return {
        "images": len(evaluated),
        "images_per_s": len(evaluated) / seconds if seconds > 0 else 0.0,
        "per_class_ap": per_class,
        "skipped_images": len(image_ids) - len(evaluated),
        "annotations": str(annotations),
        **metrics,
    }


def _ids(ids: set[int]) -> str:
    ordered = sorted(ids)
    return ", ".join(map(str, ordered[:8])) + (", ..." if len(ordered) > 8 else "")
