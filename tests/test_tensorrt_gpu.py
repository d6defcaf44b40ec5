"""TensorRT itself, where it and a GPU exist (skipped elsewhere): version-compatible build and load, the plugin
library loaded the dynamic way, CUDA-graph replay equal to plain execution, a failing enqueue raising."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from hf_models import build_plugin_library

from edge_lwdetr.cli import main

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("pycuda") is None,
    reason="needs TensorRT and pycuda on a GPU machine (verified there, not here)",
)


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    return build_plugin_library(tmp_path_factory.mktemp("plugins"))


@pytest.fixture(scope="module")
def fp32_engine(native_export, plugin, tmp_path_factory):
    _, native_path, _ = native_export("tiny")
    engine = tmp_path_factory.mktemp("engine") / "tiny.fp32.engine"
    assert (
        main(
            [
                "build",
                "--onnx",
                str(native_path),
                "--precision",
                "fp32",
                "--output",
                str(engine),
                "--plugin",
                str(plugin),
            ]
        )
        == 0
    )
    return native_path, engine


def images(size: int, batch: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, 3, size, size), dtype=np.float32)


def test_version_compatible_engine_builds_and_loads(native_export, plugin, tmp_path):
    """Built here (the builder inspects the plan in a fresh process), run in another fresh process without the
    plugin library: the plan carries it, as it would for a user with a later TensorRT."""
    from edge_lwdetr.backends.onnxruntime_backend import OnnxRuntimeBackend

    _, native_path, _ = native_export("tiny")
    engine = tmp_path / "tiny.vc.engine"
    argv = [
        "build", "--onnx", str(native_path), "--precision", "fp32", "--output", str(engine), "--plugin", str(plugin),
        "--version-compatible",
    ]  # fmt: skip
    assert main(argv) == 0
    sidecar = json.loads(engine.with_suffix(".engine.json").read_text())
    assert sidecar["build_options"]["version_compatible"] is True and sidecar["plugin_serialized"] is True
    size = sidecar["image_size"]
    np.save(tmp_path / "images.npy", images(size))
    run_python(
        "import numpy as np\n"
        "from pathlib import Path\n"
        "from edge_lwdetr.backends.tensorrt_backend import TensorRTBackend\n"
        f"backend = TensorRTBackend(Path({str(engine)!r}))\n"
        f"logits, boxes = backend.infer(np.load({str(tmp_path / 'images.npy')!r}))\n"
        "backend.close()\n"
        f"np.savez({str(tmp_path / 'out.npz')!r}, logits=logits, boxes=boxes)\n"
    )
    got = np.load(tmp_path / "out.npz")
    want = OnnxRuntimeBackend(native_path).infer(images(size))
    np.testing.assert_allclose(got["logits"], want[0], atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(got["boxes"], want[1], atol=1e-3, rtol=1e-3)


def run_python(code: str) -> None:
    """A fresh process: what was loaded before does not decide the outcome. The timeout turns a hang (a lock
    TensorRT might hold while it calls getCreators, which withdraws the static registration) into a failure."""
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("preloaded", [False, True])
def test_plugin_library_loads_the_dynamic_way(plugin, preloaded):
    """IPluginRegistry.load_library (getCreators) registers the creator, also after a ctypes load in the same
    process (the static registration is withdrawn first, or loadLibrary would refuse the duplicate)."""
    run_python(
        "import ctypes, tensorrt as trt\n"
        "logger = trt.Logger(trt.Logger.WARNING)\n"
        "builder = trt.Builder(logger)\n"
        f"if {preloaded}: ctypes.CDLL({str(plugin)!r}, mode=ctypes.RTLD_GLOBAL)\n"
        "registry = builder.get_plugin_registry()\n"
        f"assert registry.load_library({str(plugin)!r}) is not None, 'load_library refused the library'\n"
        "assert registry.get_creator('EdgeLwdetrMSDA', '1', 'edge_lwdetr') is not None\n"
    )


def test_plugin_library_registers_statically(plugin):
    run_python(
        "import ctypes, tensorrt as trt\n"
        "trt.Builder(trt.Logger(trt.Logger.WARNING))\n"
        f"ctypes.CDLL({str(plugin)!r}, mode=ctypes.RTLD_GLOBAL)\n"
        "assert trt.get_plugin_registry().get_creator('EdgeLwdetrMSDA', '1', 'edge_lwdetr') is not None\n"
    )


def test_cuda_graph_replay_equals_plain_execution(fp32_engine, plugin):
    from edge_lwdetr.backends.tensorrt_backend import TensorRTBackend

    _, engine = fp32_engine
    plain = TensorRTBackend(engine, plugin, cuda_graph=False)
    graph = TensorRTBackend(engine, plugin, cuda_graph=True)
    try:
        for seed in range(4):  # the first call captures, the next ones replay
            batch = images(plain.image_size, seed=seed)
            for got, want in zip(graph.infer(batch), plain.infer(batch)):
                np.testing.assert_array_equal(got, want)
        assert graph._graph is not None, "the engine was not captured into a CUDA graph"
    finally:
        graph.close()
        plain.close()


def test_failing_enqueue_raises_instead_of_returning_stale_outputs(fp32_engine, plugin):
    from edge_lwdetr.backends.tensorrt_backend import TensorRTBackend
    from edge_lwdetr.errors import EdgeLwdetrError

    _, engine = fp32_engine
    backend = TensorRTBackend(engine, plugin)
    try:
        backend.infer(images(backend.image_size))
        # An output bound to nullptr makes enqueueV3 fail its parameter check and return False.
        assert backend.context.set_tensor_address("logits", 0)
        with pytest.raises(EdgeLwdetrError, match="execute_async_v3 failed"):
            backend.infer(images(backend.image_size, seed=1))
    finally:
        backend.close()
