"""The TensorRT backend: a serialized engine run with pycuda (the only runtime module importing tensorrt/pycuda).

Pinned host buffers, device buffers allocated once, one stream, `set_tensor_address` + `execute_async_v3`,
asynchronous copies, and CUDA events around each stage (H2D, infer, D2H). The engine's sidecar must match the
running TensorRT and GPU.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from edge_lwdetr.device import gpu_info
from edge_lwdetr.engine.sidecar import check_sidecar, read_sidecar
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.labels import default_id2label


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, engine_path: Path, plugin: Path | None = None):
        try:
            import pycuda.driver as cuda
            import tensorrt as trt
        except ImportError as error:
            raise EdgeLwdetrError(
                f"the TensorRT backend needs tensorrt and pycuda ({error.name} is missing): on a Jetson both come with "
                "JetPack (see docker/); elsewhere use --backend onnxruntime"
            ) from None
        sidecar = read_sidecar(engine_path)
        device = gpu_info()
        check_sidecar(sidecar, trt.__version__, device.get("name", "?"), device.get("compute_capability", "?"))
        if sidecar.get("msda") == "plugin":
            library = plugin or Path(sidecar.get("plugin", ""))
            if not library.is_file():
                raise EdgeLwdetrError(f"the engine needs the MSDA plugin library: pass --plugin (not found: {library})")
            ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
        logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(logger, "")

        cuda.init()
        self._cuda = cuda
        self._context_handle = cuda.Device(0).retain_primary_context()
        self._context_handle.push()
        runtime = trt.Runtime(logger)
        # A version-compatible engine carries the plugin's code, which the runtime must be allowed to load.
        runtime.engine_host_code_allowed = bool(sidecar.get("build_options", {}).get("version_compatible"))
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise EdgeLwdetrError(f"TensorRT could not load {engine_path}: rebuild it with `edge-lwdetr build`")
        self.context = self.engine.create_execution_context()
        self.stream = cuda.Stream()
        self.events = [cuda.Event() for _ in range(4)]
        self.image_size = int(sidecar["image_size"])
        self.variant = sidecar.get("variant", "custom")
        labels = sidecar.get("id2label") or {}
        self.id2label = {int(k): v for k, v in labels.items()}
        self.device = device.get("soc") or device.get("name", "GPU")
        self._trt = trt
        self._buffers: dict[str, tuple[np.ndarray, object]] = {}
        self._batch = 0
        self.stage_ms: dict[str, float] = {}
        if not self.id2label:
            self.id2label = default_id2label(91)

    def _allocate(self, batch: int) -> None:
        """Pinned host and device buffers for `batch`, bound to the context once (not per frame)."""
        trt = self._trt
        self.context.set_input_shape("images", (batch, 3, self.image_size, self.image_size))
        self._buffers.clear()
        for index in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(index)
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            host = self._cuda.pagelocked_empty(shape, dtype)
            device = self._cuda.mem_alloc(host.nbytes)
            self.context.set_tensor_address(name, int(device))
            self._buffers[name] = (host, device)
        self._batch = batch

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if images.shape[0] != self._batch:
            self._allocate(images.shape[0])
        cuda, stream, (start, copied_in, computed, copied_out) = self._cuda, self.stream, self.events
        host, device = self._buffers["images"]
        np.copyto(host, images)
        start.record(stream)
        cuda.memcpy_htod_async(device, host, stream)
        copied_in.record(stream)
        self.context.execute_async_v3(stream.handle)
        computed.record(stream)
        for name in ("logits", "pred_boxes"):
            out_host, out_device = self._buffers[name]
            cuda.memcpy_dtoh_async(out_host, out_device, stream)
        copied_out.record(stream)
        stream.synchronize()
        self.stage_ms = {
            "h2d": start.time_till(copied_in),
            "infer": copied_in.time_till(computed),
            "d2h": computed.time_till(copied_out),
        }
        return self._buffers["logits"][0].copy(), self._buffers["pred_boxes"][0].copy()

    def close(self) -> None:
        self._buffers.clear()
        self._context_handle.pop()
