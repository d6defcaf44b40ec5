"""The INT8 graph within an accuracy budget: the groups that cost most in INT8 (engine/sensitivity.py) kept in FP16,
and a report of what was kept and of the matrix-multiply FLOPs left in INT8, carried in the graph's metadata."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import onnx

from edge_lwdetr.engine.precision import inline_msda, precision_graph
from edge_lwdetr.engine.sensitivity import (
    int8_flop_share,
    keep_in_fp16,
    matmul_flops,
    measure,
)  # fmt: skip
from edge_lwdetr.quiet import libraries_quiet

METADATA_KEY = "edge_lwdetr.int8_mixed"


def mixed_int8_graph(
    native: onnx.ModelProto, calibration: np.ndarray, budget: float, log: Callable[[str], None] = lambda m: None
) -> onnx.ModelProto:
    """The INT8 precision graph of `native` whose estimated AP loss against FP32 is within `budget` points."""
    report = measure(native, calibration)
    log(f"INT8 sensitivity of each layer group on {report['images']} of the {len(calibration)} calibration images")
    choice = keep_in_fp16(report, budget)
    with libraries_quiet():
        graph = precision_graph(native, "int8", calibration, fp16_nodes=choice["fp16_nodes"])
    inlined, _ = inline_msda(native)
    share = int8_flop_share(graph, matmul_flops(inlined))
    summary = {
        "budget_ap": budget,
        "kept_fp16": choice["kept_fp16"],
        "estimated_ap_loss": round(choice["estimated_ap_loss"], 3),
        "int8_matmul_flop_share": round(share, 4),
        "sensitivity_images": report["images"],
        "groups": [{k: row[k] for k in ("group", "ap_loss", "flop_share", "recall")} for row in report["groups"]],
    }
    graph.metadata_props.add(key=METADATA_KEY, value=json.dumps(summary))
    for line in describe(summary):
        log(line)
    return graph


def describe(summary: dict) -> list[str]:
    """The report's lines: the costliest groups, what was kept in FP16, the estimate and the INT8 FLOP share."""
    lines = [f"{'group':<28} {'AP cost':>8} {'FLOPs':>7} {'recall':>7}"]
    for row in summary["groups"][:8]:
        lines.append(f"{row['group']:<28} {row['ap_loss']:8.2f} {100 * row['flop_share']:6.1f}% {row['recall']:7.3f}")
    kept = ", ".join(summary["kept_fp16"]) or "none"
    lines.append(
        f"kept in FP16: {kept}; estimated loss {summary['estimated_ap_loss']:.2f} AP (budget {summary['budget_ap']}); "
        f"{100 * summary['int8_matmul_flop_share']:.1f}% of matrix-multiply FLOPs in INT8"
    )
    return lines
