"""TensorRT engine building: the only module of the builder that imports `tensorrt` (10.x and 11.x Python API).

The network is strongly typed: its precision is the ONNX graph's (ModelOpt FP16/INT8). TensorRT 11 removed the
FP16/INT8 builder flags; on 10.x they remain available as an opt-in legacy mode.
"""

from __future__ import annotations

import ctypes
import json
from dataclasses import dataclass
from pathlib import Path

from edge_lwdetr.errors import EdgeLwdetrError

# Share of the engine's layers that must compute in the requested precision for the build to count as realised.
# The rest legitimately stays wider: LayerNorm, softmax, box arithmetic, MSDA's FP32 accumulation, shape layers.
MIN_SHARE = {"fp16": 0.3, "int8": 0.05}


@dataclass
class BuildOptions:
    precision: str
    batch_profile: tuple[int, int, int] | None  # min, opt, max for a dynamic batch; None: the graph's static batch
    image_size: int
    workspace_gib: float
    timing_cache: Path | None
    version_compatible: bool
    dla_core: int | None
    legacy_precision_flags: bool


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise EdgeLwdetrError(
            "TensorRT is not installed: build engines where it is (JetPack, NVIDIA's TensorRT containers, "
            "docker/), or stop after the precision graph with --onnx-only"
        ) from None
    return trt


def build_engine(onnx_path: Path, plugin_library: Path | None, expected_plugins: int, options: BuildOptions):
    """Parse, check the plugin census, build; returns (serialized engine, TensorRT version, precision shares)."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")  # NVIDIA's MultiscaleDeformableAttnPlugin_TRT, for --msda builtin
    if plugin_library is not None:
        # Our library registers its creator when loaded (static registration).
        ctypes.CDLL(str(plugin_library), mode=ctypes.RTLD_GLOBAL)
    major = int(trt.__version__.split(".")[0])
    legacy_flags_exist = hasattr(trt.BuilderFlag, "FP16")
    if options.legacy_precision_flags and not legacy_flags_exist:
        raise EdgeLwdetrError(
            f"TensorRT {trt.__version__} has no FP16/INT8 builder flags (removed in 11.0): precision comes from the "
            "graph, which is the default; drop --legacy-precision-flags"
        )

    builder = trt.Builder(logger)
    flags = 0
    if major < 11 and not options.legacy_precision_flags:  # strongly typed is the only mode in 11.x
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeLwdetrError(f"TensorRT cannot parse {onnx_path}: {errors}")

    plugin_types = {getattr(trt.LayerType, name) for name in ("PLUGIN", "PLUGIN_V2", "PLUGIN_V3") if hasattr(trt.LayerType, name)}
    plugins = sum(network.get_layer(i).type in plugin_types for i in range(network.num_layers))
    if plugins != expected_plugins:
        raise EdgeLwdetrError(
            f"{onnx_path} has {expected_plugins} MSDA nodes but TensorRT made {plugins} plugin layers: the plugin "
            f"was not found in the registry (load {plugin_library or 'the plugin library'}) and the parser "
            "decomposed the node instead"
        )

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gib * 2**30))
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # for the engine inspector's precision report
    if options.legacy_precision_flags:
        config.set_flag(trt.BuilderFlag.FP16)
        if options.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    if options.batch_profile is not None:
        profile = builder.create_optimization_profile()
        size = options.image_size
        lo, opt, hi = ((b, 3, size, size) for b in options.batch_profile)
        profile.set_shape("images", lo, opt, hi)
        config.add_optimization_profile(profile)
    cache_bytes = options.timing_cache.read_bytes() if options.timing_cache and options.timing_cache.is_file() else b""
    timing_cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(timing_cache, False)
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        if plugin_library is not None:
            config.plugins_to_serialize = [str(plugin_library)]  # the plan carries the plugin's code
    if options.dla_core is not None:
        if not hasattr(config, "DLA_core") or builder.num_DLA_cores == 0:
            raise EdgeLwdetrError(f"--dla-core {options.dla_core}: this device or TensorRT {trt.__version__} has no DLA")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgeLwdetrError(f"TensorRT failed to build {onnx_path}; its log above says why")
    if options.timing_cache is not None:
        options.timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))

    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(serialized)
    inspector = engine.create_engine_inspector()
    shares = precision_shares(json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON)))
    wanted = MIN_SHARE.get(options.precision)
    if wanted is not None and shares.get(options.precision, 0.0) < wanted:
        raise EdgeLwdetrError(
            f"the engine computes {shares.get(options.precision, 0.0):.0%} of its layers in {options.precision} "
            f"(at least {wanted:.0%} expected): the requested precision was not realised; layer shares: {shares}"
        )
    return bytes(serialized), trt.__version__, shares


def precision_shares(engine_information: dict) -> dict[str, float]:
    """Share of layers by the data type of their first output, from the engine inspector's JSON."""
    counts: dict[str, int] = {}
    layers = [layer for layer in engine_information.get("Layers", []) if isinstance(layer, dict) and layer.get("Outputs")]
    for layer in layers:
        text = str(layer["Outputs"][0].get("Format/Datatype", "")).lower()
        kind = next(
            (name for name, keys in (("int8", ("int8",)), ("fp16", ("fp16", "half")), ("bf16", ("bf16",)),
                                     ("fp8", ("fp8",)), ("fp32", ("fp32", "float")), ("int32", ("int32",))) if any(k in text for k in keys)),
            "other",
        )  # fmt: skip
        counts[kind] = counts.get(kind, 0) + 1
    return {kind: count / len(layers) for kind, count in counts.items()} if layers else {}
