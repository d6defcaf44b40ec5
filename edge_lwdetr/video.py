"""Video files that survive a crash: fragmented MP4 with H.264 through PyAV (FFmpeg), written frame by frame.

A plain MP4 keeps its index (the `moov` box) at the end, so a recording cut by a power loss, an OOM kill or a full
disk does not play at all. A fragmented MP4 (`frag_keyframe+empty_moov`) writes a self-contained fragment at every
keyframe; with a keyframe each second, a recording that is cut short plays up to about the last second. H.264 (x264,
bundled in PyAV's wheels) is what browsers and phones play, unlike OpenCV's `mp4v`.

`.avi` files hold Motion JPEG: every frame is a keyframe, and FFmpeg reads such a file to its last whole frame even
without the index a clean close adds.
"""

from __future__ import annotations

import errno
import os
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from edge_lwdetr.errors import EdgeLwdetrError

SUFFIXES = (".mp4", ".avi")
FSYNC_INTERVAL_S = 1.0  # data reaches the disk at least this often, so a power loss costs about a second


def letterbox(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """`frame` scaled to fit width x height, aspect kept, centred on black."""
    h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return frame
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas


class VideoWriter:
    """BGR frames of one size to `path`; sizes that differ from the first frame's are letterboxed into it.

    Write errors (a full disk, an I/O error) raise an EdgeLwdetrError naming the file, after cutting the file back
    to its last complete fragment, so what is on disk still plays.
    """

    def __init__(self, path: Path, fps: float, log=print):
        if path.suffix.lower() not in SUFFIXES:
            raise EdgeLwdetrError(f"cannot write video {path}: use .mp4 (H.264) or .avi (Motion JPEG)")
        if not path.parent.is_dir():
            raise EdgeLwdetrError(f"cannot write {path}: folder {path.parent} does not exist")
        self.path, self.log = path, log
        self.rate = Fraction(fps if fps and fps > 0 else 30.0).limit_denominator(1001)
        self.container = self.stream = None
        self.size: tuple[int, int] | None = None  # width, height of the video
        self.frames, self._fd, self._good_size, self._last_sync = 0, None, 0, 0.0
        self._letterboxed = False

    def _open(self, width: int, height: int) -> None:
        import av

        self.size = (width + width % 2, height + height % 2)  # 4:2:0 chroma needs even sides
        self._first_shape = (height, width)
        mp4 = self.path.suffix.lower() == ".mp4"
        try:
            self.container = av.open(
                str(self.path), mode="w", format="mp4" if mp4 else "avi",
                # flush_packets: each fragment leaves FFmpeg's buffers as soon as it is complete.
                container_options={"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
                if mp4 else {"flush_packets": "1"},
            )  # fmt: skip
            self.stream = self.container.add_stream("libx264" if mp4 else "mjpeg", rate=self.rate)
        except OSError as error:
            raise EdgeLwdetrError(f"cannot write {self.path}: {error.strerror or error}") from None
        self.stream.width, self.stream.height = self.size
        self.stream.pix_fmt = "yuv420p" if mp4 else "yuvj420p"
        if mp4:
            # A keyframe (so a fragment) each second; zerolatency: no look-ahead frames held back in the encoder.
            gop = max(1, round(float(self.rate)))
            self.stream.options = {"g": str(gop), "keyint_min": str(gop), "tune": "zerolatency", "preset": "veryfast"}
        else:
            self.stream.options = {"q:v": "3"}

    def write(self, frame: np.ndarray) -> None:
        import av

        if self.container is None:
            self._open(frame.shape[1], frame.shape[0])
        width, height = self.size
        if frame.shape[:2] != self._first_shape:
            if not self._letterboxed:
                self.log(
                    f"frame {self.frames} of {self.path.name} is {frame.shape[1]}x{frame.shape[0]}, the video "
                    f"{width}x{height}: frames of other sizes are letterboxed into it (aspect kept, black borders)"
                )
                self._letterboxed = True
            frame = letterbox(frame, width, height)
        elif frame.shape[:2] != (height, width):
            frame = _pad_even(frame, width, height)
        if self.stream.pix_fmt == "yuv420p":
            video_frame = av.VideoFrame.from_ndarray(bgr_to_i420(frame), format="yuv420p")
        else:  # Motion JPEG's full-range yuvj420p: FFmpeg converts
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
        video_frame.pts = self.frames
        self._mux(self.stream.encode(video_frame))
        self.frames += 1

    def _mux(self, packets) -> None:
        try:
            for packet in packets:
                self.container.mux(packet)
                if self._fd is None:  # FFmpeg creates the file with the first packet
                    self._fd = os.open(self.path, os.O_RDONLY)  # for fsync, and the size of what is complete
                # The muxer writes whole fragments (mp4) or whole frames (avi): the file now ends on a boundary.
                self._good_size = os.fstat(self._fd).st_size
        except OSError as error:
            self._abandon()
            raise self._error(error) from None
        now = time.monotonic()
        if self._fd is not None and now - self._last_sync >= FSYNC_INTERVAL_S:
            self._last_sync = now
            try:
                os.fsync(self._fd)
            except OSError as error:
                self._abandon()
                raise self._error(error) from None

    def _error(self, error: OSError) -> EdgeLwdetrError:
        hint = ": the disk is full" if error.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        return EdgeLwdetrError(
            f"cannot write {self.path}{hint} ({error.strerror or error}); it holds the first "
            f"{self.frames} frames, up to its last complete fragment"
        )

    def _abandon(self) -> None:
        """After a write error: release FFmpeg without writing more, and cut the file to what is complete."""
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - the container is already broken; what matters is the cut below
            pass
        self.container = None
        if self._fd is not None:
            os.truncate(self.path, self._good_size)
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        if self.container is None:
            return
        self._mux(self.stream.encode(None))  # the frames still inside the encoder
        try:
            self.container.close()
            if self._fd is not None:
                os.fsync(self._fd)
        except OSError as error:
            self._abandon()
            raise self._error(error) from None
        if self._fd is not None:
            os.close(self._fd)
        self.container, self._fd = None, None


def bgr_to_i420(frame: np.ndarray) -> np.ndarray:
    """A BGR frame of even sides -> its I420 planes as FFmpeg's swscale makes them for H.264 (BT.601, video range,
    each chroma sample the mean of its 2x2 pixels), to 2 levels, in about half swscale's CPU time.

    OpenCV's BGR2YUV_I420 alone takes each 2x2 block's chroma from its top-left pixel, which drops the colour of
    1-pixel lines, such as the boxes drawn on small frames. The conversion is linear, so the chroma of the block
    means (resized to half and back) is the mean of the blocks' chroma.
    """
    height, width = frame.shape[:2]
    planes = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)
    means = cv2.resize(frame, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    blocks = cv2.resize(means, (width, height), interpolation=cv2.INTER_NEAREST)
    planes[height:] = cv2.cvtColor(blocks, cv2.COLOR_BGR2YUV_I420)[height:]
    return planes


def _pad_even(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    return cv2.copyMakeBorder(frame, 0, height - h, 0, width - w, cv2.BORDER_REPLICATE)
