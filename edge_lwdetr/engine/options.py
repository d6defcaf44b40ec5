"""How an engine is built: the one place each engine option is defined.

`edge-lwdetr build` and `edge-lwdetr export --format engine` derive their command-line options from these fields
(`add_arguments`), `engine.build.build` and the TensorRT builder take an `EngineOptions`, and the sidecar records it
(`record`). A new option is one field here.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from edge_lwdetr.defaults import DEFAULT_BUDGET_AP, JETPACK_TRT_VERSION, target_trt_version
from edge_lwdetr.option_types import at_least, batch_profile, int8_budget, positive

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_BATCH_PROFILE = (1, 1, 8)  # a dynamic-batch graph's min, opt, max batch when none is given
TRT_VERSION_HELP = f"target TensorRT, for the builtin plugin's version (default: installed, else {JETPACK_TRT_VERSION})"


def _cli(help: str, **argparse_options) -> dict:
    return {"cli": {"help": help, **argparse_options}}


@dataclass(frozen=True)
class EngineOptions:
    precision: str = field(default="fp16", metadata=_cli("fp16 (default), int8 or fp32", choices=PRECISIONS))
    calib_count: int = field(default=500, metadata=_cli("int8: number of calibration images (500)", type=at_least(1)))
    msda: str = field(
        default="plugin",
        metadata=_cli(
            "plugin (default): edge-lwdetr's plugin; builtin: NVIDIA's MultiscaleDeformableAttnPlugin_TRT; native: "
            "the portable graph (--onnx-only)",
            choices=("plugin", "builtin", "native"),
        ),
    )
    trt_version: str | None = field(default=None, metadata=_cli(TRT_VERSION_HELP))
    batch_profile: tuple[int, int, int] | None = field(
        default=None, metadata=_cli("MIN,OPT,MAX batch for a dynamic-batch graph (1,1,8)", type=batch_profile)
    )
    workspace_gib: float = field(
        default=4.0, metadata=_cli("builder workspace in GiB (4)", type=positive, flag="--workspace")
    )
    timing_cache: Path | None = field(
        default=None, metadata=_cli("timing cache file, loaded if present and saved after the build", type=Path)
    )
    version_compatible: bool = field(default=False, metadata=_cli("engine loadable by later TensorRT versions"))
    dla_core: int | None = field(
        default=None, metadata=_cli("build for this DLA core, GPU fallback on (Jetson, where supported)", type=at_least(0))
    )
    legacy_precision_flags: bool = field(default=False, metadata=_cli("TensorRT 10.x only: weakly typed build"))
    int8_budget: float | None = field(
        default=DEFAULT_BUDGET_AP,
        metadata=_cli(
            f"int8: AP points the INT8 graph may lose ({DEFAULT_BUDGET_AP}), measured on the calibration images (COCO "
            "mAP when --calib-data is a COCO folder, else against the FP32 detections); over it, the layer groups "
            "INT8 hurts most stay FP16 (`edge-lwdetr quant-sensitivity`); off: every group INT8, nothing measured",
            type=int8_budget,
        ),
    )
    strict_precision: bool = field(
        default=False,
        metadata=_cli("fail (after writing the engine) when the engine inspector shows the precision was not realised"),
    )

    @property
    def target_trt_version(self) -> str:
        return self.trt_version or target_trt_version()

    def record(self) -> dict:
        """The options as the sidecar stores them (JSON)."""
        return {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
        """One option per field (`--calib-count`, ...); booleans are flags."""
        for f in fields(cls):
            if f.name in skip:
                continue
            spec = dict(f.metadata["cli"])
            flag = spec.pop("flag", "--" + f.name.replace("_", "-"))
            if f.type == "bool":
                parser.add_argument(flag, dest=f.name, action="store_true", **spec)
            else:
                parser.add_argument(flag, dest=f.name, default=f.default, **spec)

    @classmethod
    def from_arguments(cls, args: argparse.Namespace, **overrides) -> EngineOptions:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)} | overrides)
