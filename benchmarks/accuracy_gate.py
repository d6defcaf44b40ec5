"""What the accuracy gate of `profile --reference` measures on the bundled model, per precision, and on a graph
with one MSDA's sampling offsets zeroed (a broken export): the figures the default tolerances are set from.

    python benchmarks/accuracy_gate.py [--samples 8] [--calib 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import onnx

from edge_lwdetr.engine.build import build
from edge_lwdetr.engine.options import EngineOptions
from edge_lwdetr.export.onnx_export import export_onnx
from edge_lwdetr.profiling import TOLERANCES, Tolerance, compare_accuracy
from edge_lwdetr.synthetic.dataset import write_coco

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from hf_models import zero_sampling_offsets  # noqa: E402 - the broken graph the gate test uses too


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--calib", type=int, default=64)
    args = parser.parse_args()
    loose = Tolerance(0.0, 1e9, 1.0)  # report the figures; the verdict at the defaults is printed separately
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        reference = tmp / "model.onnx"
        export_onnx(Path("edge_lwdetr/assets/shapes_lwdetr"), reference, msda="native")
        calibration = tmp / "calib"
        write_coco(calibration, args.calib, seed=0)
        graphs = {
            "fp32 (plugin form)": build(reference, EngineOptions("fp32"), tmp / "m.fp32.engine", onnx_only=True),
            "fp16": build(reference, EngineOptions("fp16"), tmp / "m.fp16.engine", onnx_only=True),
            "int8": build(reference, EngineOptions("int8", calib_count=args.calib), tmp / "m.int8.engine",
                          calibration, onnx_only=True),  # a COCO folder: the INT8 budget measured on its labels
        }
        broken = tmp / "broken.onnx"
        onnx.save(zero_sampling_offsets(onnx.load(reference)), broken)
        graphs["fp32, MSDA offsets zeroed"] = broken
        print(f"bundled model, {args.samples} synthetic 512 px frames; reference: FP32 ONNX in ONNX Runtime")
        print("| graph | reference detections | recall | box error p95 / max (px) | score error p95 / max | default gate |")
        print("|---|---|---|---|---|---|")
        for name, graph in graphs.items():
            figures = compare_accuracy(graph, reference, None, loose, args.samples)
            found = figures["detections"]
            verdict = compare_accuracy(graph, reference, None, None, args.samples)
            print(
                f"| {name} | {found['reference_detections']} | {found['recall']:.3f} | "
                f"{found['box_error_px']['p95']:.3f} / {found['box_error_px']['max']:.3f} | "
                f"{found['score_error']['p95']:.4f} / {found['score_error']['max']:.4f} | "
                f"{'PASS' if verdict['passed'] else 'FAIL'} "
                f"({verdict['precision']}: {TOLERANCES[verdict['precision']]}) |"
            )


if __name__ == "__main__":
    main()
