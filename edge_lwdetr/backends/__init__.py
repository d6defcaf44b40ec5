"""Inference backends behind one interface.

Every backend takes a batch in its model's `input_format` (processing.INPUT_FORMATS: [B, 3, S, S] float32 RGB in
[0, 1], or, for a graph exported with `--input-format uint8`, [B, S, S, 3] uint8 BGR; the normalisation is part of
the model; processing.to_model_input makes either) and returns logits [B, Q, C] and boxes [B, Q, 4] as NumPy arrays. Backends are
imported lazily, so the CPU path never imports what another backend needs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_lwdetr.errors import EdgeLwdetrError


class Backend(Protocol):
    name: str
    image_size: int
    input_format: str  # float or uint8, from the model (graph metadata, engine sidecar); weights: float
    id2label: dict[int, str]

    stage_ms: dict[str, float]  # the last call's stage times (h2d / infer / d2h where the backend can tell)

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...  # releases device state (the TensorRT backend's CUDA context)


def open_backend(
    model: str,
    backend: str = "auto",
    image_size: int | None = None,
    plugin: Path | None = None,
    cuda_graph: bool = False,
    device: str | None = None,
    variant: str | None = None,
    ema: bool = False,
) -> Backend:
    """The backend for `model`: an engine (.engine/.plan), an ONNX file, or weights for PyTorch.

    auto: TensorRT for an engine where TensorRT is installed, ONNX Runtime for an ONNX, PyTorch for weights.
    `image_size`, `device`, `variant` and `ema` (a training checkpoint's EMA weights) apply to weights only (default size: the one their folder names, else
    640); graphs carry theirs. `cuda_graph` replays TensorRT executions as a CUDA graph (TensorRT only).
    """
    path = Path(model)
    kind = "engine" if path.suffix in (".engine", ".plan") else "onnx" if path.suffix == ".onnx" else "weights"
    if backend == "auto":
        backend = {"engine": "tensorrt", "onnx": "onnxruntime", "weights": "torch"}[kind]
        if kind == "engine" and importlib.util.find_spec("tensorrt") is None:
            raise EdgeLwdetrError(
                f"{model} is a TensorRT engine but TensorRT is not installed here; pass the ONNX export instead"
            )
    allowed = {"tensorrt": ("engine",), "onnxruntime": ("onnx",), "torch": ("weights",)}
    if backend not in allowed:
        raise EdgeLwdetrError(f"--backend {backend} is unknown: choose auto, tensorrt, onnxruntime or torch")
    if kind not in allowed[backend]:
        raise EdgeLwdetrError(f"--backend {backend} cannot run {model} (a {kind}); it takes: {allowed[backend][0]}")
    if backend != "torch" and (device or variant or ema):
        option = "--device" if device else "--variant" if variant else "--ema"
        raise EdgeLwdetrError(f"{option} applies to weights run with PyTorch, not to {model} ({backend})")
    if backend == "tensorrt":
        from edge_lwdetr.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, plugin, cuda_graph)
    if backend == "onnxruntime":
        from edge_lwdetr.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path)
    from edge_lwdetr.backends.torch_backend import TorchBackend

    return TorchBackend(model, image_size, variant, device, ema=ema)
