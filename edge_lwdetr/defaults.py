"""Defaults shared by the command line, the Python API and the library (light imports, so the CLI starts fast)."""

from __future__ import annotations

import importlib.util

DEFAULT_CONF = 0.3  # detections scoring above this are kept
DEFAULT_OPSET = 18  # the lowest the PyTorch dynamo exporter emits; TensorRT 10.0+ parses 9 to 20
# A model's input: float32 [B, 3, H, W] RGB in [0, 1], or uint8 [B, H, W, 3] BGR as OpenCV decodes (0-255).
INPUT_FORMAT_NAMES = ("float", "uint8")
DEFAULT_BUDGET_AP = 0.3  # AP points an INT8 graph may lose before layer groups stay FP16 (engine/mixed_int8.py)
JETPACK_TRT_VERSION = "10.3"  # JetPack 6.1/6.2, the target when no TensorRT is installed where the graph is made


def target_trt_version() -> str:
    """The installed TensorRT's version, else JetPack 6's (only the builtin MSDA plugin's version depends on it)."""
    if importlib.util.find_spec("tensorrt") is not None:
        import tensorrt

        return tensorrt.__version__
    return JETPACK_TRT_VERSION
