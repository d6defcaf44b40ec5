"""Every TensorRT Python name the project uses exists in every supported TensorRT release, unless probed.

The names of each release come from tests/data/trt_api_surface.json, extracted from NVIDIA's pybind11 bindings
by tools/trt_api_surface.py (tag and commit recorded in the file). The project's code is read with `ast`:
- `trt.X`, `trt.X.Y`, `trt.X.Y.Z` on the module (bound by `import tensorrt [as trt]` or `trt = import_tensorrt()`,
  or a parameter named `trt`) must be a module name, then a member (or nested enum) of X, and so on;
- `receiver.name` where the receiver is a TensorRT object is checked against that class (and its bases). The
  receiver's class is known from its variable name (RECEIVERS: `config`, `engine`, `self.context`, ...) or from
  the call that returned it (RETURNS: `network.get_layer(i)`), in code that handles TensorRT objects: functions
  that use the module, and classes one of whose methods imports it.
An access is exempt when the same file probes it: `hasattr(<receiver>, "<name>")`. Names computed at run time
(`getattr(trt.BuilderFlag, flag)`) are not seen; keep them behind such probes.
"""

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SURFACE = json.loads((ROOT / "tests" / "data" / "trt_api_surface.json").read_text())
SUPPORTED = ("v10.3.0", "v11.1")  # at least these; every tag in the data file is checked

RECEIVERS = {
    "builder": "Builder", "config": "IBuilderConfig", "network": "INetworkDefinition", "parser": "OnnxParser",
    "runtime": "Runtime", "engine": "ICudaEngine", "context": "IExecutionContext", "inspector": "EngineInspector",
    "profile": "IOptimizationProfile", "registry": "IPluginRegistry", "timing_cache": "ITimingCache",
    "layer": "ILayer", "serialized": "IHostMemory",
}  # fmt: skip
RETURNS = {
    "get_layer": "ILayer", "get_timing_cache": "ITimingCache", "create_engine_inspector": "EngineInspector",
    "get_plugin_registry": "IPluginRegistry", "create_builder_config": "IBuilderConfig",
    "create_network": "INetworkDefinition", "create_optimization_profile": "IOptimizationProfile",
    "create_execution_context": "IExecutionContext", "deserialize_cuda_engine": "ICudaEngine",
    "build_serialized_network": "IHostMemory", "create_timing_cache": "ITimingCache",
}  # fmt: skip
MODULE_FUNCTIONS = {"import_tensorrt"}


def members(version: dict, owner: str) -> set[str]:
    """Members of a class or enum with those of its bases (pybind11 makes C++ bases Python bases)."""
    found, stack = set(), [owner]
    while stack:
        name = stack.pop()
        found |= set(version["classes"].get(name, []))
        stack.extend(version["bases"].get(name, []))
    return found


def resolve(version: dict, chain: list[str]) -> str | None:
    """The first name of `chain` (after the module) that does not exist in `version`, or None if all do."""
    if chain[0] not in version["module"]:
        return chain[0]
    owner = chain[0]
    for name in chain[1:]:
        if owner not in version["classes"]:
            return None  # a function or value (trt.__version__.split): Python's own attributes from here on
        if name not in members(version, owner):
            return f"{owner}.{name}"
        owner = f"{owner}.{name}" if f"{owner}.{name}" in version["classes"] else owner
    return None


class Uses(ast.NodeVisitor):
    """(line, class or None for the module, attribute chain) of every TensorRT access in one file."""

    def __init__(self, tree: ast.Module):
        self.aliases = {"trt"} & {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                self.aliases |= {a.asname or a.name for a in node.names if a.name == "tensorrt"}
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                func = node.value.func
                if isinstance(func, ast.Name) and func.id in MODULE_FUNCTIONS:
                    self.aliases |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        self.probes = {
            (ast.unparse(n.args[0]), n.args[1].value)
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "hasattr"
            and len(n.args) == 2 and isinstance(n.args[1], ast.Constant)
        }  # fmt: skip
        self.found: list[tuple[int, str | None, list[str]]] = []
        self._typed = 0
        self.visit(tree)

    def _uses_module(self, node: ast.AST) -> bool:
        return any(isinstance(n, ast.Name) and n.id in self.aliases for n in ast.walk(node)) or any(
            isinstance(n, ast.Import) and any(a.name == "tensorrt" for a in n.names) for n in ast.walk(node)
        )

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        typed = self._uses_module(node)
        self._typed += typed
        self.generic_visit(node)
        self._typed -= typed

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        typed = self._uses_module(node)
        self._typed += typed
        self.generic_visit(node)
        self._typed -= typed

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain, base = [node.attr], node.value
        while isinstance(base, ast.Attribute):
            chain.insert(0, base.attr)
            base = base.value
        probed = (ast.unparse(node.value), node.attr) in self.probes
        if isinstance(base, ast.Name) and base.id in self.aliases:
            if not probed:
                self.found.append((node.lineno, None, chain))
            return  # the inner attributes are part of this chain
        if self._typed and not probed:
            receiver = node.value
            owner = None
            if isinstance(receiver, ast.Name):
                owner = RECEIVERS.get(receiver.id)
            elif (
                isinstance(receiver, ast.Attribute)
                and isinstance(receiver.value, ast.Name)
                and receiver.value.id == "self"
            ):
                owner = RECEIVERS.get(receiver.attr)
            elif isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Attribute):
                owner = RETURNS.get(receiver.func.attr)
            if owner is not None:
                self.found.append((node.lineno, owner, [node.attr]))
        self.generic_visit(node)


def project_uses() -> list[tuple[str, int, str | None, list[str]]]:
    uses = []
    for path in sorted((ROOT / "edge_lwdetr").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for line, owner, chain in Uses(tree).found:
            uses.append((str(path.relative_to(ROOT)), line, owner, chain))
    return uses


def missing_in(version: dict, uses) -> list[str]:
    problems = []
    for file, line, owner, chain in uses:
        missing = (
            resolve(version, chain)
            if owner is None
            else None
            if chain[0] in members(version, owner)
            else f"{owner}.{chain[0]}"
        )
        if missing is not None:
            problems.append(
                f"{file}:{line}: {'.'.join(chain) if owner is None else owner + '.' + chain[0]} ({missing} is missing)"
            )
    return problems


def test_data_file_names_its_sources():
    for tag in SUPPORTED:
        version = SURFACE["versions"][tag]
        assert version["tag"] == tag and len(version["commit"]) == 40
        assert {"Builder", "ICudaEngine", "IExecutionContext", "Runtime"} <= set(version["module"])


def test_scanner_sees_the_tensorrt_code():
    """The scan must find the builder's and the backend's TensorRT calls, or the check below proves nothing."""
    uses = project_uses()
    seen = {(owner, chain[-1]) for _, _, owner, chain in uses}
    assert {(None, "STRONGLY_TYPED"), ("IExecutionContext", "execute_async_v3"), ("Runtime", "engine_host_code_allowed"),
            ("IExecutionContext", "set_input_shape"), ("IBuilderConfig", "plugins_to_serialize")} <= seen  # fmt: skip
    assert len(uses) > 60


@pytest.mark.parametrize("tag", list(SURFACE["versions"]))
def test_project_uses_only_names_of_each_supported_tensorrt(tag):
    problems = missing_in(SURFACE["versions"][tag], project_uses())
    assert not problems, f"TensorRT {tag} lacks names the project uses without a hasattr probe:\n" + "\n".join(problems)


def test_a_removed_name_is_caught_and_a_probe_exempts_it():
    source = (
        "import tensorrt as trt\n"
        "def run(context, stream):\n"
        "    context.execute_async_v2([], stream)\n"
        "    trt.BuilderFlag.FP16\n"
        "    if hasattr(trt.BuilderFlag, 'INT8'):\n"
        "        trt.BuilderFlag.INT8\n"
    )
    uses = [("example.py", line, owner, chain) for line, owner, chain in Uses(ast.parse(source)).found]
    problems = missing_in(SURFACE["versions"]["v11.1"], uses)
    assert problems == [
        "example.py:3: IExecutionContext.execute_async_v2 (IExecutionContext.execute_async_v2 is missing)",
        "example.py:4: BuilderFlag.FP16 (BuilderFlag.FP16 is missing)",
    ]
    assert missing_in(SURFACE["versions"]["v10.3.0"], uses) == [problems[0]]  # FP16 exists in 10.3, v2 does not
