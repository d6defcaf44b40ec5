"""The GPU or SoC an engine is built for or runs on, read from the CUDA driver (ctypes: no pycuda, no torch)."""

from __future__ import annotations

import ctypes
from pathlib import Path

_COMPUTE_CAPABILITY_MAJOR, _COMPUTE_CAPABILITY_MINOR = 75, 76  # CUdevice_attribute values


def gpu_info(index: int = 0) -> dict[str, str]:
    """{'name', 'compute_capability'} of CUDA device `index`, plus 'soc' on a Jetson; empty without a driver."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return {}
    device = ctypes.c_int()
    major, minor = ctypes.c_int(), ctypes.c_int()
    name = ctypes.create_string_buffer(256)
    if (
        cuda.cuInit(0)
        or cuda.cuDeviceGet(ctypes.byref(device), index)
        or cuda.cuDeviceGetName(name, len(name), device)
        or cuda.cuDeviceGetAttribute(ctypes.byref(major), _COMPUTE_CAPABILITY_MAJOR, device)
        or cuda.cuDeviceGetAttribute(ctypes.byref(minor), _COMPUTE_CAPABILITY_MINOR, device)
    ):
        return {}
    info = {"name": name.value.decode(), "compute_capability": f"{major.value}.{minor.value}"}
    model = Path("/proc/device-tree/model")  # Jetson: the module, e.g. "NVIDIA Jetson AGX Orin Developer Kit"
    if model.is_file():
        info["soc"] = model.read_text(errors="replace").strip("\x00\n ")
    return info
