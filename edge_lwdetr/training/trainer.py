"""Train a small LW-DETR on synthetic shape scenes and save it as an inference-only transformers folder.

The model is transformers' `LwDetrForObjectDetection` in training mode (it implements Group DETR's query groups
and the two-stage proposals); the losses are `criterion.py`'s. Training data is an endless stream of scenes: batch
`step` holds scenes `step * batch .. step * batch + batch - 1` of the training seed, so a run is reproducible from
its command line. The saved folder keeps query group 0 only, as inference uses, and loads with `load_model`.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_lwdetr.outputs import atomic_folder
from edge_lwdetr.processing import normalize, to_model_input
from edge_lwdetr.synthetic.dataset import scene_at
from edge_lwdetr.synthetic.shapes import CATEGORIES, render
from edge_lwdetr.training.criterion import SetCriterion
from edge_lwdetr.training.settings import TrainSettings

ID2LABEL = {0: "N/A", **CATEGORIES}  # labels are category ids, as in COCO checkpoints


def shapes_config(num_queries: int, groups: int):
    """The bundled model's architecture: LW-DETR-tiny's layout at about a quarter of its width (2.3 M parameters)."""
    from transformers import LwDetrConfig

    return LwDetrConfig(
        backbone_config=dict(
            model_type="lw_detr_vit",
            hidden_size=128,
            num_hidden_layers=6,
            num_attention_heads=8,
            window_block_indices=[0, 2, 4],
            out_indices=[2, 4, 6],  # transformers counts the patch embedding as stage 0: blocks 1, 3, 5
            image_size=1024,
        ),
        projector_scale_factors=[1.0],
        c2f_num_blocks=1,
        d_model=128,
        decoder_ffn_dim=512,
        decoder_self_attention_heads=4,
        decoder_cross_attention_heads=8,
        decoder_n_points=4,
        num_queries=num_queries,
        group_detr=groups,
        id2label=ID2LABEL,
    )


def training_batch(seed: int, step: int, batch: int, image_size: int) -> tuple[torch.Tensor, list[dict]]:
    """Normalised images [B, 3, S, S] and targets (labels, cx cy w h boxes) of batch `step`.

    Scenes render at a random size in [S, 2S] and go through the inference pre-processing (INTER_AREA shrink),
    so the model sees the same resampling as on larger camera frames.
    """
    rng = np.random.default_rng([seed, step, 1])
    images, targets = [], []
    for index in range(step * batch, (step + 1) * batch):
        scene = scene_at(seed, index)
        render_size = int(rng.integers(image_size, 2 * image_size + 1))
        images.append(to_model_input(render(scene, render_size), image_size))
        boxes = np.array([shape.box() for shape in scene.shapes], np.float32).reshape(-1, 4)
        cxcywh = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1)
        targets.append({
            "labels": torch.tensor([shape.category for shape in scene.shapes], dtype=torch.int64),
            "boxes": torch.from_numpy(cxcywh),
        })  # fmt: skip
    return torch.from_numpy(normalize(np.stack(images))), targets


def supervised_outputs(model, output) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(logits, boxes) of every output LW-DETR supervises: each decoder layer and the two-stage proposals."""
    from transformers.models.lw_detr.modeling_lw_detr import refine_bboxes

    hidden = output.intermediate_hidden_states[:-1]
    auxiliary = [
        (model.class_embed(h), refine_bboxes(output.intermediate_reference_points[-1], model.bbox_embed(h)))
        for h in hidden
    ]
    return [(output.logits, output.pred_boxes), *auxiliary, (output.enc_outputs_class, output.enc_outputs_coord_logits)]


def ema_update(decay: float):
    """Exponential moving average whose decay ramps up from 0.1 (as timm's and YOLO's do): a fixed decay would keep
    decay^steps of the random initial weights in the average (22 % after 750 steps at 0.998)."""

    def update(averaged: torch.Tensor, current: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        rate = min(decay, (1 + float(count)) / (10 + float(count)))
        return rate * averaged + (1 - rate) * current

    return update


def learning_rate(settings: TrainSettings, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < settings.warmup:
        return settings.lr * (step + 1) / settings.warmup
    progress = (step - settings.warmup) / max(settings.steps - settings.warmup, 1)
    return settings.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(
    settings: TrainSettings, output: Path, heldout: Path | None = None, eval_every: int = 1000, log=print
) -> dict:
    """Train, evaluating the EMA weights on `heldout` (a COCO folder) every `eval_every` steps; save to `output`."""
    from torch.optim.swa_utils import AveragedModel
    from transformers import LwDetrForObjectDetection

    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    model = LwDetrForObjectDetection(shapes_config(settings.num_queries, settings.groups)).train()
    ema = AveragedModel(model, avg_fn=ema_update(settings.ema_decay), use_buffers=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    criterion = SetCriterion(settings.groups)
    history = []
    start = time.perf_counter()
    progress = tqdm(range(settings.steps), desc="training", unit="step")
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(settings, step)
        images, targets = training_batch(settings.seed, step, settings.batch, settings.image_size)
        predictions = model(pixel_values=images)
        losses = [criterion(logits, boxes, targets) for logits, boxes in supervised_outputs(model, predictions)]
        loss = sum(part["total"] for part in losses)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()
        ema.update_parameters(model)
        progress.set_postfix(loss=f"{loss.item():.3f}", giou=f"{losses[0]['giou'].item():.3f}")
        last = step + 1 == settings.steps
        if heldout is not None and (last or (step + 1) % eval_every == 0):
            metrics = evaluate_training_model(ema.module, heldout, settings.image_size)
            history.append({"step": step + 1, "minutes": (time.perf_counter() - start) / 60, **metrics})
            log(f"step {step + 1}: mAP {metrics['mAP']:.4f}, mAP50 {metrics['mAP50']:.4f}")
    report = {"settings": asdict(settings), "minutes": (time.perf_counter() - start) / 60, "history": history}
    # The model folder appears whole or not at all: an earlier model there survives a failure or an interruption.
    with atomic_folder(output) as partial:
        save_inference_folder(ema.module, partial, settings.image_size)
        (partial / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def evaluate_training_model(model, heldout: Path, image_size: int) -> dict:
    """COCO metrics of the inference folder this model saves to, through the PyTorch backend: what users load."""
    from edge_lwdetr.backends.torch_backend import TorchBackend
    from edge_lwdetr.evaluation import evaluate

    with tempfile.TemporaryDirectory() as folder:
        save_inference_folder(model, Path(folder), image_size)
        return evaluate(TorchBackend(folder, image_size, device="cpu"), heldout)


def save_inference_folder(model, folder: Path, image_size: int) -> None:
    """save_pretrained of a one-group copy (group 0's queries and two-stage heads), with the input size."""
    from transformers import DeformableDetrImageProcessorPil, LwDetrForObjectDetection

    config = shapes_config(model.config.num_queries, groups=1)
    single = LwDetrForObjectDetection(config)
    state = model.state_dict()
    queries = model.config.num_queries
    single.load_state_dict({
        key: state[key][:queries] if key.endswith(("query_feat.weight", "reference_point_embed.weight")) else state[key]
        for key in single.state_dict()
    })  # fmt: skip
    single.eval().save_pretrained(folder)
    # transformers' own processor for LW-DETR (AutoImageProcessor maps lw_detr to it): the input size travels with
    # the weights, for load_model and for transformers users.
    DeformableDetrImageProcessorPil(size={"height": image_size, "width": image_size}).save_pretrained(folder)
