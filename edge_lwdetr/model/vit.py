"""The LW-DETR ViT encoder: plain ViT blocks (CAE style, with layer scale) over a window-major token layout.

LW-DETR (Chen et al., arXiv 2406.03459), original code `Atten4Vis/LW-DETR` `models/backbone/vit.py`.
Tokens are kept in window-major order: a window block attends within each of the 4x4 windows, a global block over
all tokens of the image. Global attention has no position bias, so the token order does not change its result.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_lwdetr.model.config import NUM_WINDOWS_SIDE, PATCH_SIZE, LwDetrConfig

LAYER_NORM_EPS = 1e-6


class Attention(nn.Module):
    """Multi-head self-attention; the key has no bias (q_bias and v_bias only, as in BEiT/CAE)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """x = x + gamma_1 * attn(norm1(x)); x = x + gamma_2 * mlp(norm2(x)).

    A window block sees the tokens as [B*16, window tokens, C]; a global block regroups them to [B, all tokens, C].
    """

    def __init__(self, dim: int, num_heads: int, window: bool):
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.gamma_1 = nn.Parameter(torch.full((dim,), 0.1))
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, 4 * dim)
        self.gamma_2 = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        windows, tokens, dim = x.shape
        attn_in = self.norm1(x)
        if not self.window:
            attn_in = attn_in.reshape(-1, NUM_WINDOWS_SIDE**2 * tokens, dim)
        x = x + self.gamma_1 * self.attn(attn_in).reshape(windows, tokens, dim)
        return x + self.gamma_2 * self.mlp(self.norm2(x))


@functools.lru_cache(maxsize=None)
def bicubic_resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] matrix M with M @ v == F.interpolate(v, size_out, 'bicubic', align_corners=False).

    Resizing the position embedding this way keeps the exported graph free of a Resize node: the matrices are
    constants computed here from the static input size, and the product folds into one constant.
    """
    a = -0.75  # PyTorch's cubic convolution coefficient
    matrix = np.zeros((size_out, size_in), dtype=np.float64)
    for out in range(size_out):
        src = (out + 0.5) * size_in / size_out - 0.5
        first = int(np.floor(src))
        t = src - first
        weights = (
            ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
            ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a,
        )
        for k, weight in enumerate(weights):
            matrix[out, min(max(first - 1 + k, 0), size_in - 1)] += weight
    return matrix


class ViTEncoder(nn.Module):
    """Patch embedding + absolute position embedding + blocks; returns the outputs of `out_blocks` as B,C,H,W."""

    def __init__(self, config: LwDetrConfig):
        super().__init__()
        dim = config.vit_width
        self.out_blocks = config.out_blocks
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, PATCH_SIZE, PATCH_SIZE)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.pretrain_grid**2 + 1, dim))
        self.blocks = nn.ModuleList(
            Block(dim, config.vit_heads, window=i in config.window_blocks) for i in range(config.vit_depth)
        )

    def position_embedding(self, height: int, width: int) -> torch.Tensor:
        """The pretraining grid's embedding (cls slot dropped) resized bicubically to height x width: [h, w, C]."""
        grid = self.pos_embed.shape[1] - 1
        side = int(round(grid**0.5))
        table = self.pos_embed[0, 1:].reshape(side, side, -1)
        rows = torch.from_numpy(bicubic_resize_matrix(side, height)).to(table)
        cols = torch.from_numpy(bicubic_resize_matrix(side, width)).to(table)
        return torch.einsum("hi,ijc,wj->hwc", rows, table, cols)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed.proj(images).permute(0, 2, 3, 1)  # B, h, w, C
        _, height, width, dim = x.shape
        x = x + self.position_embedding(height, width)
        n = NUM_WINDOWS_SIDE
        wh, ww = height // n, width // n
        x = x.reshape(-1, n, wh, n, ww, dim).permute(0, 1, 3, 2, 4, 5).reshape(-1, wh * ww, dim)

        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.out_blocks:
                raster = x.reshape(-1, n, n, wh, ww, dim).permute(0, 5, 1, 3, 2, 4)
                features.append(raster.reshape(-1, dim, height, width))
        return features
