"""The TensorRT backend: a serialized engine run with pycuda (the only runtime module importing tensorrt/pycuda).

Pinned host buffers, device buffers allocated once, one stream, `set_tensor_address` + `execute_async_v3`,
asynchronous copies, CUDA events around each stage (H2D, infer, D2H), and optionally the execution captured once
as a CUDA graph and replayed (less launch overhead; how trtexec --useCudaGraph measures). The engine's sidecar must
match the running TensorRT and GPU; an engine without one (trtexec, polygraphy) runs with what the engine itself
and its source ONNX say.

Every TensorRT call that reports failure by its result is checked: a failed frame raises, it never hands back the
previous frame's outputs (polygraphy's TrtRunner does the same).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge_lwdetr.device import gpu_info
from edge_lwdetr.engine.plugin import plugin_library
from edge_lwdetr.engine.sidecar import IoTensor, check_sidecar, metadata_without_sidecar, read_sidecar
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.labels import default_id2label
from edge_lwdetr.processing import input_shape


class CaptureFailed(RuntimeError):
    """The engine could not be captured into a CUDA graph; plain execution still works."""


class CudaGraph:
    """One captured execution of a TensorRT context, replayed with cuGraphLaunch (CUDA driver API via ctypes).

    Capture follows trtexec (samples/common/sampleInference.cpp, sampleDevice.h): the enqueue's result is checked
    inside the capture, because TensorRT "may return false if the current CUDA graph capture fails"; on failure the
    capture is ended, whatever graph it produced is destroyed, the CUDA error it left is cleared, and nothing is
    instantiated.
    """

    _CAPTURE_THREAD_LOCAL = 1  # CU_STREAM_CAPTURE_MODE_THREAD_LOCAL: other threads' CUDA calls stay legal

    def __init__(self, stream_handle: int, enqueue: Callable[[], bool], driver: Any = None):
        """`driver`: the CUDA driver library (libcuda.so.1 unless given)."""
        self._driver = driver if driver is not None else ctypes.CDLL("libcuda.so.1")
        self._stream = ctypes.c_void_p(stream_handle)
        self._exec: ctypes.c_void_p | None = None
        graph = ctypes.c_void_p()
        self._check(self._driver.cuStreamBeginCapture_v2(self._stream, self._CAPTURE_THREAD_LOCAL), "begin capture")
        try:
            try:
                enqueued = enqueue()
            finally:
                # Always end the capture: a stream left capturing makes every later call on it fail.
                ended = self._driver.cuStreamEndCapture(self._stream, ctypes.byref(graph))
            if not enqueued:
                _clear_cuda_runtime_error()
                raise CaptureFailed(
                    "execute_async_v3 returned False during capture (an operation not allowed in a CUDA graph)"
                )
            self._check(ended, "end capture")
            executable = ctypes.c_void_p()
            self._check(
                self._driver.cuGraphInstantiateWithFlags(ctypes.byref(executable), graph, ctypes.c_ulonglong(0)),
                "instantiate",
            )
            self._exec = executable
        finally:
            if graph.value:  # a failed capture may still return a graph, which must not be used (sampleDevice.h)
                self._driver.cuGraphDestroy(graph)

    @staticmethod
    def _check(status: int, step: str) -> None:
        if status != 0:
            raise CaptureFailed(f"CUDA graph {step} failed (CUresult {status})")

    def launch(self) -> None:
        if self._exec is None:
            raise EdgeLwdetrError("internal error: launching a CUDA graph that was closed")
        status = self._driver.cuGraphLaunch(self._exec, self._stream)
        if status != 0:
            raise EdgeLwdetrError(f"CUDA graph launch failed (CUresult {status}): run with --no-cuda-graph to compare")

    def close(self) -> None:
        """Destroys the executable graph once; later calls do nothing."""
        if self._exec is not None:
            self._driver.cuGraphExecDestroy(self._exec)
            self._exec = None


def _clear_cuda_runtime_error() -> None:
    """cudaGetLastError() in the CUDA runtime already loaded in the process (TensorRT's), as trtexec does after a
    failed capture: the failed capture leaves an error there that the next runtime call would otherwise report."""
    for name in ("libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"):
        try:
            runtime = ctypes.CDLL(name, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        except OSError:
            continue  # not the one loaded in this process
        runtime.cudaGetLastError()
        return


def plugin_to_load(engine_path: Path, sidecar: dict | None, plugin: Path | None) -> Path | None:
    """The MSDA plugin library to load before deserializing `engine_path`, or None (no plugin, or the plan carries
    its own: a version-compatible plan built with our plugin, which TensorRT loads from the plan; trtexec's README:
    with --setPluginsToSerialize no --dynamicPlugins is needed to run it)."""
    serialized = bool(sidecar and sidecar.get("plugin_serialized"))
    if serialized and plugin is not None:
        # TensorRT registers the plan's copy when deserializing and refuses it if the creator exists already.
        raise EdgeLwdetrError(
            f"{engine_path} carries its MSDA plugin library (built with --version-compatible): drop --plugin"
        )
    if plugin is not None:
        return plugin_library(plugin)
    if sidecar is not None and sidecar.get("msda") == "plugin" and not serialized:
        return plugin_library(None, sidecar.get("plugin"))
    return None


def _check(ok: bool, step: str, fix: str) -> None:
    """TensorRT's bool results (set_input_shape, set_tensor_address, execute_async_v3)."""
    if not ok:
        raise EdgeLwdetrError(f"TensorRT {step} failed: {fix} (TensorRT's log above says why)")


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
        self._trt, self._cuda = trt, cuda
        self._graph: CudaGraph | None = None
        self._buffers: dict[str, tuple[np.ndarray, Any]] = {}
        self._context_handle = None
        self.engine = self.context = None
        sidecar = read_sidecar(engine_path)
        device = gpu_info()
        if sidecar is not None:
            check_sidecar(sidecar, trt.__version__, device.get("name", "?"), device.get("compute_capability", "?"))
        library = plugin_to_load(engine_path, sidecar, plugin)
        if library is not None:
            ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)  # static registration (plugins/msda/README.md)
        logger = trt.Logger(trt.Logger.WARNING)
        if not trt.init_libnvinfer_plugins(logger, ""):
            raise EdgeLwdetrError(
                f"TensorRT {trt.__version__} could not initialise libnvinfer_plugin (init_libnvinfer_plugins)"
            )

        cuda.init()
        self._context_handle = cuda.Device(0).retain_primary_context()
        self._open_in_context(lambda: self._open(engine_path, sidecar, logger, device, cuda_graph))

    def _open_in_context(self, open_engine: Callable[[], None]) -> None:
        """open_engine() with the CUDA context pushed; on any failure, release what it made and pop the context."""
        self._context_handle.push()
        try:
            open_engine()
        except BaseException:
            self.close()
            raise

    def _open(self, engine_path: Path, sidecar: dict | None, logger, device: dict[str, str], cuda_graph: bool) -> None:
        trt, cuda = self._trt, self._cuda
        runtime = trt.Runtime(logger)
        version_compatible = bool(sidecar and sidecar.get("build_options", {}).get("version_compatible"))
        # A version-compatible plan embeds the lean runtime (and our plugin library): host code from the plan,
        # which the runtime runs only when allowed. Allowed for engines edge-lwdetr built (sidecar says so).
        runtime.engine_host_code_allowed = version_compatible
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            hint = (
                "rebuild it with `edge-lwdetr build`"
                if sidecar is not None
                else "an engine from another tool must come from this TensorRT version and GPU and may need --plugin; "
                "a version-compatible one runs only when built by `edge-lwdetr build --version-compatible` (its "
                "embedded host code is trusted only then)"
            )
            raise EdgeLwdetrError(f"TensorRT {trt.__version__} could not load {engine_path}: {hint}")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise EdgeLwdetrError(
                f"TensorRT could not create an execution context for {engine_path} (out of GPU memory?)"
            )
        meta = (
            sidecar
            if sidecar is not None
            else metadata_without_sidecar(engine_path, self._io_tensors(), _onnx_metadata(engine_path))
        )
        self._input = meta.get("input", "images")
        outputs = meta.get("outputs", {"logits": "logits", "boxes": "pred_boxes"})
        self._outputs = (outputs["logits"], outputs["boxes"])
        self.batch, self.max_batch = batch_range(next(t for t in self._io_tensors() if t.name == self._input))
        self.stream = cuda.Stream()
        self.events = [cuda.Event() for _ in range(4)]
        self.image_size = int(meta["image_size"])
        self.input_format = meta.get("input_format", "float")  # sidecars written before the option: float
        self.variant = meta.get("variant") or "custom"
        labels = meta.get("id2label") or {}
        self.id2label = {int(k): v for k, v in labels.items()} or default_id2label(91)
        self.device = device.get("soc") or device.get("name", "GPU")
        self._batch = 0
        self._use_cuda_graph = cuda_graph
        self.stage_ms: dict[str, float] = {}

    def _io_tensors(self) -> list[IoTensor]:
        trt, engine = self._trt, self.engine
        tensors = []
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            profile_max = (
                tuple(engine.get_tensor_profile_shape(name, 0)[2])
                if is_input and engine.num_optimization_profiles
                else None
            )
            tensors.append(IoTensor(name, is_input, tuple(engine.get_tensor_shape(name)), profile_max))
        return tensors

    def _allocate(self, batch: int) -> None:
        """Pinned host and device buffers for `batch`, bound to the context once (not per frame)."""
        trt = self._trt
        if self._graph is not None:  # captured with the old buffers
            self._graph.close()
            self._graph = None
        self._batch = 0  # until every step below has succeeded
        _check(
            self.context.set_input_shape(self._input, input_shape(batch, self.image_size, self.input_format)),
            f"set_input_shape({self._input}, batch {batch})",
            "the batch is outside the engine's optimization profile; rebuild with a wider --batch-profile",
        )
        self._buffers.clear()
        for index in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(index)
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            host = self._cuda.pagelocked_empty(shape, dtype)
            device = self._cuda.mem_alloc(max(host.nbytes, 1))
            _check(
                self.context.set_tensor_address(name, int(device)),
                f"set_tensor_address({name})",
                "the engine rejected the buffer",
            )
            self._buffers[name] = (host, device)
        self._batch = batch

    def _enqueue(self) -> bool:
        return self.context.execute_async_v3(self.stream.handle)

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if images.shape[0] != self._batch:
            self._allocate(images.shape[0])
        cuda, stream, (start, copied_in, computed, copied_out) = self._cuda, self.stream, self.events
        host, device = self._buffers[self._input]
        np.copyto(host, images)
        start.record(stream)
        cuda.memcpy_htod_async(device, host, stream)
        copied_in.record(stream)
        if self._graph is not None:
            self._graph.launch()
        else:
            _check(self._enqueue(), "execute_async_v3", "this frame was not computed")
        computed.record(stream)
        for name in self._outputs:
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
            # Captured after a first plain execution, which does TensorRT's shape-dependent setup (trtexec does
            # the same before beginning the capture).
            try:
                self._graph = CudaGraph(stream.handle, self._enqueue)
            except CaptureFailed as error:
                print(f"edge-lwdetr: CUDA graph capture failed ({error}); executing without a CUDA graph")
                self._use_cuda_graph = False
        return self._buffers[self._outputs[0]][0].copy(), self._buffers[self._outputs[1]][0].copy()

    def close(self) -> None:
        """Releases the graph, buffers, context and engine, then pops the CUDA context; a second call does nothing."""
        if self._graph is not None:
            self._graph.close()
            self._graph = None
        self._buffers.clear()
        # TensorRT objects go while their CUDA context is still current.
        self.context = None
        self.engine = None
        if self._context_handle is not None:
            self._context_handle.pop()
            self._context_handle = None


def batch_range(images: IoTensor) -> tuple[int | None, int | None]:
    """(static batch or None, largest batch) of the engine's input: a dynamic batch ranges up to optimization
    profile 0's largest (how many frames the streaming runtime may batch)."""
    static = images.shape[0] if images.shape[0] > 0 else None
    return static, static or (int(images.profile_max[0]) if images.profile_max else None)


def _onnx_metadata(engine_path: Path) -> dict[str, str]:
    """metadata_props of the ONNX an engine was built from, when it lies beside it (same stem, .onnx)."""
    source = engine_path.with_suffix(".onnx")
    if not source.is_file():
        return {}
    from edge_lwdetr.artefacts import load_onnx, properties

    return properties(load_onnx(source))
