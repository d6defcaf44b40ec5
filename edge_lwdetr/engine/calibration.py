"""INT8 calibration images: from an image folder or a video, preprocessed exactly as at inference."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.processing import IMAGE_SUFFIXES, to_model_input


def calibration_images(source: Path, count: int, size: int) -> np.ndarray:
    """Up to `count` images [K, 3, size, size] in [0, 1]: evenly spread over a folder's images (a COCO folder's
    `images/`) or a video's frames."""
    if count < 1:
        raise EdgeLwdetrError(f"--calib-count {count} must be at least 1")
    if source.is_dir():
        files = sorted(p for p in _image_folder(source).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise EdgeLwdetrError(f"{source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        chosen = [files[i] for i in np.linspace(0, len(files) - 1, min(count, len(files))).round().astype(int)]
        frames = []
        for path in tqdm(chosen, desc="calibration images", unit="img"):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise EdgeLwdetrError(f"cannot decode calibration image {path}")
            frames.append(to_model_input(image, size))
        return np.stack(frames)
    if source.is_file():
        return _video_frames(source, count, size)
    raise EdgeLwdetrError(f"calibration data not found: {source} (pass an image folder or a video file)")


def calibration_labels(source: Path) -> Path | None:
    """`source` when it is a COCO folder (annotations.json beside `images/`): the INT8 budget is then measured in COCO
    mAP on its labels, not against the FP32 graph's detections."""
    return source if source.is_dir() and (source / "annotations.json").is_file() else None


def _image_folder(source: Path) -> Path:
    """A COCO folder's `images/` when `source` holds no image itself."""
    nested = source / "images"
    if nested.is_dir() and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in source.iterdir()):
        return nested
    return source


def _video_frames(path: Path, count: int, size: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    if total <= 0:
        raise EdgeLwdetrError(f"{path} is neither an image folder nor a video OpenCV can read")
    wanted = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist())
    frames = []
    with tqdm(total=len(wanted), desc="calibration frames", unit="frame") as progress:
        for index in range(total):
            ok, frame = capture.read()
            if not ok:
                break
            if index in wanted:
                frames.append(to_model_input(frame, size))
                progress.update()
    capture.release()
    if not frames:
        raise EdgeLwdetrError(f"no frame could be decoded from {path}")
    return np.stack(frames)
