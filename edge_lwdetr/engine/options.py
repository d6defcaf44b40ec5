"""How an engine is built: the one place each engine option is defined.

`edge-lwdetr build` and `edge-lwdetr export --format engine` derive their command-line options from these fields
(`add_arguments`, edge_lwdetr/options.py), `engine.build.build` and the TensorRT builder take an `EngineOptions`,
and the sidecar records it (`record`). A new option is one field here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edge_lwdetr.defaults import DEFAULT_BUDGET_AP, JETPACK_TRT_VERSION, target_trt_version
from edge_lwdetr.options import CliOptions, cli
from edge_lwdetr.option_types import at_least, batch_profile, int8_budget, positive

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_BATCH_PROFILE = (1, 1, 8)  # a dynamic-batch graph's min, opt, max batch when none is given
TRT_VERSION_HELP = f"target TensorRT, for the builtin plugin's version (default: installed, else {JETPACK_TRT_VERSION})"


@dataclass(frozen=True)
class EngineOptions(CliOptions):
    precision: str = field(default="fp16", metadata=cli("fp16 (default), int8 or fp32", choices=PRECISIONS))
    calib_count: int = field(default=500, metadata=cli("int8: number of calibration images (500)", type=at_least(1)))
    msda: str = field(
        default="plugin",
        metadata=cli(
            "plugin (default): edge-lwdetr's plugin; builtin: NVIDIA's MultiscaleDeformableAttnPlugin_TRT; native: "
            "the portable graph (export --format onnx; build --onnx-only)",
            choices=("plugin", "builtin", "native"),
        ),
    )
    trt_version: str | None = field(default=None, metadata=cli(TRT_VERSION_HELP))
    batch_profile: tuple[int, int, int] | None = field(
        default=None, metadata=cli("MIN,OPT,MAX batch for a dynamic-batch graph (1,1,8)", type=batch_profile)
    )
    workspace_gib: float = field(
        default=4.0, metadata=cli("builder workspace in GiB (4)", type=positive, flag="--workspace")
    )
    timing_cache: Path | None = field(
        default=None, metadata=cli("timing cache file, loaded if present and saved after the build", type=Path)
    )
    version_compatible: bool = field(default=False, metadata=cli("engine loadable by later TensorRT versions"))
    dla_core: int | None = field(
        default=None, metadata=cli("build for this DLA core, GPU fallback on (Jetson, where supported)", type=at_least(0))
    )
    legacy_precision_flags: bool = field(default=False, metadata=cli("TensorRT 10.x only: weakly typed build"))
    int8_budget: float | None = field(
        default=DEFAULT_BUDGET_AP,
        metadata=cli(
            f"int8: AP points the INT8 graph may lose ({DEFAULT_BUDGET_AP}), measured on the calibration images (COCO "
            "mAP when --calib-data is a COCO folder, else against the FP32 detections); over it, the layer groups "
            "INT8 hurts most stay FP16 (`edge-lwdetr quant-sensitivity`); off: every group INT8, nothing measured",
            type=int8_budget,
        ),
    )
    strict_precision: bool = field(
        default=False,
        metadata=cli("fail (after writing the engine) when the engine inspector shows the precision was not realised"),
    )

    @property
    def target_trt_version(self) -> str:
        return self.trt_version or target_trt_version()
