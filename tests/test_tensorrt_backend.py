"""Our reaction to TensorRT and CUDA reporting failure, tested with stand-ins.

These stand-ins return False (or a failing status) where TensorRT's execution context or the CUDA driver would.
They test edge-lwdetr's error handling and clean-up only: that a failed call raises instead of handing back the
previous frame, that a failed CUDA-graph capture is ended and dropped, that resources are released once. Nothing
here says TensorRT behaves this way; tests/test_tensorrt_gpu.py runs the real thing where a GPU is.
"""

import ctypes
import types

import numpy as np
import pytest

from edge_lwdetr.backends.tensorrt_backend import CaptureFailed, CudaGraph, TensorRTBackend, plugin_to_load
from edge_lwdetr.errors import EdgeLwdetrError

SIZE = 32


class StandInContext:
    """Returns what it is told to from the calls whose bool result the backend must check."""

    def __init__(self):
        self.results = {"set_input_shape": True, "set_tensor_address": True, "execute_async_v3": True}
        self.shapes = {}

    def set_input_shape(self, name, shape):
        self.shapes["images"] = tuple(shape)
        self.shapes["logits"], self.shapes["pred_boxes"] = (shape[0], 5, 3), (shape[0], 5, 4)
        return self.results["set_input_shape"]

    def get_tensor_shape(self, name):
        return self.shapes[name]

    def set_tensor_address(self, name, address):
        return self.results["set_tensor_address"]

    def execute_async_v3(self, stream):
        return self.results["execute_async_v3"]


class StandInEngine:
    names = ("images", "logits", "pred_boxes")
    num_io_tensors = 3

    def get_tensor_name(self, index):
        return self.names[index]

    def get_tensor_dtype(self, name):
        return np.float32


class StandInEvent:
    def record(self, stream):
        pass

    def time_till(self, other):
        return 0.0


def stand_in_cuda(device_outputs: dict):
    """pycuda.driver's calls the backend makes; a device-to-host copy writes `device_outputs`' current value."""
    cuda = types.SimpleNamespace()
    cuda.pagelocked_empty = lambda shape, dtype: np.zeros(shape, dtype)
    allocations = iter(range(1 << 20, 1 << 30, 1 << 12))
    cuda.mem_alloc = lambda nbytes: next(allocations)
    cuda.memcpy_htod_async = lambda device, host, stream: None
    cuda.memcpy_dtoh_async = lambda host, device, stream: host.fill(device_outputs["value"])
    return cuda


def backend_with(context: StandInContext, device_outputs: dict, input_format: str = "float") -> TensorRTBackend:
    backend = object.__new__(TensorRTBackend)
    backend._trt = types.SimpleNamespace(nptype=lambda dtype: dtype)
    backend._cuda = stand_in_cuda(device_outputs)
    backend.engine, backend.context = StandInEngine(), context
    backend.stream = types.SimpleNamespace(handle=7, synchronize=lambda: None)
    backend.events = [StandInEvent() for _ in range(4)]
    backend._input, backend._outputs = "images", ("logits", "pred_boxes")
    backend.image_size, backend._batch, backend._buffers = SIZE, 0, {}
    backend.input_format = input_format
    backend._graph, backend._use_cuda_graph, backend._context_handle = None, False, None
    return backend


def frame(batch: int = 1) -> np.ndarray:
    return np.zeros((batch, 3, SIZE, SIZE), np.float32)


def test_uint8_engine_is_asked_for_nhwc_frames():
    """An `--input-format uint8` engine: set_input_shape gets [B, S, S, 3], the frames are copied as they are."""
    context = StandInContext()
    backend = backend_with(context, {"value": 1.0}, "uint8")
    backend.infer(np.zeros((2, SIZE, SIZE, 3), np.uint8))
    assert context.shapes["images"] == (2, SIZE, SIZE, 3)


def test_false_from_execute_raises_instead_of_returning_the_previous_frame():
    context, device = StandInContext(), {"value": 1.0}
    backend = backend_with(context, device)
    logits, _ = backend.infer(frame())
    assert logits.shape == (1, 5, 3) and (logits == 1.0).all()
    context.results["execute_async_v3"] = False
    device["value"] = 2.0
    with pytest.raises(EdgeLwdetrError, match="execute_async_v3 failed: this frame was not computed"):
        backend.infer(frame())
    context.results["execute_async_v3"] = True
    assert (backend.infer(frame())[0] == 2.0).all()


def test_false_from_set_input_shape_or_set_tensor_address_raises_and_is_retried():
    context = StandInContext()
    backend = backend_with(context, {"value": 0.0})
    context.results["set_input_shape"] = False
    with pytest.raises(EdgeLwdetrError, match=r"set_input_shape\(images, batch 4\) failed.*--batch-profile"):
        backend.infer(frame(4))
    context.results["set_input_shape"] = True
    context.results["set_tensor_address"] = False
    with pytest.raises(EdgeLwdetrError, match=r"set_tensor_address\(images\) failed"):
        backend.infer(frame(4))
    context.results["set_tensor_address"] = True
    assert backend.infer(frame(4))[1].shape == (4, 5, 4)  # the failed allocations did not count as done


class StandInDriver:
    """The CUDA driver calls CudaGraph makes, recorded; each returns its configured CUresult (0: success)."""

    def __init__(self, **status):
        self.calls: list[str] = []
        self.status = status

    def __getattr__(self, name):
        def call(*args):
            self.calls.append(name)
            if name == "cuStreamEndCapture":
                ctypes.cast(args[1], ctypes.POINTER(ctypes.c_void_p))[0] = 0x1234  # the captured graph
            return self.status.get(name, 0)

        return call


def test_failed_enqueue_during_capture_ends_and_drops_the_capture():
    driver = StandInDriver()
    with pytest.raises(CaptureFailed, match="returned False during capture"):
        CudaGraph(7, lambda: False, driver=driver)
    assert driver.calls == ["cuStreamBeginCapture_v2", "cuStreamEndCapture", "cuGraphDestroy"]


def test_enqueue_that_raises_still_ends_the_capture():
    driver = StandInDriver()

    def enqueue():
        raise RuntimeError("binding error")

    with pytest.raises(RuntimeError):
        CudaGraph(7, enqueue, driver=driver)
    assert driver.calls == ["cuStreamBeginCapture_v2", "cuStreamEndCapture", "cuGraphDestroy"]


def test_invalidated_capture_is_not_instantiated():
    driver = StandInDriver(cuStreamEndCapture=901)  # CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
    with pytest.raises(CaptureFailed, match="end capture failed"):
        CudaGraph(7, lambda: True, driver=driver)
    assert "cuGraphInstantiateWithFlags" not in driver.calls


def test_graph_is_destroyed_once():
    driver = StandInDriver()
    graph = CudaGraph(7, lambda: True, driver=driver)
    assert driver.calls[-2:] == ["cuGraphInstantiateWithFlags", "cuGraphDestroy"]
    graph.launch()
    graph.close()
    graph.close()
    assert driver.calls.count("cuGraphExecDestroy") == 1
    with pytest.raises(EdgeLwdetrError, match="closed"):
        graph.launch()


def test_close_releases_once_and_failed_open_pops_the_context():
    """A failed open releases what it made and pops the CUDA context it pushed; close() twice pops once."""
    events: list[str] = []
    primary = types.SimpleNamespace(push=lambda: events.append("push"), pop=lambda: events.append("pop"))

    def failing_open():
        raise EdgeLwdetrError("could not load other_tool.engine")

    backend = backend_with(StandInContext(), {"value": 0.0})
    backend._context_handle = primary
    with pytest.raises(EdgeLwdetrError, match="could not load other_tool.engine"):
        backend._open_in_context(failing_open)
    assert events == ["push", "pop"] and backend.engine is None and backend.context is None

    backend = backend_with(StandInContext(), {"value": 0.0})
    backend._context_handle = primary
    backend.close()
    backend.close()
    assert events == ["push", "pop", "pop"] and backend.engine is None and backend.context is None


def test_engine_carrying_its_plugin_refuses_a_second_copy(tmp_path):
    engine = tmp_path / "vc.engine"
    sidecar = {"msda": "plugin", "plugin_serialized": True, "build_options": {"version_compatible": True}}
    with pytest.raises(EdgeLwdetrError, match="carries its MSDA plugin library.*drop --plugin"):
        plugin_to_load(engine, sidecar, tmp_path / "libedge_lwdetr_plugins.so")
    assert plugin_to_load(engine, sidecar, None) is None  # TensorRT loads the plan's own copy
