"""The TensorRT backend: a serialized engine run with pycuda (the only runtime module importing tensorrt/pycuda).

Pinned host buffers, device buffers allocated once, one stream, `set_tensor_address` + `execute_async_v3`,
asynchronous copies, CUDA events around each stage (H2D, infer, D2H), and optionally the execution captured once
as a CUDA graph and replayed (less launch overhead; how trtexec --useCudaGraph measures). The engine's sidecar must
match the running TensorRT and GPU.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from edge_lwdetr.device import gpu_info
from edge_lwdetr.engine.sidecar import check_sidecar, read_sidecar
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.labels import default_id2label


class CudaGraph:
    """One captured execution of a TensorRT context, replayed with cuGraphLaunch (CUDA driver API via ctypes)."""

    _CAPTURE_THREAD_LOCAL = 1  # CU_STREAM_CAPTURE_MODE_THREAD_LOCAL: other threads' CUDA calls stay legal

    def __init__(self, stream_handle: int, enqueue):
        self._driver = ctypes.CDLL("libcuda.so.1")
        self._stream = ctypes.c_void_p(stream_handle)
        self._exec = ctypes.c_void_p()
        graph = ctypes.c_void_p()
        self._check(self._driver.cuStreamBeginCapture_v2(self._stream, self._CAPTURE_THREAD_LOCAL), "begin capture")
        enqueue()
        self._check(self._driver.cuStreamEndCapture(self._stream, ctypes.byref(graph)), "end capture")
        try:
            self._check(self._driver.cuGraphInstantiateWithFlags(ctypes.byref(self._exec), graph, ctypes.c_ulonglong(0)), "instantiate")
        finally:
            self._driver.cuGraphDestroy(graph)

    @staticmethod
    def _check(status: int, step: str) -> None:
        if status != 0:
            raise RuntimeError(f"CUDA graph {step} failed (CUresult {status})")

    def launch(self) -> None:
        self._check(self._driver.cuGraphLaunch(self._exec, self._stream), "launch")

    def close(self) -> None:
        self._driver.cuGraphExecDestroy(self._exec)


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, engine_path: Path, plugin: Path | None = None, cuda_graph: bool = False):
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
        self._use_cuda_graph, self._graph = cuda_graph, None
        self.stage_ms: dict[str, float] = {}
        if not self.id2label:
            self.id2label = default_id2label(91)

    def _allocate(self, batch: int) -> None:
        """Pinned host and device buffers for `batch`, bound to the context once (not per frame)."""
        trt = self._trt
        if self._graph is not None:  # captured with the old buffers
            self._graph.close()
            self._graph = None
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
        if self._graph is not None:
            self._graph.launch()
        else:
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
        if self._use_cuda_graph and self._graph is None:
            # Captured after a first plain execution, which does TensorRT's shape-dependent setup.
            try:
                self._graph = CudaGraph(stream.handle, lambda: self.context.execute_async_v3(stream.handle))
            except RuntimeError as error:
                print(f"edge-lwdetr: CUDA graph capture failed ({error}); executing without it")
                self._use_cuda_graph = False
        return self._buffers["logits"][0].copy(), self._buffers["pred_boxes"][0].copy()

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
        self._buffers.clear()
        self._context_handle.pop()
