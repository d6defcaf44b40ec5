"""The engine sidecar: what the runtime refuses before loading an engine (TensorRT's own version and hardware
rules), and what it reads from an engine that has no sidecar."""

import json

import onnx
import pytest

from edge_lwdetr.backends.tensorrt_backend import _onnx_metadata
from edge_lwdetr.engine.sidecar import (
    IoTensor,
    check_sidecar,
    gpu_can_load,
    metadata_without_sidecar,
    read_sidecar,
    tensorrt_can_load,
    write_sidecar,
)
from edge_lwdetr.errors import EdgeLwdetrError

BUILT = {"tensorrt_version": "10.3.0.30", "gpu": {"name": "Orin", "compute_capability": "8.7"}, "build_options": {}}


def test_matching_engine_is_accepted(tmp_path):
    engine = tmp_path / "m.engine"
    write_sidecar(engine, BUILT)
    check_sidecar(read_sidecar(engine), "10.3.0.30", "Orin", "8.7")


def test_plain_engine_needs_the_exact_tensorrt_version():
    assert tensorrt_can_load("10.3.0.30", "10.3.0.30", version_compatible=False)
    assert not tensorrt_can_load("10.3.0.30", "10.3.0.31", version_compatible=False)  # build numbers too
    assert not tensorrt_can_load("10.3.0.30", "10.13.3.9", version_compatible=False)
    with pytest.raises(
        EdgeLwdetrError, match="TensorRT 10.3.0.30 for Orin .* this is TensorRT 10.13.3.9.*--version-compatible"
    ):
        check_sidecar(BUILT, "10.13.3.9", "Orin", "8.7")


def test_version_compatible_engine_loads_in_the_same_or_a_later_tensorrt():
    assert tensorrt_can_load("10.3.0.30", "10.13.3.9", version_compatible=True)
    assert tensorrt_can_load("10.3.0.30", "10.3.0.30", version_compatible=True)
    assert not tensorrt_can_load("10.13.3.9", "10.3.0.30", version_compatible=True)  # older runtime
    assert tensorrt_can_load("10.16.1.1", "11.1.0.106", version_compatible=True)  # 10 -> 11 is supported
    assert not tensorrt_can_load("11.1.0.106", "10.16.1.1", version_compatible=True)
    assert not tensorrt_can_load("8.6.2.3", "11.1.0.106", version_compatible=True)  # 8 -> 11 is not
    compatible = {**BUILT, "build_options": {"version_compatible": True}}
    check_sidecar(compatible, "10.13.3.9", "Orin", "8.7")
    with pytest.raises(EdgeLwdetrError, match="same or a later TensorRT"):
        check_sidecar({**compatible, "tensorrt_version": "10.13.3.9"}, "10.3.0.30", "Orin", "8.7")


def test_gpu_rule_is_the_compute_capability_not_the_name():
    # Another board of the same compute capability (an Orin NX engine on an AGX Orin) is TensorRT's call: accepted.
    check_sidecar(BUILT, "10.3.0.30", "Orin (nvgpu)", "8.7")
    with pytest.raises(EdgeLwdetrError, match="compute capability"):
        check_sidecar(BUILT, "10.3.0.30", "NVIDIA H100", "9.0")
    assert gpu_can_load("8.6", "8.9", "AMPERE_PLUS") and not gpu_can_load("8.6", "7.5", "AMPERE_PLUS")
    assert not gpu_can_load("8.6", "8.9", "SAME_COMPUTE_CAPABILITY") and gpu_can_load("8.9", "8.9", "NONE")
    assert not gpu_can_load("8.7", "?", "NONE")  # no driver: refuse rather than guess
    ampere_plus = {
        **BUILT,
        "gpu": {"name": "A10", "compute_capability": "8.6"},
        "build_options": {"hardware_compatibility_level": "AMPERE_PLUS"},
    }
    check_sidecar(ampere_plus, "10.3.0.30", "NVIDIA H100", "9.0")


def test_missing_or_broken_sidecar(tmp_path):
    assert read_sidecar(tmp_path / "m.engine") is None
    (tmp_path / "m.engine.json").write_text("{")
    with pytest.raises(EdgeLwdetrError, match="not valid JSON"):
        read_sidecar(tmp_path / "m.engine")


def io(*tensors):
    return [IoTensor(*t) for t in tensors]


def test_engine_without_sidecar_is_described_by_its_tensors(tmp_path):
    engine = tmp_path / "trtexec.engine"
    # trtexec from edge-lwdetr's export: the export's names, static shapes.
    meta = metadata_without_sidecar(
        engine,
        io(("images", True, (1, 3, 384, 384)), ("pred_boxes", False, (1, 300, 4)), ("logits", False, (1, 300, 91))),
        {},
    )
    assert meta == {
        "image_size": 384,
        "input_format": "float",
        "input": "images",
        "outputs": {"logits": "logits", "boxes": "pred_boxes"},
        "id2label": {},
        "variant": "custom",
    }
    # Another tool's names and a dynamic batch and size: the outputs are told apart by shape, the size comes from
    # the optimization profile.
    meta = metadata_without_sidecar(
        engine, io(("input", True, (-1, 3, -1, -1), (8, 3, 640, 640)), ("dets", False, (-1, 300, 4)), ("labels", False, (-1, 300, 80))), {}
    )  # fmt: skip
    assert (
        meta["input"] == "input"
        and meta["image_size"] == 640
        and meta["outputs"] == {"logits": "labels", "boxes": "dets"}
    )


def test_engine_without_sidecar_takes_labels_from_its_onnx(tmp_path):
    graph = onnx.helper.make_graph([], "g", [], [])
    model = onnx.helper.make_model(graph)
    for key, value in (
        ("edge_lwdetr.id2label", json.dumps({"0": "square"})),
        ("edge_lwdetr.variant", "tiny"),
        ("edge_lwdetr.image_size", "256"),
    ):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, tmp_path / "m.onnx")
    engine = tmp_path / "m.engine"
    meta = metadata_without_sidecar(
        engine,
        io(("images", True, (1, 3, 256, 256)), ("logits", False, (1, 100, 2)), ("pred_boxes", False, (1, 100, 4))),
        _onnx_metadata(engine),
    )
    assert meta["id2label"] == {"0": "square"} and meta["variant"] == "tiny" and meta["image_size"] == 256


def test_engine_that_is_not_lwdetr_is_refused(tmp_path):
    engine = tmp_path / "resnet.engine"
    with pytest.raises(EdgeLwdetrError, match="not one image batch"):
        metadata_without_sidecar(engine, io(("a", True, (1, 3, 224, 224)), ("b", True, (1, 4))), {})
    with pytest.raises(EdgeLwdetrError, match=r"not LW-DETR's logits \[B, Q, C\] and boxes"):
        metadata_without_sidecar(engine, io(("images", True, (1, 3, 224, 224)), ("prob", False, (1, 1000))), {})
    with pytest.raises(EdgeLwdetrError, match="not a square image"):
        metadata_without_sidecar(
            engine, io(("images", True, (1, 3, 224, 320)), ("l", False, (1, 9, 2)), ("b", False, (1, 9, 4))), {}
        )
