"""Did the engine compute in the precision asked for? Decided from TensorRT's engine inspector, without TensorRT.

The input is `IEngineInspector.get_engine_information(LayerInformationFormat.JSON)` of an engine built with
`ProfilingVerbosity.DETAILED`: {"Layers": [{"Name", "LayerType", "ParameterType", "Inputs": [{"Format/Datatype",
...}], "Outputs": [...], "Weights"/"ConvWeights": {"Type", "Count"}, ...}], "Bindings": [...]} (the format of the
engine graphs in NVIDIA/TensorRT tools/experimental/trt-engine-explorer/examples, which trex reads).

The rule, and why:
- Only the layers that carry the compute are judged: convolutions (with their fused neighbours: ConvActPool, a
  Q/DQ folded in), matrix multiplies / GEMMs, and plugin layers (MSDA). Everything else legitimately stays wide in
  our graphs (LayerNorm, softmax, box and sampling-location arithmetic, shape layers, reformats), so a share of
  *all* layers says little.
- A compute layer computes in the narrowest type among its floating-point or INT8 inputs and its weights: an INT8
  convolution reads INT8 activations and INT8 weights even when a fused DequantizeLinear makes it write FP16.
  Integer index inputs (MSDA's int32 spatial shapes) do not count.
- FP16 is realised when more than half of the compute layers compute in FP16 or narrower; INT8 when more than half
  of the convolutions and matrix multiplies compute in INT8 (MSDA has no INT8 path, so plugins are left out).
  In a realised build nearly all of them are narrow (ModelOpt converts every MatMul/Gemm/Conv outside the FP32
  regions, which hold none); in a build where the precision was lost (flags ignored, Q/DQ left unfused) nearly all
  are FP32. Half is a line far from both.
- Layers whose inputs the inspector does not describe (an engine built without DETAILED verbosity, fused Myelin
  regions named without their MatMuls) cannot be judged: with no judgeable compute layer the verdict is None
  (unknown), never a failure.
"""

from __future__ import annotations

import re
from typing import Any

# Narrow to wide; a compute layer takes the first of these that any of its inputs or weights has.
_ORDER = ("int8", "fp8", "fp16", "fp32")
# Tokens of "Format/Datatype" and weight "Type" strings (trex's activations.py lists the same spellings).
_TYPE_TOKENS = {
    "int8": "int8", "fp8": "fp8", "fp16": "fp16", "half": "fp16", "bfloat16": "fp16", "bf16": "fp16",
    "fp32": "fp32", "float": "fp32",
}  # fmt: skip
_TOKEN = re.compile(r"[A-Za-z]+\d*")
_CONVOLUTION = ("convolution", "deconvolution", "convactpool")
_MATRIX_MULTIPLY = ("matrixmultiply", "gemm", "fullyconnected")
_PLUGIN = ("pluginv2", "pluginv3", "plugin")
_MATMUL_IN_NAME = re.compile(r"matmul|gemm|conv", re.IGNORECASE)


def tensor_precision(description: str) -> str | None:
    """'fp32' / 'fp16' / 'fp8' / 'int8' from a "Format/Datatype" or weight "Type" string; None for other types."""
    for token in _TOKEN.findall(str(description)):
        kind = _TYPE_TOKENS.get(token.lower())
        if kind is not None:
            return kind
    return None


def layer_kind(layer: dict[str, Any]) -> str | None:
    """'convolution', 'matrix_multiply' or 'plugin' for a layer that carries compute, else None."""
    kinds = [str(layer.get(key, "")).lower() for key in ("ParameterType", "LayerType", "ConvParameterType")]
    if any(k.startswith(_CONVOLUTION) or k.endswith("convolution") for k in kinds):
        return "convolution"
    if any(m in k for k in kinds for m in _MATRIX_MULTIPLY):
        return "matrix_multiply"
    if any(k.startswith(_PLUGIN) for k in kinds):
        return "plugin"
    # A Myelin / kgen region counts when its name shows it holds a linear layer.
    if any(k in ("myelin", "kgen") for k in kinds) and _MATMUL_IN_NAME.search(str(layer.get("Name", ""))):
        return "matrix_multiply"
    return None


def compute_precision(layer: dict[str, Any]) -> str | None:
    """The narrowest precision among a layer's floating-point / INT8 inputs and weights; None if none is given."""
    found = [tensor_precision(t.get("Format/Datatype", "")) for t in layer.get("Inputs", []) if isinstance(t, dict)]
    for key, value in layer.items():
        if key.endswith("Weights") and isinstance(value, dict) and value.get("Count", 1):
            found.append(tensor_precision(value.get("Type", "")))
    ranked = [kind for kind in found if kind is not None]
    return min(ranked, key=_ORDER.index) if ranked else None


def precision_report(engine_information: dict[str, Any], requested: str) -> dict[str, Any]:
    """The verdict for `requested` ('fp32', 'fp16', 'int8') with its evidence; see the module docstring."""
    judged: list[tuple[str, str, str]] = []  # (name, kind, precision)
    unjudged = 0
    for layer in engine_information.get("Layers", []):
        if not isinstance(layer, dict):
            continue  # LAYER_NAMES_ONLY verbosity lists bare names
        kind = layer_kind(layer)
        if kind is None:
            continue
        precision = compute_precision(layer)
        if precision is None:
            unjudged += 1
        else:
            judged.append((str(layer.get("Name", "?")), kind, precision))

    if requested == "int8":
        considered = [entry for entry in judged if entry[1] != "plugin"]
        narrow = {"int8"}
    else:
        considered = judged
        narrow = {"int8", "fp8", "fp16"} if requested == "fp16" else set(_ORDER)
    narrow_count = sum(precision in narrow for _, _, precision in considered)
    realised = None if not considered else narrow_count * 2 > len(considered)
    counts: dict[str, int] = {}
    for _, _, precision in judged:
        counts[precision] = counts.get(precision, 0) + 1
    return {
        "requested": requested,
        "realised": realised,
        "rule": (
            "more than half of the convolutions and matrix multiplies compute in int8"
            if requested == "int8"
            else "more than half of the compute layers (convolutions, matrix multiplies, plugins) compute in fp16 "
            "or narrower"
            if requested == "fp16"
            else "fp32 is always realised"
        ),
        "compute_layers": len(judged),
        "compute_layers_not_described": unjudged,
        "considered": len(considered),
        "narrow": narrow_count,
        "by_precision": dict(sorted(counts.items())),
        # The layers that stayed wider than asked: where to look when the verdict is False.
        "wider_than_requested": [name for name, _, precision in considered if precision not in narrow][:50],
    }


def describe(report: dict[str, Any]) -> str:
    """One line for the build log."""
    if report["realised"] is None:
        return (
            f"{report['requested']}: not judged (the inspector described no compute layer; the engine needs "
            "ProfilingVerbosity.DETAILED)"
        )
    verdict = "realised" if report["realised"] else "NOT realised"
    return (
        f"{report['requested']} {verdict}: {report['narrow']} of {report['considered']} compute layers narrow "
        f"enough ({report['rule']}); compute layers by precision {report['by_precision']}"
    )
