"""Held-out COCO mAP of the bundled model's FP32, all-INT8 and budgeted mixed INT8 graphs in ONNX Runtime, with the
share of matrix-multiply FLOPs each leaves in INT8 and the groups the budget kept in FP16.

    python benchmarks/mixed_int8_accuracy.py --images 500 --report runs/mixed_int8.json

Held-out: synthetic seed 1; calibration: seed 0 (the training seed), as benchmarks/bundled_accuracy.py does.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import onnx

from edge_lwdetr.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_lwdetr.bundled import BUNDLED_MODEL
from edge_lwdetr.engine.build import build
from edge_lwdetr.engine.options import EngineOptions
from edge_lwdetr.engine.mixed_int8 import METADATA_KEY
from edge_lwdetr.engine.precision import inline_msda
from edge_lwdetr.engine.sensitivity import DEFAULT_BUDGET_AP, int8_flop_share, matmul_flops
from edge_lwdetr.evaluation import evaluate
from edge_lwdetr.export.onnx_export import export_onnx
from edge_lwdetr.synthetic.dataset import write_coco

HELDOUT_SEED, TRAINING_SEED, SIZE = 1, 0, 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="held-out images (500)")
    parser.add_argument("--calib-count", type=int, default=128, help="INT8 calibration images (128)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_AP, help="AP budget of the mixed graph (0.3)")
    parser.add_argument("--report", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        heldout, calibration = work / "heldout", work / "calibration"
        write_coco(heldout, args.images, HELDOUT_SEED, SIZE)
        write_coco(calibration, args.calib_count, TRAINING_SEED, SIZE)
        native = work / "model.onnx"
        export_onnx(BUNDLED_MODEL, native, imgsz=SIZE, msda="native")
        flops = matmul_flops(inline_msda(onnx.load(native))[0])
        results = {"FP32": {"mAP": evaluate(OnnxRuntimeBackend(native), heldout)["mAP"], "int8_flop_share": 0.0}}
        for name, budget in (("INT8 (all groups)", None), (f"INT8 mixed ({args.budget} AP)", args.budget)):
            options = EngineOptions("int8", calib_count=args.calib_count, int8_budget=budget)
            graph = build(native, options, work / "model.int8.onnx", calibration / "images", onnx_only=True, log=print)
            model = onnx.load(graph)
            meta = {p.key: p.value for p in model.metadata_props}
            results[name] = {
                "mAP": evaluate(OnnxRuntimeBackend(graph), heldout)["mAP"],
                "int8_flop_share": int8_flop_share(model, flops),
                "kept_fp16": json.loads(meta[METADATA_KEY])["kept_fp16"] if METADATA_KEY in meta else [],
            }

    reference = results["FP32"]["mAP"]
    print(f"held-out synthetic split: {args.images} images of {SIZE} px, seed {HELDOUT_SEED}; calibration seed "
          f"{TRAINING_SEED}, {args.calib_count} images")  # fmt: skip
    print(f"{'graph':<22} {'mAP':>7} {'drop (AP)':>10} {'INT8 FLOPs':>11}  kept in FP16")
    for name, row in results.items():
        drop = 100 * (reference - row["mAP"])
        kept = ", ".join(row.get("kept_fp16", [])) or "-"
        print(f"{name:<22} {row['mAP']:7.4f} {drop:10.2f} {100 * row['int8_flop_share']:10.1f}%  {kept}")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps({"images": args.images, "results": results}, indent=2))


if __name__ == "__main__":
    main()
