"""The LW-DETR decoder: post-norm layers of self-attention, deformable cross-attention and a ReLU FFN.

With `lite_refpoint_refine` (every published model) the reference boxes are computed once, before the first layer,
and never refined, so the query position embedding is computed once too. Without it, the box head refines them
after every layer but the last, and the position embedding follows (the original `TransformerDecoder`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edge_lwdetr.model.config import LwDetrConfig
from edge_lwdetr.model.msda import MSDeformAttn


def refine(reference: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Box reparameterisation: centre moves by delta * reference size, size scales by exp(delta)."""
    centre = deltas[..., :2] * reference[..., 2:] + reference[..., :2]
    size = deltas[..., 2:].exp() * reference[..., 2:]
    return torch.cat((centre, size), dim=-1)


class MLP(nn.Module):
    """Linear layers with ReLU between them (DETR's box head)."""

    def __init__(self, dim_in: int, hidden: int, dim_out: int, num_layers: int):
        super().__init__()
        dims = [dim_in] + [hidden] * (num_layers - 1) + [dim_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


class SelfAttention(nn.Module):
    """Multi-head attention with queries and keys from q_k and values from v (nn.MultiheadAttention's weights)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, q_k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = v.shape
        head_dim = dim // self.num_heads
        qk = F.linear(q_k, self.in_proj_weight[: 2 * dim], self.in_proj_bias[: 2 * dim])
        q, k = qk.reshape(batch, tokens, 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        v = F.linear(v, self.in_proj_weight[2 * dim :], self.in_proj_bias[2 * dim :])
        v = v.reshape(batch, tokens, self.num_heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class DecoderLayer(nn.Module):
    def __init__(self, config: LwDetrConfig):
        super().__init__()
        d = config.d_model
        self.self_attn = SelfAttention(d, config.sa_heads)
        self.norm1 = nn.LayerNorm(d)
        self.cross_attn = MSDeformAttn(d, config.num_levels, config.ca_heads, config.n_points)
        self.norm2 = nn.LayerNorm(d)
        self.linear1 = nn.Linear(d, config.ffn_dim)
        self.linear2 = nn.Linear(config.ffn_dim, d)
        self.norm3 = nn.LayerNorm(d)

    def forward(
        self,
        tgt: torch.Tensor,
        query_pos: torch.Tensor,
        reference_boxes: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: tuple[tuple[int, int], ...],
    ) -> torch.Tensor:
        tgt = self.norm1(tgt + self.self_attn(tgt + query_pos, tgt))
        tgt = self.norm2(tgt + self.cross_attn(tgt + query_pos, reference_boxes, memory, spatial_shapes))
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class Decoder(nn.Module):
    def __init__(self, config: LwDetrConfig):
        super().__init__()
        d = config.d_model
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.dec_layers))
        self.norm = nn.LayerNorm(d) if config.decoder_norm else nn.Identity()
        self.bbox_reparam = config.bbox_reparam
        self.ref_point_head = MLP(2 * d, d, d, 2)
        # Sine frequencies of the box embedding: 10000^(2*floor(i/2)/(d/2)), i < d/2 (DAB-DETR).
        feats = d // 2
        index = torch.arange(feats, dtype=torch.float32)
        self.register_buffer("dim_t", 10000 ** (2 * torch.div(index, 2, rounding_mode="floor") / feats), False)

    def box_sine_embedding(self, boxes: torch.Tensor) -> torch.Tensor:
        """[B, Q, 4] cx, cy, w, h -> [B, Q, 2*d]: interleaved sin/cos per coordinate, in the order y, x, w, h."""
        embeds = [(coord[..., None] * (2 * math.pi) / self.dim_t) for coord in boxes.unbind(-1)]
        embeds = [torch.stack((e[..., 0::2].sin(), e[..., 1::2].cos()), dim=-1).flatten(-2) for e in embeds]
        x, y, w, h = embeds
        return torch.cat((y, x, w, h), dim=-1)

    def forward(
        self,
        tgt: torch.Tensor,
        reference: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: tuple[tuple[int, int], ...],
        box_head: nn.Module | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode; `reference` holds boxes (cx, cy, w, h), or their logits without `bbox_reparam`.

        With `box_head` the reference is refined after each layer but the last. Returns the normalised output of
        the last layer and the reference it read, which the box head refines into the output boxes.
        """
        for index, layer in enumerate(self.layers):
            if index == 0 or box_head is not None:
                boxes = reference if self.bbox_reparam else reference.sigmoid()
                query_pos = self.ref_point_head(self.box_sine_embedding(boxes))
            tgt = layer(tgt, query_pos, boxes, memory, spatial_shapes)
            if box_head is not None and index < len(self.layers) - 1:
                deltas = box_head(tgt)
                reference = (refine(reference, deltas) if self.bbox_reparam else reference + deltas).detach()
        return self.norm(tgt), reference
