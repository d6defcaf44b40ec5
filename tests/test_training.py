"""Training pieces: matching, losses, the training step, and the saved inference folder."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edge_lwdetr.training.boxes import cxcywh_to_xyxy, generalized_iou
from edge_lwdetr.training.criterion import SetCriterion, ia_bce_loss
from edge_lwdetr.training.matcher import HungarianMatcher


def test_giou_known_values():
    unit = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    others = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.5, 0.0, 1.5, 1.0], [1.0, 0.0, 2.0, 1.0], [2.0, 0.0, 3.0, 1.0]])
    # identical 1; half overlap IoU 1/3 with no gap in the hull; touching 0; one box width apart -1/3
    assert generalized_iou(unit, others).tolist() == pytest.approx([1.0, 1 / 3, 0.0, -1 / 3])


def test_matcher_finds_the_cheapest_assignment_in_each_group():
    """Against brute force over all assignments, group by group; every target gets one query per group."""
    generator = torch.Generator().manual_seed(0)
    groups, per_group, classes = 3, 5, 4
    matcher = HungarianMatcher()
    for trial in range(5):
        logits = torch.randn(1, groups * per_group, classes, generator=generator)
        boxes = torch.rand(1, groups * per_group, 4, generator=generator) * 0.4 + 0.1
        targets = [{"labels": torch.randint(0, classes, (3,), generator=generator),
                    "boxes": torch.rand(3, 4, generator=generator) * 0.4 + 0.1}]  # fmt: skip
        queries, matched = matcher(logits, boxes, targets, groups)[0]
        assert len(queries) == groups * 3
        single = HungarianMatcher()
        for group in range(groups):
            in_group = (queries >= group * per_group) & (queries < (group + 1) * per_group)
            assert sorted(matched[in_group].tolist()) == [0, 1, 2]
            block = slice(group * per_group, (group + 1) * per_group)
            cost = _cost(single, logits[0, block], boxes[0, block], targets[0])
            best = min(sum(cost[q, t] for t, q in enumerate(perm)) for perm in itertools.permutations(range(per_group), 3))
            chosen = sum(cost[q - group * per_group, t] for q, t in zip(queries[in_group].tolist(), matched[in_group].tolist()))
            assert chosen == pytest.approx(best, abs=1e-5)


def _cost(matcher, logits, boxes, target) -> np.ndarray:
    """The matching cost written out query by query (independently of the vectorised matcher)."""
    cost = np.zeros((len(logits), len(target["labels"])))
    for q in range(len(logits)):
        for t, (label, box) in enumerate(zip(target["labels"], target["boxes"])):
            p = torch.sigmoid(logits[q, label])
            focal = 0.25 * (1 - p) ** 2 * -torch.log(p + 1e-8) - 0.75 * p**2 * -torch.log(1 - p + 1e-8)
            l1 = (boxes[q] - box).abs().sum()
            giou = generalized_iou(cxcywh_to_xyxy(boxes[q]), cxcywh_to_xyxy(box))
            cost[q, t] = float(matcher.class_weight * focal + matcher.l1_weight * l1 - matcher.giou_weight * giou)
    return cost


def test_ia_bce_is_bce_with_iou_aware_soft_targets():
    """Matched entries: BCE towards t = s^0.25 * IoU^0.75 (weights t, 1 - t); all others: BCE towards 0 weighted s^2."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 6, 3, generator=generator, requires_grad=True)
    index = (torch.tensor([0, 1]), torch.tensor([4, 2]))
    labels, ious = torch.tensor([2, 0]), torch.tensor([0.9, 0.3])
    loss = ia_bce_loss(logits, labels, ious, index)

    s = logits.sigmoid().detach()
    weight_neg = s**2
    target = torch.zeros_like(s)
    for (image, query), label, iou in zip(zip(*index), labels, ious):
        t = (s[image, query, label] ** 0.25 * iou**0.75).clamp(min=0.01)
        target[image, query, label], weight_neg[image, query, label] = t, 0
    matched = target > 0
    expected = (
        F.binary_cross_entropy_with_logits(logits, target, reduction="none")[matched].sum()
        + (weight_neg * F.binary_cross_entropy_with_logits(logits, torch.zeros_like(s), reduction="none"))[~matched].sum()
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert (logits.grad[~matched] > 0).all()  # unmatched scores are pushed down


def test_training_steps_fit_a_batch():
    """Optimiser steps on one batch lower the loss: matching, losses and gradients fit together.

    From scratch the loss first hovers for tens of steps (measured: 21.3 -> 17.2 in 60 steps at lr 1e-4), hence 80
    steps and a 15 % bar; a criterion whose gradients point the wrong way leaves the loss where it was.
    """
    from transformers import LwDetrForObjectDetection

    from edge_lwdetr.training.trainer import shapes_config, supervised_outputs, training_batch

    torch.manual_seed(0)
    model = LwDetrForObjectDetection(shapes_config(num_queries=10, groups=2)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    criterion = SetCriterion(groups=2)
    images, targets = training_batch(seed=0, step=0, batch=2, image_size=128)
    assert images.shape == (2, 3, 128, 128)
    losses = []
    for _ in range(80):
        outputs = supervised_outputs(model, model(pixel_values=images))
        assert len(outputs) == 4  # 3 decoder layers and the two-stage proposals
        loss = sum(criterion(logits, boxes, targets)["total"] for logits, boxes in outputs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5]), losses


def test_saved_folder_is_group_zero_of_the_trained_model(tmp_path):
    """The saved one-group folder loads with load_model and computes what the trained model computes in eval mode."""
    from hf_models import randomize
    from transformers import LwDetrForObjectDetection

    from edge_lwdetr.model.loading import load_model
    from edge_lwdetr.training.trainer import ID2LABEL, save_inference_folder, shapes_config

    model = LwDetrForObjectDetection(shapes_config(num_queries=20, groups=3))
    randomize(model, seed=3)
    save_inference_folder(model.eval(), tmp_path, image_size=192)
    loaded = load_model(tmp_path)
    assert loaded.image_size == 192 and loaded.id2label == ID2LABEL and loaded.config.num_queries == 20
    images = torch.rand(2, 3, 192, 192, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model(pixel_values=images)
        logits, boxes = loaded.model(images)
    assert torch.allclose(logits, reference.logits, atol=1e-4) and torch.allclose(boxes, reference.pred_boxes, atol=1e-4)
    assert (tmp_path / "model.safetensors").stat().st_size < 10 * 2**20
