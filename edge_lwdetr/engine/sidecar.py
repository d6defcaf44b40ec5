"""The JSON written beside each engine: what it was built from, for, and how. The runtime checks it.

Engines without one (built by trtexec, polygraphy or another tool) still run: their inputs and outputs are read
from the engine itself, and labels from the ONNX they were built from when it lies beside them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.outputs import write_text

# Cross-major pairs TensorRT supports for version-compatible engines (built major, runtime major): TensorRT 11.4.1
# support matrix, "Engine Portability"; within a major version any later runtime loads them.
_CROSS_MAJOR = {(8, 10), (10, 11)}


def sidecar_path(engine: Path) -> Path:
    return engine.with_suffix(engine.suffix + ".json")


def write_sidecar(engine: Path, fields: dict[str, Any]) -> Path:
    path = sidecar_path(engine)
    write_text(path, json.dumps(fields, indent=1, sort_keys=True))
    return path


def read_sidecar(engine: Path) -> dict[str, Any] | None:
    """The sidecar's fields, or None when the engine has none (an engine from another tool)."""
    path = sidecar_path(engine)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise EdgeLwdetrError(
            f"{path} is not valid JSON ({error}): rebuild the engine, or delete the file to run the engine without it"
        ) from None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in str(text).split(".") if part.isdigit())


def _capability(text: str) -> tuple[int, int] | None:
    try:
        major, minor = str(text).split(".")
        return int(major), int(minor)
    except ValueError:
        return None


def tensorrt_can_load(built: str, running: str, version_compatible: bool) -> bool:
    """TensorRT's version rule: a plan loads only in the exact version (major, minor, patch and build) that built
    it, unless built version-compatible; then in the same or a later version of its major, or across the
    supported major pairs (10 -> 11, 8 -> 10)."""
    built_version, running_version = _version(built), _version(running)
    if not version_compatible:
        return built_version == running_version
    if not built_version or not running_version:
        return False
    if built_version[0] == running_version[0]:
        return running_version >= built_version
    return (built_version[0], running_version[0]) in _CROSS_MAJOR


def gpu_can_load(built_capability: str, running_capability: str, hardware_compatibility_level: str) -> bool:
    """TensorRT's hardware rule: without a hardware-compatibility level a plan runs on GPUs of the compute
    capability it was built for (another GPU model of the same capability is allowed: TensorRT only warns);
    AMPERE_PLUS: any GPU of compute capability 8.0 or later; SAME_COMPUTE_CAPABILITY: the same capability."""
    built, running = _capability(built_capability), _capability(running_capability)
    if built is None or running is None:
        return False
    if hardware_compatibility_level.upper() == "AMPERE_PLUS":
        return running >= (8, 0)
    return built == running


def check_sidecar(sidecar: dict[str, Any], tensorrt_version: str, gpu_name: str, compute_capability: str) -> None:
    """Refuse, before TensorRT does less helpfully, an engine that this TensorRT or this GPU cannot run."""
    gpu = sidecar.get("gpu", {})
    options = sidecar.get("build_options", {})
    built_trt = str(sidecar.get("tensorrt_version"))
    built_name, built_capability = gpu.get("name"), str(gpu.get("compute_capability"))
    version_compatible = bool(options.get("version_compatible", False))
    level = str(options.get("hardware_compatibility_level") or "NONE")
    where = f"TensorRT {built_trt} for {built_name} (sm {built_capability})"
    here = f"TensorRT {tensorrt_version} on {gpu_name} (sm {compute_capability})"
    if not tensorrt_can_load(built_trt, tensorrt_version, version_compatible):
        rule = (
            "a version-compatible engine loads in the same or a later TensorRT"
            if version_compatible
            else "an engine loads only in the TensorRT version that built it unless built with --version-compatible"
        )
        raise EdgeLwdetrError(
            f"the engine was built with {where}, this is {here}: {rule}; rebuild it here with `edge-lwdetr build`"
        )
    if not gpu_can_load(built_capability, compute_capability, level):
        raise EdgeLwdetrError(
            f"the engine was built with {where} (hardware compatibility {level}), this is {here}: TensorRT runs it "
            "only on GPUs of the compute capability it was built for; rebuild it here with `edge-lwdetr build`"
        )


@dataclass
class IoTensor:
    """One engine input or output as TensorRT describes it (shape with -1 for dynamic dimensions)."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    profile_max: tuple[int, ...] | None = None  # inputs: the largest shape of optimization profile 0


def metadata_without_sidecar(engine: Path, io: list[IoTensor], onnx_metadata: dict[str, str]) -> dict[str, Any]:
    """What the runtime needs, for an engine without a sidecar: the image input, the logits and boxes outputs,
    the image size, and the labels and variant from the source ONNX's metadata when it was found.

    The input is the one [B, 3, S, S] tensor, or [B, S, S, 3] for an `--input-format uint8` export (the only NHWC
    input edge-lwdetr exports, so the layout tells the format); the outputs are told apart by shape: boxes end in 4, logits are the
    other [B, Q, C] tensor (the names of edge-lwdetr's export, `logits` and `pred_boxes`, are preferred).
    """
    inputs = [t for t in io if t.is_input]
    outputs = [t for t in io if not t.is_input]
    nhwc = len(inputs) == 1 and len(inputs[0].shape) == 4 and inputs[0].shape[3] == 3 and inputs[0].shape[1] != 3
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or (inputs[0].shape[1] != 3 and not nhwc):
        described = ", ".join(f"{t.name} {list(t.shape)}" for t in inputs)
        raise EdgeLwdetrError(
            f"{engine} has no sidecar and its inputs ({described}) are not one image batch [B, 3, S, S] (or uint8 "
            "[B, S, S, 3]): it is not an LW-DETR engine edge-lwdetr can run; build one with `edge-lwdetr build`"
        )
    image = inputs[0]
    side, other_side = (1, 2) if nhwc else (2, 3)
    size = image.shape[side] if image.shape[side] > 0 else (image.profile_max[side] if image.profile_max else -1)
    if "edge_lwdetr.image_size" in onnx_metadata:
        size = int(onnx_metadata["edge_lwdetr.image_size"])
    if size <= 0 or (image.shape[other_side] > 0 and image.shape[other_side] != size):
        raise EdgeLwdetrError(
            f"{engine} has no sidecar and its input {image.name} {list(image.shape)} is not a square image of known size"
        )
    by_name = {t.name: t for t in outputs}
    boxes = by_name.get("pred_boxes") or next((t for t in outputs if len(t.shape) == 3 and t.shape[-1] == 4), None)
    logits = by_name.get("logits") or next((t for t in outputs if len(t.shape) == 3 and t is not boxes), None)
    if boxes is None or logits is None or boxes is logits:
        described = ", ".join(f"{t.name} {list(t.shape)}" for t in outputs)
        raise EdgeLwdetrError(
            f"{engine} has no sidecar and its outputs ({described}) are not LW-DETR's logits [B, Q, C] and boxes "
            "[B, Q, 4]: build the engine with `edge-lwdetr build`"
        )
    return {
        "image_size": size,
        "input_format": "uint8" if nhwc else "float",
        "input": image.name,
        "outputs": {"logits": logits.name, "boxes": boxes.name},
        "id2label": json.loads(onnx_metadata.get("edge_lwdetr.id2label", "{}")),
        "variant": onnx_metadata.get("edge_lwdetr.variant", "custom"),
    }
