"""One command from weights to a precision graph or an engine; `build` takes whatever `export` writes, and
precision graphs made on another machine."""

import importlib.util

import numpy as np
import onnx
import pytest

from edge_lwdetr.artefacts import graph_precision
from edge_lwdetr.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_lwdetr.cli import main
from edge_lwdetr.synthetic.dataset import write_coco
from hf_models import fails_with

NO_TENSORRT = importlib.util.find_spec("tensorrt") is None


def scene_batch():
    from edge_lwdetr.processing import to_model_input
    from edge_lwdetr.synthetic.dataset import scene_at
    from edge_lwdetr.synthetic.shapes import render

    return to_model_input(render(scene_at(9, 0), 256), 256)[None]


@pytest.fixture(scope="module")
def default_export(tmp_path_factory):
    """`edge-lwdetr export` with no options but the output: the bundled weights, FP32, plugin-form MSDA."""
    path = tmp_path_factory.mktemp("one") / "model.onnx"
    assert main(["export", "--output", str(path)]) == 0
    return path


def test_default_export_then_default_build_and_a_graph_made_elsewhere(default_export, tmp_path, capsys):
    fp16 = tmp_path / "model.fp16.onnx"
    assert main(["build", "--onnx", str(default_export), "--output", str(fp16), "--onnx-only"]) == 0  # fp16 default
    assert graph_precision(onnx.load(fp16)) == "fp16"
    reference = OnnxRuntimeBackend(default_export).infer(scene_batch())
    converted = OnnxRuntimeBackend(fp16).infer(scene_batch())
    np.testing.assert_allclose(converted[1], reference[1], atol=2e-3)  # boxes: FP16 keeps them to a pixel at 512

    # Built as it is on the device: no ModelOpt step (its message would say "making the fp16 graph").
    capsys.readouterr()
    again = tmp_path / "device.onnx"
    assert main(["build", "--onnx", str(fp16), "--precision", "fp16", "--output", str(again), "--onnx-only"]) == 0
    out = capsys.readouterr().out
    assert "already is an fp16 graph" in out and "ModelOpt" not in out
    # A request the graph cannot serve is refused.
    fails_with(capsys, ["build", "--onnx", str(fp16), "--precision", "fp32", "--onnx-only"], "fp16 graph", "fp32")
    fails_with(capsys, ["build", "--onnx", str(fp16), "--precision", "int8", "--onnx-only"], "fp16 graph", "int8")


def test_one_command_int8_onnx_runs_in_onnx_runtime(tmp_path, capsys):
    calibration = tmp_path / "calib"
    write_coco(calibration, 8, seed=0)
    output = tmp_path / "shapes.int8.onnx"
    argv = ["export", "--format", "onnx", "--precision", "int8", "--data", str(calibration / "images")]
    # --int8-budget off: the budget's measure is tested in test_int8_sensitivity.py
    assert main(argv + ["--calib-count", "8", "--int8-budget", "off", "--output", str(output)]) == 0
    assert graph_precision(onnx.load(output)) == "int8"
    logits, boxes = OnnxRuntimeBackend(output).infer(scene_batch())
    assert np.isfinite(logits).all() and boxes.shape[-1] == 4
    assert f"run it: edge-lwdetr run --model {output}" in capsys.readouterr().out


@pytest.mark.skipif(not NO_TENSORRT, reason="checks the path for machines without TensorRT")
def test_engine_format_without_tensorrt_writes_the_graph_and_says_where_to_build(tmp_path, capsys):
    engine = tmp_path / "shapes.fp16.engine"
    assert main(["export", "--format", "engine", "--output", str(engine)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    graph = tmp_path / "shapes.fp16.onnx"
    assert graph.is_file() and not engine.exists()
    assert "TensorRT is not installed here" in out[-1] and f"edge-lwdetr build --onnx {graph}" in out[-1]
    assert len(out) <= 8  # quiet: no ModelOpt log
    assert graph_precision(onnx.load(graph)) == "fp16"
    assert OnnxRuntimeBackend(graph).infer(scene_batch())[0].shape[0] == 1
