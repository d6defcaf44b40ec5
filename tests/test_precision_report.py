"""The precision rule (engine/precision_report.py) on engine-inspector JSON written in NVIDIA's format, the legacy
builder flags per precision, the GPU hidden only during INT8 calibration, and --strict-precision."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from edge_lwdetr.engine.build import check_precision
from edge_lwdetr.engine.precision import gpu_hidden
from edge_lwdetr.engine.precision_report import compute_precision, layer_kind, precision_report, tensor_precision
from edge_lwdetr.engine.trt_builder import legacy_precision_flags
from edge_lwdetr.errors import EdgeLwdetrError

# Format/Datatype spellings TensorRT writes (as in trt-engine-explorer's example engine graphs).
FP32 = "Row major linear FP32"
FP16 = "Channel major FP16 format where channel % 8 == 0"
HALF_LINEAR = "Row major linear FP16 format"
INT8 = "Thirty-two wide channel vectorized row major Int8 format"
INT32 = "Row major linear INT32"


def tensor(name: str, datatype: str) -> dict:
    return {"Name": name, "Location": "Device", "Dimensions": [1, 256, 40, 40], "Format/Datatype": datatype}


def conv(name: str, datatype: str, weights: str) -> dict:
    return {
        "Name": name, "LayerType": "CaskConvolution", "ParameterType": "Convolution",
        "Inputs": [tensor(f"{name}_in", datatype)], "Outputs": [tensor(f"{name}_out", datatype)],
        "Kernel": [3, 3], "Weights": {"Type": weights, "Count": 2304}, "Bias": {"Type": "Float", "Count": 256},
        "TacticValue": "0x0000000000000001",
    }  # fmt: skip


def matmul(name: str, datatype: str) -> dict:
    return {
        "Name": name, "LayerType": "CaskGemmMatrixMultiply", "ParameterType": "MatrixMultiply",
        "Inputs": [tensor(f"{name}_a", datatype), tensor(f"{name}_b", datatype)],
        "Outputs": [tensor(f"{name}_out", datatype)], "TacticValue": "0x0000000000000002",
    }  # fmt: skip


def msda(name: str, value: str, locations: str) -> dict:
    inputs = [
        tensor("value", value),
        tensor("shapes", INT32),
        tensor("starts", INT32),
        tensor("loc", locations),
        tensor("w", locations),
    ]
    return {
        "Name": name,
        "LayerType": "PluginV3",
        "ParameterType": "PluginV3",
        "Inputs": inputs,
        "Outputs": [tensor(f"{name}_out", value)],
    }


def elementwise(name: str, datatype: str) -> dict:
    return {
        "Name": name,
        "LayerType": "PointWiseV2",
        "ParameterType": "PointWise",
        "Inputs": [tensor(f"{name}_in", datatype)],
        "Outputs": [tensor(f"{name}_out", datatype)],
    }


def engine(layers: list[dict]) -> dict:
    return {"Layers": layers, "Bindings": ["images", "logits", "pred_boxes"]}


def test_tensor_precision_reads_tensorrt_spellings():
    assert [tensor_precision(t) for t in (FP32, FP16, HALF_LINEAR, INT8, INT32, "Float", "Half", "Int8")] == [
        "fp32", "fp16", "fp16", "int8", None, "fp32", "fp16", "int8"
    ]  # fmt: skip


def test_only_compute_layers_are_judged():
    assert layer_kind(conv("c", FP16, "Half")) == "convolution"
    assert layer_kind(matmul("m", FP16)) == "matrix_multiply"
    assert layer_kind(msda("msda_0", FP16, FP32)) == "plugin"
    assert (
        layer_kind(
            {"Name": "conv1 + QuantizeLinear + MaxPool", "LayerType": "ConvActPool", "ParameterType": "ConvActPool"}
        )
        == "convolution"
    )
    assert layer_kind(elementwise("add", FP32)) is None
    assert layer_kind({"Name": "Reformatting CopyNode", "LayerType": "Reformat", "ParameterType": "Reformat"}) is None
    assert (
        layer_kind({"Name": "{ForeignNode[/backbone/blocks.0/attn/MatMul.../Add_3]}", "LayerType": "Myelin"})
        == "matrix_multiply"
    )
    assert layer_kind({"Name": "{ForeignNode[/head/Sigmoid.../Exp]}", "LayerType": "Myelin"}) is None


def test_a_fused_int8_convolution_computes_in_int8_even_when_it_writes_fp16():
    layer = conv("conv + DequantizeLinear", INT8, "Int8")
    layer["Outputs"] = [tensor("out", FP16)]
    assert compute_precision(layer) == "int8"
    # MSDA: the narrowest float input (FP16 value), int32 shapes ignored.
    assert compute_precision(msda("msda_0", FP16, FP32)) == "fp16"


def lwdetr_like(linear: str, weights: str, value: str) -> dict:
    """Many FP32 elementwise layers (LayerNorm pieces, box arithmetic) around the linear layers and 3 MSDA."""
    layers = [elementwise(f"ew{i}", FP32) for i in range(60)]
    layers += [matmul(f"mm{i}", linear) for i in range(24)] + [conv(f"conv{i}", linear, weights) for i in range(6)]
    layers += [msda(f"msda_{i}", value, FP32) for i in range(3)]
    return engine(layers)


def test_fp16_engine_is_realised_although_most_layers_are_fp32():
    report = precision_report(lwdetr_like(HALF_LINEAR, "Half", FP16), "fp16")
    assert report["realised"] is True and report["considered"] == 33 and report["narrow"] == 33
    assert report["by_precision"] == {"fp16": 33}


def test_fp16_request_built_as_fp32_is_not_realised_and_names_the_layers():
    report = precision_report(lwdetr_like(FP32, "Float", FP32), "fp16")
    assert report["realised"] is False and report["narrow"] == 0
    assert "mm0" in report["wider_than_requested"] and "msda_0" in report["wider_than_requested"]


def test_int8_is_judged_on_convolutions_and_matrix_multiplies_only():
    # Quantized linear layers, FP16 MSDA (no INT8 path): realised.
    report = precision_report(lwdetr_like(INT8, "Int8", FP16), "int8")
    assert report["realised"] is True and report["considered"] == 30
    # Q/DQ left unfused: the linear layers run in FP16.
    assert precision_report(lwdetr_like(HALF_LINEAR, "Half", FP16), "int8")["realised"] is False
    # One quantized layer in thirty is not an INT8 engine.
    layers = lwdetr_like(HALF_LINEAR, "Half", FP16)
    layers["Layers"][60] = matmul("mm0", INT8)
    assert precision_report(layers, "int8")["realised"] is False


def test_an_engine_without_detailed_information_is_not_judged():
    names_only = {"Layers": ["conv1 + relu", "mm0", "msda_0"], "Bindings": ["images"]}
    assert precision_report(names_only, "fp16")["realised"] is None
    undescribed = engine([{"Name": "conv1", "LayerType": "CaskConvolution", "ParameterType": "Convolution"}])
    report = precision_report(undescribed, "fp16")
    assert report["realised"] is None and report["compute_layers_not_described"] == 1
    check_precision(report, strict=True, engine=Path("m.engine"))  # unknown never fails


def test_strict_precision_fails_only_when_not_realised():
    bad = precision_report(lwdetr_like(FP32, "Float", FP32), "fp16")
    check_precision(bad, strict=False, engine=Path("m.engine"))
    with pytest.raises(EdgeLwdetrError, match="fp16 NOT realised.*were written.*--strict-precision"):
        check_precision(bad, strict=True, engine=Path("m.engine"))
    check_precision(
        precision_report(lwdetr_like(HALF_LINEAR, "Half", FP16), "fp16"), strict=True, engine=Path("m.engine")
    )


def test_legacy_flags_never_set_fp16_for_fp32():
    assert legacy_precision_flags("fp32") == ()
    assert legacy_precision_flags("fp16") == ("FP16",)
    assert legacy_precision_flags("int8") == ("FP16", "INT8")


@pytest.mark.parametrize("before", [None, "0", ""])
def test_gpu_is_hidden_only_during_calibration(before, monkeypatch):
    if before is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", before)
    with gpu_hidden():
        assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == before
    with pytest.raises(RuntimeError), gpu_hidden():
        raise RuntimeError("calibration failed")
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == before


def nvidia_engine_graphs() -> list[tuple[str, dict]]:
    """trt-engine-explorer's example engine graphs, read from a TensorRT checkout when one is given."""
    repo = os.environ.get("EDGE_LWDETR_TRT_REPO")
    if not repo:
        return []
    git_dir = Path(repo) / ".git" if (Path(repo) / ".git").exists() else Path(repo)
    base = "v10.11:tools/experimental/trt-engine-explorer/examples/pytorch/resnet/A100"
    graphs = []
    for name, file in (("fp32", "fp32/resnet"), ("fp16", "fp16/resnet"), ("int8", "qat/resnet-qat")):
        text = subprocess.run(
            ["git", "--git-dir", str(git_dir), "show", f"{base}/{file}.onnx.engine.graph.json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        graphs.append((name, json.loads(text)))
    return graphs


def test_rule_on_nvidia_example_engines():
    """Where EDGE_LWDETR_TRT_REPO names a NVIDIA/TensorRT checkout: the rule on real inspector output."""
    graphs = nvidia_engine_graphs()
    if not graphs:
        pytest.skip("set EDGE_LWDETR_TRT_REPO to a NVIDIA/TensorRT clone to check the rule on its example engines")
    verdicts = {
        name: (precision_report(g, "fp16")["realised"], precision_report(g, "int8")["realised"]) for name, g in graphs
    }
    assert verdicts == {"fp32": (False, False), "fp16": (True, False), "int8": (True, True)}
