"""The `edge-lwdetr` command line: a thin shell over the package's API.

Expected failures print one line (`edge-lwdetr: error: ...`) and exit with status 2; nothing heavy is imported
before a subcommand needs it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

from edge_lwdetr import __version__
from edge_lwdetr.bundled import BUNDLED_MODEL
from edge_lwdetr.errors import EdgeLwdetrError

EXIT_ERROR = 2
WEIGHTS_HELP = "transformers folder, hub id, original .pth or .safetensors (default: the bundled shapes model)"
IMGSZ_HELP = "square input size, a multiple of 64 (default: the size the weights' folder names, else 640)"


def _add_predict(subparsers) -> None:
    p = subparsers.add_parser("predict", help="detect objects in an image with the PyTorch model")
    p.add_argument("--weights", default=str(BUNDLED_MODEL), help=WEIGHTS_HELP)
    p.add_argument("--source", required=True, help="image file")
    p.add_argument("--imgsz", type=int, help=IMGSZ_HELP)
    p.add_argument("--conf", type=float, default=0.3, help="keep detections scoring above this (0.3)")
    p.add_argument("--save", type=Path, help="write the annotated image here")
    p.add_argument("--save-json", type=Path, help="write the detections here as JSON")
    p.add_argument("--variant", help="tiny|small|medium|large|xlarge; overrides the inferred architecture")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--ema", action="store_true", help="original training checkpoint: load its ema_model weights")
    p.set_defaults(run=run_predict)


def read_image(path: Path):
    import cv2
    import numpy as np

    if not path.is_file():
        raise EdgeLwdetrError(f"cannot read image {path}: no such file")
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise EdgeLwdetrError(f"cannot read image {path}: not an image OpenCV can decode (JPEG, PNG, BMP, ...)")
    return image


def run_predict(args: argparse.Namespace) -> None:
    import cv2

    from edge_lwdetr.backends.torch_backend import TorchBackend
    from edge_lwdetr.draw import draw_detections
    from edge_lwdetr.predict import detect

    if not 0 <= args.conf < 1:
        raise EdgeLwdetrError(f"--conf {args.conf} is outside [0, 1)")
    image = read_image(Path(args.source))
    backend = TorchBackend(args.weights, args.imgsz, args.variant, args.device, ema=args.ema)
    start = time.perf_counter()
    detections = detect(backend, image, args.conf)
    elapsed_ms = (time.perf_counter() - start) * 1000

    for det in detections:
        print(f"  {det.name:<16} {det.score:.3f}  [{', '.join(f'{v:.1f}' for v in det.box)}]")
    print(
        f"{args.source}: {len(detections)} detections above {args.conf} "
        f"(LW-DETR-{backend.variant}, {backend.image_size} px, torch on {backend.device}, {elapsed_ms:.1f} ms)"
    )
    if args.save:
        if not cv2.imwrite(str(args.save), draw_detections(image, detections)):
            raise EdgeLwdetrError(f"cannot write {args.save}: check the folder exists and the extension is an image's")
        print(f"annotated image: {args.save}")
    if args.save_json:
        try:
            args.save_json.write_text(json.dumps({"detections": [d.to_json() for d in detections]}, indent=1))
        except OSError as error:
            raise EdgeLwdetrError(f"cannot write {args.save_json}: {error.strerror}") from None
        print(f"detections: {args.save_json}")


def _default_trt_version() -> str:
    """The installed TensorRT's version, else JetPack 6's 10.3 (only the builtin plugin's version depends on it)."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        import tensorrt

        return tensorrt.__version__
    return "10.3"


def _add_export(subparsers) -> None:
    p = subparsers.add_parser("export", help="export to ONNX, with each MSDA rewritten to a TensorRT plugin node")
    p.add_argument("--weights", default=str(BUNDLED_MODEL), help=WEIGHTS_HELP)
    p.add_argument("--output", required=True, type=Path, help="ONNX file to write")
    p.add_argument("--imgsz", type=int, help=IMGSZ_HELP)
    batch = p.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int, default=1, help="static batch size (1)")
    batch.add_argument("--dynamic-batch", action="store_true", help="symbolic batch dimension")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset: 18 (default), 19 or 20")
    p.add_argument(
        "--msda",
        choices=["plugin", "builtin", "native"],
        default="plugin",
        help="plugin: edge-lwdetr's TensorRT plugin (default); builtin: NVIDIA's MultiscaleDeformableAttnPlugin_TRT; "
        "native: portable standard ops",
    )
    p.add_argument("--trt-version", help="target TensorRT, for the builtin plugin's version (default: installed, else 10.3)")
    p.add_argument("--variant", help="tiny|small|medium|large|xlarge; overrides the inferred architecture")
    p.add_argument("--ema", action="store_true", help="original training checkpoint: load its ema_model weights")
    p.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> None:
    from edge_lwdetr.export.onnx_export import export_onnx

    export_onnx(
        args.weights,
        args.output,
        imgsz=args.imgsz,
        batch=args.batch,
        dynamic_batch=args.dynamic_batch,
        opset=args.opset,
        msda=args.msda,
        trt_version=args.trt_version or _default_trt_version(),
        variant=args.variant,
        ema=args.ema,
        log=print,
    )


def _add_rewrite(subparsers) -> None:
    p = subparsers.add_parser("rewrite", help="rewrite the MSDA nodes of an exported ONNX into TensorRT plugin nodes")
    p.add_argument("input", type=Path, help="ONNX from `edge-lwdetr export`")
    p.add_argument("output", type=Path, help="ONNX file to write")
    p.add_argument("--target", choices=["plugin", "builtin"], default="plugin", help="plugin (default) or builtin")
    p.add_argument("--trt-version", help="target TensorRT, for the builtin plugin's version (default: installed, else 10.3)")
    p.set_defaults(run=run_rewrite)


def run_rewrite(args: argparse.Namespace) -> None:
    import onnx

    from edge_lwdetr.export.msda_onnx import msda_nodes
    from edge_lwdetr.export.rewrite import load_onnx, rewrite_msda

    model = rewrite_msda(load_onnx(args.input), args.target, args.trt_version or _default_trt_version(), str(args.input))
    onnx.checker.check_model(model, full_check=True)
    try:
        onnx.save(model, args.output)
    except OSError as error:
        raise EdgeLwdetrError(f"cannot write {args.output}: {error.strerror}") from None
    print(f"rewrote {len(msda_nodes(model))} MSDA nodes to the {args.target} form: {args.output}")


def _batch_profile(text: str) -> tuple[int, int, int]:
    try:
        lo, opt, hi = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not MIN,OPT,MAX such as 1,4,8") from None
    if not 1 <= lo <= opt <= hi:
        raise argparse.ArgumentTypeError(f"{text!r}: need 1 <= MIN <= OPT <= MAX")
    return lo, opt, hi


def add_build_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--onnx", required=True, type=Path, help="ONNX from `edge-lwdetr export --msda native`")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp16", help="fp16 (default), int8, fp32")
    p.add_argument("--calib-data", type=Path, help="int8: calibration images (a folder) or a video")
    p.add_argument("--calib-count", type=int, default=500, help="int8: number of calibration images (500)")
    p.add_argument("--output", type=Path, help="engine file (default: ONNX name + .<precision>.engine)")
    p.add_argument("--onnx-only", action="store_true", help="stop after writing the precision graph (no TensorRT)")
    p.add_argument("--plugin", type=Path, help="plugin library (default: $EDGE_LWDETR_PLUGIN or build/plugins/...)")
    p.add_argument("--msda", choices=["plugin", "builtin"], default="plugin", help="plugin (default) or NVIDIA's builtin")
    p.add_argument("--trt-version", help="target TensorRT, for the builtin plugin's version (default: installed)")
    p.add_argument("--batch-profile", type=_batch_profile, help="MIN,OPT,MAX batch for a dynamic-batch graph (1,1,8)")
    p.add_argument("--workspace", type=float, default=4.0, help="builder workspace in GiB (4)")
    p.add_argument("--timing-cache", type=Path, help="timing cache file, loaded if present and saved after the build")
    p.add_argument("--version-compatible", action="store_true", help="engine loadable by later TensorRT versions")
    p.add_argument("--dla-core", type=int, help="build for this DLA core, GPU fallback on (Jetson, where supported)")
    p.add_argument("--legacy-precision-flags", action="store_true", help="TensorRT 10.x only: weakly typed build")
    p.set_defaults(run=run_build)


def run_build(args: argparse.Namespace) -> None:
    from edge_lwdetr.engine.build import build

    build(
        args.onnx,
        precision=args.precision,
        output=args.output,
        calib_data=args.calib_data,
        calib_count=args.calib_count,
        onnx_only=args.onnx_only,
        plugin=args.plugin,
        msda=args.msda,
        trt_version=args.trt_version or _default_trt_version(),
        batch_profile=args.batch_profile,
        workspace_gib=args.workspace,
        timing_cache=args.timing_cache,
        version_compatible=args.version_compatible,
        dla_core=args.dla_core,
        legacy_precision_flags=args.legacy_precision_flags,
        log=print,
    )


def _add_model_arguments(p: argparse.ArgumentParser, model_help: str) -> None:
    p.add_argument("--model", default=str(BUNDLED_MODEL), help=f"{model_help} (default: the bundled shapes model)")
    p.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime", "torch"])
    p.add_argument("--imgsz", type=int, help=f"weights run with PyTorch: {IMGSZ_HELP}")
    p.add_argument("--plugin", type=Path, help="MSDA plugin library for an engine (default: the one it was built with)")


def _add_run(subparsers) -> None:
    p = subparsers.add_parser("run", help="detect objects in a camera, stream, video or image folder")
    _add_model_arguments(p, "TensorRT engine, ONNX export, or weights (PyTorch)")
    p.add_argument("--source", required=True, help="0, /dev/video0, csi://0, rtsp://..., a video file, an image folder")
    p.add_argument("--save", type=Path, help="write the annotated video here (.mp4 or .avi)")
    p.add_argument("--save-json", type=Path, help="write one JSON line of detections per processed frame here")
    p.add_argument("--show", action="store_true", help="show the annotated video in a window (q or Esc stops)")
    p.add_argument("--conf", type=float, default=0.3, help="keep detections scoring above this (0.3)")
    p.add_argument("--max-frames", type=int, help="stop after this many processed frames")
    p.add_argument("--cuda-graph", action="store_true", help="TensorRT: replay each inference as a CUDA graph")
    p.set_defaults(run=run_run)


def run_run(args: argparse.Namespace) -> None:
    import signal
    import threading

    from edge_lwdetr.backends import open_backend
    from edge_lwdetr.runtime.pipeline import run_stream
    from edge_lwdetr.runtime.sinks import JsonlSink, VideoSink, WindowSink
    from edge_lwdetr.runtime.sources import open_source

    if not 0 <= args.conf < 1:
        raise EdgeLwdetrError(f"--conf {args.conf} is outside [0, 1)")
    log = lambda message: print(message, file=sys.stderr)  # noqa: E731 - stdout carries the results
    source = open_source(args.source, log=log)
    backend = open_backend(args.model, args.backend, args.imgsz, args.plugin, args.cuda_graph)
    stop = threading.Event()
    sinks = []
    if args.save:
        sinks.append(VideoSink(args.save, source.fps))
    if args.save_json:
        sinks.append(JsonlSink(args.save_json))
    if args.show:
        sinks.append(WindowSink(f"edge-lwdetr: {args.source}", stop))
    print(
        f"LW-DETR-{backend.variant} on {backend.name} ({getattr(backend, 'device', 'cpu')}), "
        f"{backend.image_size} px, source {args.source}{' (live)' if source.live else ''}"
    )
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = run_stream(backend, source, sinks, args.conf, stop, args.max_frames)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        backend.close()
    print(f"{summary.frames} frames in {summary.seconds:.1f} s: {summary.fps:.1f} FPS end to end, {summary.dropped} dropped")
    for stage, stats in summary.stages.items():
        print(f"  {stage:<12} p50 {stats['p50']:8.2f} ms   p90 {stats['p90']:8.2f} ms   p99 {stats['p99']:8.2f} ms")
    for path in (args.save, args.save_json):
        if path:
            print(f"wrote {path}")


def _add_eval(subparsers) -> None:
    p = subparsers.add_parser("eval", help="COCO mAP of a model on a COCO-format folder")
    _add_model_arguments(p, "TensorRT engine, ONNX export, or weights (PyTorch)")
    p.add_argument("--data", required=True, type=Path, help="folder with annotations.json and the images")
    p.add_argument("--max-images", type=int, help="evaluate the first N images only")
    p.add_argument("--min-map", type=float, help="fail (exit status 2) when mAP@[.5:.95] is below this floor")
    p.add_argument("--report", type=Path, help="write the metrics here as JSON")
    p.set_defaults(run=run_eval)


def run_eval(args: argparse.Namespace) -> None:
    from edge_lwdetr.backends import open_backend
    from edge_lwdetr.evaluation import METRICS, evaluate

    backend = open_backend(args.model, args.backend, args.imgsz, args.plugin)
    try:
        metrics = evaluate(backend, args.data, args.max_images)
    finally:
        backend.close()
    report = {"model": args.model, "backend": backend.name, **metrics}
    print(f"{metrics['images']} images: " + ", ".join(f"{name} {metrics[name]:.4f}" for name in METRICS))
    if args.report:
        try:
            args.report.write_text(json.dumps(report, indent=1))
        except OSError as error:
            raise EdgeLwdetrError(f"cannot write {args.report}: {error.strerror}") from None
    if args.min_map is not None and metrics["mAP"] < args.min_map:
        raise EdgeLwdetrError(f"mAP {metrics['mAP']:.4f} is below the floor --min-map {args.min_map}")


def _add_profile(subparsers) -> None:
    p = subparsers.add_parser("profile", help="latency per stage, accuracy against a reference, environment")
    _add_model_arguments(p, "TensorRT engine, ONNX (FP32/FP16/INT8), or weights (PyTorch)")
    p.add_argument("--reference", type=Path, help="FP32 ONNX to compare the model with (polygraphy, ONNX Runtime)")
    p.add_argument("--iterations", type=int, default=200, help="timed inferences (200)")
    p.add_argument("--warmup", type=int, default=20, help="untimed inferences first (20)")
    p.add_argument("--atol", type=float, default=1e-3, help="accuracy tolerance, absolute (median error)")
    p.add_argument("--rtol", type=float, default=1e-3, help="accuracy tolerance, relative (median error)")
    p.add_argument("--report", type=Path, help="write the report here as JSON")
    p.add_argument("--plot", type=Path, help="write a PNG: latency histogram and stage breakdown")
    p.add_argument("--gate", action="store_true", help="exit with status 2 when the accuracy comparison fails (CI)")
    p.add_argument("--no-cuda-graph", action="store_true", help="TensorRT: time plain enqueues, not CUDA-graph replay")
    p.set_defaults(run=run_profile)


def run_profile(args: argparse.Namespace) -> None:
    from edge_lwdetr.backends import open_backend
    from edge_lwdetr.profiling import compare_accuracy, environment, measure_latency, plot

    if args.iterations < 1 or args.warmup < 0:
        raise EdgeLwdetrError("--iterations must be at least 1 and --warmup at least 0")
    for path in (args.report, args.plot):
        if path and not path.parent.is_dir():
            raise EdgeLwdetrError(f"cannot write {path}: folder {path.parent} does not exist")
    # TensorRT is timed as trtexec does it: CUDA-graph replay after the warm-up.
    backend = open_backend(args.model, args.backend, args.imgsz, args.plugin, cuda_graph=not args.no_cuda_graph)
    report = {"model": args.model, "backend": backend.name, "image_size": backend.image_size, "environment": environment()}
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
        accuracy = compare_accuracy(Path(args.model), args.reference, backend.image_size, args.plugin, args.atol, args.rtol)
        report["accuracy"] = accuracy
        errors = ", ".join(f"{k} max {v['max_abs']:.3g} median {v['median_abs']:.3g}" for k, v in accuracy["outputs"].items())
        print(f"  accuracy vs {args.reference}: {'PASS' if accuracy['passed'] else 'FAIL'} ({errors}; "
              f"top-100 agreement {accuracy['top100_agreement']:.2f})")
    if args.report:
        args.report.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.report}")
    if args.plot:
        plot(report, args.plot)
        print(f"wrote {args.plot}")
    if args.gate and not report.get("accuracy", {}).get("passed", False):
        raise EdgeLwdetrError(f"accuracy gate failed: {args.model} differs from {args.reference} beyond the tolerances")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-lwdetr", description="LW-DETR from PyTorch to TensorRT on NVIDIA Jetson, and live video inference"
    )
    parser.add_argument("--version", action="version", version=f"edge-lwdetr {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_predict(subparsers)
    _add_export(subparsers)
    _add_rewrite(subparsers)
    add_build_arguments(subparsers.add_parser("build", help="build a TensorRT engine (FP32, FP16 or INT8)"))
    _add_run(subparsers)
    _add_eval(subparsers)
    _add_profile(subparsers)
    _add_synth(subparsers)
    _add_train(subparsers)
    return parser


def _add_synth(subparsers) -> None:
    p = subparsers.add_parser("synth", help="write a synthetic shapes dataset (COCO format) or demo video")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--coco", type=Path, help="write images/ and annotations.json into this folder")
    target.add_argument("--video", type=Path, help="write a demo video of moving shapes (.mp4 or .avi)")
    p.add_argument("--count", type=int, default=500, help="dataset images (500)")
    p.add_argument("--size", type=int, help="image side in pixels (dataset 256, video 384)")
    p.add_argument("--seconds", type=float, default=8.0, help="video length (8)")
    p.add_argument("--fps", type=int, default=15, help="video frame rate (15)")
    p.add_argument("--seed", type=int, default=1, help="scene seed (1; the bundled model trained on seed 0)")
    p.set_defaults(run=run_synth)


def run_synth(args: argparse.Namespace) -> None:
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
    p.add_argument("--eval-every", type=int, default=1000, help="steps between held-out evaluations (1000)")
    for name, value in asdict(defaults).items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value, help=f"({value})")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> None:
    from edge_lwdetr.training.settings import TrainSettings
    from edge_lwdetr.training.trainer import train

    settings = TrainSettings(**{k: getattr(args, k) for k in asdict(TrainSettings())})
    report = train(settings, args.output, args.heldout, args.eval_every)
    print(f"trained {settings.steps} steps in {report['minutes']:.1f} min; wrote {args.output}")


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"edge-lwdetr: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _one_line_warning
    try:
        args.run(args)
    except EdgeLwdetrError as error:
        print(f"edge-lwdetr: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
