"""INT8 sensitivity per group of linear layers (engine/node_groups.py), and the groups a loss budget keeps in FP16.

Each group is quantized alone (ModelOpt, the same calibration as the full INT8 graph), the rest of the graph left in
FP32, and its detections compared with the FP32 graph's on the same images: the matched-detection measures of the
accuracy gate (profiling.detection_agreement) and the AP of its detections taken against the FP32 detections as
ground truth (pycocotools), whose drop in AP points is the group's cost. Costs are treated as additive: the budget
keeps the costliest groups in FP16 until the sum of the costs left in INT8 is within it.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from edge_lwdetr.engine.node_groups import LINEAR, linear_groups
from edge_lwdetr.engine.precision import fp32_region, inline_msda, quantize_int8
from edge_lwdetr.labels import default_id2label
from edge_lwdetr.processing import postprocess
from edge_lwdetr.profiling import GATE_CONF, GATE_FALLBACK_TOP, TOLERANCES, detection_agreement

DEFAULT_BUDGET_AP = 0.3
# Images the per-group measure runs on, spread over the calibration set: every group costs one calibration, so
# the measure uses a sample and the final INT8 graph calibrates on every image.
SENSITIVITY_IMAGES = 32


def matmul_flops(model: onnx.ModelProto) -> dict[str, int]:
    """Multiply-add FLOPs (2 per multiply-accumulate) of each MatMul, Gemm and Conv, from ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}  # fmt: skip
    shapes |= {i.name: list(i.dims) for i in model.graph.initializer}
    flops = {}
    for node in model.graph.node:
        if node.op_type not in LINEAR:
            continue
        out, weight = shapes.get(node.output[0]), shapes.get(node.input[1])
        if out is None or weight is None:
            raise ValueError(f"no inferred shape for {node.name}: the graph needs static shapes for FLOP counting")
        if node.op_type == "Conv":
            reduced = int(np.prod(weight[1:]))  # C_in / groups * kernel area
        elif node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            reduced = weight[1] if trans_b else weight[0]
        else:
            reduced = weight[-2]
        flops[node.name] = 2 * int(np.prod(out)) * int(reduced)
    return flops


def spread(images: np.ndarray, count: int) -> np.ndarray:
    """`count` of `images` evenly spread over them (all of them when there are fewer)."""
    return images[np.unique(np.linspace(0, len(images) - 1, min(count, len(images))).round().astype(int))]


def measure(
    native: onnx.ModelProto, calibration: np.ndarray, groups: list[str] | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> dict:  # fmt: skip
    """Per group: its share of matrix-multiply FLOPs and the cost of quantizing it alone, on `calibration`.

    `groups` limits the measure to those names (default: every group). Returns {"groups": [...] costliest first,
    "total_flops", "images"}.
    """
    inlined, calls = inline_msda(native)
    found = linear_groups(inlined, calls)
    unknown = sorted(set(groups or []) - set(found))
    if unknown:
        raise ValueError(f"unknown groups {unknown}: the graph has {sorted(found)}")
    flops = matmul_flops(inlined)
    total = sum(flops.values())
    base_exclude = [r"msda\d+/.*"] + [f"^{name}$" for name in fp32_region(inlined, calls)]
    meta = {p.key: p.value for p in native.metadata_props}
    labels = {int(k): v for k, v in json.loads(meta.get("edge_lwdetr.id2label", "{}")).items()}
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "inlined.onnx"
        onnx.save(inlined, source)
        reference = _run(inlined, calibration)
        id2label = labels or default_id2label(reference[0]["logits"].shape[-1])
        frames = [np.zeros(image.shape[1:], np.uint8) for image in calibration]  # sizes only: boxes in input pixels
        reference_detections = _detections(reference, frames, id2label)
        truth = _truth(reference_detections)
        rows = []
        for name in groups or list(found):
            log(f"INT8 sensitivity: {name} ({len(found[name])} nodes)")
            others = [f"^{n}$" for group, nodes in found.items() if group != name for n in nodes]
            quantized = Path(folder) / "group.onnx"
            quantize_int8(source, quantized, base_exclude + others, calibration)
            outputs = _run(onnx.load(quantized), calibration)
            agreement = detection_agreement(reference, outputs, frames, id2label, TOLERANCES["int8"])
            ap = agreement_ap(truth, _detections(outputs, frames, id2label))
            rows.append({
                "group": name,
                "nodes": found[name],
                "flops": sum(flops[n] for n in found[name]),
                "flop_share": sum(flops[n] for n in found[name]) / total,
                "ap_loss": max(0.0, 100 * (1 - ap)),
                "recall": agreement["recall"],
                "box_error_p95_px": agreement["box_error_px"]["p95"],
                "score_error_p95": agreement["score_error"]["p95"],
            })  # fmt: skip
    rows.sort(key=lambda row: -row["ap_loss"])
    return {"groups": rows, "total_flops": total, "images": len(calibration), "all_groups": found}


def keep_in_fp16(report: dict, budget: float = DEFAULT_BUDGET_AP) -> dict:
    """The costliest groups kept in FP16 until the summed cost of the INT8 rest is within `budget` AP points."""
    rows = report["groups"]
    kept, estimated = [], sum(row["ap_loss"] for row in rows)
    for row in rows:  # costliest first
        if estimated <= budget:
            break
        kept.append(row["group"])
        estimated -= row["ap_loss"]
    return {
        "budget_ap": budget,
        "kept_fp16": kept,
        "fp16_nodes": [n for group in kept for n in report["all_groups"][group]],
        "estimated_ap_loss": max(0.0, estimated),
        # Expected: every other group in INT8. int8_flop_share() counts what the final graph holds.
        "expected_int8_flop_share": 1 - sum(row["flops"] for row in rows if row["group"] in kept) / report["total_flops"],
    }


def int8_flop_share(graph: onnx.ModelProto, flops: dict[str, int]) -> float:
    """Share of the matrix-multiply FLOPs (`flops`, by node name) whose node in `graph` reads INT8 (Q/DQ) inputs."""
    producer = {out: n.op_type for n in graph.node for out in n.output}
    int8 = {
        n.name for n in graph.node
        if n.op_type in LINEAR and n.input and producer.get(n.input[0]) == "DequantizeLinear"
    }  # fmt: skip
    return sum(f for name, f in flops.items() if name in int8) / sum(flops.values())


def _run(model: onnx.ModelProto, images: np.ndarray) -> list[dict[str, np.ndarray]]:
    import onnxruntime as ort

    from edge_lwdetr.engine.precision import gpu_hidden

    with gpu_hidden():
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [
        dict(zip(("logits", "pred_boxes"), session.run(["logits", "pred_boxes"], {"images": image[None]})))
        for image in images.astype(np.float32)
    ]


def _detections(outputs: list[dict], frames: list[np.ndarray], id2label: dict) -> list[list]:
    return [postprocess(o["logits"][0], o["pred_boxes"][0], f.shape[:2], id2label, 0.0) for o, f in zip(outputs, frames)]


def _truth(reference: list[list]) -> list[list]:
    """The reference detections that count as ground truth: the gate's rule (above GATE_CONF, else the top few)."""
    if any(d.score > GATE_CONF for frame in reference for d in frame):
        return [[d for d in frame if d.score > GATE_CONF] for frame in reference]
    return [frame[:GATE_FALLBACK_TOP] for frame in reference]


def agreement_ap(truth: list[list], detections: list[list]) -> float:
    """COCO AP (IoU 0.5:0.95, pycocotools) of `detections` with `truth` (per image) as the ground truth."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box):
        return [box[0], box[1], box[2] - box[0], box[3] - box[1]]

    labels = sorted({d.label for frame in truth + detections for d in frame})
    gt = {
        "images": [{"id": i + 1} for i in range(len(truth))],
        "categories": [{"id": label} for label in labels],
        "annotations": [
            {"id": n + 1, "image_id": i + 1, "category_id": d.label, "bbox": xywh(d.box), "iscrowd": 0,
             "area": (d.box[2] - d.box[0]) * (d.box[3] - d.box[1])}
            for n, (i, d) in enumerate((i, d) for i, frame in enumerate(truth) for d in frame)
        ],
    }  # fmt: skip
    if not gt["annotations"]:
        return 1.0
    found = [{"image_id": i + 1, "category_id": d.label, "bbox": xywh(d.box), "score": d.score}
             for i, frame in enumerate(detections) for d in frame]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        if not found:
            return 0.0
        evaluation = COCOeval(coco, coco.loadRes(found), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(max(evaluation.stats[0], 0.0))
