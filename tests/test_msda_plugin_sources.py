"""The MSDA plugin sources: CMake and nvcc build them; the kernel's own arithmetic, run on the CPU by an nvcc-built
host program, matches the Python reference, on misaligned buffers and with non-finite locations too; the plugin
compiles against the TensorRT headers of every supported tag and exports the dynamic-loading entry points; with a
GPU, the kernel itself matches the reference."""

import json
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


def host_check(build, mode, case, value, locations, weights, folder, misaligned=False):
    """The host program's output, and the channels per thread the launcher's rule chose for its buffers."""
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
    command = [build / "msdaHostCheck", mode, *map(str, dims), *map(str, files.values()), out]
    result = subprocess.run(command + (["--misaligned"] if misaligned else []), check=True, capture_output=True, text=True)
    per_thread = int(result.stdout.split()[-1])
    return np.fromfile(out, np.float32).reshape(batch, queries, heads, channels), per_thread


@needs_nvcc
@pytest.mark.parametrize("case", list(CASES))
def test_kernel_arithmetic_fp32_matches_reference(build, case, tmp_path):
    value, locations, weights = random_inputs(CASES[case])
    out, per_thread = host_check(build, "fp32", CASES[case], value, locations, weights, tmp_path)
    np.testing.assert_allclose(out, reference(CASES[case], value, locations, weights), atol=1e-5, rtol=0)
    assert per_thread == (4 if CASES[case][2] % 4 == 0 else 1)


@needs_nvcc
@pytest.mark.parametrize("mode", ["fp16", "fp16-fp32loc"])
@pytest.mark.parametrize("case", list(CASES))
def test_kernel_arithmetic_fp16_matches_reference(build, case, mode, tmp_path):
    value, locations, weights = random_inputs(CASES[case], seed=1)
    value = value.astype(np.float16).astype(np.float32)  # the kernel sees half inputs; compare on the same values
    if mode == "fp16":
        locations = locations.astype(np.float16).astype(np.float32)
        weights = weights.astype(np.float16).astype(np.float32)
    out, _ = host_check(build, mode, CASES[case], value, locations, weights, tmp_path)
    expected = reference(CASES[case], value, locations, weights)
    # FP32 accumulation, one rounding of the output to half: within half's relative precision.
    np.testing.assert_allclose(out, expected, rtol=1e-2, atol=1e-3)


@needs_nvcc
@pytest.mark.parametrize("mode", ["fp32", "fp16", "fp16-fp32loc"])
def test_misaligned_buffers_take_the_scalar_path_with_the_same_result(build, mode, tmp_path):
    """A plugin tensor need not be 16-byte aligned: the launcher's rule must then choose one channel per thread
    (no 16-byte vector access), and the result must not change."""
    case = CASES["two_levels"]
    value, locations, weights = random_inputs(case, seed=2)
    value = value.astype(np.float16).astype(np.float32)
    locations, weights = locations.astype(np.float16).astype(np.float32), weights.astype(np.float16).astype(np.float32)
    aligned, vector = host_check(build, mode, case, value, locations, weights, tmp_path)
    misaligned, scalar = host_check(build, mode, case, value, locations, weights, tmp_path, misaligned=True)
    assert (vector, scalar) == ((4 if mode == "fp32" else 8), 1)
    np.testing.assert_allclose(misaligned, aligned, rtol=1e-6 if mode == "fp32" else 1e-3, atol=1e-6 if mode == "fp32" else 1e-3)


@needs_nvcc
def test_non_finite_locations_are_skipped(build, tmp_path):
    """NaN or infinite sampling locations contribute nothing (as NVIDIA's kernel skips them), so the output stays
    finite and equals the reference with those samples moved off the map."""
    case = CASES["two_levels"]
    value, locations, weights = random_inputs(case, seed=3)
    rng = np.random.default_rng(3)
    bad = rng.random(locations.shape[:-1]) < 0.2
    poisoned = locations.copy()
    poisoned[bad, 0] = np.nan
    poisoned[bad & (rng.random(bad.shape) < 0.5), 1] = np.inf
    poisoned[0, 0, 0, 0, 0] = (-np.inf, np.nan)
    out, _ = host_check(build, "fp32", case, value, poisoned, weights, tmp_path)
    assert np.isfinite(out).all()
    off_map = locations.copy()
    off_map[bad] = -10.0  # outside every level: zero padding
    off_map[0, 0, 0, 0, 0] = -10.0
    np.testing.assert_allclose(out, reference(case, value, off_map, weights), atol=1e-5, rtol=0)


def tensorrt_header_sets(folder: Path) -> dict[str, Path]:
    """Include folders to compile against: EDGE_LWDETR_TRT_INCLUDES (':'-separated), or the include/ of every tag
    in tests/data/trt_api_surface.json read from the NVIDIA/TensorRT clone EDGE_LWDETR_TRT_REPO names."""
    includes = os.environ.get("EDGE_LWDETR_TRT_INCLUDES")
    if includes:
        return {include: Path(include) for include in includes.split(":")}
    repo = os.environ.get("EDGE_LWDETR_TRT_REPO")
    if not repo:
        pytest.skip("set EDGE_LWDETR_TRT_REPO (a NVIDIA/TensorRT clone) or EDGE_LWDETR_TRT_INCLUDES to compile the plugin")
    git_dir = Path(repo) / ".git" if (Path(repo) / ".git").exists() else Path(repo)
    tags = json.loads((Path(__file__).parent / "data" / "trt_api_surface.json").read_text())["versions"]
    sets = {}
    for tag in tags:
        target = folder / tag
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "--git-dir", str(git_dir), "archive", tag, "include"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
        sets[tag] = target / "include"
    return sets


@pytest.fixture(scope="module")
def header_sets(tmp_path_factory):
    return tensorrt_header_sets(tmp_path_factory.mktemp("tensorrt_headers"))


def test_plugin_compiles_against_tensorrt_headers(header_sets):
    cuda_include = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
    for tag, include in header_sets.items():
        result = subprocess.run(
            ["g++", "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-isystem", str(include),
             "-isystem", str(cuda_include), str(PLUGIN_DIR / "msdaPlugin.cpp")],
            check=False, capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, f"msdaPlugin.cpp against TensorRT {tag}:\n{result.stderr}"


@needs_nvcc
def test_plugin_library_exports_the_dynamic_entry_points(header_sets, tmp_path):
    """The CMake build of the plugin library (without libnvinfer: headers only) exports getCreators and
    setLoggerFinder for TensorRT's dynamic loading, the kernel's C entry point, and nothing else. Built against the
    oldest and the newest header set."""
    if shutil.which("cmake") is None or shutil.which("nm") is None:
        pytest.skip("cmake or nm is not installed")
    arch = os.environ.get("EDGE_LWDETR_CUDA_ARCH", "87")
    names = list(header_sets)
    for tag in dict.fromkeys([names[0], names[-1]]):
        folder = tmp_path / tag.replace("/", "_")
        subprocess.run(["cmake", "-S", PLUGIN_DIR, "-B", folder, f"-DCMAKE_CUDA_ARCHITECTURES={arch}",
                        f"-DTensorRT_ROOT={header_sets[tag].parent}", "-DEDGE_LWDETR_HEADERS_ONLY=ON"], check=True, capture_output=True)  # fmt: skip
        subprocess.run(["cmake", "--build", folder, "-j2", "--target", "edge_lwdetr_plugins"], check=True, capture_output=True)
        symbols = subprocess.run(["nm", "-D", "--defined-only", folder / "libedge_lwdetr_plugins.so"], check=True, capture_output=True, text=True).stdout
        exported = {line.split()[-1] for line in symbols.splitlines() if line.split()[1] in "TDB" and not line.split()[-1].startswith("_")}
        assert exported == {"getCreators", "setLoggerFinder", "edgeLwdetrMsdaEnqueue"}, f"TensorRT {tag}: {exported}"


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
