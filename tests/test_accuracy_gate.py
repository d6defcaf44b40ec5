"""The accuracy gate of `profile --reference`: matched detections, tolerances per precision."""

import json

import onnx
import pytest

from edge_lwdetr.bundled import BUNDLED_MODEL
from edge_lwdetr.cli import main
from edge_lwdetr.processing import Detection
from edge_lwdetr.profiling import match_detections
from hf_models import zero_sampling_offsets


def det(label, score, box):
    return Detection(label, str(label), score, box)


def test_matching_by_class_and_iou():
    reference = [det(1, 0.9, [0, 0, 10, 10]), det(2, 0.8, [20, 20, 30, 30]), det(1, 0.7, [0, 0, 10, 10])]
    candidates = [
        det(1, 0.85, [1, 0, 11, 10]),  # IoU 9/11 with the first: matched
        det(2, 0.5, [26, 26, 36, 36]),  # IoU 16/184 with the second: too far
        det(3, 0.9, [20, 20, 30, 30]),  # the right place, another class
    ]
    pairs = match_detections(reference, candidates)
    # The third reference (class 1, same box as the first) finds no candidate left: each is taken once.
    assert [(r.score, m.score) for r, m in pairs] == [(0.9, 0.85)]


@pytest.fixture(scope="module")
def bundled_native(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gate")
    assert main(["export", "--model", str(BUNDLED_MODEL), "--output", str(folder / "m.onnx"), "--msda", "native"]) == 0
    return folder / "m.onnx"


def test_fp16_passes_and_a_broken_graph_fails(bundled_native, tmp_path, capsys):
    fp16 = tmp_path / "m.fp16.onnx"
    assert main(["build", "--onnx", str(bundled_native), "--precision", "fp16", "--output", str(fp16), "--onnx-only"]) == 0
    report = tmp_path / "r.json"
    argv = ["profile", "--reference", str(bundled_native), "--iterations", "1", "--warmup", "0", "--gate"]
    assert main(argv + ["--model", str(fp16), "--report", str(report)]) == 0
    accuracy = json.loads(report.read_text())["accuracy"]
    assert accuracy["precision"] == "fp16" and accuracy["passed"]
    assert accuracy["detections"]["reference_detections"] >= 20  # the bundled model finds the shapes
    assert accuracy["detections"]["recall"] == 1.0

    broken = tmp_path / "broken.onnx"
    onnx.save(zero_sampling_offsets(onnx.load(bundled_native)), broken)
    capsys.readouterr()
    assert main(argv + ["--model", str(broken)]) == 2
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "accuracy gate failed" in captured.err
    # Loosened bounds are the user's to set: with all three relaxed, the same graph passes.
    loose = ["--min-recall", "0", "--max-box-error", "1000", "--max-score-error", "1"]
    assert main(argv + ["--model", str(broken)] + loose) == 0
