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
from pathlib import Path

from edge_lwdetr import __version__
from edge_lwdetr.errors import EdgeLwdetrError

EXIT_ERROR = 2


def _add_predict(subparsers) -> None:
    p = subparsers.add_parser("predict", help="detect objects in an image with the PyTorch model")
    p.add_argument("--weights", required=True, help="transformers folder, hub id, original .pth or .safetensors")
    p.add_argument("--source", required=True, help="image file")
    p.add_argument("--imgsz", type=int, default=640, help="square model input size, a multiple of 64 (640)")
    p.add_argument("--conf", type=float, default=0.3, help="keep detections scoring above this (0.3)")
    p.add_argument("--save", type=Path, help="write the annotated image here")
    p.add_argument("--save-json", type=Path, help="write the detections here as JSON")
    p.add_argument("--variant", help="tiny|small|medium|large|xlarge; overrides the inferred architecture")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
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
    backend = TorchBackend(args.weights, args.imgsz, args.variant, args.device)
    start = time.perf_counter()
    detections = detect(backend, image, args.conf)
    elapsed_ms = (time.perf_counter() - start) * 1000

    for det in detections:
        print(f"  {det.name:<16} {det.score:.3f}  [{', '.join(f'{v:.1f}' for v in det.box)}]")
    print(
        f"{args.source}: {len(detections)} detections above {args.conf} "
        f"(LW-DETR-{backend.variant}, {args.imgsz} px, torch on {backend.device}, {elapsed_ms:.1f} ms)"
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-lwdetr", description="LW-DETR from PyTorch to TensorRT on NVIDIA Jetson, and live video inference"
    )
    parser.add_argument("--version", action="version", version=f"edge-lwdetr {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_predict(subparsers)
    return parser


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
