"""`edge-lwdetr eval` (COCO mAP, floor gate) and `edge-lwdetr profile` (latency, accuracy, report, plot)."""

import json

import cv2
import numpy as np
import onnx
import pytest

from edge_lwdetr.cli import main
from edge_lwdetr.evaluation import METRICS, evaluate
from edge_lwdetr.export.rewrite import rewrite_msda
from edge_lwdetr.synthetic.dataset import write_coco

SIZE = 256


def coco_folder(folder, count=6, seed=0):
    """A synthetic shapes dataset (COCO format, 256 px images) and its annotations."""
    path = write_coco(folder, count, seed, size=SIZE)
    return folder, json.loads(path.read_text())["annotations"]


class OracleBackend:
    """Returns each image's ground truth as model outputs, in evaluation order: the evaluation must score 1.0."""

    name, image_size, input_format, stage_ms = "oracle", 256, "float", {}

    def __init__(self, annotations, count, queries=20, classes=6):
        self.id2label = {i: f"shape{i}" for i in range(classes)}
        self.queue = [[a for a in annotations if a["image_id"] == i] for i in range(1, count + 1)]
        self.queries, self.classes = queries, classes

    def infer(self, images):
        truth = self.queue.pop(0)
        logits = np.full((1, self.queries, self.classes), -10.0, np.float32)
        boxes = np.full((1, self.queries, 4), 0.1, np.float32)
        for q, a in enumerate(truth):
            x, y, w, h = a["bbox"]
            logits[0, q, a["category_id"]] = 10.0
            boxes[0, q] = [(x + w / 2) / SIZE, (y + h / 2) / SIZE, w / SIZE, h / SIZE]
        return logits, boxes


def test_evaluation_of_perfect_detections_is_one(tmp_path):
    folder, annotations = coco_folder(tmp_path / "data")
    metrics = evaluate(OracleBackend(annotations, 6), folder)
    assert metrics["images"] == 6
    assert metrics["mAP"] == pytest.approx(1.0) and metrics["mAP50"] == pytest.approx(1.0)
    assert metrics["AR100"] == pytest.approx(1.0) and metrics["images_per_s"] > 0
    present = {a["category_id"] for a in annotations}
    names = {c["id"]: c["name"] for c in json.loads((folder / "annotations.json").read_text())["categories"]}
    assert {names[c]: metrics["per_class_ap"][names[c]] for c in present} == {names[c]: pytest.approx(1.0) for c in present}


def test_eval_cli_report_and_floor(native_export, tmp_path, capsys):
    _, model, _ = native_export("tiny")
    folder, _ = coco_folder(tmp_path / "data", count=3)
    report = tmp_path / "report.json"
    assert main(["eval", "--model", str(model), "--data", str(folder), "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["images"] == 3 and set(METRICS) <= set(data) and all(0 <= data[m] <= 1 for m in METRICS)
    capsys.readouterr()
    # Random weights score about nothing: a floor of 0.5 must fail the gate.
    assert main(["eval", "--model", str(model), "--data", str(folder), "--min-map", "0.5"]) == 2
    assert "below the floor" in capsys.readouterr().err
    assert main(["eval", "--model", str(model), "--data", str(tmp_path / "none")]) == 2


def test_profile_report_plot_and_accuracy(native_export, hf_checkpoint, tmp_path, capsys):
    _, native_path, native = native_export("tiny")
    plugin_form = tmp_path / "plugin.onnx"
    onnx.save(rewrite_msda(onnx.load(native_path), "plugin"), plugin_form)
    report, png = tmp_path / "profile.json", tmp_path / "profile.png"
    argv = ["profile", "--model", str(plugin_form), "--reference", str(native_path), "--iterations", "5", "--warmup", "1"]
    assert main(argv + ["--report", str(report), "--plot", str(png)]) == 0
    data = json.loads(report.read_text())
    latency = data["latency"]
    assert latency["iterations"] == 5 and len(latency["host_samples_ms"]) == 5
    assert latency["host_latency_ms"]["p50"] > 0 and latency["throughput_fps"] > 0
    assert {"preprocess", "infer", "postprocess"} <= set(latency["stages_ms"])
    assert data["environment"]["python"] and "gpu" in data["environment"]
    # The same math in two node forms: polygraphy passes it, with errors at float rounding.
    assert data["accuracy"]["passed"] and data["accuracy"]["outputs"]["logits"]["max_abs"] < 1e-4
    assert cv2.imread(str(png)) is not None

    # Against another model the comparison fails.
    other = tmp_path / "other"
    from hf_models import save_hf_model
    from edge_lwdetr.export.onnx_export import export_onnx

    save_hf_model("tiny", other, seed=7)
    export_onnx(other, tmp_path / "other.onnx", imgsz=256, msda="native")
    capsys.readouterr()
    assert main(["profile", "--model", str(tmp_path / "other.onnx"), "--reference", str(native_path), "--iterations", "2",
                 "--report", str(report)]) == 0  # fmt: skip
    assert json.loads(report.read_text())["accuracy"]["passed"] is False
    assert "FAIL" in capsys.readouterr().out
    assert main(["profile", "--model", str(tmp_path / "other.onnx"), "--reference", str(native_path), "--iterations", "2",
                 "--gate"]) == 2  # fmt: skip
    assert "accuracy gate failed" in capsys.readouterr().err
