"""What an artefact is, read from the artefact itself: an exported graph's metadata (the one reader of the
`edge_lwdetr.*` metadata_props that `edge-lwdetr export` writes), and the precision a graph or an engine carries.

A precision graph is explicit in its types (ModelOpt writes them): Q/DQ nodes make it INT8, float16 tensors FP16,
neither FP32. An engine's sidecar names the precision it was built for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import onnx

from edge_lwdetr.errors import EdgeLwdetrError

PRECISIONS = ("fp32", "fp16", "int8")
_FLOAT16 = onnx.TensorProto.FLOAT16


def load_onnx(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise EdgeLwdetrError(f"ONNX file not found: {path}")
    try:
        return onnx.load(path)
    except Exception as error:  # noqa: BLE001 - protobuf raises several types for garbage input
        raise EdgeLwdetrError(f"{path} is not an ONNX model ({type(error).__name__}); pass a .onnx file") from None


def properties(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def input_format_of(props: dict[str, str]) -> str:
    """The input a graph takes (processing.INPUT_FORMATS): `uint8` for `export --input-format uint8`, else `float`
    (graphs exported before the option existed carry no entry)."""
    from edge_lwdetr.processing import INPUT_FORMATS

    value = props.get("edge_lwdetr.input_format", "float")
    if value not in INPUT_FORMATS:
        raise EdgeLwdetrError(
            f"the graph's edge_lwdetr.input_format is {value!r}, which this edge-lwdetr does not know "
            f"({', '.join(INPUT_FORMATS)}): update edge-lwdetr or export the model again"
        )
    return value


@dataclass(frozen=True)
class GraphMetadata:
    image_size: int  # the square input side (from the metadata, else the input's static shape; 0: unknown)
    variant: str  # tiny ... xlarge, or custom
    id2label: dict[int, str]  # empty when the export recorded no names
    num_select: int | None  # the original checkpoint's top-k, when it had one
    input_format: str  # float ([B, 3, S, S] RGB in [0, 1]) or uint8 ([B, S, S, 3] BGR)


def graph_metadata(model: onnx.ModelProto) -> GraphMetadata:
    props = properties(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim if model.graph.input else []
    input_format = input_format_of(props)
    side = 1 if input_format == "uint8" else 2  # NHWC or NCHW
    size = props.get("edge_lwdetr.image_size") or (dims[side].dim_value if len(dims) > side else 0)
    labels = json.loads(props.get("edge_lwdetr.id2label") or "{}")
    return GraphMetadata(
        image_size=int(size),
        variant=props.get("edge_lwdetr.variant", "custom"),
        id2label={int(k): v for k, v in labels.items()},
        num_select=int(props["edge_lwdetr.num_select"]) if "edge_lwdetr.num_select" in props else None,
        input_format=input_format,
    )


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
    return graph_precision(load_onnx(path))


def artefact_input_format(path: Path) -> str:
    """float or uint8 (processing.INPUT_FORMATS) for an ONNX graph or an engine (its sidecar); float for weights."""
    if path.suffix in (".engine", ".plan"):
        from edge_lwdetr.engine.sidecar import read_sidecar

        return (read_sidecar(path) or {}).get("input_format", "float")
    return graph_metadata(load_onnx(path)).input_format if path.suffix == ".onnx" else "float"


def artefact_identity(path: Path) -> dict:
    """What a report needs to name the artefact it measured: path, content hash and precision."""
    from edge_lwdetr.hashing import sha256_of

    files = sorted(p for p in path.glob("*.safetensors")) if path.is_dir() else [path] if path.is_file() else []
    return {
        "model": str(path),
        "model_sha256": sha256_of(*files) if files else None,
        "precision": artefact_precision(path) if path.exists() else "fp32",
    }
