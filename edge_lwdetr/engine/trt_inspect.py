"""The engine inspector's JSON for a plan, in a process of its own when the plan carries a plugin library.

    python -m edge_lwdetr.engine.trt_inspect PLAN [--host-code]   # prints the JSON

A plan built with plugins_to_serialize registers its copy of the library when deserialized, and TensorRT refuses
that when a creator of the same name is already registered ("Cannot register the library as plugin creator of ...
exists already", reported with TensorRT-built plans in laugh12321/TensorRT-YOLO#100): the builder's process has
just loaded our library to parse the graph. A fresh process starts with an empty registry, exactly like a user's
process that runs the engine, so inspecting there also proves the plan loads without the library beside it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from edge_lwdetr.errors import EdgeLwdetrError


def engine_information(trt, logger, plan: bytes, host_code_allowed: bool, source: str) -> dict[str, Any]:
    """Deserialize `plan` in this process and return the inspector's JSON (`source` names it in errors)."""
    runtime = trt.Runtime(logger)
    # A version-compatible plan embeds the lean runtime (unless EXCLUDE_LEAN_RUNTIME): a runtime deserializes it
    # only when allowed to run host code from the plan (samples/common/sampleEngines.cpp calls
    # setEngineHostCodeAllowed(true) before deserializing a version-compatible engine).
    runtime.engine_host_code_allowed = host_code_allowed
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise EdgeLwdetrError(f"TensorRT built {source} but cannot deserialize the plan it made; its log says why")
    inspector = engine.create_engine_inspector()
    if inspector is None:
        raise EdgeLwdetrError(f"TensorRT could not create an engine inspector for the engine of {source}")
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise EdgeLwdetrError(
            f"the engine inspector returned invalid JSON ({error}); report this TensorRT version"
        ) from None


def engine_information_in_fresh_process(plan: bytes, source: str) -> dict[str, Any]:
    """engine_information for a version-compatible plan, run by `python -m edge_lwdetr.engine.trt_inspect`."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plan.engine"
        path.write_bytes(plan)
        result = subprocess.run(
            [sys.executable, "-m", "edge_lwdetr.engine.trt_inspect", str(path), "--host-code"],
            check=False,
            capture_output=True,
            text=True,
        )
    if result.returncode != 0:
        raise EdgeLwdetrError(
            f"the version-compatible engine of {source} does not load in a fresh process (as a user's would): "
            f"{result.stderr.strip()[-2000:]}"
        )
    return json.loads(result.stdout)


def main(argv: list[str]) -> int:
    import tensorrt as trt

    plan = Path(argv[0]).read_bytes()
    logger = trt.Logger(trt.Logger.WARNING)  # TensorRT's messages go to stderr, the JSON alone to stdout
    try:
        information = engine_information(trt, logger, plan, "--host-code" in argv[1:], argv[0])
    except EdgeLwdetrError as error:
        print(error, file=sys.stderr)
        return 1
    print(json.dumps(information))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
