"""Checkpoint conversion: transformers and original LW-DETR state dicts -> this package's layout, and configs.

The module layout here is the original repository's (`Atten4Vis/LW-DETR`) with shorter prefixes, so the original
mapping is a prefix rename. transformers splits the fused projections (ViT q/k/v, decoder in_proj), so its mapping
renames and then fuses them. Training-only tensors (Group-DETR query groups 1..12) are dropped.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections import defaultdict
from typing import Any

import torch

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.model.config import VARIANTS, LwDetrConfig

DROP = None  # replacement meaning "training-only tensor, not loaded"
_ENC_HEADS = r"(enc_output|enc_output_norm|enc_out_class_embed|enc_out_bbox_embed)"
_HF_VIT = r"^model\.backbone\.backbone\.encoder\.layer\.(\d+)\."
_HF_PROJ = r"^model\.backbone\.projector\.scale_layers\.(\d+)\."
_HF_DEC = r"^model\.decoder\.layers\.(\d+)\."

# transformers -> ours. Keys are matched as saved on disk by transformers 5.x (attention.attention.query, ...)
# and as named in memory (attention.q_proj, ...). q/k/v parts get temporary names that `_fuse_projections` joins.
HF_RULES: list[tuple[str, str | None]] = [
    (r"^model\.backbone\.backbone\.embeddings\.position_embeddings$", "encoder.pos_embed"),
    (r"^model\.backbone\.backbone\.embeddings\.projection\.", "encoder.patch_embed.proj."),
    (_HF_VIT + r"attention\.(?:attention\.query|q_proj)\.", r"encoder.blocks.\1.attn.q."),
    (_HF_VIT + r"attention\.(?:attention\.key|k_proj)\.", r"encoder.blocks.\1.attn.k."),
    (_HF_VIT + r"attention\.(?:attention\.value|v_proj)\.", r"encoder.blocks.\1.attn.v."),
    (_HF_VIT + r"attention\.(?:output|o_proj)\.", r"encoder.blocks.\1.attn.proj."),
    (_HF_VIT + r"layernorm_before\.", r"encoder.blocks.\1.norm1."),
    (_HF_VIT + r"layernorm_after\.", r"encoder.blocks.\1.norm2."),
    (_HF_VIT + r"intermediate\.", r"encoder.blocks.\1.mlp."),
    (_HF_VIT + r"(gamma_[12])$", r"encoder.blocks.\1.\2"),
    (_HF_PROJ + r"sampling_layers\.(\d+)\.layers\.(\d+)\.norm\.", r"projector.levels.\1.samplers.\2.\3.bn."),
    (_HF_PROJ + r"sampling_layers\.(\d+)\.layers\.(\d+)\.", r"projector.levels.\1.samplers.\2.\3."),
    (_HF_PROJ + r"projector_layer\.conv([12])\.norm\.", r"projector.levels.\1.c2f.cv\2.bn."),
    (_HF_PROJ + r"projector_layer\.conv([12])\.conv\.", r"projector.levels.\1.c2f.cv\2.conv."),
    (_HF_PROJ + r"projector_layer\.bottlenecks\.(\d+)\.conv([12])\.norm\.", r"projector.levels.\1.c2f.m.\2.cv\3.bn."),
    (_HF_PROJ + r"projector_layer\.bottlenecks\.(\d+)\.conv([12])\.conv\.", r"projector.levels.\1.c2f.m.\2.cv\3.conv."),
    (_HF_PROJ + r"layer_norm\.", r"projector.levels.\1.norm."),
    (_HF_DEC + r"self_attn\.([qkv])_proj\.", r"decoder.layers.\1.self_attn.\2."),
    (_HF_DEC + r"self_attn\.o_proj\.", r"decoder.layers.\1.self_attn.out_proj."),
    (_HF_DEC + r"self_attn_layer_norm\.", r"decoder.layers.\1.norm1."),
    (_HF_DEC + r"cross_attn_layer_norm\.", r"decoder.layers.\1.norm2."),
    (_HF_DEC + r"layer_norm\.", r"decoder.layers.\1.norm3."),
    (_HF_DEC + r"mlp\.fc([12])\.", r"decoder.layers.\1.linear\2."),
    (_HF_DEC + r"cross_attn\.", r"decoder.layers.\1.cross_attn."),
    (r"^model\.decoder\.layernorm\.", "decoder.norm."),
    (r"^model\.decoder\.ref_point_head\.", "decoder.ref_point_head."),
    (r"^model\." + _ENC_HEADS + r"\.0\.", r"\1."),
    (r"^model\." + _ENC_HEADS + r"\.\d+\.", DROP),
    (r"^model\.query_feat\.weight$", "query_feat.weight"),
    (r"^model\.reference_point_embed\.weight$", "refpoint_embed.weight"),
    (r"^(class_embed|bbox_embed)\.", r"\1."),
]

# original LW-DETR (`ckpt['model']`) -> ours.
ORIGINAL_RULES: list[tuple[str, str | None]] = [
    (r"^backbone\.0\.encoder\.", "encoder."),
    (r"^backbone\.0\.projector\.stages_sampling\.(\d+)\.(\d+)\.", r"projector.levels.\1.samplers.\2."),
    (r"^backbone\.0\.projector\.stages\.(\d+)\.0\.", r"projector.levels.\1.c2f."),
    (r"^backbone\.0\.projector\.stages\.(\d+)\.1\.", r"projector.levels.\1.norm."),
    # Without --lite_refpoint_refine the decoder holds the box head too: the same module as `bbox_embed`, saved twice.
    (r"^transformer\.decoder\.bbox_embed\.", DROP),
    (r"^transformer\.decoder\.", "decoder."),
    (r"^transformer\." + _ENC_HEADS + r"\.0\.", r"\1."),
    (r"^transformer\." + _ENC_HEADS + r"\.\d+\.", DROP),
    (r"^(query_feat|refpoint_embed|class_embed|bbox_embed)\.", r"\1."),
    (r"^backbone\.1\.", DROP),  # `--position_embedding learned`: memory position embeddings the decoder never reads
]

# Published transformers configs once shipped ViT out_indices shifted by one (transformers counts the patch
# embedding as stage 0): these are the shifted values and the correct ones.
SHIFTED_OUT_INDICES = {(1, 3, 5): (2, 4, 6), (2, 4, 5, 9): (3, 5, 6, 10)}

# transformers config fields whose value this implementation fixes; anything else is another architecture. The
# fields that change the graph and are honoured: backbone hidden_size, num_hidden_layers, num_attention_heads,
# window_block_indices, out_indices, pretrain_image_size; projector_scale_factors, c2f_num_blocks, d_model,
# decoder_layers, decoder_ffn_dim, decoder_self/cross_attention_heads, decoder_n_points, num_queries, num_labels.
# Training-only fields (dropouts, group_detr, losses, init) do not change inference.
_FIXED_HF_FIELDS = {
    "activation_function": "silu",
    "decoder_activation_function": "relu",
    "hidden_expansion": 0.5,
    "batch_norm_eps": 1e-5,
    "attention_bias": True,
}
_FIXED_HF_VIT_FIELDS = {
    "hidden_act": "gelu",
    "mlp_ratio": 4,
    "patch_size": 16,
    "num_windows": 16,
    "num_channels": 3,
    "layer_norm_eps": 1e-6,
    "qkv_bias": True,
    "use_absolute_position_embeddings": True,
}


class CheckpointWarning(UserWarning):
    """A checkpoint was loaded after a correction the user should know about."""


def detect_layout(state: dict[str, torch.Tensor]) -> str:
    """'transformers', 'original' or 'edge_lwdetr', from the key names."""
    keys = state.keys()
    if any(k.startswith("model.backbone.backbone.") for k in keys):
        return "transformers"
    if any(k.startswith(("backbone.0.encoder.", "transformer.decoder.")) for k in keys):
        return "original"
    if any(k.startswith("encoder.blocks.") for k in keys):
        return "edge_lwdetr"
    raise EdgeLwdetrError(
        "the weights are not an LW-DETR state dict (no transformers 'model.backbone.backbone.*', original "
        "'backbone.0.encoder.*' or edge-lwdetr 'encoder.blocks.*' keys); first keys: " + ", ".join(list(keys)[:3])
    )


def _rename(state: dict[str, torch.Tensor], rules: list[tuple[str, str | None]]) -> tuple[dict, list[str]]:
    renamed, unexpected = {}, []
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in rules]
    for key, tensor in state.items():
        for pattern, replacement in compiled:
            if pattern.search(key):
                if replacement is not DROP:
                    renamed[pattern.sub(replacement, key)] = tensor
                break
        else:
            unexpected.append(key)
    return renamed, unexpected


def _fuse_projections(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Join transformers' separate q/k/v projections into the fused tensors of the original layout."""
    parts: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    fused = {}
    for key, tensor in state.items():
        match = re.match(r"^(.*\.(?:attn|self_attn))\.([qkv])\.(weight|bias)$", key)
        if match:
            parts[match[1]][match[2] + "." + match[3]] = tensor
        else:
            fused[key] = tensor
    for prefix, p in parts.items():
        if prefix.endswith(".self_attn"):  # decoder: nn.MultiheadAttention's in_proj
            fused[prefix + ".in_proj_weight"] = torch.cat([p["q.weight"], p["k.weight"], p["v.weight"]])
            fused[prefix + ".in_proj_bias"] = torch.cat([p["q.bias"], p["k.bias"], p["v.bias"]])
        else:  # ViT: fused qkv without a key bias
            fused[prefix + ".qkv.weight"] = torch.cat([p["q.weight"], p["k.weight"], p["v.weight"]])
            fused[prefix + ".q_bias"] = p["q.bias"]
            fused[prefix + ".v_bias"] = p["v.bias"]
    return fused


def convert_state_dict(state: dict[str, torch.Tensor], num_queries: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Any supported layout -> this package's; returns the state dict and the keys no rule recognised.

    Query tables hold every Group-DETR group ([groups * num_queries, ...]); inference uses group 0, the first rows.
    """
    layout = detect_layout(state)
    if layout == "edge_lwdetr":
        converted, unexpected = dict(state), []
    elif layout == "transformers":
        converted, unexpected = _rename(state, HF_RULES)
        converted = _fuse_projections(converted)
    else:
        converted, unexpected = _rename(state, ORIGINAL_RULES)
    for key in ("query_feat.weight", "refpoint_embed.weight"):
        if key in converted:
            converted[key] = converted[key][:num_queries]
    return converted, unexpected


def config_from_transformers(hf: dict[str, Any], source: str) -> LwDetrConfig:
    """Our config from a transformers `config.json` dict; corrects the known off-by-one out_indices."""
    if hf.get("model_type") != "lw_detr":
        raise EdgeLwdetrError(
            f"{source} holds a '{hf.get('model_type')}' model (config.json model_type), not LW-DETR ('lw_detr')"
        )
    vit = hf.get("backbone_config") or {}
    for fields, values, where in ((_FIXED_HF_FIELDS, hf, ""), (_FIXED_HF_VIT_FIELDS, vit, "backbone_config.")):
        for name, expected in fields.items():
            value = values.get(name, expected)
            if isinstance(value, list) and len(set(value)) == 1:  # patch_size [16, 16]
                value = value[0]
            if value != expected:
                raise EdgeLwdetrError(
                    f"{source} sets {where}{name}={values[name]!r}; edge-lwdetr builds LW-DETR with {name}="
                    f"{expected!r} only: convert the model with that value or run it in transformers"
                )
    try:
        out_indices = tuple(vit["out_indices"])
        if out_indices in SHIFTED_OUT_INDICES:
            fixed = SHIFTED_OUT_INDICES[out_indices]
            warnings.warn(
                f"{source}: backbone_config.out_indices {list(out_indices)} is the known off-by-one value "
                f"(transformers counts the patch embedding as stage 0); using {list(fixed)}",
                CheckpointWarning,
                stacklevel=2,
            )
            out_indices = fixed
        id2label = hf.get("id2label") or {}
        return LwDetrConfig(
            vit_width=vit["hidden_size"],
            vit_depth=vit["num_hidden_layers"],
            vit_heads=vit["num_attention_heads"],
            window_blocks=tuple(vit["window_block_indices"]),
            out_blocks=tuple(i - 1 for i in out_indices),
            projector_scales=tuple(float(s) for s in hf["projector_scale_factors"]),
            d_model=hf["d_model"],
            sa_heads=hf["decoder_self_attention_heads"],
            ca_heads=hf["decoder_cross_attention_heads"],
            n_points=hf["decoder_n_points"],
            num_queries=hf["num_queries"],
            num_classes=len(id2label) if id2label else hf.get("num_labels", 91),
            dec_layers=hf.get("decoder_layers", 3),
            ffn_dim=hf.get("decoder_ffn_dim", 2048),
            c2f_blocks=hf.get("c2f_num_blocks", 3),
            pretrain_grid=_pretrain_grid(vit.get("pretrain_image_size", 224), source),
        )
    except KeyError as missing:
        raise EdgeLwdetrError(f"{source} lacks the LW-DETR config field {missing}") from None


def _pretrain_grid(size: Any, source: str) -> int:
    side = size[0] if isinstance(size, (list, tuple)) and len(set(size)) == 1 else size
    if not isinstance(side, int) or side % 16:
        raise EdgeLwdetrError(
            f"{source} sets backbone_config.pretrain_image_size={size!r}; edge-lwdetr builds square position "
            "embeddings whose side is a multiple of the 16 px patch"
        )
    return side // 16


def infer_config(state: dict[str, torch.Tensor], variant: str | None, num_queries: int | None) -> LwDetrConfig:
    """The published variant whose shapes fit a converted state dict (or `variant`, when given)."""
    num_classes = state["class_embed.weight"].shape[0] if "class_embed.weight" in state else 91
    if variant is None:
        width = state["encoder.pos_embed"].shape[-1] if "encoder.pos_embed" in state else None
        depth = len({k.split(".")[2] for k in state if k.startswith("encoder.blocks.")})
        levels = len({k.split(".")[2] for k in state if k.startswith("projector.levels.")})
        matches = [
            name
            for name, row in VARIANTS.items()
            if (row.vit_width, row.vit_depth, row.num_levels) == (width, depth, levels)
        ]
        if not matches:
            raise EdgeLwdetrError(
                f"no LW-DETR variant has a ViT of width {width} and depth {depth} with {levels} projector levels; "
                f"pass --variant ({', '.join(VARIANTS)}) if the weights are one of them"
            )
        variant = matches[0]
    if variant not in VARIANTS:
        raise EdgeLwdetrError(f"unknown variant '{variant}': choose one of {', '.join(VARIANTS)}")
    config = dataclasses.replace(VARIANTS[variant], num_classes=num_classes)
    return dataclasses.replace(config, num_queries=num_queries) if num_queries else config


# The original `main.py` parser defaults, for checkpoints saved before an argument existed.
ORIGINAL_DEFAULTS: dict[str, Any] = {
    "encoder": "vit_tiny",
    "vit_encoder_num_layers": 12,
    "window_block_indexes": None,
    "out_feature_indexes": [-1],
    "projector_scale": "P4",
    "hidden_dim": 256,
    "sa_nheads": 8,
    "ca_nheads": 8,
    "dec_n_points": 4,
    "dec_layers": 3,
    "dim_feedforward": 2048,
    "num_queries": 300,
    "num_select": 100,
    "two_stage": False,
    "bbox_reparam": False,
    "lite_refpoint_refine": False,
    "decoder_norm": "LN",
}
ORIGINAL_ENCODERS = {"vit_tiny": 192, "vit_small": 384, "vit_base": 768}  # `models/backbone/backbone.py`
ORIGINAL_SCALES = {"P3": 2.0, "P4": 1.0, "P5": 0.5}


@dataclasses.dataclass(frozen=True)
class OriginalArgs:
    """What an original checkpoint's `args` tell: the architecture, the post-processing top-k, the export size."""

    config: LwDetrConfig
    num_select: int
    image_size: int | None


def config_from_original_args(args: Any, num_classes: int, source: str) -> OriginalArgs:
    """The architecture the original code builds from its `main.py` arguments (`args` of a `.pth`, read as data).

    Arguments that only train (learning rates, losses, dropout, EMA, group_detr) do not change the inference graph
    and are ignored; every argument that does is honoured, or refused in one line naming it and its value.
    """
    get = {name: getattr(args, name, default) for name, default in ORIGINAL_DEFAULTS.items()}

    def refuse(name: str, why: str, fix: str = "") -> EdgeLwdetrError:
        value = get[name]
        shown = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        fix = fix or (
            "the original code cannot build this either: correct the argument in the checkpoint's args, or pass "
            "--variant to load by tensor shapes"
        )
        return EdgeLwdetrError(f"{source} was trained with --{name} {shown}: {why}; {fix}")

    encoder = get["encoder"]
    if encoder not in ORIGINAL_ENCODERS:
        encoders = ", ".join(ORIGINAL_ENCODERS)
        raise refuse(
            "encoder", f"edge-lwdetr builds the ViT encoders only ({encoders})", "run it with the original code"
        )
    depth = get["vit_encoder_num_layers"]
    if not isinstance(depth, int) or depth < 1:
        raise refuse("vit_encoder_num_layers", "the ViT needs at least one block")
    if get["window_block_indexes"] is None:
        raise refuse("window_block_indexes", "the original code asserts a list of window blocks")
    windows = tuple(i for i in range(depth) if i in get["window_block_indexes"])  # `i in window_block_indexes`
    outs = {i + depth if i < 0 else i for i in get["out_feature_indexes"]}
    out_blocks = tuple(i for i in range(depth) if i in outs)
    if not out_blocks or out_blocks[-1] != depth - 1:
        raise refuse("out_feature_indexes", f"the original code asserts that the last block ({depth - 1}) is one")
    scales = get["projector_scale"]
    if isinstance(scales, str) or list(scales) != sorted(scales):
        raise refuse("projector_scale", "the original code asserts a list of levels in ascending order")
    for level in scales:
        if level not in ORIGINAL_SCALES:
            raise refuse("projector_scale", f"level {level} is not built (the original's projector fails on P6)")
    d_model = get["hidden_dim"]
    for name in ("sa_nheads", "ca_nheads"):
        if get[name] < 1 or d_model % get[name]:
            raise refuse(name, f"--hidden_dim {d_model} is not a multiple of it")
    if d_model % 2:
        raise refuse("hidden_dim", "the box position embedding needs an even width")
    if get["decoder_norm"] not in ("LN", "Identity"):
        raise refuse("decoder_norm", "the original code knows LN and Identity")
    for name in ("dec_n_points", "dec_layers", "dim_feedforward", "num_queries", "num_select"):
        if not isinstance(get[name], int) or get[name] < 1:
            raise refuse(name, "it must be a positive integer")
    config = LwDetrConfig(
        vit_width=ORIGINAL_ENCODERS[encoder],
        vit_depth=depth,
        window_blocks=windows,
        out_blocks=out_blocks,
        projector_scales=tuple(ORIGINAL_SCALES[level] for level in scales),
        d_model=d_model,
        sa_heads=get["sa_nheads"],
        ca_heads=get["ca_nheads"],
        n_points=get["dec_n_points"],
        num_queries=get["num_queries"],
        num_classes=num_classes,
        dec_layers=get["dec_layers"],
        ffn_dim=get["dim_feedforward"],
        two_stage=bool(get["two_stage"]),
        bbox_reparam=bool(get["bbox_reparam"]),
        lite_refpoint_refine=bool(get["lite_refpoint_refine"]),
        decoder_norm=get["decoder_norm"] == "LN",
        border_proposals="rank",
    )
    if get["num_select"] > config.num_queries * num_classes:
        raise refuse("num_select", f"more than the {config.num_queries} queries x {num_classes} classes to choose from")
    shape = getattr(args, "shape", None)  # `export_model --shape W H`
    image_size = shape[0] if isinstance(shape, (list, tuple)) and len(shape) == 2 and shape[0] == shape[1] else None
    return OriginalArgs(config, get["num_select"], image_size)
