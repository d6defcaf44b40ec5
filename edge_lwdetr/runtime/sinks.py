"""Where processed frames go: a video file, a JSONL of detections, a window.

Each sink leaves only complete data behind, whatever stops the run: the video is a fragmented MP4 that plays to its
last fragment (about a second) after a kill or a full disk; the JSONL holds only whole lines. A write error raises
an EdgeLwdetrError naming the file, which ends the run with status 2.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.processing import Detection
from edge_lwdetr.runtime.gstreamer import hardware_h264_encoder
from edge_lwdetr.video import FSYNC_INTERVAL_S, VideoWriter


class VideoSink:
    """Annotated frames to a video file: NVENC H.264 on a Jetson with GStreamer, else x264 through PyAV."""

    wants_image = True

    def __init__(self, path: Path, fps: float, log=print):
        self.path, self.fps, self.log = path, fps or 30.0, log
        self.hardware = hardware_h264_encoder(path, self.fps) if path.suffix.lower() == ".mp4" else None
        self.writer = None if self.hardware else VideoWriter(path, self.fps, log)
        self.gst = None
        self.frames = 0

    def write(self, frame: np.ndarray, record: dict) -> None:
        if self.hardware:
            if self.gst is None:
                self.size = frame.shape[1], frame.shape[0]
                self.gst = cv2.VideoWriter(self.hardware, cv2.CAP_GSTREAMER, 0, self.fps, self.size)
                if not self.gst.isOpened():
                    raise EdgeLwdetrError(f"cannot write video {self.path}: the NVENC GStreamer pipeline did not open")
            self.gst.write(frame if (frame.shape[1], frame.shape[0]) == self.size else cv2.resize(frame, self.size))
        else:
            self.writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        if self.gst is not None:
            self.gst.release()
        elif self.writer is not None:
            self.writer.close()

    def wrote(self) -> bool:
        return self.frames > 0 and self.path.is_file()


class JsonlSink:
    """One JSON line per processed frame, each written whole and flushed to the file as it comes.

    On a write error the file is cut back to its last complete line, then the error names the file.
    """

    wants_image = False

    def __init__(self, path: Path):
        self.path, self.lines, self._size, self._last_sync = path, 0, 0, time.monotonic()
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as error:
            raise EdgeLwdetrError(f"cannot write {path}: {error.strerror}") from None

    def write(self, frame: np.ndarray, record: dict) -> None:
        data = memoryview((json.dumps(record) + "\n").encode("utf-8"))
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
            if time.monotonic() - self._last_sync >= FSYNC_INTERVAL_S:
                os.fsync(self._fd)
                self._last_sync = time.monotonic()
        except OSError as error:
            os.ftruncate(self._fd, self._size)  # a cut needs no free space
            hint = ": the disk is full" if error.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            raise EdgeLwdetrError(
                f"cannot write {self.path}{hint} ({error.strerror}); it holds the first {self.lines} lines, all complete"
            ) from None
        self._size += len(data)
        self.lines += 1

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None

    def wrote(self) -> bool:
        return self.lines > 0


class ProgressSink:
    """A progress bar over files' frames on stderr (tqdm: off when stderr is not a terminal, so logs stay clean); one
    bar may serve several sources, whose sink threads write to it."""

    wants_image = False

    def __init__(self, total: int, description: str):
        from edge_lwdetr.progress import progress_bar

        self.bar = progress_bar(description, "frame", total=total or None)
        self._lock = threading.Lock()

    def write(self, frame: np.ndarray, record: dict) -> None:
        with self._lock:
            self.bar.update(1)

    def close(self) -> None:
        self.bar.close()

    def wrote(self) -> bool:
        return False


def window_support() -> str | None:
    """None when cv2.imshow can open a window here, else why it cannot and how to fix it."""
    gui = next((l.split(":", 1)[1].strip() for l in cv2.getBuildInformation().splitlines() if l.strip().startswith("GUI:")), "")
    if gui.upper() in ("", "NONE"):
        return (
            "this OpenCV has no window support (opencv-python-headless); install one that has: "
            "`pip uninstall -y opencv-python-headless && pip install opencv-python`, or on a Jetson use JetPack's "
            "OpenCV; or drop --show and write the video with --save"
        )
    if os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display to show a window on (DISPLAY is not set); drop --show and write the video with --save"
    return None


class WindowSink:
    """The annotated video in a window; `q` or Esc stops the run."""

    wants_image = True

    def __init__(self, title: str, stop):
        problem = window_support()
        if problem:
            raise EdgeLwdetrError(f"--show: {problem}")
        self.title, self.stop = title, stop

    def write(self, frame: np.ndarray, record: dict) -> None:
        try:
            cv2.imshow(self.title, frame)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as error:
            raise EdgeLwdetrError(f"--show: the window could not be drawn ({error.err}); use --save instead") from None
        if key in (ord("q"), 27):
            self.stop.set()

    def close(self) -> None:
        try:
            cv2.destroyAllWindows()
        except cv2.error:
            pass

    def wrote(self) -> bool:
        return False


def detection_record(
    source: str, index: int, time_s: float, size: tuple[int, int], detections: list[Detection], timings_ms: dict
) -> dict:
    """One JSONL line: where the frame came from (for a folder, its file), its index, time and size (width,
    height: the detections' boxes are in its pixels), the detections and the stage timings."""
    return {
        "source": source,
        "frame": index,
        "time": round(time_s, 4),
        "size": list(size),
        "detections": [d.to_json() for d in detections],
        "timings_ms": {k: round(v, 3) for k, v in timings_ms.items()},
    }
