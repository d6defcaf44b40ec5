"""INT8 sensitivity (engine/sensitivity.py): a group made fragile on purpose is ranked first, and the budget keeps
the costliest groups in FP16 until the rest is within it. On the bundled model, whose detections are meaningful."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

pytest.importorskip("modelopt.onnx")

from edge_lwdetr.bundled import BUNDLED_MODEL
from edge_lwdetr.engine.node_groups import linear_groups
from edge_lwdetr.engine.precision import inline_msda

FRAGILE = "vit2.mlp"


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    from edge_lwdetr.export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("bundled") / "native.onnx"
    export_onnx(BUNDLED_MODEL, path, imgsz=256, msda="native")
    return onnx.load(path)


@pytest.fixture(scope="module")
def images():
    from edge_lwdetr.processing import to_model_input
    from edge_lwdetr.synthetic.dataset import scene_at
    from edge_lwdetr.synthetic.shapes import render

    return np.stack([to_model_input(render(scene_at(0, i), 256), 256) for i in range(8)])


def fragile(native: onnx.ModelProto) -> onnx.ModelProto:
    """`native` computing the same function, with the first linear of FRAGILE given an INT8-hostile range: its
    LayerNorm's channel 0 scaled by 1e-4 and the matching weight row by 1e4, so one weight dominates every output
    channel's scale and one activation channel falls below the activation scale."""
    model = onnx.ModelProto()
    model.CopyFrom(native)
    inlined, calls = inline_msda(model)
    first = linear_groups(inlined, calls)[FRAGILE][0]
    nodes = {n.name: n for n in model.graph.node}
    producer = {out: n for n in model.graph.node for out in n.output}
    gemm, norm = nodes[first], producer[nodes[first].input[0]]
    while norm.op_type == "Reshape":  # the export flattens tokens for the Gemm
        norm = producer[norm.input[0]]
    assert gemm.op_type == "Gemm" and norm.op_type == "LayerNormalization"
    trans_b = next((a.i for a in gemm.attribute if a.name == "transB"), 0)
    initializers = {i.name: i for i in model.graph.initializer}

    def scale(name: str, factor: float, axis: int) -> None:
        values = numpy_helper.to_array(initializers[name]).copy()
        np.moveaxis(values, axis, 0)[0] *= factor
        initializers[name].CopyFrom(numpy_helper.from_array(values, name))

    for tensor in norm.input[1:3]:
        scale(tensor, 1e-4, 0)
    scale(gemm.input[1], 1e4, 1 if trans_b else 0)
    return model


def outputs(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    from edge_lwdetr.msda_onnx import with_reference_functions

    session = ort.InferenceSession(
        with_reference_functions(model).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return np.stack([session.run(["pred_boxes"], {"images": image[None]})[0] for image in images])


def test_a_fragile_group_is_ranked_first_and_the_budget_keeps_it(native, images):
    from edge_lwdetr.engine.sensitivity import keep_in_fp16, measure
    from edge_lwdetr.quiet import libraries_quiet

    model = fragile(native)
    # The edit changes no FP32 output: only INT8 can see it.
    np.testing.assert_allclose(outputs(model, images[:2]), outputs(native, images[:2]), atol=1e-4)
    with libraries_quiet():
        report = measure(model, images, ["box_head", FRAGILE, "vit4.mlp"])
    ranked = [row["group"] for row in report["groups"]]
    assert ranked[0] == FRAGILE, report["groups"]
    costs = {row["group"]: row["ap_loss"] for row in report["groups"]}
    assert costs[FRAGILE] > 1.0, costs  # AP points against the FP32 detections

    choice = keep_in_fp16(report, budget=0.3)
    assert choice["kept_fp16"][0] == FRAGILE
    left = sum(cost for group, cost in costs.items() if group not in choice["kept_fp16"])
    assert left <= 0.3 and choice["estimated_ap_loss"] == pytest.approx(left)
    assert set(choice["fp16_nodes"]) >= set(report["all_groups"][FRAGILE])
    assert 0 < choice["expected_int8_flop_share"] < 1


def test_every_linear_node_is_in_exactly_one_named_group(native):
    inlined, calls = inline_msda(native)
    groups = linear_groups(inlined, calls)
    linear = sorted(n.name for n in inlined.graph.node if n.op_type in ("MatMul", "Gemm", "Conv"))
    assert sorted(n for nodes in groups.values() for n in nodes) == linear
    # The bundled model: 6 ViT blocks, 3 decoder layers (each one MSDA call), one projector level.
    expected = {"patch_embed", "projector", "encoder_proposals", "decoder.query_position", "class_head", "box_head"}
    expected |= {f"vit{b}.{k}" for b in range(6) for k in ("attention", "mlp")}
    expected |= {f"decoder{d}.{k}" for d in range(3)
                 for k in ("self_attention", "ffn", "msda_value", "msda_offsets", "msda_weights", "msda_output")}  # fmt: skip
    assert set(groups) == expected
    assert all(len(groups[f"decoder{d}.msda_{k}"]) == 1 for d in range(3) for k in ("value", "offsets", "weights"))


def test_groups_kept_in_fp16_get_no_int8_inputs(native, images):
    from edge_lwdetr.engine.precision import precision_graph
    from edge_lwdetr.engine.sensitivity import int8_flop_share, matmul_flops
    from edge_lwdetr.quiet import libraries_quiet

    inlined, calls = inline_msda(native)
    kept = linear_groups(inlined, calls)["projector"]
    with libraries_quiet():
        graph = precision_graph(native, "int8", images[:4], fp16_nodes=kept)
    producer = {out: n.op_type for n in graph.graph.node for out in n.output}
    nodes = {n.name: n for n in graph.graph.node}
    assert all(producer.get(t) != "DequantizeLinear" for name in kept for t in nodes[name].input)
    # The projector is four 1x1/3x3 Convs on 16x16 maps: its FLOPs are what the count must leave out of INT8.
    flops = matmul_flops(inlined)
    assert int8_flop_share(graph, flops) <= 1 - sum(flops[n] for n in kept) / sum(flops.values()) + 1e-9


@pytest.fixture(scope="module")
def within_budget(native, images, monkeypatch_module):
    """The budgeted INT8 graph of the bundled model with a budget the all-INT8 graph is within: no group measured."""
    from edge_lwdetr.engine import mixed_int8

    def not_needed(*args, **kwargs):
        raise AssertionError("the per-group measure ran although the all-INT8 graph is within the budget")

    monkeypatch_module.setattr(mixed_int8, "measure", not_needed)
    return mixed_int8.mixed_int8_graph(native, images[:4], budget=100.0)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_within_the_budget_every_group_stays_int8_and_the_report_says_so(within_budget):
    import json

    from edge_lwdetr.engine.mixed_int8 import METADATA_KEY

    summary = json.loads({p.key: p.value for p in within_budget.metadata_props}[METADATA_KEY])
    assert summary["kept_fp16"] == [] and summary["measured_ap_loss"] == summary["int8_ap_loss"] <= 100
    assert summary["int8_matmul_flop_share"] > 0.99
    assert "FP32 detections" in summary["measured_against"]  # no labels given


def test_quantize_nodes_read_fp32_and_dequantize_feeds_fp16_layers(within_budget, native, images, tmp_path):
    """ONNX Runtime's CPU QuantizeLinear truncates FP16 input (precision.Q_FP32): Q reads FP32 with an FP32 scale;
    DQ keeps a constant FP16 scale and feeds its FP16 layer directly (the pattern TensorRT fuses); the graph runs in
    OnnxRuntimeBackend and agrees with FP32."""
    from edge_lwdetr.backends.onnxruntime_backend import OnnxRuntimeBackend
    from edge_lwdetr.engine.node_groups import LINEAR

    graph = within_budget
    types = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(graph).graph.value_info}
    types |= {i.name: i.data_type for i in graph.graph.initializer} | {i.name: 1 for i in graph.graph.input}
    initializers = {i.name for i in graph.graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    quantize = [n for n in graph.graph.node if n.op_type == "QuantizeLinear"]
    dequantize = [n for n in graph.graph.node if n.op_type == "DequantizeLinear"]
    assert len(quantize) == len(dequantize) > 100
    FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert all(types[n.input[0]] == FLOAT and types[n.input[1]] == FLOAT for n in quantize)
    assert all(n.input[1] in initializers and types[n.input[1]] == FLOAT16 for n in dequantize)
    assert all(c.op_type in LINEAR | {"Concat"} for n in dequantize for c in consumers[n.output[0]])

    path = tmp_path / "int8.onnx"
    onnx.save(graph, path)
    # The extended optimisations would fuse these FP32 Q/DQ into integer kernels that refuse the graph.
    backend = OnnxRuntimeBackend(path)
    boxes = np.stack([backend.infer(image[None])[1] for image in images[:2]])
    assert np.median(np.abs(boxes - outputs(native, images[:2]))) < 0.01  # normalised box coordinates


def test_group_costs_are_scaled_to_the_measured_whole_and_the_budget_keeps_the_costliest():
    from edge_lwdetr.engine.sensitivity import calibrated, keep_in_fp16

    rows = [{"group": g, "ap_loss": cost, "flops": 10} for g, cost in (("a", 4.0), ("b", 3.0), ("c", 2.0), ("d", 1.0))]
    report = {"groups": rows, "total_flops": 40, "all_groups": {g: [g + "0"] for g in "abcd"}}
    scaled = calibrated(report, whole_loss=1.0)
    assert [row["ap_loss"] for row in scaled["groups"]] == pytest.approx([0.4, 0.3, 0.2, 0.1])
    assert [row["ap_loss_vs_fp32"] for row in scaled["groups"]] == [4.0, 3.0, 2.0, 1.0]
    choice = keep_in_fp16(scaled, budget=0.35)
    assert choice["kept_fp16"] == ["a", "b"] and choice["estimated_ap_loss"] == pytest.approx(0.3)
    assert choice["expected_int8_flop_share"] == pytest.approx(0.5)
    assert keep_in_fp16(calibrated(report, whole_loss=0.2), budget=0.3)["kept_fp16"] == []


def test_quant_sensitivity_command_prints_and_writes_the_table(native, tmp_path, capsys):
    import json

    from edge_lwdetr.cli import main
    from edge_lwdetr.synthetic.dataset import write_coco

    path, calibration, report = tmp_path / "native.onnx", tmp_path / "calib", tmp_path / "report.json"
    onnx.save(native, path)
    write_coco(calibration, 4, seed=0)  # a COCO folder: its images are read from images/
    argv = ["quant-sensitivity", "--onnx", str(path), "--calib-data", str(calibration), "--calib-count", "4"]
    assert main(argv + ["--groups", "box_head", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "box_head" in out and "unscaled (--groups)" in out and "budget 0.3 AP" in out
    assert [row["group"] for row in json.loads(report.read_text())["groups"]] == ["box_head"]


def test_calibration_images_are_spread_over_the_folder(tmp_path):
    import cv2

    from edge_lwdetr.engine.calibration import calibration_images

    for index in range(10):
        cv2.imwrite(str(tmp_path / f"{index:02d}.png"), np.full((32, 32, 3), 20 * index, np.uint8))
    chosen = calibration_images(tmp_path, 4, 32)
    # First, last and evenly between (files 0, 3, 6, 9), not the first four.
    np.testing.assert_allclose(chosen.mean(axis=(1, 2, 3)) * 255, [0, 60, 120, 180], atol=1)
