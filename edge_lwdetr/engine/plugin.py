"""Where the MSDA plugin library is: one rule for every command that builds or runs an engine.

In order: the path the user gives (--plugin), $EDGE_LWDETR_PLUGIN, the library the engine was built with (its
sidecar records the path), then CMake's output folder build/plugins/ under the current folder or the source
checkout (`cmake -S plugins/msda -B build/plugins && cmake --build build/plugins`).
"""

from __future__ import annotations

import os
from pathlib import Path

from edge_lwdetr.errors import EdgeLwdetrError

LIBRARY = "libedge_lwdetr_plugins.so"
BUILD_FOLDER = Path("build") / "plugins"
CHECKOUT = Path(__file__).resolve().parents[2]
HOW_TO_BUILD = f"build it with `cmake -S plugins/msda -B {BUILD_FOLDER} && cmake --build {BUILD_FOLDER}`"


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
    candidates += [BUILD_FOLDER / LIBRARY, CHECKOUT / BUILD_FOLDER / LIBRARY]
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        looked = ", ".join(str(path) for path in candidates)
        raise EdgeLwdetrError(f"the MSDA plugin library was not found (looked at {looked}): {HOW_TO_BUILD}, or pass --plugin")
    return found
