"""`export --input-format uint8`: the graph takes the resized BGR frame; cast, layout and normalisation are inside it.

Checked on the bundled model: the uint8 graph against the float graph (plugin form included), its FP16 precision
graph in ONNX Runtime, `run` on both giving the same JSONL, and how engines tell the format."""

import json

import numpy as np
import onnx
import pytest
from media import write_video
from onnx import TensorProto

from edge_lwdetr.artefacts import graph_metadata
from edge_lwdetr.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_lwdetr.bundled import BUNDLED_MODEL
from edge_lwdetr.cli import main
from edge_lwdetr.engine.sidecar import IoTensor, metadata_without_sidecar
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.export.rewrite import rewrite_msda
from edge_lwdetr.processing import input_shape, to_model_input
from edge_lwdetr.synthetic.shapes import render, sample_scene


@pytest.fixture(scope="module")
def exports(bundled_onnx, tmp_path_factory):
    """The bundled model exported twice (native MSDA): float and, by the CLI, uint8 input."""
    uint8 = tmp_path_factory.mktemp("input_format") / "uint8.onnx"
    assert main(["export", "--input-format", "uint8", "--msda", "native", "--output", str(uint8)]) == 0
    return {"float": bundled_onnx, "uint8": uint8}


@pytest.fixture(scope="module")
def scene_frame():
    """A 480 x 360 BGR frame of shapes the bundled model detects (not square: the resize is exercised)."""
    scene = sample_scene(np.random.default_rng(7))
    return np.ascontiguousarray(render(scene, 480)[:360])


def test_uint8_graph_contract_and_metadata(exports):
    model = onnx.load(exports["uint8"])
    image = model.graph.input[0].type.tensor_type
    assert image.elem_type == TensorProto.UINT8
    assert [d.dim_value for d in image.shape.dim] == [1, 256, 256, 3]
    meta = graph_metadata(model)
    assert (meta.input_format, meta.image_size) == ("uint8", 256)
    assert "BGR, NHWC, uint8" in json.loads({p.key: p.value for p in model.metadata_props}["edge_lwdetr.normalization"])["input"]
    assert graph_metadata(onnx.load(exports["float"])).input_format == "float"


def test_uint8_export_matches_float_export(exports, scene_frame, tmp_path):
    """Same image, ONNX Runtime: logits and boxes within 1e-4, in the native and in the plugin (rewritten) form."""
    plugin_form = tmp_path / "uint8_plugin.onnx"
    onnx.save(rewrite_msda(onnx.load(exports["uint8"]), "plugin", "10.3"), plugin_form)
    float_backend = OnnxRuntimeBackend(exports["float"])
    logits, boxes = float_backend.infer(to_model_input(scene_frame, 256, "float")[None])
    assert (logits.max() > 0).any()  # something is detected: the comparison is on real detections
    for path in (exports["uint8"], plugin_form):
        backend = OnnxRuntimeBackend(path)
        assert backend.input_format == "uint8"
        frame_input = to_model_input(scene_frame, backend.image_size, backend.input_format)
        assert frame_input.dtype == np.uint8 and frame_input.shape == (256, 256, 3)
        got_logits, got_boxes = backend.infer(frame_input[None])
        assert np.abs(got_logits - logits).max() <= 1e-4
        assert np.abs(got_boxes - boxes).max() <= 1e-4


def test_fp16_graph_of_uint8_export_keeps_uint8_input(exports, scene_frame, tmp_path):
    """The --onnx-only FP16 graph: the input stays uint8, its Cast feeds FP16, and it runs in ONNX Runtime with the
    float FP32 graph's detections."""
    from edge_lwdetr.engine.build import build
    from edge_lwdetr.engine.options import EngineOptions

    graph = build(exports["uint8"], EngineOptions(precision="fp16", msda="plugin"), tmp_path / "u.fp16.engine", onnx_only=True)
    model = onnx.load(graph)
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    first_cast = next(n for n in model.graph.node if n.op_type == "Cast")
    assert [a.i for a in first_cast.attribute if a.name == "to"] == [TensorProto.FLOAT16]
    assert graph_metadata(model).input_format == "uint8"

    reference = OnnxRuntimeBackend(exports["float"])
    logits, boxes = reference.infer(to_model_input(scene_frame, 256)[None])
    fp16 = OnnxRuntimeBackend(graph)
    got_logits, got_boxes = fp16.infer(to_model_input(scene_frame, 256, fp16.input_format)[None])
    confident = logits > 0  # the detections that matter; FP16 moves them little
    assert confident.any()
    assert np.abs(got_logits - logits)[confident].max() < 0.05
    assert np.abs(got_boxes - boxes).max() < 0.01


def test_run_on_uint8_model_gives_the_float_models_jsonl(exports, tmp_path, capsys):
    video = write_video(tmp_path / "in.avi", 4, size=(320, 240))
    records = {}
    for fmt, path in exports.items():
        out = tmp_path / f"{fmt}.jsonl"
        assert main(["run", "--model", str(path), "--source", str(video), "--save-json", str(out), "--conf", "0.2"]) == 0
        records[fmt] = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records["float"]) == len(records["uint8"]) == 4
    assert sum(len(r["detections"]) for r in records["float"]) > 0
    for want, got in zip(records["float"], records["uint8"]):
        assert [d["label"] for d in got["detections"]] == [d["label"] for d in want["detections"]]
        for g, w in zip(got["detections"], want["detections"]):
            assert g["score"] == pytest.approx(w["score"], abs=1e-4)
            assert g["box"] == pytest.approx(w["box"], abs=1e-2)


def test_engine_without_sidecar_tells_the_format_by_its_layout(tmp_path):
    outputs = [IoTensor("logits", False, (1, 100, 6)), IoTensor("pred_boxes", False, (1, 100, 4))]
    nhwc = metadata_without_sidecar(tmp_path / "e.engine", [IoTensor("images", True, (-1, 320, 320, 3), (8, 320, 320, 3)), *outputs], {})
    nchw = metadata_without_sidecar(tmp_path / "e.engine", [IoTensor("images", True, (1, 3, 256, 256)), *outputs], {})
    assert (nhwc["input_format"], nhwc["image_size"]) == ("uint8", 320)
    assert (nchw["input_format"], nchw["image_size"]) == ("float", 256)
    # The shape TensorRT is asked for (set_input_shape, the build's batch profile) follows the format.
    assert input_shape(4, 320, "uint8") == (4, 320, 320, 3) and input_shape(4, 320, "float") == (4, 3, 320, 320)


def test_calibration_images_in_the_graphs_format(tmp_path):
    import cv2

    from edge_lwdetr.engine.calibration import calibration_images

    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((50, 70, 3), 40 * i, np.uint8))
    images = calibration_images(tmp_path, 2, 64, "uint8")
    assert images.dtype == np.uint8 and images.shape == (2, 64, 64, 3)
    assert calibration_images(tmp_path, 2, 64).shape == (2, 3, 64, 64)


def test_unknown_input_format_is_refused(tmp_path):
    from edge_lwdetr.export.onnx_export import export_onnx

    with pytest.raises(EdgeLwdetrError, match="--input-format rgb16 is unknown: choose float or uint8"):
        export_onnx(BUNDLED_MODEL, tmp_path / "x.onnx", input_format="rgb16")
