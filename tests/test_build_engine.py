"""build_engine: FP16/INT8 precision graphs (ModelOpt, CPU) checked in ONNX Runtime; engines where TensorRT is."""

import importlib.util
import json
import os
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edge_lwdetr.cli import main
from edge_lwdetr.msda_onnx import with_reference_functions
from edge_lwdetr.export.rewrite import rewrite_msda
from hf_models import ONNX_SIZES, build_plugin_library, fails_with

needs_modelopt = pytest.mark.skipif(
    importlib.util.find_spec("modelopt") is None, reason="NVIDIA ModelOpt is not installed (the quant extra)"
)
needs_tensorrt = pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None, reason="TensorRT is not installed (engines build on GPU machines)"
)
SIZE = ONNX_SIZES["tiny"]


def generated_frames(count: int, seed: int = 0) -> list[np.ndarray]:
    """Frames with coloured rectangles and discs on a textured background."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        frame = rng.integers(40, 90, (240, 320, 3), dtype=np.uint8)
        for _ in range(4):
            x, y = int(rng.integers(0, 260)), int(rng.integers(0, 180))
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            cv2.rectangle(frame, (x, y), (x + int(rng.integers(20, 60)), y + int(rng.integers(20, 60))), colour, -1)
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def calibration_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("calib") / "calib.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for frame in generated_frames(12):
        writer.write(frame)
    writer.release()
    return path


def run(model: onnx.ModelProto, images: np.ndarray) -> list[np.ndarray]:
    from edge_lwdetr.backends.onnxruntime_backend import optimization_level

    options = ort.SessionOptions()
    options.graph_optimization_level = optimization_level(model)
    session = ort.InferenceSession(
        with_reference_functions(model).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(["logits", "pred_boxes"], {"images": images})


def agreement(reference: list[np.ndarray], other: list[np.ndarray], k: int = 100) -> tuple[float, float]:
    """Top-k (query, class) score agreement per image (share of the same pairs), and mean box L1 (normalised)."""
    shares = []
    for ref_logits, logits in zip(reference[0], other[0]):
        top_ref = set(np.argsort(-ref_logits.reshape(-1))[:k])
        top = set(np.argsort(-logits.reshape(-1))[:k])
        shares.append(len(top_ref & top) / k)
    return float(np.mean(shares)), float(np.abs(reference[1] - other[1]).mean())


@needs_modelopt
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_precision_graph_runs_on_cpu_close_to_fp32(precision, native_export, calibration_video, tmp_path, record_property):
    _, native_path, native = native_export("tiny")
    output = tmp_path / f"tiny.{precision}.engine"
    argv = ["build", "--onnx", str(native_path), "--precision", precision, "--output", str(output), "--onnx-only"]
    if precision == "int8":  # the budget's measure is tested in test_int8_sensitivity.py
        argv += ["--calib-data", str(calibration_video), "--calib-count", "8", "--int8-budget", "off"]
    assert main(argv) == 0
    graph = onnx.load(output.with_suffix(".onnx"))
    onnx.checker.check_model(graph, full_check=True)

    # Explicit precision: FP16 tensors (and Q/DQ for INT8); MSDA as plugin nodes with FP16 value, FP32 locations.
    types = {v.name: v.type.tensor_type.elem_type for v in list(graph.graph.value_info) + list(graph.graph.input)}
    plugins = [n for n in graph.graph.node if n.op_type == "EdgeLwdetrMSDA"]
    assert len(plugins) == 3 and not graph.functions
    for node in plugins:
        assert types[node.input[0]] == onnx.TensorProto.FLOAT16
        assert types[node.input[3]] == types[node.input[4]] == onnx.TensorProto.FLOAT
    assert sum(t == onnx.TensorProto.FLOAT16 for t in types.values()) > 100
    q_dq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.graph.node)
    assert (q_dq > 0) == (precision == "int8")
    for node in graph.graph.node:
        if node.op_type == "LayerNormalization":
            assert types.get(node.input[0], onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT

    images = np.stack([cv2.cvtColor(cv2.resize(f, (SIZE, SIZE)), cv2.COLOR_BGR2RGB).transpose(2, 0, 1) for f in generated_frames(4, seed=5)])
    images = images.astype(np.float32) / 255
    reference, reduced = run(native, images), run(graph, images)
    top100, box_l1 = agreement(reference, reduced)
    record_property(f"{precision}_top100_agreement", top100)
    record_property(f"{precision}_mean_box_l1", box_l1)
    print(f"{precision}: top-100 agreement {top100:.3f}, mean box L1 {box_l1:.4f} (random weights)")
    # Random weights make near-tied scores common, and 8 calibration frames are few, so these bounds are loose
    # (measured: fp16 0.985 / 0.021, int8 0.875 / 0.168 with entropy calibration); a broken graph agrees on almost
    # nothing.
    minimum_agreement, maximum_l1 = {"fp16": (0.8, 0.05), "int8": (0.5, 0.3)}[precision]
    assert top100 >= minimum_agreement and box_l1 <= maximum_l1

    # NVIDIA's builtin plugin takes one float type: the rewrite casts locations and weights to the value's type.
    builtin = rewrite_msda(graph, "builtin", trt_version="10.3")
    onnx.checker.check_model(builtin, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(builtin)
    types = {v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    for node in (n for n in builtin.graph.node if n.op_type == "MultiscaleDeformableAttnPlugin_TRT"):
        assert {types[node.input[i]] for i in (0, 3, 4)} == {onnx.TensorProto.FLOAT16}
    assert np.abs(run(builtin, images)[1] - reduced[1]).mean() < 0.05


@needs_modelopt
def test_int8_calibrates_from_an_image_folder(native_export, tmp_path):
    _, native_path, _ = native_export("tiny")
    folder = tmp_path / "images"
    folder.mkdir()
    for i, frame in enumerate(generated_frames(5, seed=9)):
        cv2.imwrite(str(folder / f"{i}.png"), frame)
    output = tmp_path / "folder.int8.engine"
    argv = ["build", "--onnx", str(native_path), "--precision", "int8", "--calib-data", str(folder), "--onnx-only"]
    argv += ["--int8-budget", "off"]  # the budget's measure is tested in test_int8_sensitivity.py
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    assert main(argv + ["--output", str(output)]) == 0
    assert output.with_suffix(".onnx").is_file()
    # Calibration hid the GPU only while it ran: a one-process int8 build goes on to TensorRT, which needs it.
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == visible




def test_build_refuses_bad_input(native_export, tmp_path, capsys):
    _, native_path, native = native_export("tiny")
    base = ["build", "--onnx", str(native_path)]
    fails_with(capsys, base + ["--precision", "int8"], "calibration")
    fails_with(capsys, base + ["--plugin", str(tmp_path / "libnope.so")], "plugin library not found", "libnope.so")
    fails_with(capsys, base + ["--output", str(tmp_path / "no" / "m.engine"), "--onnx-only"], "cannot write")
    fails_with(capsys, base + ["--precision", "int8", "--calib-data", str(tmp_path / "nothing"), "--onnx-only"], "not found")
    # A graph without MSDA nodes cannot give the plugin layers the engine needs.
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["images"], ["logits"])], "g",
        [onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, 64, 64])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, None)],
    )  # fmt: skip
    onnx.save(onnx.helper.make_model(graph), tmp_path / "relu.onnx")
    fails_with(capsys, ["build", "--onnx", str(tmp_path / "relu.onnx"), "--onnx-only"], "no MSDA node")


@needs_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_matches_onnxruntime(precision, native_export, calibration_video, tmp_path):
    """Where TensorRT runs: build the plugin, an engine of tiny, and compare it with ONNX Runtime via polygraphy."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    from polygraphy.comparator import Comparator, CompareFunc

    plugin = build_plugin_library(tmp_path / "plugins")
    _, native_path, native = native_export("tiny")
    engine = tmp_path / f"tiny.{precision}.engine"
    argv = ["build", "--onnx", str(native_path), "--precision", precision, "--output", str(engine), "--plugin", str(plugin)]
    if precision == "int8":
        argv += ["--calib-data", str(calibration_video), "--calib-count", "8"]
    assert main(argv) == 0
    sidecar = json.loads(engine.with_suffix(".engine.json").read_text())
    assert sidecar["precision"] == precision and sidecar["image_size"] == SIZE

    images = np.random.default_rng(0).random((1, 3, SIZE, SIZE), dtype=np.float32)
    tolerance = {"fp32": 1e-3, "fp16": 5e-2, "int8": 2e-1}[precision]  # on logits and normalised boxes (median)
    runners = [
        OnnxrtRunner(SessionFromOnnx(native_path.read_bytes())),
        TrtRunner(EngineFromBytes(engine.read_bytes())),
    ]
    results = Comparator.run(runners, data_loader=[{"images": images}])
    assert Comparator.compare_accuracy(
        results, compare_func=CompareFunc.simple(atol=tolerance, rtol=tolerance, check_error_stat="median")
    )
