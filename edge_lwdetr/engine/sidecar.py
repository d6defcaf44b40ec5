"""The JSON written beside each engine: what it was built from, for, and how. The runtime checks it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.outputs import write_text


def sidecar_path(engine: Path) -> Path:
    return engine.with_suffix(engine.suffix + ".json")


def write_sidecar(engine: Path, fields: dict[str, Any]) -> Path:
    path = sidecar_path(engine)
    write_text(path, json.dumps(fields, indent=1, sort_keys=True))
    return path


def read_sidecar(engine: Path) -> dict[str, Any]:
    path = sidecar_path(engine)
    if not path.is_file():
        raise EdgeLwdetrError(f"{engine} has no sidecar {path.name}: rebuild the engine with `edge-lwdetr build`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise EdgeLwdetrError(f"{path} is not valid JSON ({error}): rebuild the engine") from None


def check_sidecar(sidecar: dict[str, Any], tensorrt_version: str, gpu_name: str, compute_capability: str) -> None:
    """Refuse an engine built for another GPU, or by another TensorRT unless it was built version-compatible:
    it would fail to load or run wrongly."""
    gpu = sidecar.get("gpu", {})
    built_trt, built_gpu = sidecar.get("tensorrt_version"), (gpu.get("name"), gpu.get("compute_capability"))
    version_compatible = sidecar.get("build_options", {}).get("version_compatible", False)
    if built_gpu != (gpu_name, compute_capability) or (built_trt != tensorrt_version and not version_compatible):
        raise EdgeLwdetrError(
            f"the engine was built with TensorRT {built_trt} for {built_gpu[0]} (sm {built_gpu[1]}), this is "
            f"TensorRT {tensorrt_version} on {gpu_name} (sm {compute_capability}): rebuild it here with "
            "`edge-lwdetr build`"
        )
