"""Video sources by URI, as jetson-inference names them: `0`, `/dev/video0`, `csi://0`, `rtsp://...`, a video file,
an image folder. Live sources (cameras, streams) reconnect with backoff when they drop out. Files and RTSP streams
are decoded by the Jetson's hardware decoder (nvv4l2decoder, through GStreamer) where OpenCV and GStreamer have it,
else in software; `decoder` says which.

No wait is unbounded: network streams open and read with timeouts (OpenCV's FFmpeg backend otherwise waits 30 s),
and every open runs in a helper thread while the caller watches the stop event, so SIGINT/SIGTERM end a run within
a fraction of a second even while a stream is stalled or reconnecting.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.processing import IMAGE_SUFFIXES
from edge_lwdetr.runtime.gstreamer import (
    HARDWARE_DECODER,
    csi_pipeline,
    decode_pipeline,
    fourcc_text,
    hardware_decoding,
    opencv_has_gstreamer,
)

RECONNECT_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)
STREAM_TIMEOUT_S = 5.0  # default open and read timeouts of network streams


class Interrupted(Exception):
    """The stop event was set (a signal, `q` in the window) while the source was opening."""


def open_interruptibly(open_capture: Callable[[], cv2.VideoCapture], stop: threading.Event | None):
    """open_capture() in a helper thread; returns its capture, or raises Interrupted as soon as `stop` is set (the
    abandoned open finishes in the background and its capture is released there)."""
    if stop is None:
        return open_capture()
    result: list = []
    abandoned = threading.Event()

    def target() -> None:
        try:
            result.append(open_capture())
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
            result.append(error)
        if abandoned.is_set() and result and isinstance(result[0], cv2.VideoCapture):
            result[0].release()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    while thread.is_alive():
        if stop.wait(0.05):
            abandoned.set()
            raise Interrupted
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def stream_capture(uri: str, timeout_s: float = STREAM_TIMEOUT_S) -> cv2.VideoCapture:
    """A network stream through FFmpeg with bounded open and read waits."""
    ms = int(timeout_s * 1000)
    return cv2.VideoCapture(uri, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])


class Source:
    """Frames from one URI; `read()` returns None at the end (or when a live source is gone for good)."""

    def __init__(
        self,
        uri: str,
        open_capture: Callable[[], cv2.VideoCapture],
        live: bool,
        log=print,
        reconnect_delays_s: tuple[float, ...] = RECONNECT_DELAYS_S,
        stop: threading.Event | None = None,
        decoder: str = "OpenCV",
        hardware_pipeline: Callable[[str], tuple[str | None, str]] | None = None,
    ):
        """`decoder` names how frames are decoded; `hardware_pipeline(fourcc)` gives the hardware decoding pipeline
        for the codec the first open found, with what it decodes, or None and why not (decode_pipeline)."""
        self.uri, self.live, self.log, self.reconnect_delays_s = uri, live, log, reconnect_delays_s
        self.stop = stop or threading.Event()
        self._open = open_capture
        self.skipped = 0
        self.capture = open_interruptibly(open_capture, self.stop)
        if not self.capture.isOpened():
            raise EdgeLwdetrError(f"cannot open source {uri}: {describe_failure(uri)}")
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.frame_count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not live else 0
        self.decoder = decoder
        if hardware_pipeline is not None:
            self._try_hardware(hardware_pipeline)

    def _try_hardware(self, hardware_pipeline: Callable[[str], tuple[str | None, str]]) -> None:
        """Reopen through the hardware decoder when it is there and takes this codec; else keep the software capture
        (already open) and say why in `decoder`. Frame rate and count come from the software open either way."""
        why_not = hardware_decoding()
        if why_not is None:
            pipeline, why_not = hardware_pipeline(fourcc_text(self.capture.get(cv2.CAP_PROP_FOURCC)))
            if pipeline is not None:
                open_hardware = lambda: cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)  # noqa: E731
                try:
                    capture = open_interruptibly(open_hardware, self.stop)
                except Interrupted:
                    self.capture.release()  # no Source is returned to close it
                    raise
                if capture.isOpened():
                    self.capture.release()
                    self.capture, self._open = capture, open_hardware
                    self.decoder = f"{HARDWARE_DECODER} ({why_not}, GStreamer)"
                    return
                capture.release()
                why_not = f"the {HARDWARE_DECODER} pipeline did not open"
        self.decoder = f"software ({why_not})"

    def read(self) -> np.ndarray | None:
        ok, frame = self.capture.read()
        if ok:
            return frame
        if not self.live:
            return None
        return self._reconnect()

    def grab(self) -> bool:
        """Pass over one frame (decoded, not converted or returned: for --vid-stride); False at the end."""
        if self.capture.grab():
            return True
        return self.live and self._reconnect() is not None

    def _reconnect(self) -> np.ndarray | None:
        for delay in self.reconnect_delays_s:
            self.log(f"source {self.uri} stopped delivering frames; reconnecting in {delay:g} s")
            if self.stop.wait(delay):
                return None
            self.capture.release()
            try:
                self.capture = open_interruptibly(self._open, self.stop)
            except Interrupted:
                self.capture = cv2.VideoCapture()  # nothing open: close() has nothing to release
                return None
            ok, frame = self.capture.read() if self.capture.isOpened() else (False, None)
            if ok:
                return frame
        self.log(f"source {self.uri} is gone after {len(self.reconnect_delays_s)} reconnection attempts; stopping")
        return None

    def close(self) -> None:
        self.capture.release()


class FolderSource:
    """The images of a folder, in name order (unreadable files are skipped with a message)."""

    live, decoder = False, "images (OpenCV)"

    def __init__(self, folder: Path, log=print):
        self.uri, self.log = str(folder), log
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise EdgeLwdetrError(f"cannot open source {folder}: the folder holds no images")
        self.fps, self.frame_count, self._next, self.skipped = 0.0, len(self.files), 0, 0

    def read(self) -> np.ndarray | None:
        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            self.current = str(path)  # the file this frame comes from
            try:
                frame = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
            except (OSError, cv2.error):
                frame = None
            if frame is not None:
                return frame
            self.skipped += 1
            self.log(f"skipping {path}: not an image OpenCV can decode")
        return None

    def grab(self) -> bool:
        return self.read() is not None  # an unreadable file is not a frame: decoding tells which are

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


def open_source(
    uri: str, log=print, stop: threading.Event | None = None, stream_timeout_s: float = STREAM_TIMEOUT_S
) -> Source | FolderSource:
    """The source for `uri`; raises Interrupted when `stop` is set while it opens."""
    if uri.isdigit():
        return Source(uri, lambda: cv2.VideoCapture(int(uri)), live=True, log=log, stop=stop, decoder="camera (OpenCV)")
    if uri.startswith("/dev/video"):
        return Source(uri, lambda: cv2.VideoCapture(uri, cv2.CAP_V4L2), live=True, log=log, stop=stop, decoder="V4L2")
    if uri.startswith("csi://"):
        sensor = uri.removeprefix("csi://") or "0"
        if not sensor.isdigit():
            raise EdgeLwdetrError(f"{uri}: expected csi://N with N the sensor id, e.g. csi://0")
        pipeline = csi_pipeline(int(sensor))
        open_csi = lambda: cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)  # noqa: E731
        return Source(uri, open_csi, live=True, log=log, stop=stop, decoder="nvarguscamerasrc (GStreamer)")
    hardware = lambda fourcc: decode_pipeline(uri, fourcc)  # noqa: E731
    if uri.startswith(("rtsp://", "rtmp://", "http://", "https://")):
        log(f"opening {uri} (waits at most {stream_timeout_s:g} s)")
        return Source(
            uri, lambda: stream_capture(uri, stream_timeout_s), live=True, log=log, stop=stop,
            hardware_pipeline=hardware if uri.startswith("rtsp://") else None, decoder="software (FFmpeg)",
        )  # fmt: skip
    path = Path(uri)
    if path.is_dir():
        return FolderSource(path, log=log)
    if not path.is_file():
        raise EdgeLwdetrError(f"cannot open source {uri}: no such file or folder (or camera 0, /dev/videoN, csi://N, rtsp://...)")
    if path.stat().st_size == 0:
        raise EdgeLwdetrError(f"cannot open source {uri}: the file is empty (0 bytes)")
    return Source(uri, lambda: cv2.VideoCapture(uri), live=False, log=log, stop=stop, hardware_pipeline=hardware)
