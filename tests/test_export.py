"""ONNX export and the MSDA rewrite, verified in ONNX Runtime against PyTorch."""

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper

from edge_lwdetr.cli import main
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.msda_onnx import builtin_plugin_version, with_reference_functions
from edge_lwdetr.export.rewrite import rewrite_msda
from edge_lwdetr.model.loading import load_model
from edge_lwdetr.processing import normalize
from hf_models import ONNX_SIZES as SIZES
from hf_models import fails_with, well_conditioned_images

PLUGIN_OPS = {"plugin": ("EdgeLwdetrMSDA", "edge_lwdetr", "1", "edge_lwdetr"), "builtin": ("MultiscaleDeformableAttnPlugin_TRT", "trt", "1", "")}


def run_onnx(model: onnx.ModelProto, images: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits", "pred_boxes"], {"images": images})


def pytorch_outputs(folder, images: np.ndarray):
    model = load_model(folder).model
    with torch.no_grad():
        logits, boxes = model(torch.from_numpy(normalize(images)))
    return logits.numpy(), boxes.numpy()


@pytest.mark.parametrize("variant", list(SIZES))
def test_portable_export_matches_pytorch_at_batch_1_3_4(variant, native_export):
    folder, path, _ = native_export(variant)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    images = well_conditioned_images(load_model(folder).model, 4, SIZES[variant])
    logits, boxes = pytorch_outputs(folder, images)
    for batch in (1, 3, 4):
        onnx_logits, onnx_boxes = run_onnx(model, images[:batch])
        assert onnx_logits.shape == logits[:batch].shape
        assert np.abs(onnx_logits - logits[:batch]).max() <= 1e-4
        assert np.abs(onnx_boxes - boxes[:batch]).max() <= 1e-4


@pytest.mark.parametrize("target", ["plugin", "builtin"])
@pytest.mark.parametrize("variant", ["tiny", "large"])  # one and two feature levels
def test_rewritten_graph_matches_portable(variant, target, native_export):
    _, path, native = native_export(variant)
    rewritten = rewrite_msda(onnx.load(path), target, trt_version="10.3")
    onnx.checker.check_model(rewritten, full_check=True)

    op_type, domain, version, namespace = PLUGIN_OPS[target]
    census = Counter(node.op_type for node in rewritten.graph.node)
    plugin_nodes = [n for n in rewritten.graph.node if (n.op_type, n.domain) == (op_type, domain)]
    assert len(plugin_nodes) == 3  # one per decoder layer
    assert census["GridSample"] == 0 and not rewritten.functions  # nothing a parser could inline instead
    initializers = {i.name: i for i in rewritten.graph.initializer}
    levels = 2 if variant == "large" else 1
    for node in plugin_nodes:
        assert {a.name: a.s.decode() for a in node.attribute} == {"plugin_version": version, "plugin_namespace": namespace}
        shapes, starts = initializers[node.input[1]], initializers[node.input[2]]
        assert shapes.data_type == starts.data_type == onnx.TensorProto.INT32
        assert list(shapes.dims) == [levels, 2] and list(starts.dims) == [levels]
    inferred = onnx.shape_inference.infer_shapes(rewritten, strict_mode=True)
    output_types = {v.name: v.type.tensor_type for v in inferred.graph.value_info}
    out = output_types[plugin_nodes[0].output[0]]
    assert out.elem_type == onnx.TensorProto.FLOAT
    queries, heads = (100, 16) if variant == "tiny" else (300, 24)
    assert [d.dim_param or d.dim_value for d in out.shape.dim] == ["batch", queries, heads, 16]

    images = np.random.default_rng(1).random((2, 3, SIZES[variant], SIZES[variant]), dtype=np.float32)
    expected = run_onnx(native, images)
    actual = run_onnx(with_reference_functions(rewritten), images)
    for a, e in zip(actual, expected):
        assert np.abs(a - e).max() <= 1e-5


def test_export_is_self_contained_with_metadata(native_export):
    folder, path, model = native_export("tiny")
    assert not any(i.data_location == onnx.TensorProto.EXTERNAL for i in model.graph.initializer)
    assert next(o.version for o in model.opset_import if o.domain == "") >= 17
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["LayerNormalization"] > 0 and ops["Resize"] == 0 and ops["GridSample"] == 0
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["edge_lwdetr.variant"] == "tiny" and meta["edge_lwdetr.image_size"] == "256"
    assert meta["edge_lwdetr.batch"] == "dynamic" and meta["edge_lwdetr.msda"] == "native"
    assert len(meta["edge_lwdetr.source_sha256"]) == 64 and '"mean"' in meta["edge_lwdetr.normalization"]
    # Training-only tensors (Group-DETR groups 1..12) are not in the graph: its weights are about the
    # inference parameters (plus the position embedding resized to the input grid).
    weights = sum(int(np.prod(i.dims)) for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT)
    inference_params = sum(p.numel() for p in load_model(folder).model.parameters())
    assert weights < 1.05 * inference_params


def test_cli_export_static_batch_plugin(hf_checkpoint, tmp_path, capsys):
    folder, _ = hf_checkpoint("tiny")
    out = tmp_path / "tiny.onnx"
    assert main(["export", "--weights", str(folder), "--output", str(out), "--imgsz", "256"]) == 0
    assert "rewrote 3 MSDA nodes" in capsys.readouterr().out
    model = onnx.load(out)
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 256, 256]
    assert sum(n.op_type == "EdgeLwdetrMSDA" for n in model.graph.node) == 3
    images = well_conditioned_images(load_model(folder).model, 1, 256, seed=2)
    logits, boxes = pytorch_outputs(folder, images)
    onnx_logits, onnx_boxes = run_onnx(with_reference_functions(model), images)
    assert np.abs(onnx_logits - logits).max() <= 1e-4 and np.abs(onnx_boxes - boxes).max() <= 1e-4


def test_builtin_plugin_version_follows_tensorrt():
    assert [builtin_plugin_version(v) for v in ("10.3", "10.10.0", "10.11", "10.13.3.9", "11.1")] == ["1", "1", "2", "2", "2"]
    with pytest.raises(EdgeLwdetrError, match="not a version"):
        builtin_plugin_version("ten")


def one_node_model(op_type: str, path) -> None:
    inputs = [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 4, 4])]
    if op_type == "GridSample":
        inputs.append(helper.make_tensor_value_info("g", onnx.TensorProto.FLOAT, [1, 2, 2, 2]))
    node = helper.make_node(op_type, [i.name for i in inputs], ["y"])
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)




def test_rewrite_refuses_a_graph_without_msda(tmp_path, capsys):
    one_node_model("Relu", tmp_path / "relu.onnx")
    fails_with(capsys, ["rewrite", str(tmp_path / "relu.onnx"), str(tmp_path / "o.onnx")], "no multi-scale deformable attention")
    one_node_model("GridSample", tmp_path / "gs.onnx")
    fails_with(capsys, ["rewrite", str(tmp_path / "gs.onnx"), str(tmp_path / "o.onnx")], "1 GridSample nodes")


def test_rewrite_refuses_a_file_that_is_not_onnx(tmp_path, capsys):
    (tmp_path / "notes.onnx").write_bytes(b"\x00\xffnot a protobuf" * 10)
    fails_with(capsys, ["rewrite", str(tmp_path / "notes.onnx"), str(tmp_path / "o.onnx")], "not an ONNX model")
    fails_with(capsys, ["rewrite", str(tmp_path / "missing.onnx"), str(tmp_path / "o.onnx")], "not found")


def test_export_refuses_bad_options(hf_checkpoint, tmp_path, capsys):
    folder, _ = hf_checkpoint("tiny")
    base = ["export", "--weights", str(folder), "--output", str(tmp_path / "m.onnx")]
    fails_with(capsys, base + ["--imgsz", "600"], "600", "576 or 640")
    fails_with(capsys, base + ["--opset", "17"], "18, 19, 20")
    fails_with(capsys, ["export", "--weights", str(folder), "--output", str(tmp_path / "no" / "m.onnx")], "does not exist")
