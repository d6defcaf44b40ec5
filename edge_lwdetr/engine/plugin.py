"""The MSDA plugin library: built on demand from the sources the package ships, and found by one rule by every
command that builds or runs an engine.

Found, in order: the path the user gives (--plugin), $EDGE_LWDETR_PLUGIN, the library the engine was built with
(its sidecar records the path), the library `edge-lwdetr plugin build` made for this TensorRT version and GPU (in
~/.cache/edge-lwdetr/plugins/), then CMake's output folder build/plugins/ under the current folder or the checkout.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from edge_lwdetr.defaults import target_trt_version
from edge_lwdetr.errors import EdgeLwdetrError

LIBRARY = "libedge_lwdetr_plugins.so"
BUILD_FOLDER = Path("build") / "plugins"
CHECKOUT = Path(__file__).resolve().parents[2]
HOW_TO_BUILD = "build it with `edge-lwdetr plugin build`"
# Where CMake looks for TensorRT without TensorRT_ROOT (plugins/msda/CMakeLists.txt): JetPack, NVIDIA's containers.
TENSORRT_INCLUDES = ("/usr/include/aarch64-linux-gnu", "/usr/include/x86_64-linux-gnu", "/usr/local/tensorrt/include",
                     "/usr/include")  # fmt: skip


def plugin_sources() -> Path:
    """plugins/msda: in the installed package (edge_lwdetr/plugin_sources), else in the source checkout."""
    for folder in (Path(__file__).resolve().parents[1] / "plugin_sources" / "msda", CHECKOUT / "plugins" / "msda"):
        if (folder / "CMakeLists.txt").is_file():
            return folder
    raise EdgeLwdetrError("the MSDA plugin sources are not installed with this package: reinstall edge-lwdetr")


def cache_folder() -> Path:
    """One build per TensorRT version and GPU: a library compiled for one does not serve another."""
    from edge_lwdetr.device import gpu_info

    version = target_trt_version() if importlib.util.find_spec("tensorrt") is not None else "none"
    capability = gpu_info().get("compute_capability", "").replace(".", "")
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-lwdetr" / "plugins"
    return root / f"trt{version}-{'sm' + capability if capability else 'all-gpus'}"


def build_plugin(tensorrt_root: Path | None = None, force: bool = False, log=print) -> Path:
    """Compile the plugin library for this machine (CMake, nvcc, TensorRT's headers and libnvinfer) into its cache
    folder; an existing build is reused unless `force`."""
    target = cache_folder()
    library = target / LIBRARY
    if library.is_file() and not force:
        log(f"already built for this TensorRT and GPU: {library}")
        return library
    missing = [tool for tool in ("cmake", "nvcc") if shutil.which(tool) is None]
    if missing:
        raise EdgeLwdetrError(f"building the plugin needs {' and '.join(missing)} (JetPack and the CUDA toolkit have them)")
    roots = [str(tensorrt_root / "include")] if tensorrt_root else []
    roots += [f"{os.environ['TensorRT_ROOT']}/include"] if os.environ.get("TensorRT_ROOT") else []
    if not any(Path(folder, "NvInferRuntime.h").is_file() for folder in roots + list(TENSORRT_INCLUDES)):
        raise EdgeLwdetrError(
            "TensorRT's headers (NvInferRuntime.h) were not found: install TensorRT (JetPack has it; on x86 NVIDIA's "
            "TensorRT container or tarball) and pass its folder with --tensorrt-root"
        )
    build = target / "build"
    configure = ["cmake", "-S", str(plugin_sources()), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"]
    if tensorrt_root:
        configure.append(f"-DTensorRT_ROOT={tensorrt_root}")
    if "-sm" in target.name:  # only this GPU's architecture: minutes faster on a Jetson
        configure.append(f"-DCMAKE_CUDA_ARCHITECTURES={target.name.rsplit('-sm', 1)[1]}")
    log(f"building the MSDA plugin into {target} (a few minutes)")
    for command in (configure, ["cmake", "--build", str(build), "-j", "--target", "edge_lwdetr_plugins"]):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
            raise EdgeLwdetrError(f"building the plugin failed at `{' '.join(command[:2])}`: {tail}")
        if "TensorRT not found" in result.stdout:  # CMake found the headers but not libnvinfer
            raise EdgeLwdetrError(
                "TensorRT's library (libnvinfer) was not found beside its headers: pass the install folder that holds "
                "include/ and lib/ with --tensorrt-root"
            )
    shutil.copy2(build / LIBRARY, library)
    return library


def plugin_library(given: Path | None = None, recorded: str | None = None) -> Path:
    """The library to load, or a one-line error naming what was looked for and how to build it."""
    if given is not None:
        if not given.is_file():
            raise EdgeLwdetrError(f"plugin library not found: {given} (--plugin); {HOW_TO_BUILD}")
        return given
    environment = os.environ.get("EDGE_LWDETR_PLUGIN")
    if environment:
        if not Path(environment).is_file():
            raise EdgeLwdetrError(f"plugin library not found: {environment} ($EDGE_LWDETR_PLUGIN); {HOW_TO_BUILD}")
        return Path(environment)
    candidates = [Path(recorded)] if recorded else []
    candidates += [cache_folder() / LIBRARY, BUILD_FOLDER / LIBRARY, CHECKOUT / BUILD_FOLDER / LIBRARY]
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        looked = ", ".join(str(path) for path in candidates)
        raise EdgeLwdetrError(f"the MSDA plugin library was not found (looked at {looked}): {HOW_TO_BUILD}, or pass --plugin")
    return found
