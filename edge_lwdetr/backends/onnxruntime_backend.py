"""The ONNX Runtime backend: any edge-lwdetr ONNX (native or plugin form) on the CPU, or the CUDA provider."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_lwdetr.device import gpu_info
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.labels import default_id2label
from edge_lwdetr.processing import INPUT_FORMATS

INPUTS, OUTPUTS = ("images",), ("logits", "pred_boxes")  # the graph contract of `edge-lwdetr export`
WEIGHTED_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "LayerNormalization", "BatchNormalization"}


def check_graph(model, path: Path) -> None:
    """Refuse graphs that are not an LW-DETR export (another model's I/O) or whose weights are not finite."""
    from onnx import numpy_helper

    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs[:1] != list(INPUTS) or not set(OUTPUTS) <= set(outputs):
        raise EdgeLwdetrError(
            f"{path} is not an LW-DETR graph from `edge-lwdetr export`: it has inputs {inputs[:4]} and outputs "
            f"{outputs[:4]}, expected images -> logits, pred_boxes"
        )
    # -inf is a legitimate constant (the mask of border proposals); in a weight it, like NaN anywhere, is corruption.
    weights = {name for node in model.graph.node if node.op_type in WEIGHTED_OPS for name in node.input[1:]}
    for initializer in model.graph.initializer:
        if initializer.data_type in (1, 10, 11, 16):  # float, float16, double, bfloat16
            values = numpy_helper.to_array(initializer)  # isnan/isfinite take float16 and float64 as they are
            if np.isnan(values).any() or (initializer.name in weights and not np.isfinite(values).all()):
                raise EdgeLwdetrError(
                    f"{path}: initializer {initializer.name} holds NaN or infinite values; re-export the model "
                    "from finite weights"
                )

def optimization_level(model):
    """ONNX Runtime's graph optimisation level for `model`: all, except for an INT8 graph, whose Q/DQ run as written
    (fake quantization, what TensorRT's INT8 layers compute): the extended optimisations fuse its FP32 QuantizeLinear
    into ORT's integer kernels, which refuse the per-channel scales ModelOpt gives a constant-folded activation."""
    import onnxruntime as ort

    if any(node.op_type == "QuantizeLinear" for node in model.graph.node):
        return ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.GraphOptimizationLevel.ORT_ENABLE_ALL


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        from edge_lwdetr.artefacts import graph_metadata, load_onnx
        from edge_lwdetr.msda_onnx import with_reference_functions

        model = load_onnx(Path(path))
        check_graph(model, Path(path))
        meta = graph_metadata(model)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = optimization_level(model)
        self.threads = threads or 0  # 0: ONNX Runtime's default, one per physical core
        # onnxruntime-gpu lists the CUDA provider even on machines without a GPU, then fails noisily: ask the driver.
        wanted = ("CUDAExecutionProvider", "CPUExecutionProvider") if gpu_info() else ("CPUExecutionProvider",)
        providers = [p for p in wanted if p in ort.get_available_providers()]
        # Plugin nodes run on the CPU through the reference body (plugins/README.md).
        self.session = ort.InferenceSession(with_reference_functions(model).SerializeToString(), options, providers=providers)
        self.device = self.session.get_providers()[0]
        shape = self.session.get_inputs()[0].shape
        self.input_format = meta.input_format
        self.image_size = meta.image_size or int(shape[2])  # square: axis 2 is a side in NCHW and NHWC alike
        self.batch = shape[0] if isinstance(shape[0], int) else None  # None: dynamic
        self.variant, self.num_select = meta.variant, meta.num_select
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        self.id2label = meta.id2label or default_id2label(int(outputs["logits"][2]))
        self.stage_ms: dict[str, float] = {}

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        start = time.perf_counter()
        logits, boxes = self.session.run(["logits", "pred_boxes"], {"images": np.ascontiguousarray(images, INPUT_FORMATS[self.input_format])})
        self.stage_ms = {"infer": (time.perf_counter() - start) * 1000}
        return logits, boxes

    def close(self) -> None:
        pass
