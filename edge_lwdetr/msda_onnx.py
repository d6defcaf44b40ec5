"""The MSDA node contract in ONNX (plugins/README.md states it as a table) and its reference body.

Three node forms, one semantics (inputs and output in the layout of NVIDIA's MultiscaleDeformableAttnPlugin_TRT):

- native:  edge_lwdetr::MultiScaleDeformableAttention, calling a local function in the same file whose body is the
           reference decomposition (one GridSample per level). Portable: ONNX Runtime, onnx.reference and TensorRT's
           parser all inline it.
- plugin:  edge_lwdetr::EdgeLwdetrMSDA with plugin_version/plugin_namespace: our TensorRT plugin (plugins/msda).
- builtin: trt::MultiscaleDeformableAttnPlugin_TRT: NVIDIA's plugin in libnvinfer_plugin.

Plugin files carry no local function: TensorRT parsers before 10.7 (JetPack 6 ships 10.3) prefer a local function
over a plugin of the same name and would silently inline the GridSample path. To check a plugin file on the CPU,
`with_reference_functions` attaches the reference body in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import TensorProto, helper

from edge_lwdetr.onnx_contract import ONNX_DOMAIN, ONNX_OP


@dataclass(frozen=True)
class MsdaNodeForm:
    op_type: str
    domain: str
    plugin_namespace: str | None  # None: not a plugin node


NATIVE = MsdaNodeForm(ONNX_OP, ONNX_DOMAIN, None)
PLUGIN = MsdaNodeForm("EdgeLwdetrMSDA", ONNX_DOMAIN, "edge_lwdetr")
PLUGIN_VERSION = "1"
BUILTIN = MsdaNodeForm("MultiscaleDeformableAttnPlugin_TRT", "trt", "")
FORMS = {"native": NATIVE, "plugin": PLUGIN, "builtin": BUILTIN}


def builtin_plugin_version(trt_version: str) -> str:
    """NVIDIA's plugin is IPluginV2 version "1" before TensorRT 10.11 and IPluginV3 version "2" from 10.11."""
    try:
        major, minor = (int(part) for part in trt_version.split(".")[:2])
    except ValueError:
        from edge_lwdetr.errors import EdgeLwdetrError

        raise EdgeLwdetrError(f"--trt-version {trt_version!r} is not a version such as 10.3 or 11.1") from None
    return "2" if (major, minor) >= (10, 11) else "1"


def form_of(node: onnx.NodeProto) -> MsdaNodeForm | None:
    for form in FORMS.values():
        if (node.op_type, node.domain) == (form.op_type, form.domain):
            return form
    return None


def reference_function(form: MsdaNodeForm, num_levels: int, opset: int) -> onnx.FunctionProto:
    """The MSDA reference as an ONNX function in standard ops, for a model with `num_levels` feature levels.

    Level shapes and offsets are read from the spatial_shapes / level_start_index inputs, so the body computes the
    op's definition for whatever those inputs hold. It computes in FP32 and returns the type of `value`, as the
    plugin does (an FP16 graph may give FP16 value with FP32 locations and weights).
    """
    nodes: list[onnx.NodeProto] = []

    def add(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def ints(name: str, values: list[int]) -> str:
        return add("Constant", [], name, value=helper.make_tensor(name, TensorProto.INT64, [len(values)], values))

    def scalar(name: str, value: int) -> str:
        return add("Constant", [], name, value=helper.make_tensor(name, TensorProto.INT64, [], [value]))

    def tail(tensor: str, start: int, name: str) -> str:
        """Concat([-1], shape(tensor)[start:]): reshape target that merges the leading dims."""
        shape = add("Shape", [tensor], f"{name}_shape", start=start)
        return add("Concat", [minus_one, shape], f"{name}_target", axis=0)

    minus_one = ints("minus_one", [-1])
    value = add("Cast", ["value"], "value32", to=TensorProto.FLOAT)
    locations = add("Cast", ["sampling_locations"], "locations32", to=TensorProto.FLOAT)
    batch = add("Shape", [value], "batch", start=0, end=1)
    heads_channels = add("Shape", [value], "heads_channels", start=2, end=4)
    channels = add("Shape", [value], "channels", start=3, end=4)
    shapes = add("Cast", ["spatial_shapes"], "shapes64", to=TensorProto.INT64)
    starts = add("Cast", ["level_start_index"], "starts64", to=TensorProto.INT64)
    two = add("Constant", [], "two", value_float=2.0)
    one = add("Constant", [], "one", value_float=1.0)
    grids = add("Sub", [add("Mul", [locations, two], "loc2"), one], "grids")  # [-1, 1] for GridSample
    mode = "linear" if opset >= 20 else "bilinear"  # GridSample renamed the mode in opset 20

    sampled = []
    for level in range(num_levels):
        index = scalar(f"l{level}", level)
        hw = add("Gather", [shapes, index], f"hw{level}", axis=0)
        size = add("ReduceProd", [hw], f"size{level}", keepdims=1)
        start = add("Gather", [starts, ints(f"i{level}", [level])], f"start{level}", axis=0)  # [1]
        end = add("Add", [start, size], f"end{level}")
        level_value = add("Slice", [value, start, end, ints(f"ax1_{level}", [1])], f"value{level}")  # N, HW, M, D
        level_value = add("Transpose", [level_value], f"value{level}_t", perm=[0, 2, 3, 1])  # N, M, D, HW
        target = add("Concat", [minus_one, channels, hw], f"value{level}_target", axis=0)
        level_value = add("Reshape", [level_value, target], f"value{level}_maps")  # N*M, D, H, W
        grid = add("Gather", [grids, index], f"grid{level}", axis=3)  # N, Lq, M, P, 2
        grid = add("Transpose", [grid], f"grid{level}_t", perm=[0, 2, 1, 3, 4])  # N, M, Lq, P, 2
        grid = add("Reshape", [grid, tail(grid, 2, f"grid{level}")], f"grid{level}_flat")  # N*M, Lq, P, 2
        sample = add(
            "GridSample", [level_value, grid], f"sample{level}", mode=mode, padding_mode="zeros", align_corners=0
        )  # N*M, D, Lq, P
        sampled.append(add("Unsqueeze", [sample, ints(f"ax3_{level}", [3])], f"sample{level}_u"))
    stacked = add("Concat", sampled, "stacked", axis=3) if num_levels > 1 else sampled[0]  # N*M, D, Lq, L, P

    weights = add("Cast", ["attention_weights"], "weights32", to=TensorProto.FLOAT)
    weights = add("Transpose", [weights], "weights_t", perm=[0, 2, 1, 3, 4])  # N, M, Lq, L, P
    weights = add("Reshape", [weights, tail(weights, 2, "weights")], "weights_flat")  # N*M, Lq, L, P
    weights = add("Unsqueeze", [weights, ints("ax1_w", [1])], "weights_u")  # N*M, 1, Lq, L, P
    summed = add("ReduceSum", [add("Mul", [stacked, weights], "weighted"), ints("ax34", [3, 4])], "summed", keepdims=0)
    target = add("Concat", [batch, heads_channels, minus_one], "out_target", axis=0)
    summed = add("Reshape", [summed, target], "out_nmdq")  # N, M, D, Lq
    output = add("Transpose", [summed], "output32", perm=[0, 3, 1, 2])  # N, Lq, M, D
    nodes.append(helper.make_node("CastLike", [output, "value"], ["output"]))

    return helper.make_function(
        form.domain,
        form.op_type,
        ["value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights"],
        ["output"],
        nodes,
        [helper.make_opsetid("", opset)],
        attributes=["plugin_version", "plugin_namespace"] if form.plugin_namespace is not None else [],
    )


def msda_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [node for node in model.graph.node if form_of(node) is not None]


def default_opset(model: onnx.ModelProto) -> int:
    return next(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))


def num_levels_of(model: onnx.ModelProto, node: onnx.NodeProto) -> int:
    """L, from the [L, 2] spatial_shapes initializer of an MSDA node."""
    for initializer in model.graph.initializer:
        if initializer.name == node.input[1]:
            return initializer.dims[0]
    raise ValueError(f"MSDA node {node.name}: spatial_shapes '{node.input[1]}' is not an initializer")


def with_reference_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` in which every MSDA node form present calls the reference body: runnable on the CPU."""
    runnable = onnx.ModelProto()
    runnable.CopyFrom(model)
    present = {(f.domain, f.name) for f in runnable.functions}
    opset = default_opset(runnable)
    for node in msda_nodes(runnable):
        form = form_of(node)
        if (form.domain, form.op_type) not in present:
            runnable.functions.append(reference_function(form, num_levels_of(runnable, node), opset))
            present.add((form.domain, form.op_type))
    return runnable
