"""Multi-scale deformable attention (MSDA, Zhu et al., Deformable DETR) as one operation.

`ms_deform_attn` runs the reference in PyTorch and becomes a single node in an ONNX export, which the rewrite maps to
one TensorRT plugin node. Its tensors follow the layout of NVIDIA's `MultiscaleDeformableAttnPlugin_TRT`
(plugins/README.md holds the node contract):

    value               [N, S, M, D]       S = sum of H_l * W_l over levels, M heads, D channels per head
    spatial_shapes      L pairs (H_l, W_l)  static ints here; the ONNX node gets them as an int32 [L, 2] tensor
                                            and their running offsets as the int32 [L] level_start_index
    sampling_locations  [N, Lq, M, L, P, 2] normalised (x, y) in [0, 1]
    attention_weights   [N, Lq, M, L, P]    already softmaxed jointly over L * P
    output              [N, Lq, M, D]

Sampling is bilinear with align_corners=False and zero padding: a location maps to pixel (x * W - 0.5, y * H - 0.5)
and corners outside the map contribute 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edge_lwdetr.onnx_contract import ONNX_DOMAIN, ONNX_OP


def level_start_index(spatial_shapes: tuple[tuple[int, int], ...]) -> list[int]:
    starts, total = [], 0
    for height, width in spatial_shapes:
        starts.append(total)
        total += height * width
    return starts


def ms_deform_attn_reference(
    value: torch.Tensor,
    spatial_shapes: tuple[tuple[int, int], ...],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The reference MSDA: one grid_sample per level, then the attention-weighted sum over levels and points."""
    _, _, heads, channels = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    sampled = []
    for level, ((height, width), start) in enumerate(zip(spatial_shapes, level_start_index(spatial_shapes))):
        # N, H*W, M, D -> N*M, D, H, W
        level_value = value[:, start : start + height * width].flatten(2).transpose(1, 2)
        level_value = level_value.reshape(-1, channels, height, width)
        # N, Lq, M, P, 2 -> N*M, Lq, P, 2
        level_grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(
            F.grid_sample(level_value, level_grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        )
    # N, Lq, M, L, P -> N*M, 1, Lq, L*P
    weights = attention_weights.transpose(1, 2).reshape(-1, 1, queries, levels * points)
    output = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)  # N*M, D, Lq
    return output.reshape(-1, heads, channels, queries).permute(0, 3, 1, 2).contiguous()


# The portable ONNX form of MSDA: one node per call, whose reference body edge_lwdetr.export attaches as an
# ONNX local function (plugins/README.md).


def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: tuple[tuple[int, int], ...],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """MSDA as one operation: the reference in PyTorch, a single node in an ONNX export."""
    if torch.onnx.is_in_onnx_export():
        batch, _, heads, channels = value.shape
        return torch.onnx.ops.symbolic(
            f"{ONNX_DOMAIN}::{ONNX_OP}",
            (
                value,
                torch.tensor(spatial_shapes, dtype=torch.int32),
                torch.tensor(level_start_index(spatial_shapes), dtype=torch.int32),
                sampling_locations,
                attention_weights,
            ),
            dtype=value.dtype,
            shape=(batch, sampling_locations.shape[1], heads, channels),
            version=1,
        )
    return ms_deform_attn_reference(value, spatial_shapes, sampling_locations, attention_weights)


class MSDeformAttn(nn.Module):
    """Deformable cross-attention from object queries to the multi-level memory.

    Each head samples P points per level around the query's reference box: offsets are in units of the box's
    half size (divided by P), so the sampling pattern scales with the box (LW-DETR's `bbox_reparam` form).
    """

    def __init__(self, d_model: int, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.n_levels, self.n_heads, self.n_points = n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)

    def forward(
        self,
        query: torch.Tensor,
        reference_boxes: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: tuple[tuple[int, int], ...],
    ) -> torch.Tensor:
        batch, queries, d_model = query.shape
        heads, levels, points = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(memory).reshape(batch, -1, heads, d_model // heads)
        offsets = self.sampling_offsets(query).reshape(batch, queries, heads, levels, points, 2)
        weights = self.attention_weights(query).reshape(batch, queries, heads, levels * points).softmax(-1)
        weights = weights.reshape(batch, queries, heads, levels, points)
        box = reference_boxes[:, :, None, None, None, :]  # cx, cy, w, h
        locations = box[..., :2] + offsets / points * box[..., 2:] * 0.5
        output = ms_deform_attn(value, spatial_shapes, locations, weights)
        return self.output_proj(output.reshape(batch, queries, d_model))
