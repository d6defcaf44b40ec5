"""Where processed frames go: a video file, a JSONL of detections, a window. Each is closed cleanly on stop, so an
interrupted run still leaves a playable video and only complete JSON lines."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.processing import Detection
from edge_lwdetr.runtime.sources import opencv_has_gstreamer


def hardware_h264_pipeline(path: Path, fps: float) -> str | None:
    """A GStreamer pipeline encoding with the Jetson's NVENC, or None (no GStreamer, or no encoder: Orin Nano)."""
    if not opencv_has_gstreamer() or shutil.which("gst-inspect-1.0") is None:
        return None
    if subprocess.run(["gst-inspect-1.0", "nvv4l2h264enc"], capture_output=True).returncode != 0:
        return None
    return (
        f"appsrc ! video/x-raw, format=BGR, framerate={int(round(fps))}/1 ! videoconvert ! video/x-raw, format=BGRx ! "
        f"nvvidconv ! nvv4l2h264enc ! h264parse ! qtmux ! filesink location={path}"
    )


class VideoSink:
    """Annotated frames to a video file: NVENC H.264 where available, else a software codec (mp4v, or MJPG for
    .avi)."""

    wants_image = True

    def __init__(self, path: Path, fps: float):
        if not path.parent.is_dir():
            raise EdgeLwdetrError(f"cannot write {path}: folder {path.parent} does not exist")
        self.path, self.fps, self.writer = path, fps or 30.0, None

    def write(self, frame: np.ndarray, record: dict) -> None:
        if self.writer is None:
            height, width = frame.shape[:2]
            pipeline = hardware_h264_pipeline(self.path, self.fps) if self.path.suffix == ".mp4" else None
            if pipeline:
                self.writer = cv2.VideoWriter(pipeline, cv2.CAP_GSTREAMER, 0, self.fps, (width, height))
            else:
                fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix == ".avi" else "mp4v"))
                self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (width, height))
            if not self.writer.isOpened():
                raise EdgeLwdetrError(f"cannot write video {self.path}: no encoder for '{self.path.suffix}' (use .mp4 or .avi)")
        self.writer.write(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


class JsonlSink:
    """One JSON line per processed frame, flushed as it is written."""

    wants_image = False

    def __init__(self, path: Path):
        try:
            self.file = open(path, "w", encoding="utf-8")
        except OSError as error:
            raise EdgeLwdetrError(f"cannot write {path}: {error.strerror}") from None

    def write(self, frame: np.ndarray, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class WindowSink:
    """The annotated video in a window; `q` or Esc stops the run."""

    wants_image = True

    def __init__(self, title: str, stop):
        self.title, self.stop = title, stop

    def write(self, frame: np.ndarray, record: dict) -> None:
        cv2.imshow(self.title, frame)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stop.set()

    def close(self) -> None:
        cv2.destroyAllWindows()


def detection_record(index: int, time_s: float, detections: list[Detection], timings_ms: dict) -> dict:
    return {
        "frame": index,
        "time": round(time_s, 4),
        "detections": [d.to_json() for d in detections],
        "timings_ms": {k: round(v, 3) for k, v in timings_ms.items()},
    }
