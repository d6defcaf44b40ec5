"""The multi-scale projector: ViT features resampled per output level and fused by a C2f block.

Original: `Atten4Vis/LW-DETR` `models/backbone/projector.py`. For each output scale (2.0 = P3, 1.0 = P4,
0.5 = P5) every selected ViT output is resampled, the results are concatenated on channels, fused by a
C2f block (YOLOv8's cross-stage partial block) and normalised by a channel-first LayerNorm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edge_lwdetr.model.config import LwDetrConfig

LAYER_NORM_EPS = 1e-6
BATCH_NORM_EPS = 1e-5


class ConvNormAct(nn.Module):
    """Conv (no bias) -> BatchNorm -> activation; 'same' padding."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, act: type[nn.Module] = nn.SiLU):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=BATCH_NORM_EPS)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two 3x3 ConvNormAct, no shortcut (LW-DETR's C2f uses shortcut=False)."""

    def __init__(self, channels: int):
        super().__init__()
        self.cv1 = ConvNormAct(channels, channels, 3)
        self.cv2 = ConvNormAct(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(self.cv1(x))


class C2f(nn.Module):
    """cv1 splits into two halves; the second runs through the bottlenecks, every output is kept and fused by cv2."""

    def __init__(self, c_in: int, c_out: int, num_blocks: int):
        super().__init__()
        self.hidden = c_out // 2
        self.cv1 = ConvNormAct(c_in, 2 * self.hidden, 1)
        self.m = nn.ModuleList(Bottleneck(self.hidden) for _ in range(num_blocks))
        self.cv2 = ConvNormAct((2 + num_blocks) * self.hidden, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = list(self.cv1(x).split(self.hidden, dim=1))
        for block in self.m:
            outputs.append(block(outputs[-1]))
        return self.cv2(torch.cat(outputs, dim=1))


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a B,C,H,W map (exported as one LayerNormalization, which FP16 builds keep)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def make_sampler(channels: int, scale: float) -> nn.Sequential:
    """Resample one ViT output (stride 16) to the level's stride."""
    if scale == 2.0:
        if channels > 512:  # xlarge: halve the channels before the transposed conv
            return nn.Sequential(
                ConvNormAct(channels, channels // 2, 1, act=nn.ReLU),
                nn.ConvTranspose2d(channels // 2, channels // 4, 2, 2),
            )
        return nn.Sequential(nn.ConvTranspose2d(channels, channels // 2, 2, 2))
    if scale == 0.5:
        return nn.Sequential(ConvNormAct(channels, channels, 3, 2, act=nn.ReLU))
    return nn.Sequential()


def sampled_channels(channels: int, scale: float) -> int:
    if scale == 2.0:
        return channels // 4 if channels > 512 else channels // 2
    return channels


class ProjectorLevel(nn.Module):
    def __init__(self, config: LwDetrConfig, scale: float):
        super().__init__()
        width = config.vit_width
        self.samplers = nn.ModuleList(make_sampler(width, scale) for _ in config.out_blocks)
        c_in = sampled_channels(width, scale) * len(config.out_blocks)
        self.c2f = C2f(c_in, config.d_model, config.c2f_blocks)
        self.norm = ChannelLayerNorm(config.d_model, eps=LAYER_NORM_EPS)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        sampled = [sampler(feature) for sampler, feature in zip(self.samplers, features)]
        return self.norm(self.c2f(torch.cat(sampled, dim=1)))


class Projector(nn.Module):
    def __init__(self, config: LwDetrConfig):
        super().__init__()
        self.levels = nn.ModuleList(ProjectorLevel(config, scale) for scale in config.projector_scales)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [level(features) for level in self.levels]
