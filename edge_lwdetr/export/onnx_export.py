"""PyTorch LW-DETR -> one self-contained, simplified ONNX file with the normalisation inside and metadata.

Graph contract: input `images` float32 [B, 3, H, W] RGB in [0, 1] (`input_format="uint8"`: uint8 [B, H, W, 3] BGR,
as OpenCV decodes, with the cast, layout, channel order and scaling inside the graph); outputs `logits` [B, Q, C] before the sigmoid
and `pred_boxes` [B, Q, 4] normalised (cx, cy, w, h). Each MSDA is a single node (see msda_onnx.py), rewritten to a
TensorRT plugin node unless `msda="native"`.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Callable

import onnx
import torch
from torch import nn

from edge_lwdetr import __version__
from edge_lwdetr.defaults import DEFAULT_OPSET, JETPACK_TRT_VERSION
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.msda_onnx import NATIVE, msda_nodes, num_levels_of, reference_function
from edge_lwdetr.export.options import OPSETS, ExportOptions
from edge_lwdetr.export.rewrite import METADATA_KEY, rewrite_msda
from edge_lwdetr.hashing import sha256_of
from edge_lwdetr.model.config import DEFAULT_IMAGE_SIZE, check_image_size
from edge_lwdetr.model.loading import LoadedModel, load_model
from edge_lwdetr.outputs import atomic_file
from edge_lwdetr.progress import Steps
from edge_lwdetr.processing import IMAGENET_MEAN, IMAGENET_STD, INPUT_FORMATS

# The dynamo exporter emits opset 18 at the lowest; TensorRT 10.0+ parses opsets 9-20 (JetPack 6 has 10.3).
MAX_PROTOBUF_BYTES = 2**31 - 1


class NormalizedInput(nn.Module):
    """The model with ImageNet normalisation in front, so the graph takes RGB in [0, 1]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.from_numpy(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.from_numpy(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model((images - self.mean) / self.std)


class Uint8Input(nn.Module):
    """The model taking uint8 [B, H, W, 3] BGR frames: the CPU only resizes, and the copy to the GPU moves a quarter
    of the bytes. Layout and channel order change on the uint8 tensor (a quarter of the bytes of float), then one
    cast and one multiply-add per channel: (x / 255 - mean) / std, folded."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        scale, shift = 1 / (255 * IMAGENET_STD), -IMAGENET_MEAN / IMAGENET_STD
        self.register_buffer("scale", torch.from_numpy(scale).view(1, 3, 1, 1))
        self.register_buffer("shift", torch.from_numpy(shift).view(1, 3, 1, 1))

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rgb = frames.permute(0, 3, 1, 2).flip(1)  # NHWC BGR -> NCHW RGB
        return self.model(rgb.float() * self.scale + self.shift)


def export_onnx(
    weights: str | Path,
    output: Path,
    imgsz: int | None = None,
    batch: int = 1,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    msda: str = "plugin",
    trt_version: str = JETPACK_TRT_VERSION,
    variant: str | None = None,
    log: Callable[[str], None] = lambda message: None,
    ema: bool = False,
    input_format: str = "float",
) -> onnx.ModelProto:
    """Export `weights` to `output` at `imgsz` (default: the size the weights' folder names, else 640); the graph takes
    `input_format` images (processing.INPUT_FORMATS: float RGB NCHW in [0, 1], or uint8 BGR NHWC)."""
    if opset not in OPSETS:
        raise EdgeLwdetrError(f"--opset {opset} is not supported: choose one of {', '.join(map(str, OPSETS))}")
    if msda not in ("native", "plugin", "builtin"):
        raise EdgeLwdetrError(f"--msda {msda} is unknown: choose native, plugin or builtin")
    if input_format not in INPUT_FORMATS:
        raise EdgeLwdetrError(f"--input-format {input_format} is unknown: choose {' or '.join(INPUT_FORMATS)}")
    if batch < 1:
        raise EdgeLwdetrError(f"--batch {batch} must be at least 1")
    if not output.parent.is_dir():
        raise EdgeLwdetrError(f"cannot write {output}: folder {output.parent} does not exist")

    started = time.perf_counter()
    steps = ["loading the weights", "tracing (torch.onnx)", "simplifying (onnxslim)", "checking", "writing"]
    with Steps("export", steps[:3] + (["rewriting MSDA"] if msda != "native" else []) + steps[3:]) as progress:
        progress.step("loading the weights")
        loaded = load_model(weights, variant, ema=ema)
        imgsz = imgsz or loaded.image_size or DEFAULT_IMAGE_SIZE
        check_image_size(loaded.config, imgsz, imgsz)
        log(f"loaded LW-DETR-{loaded.variant} from {weights}")

        progress.step("tracing (torch.onnx)")
        model = trace_to_onnx(loaded, imgsz, batch, dynamic_batch, opset, input_format)
        log(f"traced to ONNX opset {opset} ({time.perf_counter() - started:.1f} s)")
        progress.step("simplifying (onnxslim)")
        model = simplify(model)
        model.functions.append(reference_function(NATIVE, num_levels_of(model, msda_nodes(model)[0]), opset))
        options = ExportOptions(imgsz, batch, dynamic_batch, opset, variant, ema, input_format)
        add_metadata(model, loaded, weights, options)
        if msda != "native":
            progress.step("rewriting MSDA")
            model = rewrite_msda(model, msda, trt_version, str(output))
            log(f"rewrote {len(msda_nodes(model))} MSDA nodes to the {msda} plugin form")

        progress.step("checking")
        onnx.checker.check_model(model, full_check=True)
        if model.ByteSize() > MAX_PROTOBUF_BYTES:
            raise EdgeLwdetrError(f"the graph is {model.ByteSize() / 2**30:.1f} GiB, over ONNX's 2 GiB single-file limit")
        progress.step("writing")
        with atomic_file(output) as temporary:
            onnx.save(model, temporary)
    log(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB, {time.perf_counter() - started:.1f} s)")
    return model


def trace_to_onnx(
    loaded: LoadedModel, imgsz: int, batch: int, dynamic_batch: bool, opset: int, input_format: str = "float"
) -> onnx.ModelProto:
    uint8 = input_format == "uint8"
    wrapper = (Uint8Input if uint8 else NormalizedInput)(loaded.model).eval().cpu()
    # An example batch of 1 would make torch.export specialise the batch dimension to 1.
    examples = max(batch, 2) if dynamic_batch else batch
    if uint8:
        example = torch.randint(0, 256, (examples, imgsz, imgsz, 3), dtype=torch.uint8)
    else:
        example = torch.rand(examples, 3, imgsz, imgsz)
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic_batch else None
    # The exporter logs every optional library it lacks (torchvision ops) and torch.export's deprecations.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.onnx.export(
            wrapper,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=["images"],
            output_names=["logits", "pred_boxes"],
            dynamic_shapes=dynamic_shapes,
            optimize=True,
            verbose=False,
        )
    return program.model_proto


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim: constant folding (the position-embedding resize becomes one constant), dead-node removal, fusion."""
    import onnxslim

    return onnxslim.slim(model)


def add_metadata(model: onnx.ModelProto, loaded: LoadedModel, weights, options: ExportOptions) -> None:
    """The graph's metadata: the model, its input contract and `options` (with the image size resolved)."""
    config, input_format = loaded.config, options.input_format
    layout = "BGR, NHWC, uint8 in [0, 255]" if input_format == "uint8" else "RGB, NCHW, float32 in [0, 1]"
    props = {
        "edge_lwdetr.version": __version__,
        "edge_lwdetr.variant": loaded.variant,
        "edge_lwdetr.image_size": str(options.imgsz),
        "edge_lwdetr.batch": "dynamic" if options.dynamic_batch else str(options.batch),
        "edge_lwdetr.num_queries": str(config.num_queries),
        # Two-stage proposals at the border: "rank" (the original code's selection) or "exclude" (transformers').
        "edge_lwdetr.border_proposals": config.border_proposals,
        "edge_lwdetr.id2label": json.dumps({str(k): v for k, v in loaded.id2label.items()}),
        # Read by artefacts.input_format_of: what the runtime feeds (processing.to_model_input).
        "edge_lwdetr.input_format": input_format,
        "edge_lwdetr.normalization": json.dumps(
            {"input": layout, "mean": IMAGENET_MEAN.tolist(), "std": IMAGENET_STD.tolist()}
        ),
        "edge_lwdetr.source": str(weights),
        "edge_lwdetr.source_sha256": sha256_of(*loaded.weights_files),
        METADATA_KEY: "native",
    }
    # How the graph was made, as `edge-lwdetr export` would be asked to make it again.
    props["edge_lwdetr.export_options"] = json.dumps(options.record())
    if loaded.num_select:  # the original checkpoint's --num_select: how many (query, class) pairs it evaluated
        props["edge_lwdetr.num_select"] = str(loaded.num_select)
    if loaded.weights_key:  # which entry of a training checkpoint: 'model' or 'ema_model'
        props["edge_lwdetr.weights_key"] = loaded.weights_key
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
