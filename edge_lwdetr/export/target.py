"""Weights to what runs on the target, in one call: an FP32 ONNX, a precision graph, or a TensorRT engine.

export_onnx -> (precision graph, MSDA rewrite -> engine: engine.build). Without TensorRT an engine request stops at
the precision graph the engine is built from, on the device, with `edge-lwdetr build`.
"""

from __future__ import annotations

import importlib.util
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from edge_lwdetr.engine.options import EngineOptions
from edge_lwdetr.export.options import ExportOptions
from edge_lwdetr.errors import EdgeLwdetrError

FORMATS = ("onnx", "engine")


@dataclass(frozen=True)
class Exported:
    graph: Path  # the ONNX written (the precision graph for an engine)
    engine: Path | None  # the engine, when one was requested
    engine_built: bool  # False: TensorRT is not installed here; build `graph` on the target


def default_output(weights: str, format: str, precision: str) -> Path:
    """`<weights name>[.<precision>].onnx|.engine` in the current folder."""
    suffix = ("" if precision == "fp32" else f".{precision}") + (".engine" if format == "engine" else ".onnx")
    return Path(Path(str(weights)).name.removesuffix(".pth").removesuffix(".safetensors") + suffix)


def target_paths(weights: str, format: str, precision: str, output: Path | None) -> tuple[Path | None, Path]:
    """(engine or None, the ONNX written) for an export request."""
    from edge_lwdetr.engine.build import output_paths

    output = output or default_output(weights, format, precision)
    return output_paths(output, precision, output) if format == "engine" else (None, output)


def export_to(
    weights: str,
    format: str = "onnx",
    output: Path | None = None,
    options: EngineOptions | None = None,
    export: ExportOptions = ExportOptions(),
    calib_data: Path | None = None,
    plugin: Path | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> Exported:
    """Export `weights` as `format` at `options.precision` (default: fp32 for onnx, fp16 for an engine), the graph
    as `export` says."""
    from edge_lwdetr.engine.build import build
    from edge_lwdetr.export.onnx_export import export_onnx

    if format not in FORMATS:
        raise EdgeLwdetrError(f"--format {format} is unknown: choose onnx or engine")
    options = options or EngineOptions(precision="fp16" if format == "engine" else "fp32")
    if format == "engine" and options.msda == "native":
        raise EdgeLwdetrError("--msda native is the portable graph, which TensorRT cannot build with a plugin: use plugin")
    engine, graph = target_paths(weights, format, options.precision, output)
    trt = options.target_trt_version
    if format == "onnx" and options.precision == "fp32":
        export_onnx(weights, graph, msda=options.msda, trt_version=trt, log=log, **asdict(export))
        return Exported(graph, None, False)
    tensorrt = format == "engine" and importlib.util.find_spec("tensorrt") is not None
    with tempfile.TemporaryDirectory() as folder:
        native = Path(folder) / "native.onnx"
        temporary_log = lambda message: None if message.startswith("wrote ") else log(message)  # noqa: E731
        export_onnx(weights, native, msda="native", trt_version=trt, log=temporary_log, **asdict(export))
        build(native, options, engine or graph, calib_data, plugin, onnx_only=not tensorrt, log=log)
    return Exported(graph, engine, tensorrt)
