"""LW-DETR's training losses: IoU-aware BCE classification, L1 and GIoU box losses, on every supervised output.

Written here because transformers 5.23's LwDetr loss cannot run (`center_to_corners_format` is undefined in
`loss/loss_lw_detr.py`). The losses follow the LW-DETR paper (arXiv 2406.03459, section 3.2) and its code: the
classification target of a matched query is t = s^alpha * u^(1 - alpha) (s its score, u the IoU of its box with
its object), unmatched queries are pushed to 0 with a focal weight s^2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edge_lwdetr.training.boxes import box_iou, cxcywh_to_xyxy, generalized_iou
from edge_lwdetr.training.matcher import FOCAL_ALPHA, FOCAL_GAMMA, HungarianMatcher

LOSS_WEIGHTS = {"class": 1.0, "l1": 5.0, "giou": 2.0}


def ia_bce_loss(
    logits: torch.Tensor, labels: torch.Tensor, matched_ious: torch.Tensor, index: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """Sum of the IoU-aware BCE over all queries and classes.

    `index` = (image, query) of the matched queries, `labels` their classes, `matched_ious` their boxes' IoU.
    """
    prob = logits.sigmoid().detach()
    positive = torch.zeros_like(logits)
    negative = prob**FOCAL_GAMMA
    target = (prob[(*index, labels)] ** FOCAL_ALPHA * matched_ious ** (1 - FOCAL_ALPHA)).clamp(min=0.01)
    positive[(*index, labels)] = target
    negative[(*index, labels)] = 1 - target
    # -[p * log(s) + n * log(1 - s)], with log(1 - s) = log(s) - x written stably
    return (negative * logits - F.logsigmoid(logits) * (positive + negative)).sum()


class SetCriterion:
    """Weighted loss of one model output: match (per query group), then classification and box losses."""

    def __init__(self, groups: int, matcher: HungarianMatcher | None = None, weights: dict[str, float] | None = None):
        self.groups = groups
        self.matcher = matcher or HungarianMatcher()
        self.weights = weights or LOSS_WEIGHTS

    def __call__(
        self, logits: torch.Tensor, boxes: torch.Tensor, targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        matches = self.matcher(logits, boxes, targets, self.groups)
        image_ids = torch.cat([torch.full_like(queries, i) for i, (queries, _) in enumerate(matches)])
        query_ids = torch.cat([queries for queries, _ in matches])
        labels = torch.cat([t["labels"][ids] for t, (_, ids) in zip(targets, matches)])
        target_boxes = torch.cat([t["boxes"][ids] for t, (_, ids) in zip(targets, matches)])
        predicted = boxes[image_ids, query_ids]
        # One positive per object per group: normalise by the number of positives.
        num_positives = max(len(query_ids), 1)
        predicted_xyxy, target_xyxy = cxcywh_to_xyxy(predicted), cxcywh_to_xyxy(target_boxes)
        ious = box_iou(predicted_xyxy.detach(), target_xyxy)[0]
        losses = {
            "class": ia_bce_loss(logits, labels, ious, (image_ids, query_ids)) / num_positives,
            "l1": F.l1_loss(predicted, target_boxes, reduction="sum") / num_positives,
            "giou": (1 - generalized_iou(predicted_xyxy, target_xyxy)).sum() / num_positives,
        }
        losses["total"] = sum(self.weights[name] * value for name, value in losses.items())
        return losses
