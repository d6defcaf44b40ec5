"""Held-out COCO mAP of the bundled shapes model in PyTorch FP32, and of its FP32 / FP16 / INT8 ONNX graphs in ONNX Runtime.

    python benchmarks/bundled_accuracy.py --images 500 --report runs/bundled_accuracy.json

The held-out split is synthetic seed 1 (the model trained on seed 0); INT8 calibrates on training-seed images,
as a user calibrates on their own training data, within the default AP budget measured on their labels. The FP16
and INT8 graphs are the ones `build_engine.py --onnx-only` writes for TensorRT (ModelOpt, MSDA kept in FP32, plugin
nodes); here ONNX Runtime runs them on the CPU, the plugin nodes through their reference body.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from edge_lwdetr.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_lwdetr.backends.torch_backend import TorchBackend
from edge_lwdetr.bundled import BUNDLED_MODEL
from edge_lwdetr.engine.build import build
from edge_lwdetr.engine.options import EngineOptions
from edge_lwdetr.evaluation import evaluate
from edge_lwdetr.export.onnx_export import export_onnx
from edge_lwdetr.synthetic.dataset import write_coco

HELDOUT_SEED, TRAINING_SEED = 1, 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(BUNDLED_MODEL), help="transformers folder (default: the bundled model)")
    parser.add_argument("--images", type=int, default=500, help="held-out images (500)")
    parser.add_argument("--calib-count", type=int, default=128, help="INT8 calibration images (128)")
    parser.add_argument("--report", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        torch_backend = TorchBackend(args.model, device="cpu")
        size = torch_backend.image_size
        heldout = work / "heldout"
        write_coco(heldout, args.images, HELDOUT_SEED, size)
        calibration = work / "calibration"
        write_coco(calibration, args.calib_count, TRAINING_SEED, size)

        results = {"PyTorch FP32": evaluate(torch_backend, heldout)}
        native = work / "model.onnx"
        export_onnx(args.model, native, imgsz=size, msda="native")
        results["ONNX FP32 (ORT)"] = evaluate(OnnxRuntimeBackend(native), heldout)
        for precision in ("fp16", "int8"):
            options = EngineOptions(precision, calib_count=args.calib_count)
            # The COCO folder, not its images: the INT8 budget is then measured on its labels (engine/mixed_int8.py).
            graph = build(native, options, work / f"model.{precision}.onnx", calibration, onnx_only=True)
            results[f"ONNX {precision.upper()} (ORT)"] = evaluate(OnnxRuntimeBackend(graph), heldout)

    reference = results["PyTorch FP32"]["mAP"]
    print(f"held-out synthetic split: {args.images} images of {size} px, seed {HELDOUT_SEED}")
    print(f"{'graph':<18} {'mAP':>7} {'mAP50':>7} {'mAP75':>7} {'drop (AP points)':>17}")
    for name, metrics in results.items():
        drop = 100 * (reference - metrics["mAP"])
        print(f"{name:<18} {metrics['mAP']:7.4f} {metrics['mAP50']:7.4f} {metrics['mAP75']:7.4f} {drop:17.2f}")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps({"images": args.images, "image_size": size, "results": results}, indent=2))


if __name__ == "__main__":
    main()
