"""`edge-lwdetr serve`: any model the runtime runs (engine, ONNX, weights), served by Triton through PyTriton.

Triton's dynamic batcher hands one call several requests; their images run through the backend as one batch
(chunked to a static-batch graph's batch). PyTriton pins numpy<2, so this module runs in its own environment
(install.sh makes `.venv-serve`); the client (`client.py`) needs only the base install.
"""

from __future__ import annotations

import logging
import os
import sysconfig
import threading
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from edge_lwdetr.backends import Backend
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.predict import model_input, top_k
from edge_lwdetr.processing import Detection, postprocess
from edge_lwdetr.defaults import DEFAULT_CONF
from edge_lwdetr.serving import protocol
from edge_lwdetr.signals import stop_sets


@dataclass
class ServeOptions:
    address: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 8  # 1: no dynamic batching
    max_queue_delay_us: int = 2000
    instances: int = 1
    conf: float = DEFAULT_CONF
    model_name: str = protocol.MODEL_NAME


def decode(row: np.ndarray, size: np.ndarray | None) -> np.ndarray:
    """The BGR image of one request row, or ValueError saying what is wrong with it (the client sees the message)."""
    data = row.reshape(-1)[0] if row.dtype == object else row.tobytes()
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"input '{protocol.IMAGE}' must be BYTES, not {type(data).__name__}")
    if len(data) > protocol.MAX_IMAGE_BYTES:
        raise ValueError(f"input '{protocol.IMAGE}' is {len(data)} bytes, over the limit of {protocol.MAX_IMAGE_BYTES}")
    if size is not None:
        return protocol.raw_frame(bytes(data), size)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise ValueError(
            f"input '{protocol.IMAGE}' ({len(data)} bytes) is not an image OpenCV can decode (JPEG, PNG, ...); "
            f"send raw BGR pixels with the '{protocol.SIZE}' input"
        )
    if image.shape[0] * image.shape[1] > protocol.MAX_PIXELS:
        raise ValueError(f"image {image.shape[1]}x{image.shape[0]} is over the limit of {protocol.MAX_PIXELS} pixels")
    return image


def _padded(rows: list[np.ndarray], width: tuple[int, ...], dtype) -> np.ndarray:
    longest = max((len(r) for r in rows), default=0)
    out = np.zeros((len(rows), longest, *width), dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def request_images(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The BGR images of one request's rows (`image`, and `size` for raw frames)."""
    sizes = inputs.get(protocol.SIZE)
    return [decode(row, None if sizes is None else sizes[i]) for i, row in enumerate(inputs[protocol.IMAGE])]


def detect_all(backend: Backend, images: list[np.ndarray], conf: float) -> list[list[Detection]]:
    """Detections in each image, the images run as one batch (chunked to a static-batch graph's batch)."""
    batch = np.stack([model_input(backend, image) for image in images])
    step = getattr(backend, "batch", None) or len(batch)
    outputs = [backend.infer(batch[i : i + step]) for i in range(0, len(batch), step)]
    logits = np.concatenate([o[0] for o in outputs])
    boxes = np.concatenate([o[1] for o in outputs])
    return [
        postprocess(logits[i], boxes[i], image.shape[:2], backend.id2label, conf, top_k(backend))
        for i, image in enumerate(images)
    ]


def response_tensors(rows: list[list[Detection]]) -> dict[str, np.ndarray]:
    """One request's outputs: its rows' detections padded to the longest, with their counts."""
    return {
        protocol.BOXES: _padded([np.array([d.box for d in r], np.float32).reshape(-1, 4) for r in rows], (4,), np.float32),
        protocol.SCORES: _padded([np.array([d.score for d in r], np.float32) for r in rows], (), np.float32),
        protocol.LABELS: _padded([np.array([d.label for d in r], np.int64) for r in rows], (), np.int64),
        protocol.COUNT: np.array([[len(r)] for r in rows], np.int32),
    }


def infer_function(backend: Backend, conf: float) -> Callable[[list], list[dict[str, np.ndarray]]]:
    """PyTriton's callback: a list of requests (each a batch of rows) in, one response dict per request out. PyTriton
    answers an exception to every request of the call, so a malformed request fails the requests batched with it."""

    def infer(requests: list) -> list[dict[str, np.ndarray]]:
        per_request = [request_images(request.data) for request in requests]
        detections = detect_all(backend, [image for images in per_request for image in images], conf)
        responses, start = [], 0
        for images in per_request:
            responses.append(response_tensors(detections[start : start + len(images)]))
            start += len(images)
        return responses

    return infer


def model_info(backend: Backend) -> protocol.ModelInfo:
    return protocol.ModelInfo(backend.id2label, backend.image_size, backend.variant)


def _add_parameters(triton, model_name: str, parameters: dict[str, str]) -> None:
    """Put `parameters` in the bound model's configuration, where clients read the class names. PyTriton (pinned
    <0.8) has no public option for them; its configuration's backend parameters become the config's `parameters`."""
    for model in triton._model_manager.models:
        if model.model_name == model_name:
            model._get_triton_model_config().backend_parameters.update(parameters)
            return
    raise EdgeLwdetrError(f"PyTriton did not bind the model {model_name}; report this with the PyTriton version")


def _library_path_for_stub() -> None:
    """Triton's Python-backend stub links libpython3.X.so.1.0 through the system loader; a pyenv or conda Python
    keeps it in its own LIBDIR, which the loader does not search. Put it first for the server we start."""
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p and p != libdir]
        os.environ["LD_LIBRARY_PATH"] = ":".join([libdir, *paths])


def serve(open_one: Callable[[], Backend], options: ServeOptions, log: Callable[[str], None] = print) -> None:
    """Serve until SIGINT/SIGTERM, then let Triton finish the requests in flight and return (exit status 0)."""
    try:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig, TritonLifecyclePolicy
    except ImportError as error:
        raise EdgeLwdetrError(
            f"edge-lwdetr serve needs nvidia-pytriton ({error}); it pins numpy<2, so install it in its own "
            "environment: `bash install.sh` makes .venv-serve, then run .venv-serve/bin/edge-lwdetr serve"
        ) from None
    _library_path_for_stub()
    logging.getLogger("pytriton").setLevel(logging.WARNING)
    backends = [open_one() for _ in range(options.instances)]
    config = TritonConfig(
        http_address=options.address, http_port=options.http_port,
        grpc_address=options.address, grpc_port=options.grpc_port,
        metrics_address=options.address, metrics_port=options.metrics_port,
        exit_timeout_secs=30,
    )
    # The batch dimension stays at --max-batch 1 (requests keep their shape); the batcher then forms batches of one.
    model_config = ModelConfig(
        batching=True,
        max_batch_size=options.max_batch,
        batcher=DynamicBatcher(max_queue_delay_microseconds=options.max_queue_delay_us),
    )
    stop = threading.Event()
    # The server starts in run(), after bind(): the model loads with the parameters _add_parameters gives it.
    later = TritonLifecyclePolicy(launch_triton_on_startup=False)
    with stop_sets(stop), Triton(config=config, triton_lifecycle_policy=later) as triton:
        triton.bind(
            model_name=options.model_name,
            infer_func=[infer_function(b, options.conf) for b in backends],
            inputs=[
                Tensor(name=protocol.IMAGE, dtype=bytes, shape=(1,)),
                Tensor(name=protocol.SIZE, dtype=np.int32, shape=(2,), optional=True),
            ],
            outputs=[
                Tensor(name=protocol.BOXES, dtype=np.float32, shape=(-1, 4)),
                Tensor(name=protocol.SCORES, dtype=np.float32, shape=(-1,)),
                Tensor(name=protocol.LABELS, dtype=np.int64, shape=(-1,)),
                Tensor(name=protocol.COUNT, dtype=np.int32, shape=(1,)),
            ],
            config=model_config,
            strict=True,
        )
        _add_parameters(triton, options.model_name, model_info(backends[0]).parameters())
        triton.run()
        log(
            f"serving {options.model_name} ({backends[0].name}, {options.instances} instance(s), max batch "
            f"{options.max_batch}) on http://{options.address}:{options.http_port}, grpc {options.grpc_port}, "
            f"metrics {options.metrics_port}"
        )
        while not stop.wait(1.0):
            if not triton.is_alive():
                raise EdgeLwdetrError("the Triton server stopped unexpectedly; its log above says why")
        log("stopping: finishing the requests in flight")
    for backend in backends:
        backend.close()
