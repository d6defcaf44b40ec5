"""Inference backends behind one interface.

Every local backend takes a batch in its model's `input_format` (processing.INPUT_FORMATS: [B, 3, S, S] float32 RGB
in [0, 1], or, for a graph exported with `--input-format uint8`, [B, S, S, 3] uint8 BGR; the normalisation is part
of the model; processing.to_model_input makes either) and returns logits [B, Q, C] and boxes [B, Q, 4] as NumPy
arrays. A served model (triton://...) is a `FrameBackend`: its server does the pre- and postprocessing, so it takes
a BGR frame and returns detections; `predict.detect` calls either kind. Backends are imported lazily, so the CPU
path never imports what another backend needs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.processing import Detection


class Backend(Protocol):
    name: str
    image_size: int
    variant: str
    input_format: str  # float or uint8, from the model (graph metadata, engine sidecar); weights: float
    id2label: dict[int, str]

    stage_ms: dict[str, float]  # the last call's stage times (h2d / infer / d2h where the backend can tell)

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...  # releases device state (the TensorRT backend's CUDA context)


class FrameBackend(Protocol):
    name: str
    image_size: int  # the served model's, for the record
    variant: str
    id2label: dict[int, str]
    takes_frames: bool  # True: `predict.detect` hands it frames
    stage_ms: dict[str, float]

    def detect(self, image_bgr: np.ndarray, conf: float) -> list[Detection]: ...

    def close(self) -> None: ...


def open_backend(
    model: str,
    backend: str = "auto",
    image_size: int | None = None,
    plugin: Path | None = None,
    cuda_graph: bool = False,
    device: str | None = None,
    variant: str | None = None,
    ema: bool = False,
    served: bool = False,
) -> Backend | FrameBackend:
    """The backend for `model`: an engine (.engine/.plan), an ONNX file, or weights for PyTorch; with `served` (the
    caller runs `predict.detect`), also a served model, triton://HOST:PORT/MODEL (gRPC) or triton+http://... .

    auto: TensorRT for an engine where TensorRT is installed, ONNX Runtime for an ONNX, PyTorch for weights.
    `image_size`, `device`, `variant` and `ema` (a training checkpoint's EMA weights) apply to weights only (default size: the one their folder names, else
    640); graphs carry theirs. `cuda_graph` replays TensorRT executions as a CUDA graph (TensorRT only).
    """
    from edge_lwdetr.serving.client import is_server_url

    if is_server_url(model):
        return _open_served(model, backend, served, image_size, plugin, cuda_graph, device, variant, ema)
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


def _open_served(model: str, backend: str, served: bool, *local_options) -> FrameBackend:
    if not served:
        raise EdgeLwdetrError(f"{model} is a served model, which only `run` (`predict`) and Detector take: pass a local "
                              "model (engine, ONNX or weights) to this command")  # fmt: skip
    if backend != "auto" or any(local_options):
        raise EdgeLwdetrError(f"{model} is a served model: its server chose the backend, size and plugin; leave out "
                              "--backend, --imgsz, --plugin, --cuda-graph, --device, --variant and --ema")  # fmt: skip
    from edge_lwdetr.backends.triton_backend import TritonBackend

    return TritonBackend(model)
