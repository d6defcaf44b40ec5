"""Original LW-DETR `.pth` checkpoints: loaded with weights_only, same outputs as transformers; unsafe pickles refused.

The original-layout state dict is built from a transformers model by the inverse of the key mapping, written here
independently of edge_lwdetr (from the key table of the conversion script), and checked against the original
checkpoints' published key counts.
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


def original_checkpoint(hf_folder, path, num_queries):
    state = transformers_to_original(load_file(hf_folder / "model.safetensors"))
    args = argparse.Namespace(num_queries=num_queries, encoder="vit", lr=1e-4, shape=(640, 640), device="cuda")
    torch.save({"model": state, "args": args, "optimizer": {"state": {}}, "epoch": 59}, path)
    return state


@pytest.mark.parametrize("variant, size", [("tiny", 256), ("large", 320), ("xlarge", 256)])
def test_original_pth_matches_transformers(variant, size, hf_checkpoint, tmp_path):
    folder, hf_model = hf_checkpoint(variant)
    num_queries = hf_model.config.num_queries
    state = original_checkpoint(folder, tmp_path / "model.pth", num_queries)
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
