"""The served model's tensors and parameters, shared by the server, the repository and the client so they cannot
drift apart.

A request carries one image per batch row: `image` (BYTES [1]) holds an encoded file (JPEG, PNG, ...) or, when the
optional `size` (INT32 [2]: height, width) is sent, the raw BGR pixels of a height x width x 3 uint8 frame. The
response holds the detections in the source image's pixels, best score first, padded to the longest row of the
request; `count` says how many of each row are real. What the model is (every class id -> name, input size, variant)
is in its configuration's parameters (`GET /v2/models/NAME/config`), asked for once, not sent with every answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

MODEL_NAME = "lwdetr"
IMAGE, SIZE = "image", "size"
BOXES, SCORES, LABELS, COUNT = "boxes", "scores", "labels", "count"
OUTPUT_NAMES = (BOXES, SCORES, LABELS, COUNT)
ID2LABEL, IMAGE_SIZE, VARIANT = "id2label", "image_size", "variant"  # the model configuration's parameters
# The largest request row accepted: a 8K RGB frame. Larger bytes are refused before decoding (an encoded file can
# still expand to more pixels; those are refused after decoding by MAX_PIXELS).
MAX_IMAGE_BYTES = 7680 * 4320 * 3
MAX_PIXELS = 7680 * 4320


@dataclass(frozen=True)
class ModelInfo:
    """What a client knows of the served model without having it."""

    id2label: dict[int, str]
    image_size: int
    variant: str

    def parameters(self) -> dict[str, str]:
        """The model configuration's `parameters` (string values, as Triton's ModelParameter holds them)."""
        labels = json.dumps({str(k): v for k, v in sorted(self.id2label.items())})
        return {ID2LABEL: labels, IMAGE_SIZE: str(self.image_size), VARIANT: self.variant}

    @classmethod
    def from_parameters(cls, parameters: dict[str, str], where: str) -> ModelInfo:
        if ID2LABEL not in parameters:
            raise ValueError(f"the model at {where} has no '{ID2LABEL}' parameter: serve it with `edge-lwdetr serve` "
                             "or `edge-lwdetr export --format triton`")  # fmt: skip
        labels = json.loads(parameters[ID2LABEL])
        return cls({int(k): v for k, v in labels.items()}, int(parameters.get(IMAGE_SIZE) or 0),
                   parameters.get(VARIANT) or "custom")  # fmt: skip


def raw_frame(data: bytes, size: np.ndarray) -> np.ndarray:
    """The height x width x 3 uint8 frame `data` holds, or ValueError naming what does not fit."""
    height, width = (int(v) for v in np.asarray(size).reshape(-1)[:2])
    if height <= 0 or width <= 0 or height * width > MAX_PIXELS:
        raise ValueError(f"size {height}x{width} is not a frame size in 1..{MAX_PIXELS} pixels")
    if len(data) != height * width * 3:
        raise ValueError(f"a raw {height}x{width} BGR frame is {height * width * 3} bytes, the request sent {len(data)}")
    return np.frombuffer(data, np.uint8).reshape(height, width, 3)
