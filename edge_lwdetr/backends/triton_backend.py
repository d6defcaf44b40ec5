"""A served model as a backend: `edge-lwdetr serve` (or a Triton repository's `lwdetr` model) at triton://... .

The server preprocesses, infers and postprocesses, so this backend takes frames, not tensors (`takes_frames`): the
runtime sends it the BGR frame and gets the detections back in the frame's pixels (`predict.detect` does the rest).
"""

from __future__ import annotations

import time

import numpy as np

from edge_lwdetr.processing import Detection


class TritonBackend:
    name = "triton"
    takes_frames = True

    def __init__(self, url: str, timeout: float = 60.0):
        from edge_lwdetr.serving.client import Client

        self.client = Client(url, timeout=timeout)
        info = self.client.info  # asked now: an absent server or model fails here, in one line, not on a frame
        self.id2label, self.image_size, self.variant = info.id2label, info.image_size, info.variant
        address = self.client.address
        self.device = f"{address.protocol} {address.host}:{address.port}/{address.model}"
        self.stage_ms: dict[str, float] = {}

    def detect(self, image_bgr: np.ndarray, conf: float) -> list[Detection]:
        start = time.perf_counter()
        detections = self.client.detect(image_bgr, conf)
        self.stage_ms = {"remote": (time.perf_counter() - start) * 1000}  # the round trip: send, serve, answer
        return detections

    def close(self) -> None:
        self.client.close()
