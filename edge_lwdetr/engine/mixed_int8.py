"""The INT8 graph within an accuracy budget, and a report of what was kept in FP16 and of the matrix-multiply FLOPs
left in INT8, carried in the graph's metadata.

The all-INT8 graph is made and its loss measured (engine/sensitivity.py's GraphLoss). Within the budget, it is the
answer: no per-group measure is needed. Over it, each group's cost is measured alone (engine/sensitivity.py),
scaled so that the costs sum to the measured loss, the costliest groups are kept in FP16 until the rest is within the
budget, and the graph so made is measured again; the report gives both the estimate and the measure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from edge_lwdetr.engine.precision import inline_msda, precision_graph
from edge_lwdetr.engine.sensitivity import (
    GraphLoss,
    calibrated,
    int8_flop_share,
    keep_in_fp16,
    matmul_flops,
    measure,
)  # fmt: skip
from edge_lwdetr.quiet import libraries_quiet

METADATA_KEY = "edge_lwdetr.int8_mixed"


def mixed_int8_graph(
    native: onnx.ModelProto, calibration: np.ndarray, budget: float, log: Callable[[str], None] = lambda m: None,
    labels: Path | None = None,
) -> onnx.ModelProto:  # fmt: skip
    """The INT8 precision graph of `native` whose measured AP loss is within `budget` points (see the module's
    docstring); `labels`: a COCO folder labelling the calibration images (engine/calibration.calibration_labels)."""
    with libraries_quiet():
        graph = precision_graph(native, "int8", calibration)
        loss = GraphLoss(native, calibration, labels)
    measured = loss(graph)
    log(f"the all-INT8 graph loses {measured:.2f} AP ({loss.against}); budget {budget}")
    summary = {"budget_ap": budget, "measured_against": loss.against, "int8_ap_loss": round(measured, 3)}
    choice = {"kept_fp16": [], "fp16_nodes": [], "estimated_ap_loss": measured}
    if measured > budget:
        report = calibrated(measure(native, calibration, log=log), measured)
        choice = keep_in_fp16(report, budget)
        fields = ("group", "ap_loss", "ap_loss_vs_fp32", "flop_share", "recall")
        summary["groups"] = [{k: row[k] for k in fields} for row in report["groups"]]
        with libraries_quiet():
            graph = precision_graph(native, "int8", calibration, fp16_nodes=choice["fp16_nodes"])
        measured = loss(graph)
    inlined, _ = inline_msda(native)
    summary |= {
        "kept_fp16": choice["kept_fp16"],
        "estimated_ap_loss": round(choice["estimated_ap_loss"], 3),
        "measured_ap_loss": round(measured, 3),
        "int8_matmul_flop_share": round(int8_flop_share(graph, matmul_flops(inlined)), 4),
    }
    graph.metadata_props.add(key=METADATA_KEY, value=json.dumps(summary))
    for line in describe(summary):
        log(line)
    return graph


def describe(summary: dict) -> list[str]:
    """The report's lines: the costliest groups (when measured), what was kept in FP16, the loss and the FLOP share."""
    lines = []
    if summary.get("groups"):
        lines.append(f"{'group':<28} {'AP cost':>8} {'FLOPs':>7} {'recall':>7}")
        for row in summary["groups"][:8]:
            lines.append(
                f"{row['group']:<28} {row['ap_loss']:8.2f} {100 * row['flop_share']:6.1f}% {row['recall']:7.3f}"
            )
    kept = ", ".join(summary["kept_fp16"]) or "none"
    lines.append(
        f"kept in FP16: {kept}; estimated loss {summary['estimated_ap_loss']:.2f} AP, measured "
        f"{summary['measured_ap_loss']:.2f} (budget {summary['budget_ap']}; {summary['measured_against']}); "
        f"{100 * summary['int8_matmul_flop_share']:.1f}% of matrix-multiply FLOPs in INT8"
    )
    return lines
