"""The served model's tensors, shared by the server and the client so the two cannot drift apart.

A request carries one image per batch row: `image` (BYTES [1]) holds an encoded file (JPEG, PNG, ...) or, when the
optional `size` (INT32 [2]: height, width) is sent, the raw BGR pixels of a height x width x 3 uint8 frame. The
response holds the detections in the source image's pixels, best score first, padded to the longest row of the
request; `count` says how many of each row are real.
"""

from __future__ import annotations

import numpy as np

MODEL_NAME = "lwdetr"
IMAGE, SIZE = "image", "size"
BOXES, SCORES, LABELS, NAMES, COUNT = "boxes", "scores", "labels", "names", "count"
OUTPUT_NAMES = (BOXES, SCORES, LABELS, NAMES, COUNT)
# The largest request row accepted: a 8K RGB frame. Larger bytes are refused before decoding (an encoded file can
# still expand to more pixels; those are refused after decoding by MAX_PIXELS).
MAX_IMAGE_BYTES = 7680 * 4320 * 3
MAX_PIXELS = 7680 * 4320


def raw_frame(data: bytes, size: np.ndarray) -> np.ndarray:
    """The height x width x 3 uint8 frame `data` holds, or ValueError naming what does not fit."""
    height, width = (int(v) for v in np.asarray(size).reshape(-1)[:2])
    if height <= 0 or width <= 0 or height * width > MAX_PIXELS:
        raise ValueError(f"size {height}x{width} is not a frame size in 1..{MAX_PIXELS} pixels")
    if len(data) != height * width * 3:
        raise ValueError(f"a raw {height}x{width} BGR frame is {height * width * 3} bytes, the request sent {len(data)}")
    return np.frombuffer(data, np.uint8).reshape(height, width, 3)
