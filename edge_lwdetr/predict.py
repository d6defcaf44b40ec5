"""Detect objects in one image with any backend."""

from __future__ import annotations

import numpy as np

from edge_lwdetr.backends import Backend
from edge_lwdetr.processing import Detection, postprocess, to_model_input


def top_k(backend: Backend) -> int | None:
    """How many (query, class) pairs are kept before the score threshold: the original checkpoint's --num_select
    where the model carries it, else one per query (LW-DETR's evaluation)."""
    return getattr(backend, "num_select", None)


def detect(backend: Backend, image_bgr: np.ndarray, conf: float) -> list[Detection]:
    """Detections in one BGR image, in its own pixel coordinates, sorted by score."""
    batch = to_model_input(image_bgr, backend.image_size, backend.input_format)[None]
    logits, boxes = backend.infer(batch)
    return postprocess(logits[0], boxes[0], image_bgr.shape[:2], backend.id2label, conf, top_k(backend))
