"""TensorRT engine building: the only module of the builder that imports `tensorrt` (10.x and 11.x Python API).

The network is strongly typed: its precision is the ONNX graph's (ModelOpt FP16/INT8). TensorRT 11 removed the
FP16/INT8 builder flags; on 10.x they remain available as an opt-in legacy mode.

Every TensorRT call that reports failure through its result (None, False, a null handle) is checked here and turned
into an error naming the step, as polygraphy's loaders and trtexec's sampleEngines.cpp do.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_lwdetr.engine.build_progress import BuildProgress
from edge_lwdetr.engine.options import EngineOptions
from edge_lwdetr.engine.precision_report import precision_report
from edge_lwdetr.engine.trt_inspect import engine_information, engine_information_in_fresh_process
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.msda_onnx import PLUGIN, PLUGIN_VERSION
from edge_lwdetr.outputs import write_bytes
from edge_lwdetr.processing import input_shape


@dataclass
class BuiltEngine:
    serialized: bytes
    tensorrt_version: str
    precision_report: dict[str, Any]  # engine/precision_report.py: the verdict and its evidence


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise EdgeLwdetrError(
            "TensorRT is not installed: build engines where it is (JetPack, NVIDIA's TensorRT containers, "
            "docker/), or stop after the precision graph with --onnx-only"
        ) from None
    return trt


def legacy_precision_flags(precision: str) -> tuple[str, ...]:
    """The BuilderFlag names a weakly typed build sets for `precision`: none for fp32 (FP16 would let TensorRT run
    an "fp32" engine in half precision), FP16 for fp16, INT8 and FP16 for int8 (the layers left unquantized run
    in FP16 rather than FP32, as trtexec --int8 --fp16 does)."""
    return {"fp32": (), "fp16": ("FP16",), "int8": ("FP16", "INT8")}[precision]


def load_plugin_library(trt, registry, library: Path, dynamic: bool) -> None:
    """Load our MSDA plugin library into the process.

    dynamic: through the registry's load_library (the library's getCreators), as trtexec --dynamicPlugins does
    before serializing the library into a version-compatible plan (samples/common/sampleEngines.cpp). Otherwise a
    plain dlopen, whose static initializer registers the creator (trtexec --staticPlugins).
    """
    if dynamic:
        if registry.get_creator(PLUGIN.op_type, PLUGIN_VERSION, PLUGIN.plugin_namespace) is not None:
            # Loaded by an earlier build in this process: a second load_library would find the creator
            # registered and refuse the library.
            return
        if registry.load_library(str(library)) is None:
            raise EdgeLwdetrError(
                f"TensorRT {trt.__version__} could not load the plugin library {library} with load_library: "
                "rebuild it from plugins/msda (it must export getCreators) against this TensorRT"
            )
        return
    try:
        ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    except OSError as error:
        raise EdgeLwdetrError(
            f"cannot load the plugin library {library} ({error}): rebuild it from plugins/msda"
        ) from None


def progress_monitor(trt, progress: BuildProgress):
    """A trt.IProgressMonitor (TensorRT >= 10) that hands every callback to `progress`."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            super().__init__()  # pybind11: the trampoline (py::init<>) must be constructed, as NVIDIA's sample does

        def phase_start(self, phase_name, parent_phase, num_steps):
            progress.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name, step):
            return progress.step_complete(phase_name, step)

        def phase_finish(self, phase_name):
            progress.phase_finish(phase_name)

    return Monitor()


def build_engine(
    onnx_path: Path,
    plugin_library: Path | None,
    expected_plugins: int,
    options: EngineOptions,
    image_size: int,
    input_format: str = "float",
) -> BuiltEngine:
    """Parse, check the plugin census, build, and judge the precision from the engine inspector."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    # NVIDIA's MultiscaleDeformableAttnPlugin_TRT, for --msda builtin.
    if not trt.init_libnvinfer_plugins(logger, ""):
        raise EdgeLwdetrError(
            f"TensorRT {trt.__version__} could not initialise libnvinfer_plugin (init_libnvinfer_plugins)"
        )
    major = int(trt.__version__.split(".")[0])
    legacy_flags_exist = hasattr(trt.BuilderFlag, "FP16")
    if options.legacy_precision_flags and not legacy_flags_exist:
        raise EdgeLwdetrError(
            f"TensorRT {trt.__version__} has no FP16/INT8 builder flags (removed in 11.0): precision comes from the "
            "graph, which is the default; drop --legacy-precision-flags"
        )

    builder = trt.Builder(logger)  # the binding raises rather than return None
    if plugin_library is not None:
        # A version-compatible plan carries the library, which TensorRT later loads the dynamic way.
        load_plugin_library(trt, builder.get_plugin_registry(), plugin_library, dynamic=options.version_compatible)
    flags = 0
    if major < 11 and not options.legacy_precision_flags:  # strongly typed is the only mode in 11.x
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    if network is None:
        raise EdgeLwdetrError("TensorRT could not create the network definition (create_network)")
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeLwdetrError(f"TensorRT cannot parse {onnx_path}: {errors}")

    plugin_types = {
        getattr(trt.LayerType, name) for name in ("PLUGIN", "PLUGIN_V2", "PLUGIN_V3") if hasattr(trt.LayerType, name)
    }
    plugins = sum(network.get_layer(i).type in plugin_types for i in range(network.num_layers))
    if plugins != expected_plugins:
        raise EdgeLwdetrError(
            f"{onnx_path} has {expected_plugins} MSDA nodes but TensorRT made {plugins} plugin layers: the plugin "
            f"was not found in the registry (load {plugin_library or 'the plugin library'}) and the parser "
            "decomposed the node instead"
        )

    config = builder.create_builder_config()
    if config is None:
        raise EdgeLwdetrError("TensorRT could not create the builder configuration (create_builder_config)")
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gib * 2**30))
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # for the engine inspector's precision report
    if options.legacy_precision_flags:
        for flag in legacy_precision_flags(options.precision):
            config.set_flag(getattr(trt.BuilderFlag, flag))
    if options.batch_profile is not None:
        profile = builder.create_optimization_profile()
        lo, opt, hi = (input_shape(b, image_size, input_format) for b in options.batch_profile)
        profile.set_shape("images", lo, opt, hi)
        if config.add_optimization_profile(profile) < 0:
            raise EdgeLwdetrError(
                f"TensorRT rejected the batch profile {options.batch_profile} for input 'images' of {onnx_path}: "
                "check --batch-profile against the graph's input"
            )
    cache_bytes = options.timing_cache.read_bytes() if options.timing_cache and options.timing_cache.is_file() else b""
    timing_cache = config.create_timing_cache(cache_bytes)
    if timing_cache is None or not config.set_timing_cache(timing_cache, False):
        raise EdgeLwdetrError(
            f"TensorRT could not use the timing cache {options.timing_cache}: it may come from another TensorRT or "
            "GPU; delete it and build again"
        )
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        if plugin_library is not None:
            config.plugins_to_serialize = [str(plugin_library)]  # the plan carries the plugin's code
    if options.dla_core is not None:
        if not hasattr(config, "DLA_core") or builder.num_DLA_cores == 0:
            raise EdgeLwdetrError(
                f"--dla-core {options.dla_core}: this device or TensorRT {trt.__version__} has no DLA"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    progress = BuildProgress()
    config.progress_monitor = progress_monitor(trt, progress)
    serialized = builder.build_serialized_network(network, config)
    progress.raise_interruption()  # a SIGINT/SIGTERM during the build cancelled it
    if serialized is None:
        raise EdgeLwdetrError(f"TensorRT failed to build {onnx_path}; its log above says why")
    if options.timing_cache is not None:
        write_bytes(options.timing_cache, bytes(config.get_timing_cache().serialize()))  # whole, or the old one

    if options.version_compatible and plugin_library is not None:
        # The plan carries our library, already registered in this process: inspect it where it is not.
        information = engine_information_in_fresh_process(bytes(serialized), str(onnx_path))
    else:
        information = engine_information(trt, logger, serialized, options.version_compatible, str(onnx_path))
    return BuiltEngine(bytes(serialized), trt.__version__, precision_report(information, options.precision))
