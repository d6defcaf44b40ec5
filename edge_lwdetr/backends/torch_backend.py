"""The PyTorch backend: the reference model, on the CPU or a CUDA GPU."""

from __future__ import annotations

import time

import numpy as np
import torch

from edge_lwdetr.model.config import DEFAULT_IMAGE_SIZE, check_image_size
from edge_lwdetr.model.loading import load_model
from edge_lwdetr.processing import normalize


class TorchBackend:
    name = "torch"

    def __init__(
        self,
        weights: str,
        image_size: int | None = None,
        variant: str | None = None,
        device: str | None = None,
        ema: bool = False,
    ):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        loaded = load_model(weights, variant, self.device, ema=ema)
        image_size = image_size or loaded.image_size or DEFAULT_IMAGE_SIZE
        check_image_size(loaded.config, image_size, image_size)
        self.model, self.variant, self.id2label = loaded.model, loaded.variant, loaded.id2label
        self.image_size = image_size
        self.stage_ms: dict[str, float] = {}

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        start = time.perf_counter()
        batch = torch.from_numpy(normalize(images)).to(self.device)
        with torch.inference_mode():
            logits, boxes = self.model(batch)
        result = logits.float().cpu().numpy(), boxes.float().cpu().numpy()
        self.stage_ms = {"infer": (time.perf_counter() - start) * 1000}
        return result

    def close(self) -> None:
        pass
