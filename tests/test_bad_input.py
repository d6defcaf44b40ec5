"""Bad input gives one line on stderr, no traceback, and exit status 2."""

import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from hf_models import fails_with


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "image.png"
    cv2.imwrite(str(path), np.full((120, 160, 3), 127, np.uint8))
    return path




def test_missing_weights(capsys, image, tmp_path):
    fails_with(capsys, ["predict", "--weights", str(tmp_path / "nope.pth"), "--source", str(image)], "not found")


def test_hub_id_offline(capsys, image, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fails_with(
        capsys, ["predict", "--weights", "nobody/lwdetr_missing", "--source", str(image)],
        "'nobody/lwdetr_missing'", "local folder",
    )  # fmt: skip


def test_truncated_safetensors(capsys, image, hf_checkpoint, tmp_path):
    folder, _ = hf_checkpoint("tiny")
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    fails_with(capsys, ["predict", "--weights", str(broken), "--source", str(image)], "model.safetensors", "truncated")


def test_folder_of_another_architecture(capsys, image, tmp_path):
    from transformers import ViTConfig, ViTModel

    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)).save_pretrained(
        tmp_path / "vit"
    )
    fails_with(capsys, ["predict", "--weights", str(tmp_path / "vit"), "--source", str(image)], "'vit'", "not LW-DETR")


def test_mismatched_shapes_are_listed(capsys, image, hf_checkpoint):
    folder, _ = hf_checkpoint("tiny")
    line = fails_with(
        capsys, ["predict", "--weights", str(folder), "--source", str(image), "--variant", "medium"], "shape mismatch"
    )
    assert "encoder.pos_embed [1, 197, 192] vs model [1, 197, 384]" in line
    assert "missing: encoder.blocks.6." in line  # medium has 10 blocks, tiny 6


def test_state_dict_of_another_model(capsys, image, tmp_path):
    torch.save({"model": {"conv1.weight": torch.zeros(8, 3, 3, 3)}}, tmp_path / "resnet.pth")
    fails_with(capsys, ["predict", "--weights", str(tmp_path / "resnet.pth"), "--source", str(image)], "not an LW-DETR")


def test_truncated_pth(capsys, image, tmp_path):
    torch.save({"model": {"class_embed.bias": torch.zeros(91)}}, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    fails_with(capsys, ["predict", "--weights", str(tmp_path / "cut.pth"), "--source", str(image)], "cut.pth", "truncated")


def test_image_size_not_multiple_of_64(capsys, image, hf_checkpoint):
    folder, _ = hf_checkpoint("tiny")
    fails_with(
        capsys, ["predict", "--weights", str(folder), "--source", str(image), "--imgsz", "300"], "300", "256 or 320"
    )


def test_image_too_small_for_the_queries(capsys, image, hf_checkpoint):
    folder, _ = hf_checkpoint("small")  # 300 queries; 256 px gives 16x16 = 256 tokens
    fails_with(capsys, ["predict", "--weights", str(folder), "--source", str(image), "--imgsz", "256"], "300 queries")


def test_unreadable_image(capsys, tmp_path, hf_checkpoint):
    folder, _ = hf_checkpoint("tiny")
    (tmp_path / "notes.jpg").write_text("not an image")
    fails_with(capsys, ["predict", "--weights", str(folder), "--source", str(tmp_path / "notes.jpg")], "not an image OpenCV can decode")


def test_config_json_not_json(capsys, image, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{oops")
    fails_with(capsys, ["predict", "--weights", str(tmp_path / "m"), "--source", str(image)], "config.json", "JSON")


def test_console_script_prints_no_traceback(tmp_path, image):
    result = subprocess.run(
        [sys.executable, "-m", "edge_lwdetr", "predict", "--weights", str(tmp_path / "x.pth"), "--source", str(image)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
