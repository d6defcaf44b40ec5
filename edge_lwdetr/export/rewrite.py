"""Rewrite every MSDA node of an exported LW-DETR graph into a TensorRT plugin node (onnx-graphsurgeon).

Input: a graph from `edge-lwdetr export` (any MSDA form). Output: each MSDA is one plugin node with
plugin_version / plugin_namespace set, int32 spatial_shapes and level_start_index initializers, its output typed
and shaped, and no local function left that a TensorRT parser could inline instead of calling the plugin.
"""

from __future__ import annotations


import numpy as np
import onnx

from edge_lwdetr.artefacts import properties
from edge_lwdetr.defaults import JETPACK_TRT_VERSION
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.msda_onnx import (
    FORMS,
    PLUGIN_VERSION,
    builtin_plugin_version,
    default_opset,
    msda_nodes,
    num_levels_of,
    reference_function,
)

METADATA_KEY = "edge_lwdetr.msda"


def to_native(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose MSDA nodes, of any form, are the native node calling the reference body: what
    ModelOpt quantizes and what `rewrite_msda` starts from. Plugin forms differ from it only in the node's name
    and plugin attributes (and int32 level constants, which the reference body reads as well)."""
    native = onnx.ModelProto()
    native.CopyFrom(model)
    nodes = msda_nodes(native)
    for node in nodes:
        node.op_type, node.domain = FORMS["native"].op_type, FORMS["native"].domain
        del node.attribute[:]  # the native node has none; the plugin forms' are plugin_version/plugin_namespace
    kept = [f for f in native.functions if (f.domain, f.name) != (FORMS["native"].domain, FORMS["native"].op_type)]
    del native.functions[:]
    native.functions.extend(kept)
    if nodes:
        native.functions.append(reference_function(FORMS["native"], num_levels_of(native, nodes[0]), default_opset(native)))
    _keep_metadata(model, native, "native")
    return native


def rewrite_msda(
    model: onnx.ModelProto, target: str, trt_version: str = JETPACK_TRT_VERSION, source: str = "model"
) -> onnx.ModelProto:
    """Every MSDA node of `model` -> the `target` plugin form ('plugin' or 'builtin')."""
    import onnx_graphsurgeon as gs

    if target not in ("plugin", "builtin"):
        raise EdgeLwdetrError(f"unknown rewrite target '{target}': choose plugin or builtin")
    nodes = msda_nodes(model)
    if not nodes:
        grid_samples = sum(node.op_type == "GridSample" for node in model.graph.node)
        hint = (
            f"it has {grid_samples} GridSample nodes, so its MSDA was decomposed by another exporter; "
            if grid_samples
            else ""
        )
        raise EdgeLwdetrError(
            f"{source} has no multi-scale deformable attention node to rewrite ({hint}expected "
            f"{FORMS['native'].domain}::{FORMS['native'].op_type} from `edge-lwdetr export --msda native`)"
        )
    form = FORMS[target]
    version = PLUGIN_VERSION if target == "plugin" else builtin_plugin_version(trt_version)

    graph = gs.import_onnx(model)
    shapes, starts = _level_constants(graph, nodes, source)
    msda_forms = {(f.op_type, f.domain) for f in FORMS.values()}
    for index, node in enumerate(n for n in graph.nodes if (n.op, n.domain) in msda_forms):
        node.name, node.outputs[0].name = f"msda_{index}", f"msda_{index}_output"  # layer names in TensorRT
        node.op, node.domain = form.op_type, form.domain
        node.attrs = {"plugin_version": version, "plugin_namespace": form.plugin_namespace}
        node.inputs[1], node.inputs[2] = shapes, starts
        value, locations = node.inputs[0], node.inputs[3]
        if target == "builtin" and value.dtype is not None:
            # NVIDIA's plugin takes one float type for value, locations and weights (an FP16 graph keeps the
            # locations in FP32 for our plugin): cast them to the value's type.
            for slot in (3, 4):
                tensor = node.inputs[slot]
                if tensor.dtype is not None and np.dtype(tensor.dtype) != np.dtype(value.dtype):
                    cast = gs.Variable(f"{tensor.name}_as_value_type", dtype=value.dtype, shape=tensor.shape)
                    graph.nodes.append(gs.Node("Cast", inputs=[tensor], outputs=[cast], attrs={"to": _onnx_type(value.dtype)}))
                    node.inputs[slot] = cast
        output = node.outputs[0]
        output.dtype = value.dtype
        if value.shape is not None and locations.shape is not None:
            output.shape = [value.shape[0], locations.shape[1], value.shape[2], value.shape[3]]
    graph.functions = [f for f in graph.functions if (f.name, f.domain) not in {(n.op_type, n.domain) for n in nodes}]
    graph.cleanup().toposort()

    rewritten = gs.export_onnx(graph)
    _keep_metadata(model, rewritten, target)
    return rewritten


def _level_constants(graph, nodes: list[onnx.NodeProto], source: str):
    """One shared pair of int32 constants for all MSDA nodes (every layer reads the same memory levels)."""
    import onnx_graphsurgeon as gs

    tensors = graph.tensors()
    values = []
    for index in (1, 2):
        inputs = [tensors[n.input[index]] for n in nodes]
        found = {tuple(np.asarray(t.values).reshape(-1)) for t in inputs if isinstance(t, gs.Constant)}
        if len(found) != 1 or not all(isinstance(t, gs.Constant) for t in inputs):
            raise EdgeLwdetrError(
                f"{source}: the MSDA nodes' {'spatial_shapes' if index == 1 else 'level_start_index'} inputs are "
                "not one shared constant; re-export the model with `edge-lwdetr export`"
            )
        values.append(np.array(found.pop(), dtype=np.int32))
    shapes = gs.Constant("msda_spatial_shapes", values[0].reshape(-1, 2))
    starts = gs.Constant("msda_level_start_index", values[1])
    return shapes, starts


def _onnx_type(dtype) -> int:
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _keep_metadata(original: onnx.ModelProto, rewritten: onnx.ModelProto, target: str) -> None:
    props = properties(original)
    props[METADATA_KEY] = target
    del rewritten.metadata_props[:]
    for key, value in props.items():
        rewritten.metadata_props.add(key=key, value=value)
