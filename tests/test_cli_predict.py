"""`edge-lwdetr predict` end to end, against transformers' whole pipeline (processor, model, post-processing)."""

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from edge_lwdetr.cli import main


@pytest.fixture
def named_checkpoint(hf_checkpoint, tmp_path):
    """The tiny checkpoint with class names of its own in config.json."""
    folder, hf_model = hf_checkpoint("tiny")
    named = tmp_path / "named"
    shutil.copytree(folder, named)
    config = json.loads((named / "config.json").read_text())
    config["id2label"] = {str(i): f"thing{i}" for i in range(91)}
    config["label2id"] = {f"thing{i}": i for i in range(91)}
    (named / "config.json").write_text(json.dumps(config))
    return named, hf_model


def test_predict_matches_transformers_pipeline(named_checkpoint, tmp_path, capsys):
    folder, hf_model = named_checkpoint
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (640, 640, 3), dtype=np.uint8)  # model size: no resize, so no resampler differences
    cv2.imwrite(str(tmp_path / "in.png"), image)

    argv = ["predict", "--weights", str(folder), "--source", str(tmp_path / "in.png"), "--conf", "0.5"]
    argv += ["--save", str(tmp_path / "out.jpg"), "--save-json", str(tmp_path / "out.json")]
    assert main(argv) == 0
    detections = json.loads((tmp_path / "out.json").read_text())["detections"]
    assert "detections above 0.5" in capsys.readouterr().out

    from transformers import DeformableDetrImageProcessorPil

    processor = DeformableDetrImageProcessorPil(size={"height": 640, "width": 640})
    inputs = processor(images=cv2.cvtColor(image, cv2.COLOR_BGR2RGB), return_tensors="pt")
    with torch.no_grad():
        outputs = hf_model(pixel_values=inputs["pixel_values"])
    reference = processor.post_process_object_detection(outputs, threshold=0.5, target_sizes=[(640, 640)], top_k=100)[0]

    assert len(detections) == len(reference["scores"]) > 0
    assert [d["score"] for d in detections] == sorted((d["score"] for d in detections), reverse=True)
    np.testing.assert_allclose([d["score"] for d in detections], sorted(reference["scores"].tolist(), reverse=True), atol=1e-4)
    reference_pairs = list(zip(reference["labels"].tolist(), reference["boxes"].tolist()))
    for det in detections:
        assert set(det) == {"label", "name", "score", "box"}
        assert det["name"] == f"thing{det['label']}"
        assert any(label == det["label"] and np.allclose(box, det["box"], atol=0.5) for label, box in reference_pairs)

    annotated = cv2.imread(str(tmp_path / "out.jpg"))
    assert annotated.shape == image.shape
    assert np.abs(annotated.astype(int) - image.astype(int)).sum() > 0  # boxes were drawn


def test_conf_zero_keeps_all_top_k(named_checkpoint, tmp_path):
    folder, _ = named_checkpoint
    cv2.imwrite(str(tmp_path / "in.jpg"), np.full((300, 500, 3), 100, np.uint8))
    argv = ["predict", "--weights", str(folder), "--source", str(tmp_path / "in.jpg"), "--imgsz", "256", "--conf", "0"]
    assert main(argv + ["--save-json", str(tmp_path / "all.json")]) == 0
    detections = json.loads((tmp_path / "all.json").read_text())["detections"]
    assert len(detections) == 100  # tiny has 100 queries: top-100 of queries x classes


def test_unwritable_outputs(named_checkpoint, tmp_path, capsys):
    folder, _ = named_checkpoint
    cv2.imwrite(str(tmp_path / "in.jpg"), np.full((64, 64, 3), 100, np.uint8))
    argv = ["predict", "--weights", str(folder), "--source", str(tmp_path / "in.jpg"), "--imgsz", "256"]
    capsys.readouterr()
    assert main(argv + ["--save-json", str(tmp_path / "no" / "such" / "dir.json")]) == 2
    assert "cannot write" in capsys.readouterr().err
