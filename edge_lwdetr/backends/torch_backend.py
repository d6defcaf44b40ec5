"""The PyTorch backend: the reference model, on the CPU or a CUDA GPU."""

from __future__ import annotations

import time

import numpy as np
import torch

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.model.config import DEFAULT_IMAGE_SIZE, check_image_size
from edge_lwdetr.model.loading import load_model
from edge_lwdetr.processing import normalize


def torch_device(name: str | None) -> str:
    """`name` checked against this machine (default: cuda when available, else cpu)."""
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EdgeLwdetrError(f"--device {name!r} is not a torch device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EdgeLwdetrError(f"--device {name}: no CUDA GPU is visible to this torch build; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise EdgeLwdetrError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA devices")
    if device.type not in ("cpu", "cuda"):
        raise EdgeLwdetrError(f"--device {name}: edge-lwdetr runs the PyTorch model on cpu or cuda only")
    return name


class TorchBackend:
    name = "torch"
    input_format = "float"  # the module takes float images; uint8 input is an export option

    def __init__(
        self,
        weights: str,
        image_size: int | None = None,
        variant: str | None = None,
        device: str | None = None,
        ema: bool = False,
    ):
        self.device = torch_device(device)
        loaded = load_model(weights, variant, self.device, ema=ema)
        image_size = image_size or loaded.image_size or DEFAULT_IMAGE_SIZE
        check_image_size(loaded.config, image_size, image_size)
        self.model, self.variant, self.id2label = loaded.model, loaded.variant, loaded.id2label
        self.image_size = image_size
        self.stage_ms: dict[str, float] = {}
        self.threads = torch.get_num_threads()
        self.num_select = loaded.num_select  # the original checkpoint's top-k, else None: one per query

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
