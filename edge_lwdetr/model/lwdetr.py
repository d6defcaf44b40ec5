"""LW-DETR for inference: ViT encoder -> projector -> two-stage query selection -> deformable decoder -> heads.

LW-DETR: "LW-DETR: A Transformer Replacement to YOLO for Real-Time Detection", Chen et al., arXiv 2406.03459;
original code `Atten4Vis/LW-DETR` (`models/lwdetr.py`, `models/transformer.py`). Only query group 0 of Group-DETR
is built: the other groups exist for training only.

Input: normalised RGB images [B, 3, H, W] (H, W multiples of 64). Output: logits [B, Q, C] before the sigmoid and
boxes [B, Q, 4] as normalised (cx, cy, w, h), the semantics of transformers' `LwDetrForObjectDetection`.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_lwdetr.model.config import LwDetrConfig
from edge_lwdetr.model.decoder import MLP, Decoder
from edge_lwdetr.model.decoder import refine as refine_boxes
from edge_lwdetr.model.projector import Projector
from edge_lwdetr.model.vit import ViTEncoder


def memory_proposals(
    spatial_shapes: tuple[tuple[int, int], ...], like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One proposal box per memory token: its cell centre and a size of 0.05 * 2^level; [S, 4] and the [S, 1]
    mask of proposals too close to the border (any coordinate outside (0.01, 0.99)), whose boxes are zeroed."""
    proposals = []
    for level, (height, width) in enumerate(spatial_shapes):
        cy = (torch.arange(height, dtype=like.dtype, device=like.device) + 0.5) / height
        cx = (torch.arange(width, dtype=like.dtype, device=like.device) + 0.5) / width
        grid_y, grid_x = torch.meshgrid(cy, cx, indexing="ij")
        size = torch.full_like(grid_x, 0.05 * 2.0**level)
        proposals.append(torch.stack((grid_x, grid_y, size, size), dim=-1).reshape(-1, 4))
    proposals = torch.cat(proposals)
    invalid = ~((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
    return proposals.masked_fill(invalid, 0.0), invalid


class LWDETR(nn.Module):
    def __init__(self, config: LwDetrConfig):
        super().__init__()
        self.config = config
        d, num_classes = config.d_model, config.num_classes
        self.encoder = ViTEncoder(config)
        self.projector = Projector(config)
        if config.two_stage:
            # Two-stage query selection: score every memory token, keep the best num_queries as reference boxes.
            self.enc_output = nn.Linear(d, d)
            self.enc_output_norm = nn.LayerNorm(d)
            self.enc_out_class_embed = nn.Linear(d, num_classes)
            self.enc_out_bbox_embed = MLP(d, d, 4, 3)
        # Mixed queries: learned content, and learned box deltas relative to the selected proposals.
        self.query_feat = nn.Embedding(config.num_queries, d)
        self.refpoint_embed = nn.Embedding(config.num_queries, 4)
        self.decoder = Decoder(config)
        self.class_embed = nn.Linear(d, num_classes)
        self.bbox_embed = MLP(d, d, 4, 3)

    def refine(self, reference: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        """Reference boxes moved by deltas: reparameterised, or added in logit space without `bbox_reparam`."""
        return refine_boxes(reference, deltas) if self.config.bbox_reparam else reference + deltas

    def memory(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[tuple[int, int], ...]]:
        """Encoder + projector, flattened: [B, S, d] over all levels, and each level's (H, W)."""
        levels = self.projector(self.encoder(images))
        spatial_shapes = tuple((level.shape[2], level.shape[3]) for level in levels)
        return torch.cat([level.flatten(2).transpose(1, 2) for level in levels], dim=1), spatial_shapes

    def proposal_scores(
        self, memory: torch.Tensor, spatial_shapes: tuple[tuple[int, int], ...]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per memory token: encoder query features [B, S, d], proposal box [S, 4] and best class logit [B, S].

        Border proposals have zeroed features and boxes; with `border_proposals="exclude"` their score is -inf.
        Without `bbox_reparam` the proposals are logits (inverse sigmoid), +inf at the border, as the original's.
        """
        proposals, invalid = memory_proposals(spatial_shapes, memory)
        if not self.config.bbox_reparam:
            proposals = torch.log(proposals / (1 - proposals)).masked_fill(invalid, float("inf"))
        tokens = self.enc_output_norm(self.enc_output(memory.masked_fill(invalid, 0.0)))
        logits = self.enc_out_class_embed(tokens)
        if self.config.border_proposals == "exclude":
            logits = logits.masked_fill(invalid, float("-inf"))
        return tokens, proposals, logits.amax(-1)

    def select_reference_boxes(self, memory: torch.Tensor, spatial_shapes: tuple[tuple[int, int], ...]) -> torch.Tensor:
        """Initial reference boxes [B, Q, 4]: (cx, cy, w, h), or their logits without `bbox_reparam`."""
        learned = self.refpoint_embed.weight.expand(memory.shape[0], -1, -1)
        if not self.config.two_stage:
            return learned
        tokens, proposals, scores = self.proposal_scores(memory, spatial_shapes)
        top = torch.topk(scores, self.config.num_queries, dim=1).indices
        # The box head runs on the selected tokens only: it is per token, so this equals selecting afterwards.
        top_tokens = torch.gather(tokens, 1, top.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        top_boxes = self.refine(proposals[top], self.enc_out_bbox_embed(top_tokens)).detach()
        return self.refine(top_boxes, learned)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        memory, spatial_shapes = self.memory(images)
        reference = self.select_reference_boxes(memory, spatial_shapes)
        tgt = self.query_feat.weight.expand(memory.shape[0], -1, -1)
        box_head = None if self.config.lite_refpoint_refine else self.bbox_embed
        hidden, reference = self.decoder(tgt, reference, memory, spatial_shapes, box_head)
        boxes = self.refine(reference, self.bbox_embed(hidden))
        return self.class_embed(hidden), boxes if self.config.bbox_reparam else boxes.sigmoid()
