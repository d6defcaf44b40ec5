"""Held-out COCO mAP of the bundled model's FP32, FP16, all-INT8 and budgeted INT8 graphs in ONNX Runtime, with the
share of matrix-multiply FLOPs each leaves in INT8, the groups the budget kept in FP16 and the time each graph took.

    python benchmarks/mixed_int8_accuracy.py --images 500 --report runs/mixed_int8.json

Held-out: synthetic seed 1; calibration: `--calib-count` images spread over a labelled pool of `--calib-pool` scenes
of seed 0 (the training seed), passed as a COCO folder, so the budget is measured in COCO mAP on its labels; the
last row passes the pool's images alone, so the budget is measured against the FP32 graph's detections.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import onnx

from edge_lwdetr.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_lwdetr.bundled import BUNDLED_MODEL
from edge_lwdetr.defaults import DEFAULT_BUDGET_AP
from edge_lwdetr.engine.build import build
from edge_lwdetr.engine.mixed_int8 import METADATA_KEY
from edge_lwdetr.engine.options import EngineOptions
from edge_lwdetr.engine.precision import inline_msda
from edge_lwdetr.engine.sensitivity import int8_flop_share, matmul_flops
from edge_lwdetr.evaluation import evaluate
from edge_lwdetr.export.onnx_export import export_onnx
from edge_lwdetr.synthetic.dataset import write_coco

HELDOUT_SEED, TRAINING_SEED, SIZE = 1, 0, 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="held-out images (500)")
    parser.add_argument("--calib-count", type=int, default=128, help="INT8 calibration images (128)")
    parser.add_argument("--calib-pool", type=int, default=512, help="labelled scenes they are spread over (512)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_AP, help="AP budget of the mixed graph (0.3)")
    parser.add_argument("--report", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        heldout, calibration = work / "heldout", work / "calibration"
        write_coco(heldout, args.images, HELDOUT_SEED, SIZE)
        write_coco(calibration, args.calib_pool, TRAINING_SEED, SIZE)
        native = work / "model.onnx"
        export_onnx(BUNDLED_MODEL, native, imgsz=SIZE, msda="native")
        flops = matmul_flops(inline_msda(onnx.load(native))[0])
        results = {}
        int8, budgeted = (EngineOptions("int8", calib_count=args.calib_count, int8_budget=budget)
                          for budget in (None, args.budget))  # fmt: skip
        graphs = {  # options, calibration source
            "FP32": (None, None),
            "FP16": (EngineOptions("fp16"), None),
            "INT8 (all groups)": (int8, calibration),
            f"INT8 budget {args.budget} AP": (budgeted, calibration),  # measured on the pool's labels
            f"INT8 budget {args.budget}, no labels": (budgeted, calibration / "images"),  # against FP32 detections
        }
        for name, (options, source) in graphs.items():
            started = time.perf_counter()
            graph = native
            if options is not None:
                graph = build(native, options, work / f"model.{len(results)}.onnx", source, onnx_only=True, log=print)
            made = time.perf_counter() - started
            model = onnx.load(graph)
            meta = {p.key: p.value for p in model.metadata_props}
            results[name] = {
                "mAP": evaluate(OnnxRuntimeBackend(graph), heldout)["mAP"],
                "int8_flop_share": int8_flop_share(model, flops),
                "graph_seconds": round(made, 1),
                **({"budget": json.loads(meta[METADATA_KEY])} if METADATA_KEY in meta else {}),
            }

    reference = results["FP32"]["mAP"]
    print(f"held-out synthetic split: {args.images} images of {SIZE} px, seed {HELDOUT_SEED}; calibration: "
          f"{args.calib_count} images spread over {args.calib_pool} of seed {TRAINING_SEED}")  # fmt: skip
    print(f"{'graph':<28} {'mAP':>7} {'drop (AP)':>10} {'INT8 FLOPs':>11} {'made in':>8}  kept in FP16")
    for name, row in results.items():
        drop = 100 * (reference - row["mAP"])
        kept = ", ".join(row["budget"]["kept_fp16"]) or "none" if "budget" in row else "-"
        print(f"{name:<28} {row['mAP']:7.4f} {drop:10.2f} {100 * row['int8_flop_share']:10.1f}% "
              f"{row['graph_seconds']:7.0f}s  {kept}")  # fmt: skip
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps({"images": args.images, "results": results}, indent=2))


if __name__ == "__main__":
    main()
