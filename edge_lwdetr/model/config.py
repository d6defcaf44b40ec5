"""LW-DETR architecture hyper-parameters: one dataclass and the table of published variants.

Values are those of the original scripts (`Atten4Vis/LW-DETR`, `scripts/lwdetr_<size>_coco_*.sh`), with the ViT
output blocks counted from 0 as the original code does (transformers counts them from 1: see `checkpoint.py`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edge_lwdetr.errors import EdgeLwdetrError

PATCH_SIZE = 16
# Token grids are split into a fixed 4x4 grid of windows, and the patch size is 16, so sides are multiples of 64.
NUM_WINDOWS_SIDE = 4
SIZE_MULTIPLE = PATCH_SIZE * NUM_WINDOWS_SIDE
DEFAULT_IMAGE_SIZE = 640  # the published checkpoints' size, for weights whose folder does not name one


@dataclass(frozen=True)
class LwDetrConfig:
    """Architecture of one LW-DETR model (inference only: one query group)."""

    vit_width: int
    vit_depth: int
    window_blocks: tuple[int, ...]
    out_blocks: tuple[int, ...]
    projector_scales: tuple[float, ...]
    d_model: int
    sa_heads: int
    ca_heads: int
    n_points: int
    num_queries: int
    num_classes: int = 91
    vit_heads: int = 12
    dec_layers: int = 3
    ffn_dim: int = 2048
    c2f_blocks: int = 3
    pretrain_grid: int = 14  # the ViT position embedding was trained on 224 px: a 14x14 grid plus a cls slot
    # The original code's switches (`main.py --two_stage --bbox_reparam --lite_refpoint_refine --decoder_norm LN`),
    # all on in every published model.
    two_stage: bool = True  # reference boxes from the best-scoring memory tokens (else the learned table alone)
    bbox_reparam: bool = True  # boxes refined as centre + delta * size, size * exp(delta) (else in logit space)
    lite_refpoint_refine: bool = True  # reference boxes computed once (else refined after every decoder layer)
    decoder_norm: bool = True  # a LayerNorm after the last decoder layer (`--decoder_norm LN`; else Identity)
    # Two-stage proposals outside (0.01, 0.99): "rank" keeps them in the top-k with zeroed features and boxes (the
    # original code, which measured the published accuracy); "exclude" never selects them (transformers).
    border_proposals: str = "exclude"

    @property
    def num_levels(self) -> int:
        return len(self.projector_scales)

    def level_strides(self) -> tuple[int, ...]:
        return tuple(int(PATCH_SIZE / s) for s in self.projector_scales)

    def spatial_shapes(self, height: int, width: int) -> tuple[tuple[int, int], ...]:
        """(H, W) of each decoder memory level for an input of height x width pixels."""
        return tuple((height // s, width // s) for s in self.level_strides())


_COMMON_WINDOWS = (0, 1, 3, 6, 7, 9)
_COMMON_OUT = (2, 4, 5, 9)

VARIANTS: dict[str, LwDetrConfig] = {
    "tiny": LwDetrConfig(192, 6, (0, 2, 4), (1, 3, 5), (1.0,), 256, 8, 16, 2, 100),
    "small": LwDetrConfig(192, 10, _COMMON_WINDOWS, _COMMON_OUT, (1.0,), 256, 8, 16, 2, 300),
    "medium": LwDetrConfig(384, 10, _COMMON_WINDOWS, _COMMON_OUT, (1.0,), 256, 8, 16, 2, 300),
    "large": LwDetrConfig(384, 10, _COMMON_WINDOWS, _COMMON_OUT, (2.0, 0.5), 384, 12, 24, 4, 300),
    "xlarge": LwDetrConfig(768, 10, _COMMON_WINDOWS, _COMMON_OUT, (2.0, 0.5), 384, 12, 24, 4, 300),
}


def variant_config(name: str, num_classes: int = 91) -> LwDetrConfig:
    if name not in VARIANTS:
        raise EdgeLwdetrError(f"unknown variant '{name}': choose one of {', '.join(VARIANTS)}")
    return dataclasses.replace(VARIANTS[name], num_classes=num_classes)


def variant_name(config: LwDetrConfig) -> str:
    """The published variant this architecture is, or 'custom'."""
    for name, row in VARIANTS.items():
        same = dict(num_classes=config.num_classes, num_queries=config.num_queries)
        if dataclasses.replace(row, **same, border_proposals=config.border_proposals) == config:
            return name
    return "custom"


def check_image_size(config: LwDetrConfig, height: int, width: int) -> None:
    """Refuse input sizes the window layout or the query count cannot serve, naming valid sizes."""
    for side in (height, width):
        if side <= 0 or side % SIZE_MULTIPLE:
            lower = max(SIZE_MULTIPLE, side // SIZE_MULTIPLE * SIZE_MULTIPLE)
            raise EdgeLwdetrError(
                f"image size {side} is not a multiple of {SIZE_MULTIPLE}: LW-DETR splits the 1/16 token grid "
                f"into 4x4 windows; use {lower} or {lower + SIZE_MULTIPLE} (e.g. 320, 384, ..., 640)"
            )
    tokens = sum(h * w for h, w in config.spatial_shapes(height, width))
    if tokens < config.num_queries:
        raise EdgeLwdetrError(
            f"image size {height}x{width} gives {tokens} memory tokens, fewer than the model's "
            f"{config.num_queries} queries: use a larger size"
        )
