"""How weights become an ONNX graph: the one place each export option is defined.

`edge-lwdetr export` derives its graph options from these fields, `export_to` and `Detector.export` take an
`ExportOptions`, and the exported graph records them in its metadata (`edge_lwdetr.export_options`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_lwdetr.defaults import DEFAULT_OPSET, INPUT_FORMAT_NAMES
from edge_lwdetr.option_types import MAX_IMAGE_SIZE, at_least, image_size
from edge_lwdetr.options import CliOptions, cli

OPSETS = (18, 19, 20)
IMGSZ_HELP = f"square input size, a multiple of 64 up to {MAX_IMAGE_SIZE} (default: the weights' folder's size, else 640)"


@dataclass(frozen=True)
class ExportOptions(CliOptions):
    imgsz: int | None = field(default=None, metadata=cli(IMGSZ_HELP, type=image_size))
    batch: int = field(default=1, metadata=cli("static batch size (1)", type=at_least(1), exclusive="batch"))
    dynamic_batch: bool = field(default=False, metadata=cli("symbolic batch dimension", exclusive="batch"))
    opset: int = field(
        default=DEFAULT_OPSET, metadata=cli(f"ONNX opset: {DEFAULT_OPSET} (default), 19 or 20", type=int, choices=OPSETS)
    )
    variant: str | None = field(
        default=None, metadata=cli("tiny|small|medium|large|xlarge; overrides the inferred architecture")
    )
    ema: bool = field(
        default=False,
        metadata=cli("original training checkpoint (checkpoint.pth): load its ema_model weights, not model"),
    )
    input_format: str = field(
        default="float",
        metadata=cli(
            "the graph's input: float (RGB NCHW in [0, 1], default) or uint8 (BGR NHWC frames as decoded: the cast, "
            "layout and normalisation run in the graph, the CPU only resizes)",
            choices=INPUT_FORMAT_NAMES,
        ),
    )
