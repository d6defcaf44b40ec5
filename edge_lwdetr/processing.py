"""Pre- and post-processing as LW-DETR's reference does it, in NumPy and OpenCV only (no torch on the runtime path).

Pre: square resize to the model size without letterbox, then, for a `float` model, RGB, CHW, values in [0, 1]; a
`uint8` model (`export --input-format uint8`) takes the resized BGR frame as it is, and does the channel order,
layout and scaling inside its graph. The ImageNet normalisation belongs to the model (inside the exported graph;
`normalize` for PyTorch). Post: sigmoid, top-k over queries x classes,
boxes from normalised (cx, cy, w, h) to (x1, y1, x2, y2) in original image pixels, no NMS.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from edge_lwdetr.defaults import INPUT_FORMAT_NAMES

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}  # image files in folder sources
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
INPUT_FORMATS = dict(zip(INPUT_FORMAT_NAMES, (np.float32, np.uint8)))  # each input format's element type


@dataclass
class Detection:
    label: int
    name: str
    score: float
    box: list[float]  # x1, y1, x2, y2 in original image pixels
    track_id: int | None = None  # None: not tracking; with --track the object's id, -1 while on no track (tracking.py)

    def to_json(self) -> dict:
        record = asdict(self)
        if self.track_id is None:  # records of untracked runs stay as they were
            del record["track_id"]
        return record


def to_model_input(image_bgr: np.ndarray, size: int, input_format: str = "float") -> np.ndarray:
    """HxWx3 uint8 BGR -> one image of the model's input, resized as the reference does (`resize_like_pil`):
    float: 3 x size x size float32 RGB in [0, 1]; uint8: size x size x 3 uint8 BGR (the rest is in the graph)."""
    resized = resize_like_pil(image_bgr, size, size)
    if input_format == "uint8":
        return np.ascontiguousarray(resized)
    rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) * np.float32(1 / 255)


def input_shape(batch: int, size: int, input_format: str) -> tuple[int, int, int, int]:
    """The model input's shape for `batch` images: NCHW for float models, NHWC for uint8 ones."""
    return (batch, size, size, 3) if input_format == "uint8" else (batch, 3, size, size)


def resize_like_pil(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize one axis at a time, as PIL's bilinear filter (the reference's resize) does: width first, then height.

    PIL averages over the source footprint on an axis that shrinks and interpolates linearly on one that grows; so
    does `_resize_axis`. One OpenCV call for both axes would alias or blur whenever one axis shrinks and the other
    grows (1280x480 -> 640x640).
    """
    rows, cols = image.shape[:2]
    if cols != width:
        image = _resize_axis(image, (width, rows), axis=1)
    if rows != height:
        image = _resize_axis(image, (width, height), axis=0)
    return image


def _resize_axis(image: np.ndarray, size: tuple[int, int], axis: int) -> np.ndarray:
    """One axis (0: rows, 1: columns) of `resize_like_pil`: `image` to `size` (width, height), which differs from it
    on that axis only.

    Growing: INTER_LINEAR_EXACT, PIL's bilinear to the level. Shrinking: the area average (INTER_AREA), which on one
    axis costs 3 to 4 times what the same average costs done another way when the factor is whole (1280 -> 640 and
    1920 -> 640, the commonest camera frames, prepared on the CPU for every frame): at 2x INTER_LINEAR (it averages
    the two pixels), at k x a k-pixel box filter sampled every k-th pixel. Both equal INTER_AREA to one level.
    """
    source, target = image.shape[axis], size[1 - axis]
    if target > source:
        return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR_EXACT)
    factor, remainder = divmod(source, target)
    if remainder:
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if factor == 2:
        return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    box = (factor, 1) if axis == 1 else (1, factor)
    boxed = cv2.blur(image, box, anchor=(0, 0))  # each pixel: the mean of the k pixels from it on
    return cv2.resize(boxed, size, interpolation=cv2.INTER_NEAREST)  # pixels 0, k, 2k, ...


def normalize(images: np.ndarray) -> np.ndarray:
    """[B, 3, H, W] RGB in [0, 1] -> ImageNet-normalised, as the PyTorch model expects."""
    return (images - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]


def postprocess(
    logits: np.ndarray,
    boxes: np.ndarray,
    image_size: tuple[int, int],
    id2label: dict[int, str],
    conf: float,
    top_k: int | None = None,
) -> list[Detection]:
    """One image's outputs (logits [Q, C], boxes [Q, 4] cx, cy, w, h in [0, 1]) -> detections sorted by score.

    The k best (query, class) pairs are kept (k = the number of queries by default, as the reference evaluates),
    then those scoring above `conf`.
    """
    queries, classes = logits.shape
    scores = 1 / (1 + np.exp(-logits.astype(np.float64).reshape(-1)))
    k = min(top_k or queries, scores.size)
    best = np.argpartition(-scores, k - 1)[:k]
    best = best[np.argsort(-scores[best], kind="stable")]
    best = best[scores[best] > conf]
    query, label = np.divmod(best, classes)
    cx, cy, w, h = boxes[query].astype(np.float64).T
    height, width = image_size
    corners = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)
    return [
        Detection(int(c), id2label.get(int(c), str(c)), float(s), [float(v) for v in box])
        for c, s, box in zip(label, scores[best], corners)
    ]
