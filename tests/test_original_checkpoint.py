"""Original LW-DETR `.pth` checkpoints: loaded with weights_only, same outputs as transformers; unsafe pickles refused.

The original-layout state dict is built from a transformers model by the inverse of the key mapping, written here
independently of edge_lwdetr (from the key table of the conversion script), and checked against the original
checkpoints' published key counts. The saved `args` are the original `main.py` arguments: its parser defaults and
the published scripts' values, restated below from Atten4Vis/LW-DETR.
"""

import argparse
import pathlib
import re

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from edge_lwdetr.cli import main
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.model.loading import load_model

ORIGINAL_KEY_COUNTS = {"tiny": 381, "small": 441, "medium": 441, "large": 523, "xlarge": 547}


def transformers_to_original(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    original: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in hf.items():
        k = key
        if k.startswith(("class_embed.", "bbox_embed.")):
            original[k] = tensor
            continue
        k = k.removeprefix("model.")
        if k.startswith("backbone.backbone."):
            k = k.replace("backbone.backbone.", "backbone.0.encoder.")
            k = k.replace("embeddings.position_embeddings", "pos_embed").replace("embeddings.projection", "patch_embed.proj")
            k = k.replace("encoder.layer.", "blocks.")
            m = re.match(r"(.*blocks\.\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$", k)
            if m:
                qkv.setdefault(m[1], {})[f"{m[2]}.{m[3]}"] = tensor
                continue
            k = k.replace("attention.output", "attn.proj").replace("layernorm_before", "norm1")
            k = k.replace("layernorm_after", "norm2").replace("intermediate.", "mlp.")
        elif k.startswith("backbone.projector."):
            m = re.match(r"backbone\.projector\.scale_layers\.(\d+)\.(.*)$", k)
            stage, rest = m[1], m[2]
            rest = rest.replace(".norm.", ".bn.")
            if rest.startswith("sampling_layers."):
                rest = re.sub(r"^sampling_layers\.(\d+)\.layers\.", r"\1.", rest)
                k = f"backbone.0.projector.stages_sampling.{stage}.{rest}"
            elif rest.startswith("layer_norm."):
                k = f"backbone.0.projector.stages.{stage}.1.{rest.removeprefix('layer_norm.')}"
            else:
                rest = rest.removeprefix("projector_layer.").replace("conv1", "cv1").replace("conv2", "cv2")
                rest = rest.replace("bottlenecks.", "m.")
                k = f"backbone.0.projector.stages.{stage}.0.{rest}"
        elif k.startswith("decoder."):
            m = re.match(r"(decoder\.layers\.\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$", k)
            if m:
                qkv.setdefault("transformer." + m[1], {})[f"{m[2]}.{m[3]}"] = tensor
                continue
            k = k.replace("self_attn.o_proj", "self_attn.out_proj").replace("self_attn_layer_norm", "norm1")
            k = k.replace("cross_attn_layer_norm", "norm2").replace(".layer_norm.", ".norm3.")
            k = k.replace("mlp.fc1", "linear1").replace("mlp.fc2", "linear2").replace("decoder.layernorm", "decoder.norm")
            k = "transformer." + k
        elif k.startswith("enc_"):
            k = "transformer." + k
        elif k == "reference_point_embed.weight":
            k = "refpoint_embed.weight"
        original[k] = tensor
    for prefix, p in qkv.items():
        if prefix.startswith("transformer."):
            original[prefix + ".self_attn.in_proj_weight"] = torch.cat([p["q.weight"], p["k.weight"], p["v.weight"]])
            original[prefix + ".self_attn.in_proj_bias"] = torch.cat([p["q.bias"], p["k.bias"], p["v.bias"]])
        else:
            original[prefix + ".attn.qkv.weight"] = torch.cat([p["query.weight"], p["key.weight"], p["value.weight"]])
            original[prefix + ".attn.q_bias"] = p["query.bias"]
            original[prefix + ".attn.v_bias"] = p["value.bias"]
    return original


# Atten4Vis/LW-DETR main.py get_args_parser() defaults (the arguments that build the model, and a few others).
MAIN_DEFAULTS = dict(
    lr=1e-4, lr_encoder=1.5e-4, batch_size=2, weight_decay=1e-4, epochs=12, lr_drop=11, dropout=0, drop_path=0,
    encoder="vit_tiny", vit_encoder_num_layers=12, window_block_indexes=None, position_embedding="sine",
    out_feature_indexes=[-1], dec_layers=3, dim_feedforward=2048, hidden_dim=256, sa_nheads=8, ca_nheads=8,
    num_queries=300, group_detr=13, two_stage=False, projector_scale="P4", lite_refpoint_refine=False,
    num_select=100, dec_n_points=4, decoder_norm="LN", bbox_reparam=False, aux_loss=True, dataset_file="coco",
    square_resize_div_64=False, use_ema=False, ema_decay=0.9997, device="cuda", fp16_eval=False, subcommand=None,
)  # fmt: skip
_WINDOWS, _OUTS = [0, 1, 3, 6, 7, 9], [2, 4, 5, 9]
# scripts/lwdetr_<size>_coco_train.sh
SCRIPT_ARGS = {
    "tiny": dict(encoder="vit_tiny", vit_encoder_num_layers=6, window_block_indexes=[0, 2, 4],
                 out_feature_indexes=[1, 3, 5], projector_scale=["P4"], ca_nheads=16, dec_n_points=2,
                 num_queries=100, num_select=100),
    "large": dict(encoder="vit_small", vit_encoder_num_layers=10, window_block_indexes=_WINDOWS,
                  out_feature_indexes=_OUTS, projector_scale=["P3", "P5"], hidden_dim=384, sa_nheads=12,
                  ca_nheads=24, dec_n_points=4, num_select=300),
    "xlarge": dict(encoder="vit_base", vit_encoder_num_layers=10, window_block_indexes=_WINDOWS,
                   out_feature_indexes=_OUTS, projector_scale=["P3", "P5"], hidden_dim=384, sa_nheads=12,
                   ca_nheads=24, dec_n_points=4, num_select=300),
}  # fmt: skip
SCRIPT_COMMON = dict(two_stage=True, bbox_reparam=True, lite_refpoint_refine=True, square_resize_div_64=True,
                     use_ema=True, lr=4e-4, epochs=60)  # fmt: skip


def original_args(variant="tiny", **overrides) -> argparse.Namespace:
    return argparse.Namespace(**{**MAIN_DEFAULTS, **SCRIPT_COMMON, **SCRIPT_ARGS[variant], **overrides})


def save_original(state, path, args=None, **entries):
    torch.save({"model": state, **({"args": args} if args is not None else {}), **entries}, path)
    return path


def original_checkpoint(hf_folder, path, num_queries, variant="tiny"):
    state = transformers_to_original(load_file(hf_folder / "model.safetensors"))
    args = original_args(variant, num_queries=num_queries, shape=(640, 640))
    save_original(state, path, args, optimizer={"state": {}}, epoch=59)
    return state


@pytest.mark.parametrize("variant, size", [("tiny", 256), ("large", 320), ("xlarge", 256)])
def test_original_pth_matches_transformers(variant, size, hf_checkpoint, tmp_path):
    folder, hf_model = hf_checkpoint(variant)
    num_queries = hf_model.config.num_queries
    state = original_checkpoint(folder, tmp_path / "model.pth", num_queries, variant)
    assert len(state) == ORIGINAL_KEY_COUNTS[variant]

    loaded = load_model(tmp_path / "model.pth")
    assert loaded.variant == variant
    assert loaded.id2label[1] == "person"  # no names in the file: the 91 COCO slots
    torch.manual_seed(4)
    images = torch.randn(1, 3, size, size)
    with torch.no_grad():
        reference = hf_model(pixel_values=images)
        logits, boxes = loaded.model(images)
    assert (logits - reference.logits).abs().max().item() <= 1e-4
    assert (boxes - reference.pred_boxes).abs().max().item() <= 1e-4


class _RunsCode:
    """Pickles as a call to Path.touch: loading it with a full unpickler would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_pickle_that_runs_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"class_embed.bias": torch.zeros(91)}, "args": _RunsCode(marker)}, bad)

    with pytest.raises(EdgeLwdetrError, match="could run code.*pathlib"):
        load_model(bad)
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    assert main(["predict", "--weights", str(bad), "--source", str(image)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused" in err[0]
    assert not marker.exists()
