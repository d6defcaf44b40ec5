"""Video sources by URI, as jetson-inference names them: `0`, `/dev/video0`, `csi://0`, `rtsp://...`, a video file,
an image folder. Live sources (cameras, streams) reconnect with backoff when they drop out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.processing import IMAGE_SUFFIXES

RECONNECT_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)


def csi_pipeline(sensor: int, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    """GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc), delivering BGR frames to OpenCV."""
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
        f"framerate={fps}/1, format=NV12 ! nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! "
        "video/x-raw, format=BGR ! appsink drop=true max-buffers=1"
    )


def opencv_has_gstreamer() -> bool:
    info = cv2.getBuildInformation()
    line = next((l for l in info.splitlines() if "GStreamer" in l), "")
    return "YES" in line


class Source:
    """Frames from one URI; `read()` returns None at the end (or when a live source is gone for good)."""

    def __init__(
        self,
        uri: str,
        open_capture: Callable[[], cv2.VideoCapture],
        live: bool,
        log=print,
        reconnect_delays_s: tuple[float, ...] = RECONNECT_DELAYS_S,
    ):
        self.uri, self.live, self.log, self.reconnect_delays_s = uri, live, log, reconnect_delays_s
        self._open = open_capture
        self.capture = open_capture()
        if not self.capture.isOpened():
            raise EdgeLwdetrError(f"cannot open source {uri}: {describe_failure(uri)}")
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.frame_count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not live else 0

    def read(self) -> np.ndarray | None:
        ok, frame = self.capture.read()
        if ok:
            return frame
        if not self.live:
            return None
        return self._reconnect()

    def _reconnect(self) -> np.ndarray | None:
        for delay in self.reconnect_delays_s:
            self.log(f"source {self.uri} stopped delivering frames; reconnecting in {delay:g} s")
            time.sleep(delay)
            self.capture.release()
            self.capture = self._open()
            ok, frame = self.capture.read() if self.capture.isOpened() else (False, None)
            if ok:
                return frame
        self.log(f"source {self.uri} is gone after {len(self.reconnect_delays_s)} reconnection attempts; stopping")
        return None

    def close(self) -> None:
        self.capture.release()


class FolderSource:
    """The images of a folder, in name order (unreadable files are skipped with a message)."""

    live = False

    def __init__(self, folder: Path, log=print):
        self.uri, self.log = str(folder), log
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise EdgeLwdetrError(f"cannot open source {folder}: the folder holds no images")
        self.fps, self.frame_count, self._next = 0.0, len(self.files), 0

    def read(self) -> np.ndarray | None:
        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is not None:
                return frame
            self.log(f"skipping {path}: not an image OpenCV can decode")
        return None

    def close(self) -> None:
        pass


def describe_failure(uri: str) -> str:
    if uri.startswith("csi://") and not opencv_has_gstreamer():
        return (
            "this OpenCV is built without GStreamer, which CSI cameras need; use JetPack's OpenCV "
            "(pip uninstall opencv-python opencv-python-headless) or the Jetson Docker image"
        )
    path = Path(uri)
    if uri.startswith(("rtsp://", "http://", "https://")):
        return "the stream does not answer or its codec is unsupported"
    if uri.isdigit() or uri.startswith("/dev/video") or uri.startswith("csi://"):
        return "no such camera, or it is busy"
    if not path.exists():
        return "no such file"
    return "not a video OpenCV can decode (corrupt or truncated?)"


def open_source(uri: str, log=print) -> Source | FolderSource:
    if uri.isdigit():
        return Source(uri, lambda: cv2.VideoCapture(int(uri)), live=True, log=log)
    if uri.startswith("/dev/video"):
        return Source(uri, lambda: cv2.VideoCapture(uri, cv2.CAP_V4L2), live=True, log=log)
    if uri.startswith("csi://"):
        sensor = uri.removeprefix("csi://") or "0"
        if not sensor.isdigit():
            raise EdgeLwdetrError(f"{uri}: expected csi://N with N the sensor id, e.g. csi://0")
        return Source(uri, lambda: cv2.VideoCapture(csi_pipeline(int(sensor)), cv2.CAP_GSTREAMER), live=True, log=log)
    if uri.startswith(("rtsp://", "rtmp://", "http://", "https://")):
        return Source(uri, lambda: cv2.VideoCapture(uri), live=True, log=log)
    path = Path(uri)
    if path.is_dir():
        return FolderSource(path, log=log)
    if not path.is_file():
        raise EdgeLwdetrError(f"cannot open source {uri}: no such file or folder (or camera 0, /dev/videoN, csi://N, rtsp://...)")
    return Source(uri, lambda: cv2.VideoCapture(uri), live=False, log=log)
