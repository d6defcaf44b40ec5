"""Hungarian matching of predictions to ground truth, one query group at a time (Group DETR)."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from edge_lwdetr.training.boxes import cxcywh_to_xyxy, generalized_iou

FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0


class HungarianMatcher:
    """Minimum-cost one-to-one assignment under LW-DETR's cost: focal class cost + L1 + GIoU (weights 2, 5, 2)."""

    def __init__(self, class_weight: float = 2.0, l1_weight: float = 5.0, giou_weight: float = 2.0):
        self.class_weight, self.l1_weight, self.giou_weight = class_weight, l1_weight, giou_weight

    @torch.no_grad()
    def __call__(
        self, logits: torch.Tensor, boxes: torch.Tensor, targets: list[dict[str, torch.Tensor]], groups: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """For each image, (query indices, target indices); queries come in `groups` independent blocks.

        Each block of Q/groups queries is matched to all the image's targets, so every object has one positive
        query per group (Group DETR's one-to-many supervision with one-to-one matching inside each group).
        """
        batch, queries, _ = logits.shape
        per_group = queries // groups
        prob = logits.sigmoid()
        pos = FOCAL_ALPHA * (1 - prob) ** FOCAL_GAMMA * -(prob + 1e-8).log()
        neg = (1 - FOCAL_ALPHA) * prob**FOCAL_GAMMA * -(1 - prob + 1e-8).log()
        matches = []
        for image, target in enumerate(targets):
            labels, target_boxes = target["labels"], target["boxes"]
            if len(labels) == 0:
                empty = torch.empty(0, dtype=torch.int64)
                matches.append((empty, empty))
                continue
            cost = (
                self.class_weight * (pos[image][:, labels] - neg[image][:, labels])
                + self.l1_weight * torch.cdist(boxes[image], target_boxes, p=1)
                - self.giou_weight * generalized_iou(cxcywh_to_xyxy(boxes[image])[:, None], cxcywh_to_xyxy(target_boxes)[None])
            )
            query_ids, target_ids = [], []
            for group, block in enumerate(cost.split(per_group)):
                rows, cols = linear_sum_assignment(block.cpu().numpy())
                query_ids.append(torch.as_tensor(rows, dtype=torch.int64) + group * per_group)
                target_ids.append(torch.as_tensor(cols, dtype=torch.int64))
            matches.append((torch.cat(query_ids), torch.cat(target_ids)))
        return matches
