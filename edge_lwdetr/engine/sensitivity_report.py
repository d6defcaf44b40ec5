"""`edge-lwdetr quant-sensitivity`: the per-group INT8 measure (engine/sensitivity.py) of a native export, as a table,
a plot and JSON, with the groups the budget would keep in FP16."""

from __future__ import annotations

import json
from pathlib import Path

from edge_lwdetr import outputs
from edge_lwdetr.artefacts import graph_metadata, load_onnx
from edge_lwdetr.engine.calibration import calibration_images, calibration_labels
from edge_lwdetr.engine.precision import precision_graph
from edge_lwdetr.engine.sensitivity import GraphLoss, calibrated, keep_in_fp16, measure
from edge_lwdetr.export.rewrite import to_native
from edge_lwdetr.quiet import libraries_quiet


def sensitivity_report(
    onnx_path: Path, calib_data: Path, calib_count: int, budget: float, groups: list[str] | None = None,
    data: Path | None = None, data_images: int = 100, log=print,
) -> dict:  # fmt: skip
    model = to_native(load_onnx(onnx_path))
    meta = graph_metadata(model)
    calibration = calibration_images(calib_data, calib_count, meta.image_size, meta.input_format)
    report = measure(model, calibration, groups, log, data, data_images)
    if not groups:  # every group measured: their costs are scaled to the measured loss of the all-INT8 graph
        log("INT8 sensitivity: the all-INT8 graph")
        with libraries_quiet():
            loss = GraphLoss(model, calibration, calibration_labels(calib_data))
            report = calibrated(report, loss(precision_graph(model, "int8", calibration)))
        report["measured_against"] = loss.against
    report["choice"] = keep_in_fp16(report, budget)
    report["onnx"] = str(onnx_path)
    return report


def table(report: dict) -> list[str]:
    """One line per group, costliest first, then the budget's choice."""
    with_map = "fp32_map" in report
    scaled = "int8_ap_loss" in report
    lines = [f"{'group':<28} {'AP cost':>8} {'vs FP32':>8} {'recall':>7} {'box p95':>8} {'score p95':>9} {'FLOPs':>7}"
             + (f" {'mAP drop':>9}" if with_map else "")]  # fmt: skip
    for row in report["groups"]:
        lines.append(
            f"{row['group']:<28} {row['ap_loss']:8.2f} {row.get('ap_loss_vs_fp32', row['ap_loss']):8.2f} "
            f"{row['recall']:7.3f} {row['box_error_p95_px']:8.2f} {row['score_error_p95']:9.3f} "
            f"{100 * row['flop_share']:6.1f}%" + (f" {row['map_loss']:9.2f}" if with_map else "")
        )
    choice = report["choice"]
    lines.append(
        f"vs FP32: AP points the group alone in INT8 loses against the FP32 graph's detections on {report['images']} "
        "calibration images; AP cost: "
        + (f"the same scaled to sum to the all-INT8 graph's measured loss, {report['int8_ap_loss']:.2f} AP "
           f"({report['measured_against']})" if scaled else "unscaled (--groups)")
        + (f"; mAP drop: COCO mAP points on --data (FP32 {100 * report['fp32_map']:.2f})" if with_map else "")
    )  # fmt: skip
    lines.append(
        f"budget {choice['budget_ap']} AP: keep in FP16 {', '.join(choice['kept_fp16']) or 'nothing'}; estimated loss "
        f"{choice['estimated_ap_loss']:.2f} AP; expected {100 * choice['expected_int8_flop_share']:.1f}% of "
        "matrix-multiply FLOPs in INT8"
    )
    return lines


def plot(report: dict, path: Path) -> None:
    """Bars of each group's AP cost (FP16-kept groups in orange) beside its share of matrix-multiply FLOPs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["groups"]
    kept = set(report["choice"]["kept_fp16"])
    names = [row["group"] for row in rows]
    colours = ["#e07b39" if name in kept else "#3b7dd8" for name in names]
    figure, (cost, share) = plt.subplots(1, 2, figsize=(12, max(3, 0.28 * len(rows))), sharey=True)
    cost.barh(names, [row["ap_loss"] for row in rows], color=colours)
    scale = ", scaled to the measured all-INT8 loss" if "int8_ap_loss" in report else " vs FP32"
    cost.set(title=f"INT8 cost of the group alone (AP points{scale})", xlabel="AP points")
    cost.invert_yaxis()
    share.barh(names, [100 * row["flop_share"] for row in rows], color=colours)
    share.set(title="share of matrix-multiply FLOPs", xlabel="%")
    choice = report["choice"]
    figure.suptitle(
        f"{Path(report['onnx']).name}: kept in FP16 (orange) within {choice['budget_ap']} AP, "
        f"{100 * choice['expected_int8_flop_share']:.1f}% of FLOPs in INT8"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write(report: dict, json_path: Path | None, plot_path: Path | None) -> None:
    if json_path:
        outputs.write_text(json_path, json.dumps(report, indent=1))
    if plot_path:
        with outputs.atomic_file(plot_path) as temporary:
            plot(report, temporary)
