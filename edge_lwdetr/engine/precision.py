"""Explicit precision in the graph, as TensorRT 11 requires and 10.x strongly-typed builds honour.

FP16: NVIDIA ModelOpt AutoCast. INT8: ModelOpt ONNX PTQ (explicit Q/DQ), calibrated with ONNX Runtime on the CPU,
the rest in FP16 except QuantizeLinear (Q_FP32). Both run on the native export before the MSDA rewrite, keeping in FP32: LayerNorm, softmax, the
sine position embedding, the two-stage score/top-k path, the reference-box and sampling-location arithmetic
(including the box `exp`), and MSDA itself (whose value may be FP16: the plugin accumulates in FP32).

ModelOpt treats any non-standard node as a TensorRT plugin and asks TensorRT about it, so MSDA nodes are inlined
into standard ops (named `msda<i>/...`) for ModelOpt and collapsed back into single nodes afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import TensorProto

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.msda_onnx import NATIVE, default_opset, form_of, msda_nodes, reference_function

FP32_OP_TYPES = ["LayerNormalization", "Softmax", "Sin", "Cos", "Exp", "TopK", "ReduceMax"]
# INT8 graphs: QuantizeLinear reads FP32 (its scale FP32; a Cast before it where the producer is FP16), while each
# DequantizeLinear keeps an FP16 scale and feeds its FP16 MatMul/Conv directly, the Q/DQ -> layer pattern TensorRT
# fuses. Why: ONNX Runtime's CPU QuantizeLinear truncates FP16 inputs toward zero instead of rounding to nearest
# (microsoft/onnxruntime#18576, fixed upstream by PR 32452, still in 1.24), which shrank every INT8 tensor by half a
# step on average and cost the bundled model 0.6 AP in ONNX Runtime; TensorRT quantizes by "clamping and rounding"
# (its "Working with Quantized Types" guide) whatever the input type.
Q_FP32 = ["QuantizeLinear"]
# Layers whose outputs end the FP32 regions: the linear layers that run in FP16 (or INT8).
_LINEAR = {"MatMul", "Gemm", "Conv"}


@dataclass
class MsdaCall:
    """One inlined MSDA: the tensors it took (in node input order) and the one it produced."""

    inputs: list[str]
    output: str


def inline_msda(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[MsdaCall]]:
    """Each native MSDA call replaced by its function body; body nodes are named `msda<i>/<name>`."""
    functions = {(f.domain, f.name): f for f in model.functions}
    nodes, calls = [], []
    for node in model.graph.node:
        if form_of(node) is not NATIVE:
            nodes.append(node)
            continue
        function = functions[(node.domain, node.op_type)]
        prefix = f"msda{len(calls)}/"
        actual = dict(zip(function.input, node.input)) | dict(zip(function.output, node.output))
        for body_index, body in enumerate(function.node):
            inlined = copy.deepcopy(body)
            inlined.name = f"{prefix}{body.name or body.op_type}_{body_index}"
            inlined.input[:] = [actual.get(t, prefix + t) if t else t for t in body.input]
            inlined.output[:] = [actual.get(t, prefix + t) for t in body.output]
            nodes.append(inlined)
        calls.append(MsdaCall(list(node.input), node.output[0]))
    if not calls:
        raise EdgeLwdetrError("the graph has no native MSDA node: pass an `edge-lwdetr export --msda native` file")
    inlined_model = copy.deepcopy(model)
    del inlined_model.graph.node[:]
    inlined_model.graph.node.extend(nodes)
    del inlined_model.functions[:]
    opsets = [o for o in inlined_model.opset_import if o.domain != NATIVE.domain]
    del inlined_model.opset_import[:]
    inlined_model.opset_import.extend(opsets)
    return inlined_model, calls


def collapse_msda(model: onnx.ModelProto, calls: list[MsdaCall]) -> onnx.ModelProto:
    """Each `msda<i>/` region back to one native MSDA node.

    The node takes the tensors the region consumed. When the value arrives through a Cast from FP16 and the result
    leaves through a Cast to FP16, both Casts are dropped: the MSDA then runs on FP16 value (FP32 accumulation).
    """
    graph = model.graph
    producer = {out: n for n in graph.node for out in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for tensor in n.input:
            consumers.setdefault(tensor, []).append(n)

    initializers = {i.name: i for i in graph.initializer}
    dropped: set[int] = set()
    replacements: dict[int, onnx.NodeProto] = {}
    for index, call in enumerate(calls):
        prefix = f"msda{index}/"
        region = [n for n in graph.node if n.name.startswith(prefix)]
        inputs = _region_inputs(region, call, producer, initializers)
        output = call.output
        value_cast = producer.get(inputs[0])
        output_users = [u for u in consumers.get(output, []) if not u.name.startswith(prefix)]
        if (
            _is_cast(value_cast, TensorProto.FLOAT)
            and len(output_users) == 1
            and _is_cast(output_users[0], TensorProto.FLOAT16)
        ):
            inputs[0] = value_cast.input[0]
            output = output_users[0].output[0]
            dropped.add(id(output_users[0]))
        node = onnx.helper.make_node(NATIVE.op_type, inputs, [output], name=f"msda_{index}", domain=NATIVE.domain)
        replacements[id(region[0])] = node
        dropped.update(id(n) for n in region[1:])

    nodes = [replacements.get(id(n), n) for n in graph.node if id(n) not in dropped]
    collapsed = copy.deepcopy(model)
    del collapsed.graph.node[:]
    collapsed.graph.node.extend(nodes)
    # ModelOpt may raise the opset (Q/DQ needs 19): the body is built for the model's opset.
    num_levels = initializers[inputs[1]].dims[0]
    collapsed.functions.append(reference_function(NATIVE, num_levels, default_opset(model)))
    collapsed.opset_import.append(onnx.helper.make_opsetid(NATIVE.domain, 1))
    # Unused casts left behind (their only consumer was the region) are removed by the graph cleanup.
    cleaned = gs.import_onnx(collapsed)
    cleaned.cleanup().toposort()
    result = gs.export_onnx(cleaned)
    result.metadata_props.extend(model.metadata_props)
    return result


def _region_inputs(region, call: MsdaCall, producer, initializers) -> list[str]:
    """The five tensors a region consumes, in MSDA input order.

    ModelOpt may feed the region through Casts it inserted, and may duplicate the shared level constants under new
    names: Casts are followed back to the original inputs, and the int32 constants are told apart by their shape
    ([L, 2] spatial_shapes, [L] level_start_index).
    """
    produced = {out for n in region for out in n.output}
    found: dict[int, str] = {}
    for tensor in (t for n in region for t in n.input if t and t not in produced):
        origin = tensor
        while origin not in call.inputs and origin in producer and producer[origin].op_type == "Cast":
            origin = producer[origin].input[0]
        if origin in call.inputs:
            found.setdefault(call.inputs.index(origin), tensor)
        elif tensor in initializers and initializers[tensor].data_type == TensorProto.INT32:
            found.setdefault(1 if len(initializers[tensor].dims) == 2 else 2, tensor)
    if sorted(found) != [0, 1, 2, 3, 4]:
        raise EdgeLwdetrError(f"cannot find the inputs of MSDA region {region[0].name.split('/')[0]} after ModelOpt")
    return [found[slot] for slot in range(5)]


def _is_cast(node: onnx.NodeProto | None, to: int) -> bool:
    return node is not None and node.op_type == "Cast" and any(a.name == "to" and a.i == to for a in node.attribute)


def fp32_region(model: onnx.ModelProto, calls: list[MsdaCall]) -> list[str]:
    """Names of the nodes computing the boxes and sampling locations: upstream of `pred_boxes` and of each MSDA's
    locations, back to the linear layers. This is where FP16 rounding moves boxes (exp, products of sizes)."""
    producer = {out: n for n in model.graph.node for out in n.output}
    roots = ["pred_boxes"] + [call.inputs[3] for call in calls]
    keep: set[str] = set()
    stack = list(roots)
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in keep or node.op_type in _LINEAR:
            continue
        keep.add(node.name)
        stack.extend(node.input)
    return sorted(keep)


def precision_graph(
    native: onnx.ModelProto, precision: str, calibration: np.ndarray | None = None, fp16_nodes: list[str] | None = None
) -> onnx.ModelProto:
    """The native export with `precision` explicit in its types ('fp32', 'fp16' or 'int8'); MSDA stays native.

    int8: the linear nodes named in `fp16_nodes` (engine/sensitivity.py's choice) are left to FP16."""
    if precision == "fp32":
        return native
    if not msda_nodes(native) or any(form_of(n) is not NATIVE for n in msda_nodes(native)):
        raise EdgeLwdetrError("precision conversion needs the native export (`edge-lwdetr export --msda native`)")
    inlined, calls = inline_msda(native)
    exclude = [r"msda\d+/.*"] + [f"^{name}$" for name in fp32_region(inlined, calls)]
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "inlined.onnx"
        onnx.save(inlined, source)
        reference = _reference_inputs(inlined, Path(folder))
        if precision == "fp16":
            converted = _autocast_fp16(source, exclude, reference)
        elif precision == "int8":
            if calibration is None or len(calibration) == 0:
                raise EdgeLwdetrError("int8 needs calibration images: pass --calib-data DIR_OR_VIDEO")
            quantized = Path(folder) / "int8.onnx"
            quantize_int8(source, quantized, exclude + [f"^{name}$" for name in fp16_nodes or []], calibration)
            # ModelOpt's own FP16 pass ignores per-node exclusions: the non-INT8 rest gets ours, with QuantizeLinear
            # left in FP32 (see Q_FP32).
            converted = _autocast_fp16(quantized, exclude, reference, extra_fp32_op_types=Q_FP32)
        else:
            raise EdgeLwdetrError(f"unknown precision '{precision}': choose fp32, fp16 or int8")
    result = collapse_msda(converted, calls)
    # ModelOpt writes a new model without the export's metadata: the runtime needs its labels, size and input format.
    del result.metadata_props[:]
    result.metadata_props.extend(native.metadata_props)
    return result


def _modelopt():
    try:
        import modelopt.onnx  # noqa: F401
    except ImportError:
        raise EdgeLwdetrError(
            "FP16 and INT8 graphs need NVIDIA ModelOpt: pip install 'nvidia-modelopt[onnx]' (see the README for "
            "its ONNX Runtime build)"
        ) from None


def _reference_inputs(model: onnx.ModelProto, folder: Path) -> str | None:
    """For a uint8 graph (`export --input-format uint8`), an .npz of one random uint8 frame for AutoCast's reference
    run: polygraphy's random data (in [-1, 1]) does not fit uint8. A float graph gets polygraphy's, as before."""
    image = model.graph.input[0].type.tensor_type
    if image.elem_type != TensorProto.UINT8:
        return None
    shape = [d.dim_value or 1 for d in image.shape.dim]  # a symbolic batch: one frame
    path = folder / "reference_inputs.npz"
    np.savez(path, **{model.graph.input[0].name: np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)})
    return str(path)


def _autocast_fp16(
    source: Path, exclude: list[str], reference_inputs: str | None = None, extra_fp32_op_types: list[str] = ()
) -> onnx.ModelProto:
    _modelopt()
    from modelopt.onnx.autocast import convert_to_mixed_precision

    return convert_to_mixed_precision(
        onnx_path=str(source),
        low_precision_type="fp16",
        # The runtime feeds the images (float32, or uint8 frames) and reads FP32 outputs on every precision.
        keep_io_types=True,
        nodes_to_exclude=exclude,
        op_types_to_exclude=FP32_OP_TYPES + list(extra_fp32_op_types),
        calibration_data=reference_inputs,
    )


def quantize_int8(source: Path, output: Path, exclude: list[str], calibration: np.ndarray) -> None:
    _modelopt()
    from modelopt.onnx.quantization import quantize

    from edge_lwdetr.engine.calibration import CalibrationReader

    # Calibration runs in ONNX Runtime on the CPU: no GPU, no TensorRT needed. The GPU is hidden from it only for
    # the call: a one-process `build --precision int8` goes on to the TensorRT build, which needs the GPU.
    with gpu_hidden():
        quantize(
            onnx_path=str(source),
            quantize_mode="int8",
            # In the graph's input format (calibration.py); one image per inference, with a progress bar.
            calibration_data_reader=CalibrationReader({"images": calibration}),
            # Entropy (KL) calibration clips activation outliers that max calibration keeps: on the bundled model's
            # held-out split the INT8 graph loses 0.64 AP with it and 1.27 AP with max
            # (benchmarks/bundled_accuracy.py).
            calibration_method="entropy",
            calibration_eps=["cpu"],
            op_types_to_quantize=sorted(_LINEAR),
            nodes_to_exclude=exclude,
            high_precision_dtype="fp32",
            output_path=str(output),
            log_level="WARNING",
        )


@contextlib.contextmanager
def gpu_hidden() -> Iterator[None]:
    """CUDA_VISIBLE_DEVICES="" inside the block, the caller's value (or its absence) restored after it."""
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        yield
    finally:
        if saved is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
