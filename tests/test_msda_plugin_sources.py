"""The MSDA plugin sources: CMake and nvcc build them; the kernel's own arithmetic, run on the CPU by an nvcc-built
host program, matches the Python reference; with a GPU, the kernel itself does."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_lwdetr.model.msda import level_start_index, ms_deform_attn_reference

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "msda"
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) is not installed")

# (levels' shapes, heads M, channels D, points P): LW-DETR tiny/small/medium, large/xlarge, a non-vector D.
CASES = {
    "one_level": (((9, 7),), 16, 16, 2),
    "two_levels": (((12, 10), (3, 3)), 24, 16, 4),
    "channels_12": (((5, 6),), 3, 12, 2),
}


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """CMake build of the plugin folder for one architecture (kernel library + host check)."""
    if shutil.which("nvcc") is None or shutil.which("cmake") is None:
        pytest.skip("nvcc or cmake is not installed")
    folder = tmp_path_factory.mktemp("plugin_build")
    arch = os.environ.get("EDGE_LWDETR_CUDA_ARCH", "87")
    subprocess.run(["cmake", "-S", PLUGIN_DIR, "-B", folder, f"-DCMAKE_CUDA_ARCHITECTURES={arch}"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", folder, "-j2"], check=True, capture_output=True)
    return folder


def random_inputs(case, batch=2, queries=11, seed=0):
    shapes, heads, channels, points = case
    rng = np.random.default_rng(seed)
    tokens = sum(h * w for h, w in shapes)
    value = rng.normal(size=(batch, tokens, heads, channels)).astype(np.float32)
    # Locations reach outside [0, 1]: zero padding is part of the contract.
    locations = (rng.random((batch, queries, heads, len(shapes), points, 2)) * 1.4 - 0.2).astype(np.float32)
    weights = rng.random((batch, queries, heads, len(shapes) * points)).astype(np.float32)
    weights = (weights / weights.sum(-1, keepdims=True)).reshape(batch, queries, heads, len(shapes), points)
    return value, locations, weights


def reference(case, value, locations, weights):
    return ms_deform_attn_reference(
        torch.from_numpy(value), case[0], torch.from_numpy(locations), torch.from_numpy(weights)
    ).numpy()


def host_check(build, mode, case, value, locations, weights, folder):
    shapes = np.array(case[0], np.int32)
    files = {}
    for name, array in (("value", value), ("shapes", shapes), ("starts", np.array(level_start_index(case[0]), np.int32)),
                        ("locations", locations), ("weights", weights)):  # fmt: skip
        files[name] = folder / f"{name}.bin"
        np.ascontiguousarray(array).tofile(files[name])
    batch, spatial, heads, channels = value.shape
    queries, levels, points = locations.shape[1], locations.shape[3], locations.shape[4]
    dims = [batch, spatial, heads, channels, queries, levels, points]
    out = folder / "out.bin"
    subprocess.run([build / "msdaHostCheck", mode, *map(str, dims), *map(str, files.values()), out], check=True)
    return np.fromfile(out, np.float32).reshape(batch, queries, heads, channels)


@needs_nvcc
@pytest.mark.parametrize("case", list(CASES))
def test_kernel_arithmetic_fp32_matches_reference(build, case, tmp_path):
    value, locations, weights = random_inputs(CASES[case])
    out = host_check(build, "fp32", CASES[case], value, locations, weights, tmp_path)
    np.testing.assert_allclose(out, reference(CASES[case], value, locations, weights), atol=1e-5, rtol=0)


@needs_nvcc
@pytest.mark.parametrize("mode", ["fp16", "fp16-fp32loc"])
@pytest.mark.parametrize("case", list(CASES))
def test_kernel_arithmetic_fp16_matches_reference(build, case, mode, tmp_path):
    value, locations, weights = random_inputs(CASES[case], seed=1)
    value = value.astype(np.float16).astype(np.float32)  # the kernel sees half inputs; compare on the same values
    if mode == "fp16":
        locations = locations.astype(np.float16).astype(np.float32)
        weights = weights.astype(np.float16).astype(np.float32)
    out = host_check(build, mode, CASES[case], value, locations, weights, tmp_path)
    expected = reference(CASES[case], value, locations, weights)
    # FP32 accumulation, one rounding of the output to half: within half's relative precision.
    np.testing.assert_allclose(out, expected, rtol=1e-2, atol=1e-3)


def test_plugin_compiles_against_tensorrt_headers():
    includes = os.environ.get("EDGE_LWDETR_TRT_INCLUDES")
    if not includes:
        pytest.skip("set EDGE_LWDETR_TRT_INCLUDES to TensorRT include folders (':'-separated) to compile the plugin")
    cuda_include = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
    for include in includes.split(":"):
        subprocess.run(
            ["g++", "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-isystem", include,
             "-isystem", str(cuda_include), str(PLUGIN_DIR / "msdaPlugin.cpp")],
            check=True,
        )  # fmt: skip


def test_kernel_on_gpu_matches_reference(build):
    """Runs wherever CuPy sees a GPU: the kernel through its C entry point vs the PyTorch reference."""
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (GPU test)")
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            pytest.skip("no CUDA GPU")
    except cupy.cuda.runtime.CUDARuntimeError:
        pytest.skip("no CUDA GPU")
    import ctypes

    library = ctypes.CDLL(str(next(build.glob("libedge_lwdetr_*.so"))))
    for name, case in CASES.items():
        value, locations, weights = random_inputs(case, batch=2, queries=300)
        expected = reference(case, value, locations, weights)
        for value_type, loc_type, tolerance in ((np.float32, np.float32, 1e-5), (np.float16, np.float16, 1e-2), (np.float16, np.float32, 1e-2)):
            dv, dl, dw = (cupy.asarray(a.astype(t)) for a, t in ((value, value_type), (locations, loc_type), (weights, loc_type)))
            shapes = cupy.asarray(np.array(case[0], np.int32))
            starts = cupy.asarray(np.array(level_start_index(case[0]), np.int32))
            out = cupy.zeros((2, 300, case[1], case[2]), value_type)
            code = library.edgeLwdetrMsdaEnqueue(
                int(value_type == np.float16), int(loc_type == np.float16), ctypes.c_void_p(dv.data.ptr),
                ctypes.c_void_p(shapes.data.ptr), ctypes.c_void_p(starts.data.ptr), ctypes.c_void_p(dl.data.ptr),
                ctypes.c_void_p(dw.data.ptr), ctypes.c_void_p(out.data.ptr), 2, value.shape[1], case[1], case[2], 300,
                len(case[0]), case[3], ctypes.c_void_p(0),
            )  # fmt: skip
            assert code == 0
            cupy.cuda.runtime.deviceSynchronize()
            np.testing.assert_allclose(cupy.asnumpy(out).astype(np.float32), expected, rtol=tolerance, atol=tolerance, err_msg=name)
