"""What an artefact is, read from the artefact itself: the precision a graph or an engine carries.

A precision graph is explicit in its types (ModelOpt writes them): Q/DQ nodes make it INT8, float16 tensors FP16,
neither FP32. An engine's sidecar names the precision it was built for.
"""

from __future__ import annotations

from pathlib import Path

import onnx

PRECISIONS = ("fp32", "fp16", "int8")
_FLOAT16 = onnx.TensorProto.FLOAT16


def graph_precision(model: onnx.ModelProto) -> str:
    if any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node):
        return "int8"
    if any(i.data_type == _FLOAT16 for i in model.graph.initializer) or any(
        node.op_type == "Cast" and any(a.name == "to" and a.i == _FLOAT16 for a in node.attribute)
        for node in model.graph.node
    ):
        return "fp16"
    return "fp32"


def artefact_precision(path: Path) -> str:
    """fp32, fp16 or int8 for an ONNX graph or an engine; fp32 for weights (PyTorch runs them in FP32)."""
    if path.suffix in (".engine", ".plan"):
        from edge_lwdetr.engine.sidecar import read_sidecar, sidecar_path

        # An engine built elsewhere (trtexec) has no sidecar: FP16, the precision engines are built in most.
        return read_sidecar(path).get("precision", "fp16") if sidecar_path(path).is_file() else "fp16"
    if path.suffix != ".onnx":
        return "fp32"
    from edge_lwdetr.export.rewrite import load_onnx

    return graph_precision(load_onnx(path))


def artefact_identity(path: Path) -> dict:
    """What a report needs to name the artefact it measured: path, content hash and precision."""
    from edge_lwdetr.hashing import sha256_of

    files = sorted(p for p in path.glob("*.safetensors")) if path.is_dir() else [path] if path.is_file() else []
    return {
        "model": str(path),
        "model_sha256": sha256_of(*files) if files else None,
        "precision": artefact_precision(path) if path.exists() else "fp32",
    }
