"""INT8 calibration images: from an image folder or a video, preprocessed exactly as at inference."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.processing import IMAGE_SUFFIXES, to_model_input
from edge_lwdetr.progress import progress_bar


def calibration_images(source: Path, count: int, size: int, input_format: str = "float") -> np.ndarray:
    """Up to `count` model inputs (K images of `input_format`: [K, 3, size, size] in [0, 1], or uint8 [K, size, size,
    3] BGR), evenly spread over a folder's images (a COCO folder's `images/`) or a video's frames."""
    if count < 1:
        raise EdgeLwdetrError(f"--calib-count {count} must be at least 1")
    if source.is_dir():
        files = sorted(p for p in _image_folder(source).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise EdgeLwdetrError(f"{source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        chosen = [files[i] for i in np.linspace(0, len(files) - 1, min(count, len(files))).round().astype(int)]
        frames = []
        with progress_bar("reading calibration images", "img", total=len(chosen)) as progress:
            for path in chosen:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    raise EdgeLwdetrError(f"cannot decode calibration image {path}")
                frames.append(to_model_input(image, size, input_format))
                progress.update()
        return np.stack(frames)
    if source.is_file():
        return _video_frames(source, count, size, input_format)
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


def _video_frames(path: Path, count: int, size: int, input_format: str) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    if total <= 0:
        raise EdgeLwdetrError(f"{path} is neither an image folder nor a video OpenCV can read")
    wanted = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist())
    frames = []
    with progress_bar("reading calibration frames", "frame", total=len(wanted)) as progress:
        for index in range(total):
            ok, frame = capture.read()
            if not ok:
                break
            if index in wanted:
                frames.append(to_model_input(frame, size, input_format))
                progress.update()
    capture.release()
    if not frames:
        raise EdgeLwdetrError(f"no frame could be decoded from {path}")
    return np.stack(frames)


class CalibrationReader:
    """The calibration inputs, one image per inference, for ModelOpt's calibration in ONNX Runtime (the
    CalibrationDataReader protocol: get_first, get_next, rewind), with a bar over the inferences: the real work of
    calibration, 30-80 s of an INT8 export, which ModelOpt runs without one."""

    def __init__(self, inputs: dict[str, np.ndarray]):
        self.inputs = inputs
        self.count = len(next(iter(inputs.values())))
        self.position = 0
        self.bar = None

    def get_first(self) -> dict[str, np.ndarray]:
        return self._item(0)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.bar is None:
            self.bar = progress_bar("calibrating (ONNX Runtime)", "img", total=self.count)
        elif self.position > 0:
            self.bar.update()  # asking for the next image means the previous one has run
        if self.position >= self.count:
            self._close_bar()
            return None
        self.position += 1
        return self._item(self.position - 1)

    def rewind(self) -> None:
        self.position = 0
        self._close_bar()

    def _item(self, index: int) -> dict[str, np.ndarray]:
        return {name: array[index : index + 1] for name, array in self.inputs.items()}

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
