"""Detect objects in one image with any backend."""

from __future__ import annotations

import time

import numpy as np

from edge_lwdetr.backends import Backend, FrameBackend
from edge_lwdetr.processing import Detection, postprocess, to_model_input


def top_k(backend: Backend) -> int | None:
    """How many (query, class) pairs are kept before the score threshold: the original checkpoint's --num_select
    where the model carries it, else one per query (LW-DETR's evaluation)."""
    return getattr(backend, "num_select", None)


def model_input(backend: Backend, image_bgr: np.ndarray) -> np.ndarray:
    """One BGR frame as `backend`'s model takes it (one row of a batch). Every path that feeds a model frames calls
    this one function, so the input a model asks for is decided in one place."""
    return to_model_input(image_bgr, backend.image_size, backend.input_format)


def detect(
    backend: Backend | FrameBackend, image_bgr: np.ndarray, conf: float, timings: dict[str, float] | None = None
) -> list[Detection]:
    """Detections in one BGR image, in its own pixel coordinates, sorted by score. `timings`, when given, receives
    the stages' times in ms: preprocess, the backend's own stages, postprocess (a served model: its round trip)."""
    timings = {} if timings is None else timings
    if getattr(backend, "takes_frames", False):  # a served model: its server pre- and postprocesses
        detections = backend.detect(image_bgr, conf)
        timings.update(backend.stage_ms)
        return detections
    begin = time.perf_counter()
    batch = model_input(backend, image_bgr)[None]
    timings["preprocess"] = (time.perf_counter() - begin) * 1000
    logits, boxes = backend.infer(batch)
    timings.update(backend.stage_ms)
    begin = time.perf_counter()
    detections = postprocess(logits[0], boxes[0], image_bgr.shape[:2], backend.id2label, conf, top_k(backend))
    timings["postprocess"] = (time.perf_counter() - begin) * 1000
    return detections
