"""GStreamer on a Jetson: whether OpenCV and the NVIDIA elements are there, and the pipelines the runtime opens.

OpenCV reads a GStreamer pipeline when it was built with GStreamer (JetPack's OpenCV is; the pip wheels are not).
The pipelines here are plain strings, so they are tested on any machine; they run only on a Jetson.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import cv2

HARDWARE_DECODER = "nvv4l2decoder"
# Containers GStreamer demuxes by the file's suffix, and codecs nvv4l2decoder takes (by FOURCC), with their parsers
# (file) and RTP depayloaders (RTSP).
DEMUXERS = {".mp4": "qtdemux", ".mov": "qtdemux", ".m4v": "qtdemux", ".mkv": "matroskademux", ".webm": "matroskademux",
            ".avi": "avidemux", ".ts": "tsdemux"}  # fmt: skip
CODECS = {
    "avc1": "h264",
    "h264": "h264",
    "x264": "h264",
    "hev1": "h265",
    "hvc1": "h265",
    "hevc": "h265",
    "h265": "h265",
}
# Decoded NV12 in device memory -> BGR in host memory, as OpenCV's appsink takes it.
_TO_BGR = "nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR"


def opencv_has_gstreamer() -> bool:
    info = cv2.getBuildInformation()
    line = next((l for l in info.splitlines() if "GStreamer" in l), "")
    return "YES" in line


@functools.cache
def element_available(name: str) -> bool:
    """Whether GStreamer has the element `name`: asked through PyGObject when it is importable, else gst-inspect-1.0."""
    try:
        import gi

        gi.require_version("Gst", "1.0")
        from gi.repository import Gst

        Gst.init(None)
        return Gst.ElementFactory.find(name) is not None
    except (ImportError, ValueError):
        pass
    if shutil.which("gst-inspect-1.0") is None:
        return False
    return subprocess.run(["gst-inspect-1.0", name], capture_output=True, check=False).returncode == 0


def csi_pipeline(sensor: int, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    """GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc), delivering BGR frames to OpenCV."""
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
        f"framerate={fps}/1, format=NV12 ! {_TO_BGR} ! appsink drop=true max-buffers=1"
    )


def fourcc_text(code: float) -> str:
    """OpenCV's CAP_PROP_FOURCC (a number) as its four characters, lower case ('avc1')."""
    value = int(code)
    return "".join(chr((value >> 8 * i) & 0xFF) for i in range(4)).strip("\0 ").lower()


def decode_pipeline(uri: str, fourcc: str, latency_ms: int = 200) -> tuple[str | None, str]:
    """(pipeline, why) for decoding `uri` (a file or rtsp://) with the Jetson's hardware decoder; pipeline is None,
    with the reason, when the codec or container is not one it takes. Files are read as fast as the consumer takes
    frames (no clock, no drops: every frame); RTSP keeps only the newest decoded frame, as live sources do."""
    codec = CODECS.get(fourcc)
    if codec is None:
        return None, f"codec {fourcc or 'unknown'!r} is not one {HARDWARE_DECODER} is used for here (H.264, H.265)"
    decode = f"{codec}parse ! {HARDWARE_DECODER} ! {_TO_BGR}"
    if uri.startswith("rtsp://"):
        source = f'rtspsrc location="{uri}" latency={latency_ms} ! rtp{codec}depay'
        return f"{source} ! {decode} ! appsink drop=true max-buffers=1 sync=false", f"{codec}, RTSP"
    suffix = Path(uri).suffix.lower()
    if suffix not in DEMUXERS:
        return None, f"container {suffix or '(no suffix)'} is not one the pipeline demuxes ({', '.join(DEMUXERS)})"
    source = f'filesrc location="{uri}" ! {DEMUXERS[suffix]}'
    return f"{source} ! {decode} ! appsink max-buffers=4 drop=false sync=false", f"{codec}, {suffix}"


def hardware_decoding(
    has_gstreamer: Callable[[], bool] = opencv_has_gstreamer, has_element: Callable[[str], bool] = element_available
) -> str | None:
    """None when the hardware decoder can be used, else why not (the software path is taken)."""
    if not has_gstreamer():
        return "this OpenCV has no GStreamer"
    if not has_element(HARDWARE_DECODER):
        return f"GStreamer has no {HARDWARE_DECODER}: not a Jetson"
    return None


def hardware_h264_encoder(path: Path, fps: float) -> str | None:
    """A GStreamer pipeline encoding with the Jetson's NVENC into a fragmented MP4 (one fragment a second), or None
    (no GStreamer, or no encoder: Orin Nano)."""
    if not opencv_has_gstreamer() or not element_available("nvv4l2h264enc"):
        return None
    rate = round(fps)
    return (
        f"appsrc ! video/x-raw, format=BGR, framerate={rate}/1 ! videoconvert ! video/x-raw, format=BGRx ! "
        f"nvvidconv ! nvv4l2h264enc iframeinterval={rate} idrinterval={rate} insert-sps-pps=true ! h264parse ! "
        f"mp4mux fragment-duration=1000 ! filesink location={path}"
    )
