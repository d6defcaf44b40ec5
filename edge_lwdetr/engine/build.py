"""Native ONNX export -> precision graph (FP32, FP16 or INT8, explicit in the types) -> plugin rewrite -> engine.

Everything up to the precision graph runs on a CPU (`onnx_only`); the engine needs TensorRT (trt_builder.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import onnx

from edge_lwdetr import __version__
from edge_lwdetr.engine.options import DEFAULT_BATCH_PROFILE, PRECISIONS, EngineOptions
from edge_lwdetr.engine.plugin import plugin_library
from edge_lwdetr.engine.precision_report import describe
from edge_lwdetr.engine.sidecar import write_sidecar
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.artefacts import graph_metadata, graph_precision, load_onnx
from edge_lwdetr.msda_onnx import msda_nodes
from edge_lwdetr.export.rewrite import rewrite_msda, to_native
from edge_lwdetr.hashing import sha256_of
from edge_lwdetr.outputs import atomic_file, write_bytes
from edge_lwdetr.quiet import libraries_quiet



def output_paths(onnx_path: Path, precision: str, output: Path | None) -> tuple[Path, Path]:
    """The engine and the precision graph beside it: `output` (default: ONNX name + .<precision>.engine) and the
    same name ending in .onnx."""
    output = output or onnx_path.with_suffix(f".{precision}.engine")
    return output, output.with_suffix(".onnx") if output.suffix != ".onnx" else output


def build(
    onnx_path: Path,
    options: EngineOptions = EngineOptions(),
    output: Path | None = None,
    calib_data: Path | None = None,
    plugin: Path | None = None,
    onnx_only: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> Path:
    """Build `onnx_path` (any graph `edge-lwdetr export` writes, or a precision graph made elsewhere) as `options`
    say; returns the engine, or the precision graph if onnx_only.

    The engine and its sidecar (with the precision report, engine/precision_report.py) are written whatever the
    report says; `options.strict_precision` then fails the build when the requested precision was not realised.
    """
    started = time.perf_counter()
    precision, msda = options.precision, options.msda
    if precision not in PRECISIONS:
        raise EdgeLwdetrError(f"--precision {precision} is unknown: choose fp32, fp16 or int8")
    model = load_onnx(onnx_path)
    nodes = msda_nodes(model)
    if not nodes:
        raise EdgeLwdetrError(
            f"{onnx_path} has no MSDA node, so no plugin layer could be made: it is not an `edge-lwdetr export` graph"
        )
    # A precision graph made elsewhere (on an x86 box with ModelOpt) is built as it is: the device then needs
    # neither ModelOpt nor torch. Its precision cannot be changed here: ModelOpt works from FP32.
    carried = graph_precision(model)
    if carried != "fp32" and carried != precision:
        raise EdgeLwdetrError(
            f"{onnx_path} is an {carried} graph, so it cannot give an {precision} engine: build it with --precision "
            f"{carried}, or export the weights again (edge-lwdetr export --format engine --precision {precision})"
        )
    if precision == "int8" and carried != "int8" and calib_data is None:
        raise EdgeLwdetrError("int8 needs calibration images: pass --calib-data with an image folder or a video")
    if msda == "native" and not onnx_only:
        raise EdgeLwdetrError("--msda native keeps the portable graph, which is no engine input: use --onnx-only")
    output, graph_path = output_paths(onnx_path, precision, output)
    _check_writable(output)
    if not onnx_only and msda == "plugin":
        plugin = plugin_library(plugin)
    if not onnx_only:
        from edge_lwdetr.engine.trt_builder import import_tensorrt

        import_tensorrt()  # fail now, not after minutes of calibration

    meta = graph_metadata(model)
    image_size = meta.image_size
    calibration = None
    if precision == "int8" and carried != "int8":
        from edge_lwdetr.engine.calibration import calibration_images

        calibration = calibration_images(calib_data, options.calib_count, image_size, meta.input_format)
    if precision != "fp32" and carried == precision:
        log(f"{onnx_path} already is an {precision} graph: built as it is")
    elif precision != "fp32":
        from edge_lwdetr.engine.precision import precision_graph

        model = to_native(model)
        log(f"making the {precision} graph with ModelOpt (CPU)")
        if precision == "int8" and options.int8_budget is not None:  # the groups INT8 hurts most kept in FP16
            from edge_lwdetr.engine.calibration import calibration_labels
            from edge_lwdetr.engine.mixed_int8 import mixed_int8_graph

            model = mixed_int8_graph(model, calibration, options.int8_budget, log, calibration_labels(calib_data))
        else:
            with libraries_quiet():
                model = precision_graph(model, precision, calibration)
    if msda != "native":
        model = rewrite_msda(model, msda, options.target_trt_version, str(onnx_path))
    onnx.checker.check_model(model, full_check=True)
    with atomic_file(graph_path) as temporary:
        onnx.save(model, temporary)
    log(f"wrote the {precision} graph {graph_path} ({time.perf_counter() - started:.1f} s)")
    if onnx_only:
        return graph_path

    from edge_lwdetr.device import gpu_info
    from edge_lwdetr.engine.trt_builder import build_engine

    dynamic = not model.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    if options.batch_profile is not None and not dynamic:
        raise EdgeLwdetrError(f"{onnx_path} has a static batch: --batch-profile needs an export with --dynamic-batch")
    options = replace(options, batch_profile=(options.batch_profile or DEFAULT_BATCH_PROFILE) if dynamic else None)
    log("building the TensorRT engine")
    built = build_engine(
        graph_path, plugin if msda == "plugin" else None, len(nodes), options, image_size, meta.input_format
    )
    write_bytes(output, built.serialized)
    write_sidecar(
        output,
        {
            "edge_lwdetr_version": __version__,
            "tensorrt_version": built.tensorrt_version,
            "gpu": gpu_info(),
            "precision": precision,
            "precision_report": built.precision_report,
            "image_size": image_size,
            "input_format": meta.input_format,  # what the runtime feeds (processing.to_model_input)
            "batch_profile": list(options.batch_profile) if options.batch_profile else None,
            "id2label": meta.id2label,
            "variant": meta.variant,
            "onnx": str(graph_path),
            "onnx_sha256": sha256_of(graph_path),
            "plugin": str(plugin.resolve()) if msda == "plugin" else None,
            "plugin_sha256": sha256_of(plugin) if msda == "plugin" else None,
            "msda": msda,
            # The plan carries the plugin library (plugins_to_serialize): the runtime must not load it again.
            "plugin_serialized": options.version_compatible and msda == "plugin",
            "build_options": options.record(),
        },
    )
    log(f"wrote {output} and its sidecar ({time.perf_counter() - started:.1f} s)")
    log(f"precision: {describe(built.precision_report)}")
    check_precision(built.precision_report, options.strict_precision, output)
    return output


def check_precision(report: dict, strict: bool, engine: Path) -> None:
    """With --strict-precision, fail when the precision was judged and not realised (the files stay written)."""
    if strict and report["realised"] is False:
        wider = ", ".join(report["wider_than_requested"][:5])
        raise EdgeLwdetrError(
            f"{engine}: {describe(report)}; layers still wider than {report['requested']} include: {wider}. The engine "
            "and its sidecar were written; drop --strict-precision to accept them, or check the precision graph "
            f"({engine.with_suffix('.onnx')})"
        )


def _check_writable(path: Path) -> None:
    folder = path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise EdgeLwdetrError(f"cannot write {path}: folder {folder} does not exist or is not writable")
