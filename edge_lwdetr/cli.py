"""The `edge-lwdetr` command line: a thin shell over the package's API.

Exit status: 0 for a completed command; 2 for an error in the input, the options or the environment (one line,
`edge-lwdetr: error: ...`, naming the file or value and the fix); 130 / 143 for a command stopped by SIGINT /
SIGTERM (outputs finalised or removed); 1 with a traceback only for a bug in edge-lwdetr itself. Every output is
written through `edge_lwdetr.outputs`: never onto an input, never half-written, never by two commands at once.
Nothing heavy is imported before a subcommand needs it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import traceback
import warnings
from dataclasses import asdict
from pathlib import Path

from edge_lwdetr import __version__
from edge_lwdetr.bundled import BUNDLED_MODEL
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr import quiet
from edge_lwdetr.defaults import DEFAULT_BUDGET_AP, DEFAULT_CONF, target_trt_version
from edge_lwdetr.export.options import IMGSZ_HELP
from edge_lwdetr.option_types import at_least, image_size, in_unit_interval, int8_budget, positive
from edge_lwdetr.signals import Stopped, stop_raises

EXIT_ERROR = 2
EXIT_BUG = 1
WEIGHTS_HELP = "transformers folder, hub id, original .pth or .safetensors (default: the bundled shapes model)"
PLUGIN_HELP = "MSDA plugin library (default: $EDGE_LWDETR_PLUGIN, the engine's own, else build/plugins/)"
EXIST_OK_HELP = "replace an existing output that holds earlier work (refused without it)"


class UsageError(Exception):
    """A bad option or argument, reported as one line like every other error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


CALIB_DATA_HELP = (
    "int8: calibration images: a folder, a COCO folder (the INT8 budget then measured in mAP on its labels) or a video"
)


def _outputs(
    inputs, outputs: dict, *, exist_ok: bool = False, keep: dict | None = None, folders: tuple = ()
) -> contextlib.ExitStack:
    """Refuse outputs (label -> path) that are inputs, file outputs (all but `folders`) that are folders, and outputs
    in `keep` (label -> what they hold) that exist without --exist-ok; returns an ExitStack holding an exclusive
    claim on every output."""
    from edge_lwdetr.outputs import claim_all, refuse_existing, refuse_overwriting_inputs

    refuse_overwriting_inputs(outputs, inputs)
    for label, path in outputs.items():
        if path is not None and label not in folders and path.is_dir():
            raise EdgeLwdetrError(f"{label} {path} is a folder; give a file name such as {path / ('out' + (path.suffix or '.json'))}")
    for label, what in (keep or {}).items():
        refuse_existing(outputs[label], label, exist_ok, what)
    stack = contextlib.ExitStack()
    try:
        claim_all(stack, *outputs.values())
    except BaseException:
        stack.close()
        raise
    return stack


def _add_export(subparsers) -> None:
    from edge_lwdetr.engine.options import EngineOptions
    from edge_lwdetr.export.options import ExportOptions

    p = subparsers.add_parser(
        "export", help="weights -> ONNX (FP32/FP16/INT8) or a TensorRT engine, in one command"
    )
    p.add_argument("--model", "--weights", dest="weights", default=str(BUNDLED_MODEL), help=f"weights: {WEIGHTS_HELP}")
    p.add_argument("--format", choices=["onnx", "engine", "triton"], default="onnx",
                   help="onnx (default), engine (TensorRT) or triton (a Triton model repository folder)")  # fmt: skip
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"], help="default: fp32 for onnx, fp16 for engine")
    p.add_argument("--data", "--calib-data", dest="calib_data", type=Path, help=CALIB_DATA_HELP)
    p.add_argument("--output", type=Path, help="file to write (default: the weights' name + .<precision>.onnx|.engine)")
    ExportOptions.add_arguments(p)
    p.add_argument("--plugin", type=Path, help=PLUGIN_HELP)
    p.add_argument("--exist-ok", action="store_true", help=f"engine: {EXIST_OK_HELP}")
    EngineOptions.add_arguments(p, skip=("precision",))
    p.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> None:
    from edge_lwdetr.engine.options import EngineOptions
    from edge_lwdetr.export.options import ExportOptions
    from edge_lwdetr.export.target import export_to, target_paths

    if args.format == "triton":  # a folder of models, not a file
        return run_export_triton(args)
    precision = args.precision or ("fp16" if args.format == "engine" else "fp32")
    engine, graph = target_paths(args.weights, args.format, precision, args.output)
    targets = {"--output": engine or graph} | ({f"the {precision} graph": graph} if engine else {})
    keep = {"--output": "an engine"} if engine else {}
    options = EngineOptions.from_arguments(args, precision=precision)
    with _outputs([args.weights, args.calib_data], targets, exist_ok=args.exist_ok, keep=keep):
        done = export_to(args.weights, args.format, engine or graph, options, ExportOptions.from_arguments(args),
                         args.calib_data, args.plugin, print)  # fmt: skip
    if engine is not None and not done.engine_built:
        print(
            f"TensorRT is not installed here, so the engine was not built; build it on the target from the {precision} "
            f"graph: edge-lwdetr build --onnx {graph} --precision {precision} --output {engine}"
        )
    else:
        print(f"run it: edge-lwdetr run --model {engine or graph} --source VIDEO_OR_CAMERA")


def _add_rewrite(subparsers) -> None:
    from edge_lwdetr.engine.options import TRT_VERSION_HELP

    p = subparsers.add_parser("rewrite", help="rewrite the MSDA nodes of an exported ONNX into TensorRT plugin nodes")
    p.add_argument("input", type=Path, help="ONNX from `edge-lwdetr export`")
    p.add_argument("output", type=Path, help="ONNX file to write")
    p.add_argument("--target", choices=["plugin", "builtin"], default="plugin", help="plugin (default) or builtin")
    p.add_argument("--trt-version", help=TRT_VERSION_HELP)
    p.set_defaults(run=run_rewrite)


def run_rewrite(args: argparse.Namespace) -> None:
    import onnx

    from edge_lwdetr.msda_onnx import msda_nodes
    from edge_lwdetr.artefacts import load_onnx
    from edge_lwdetr.export.rewrite import rewrite_msda

    from edge_lwdetr.outputs import atomic_file

    with _outputs([args.input], {"output": args.output}):
        model = rewrite_msda(load_onnx(args.input), args.target, args.trt_version or target_trt_version(), str(args.input))
        onnx.checker.check_model(model, full_check=True)
        with atomic_file(args.output) as temporary:
            onnx.save(model, temporary)
    print(f"rewrote {len(msda_nodes(model))} MSDA nodes to the {args.target} form: {args.output}")


def add_build_arguments(p: argparse.ArgumentParser) -> None:
    from edge_lwdetr.engine.options import EngineOptions

    p.add_argument("--onnx", required=True, type=Path,
                   help="ONNX from `edge-lwdetr export` (any MSDA form, or a precision graph made on another machine)")  # fmt: skip
    p.add_argument("--calib-data", "--data", dest="calib_data", type=Path, help=CALIB_DATA_HELP)
    p.add_argument("--output", type=Path, help="engine file (default: ONNX name + .<precision>.engine)")
    p.add_argument("--onnx-only", action="store_true", help="stop after writing the precision graph (no TensorRT)")
    p.add_argument("--plugin", type=Path, help=PLUGIN_HELP)
    p.add_argument("--exist-ok", action="store_true", help=f"engine: {EXIST_OK_HELP}")
    EngineOptions.add_arguments(p)
    p.set_defaults(run=run_build)


def run_build(args: argparse.Namespace) -> None:
    from edge_lwdetr.engine.build import build, output_paths
    from edge_lwdetr.engine.options import EngineOptions

    output, graph = output_paths(args.onnx, args.precision, args.output)
    inputs = [args.onnx, args.calib_data, args.plugin]
    targets = {"--output": None if args.onnx_only else output, f"the {args.precision} graph": graph}
    with _outputs(inputs, targets, exist_ok=args.exist_ok, keep={"--output": "an engine"}):
        build(args.onnx, EngineOptions.from_arguments(args), args.output, args.calib_data, args.plugin, args.onnx_only, print)


def _add_model_arguments(p: argparse.ArgumentParser, model_help: str) -> None:
    p.add_argument("--model", "--weights", dest="model", default=str(BUNDLED_MODEL),
                   help=f"{model_help}: {WEIGHTS_HELP}")  # fmt: skip
    p.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime", "torch"])
    p.add_argument("--imgsz", type=image_size, help=f"weights run with PyTorch: {IMGSZ_HELP}")
    p.add_argument("--plugin", type=Path, help=PLUGIN_HELP)
    p.add_argument("--device", help="weights run with PyTorch: cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--variant", help="weights: tiny|small|medium|large|xlarge, overriding the inferred architecture")
    p.add_argument("--ema", action="store_true", help="original training checkpoint (checkpoint.pth): load its ema_model weights, not model")


def _add_run(subparsers) -> None:
    from edge_lwdetr.runtime.options import RunOptions

    p = subparsers.add_parser(
        "run", aliases=["predict"], help="detect objects in an image, a folder, a video, a camera or a stream"
    )
    _add_model_arguments(p, "TensorRT engine, ONNX export, a served model (triton://HOST:8001/MODEL: gRPC; "
                         "triton+http://HOST:8000/MODEL: HTTP), or weights (PyTorch)")  # fmt: skip
    p.add_argument("--source", required=True, action="append", help="an image, an image folder, a video file, 0, "
                   "/dev/video0, csi://0, rtsp://..., or a .streams file listing sources; repeat it to run several "
                   "sources batched together")  # fmt: skip
    p.add_argument("--save", type=Path, help="the annotated image (image source) or video (.mp4: H.264, fragmented; "
                   ".avi: MJPEG); several sources: one video each (out.0.mp4, out.1.mp4, ...) or, with --tile, one")  # fmt: skip
    p.add_argument("--save-json", type=Path, help="the detections: JSON (image source), else one JSON line per frame "
                   "(several sources: one file each, out.0.jsonl, ...)")  # fmt: skip
    p.add_argument("--exist-ok", action="store_true", help=f"video/JSONL recordings: {EXIST_OK_HELP}")
    p.add_argument("--show", action="store_true", help="show the annotated video in a window (q or Esc stops; "
                   "several sources: tiled in one window)")  # fmt: skip
    RunOptions.add_arguments(p)
    p.add_argument("--cuda-graph", action="store_true", help="TensorRT: replay each inference as a CUDA graph")
    p.set_defaults(run=run_run)


def run_run(args: argparse.Namespace) -> None:
    from edge_lwdetr.api import is_image_file
    from edge_lwdetr.runtime.source_list import expand_sources

    sources = expand_sources(args.source)
    if len(sources) == 1 and is_image_file(sources[0]):
        if args.track:
            raise EdgeLwdetrError(f"--track follows objects across frames; {sources[0]} is one image: give a video, "
                                  "an image folder, a camera or a stream")  # fmt: skip
        _predict_image(args, sources[0])
        return
    for source in sources:
        if is_image_file(source):
            raise EdgeLwdetrError(
                f"--source {source} is an image, which cannot be one of several sources; put the images in a folder "
                "and pass the folder"
            )
    _run_stream(args, sources)


def _predict_image(args: argparse.Namespace, source: str) -> None:
    """One image: its detections printed, the annotated image and a JSON file written on request."""
    import cv2

    from edge_lwdetr import outputs
    from edge_lwdetr.api import Detector

    if args.save and not cv2.haveImageWriter(str(args.save)):
        raise EdgeLwdetrError(f"--save {args.save}: OpenCV writes no image format '{args.save.suffix}'; use .jpg or .png")
    with _outputs([source, args.model, args.plugin], {"--save": args.save, "--save-json": args.save_json}):
        options = dict(plugin=args.plugin, device=args.device, variant=args.variant, ema=args.ema)
        with Detector(args.model, args.backend, args.imgsz, args.conf, **options) as detector:
            start = time.perf_counter()
            result = detector.predict(source)[0]
            elapsed_ms = (time.perf_counter() - start) * 1000
            backend = detector.backend
        for det in result.detections():
            print(f"  {det.name:<16} {det.score:.3f}  [{', '.join(f'{v:.1f}' for v in det.box)}]")
        print(
            f"{source}: {len(result)} detections above {args.conf} (LW-DETR-{backend.variant}, "
            f"{backend.image_size} px, {backend.name} on {getattr(backend, 'device', 'cpu')}, {elapsed_ms:.1f} ms)"
        )
        if args.save:
            with outputs.atomic_file(args.save) as temporary:
                if not cv2.imwrite(str(temporary), result.plot()):
                    raise EdgeLwdetrError(f"cannot write {args.save}: OpenCV could not encode the image")
            print(f"wrote {args.save}")
        if args.save_json:
            outputs.write_text(args.save_json, json.dumps(result.to_json(), indent=1))
            print(f"wrote {args.save_json}")


def _label(option: str, source: int, several: bool) -> str:
    """How a recording is named in messages (and keyed in the targets): per source when there are several."""
    return f"{option} (source {source})" if several else option


def _stream_targets(args: argparse.Namespace, count: int) -> dict[str, Path | None]:
    """The recordings of a run (label -> path): one video and one JSONL per source when there are several (the video
    is one tiled view with --tile)."""
    from edge_lwdetr.runtime.source_list import per_source_path

    if count == 1:
        return {"--save": args.save, "--save-json": args.save_json}
    targets = {"--save": args.save} if args.tile else {}
    for k in range(count):
        if not args.tile:
            targets[_label("--save", k, True)] = per_source_path(args.save, k) if args.save else None
        targets[_label("--save-json", k, True)] = per_source_path(args.save_json, k) if args.save_json else None
    return targets


def _run_stream(args: argparse.Namespace, sources: list[str]) -> None:
    import threading

    from edge_lwdetr.runtime.sinks import window_support
    from edge_lwdetr.runtime.sources import Interrupted
    from edge_lwdetr.signals import stop_sets
    from edge_lwdetr.video import SUFFIXES

    if args.show and window_support():
        raise EdgeLwdetrError(f"--show: {window_support()}")
    if args.track:
        from edge_lwdetr.tracking import require_tracking

        require_tracking()  # before anything opens
    if args.save and args.save.suffix.lower() not in SUFFIXES:
        raise EdgeLwdetrError(f"--save {args.save}: write the video as .mp4 (H.264) or .avi (Motion JPEG)")
    targets = _stream_targets(args, len(sources))
    recordings = {label: "a recording" for label in targets}
    inputs = [*sources, *args.source, args.model, args.plugin]
    with _outputs(inputs, targets, exist_ok=args.exist_ok, keep=recordings):
        stop = threading.Event()
        with stop_sets(stop) as caught:
            try:
                summary = _stream(args, stop, sources, targets)
            except Interrupted:
                summary = None
        if caught:
            if summary is None:
                print("stopped before the first frame; nothing written", file=sys.stderr)
            raise Stopped(caught[0])


def _open_sources(sources: list[str], args: argparse.Namespace, stop, log) -> list:
    """Every source opened, or none: one that fails to open closes those opened before it."""
    from edge_lwdetr.runtime.sources import open_source

    opened = []
    try:
        for uri in sources:
            opened.append(open_source(uri, log=log, stop=stop, stream_timeout_s=args.stream_timeout))
    except BaseException:
        for source in opened:
            source.close()
        raise
    return opened


def _stream(args: argparse.Namespace, stop, uris: list[str], targets: dict):
    import math

    from edge_lwdetr.backends import open_backend
    from edge_lwdetr.runtime.pipeline import Feed, run_streams
    from edge_lwdetr.runtime.sinks import JsonlSink, ProgressSink, VideoSink, WindowSink
    from edge_lwdetr.runtime.sources import Interrupted

    log = lambda message: print(message, file=sys.stderr)  # noqa: E731 - stdout carries the results
    sources = _open_sources(uris, args, stop, log)
    try:
        backend = open_backend(
            args.model, args.backend, args.imgsz, args.plugin, args.cuda_graph, args.device, args.variant, args.ema,
            served=True,
        )
    except BaseException:
        for source in sources:
            source.close()
        raise
    if stop.is_set():
        for source in sources:
            source.close()
        backend.close()
        raise Interrupted
    several = len(sources) > 1
    feeds, tiled = [Feed(source, [], _tracker(args, source)) for source in sources], []
    try:
        for k, feed in enumerate(feeds):
            video, jsonl = targets.get(_label("--save", k, several)), targets.get(_label("--save-json", k, several))
            if video:  # absent with --tile: the tiled view is the video
                feed.sinks.append(VideoSink(video, feed.source.fps, log))
            if jsonl:
                feed.sinks.append(JsonlSink(jsonl))
        if several and args.tile and args.save:
            tiled.append(VideoSink(args.save, max(source.fps for source in sources), log))
        if args.show:
            window = WindowSink(f"edge-lwdetr: {', '.join(uris)}", stop)
            (tiled if several else feeds[0].sinks).append(window)
        if not any(source.live for source in sources):
            total = sum(math.ceil(source.frame_count / args.vid_stride) for source in sources)
            progress = ProgressSink(total, Path(uris[0]).name if not several else f"{len(uris)} sources")
            for feed in feeds:
                feed.sinks.append(progress)
        for source in sources:
            print(
                f"LW-DETR-{backend.variant} on {backend.name} ({getattr(backend, 'device', 'cpu')}), "
                f"{backend.image_size} px, source {source.uri}{' (live)' if source.live else ''}"
            )
        summary = run_streams(backend, feeds, args.conf, stop, args.max_frames, args.vid_stride, tiled)
    except BaseException:
        for s in {id(s): s for s in [s for feed in feeds for s in feed.sinks] + tiled}.values():
            with contextlib.suppress(Exception):
                s.close()
        for source in sources:
            source.close()
        raise
    finally:
        backend.close()
    _report_run(args, summary, sources, [s for feed in feeds for s in feed.sinks] + tiled, stop, log)
    return summary


def _tracker(args: argparse.Namespace, source):
    """With --track, a tracker for this source (each source's objects get their own ids)."""
    if not args.track:
        return None
    from edge_lwdetr.tracking import Tracker

    return Tracker(frame_rate=source.fps / args.vid_stride if source.fps else 0.0)  # the rate the tracker sees


def _counts(summary, live: bool, vid_stride: int) -> str:
    counts = f"{summary.read} read, {summary.inferred} inferred, {summary.written} written"
    if live:
        counts += f", {summary.dropped} dropped (live source: stale frames give way to newer ones)"
    if summary.strided:
        counts += f", {summary.strided} passed over (--vid-stride {vid_stride})"
    if summary.skipped:
        counts += f", {summary.skipped} unreadable files skipped"
    return counts


def _report_run(args, summary, sources, sinks, stop, log) -> None:
    several = len(sources) > 1
    batches = f", {summary.batches} batches of {summary.inferred / max(summary.batches, 1):.2f} frames" if several else ""
    print(f"{_counts(summary, any(s.live for s in sources), args.vid_stride)}; {summary.seconds:.1f} s, "
          f"{summary.fps:.1f} FPS end to end{batches}")  # fmt: skip
    for k, (source, counts) in enumerate(zip(sources, summary.sources)):
        name = f"  source {k} {source.uri}: {_counts(counts, source.live, args.vid_stride)}; " if several else "  "
        print(f"{name}decoder {counts.decoder}")
    for stage, stats in summary.stages.items():
        print(f"  {stage:<12} p50 {stats['p50']:8.2f} ms   p90 {stats['p90']:8.2f} ms   p99 {stats['p99']:8.2f} ms")
    ended = not stop.is_set() and (args.max_frames is None or summary.inferred < args.max_frames)
    for source, counts in zip(sources, summary.sources):
        if ended and counts.announced and counts.read < counts.announced:
            log(
                f"edge-lwdetr: warning: {source.uri} ended after {counts.read} of the {counts.announced} frames its "
                "header announces: the file is truncated or damaged"
            )
        if several and counts.read == 0 and not stop.is_set():
            log(f"edge-lwdetr: warning: source {source.uri} delivered no frame")
    for path in {id(s): s.path for s in sinks if s.wrote()}.values():
        print(f"wrote {path}")
    if summary.read == 0 and not stop.is_set():
        what = "no source delivered a frame" if several else f"source {sources[0].uri} delivered no frame"
        raise EdgeLwdetrError(f"{what}; nothing was written")


def _add_eval(subparsers) -> None:
    p = subparsers.add_parser("eval", help="COCO mAP of a model on a COCO-format folder")
    _add_model_arguments(p, "TensorRT engine, ONNX export, or weights (PyTorch)")
    p.add_argument("--data", required=True, type=Path, help="folder with annotations.json and the images")
    p.add_argument("--max-images", type=at_least(1), help="evaluate the first N images only")
    p.add_argument("--min-map", type=in_unit_interval, help="fail (exit status 2) when mAP@[.5:.95] is below this floor")
    p.add_argument("--report", type=Path, help="write the metrics here as JSON")
    p.set_defaults(run=run_eval)


def run_eval(args: argparse.Namespace) -> None:
    from edge_lwdetr import outputs
    from edge_lwdetr.backends import open_backend
    from edge_lwdetr.artefacts import artefact_identity
    from edge_lwdetr.evaluation import METRICS, evaluate, find_annotations
    from edge_lwdetr.profiling import environment

    annotations = find_annotations(args.data) if args.data.is_dir() else None
    with _outputs([args.model, args.plugin, annotations], {"--report": args.report}):
        backend = open_backend(
            args.model, args.backend, args.imgsz, args.plugin, device=args.device, variant=args.variant, ema=args.ema
        )
        try:
            metrics = evaluate(backend, args.data, args.max_images, log=lambda m: print(m, file=sys.stderr))
        finally:
            backend.close()
        report = {"edge_lwdetr_version": __version__, **artefact_identity(Path(args.model)), "backend": backend.name,
                  **metrics, "environment": environment()}  # fmt: skip
        skipped = f" ({metrics['skipped_images']} missing or unreadable, skipped)" if metrics["skipped_images"] else ""
        print(f"{metrics['images']} images{skipped}, {metrics['images_per_s']:.1f} images/s: "
              + ", ".join(f"{name} {metrics[name]:.4f}" for name in METRICS))  # fmt: skip
        print("  AP per class: " + ", ".join(f"{name} {ap:.3f}" for name, ap in metrics["per_class_ap"].items()))
        if args.report:
            outputs.write_text(args.report, json.dumps(report, indent=1))
            print(f"wrote {args.report}")
    if args.min_map is not None and metrics["mAP"] < args.min_map:
        raise EdgeLwdetrError(f"mAP {metrics['mAP']:.4f} is below the floor --min-map {args.min_map}")


def _add_profile(subparsers) -> None:
    p = subparsers.add_parser("profile", help="latency per stage, accuracy against a reference, environment")
    _add_model_arguments(p, "TensorRT engine, ONNX (FP32/FP16/INT8), or weights (PyTorch)")
    p.add_argument("--reference", type=Path, help="FP32 ONNX to compare the model's detections with (polygraphy)")
    p.add_argument("--iterations", type=at_least(1), default=200, help="timed inferences (200)")
    p.add_argument("--warmup", type=at_least(0), default=20, help="untimed inferences first (20)")
    p.add_argument("--min-recall", type=in_unit_interval, help="gate: share of the reference's detections found "
                   "again (default per precision: fp32 0.99, fp16 0.95, int8 0.9)")
    p.add_argument("--max-box-error", type=positive, help="gate: p95 box corner error in px on 512 px frames "
                   "(default per precision: 0.5, 2, 6)")
    p.add_argument("--max-score-error", type=in_unit_interval, help="gate: p95 score difference of a matched "
                   "detection (default per precision: 0.01, 0.05, 0.4)")
    p.add_argument("--report", type=Path, help="write the report here as JSON")
    p.add_argument("--plot", type=Path, help="write a PNG: latency histogram and stage breakdown")
    p.add_argument("--gate", action="store_true", help="exit with status 2 when the accuracy comparison fails (CI)")
    p.add_argument("--no-cuda-graph", action="store_true", help="TensorRT: time plain enqueues, not CUDA-graph replay")
    p.set_defaults(run=run_profile)


def run_profile(args: argparse.Namespace) -> None:
    from edge_lwdetr.profiling import PLOT_SUFFIXES

    for path in (args.report, args.plot):
        if path and not path.parent.is_dir():
            raise EdgeLwdetrError(f"cannot write {path}: folder {path.parent} does not exist")
    if args.plot and args.plot.suffix.lower() not in PLOT_SUFFIXES:
        raise EdgeLwdetrError(f"--plot {args.plot}: choose a {', '.join(PLOT_SUFFIXES)} file name")
    with _outputs([args.model, args.reference, args.plugin], {"--report": args.report, "--plot": args.plot}):
        _profile(args)


def _profile(args: argparse.Namespace) -> None:
    from edge_lwdetr import outputs
    from edge_lwdetr.backends import open_backend
    from edge_lwdetr.artefacts import artefact_identity
    from edge_lwdetr.profiling import compare_accuracy, environment, measure_latency, plot

    # TensorRT is timed as trtexec does it: CUDA-graph replay after the warm-up.
    backend = open_backend(
        args.model, args.backend, args.imgsz, args.plugin, not args.no_cuda_graph, args.device, args.variant, args.ema
    )
    identity = artefact_identity(Path(args.model))  # path, hash, precision: the model is read once for them
    report = {"edge_lwdetr_version": __version__, **identity, "backend": backend.name,
              "provider": getattr(backend, "device", None), "threads": getattr(backend, "threads", None),
              "batch": 1, "image_size": backend.image_size, "environment": environment()}  # fmt: skip
    report["cuda_graph"] = backend.name == "tensorrt" and not args.no_cuda_graph
    try:
        report["latency"] = measure_latency(backend, args.iterations, args.warmup)
    finally:
        backend.close()
    latency = report["latency"]
    print(f"{args.model} on {backend.name}: {latency['throughput_fps']:.1f} inferences/s, batch 1")
    for stage, s in latency["stages_ms"].items():
        print(f"  {stage:<12} mean {s['mean']:8.2f} ms   p50 {s['p50']:8.2f}   p90 {s['p90']:8.2f}   p99 {s['p99']:8.2f}")
    if args.reference:
        tolerance = _gate_tolerance(args, identity["precision"])
        accuracy = compare_accuracy(Path(args.model), args.reference, args.plugin, tolerance, precision=identity["precision"])
        report["accuracy"] = accuracy
        found = accuracy["detections"]
        print(
            f"  accuracy vs {args.reference} ({accuracy['precision']} tolerances): "
            f"{'PASS' if accuracy['passed'] else 'FAIL'}: recall {found['recall']:.3f} "
            f"({found['matched']}/{found['reference_detections']} detections), box error p95 "
            f"{found['box_error_px']['p95']:.2f} px (max {found['box_error_px']['max']:.2f}), score error p95 "
            f"{found['score_error']['p95']:.3f} (max {found['score_error']['max']:.3f})"
        )
    if args.report:
        outputs.write_text(args.report, json.dumps(report, indent=1))
        print(f"wrote {args.report}")
    if args.plot:
        with outputs.atomic_file(args.plot) as temporary:
            plot(report, temporary)
        print(f"wrote {args.plot}")
    if args.gate and not report.get("accuracy", {}).get("passed", False):
        raise EdgeLwdetrError(f"accuracy gate failed: {args.model} differs from {args.reference} beyond the tolerances")


def _gate_tolerance(args: argparse.Namespace, precision: str):
    """The precision's default tolerances with the bounds the user set; None: all defaults (by precision)."""
    from dataclasses import replace

    from edge_lwdetr.profiling import TOLERANCES

    given = {"min_recall": args.min_recall, "max_box_error_px": args.max_box_error, "max_score_error": args.max_score_error}
    given = {k: v for k, v in given.items() if v is not None}
    return replace(TOLERANCES[precision], **given) if given else None


def _add_quant_sensitivity(subparsers) -> None:
    p = subparsers.add_parser(
        "quant-sensitivity", help="INT8 accuracy cost of each layer group, and the groups a budget keeps in FP16"
    )
    p.add_argument("--onnx", required=True, type=Path, help="native export (edge-lwdetr export --msda native)")
    p.add_argument("--calib-data", required=True, type=Path, help=CALIB_DATA_HELP)
    p.add_argument("--calib-count", type=at_least(1), default=32, help="calibration images, spread over the data (32)")
    p.add_argument("--data", type=Path, help="COCO folder: also each group's COCO mAP drop there")
    p.add_argument("--data-images", type=at_least(1), default=100, help="--data: images evaluated per group (100)")
    p.add_argument("--groups", nargs="+", help="measure only these groups (default: all)")
    p.add_argument(
        "--int8-budget", type=int8_budget, default=DEFAULT_BUDGET_AP,
        help=f"AP points the INT8 graph may lose ({DEFAULT_BUDGET_AP})",
    )  # fmt: skip
    p.add_argument("--report", type=Path, help="write the measure here as JSON")
    p.add_argument("--plot", type=Path, help="write a bar chart of cost and FLOP share (PNG, SVG, PDF or JPG)")
    p.set_defaults(run=run_quant_sensitivity)


def run_quant_sensitivity(args: argparse.Namespace) -> None:
    from edge_lwdetr.engine.sensitivity_report import sensitivity_report, table, write
    from edge_lwdetr.profiling import PLOT_SUFFIXES

    if args.plot and args.plot.suffix.lower() not in PLOT_SUFFIXES:
        raise EdgeLwdetrError(f"--plot {args.plot}: choose a {', '.join(PLOT_SUFFIXES)} file name")
    budget = float("inf") if args.int8_budget is None else args.int8_budget  # off: no group kept in FP16
    with _outputs([args.onnx, args.calib_data, args.data], {"--report": args.report, "--plot": args.plot}):
        report = sensitivity_report(
            args.onnx, args.calib_data, args.calib_count, budget, args.groups, args.data, args.data_images
        )
        print("\n".join(table(report)))
        write(report, args.report, args.plot)
    for label, path in (("report", args.report), ("plot", args.plot)):
        if path:
            print(f"wrote the {label} {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edge-lwdetr", description="LW-DETR from PyTorch to TensorRT on NVIDIA Jetson, and live video inference"
    )
    parser.add_argument("--version", action="version", version=f"edge-lwdetr {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show the libraries' logs (ModelOpt, polygraphy)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_export(subparsers)
    _add_rewrite(subparsers)
    add_build_arguments(subparsers.add_parser("build", help="build a TensorRT engine (FP32, FP16 or INT8)"))
    _add_run(subparsers)
    _add_eval(subparsers)
    _add_profile(subparsers)
    _add_plugin(subparsers)
    _add_synth(subparsers)
    _add_train(subparsers)
    _add_serve(subparsers)
    _add_quant_sensitivity(subparsers)
    return parser


def _add_plugin(subparsers) -> None:
    p = subparsers.add_parser("plugin", help="build the MSDA TensorRT plugin library for this machine")
    actions = p.add_subparsers(dest="action", required=True)
    b = actions.add_parser("build", help="compile it (cached per TensorRT version and GPU; every command finds it)")
    b.add_argument("--tensorrt-root", type=Path, help="TensorRT install folder with include/ and lib/ (default: JetPack's)")
    b.add_argument("--force", action="store_true", help="build again even if this TensorRT and GPU have a library")
    b.set_defaults(run=run_plugin_build)


def run_plugin_build(args: argparse.Namespace) -> None:
    from edge_lwdetr.engine.plugin import build_plugin

    print(f"plugin library: {build_plugin(args.tensorrt_root, args.force)}")


def _add_synth(subparsers) -> None:
    p = subparsers.add_parser("synth", help="write a synthetic shapes dataset (COCO format) or demo video")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--coco", type=Path, help="write images/ and annotations.json into this folder")
    target.add_argument("--video", type=Path, help="write a demo video of moving shapes (.mp4 or .avi)")
    p.add_argument("--count", type=at_least(1), default=500, help="dataset images (500)")
    p.add_argument("--size", type=at_least(64), help="image side in pixels, at least 64 (dataset 256, video 384)")
    p.add_argument("--seconds", type=positive, default=8.0, help="video length (8)")
    p.add_argument("--fps", type=at_least(1), default=15, help="video frame rate (15)")
    p.add_argument("--exist-ok", action="store_true", help=f"--coco: {EXIST_OK_HELP}")
    p.add_argument("--seed", type=int, default=1, help="scene seed (1; the bundled model trained on seed 0)")
    p.set_defaults(run=run_synth)


def run_synth(args: argparse.Namespace) -> None:
    if args.size is not None and args.size > 4096:
        raise EdgeLwdetrError(f"--size {args.size} is above 4096 px: synthetic scenes that large serve no LW-DETR size")
    keep = {"--coco": "a dataset"} if args.coco else {}
    with _outputs([], {"--coco": args.coco, "--video": args.video}, exist_ok=args.exist_ok, keep=keep, folders=("--coco",)):
        if args.coco:
            from edge_lwdetr.synthetic.dataset import write_coco

            print(f"wrote {write_coco(args.coco, args.count, args.seed, args.size or 256)}")
        else:
            from edge_lwdetr.synthetic.video import write_video

            print(f"wrote {write_video(args.video, args.seconds, args.fps, args.size or 384, args.seed)}")


def _add_train(subparsers) -> None:
    from edge_lwdetr.training.settings import TrainSettings

    defaults = TrainSettings()
    p = subparsers.add_parser("train", help="train the small shapes LW-DETR on synthetic scenes")
    p.add_argument("--output", required=True, type=Path, help="folder for the trained model (transformers format)")
    p.add_argument("--heldout", type=Path, help="COCO folder to evaluate on during training (edge-lwdetr synth)")
    p.add_argument("--eval-every", type=at_least(1), default=1000, help="steps between held-out evaluations (1000)")
    p.add_argument("--exist-ok", action="store_true", help=f"--output: {EXIST_OK_HELP}")
    for name, value in asdict(defaults).items():
        kind = (at_least(0) if name == "seed" else at_least(1)) if isinstance(value, int) else positive
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=value, help=f"({value})")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> None:
    from edge_lwdetr.training.settings import TrainSettings
    from edge_lwdetr.training.trainer import train

    settings = TrainSettings(**{k: getattr(args, k) for k in asdict(TrainSettings())})
    if args.output.exists() and not args.output.is_dir():
        raise EdgeLwdetrError(f"--output {args.output} is a file; training writes a model folder: choose a folder path")
    if not settings.ema_decay < 1:
        raise EdgeLwdetrError(f"--ema-decay {settings.ema_decay} must be below 1")
    if args.heldout is not None and not args.heldout.is_dir():
        raise EdgeLwdetrError(f"--heldout {args.heldout} is not a folder: make one with `edge-lwdetr synth --coco DIR`")
    folders = ("--output",)
    with _outputs([args.heldout], {"--output": args.output}, exist_ok=args.exist_ok, keep={"--output": "a model"}, folders=folders):
        report = train(settings, args.output, args.heldout, args.eval_every)
    print(f"trained {settings.steps} steps in {report['minutes']:.1f} min; wrote {args.output}")


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"edge-lwdetr: warning: {message}", file=sys.stderr)


def _add_serve(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve a model through Triton (PyTriton) with dynamic batching")
    _add_model_arguments(p, "TensorRT engine, ONNX export, or weights (PyTorch)")
    p.add_argument("--address", default="127.0.0.1", help="listen address (127.0.0.1; 0.0.0.0: every interface)")
    p.add_argument("--http-port", type=at_least(1), default=8000, help="HTTP/REST port (8000)")
    p.add_argument("--grpc-port", type=at_least(1), default=8001, help="gRPC port (8001)")
    p.add_argument("--metrics-port", type=at_least(1), default=8002, help="Prometheus metrics port (8002)")
    p.add_argument("--max-batch", type=at_least(1), default=8, help="largest batch the server forms; 1: no batching (8)")
    p.add_argument("--max-queue-delay-us", type=at_least(0), default=2000,
                   help="how long a request may wait for others to batch with, in microseconds (2000)")  # fmt: skip
    p.add_argument("--instances", type=at_least(1), default=1, help="model instances, each with its own backend (1)")
    p.add_argument("--conf", type=in_unit_interval, default=DEFAULT_CONF,
                   help=f"keep detections scoring above this, in [0, 1] ({DEFAULT_CONF})")  # fmt: skip
    p.add_argument("--name", default="lwdetr", help="the model's name on the server (lwdetr)")
    p.set_defaults(run=run_serve)


def run_export_triton(args: argparse.Namespace) -> None:
    from edge_lwdetr.serving.export import export_triton

    if args.precision not in (None, "fp32") or args.batch != 1 or args.dynamic_batch or args.input_format != "float":
        raise EdgeLwdetrError("--format triton writes an fp32 dynamic-batch float-input graph: leave out --precision, "
                              "--batch, --dynamic-batch and --input-format (the GPU server builds the plan at the "
                              "precision it wants)")  # fmt: skip
    output = args.output or Path("lwdetr_triton")
    onnx_options = dict(imgsz=args.imgsz, opset=args.opset, msda=args.msda, variant=args.variant, ema=args.ema)
    with _outputs([args.weights], {"--output": output}, exist_ok=args.exist_ok, keep={"--output": "a repository"},
                  folders=("--output",)):  # fmt: skip
        export_triton(args.weights, output, onnx_options, args.plugin)
    print(f"serve it: tritonserver --model-repository {output.resolve()}")


def run_serve(args: argparse.Namespace) -> None:
    from edge_lwdetr.backends import open_backend
    from edge_lwdetr.serving.server import ServeOptions, serve

    def open_one():
        return open_backend(args.model, args.backend, args.imgsz, args.plugin, device=args.device,
                            variant=args.variant, ema=args.ema)  # fmt: skip

    options = ServeOptions(args.address, args.http_port, args.grpc_port, args.metrics_port, args.max_batch,
                           args.max_queue_delay_us, args.instances, args.conf, args.name)  # fmt: skip
    serve(open_one, options, log=lambda message: print(message, file=sys.stderr, flush=True))


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _one_line_warning
    try:
        args = build_parser().parse_args(argv)
        quiet.verbose = args.verbose
        with stop_raises():
            args.run(args)
    except (EdgeLwdetrError, UsageError) as error:
        print(f"edge-lwdetr: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except Stopped as stopped:
        print(f"edge-lwdetr: {stopped}", file=sys.stderr)
        return stopped.exit_status
    except KeyboardInterrupt:
        return 130
    except MemoryError:
        print("edge-lwdetr: error: out of memory; use a smaller --imgsz or batch, or a larger machine", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:  # the environment: a file, a folder, a device, a full disk
        where = f" {error.filename}" if error.filename else ""
        print(f"edge-lwdetr: error: cannot access{where}: {error.strerror or error}", file=sys.stderr)
        return EXIT_ERROR
    except Exception:  # noqa: BLE001 - anything else is a bug of ours: say so, with the traceback to report
        traceback.print_exc()
        print(
            f"edge-lwdetr: internal error: this is a bug in edge-lwdetr {__version__}, not in your input; please "
            "report it with the traceback above",
            file=sys.stderr,
        )
        return EXIT_BUG
    return 0


if __name__ == "__main__":
    sys.exit(main())
