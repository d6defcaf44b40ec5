"""Our LW-DETR, loaded from a transformers checkpoint, against transformers' own LwDetrForObjectDetection."""

import json
import shutil

import pytest
import torch

from hf_models import well_conditioned_images

from edge_lwdetr.model.checkpoint import CheckpointWarning
from edge_lwdetr.model.loading import load_model
from edge_lwdetr.processing import normalize

# Reduced sizes keep the suite fast; small and large run at the published 640 (large then also has border
# proposals that must never be selected).
SIZES = {"tiny": 256, "small": 640, "medium": 320, "large": 640, "xlarge": 256}
TOLERANCE = 1e-4


def outputs_of_both(folder, hf_model, size, seed=1):
    """Both models on two inputs whose two-stage top-k has no near-tie (hf_models.well_conditioned_images): the two
    implementations differ by ~1e-6, which may reorder scores closer than that, and which CPU kernels decide."""
    ours = load_model(folder)
    images = torch.from_numpy(normalize(well_conditioned_images(ours.model, 2, size, seed=seed)))
    with torch.no_grad():
        reference = hf_model(pixel_values=images)
        logits, boxes = ours.model(images)
    return ours, reference, logits, boxes


@pytest.mark.parametrize("variant", list(SIZES))
def test_matches_transformers(variant, hf_checkpoint):
    folder, hf_model = hf_checkpoint(variant)
    ours, reference, logits, boxes = outputs_of_both(folder, hf_model, SIZES[variant])
    assert ours.variant == variant
    assert logits.shape == reference.logits.shape and boxes.shape == reference.pred_boxes.shape
    assert (logits - reference.logits).abs().max().item() <= TOLERANCE
    assert (boxes - reference.pred_boxes).abs().max().item() <= TOLERANCE


def test_shifted_out_indices_are_corrected(hf_checkpoint, tmp_path):
    """A config.json with the known off-by-one out_indices loads with a warning and the correct features."""
    folder, hf_model = hf_checkpoint("small")
    shifted = tmp_path / "shifted"
    shutil.copytree(folder, shifted)
    config = json.loads((shifted / "config.json").read_text())
    config["backbone_config"]["out_indices"] = [2, 4, 5, 9]
    config["backbone_config"]["out_features"] = ["stage2", "stage4", "stage5", "stage9"]
    (shifted / "config.json").write_text(json.dumps(config))

    with pytest.warns(CheckpointWarning, match=r"off-by-one.*\[3, 5, 6, 10\]"):
        ours = load_model(shifted)
    assert ours.config.out_blocks == (2, 4, 5, 9)
    torch.manual_seed(2)
    images = torch.randn(1, 3, 320, 320)
    with torch.no_grad():
        reference = hf_model(pixel_values=images)
        logits, boxes = ours.model(images)
    assert (logits - reference.logits).abs().max().item() <= TOLERANCE
    assert (boxes - reference.pred_boxes).abs().max().item() <= TOLERANCE


def test_symbolic_batch(hf_checkpoint):
    """Each image of a batch gets the result it gets alone (no batch-size assumptions in the reshapes)."""
    folder, _ = hf_checkpoint("tiny")
    model = load_model(folder).model
    torch.manual_seed(3)
    images = torch.randn(3, 3, 256, 256)
    with torch.no_grad():
        logits, boxes = model(images)
        single_logits, single_boxes = model(images[1:2])
    assert torch.allclose(logits[1:2], single_logits, atol=1e-5)
    assert torch.allclose(boxes[1:2], single_boxes, atol=1e-5)


def test_custom_transformers_config(tmp_path):
    """Every graph-changing field of a transformers config is honoured: a tiny with other heads, points, layers,
    windows, output blocks, widths and pretraining grid matches transformers built from the same config."""
    from hf_models import save_hf_model

    fields = dict(
        backbone=dict(num_hidden_layers=5, window_block_indices=[1, 3], num_attention_heads=6, pretrain_image_size=256),
        out_indices=[2, 5],
        decoder_self_attention_heads=16,
        decoder_cross_attention_heads=8,
        decoder_n_points=3,
        decoder_layers=2,
        decoder_ffn_dim=512,
        d_model=192,
        c2f_num_blocks=2,
        num_queries=60,
        projector_scale_factors=[1.0, 0.5],
    )
    hf_model = save_hf_model("tiny", tmp_path, seed=5, **fields)
    ours, reference, logits, boxes = outputs_of_both(tmp_path, hf_model, 256)
    assert ours.variant == "custom" and ours.config.border_proposals == "exclude"
    assert (ours.config.vit_heads, ours.config.pretrain_grid, ours.config.c2f_blocks) == (6, 16, 2)
    assert (logits - reference.logits).abs().max().item() <= TOLERANCE
    assert (boxes - reference.pred_boxes).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize(
    "where, field, value",
    [
        ("", "attention_bias", False),
        ("", "batch_norm_eps", 1e-3),
        ("", "activation_function", "relu"),
        ("", "decoder_activation_function", "gelu"),
        ("", "hidden_expansion", 1.0),
        ("backbone_config", "layer_norm_eps", 1e-5),
        ("backbone_config", "mlp_ratio", 2),
        ("backbone_config", "num_windows", 4),
        ("backbone_config", "use_absolute_position_embeddings", False),
    ],
)
def test_unbuilt_transformers_fields_are_refused(hf_checkpoint, tmp_path, where, field, value):
    from edge_lwdetr.errors import EdgeLwdetrError

    folder, _ = hf_checkpoint("tiny")
    changed = tmp_path / "changed"
    shutil.copytree(folder, changed)
    config = json.loads((changed / "config.json").read_text())
    (config[where] if where else config)[field] = value
    (changed / "config.json").write_text(json.dumps(config))
    name = f"{where}.{field}" if where else field
    with pytest.raises(EdgeLwdetrError, match=rf"sets {name}={value!r}; edge-lwdetr builds LW-DETR with {field}="):
        load_model(changed)
