"""INT8 sensitivity per group of linear layers (engine/node_groups.py), and the groups a loss budget keeps in FP16.

The graph is quantized once (ModelOpt, as the full INT8 graph is); then each group alone reads its Q/DQ inputs, the
rest of the graph its FP32 ones, and its detections are compared with the FP32 graph's on the same images: the
matched-detection measures of the accuracy gate (profiling.detection_agreement) and the AP of its detections taken
against the FP32 detections as ground truth (pycocotools), whose drop in AP points is the group's cost. The costs
rank the groups; scaled to the measured loss of the whole INT8 graph (GraphLoss, calibrated), the budget keeps the
costliest groups in FP16 until the sum of the costs left in INT8 is within it.
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

from edge_lwdetr.defaults import DEFAULT_BUDGET_AP
from edge_lwdetr.engine.node_groups import LINEAR, linear_groups
from edge_lwdetr.engine.precision import fp32_region, inline_msda, quantize_int8
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.labels import default_id2label
from edge_lwdetr.processing import postprocess
from edge_lwdetr.profiling import GATE_CONF, GATE_FALLBACK_TOP, TOLERANCES, detection_agreement
from edge_lwdetr.quiet import libraries_quiet

# Images each group's cost is measured on, spread over the calibration set (which all serves to calibrate, so the
# scales are the final INT8 graph's): every group costs one pass over them.
SENSITIVITY_IMAGES = 32
# Labelled calibration images (a COCO folder) on which a whole graph's loss is measured in COCO mAP.
LABELLED_IMAGES = 128


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
            raise EdgeLwdetrError(f"ONNX shape inference gave no shape around {node.name}: its FLOPs cannot be counted")
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
    log: Callable[[str], None] = lambda message: None, data: Path | None = None, data_images: int = 100,
) -> dict:  # fmt: skip
    """Per group: its share of matrix-multiply FLOPs and the cost of quantizing it alone, calibrated on all of
    `calibration` and measured on SENSITIVITY_IMAGES of them; with
    `data` (a COCO folder), also its COCO mAP drop there (first `data_images` images).

    `groups` limits the measure to those names (default: every group). Returns {"groups": [...] costliest first,
    "total_flops", "images", "all_groups", and with data "fp32_map"}.
    """
    inlined, calls = inline_msda(native)
    found = linear_groups(inlined, calls)
    unknown = sorted(set(groups or []) - set(found))
    if unknown:
        raise EdgeLwdetrError(f"unknown groups {unknown}: the graph has {sorted(found)}")
    flops = matmul_flops(inlined)
    total = sum(flops.values())
    base_exclude = [r"msda\d+/.*"] + [f"^{name}$" for name in fp32_region(inlined, calls)]
    meta = {p.key: p.value for p in native.metadata_props}
    labels = {int(k): v for k, v in json.loads(meta.get("edge_lwdetr.id2label", "{}")).items()}
    with tempfile.TemporaryDirectory() as folder:
        source, quantized_path = Path(folder) / "inlined.onnx", Path(folder) / "int8.onnx"
        onnx.save(inlined, source)
        log(f"INT8 sensitivity: calibrating on {len(calibration)} images")
        with libraries_quiet():
            quantize_int8(source, quantized_path, base_exclude, calibration)
        quantized = onnx.load(quantized_path)
    sample = spread(calibration, SENSITIVITY_IMAGES)
    reference = _Graph(inlined, labels).run(sample)
    id2label = labels or default_id2label(reference[0]["logits"].shape[-1])
    fp32_map = _map(_Graph(inlined, id2label), data, data_images) if data else None
    # Sizes only (boxes in input pixels); the side is axis 1 of a CHW float and of an HWC uint8 image alike.
    frames = [np.zeros((image.shape[1], image.shape[1]), np.uint8) for image in sample]
    truth = _truth(_detections(reference, frames, id2label))
    rows = []
    for name in groups or list(found):
        log(f"INT8 sensitivity: {name} ({len(found[name])} nodes)")
        graph = _Graph(only_in_int8(quantized, inlined, set(found[name])), id2label)
        outputs = graph.run(sample)
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
        } | ({"map_loss": 100 * (fp32_map - _map(graph, data, data_images))} if data else {}))  # fmt: skip
    rows.sort(key=lambda row: -row["ap_loss"])
    return {"groups": rows, "total_flops": total, "images": len(sample), "all_groups": found} | (
        {"fp32_map": fp32_map} if data else {}
    )


class GraphLoss:
    """The AP points a precision graph of `native` loses: in COCO mAP on the labelled calibration images when
    `labels` (a COCO folder) is given, else against the FP32 graph's detections on SENSITIVITY_IMAGES of
    `calibration` (the gate's rule, as the per-group costs; it read 0.81 AP for the bundled model's INT8 graph, which
    loses 0.17 on 500 held-out scenes, so the budget then keeps more in FP16 than it needs)."""

    def __init__(self, native: onnx.ModelProto, calibration: np.ndarray, labels: Path | None = None):
        meta = {p.key: p.value for p in native.metadata_props}
        self.id2label = {int(k): v for k, v in json.loads(meta.get("edge_lwdetr.id2label", "{}")).items()}
        self.labels = labels
        if labels is not None:
            self.reference = _map(_Graph(native, self.id2label), labels, LABELLED_IMAGES)
            images = len(json.loads((labels / "annotations.json").read_text())["images"])
            self.against = f"COCO mAP on {min(images, LABELLED_IMAGES)} labelled calibration images"
            return
        self.sample = spread(calibration, SENSITIVITY_IMAGES)
        reference = _Graph(native, self.id2label).run(self.sample)
        self.id2label = self.id2label or default_id2label(reference[0]["logits"].shape[-1])
        self.frames = [np.zeros(image.shape[1:], np.uint8) for image in self.sample]
        self.truth = _truth(_detections(reference, self.frames, self.id2label))
        self.against = f"AP against the FP32 detections on {len(self.sample)} calibration images"

    def __call__(self, graph: onnx.ModelProto) -> float:
        if self.labels is not None:
            return 100 * (self.reference - _map(_Graph(graph, self.id2label), self.labels, LABELLED_IMAGES))
        outputs = _Graph(graph, self.id2label).run(self.sample)
        return 100 * (1 - agreement_ap(self.truth, _detections(outputs, self.frames, self.id2label)))


def calibrated(report: dict, whole_loss: float) -> dict:
    """`report` with its group costs scaled to sum to `whole_loss`, the measured loss of the all-INT8 graph.

    Measured one group at a time against the FP32 detections, the costs do not add up to what the whole INT8 graph
    loses (the bundled model's 36 groups sum to 0.44 AP; the whole graph loses -0.07 AP on the calibration labels,
    0.17 on 500 held-out scenes): they rank the groups, the measured whole sets the scale."""
    total = sum(row["ap_loss"] for row in report["groups"])
    scale = max(whole_loss, 0.0) / total if total > 0 else 0.0
    groups = [row | {"ap_loss": row["ap_loss"] * scale, "ap_loss_vs_fp32": row["ap_loss"]} for row in report["groups"]]
    return report | {"groups": groups, "int8_ap_loss": whole_loss}


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
        "expected_int8_flop_share": 1
        - sum(row["flops"] for row in rows if row["group"] in kept) / report["total_flops"],
    }


def only_in_int8(quantized: onnx.ModelProto, fp32: onnx.ModelProto, nodes: set[str]) -> onnx.ModelProto:
    """`quantized` with every node of `fp32` outside `nodes` reading its FP32 inputs again (ModelOpt keeps node
    names): one calibration serves every group, and each group sees the scales the full INT8 graph has. The few
    Q/DQ ModelOpt puts before other ops (a Concat) are dropped too, so no group carries a common cost."""
    original = {n.name: list(n.input) for n in fp32.graph.node}
    mixed = onnx.ModelProto()
    mixed.CopyFrom(quantized)
    dequantized = {out for n in mixed.graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    for node in mixed.graph.node:
        if node.name in original and node.name not in nodes:
            for index, tensor in enumerate(node.input):
                if tensor in dequantized:
                    node.input[index] = original[node.name][index]
    return mixed


def int8_flop_share(graph: onnx.ModelProto, flops: dict[str, int]) -> float:
    """Share of the matrix-multiply FLOPs (`flops`, by node name) whose node in `graph` reads both operands through
    Q/DQ (past AutoCast's Casts), which TensorRT runs in INT8 (ModelOpt leaves some small layers' weights FP)."""
    producer = {out: n for n in graph.graph.node for out in n.output}

    def dequantized(tensor: str) -> bool:
        node = producer.get(tensor)
        while node is not None and node.op_type == "Cast":
            node = producer.get(node.input[0])
        return node is not None and node.op_type == "DequantizeLinear"

    int8 = {n.name for n in graph.graph.node if n.op_type in LINEAR and all(dequantized(t) for t in n.input[:2])}
    return sum(f for name, f in flops.items() if name in int8) / sum(flops.values())


class _Graph:
    """An in-memory graph on ONNX Runtime's CPU provider; a Backend for evaluation.evaluate."""

    name = "onnxruntime"

    def __init__(self, model: onnx.ModelProto, id2label: dict[int, str]):
        import onnxruntime as ort

        from edge_lwdetr.backends.onnxruntime_backend import optimization_level
        from edge_lwdetr.engine.precision import gpu_hidden

        options = ort.SessionOptions()
        options.graph_optimization_level = optimization_level(model)
        with gpu_hidden():
            self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.image_size = self.session.get_inputs()[0].shape[2]
        # From the input's type: ModelOpt's graphs carry no metadata.
        self.input_format = "uint8" if self.session.get_inputs()[0].type == "tensor(uint8)" else "float"
        self.id2label = id2label
        self.stage_ms: dict[str, float] = {}

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, boxes = self.session.run(["logits", "pred_boxes"], {"images": images})
        return logits, boxes

    def run(self, images: np.ndarray) -> list[dict[str, np.ndarray]]:
        return [dict(zip(("logits", "pred_boxes"), self.infer(image[None]))) for image in images]

    def close(self) -> None:
        pass


def _map(graph: _Graph, data: Path, images: int) -> float:
    from edge_lwdetr.evaluation import evaluate

    with libraries_quiet(), contextlib.redirect_stderr(io.StringIO()):  # no progress bar per group
        return evaluate(graph, data, max_images=images, log=lambda message: None)["mAP"]


def _detections(outputs: list[dict], frames: list[np.ndarray], id2label: dict) -> list[list]:
    return [
        postprocess(o["logits"][0], o["pred_boxes"][0], f.shape[:2], id2label, 0.0) for o, f in zip(outputs, frames)
    ]


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
