"""Extract the TensorRT Python API's names, per release tag, from NVIDIA's public TensorRT repository.

    python tools/trt_api_surface.py --repo /path/to/TensorRT[.git] [--tags v10.3.0 v10.11 v11.0 v11.1] \
        [--output tests/data/trt_api_surface.json]

The names come from the pybind11 bindings (`python/src/**/*.cpp`: `py::class_` / `py::enum_` and their chained
`.def*` / `.value` calls, module-level `m.def` / `m.attr`) and from the Python package NVIDIA layers on them
(`python/packaging/bindings_wheel/tensorrt/__init__.py`: its top-level functions, classes and assignments). Only the
names are written, with the tag and commit they came from: facts about the API, none of NVIDIA's code.
`tests/test_trt_api_surface.py` checks the project's `tensorrt` attributes against the committed file.

This is a reader of pybind11 call chains, not a C++ parser: it follows the binding style of NVIDIA's files (one
`py::class_` / `py::enum_` statement with chained calls, or a named binding object whose calls follow). A name it
misses makes the test fail loudly on a correct use, never pass silently on a wrong one.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

DEFAULT_TAGS = ("v10.3.0", "v10.11", "v11.0", "v11.1")
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "trt_api_surface.json"
BINDINGS = "python/src"
PACKAGE_INIT = "python/packaging/bindings_wheel/tensorrt/__init__.py"

_MEMBER_CALLS = ("def", "def_static", "def_property", "def_property_readonly", "def_readwrite", "def_readonly",
                 "def_property_static", "def_property_readonly_static", "value")  # fmt: skip
_BINDING_START = re.compile(r"py::(class_|enum_)\s*<")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _strip_comments(source: str) -> str:
    """C++ source without comments; string literals kept (they hold the names)."""
    out, i, n = [], 0, len(source)
    while i < n:
        if source.startswith("//", i):
            i = source.find("\n", i)
            i = n if i < 0 else i
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif source[i] == '"':
            match = _STRING.match(source, i)
            end = match.end() if match else n
            out.append(source[i:end])
            i = end
        elif source[i] == "'":
            end = i + 1
            while end < n and source[end] != "'":
                end += 2 if source[end] == "\\" else 1
            out.append(source[i : end + 1])
            i = end + 1
        else:
            out.append(source[i])
            i += 1
    return "".join(out)


def _statements(source: str) -> list[str]:
    """Top-level statements: split at ';', '{' and '}' outside parentheses, brackets, brace initialisers
    (`binding{m, "Name"}`, an identifier right before the brace) and string literals. Lambda bodies sit inside a
    call's parentheses and stay whole; function and namespace bodies are split into their statements."""
    statements, stack, start, i = [], [], 0, 0
    while i < len(source):
        char = source[i]
        if char == '"':
            match = _STRING.match(source, i)
            i = match.end() if match else len(source)
            continue
        if char in "([" or (char == "{" and (stack or (i and (source[i - 1].isalnum() or source[i - 1] == "_")))):
            stack.append(char)
        elif char in ")]}" and stack:
            stack.pop()
        elif char in ";{}" and not stack:
            statements.append(source[start:i])
            start = i + 1
        i += 1
    statements.append(source[start:])
    return [s.strip() for s in statements if s.strip()]


def _depth0_calls(statement: str) -> list[tuple[str, str]]:
    """(member, first string argument) for each `.member("name", ...)` call made at the statement's own level,
    not inside another call's arguments."""
    member = re.compile(r"\.\s*(\w+)\s*(?=\()")
    name = re.compile(r"\(\s*\"((?:[^\"\\]|\\.)*)\"")
    calls, depth, i = [], 0, 0
    while i < len(statement):
        char = statement[i]
        if char == '"':
            match = _STRING.match(statement, i)
            i = match.end() if match else len(statement)
            continue
        if char == "." and depth == 0:
            match = member.match(statement, i)
            if match:
                argument = name.match(statement, match.end())
                if argument:
                    calls.append((match.group(1), argument.group(1)))
                i = match.end()  # at the call's '(': counted below
                continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        i += 1
    return calls


def _template_arguments(text: str) -> list[str]:
    """Top-level arguments of a template argument list (without the outer < >)."""
    arguments, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"<": 1, ">": -1, "(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            arguments.append(text[start:i].strip())
            start = i + 1
    arguments.append(text[start:].strip())
    return [a for a in arguments if a]


def _binding_head(statement: str) -> tuple[str | None, str, str, list[str]] | None:
    """For a statement creating a binding: (variable it is stored in or None, scope argument, Python name, C++
    template arguments: the bound type first, then bases, trampolines and holders)."""
    match = _BINDING_START.search(statement)
    if match is None:
        return None
    depth, i = 1, match.end()
    while i < len(statement) and depth:
        depth += {"<": 1, ">": -1}.get(statement[i], 0)
        i += 1
    template = _template_arguments(statement[match.end() : i - 1])
    rest = statement[i:]
    declared = re.match(r"\s*(\w+)\s*[({]", rest)  # py::class_<T> name{m, "Name", ...}
    variable = None
    if declared and declared.group(1) not in ("m",):
        variable = declared.group(1)
        rest = rest[declared.end() :]
    else:
        opened = re.match(r"\s*[({]", rest)
        if opened is None:
            return None
        rest = rest[opened.end() :]
        before = statement[: match.start()]
        assigned = re.search(r"(\w+)\s*=\s*$", before)  # auto name = py::class_<T>(m, "Name")
        variable = assigned.group(1) if assigned else None
    args = re.match(r"\s*(\w+)\s*,\s*\"((?:[^\"\\]|\\.)*)\"", rest)
    if args is None:
        return None
    return variable, args.group(1), args.group(2), template


def bindings_surface(sources: list[str]) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """({qualified class or enum name: member names}, {class: Python names of its bound base classes}); the
    surface's '' entry holds the module's own names."""
    surface: dict[str, set[str]] = {"": set()}
    variables: dict[str, str] = {}
    python_names: dict[str, str] = {}  # C++ type -> Python name
    template_of: dict[str, list[str]] = {}
    for source in sources:
        for statement in _statements(_strip_comments(source)):
            head = _binding_head(statement)
            owner = None
            if head is not None:
                variable, scope, name, template = head
                owner = name if scope == "m" else f"{variables.get(scope, scope)}.{name}"
                python_names.setdefault(re.sub(r"^(::)?nvinfer1::|^(::)?nvonnxparser::", "", template[0]), owner)
                template_of[owner] = template
                surface.setdefault(owner, set())
                if scope == "m":
                    surface[""].add(name)
                else:
                    surface.setdefault(variables.get(scope, scope), set()).add(name)
                if variable:
                    variables[variable] = owner
                calls = _depth0_calls(statement[_BINDING_START.search(statement).start() :])
            else:
                target = re.match(r"(\w+)\s*\.", statement)
                if target is None:
                    continue
                if target.group(1) == "m":
                    owner = ""
                    for member, name in _depth0_calls(statement[target.end() - 1 :]):
                        if member in ("def", "attr"):
                            surface[""].add(name)
                    continue
                if target.group(1) not in variables:
                    continue
                owner = variables[target.group(1)]
                calls = _depth0_calls(statement[target.end() - 1 :])
            for member, name in calls:
                if member in _MEMBER_CALLS:
                    surface[owner].add(name)
            # py::enum_ values are attributes of the enum; export_values() also puts them in the enclosing scope
            # (the module, or the class a nested enum belongs to: trt.ILogger.WARNING).
            if head is not None and re.search(r"\.\s*export_values\s*\(", statement):
                scope_owner = owner.rsplit(".", 1)[0] if "." in owner else ""
                surface[scope_owner].update(name for member, name in calls if member == "value")
    # Bases: the template arguments after the first that are themselves bound types (trampolines and holders are
    # not), as pybind11 makes them Python base classes.
    bases = {}
    for owner, template in template_of.items():
        known = [
            python_names[t]
            for t in (re.sub(r"^(::)?nvinfer1::|^(::)?nvonnxparser::", "", a) for a in template[1:])
            if t in python_names
        ]
        if known:
            bases[owner] = known
    return surface, bases


def package_names(init_source: str) -> set[str]:
    """Top-level names the Python package defines on top of the bindings."""
    names: set[str] = set()
    # The file is a template: its build fills ##TENSORRT_MODULE## (tensorrt, tensorrt_lean, ...) and other fields.
    source = re.sub(
        r"##(\w+)##", lambda m: "tensorrt" if m.group(1) == "TENSORRT_MODULE" else m.group(1).lower(), init_source
    )
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tensorrt"):
            names.update(alias.asname or alias.name for alias in node.names if alias.name != "*")
    return names


def _git(repo: Path, *args: str) -> str:
    git_dir = repo / ".git" if (repo / ".git").exists() else repo
    result = subprocess.run(["git", "--git-dir", str(git_dir), *args], check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()} (is it NVIDIA/TensorRT?)")
    return result.stdout


def tag_surface(repo: Path, tag: str) -> dict:
    commit = _git(repo, "rev-list", "-n", "1", tag).strip()
    files = [f for f in _git(repo, "ls-tree", "-r", "--name-only", tag, BINDINGS).split() if f.endswith(".cpp")]
    if not files:
        raise SystemExit(f"{tag} has no pybind11 sources under {BINDINGS}: pass a checkout of NVIDIA/TensorRT")
    surface, bases = bindings_surface([_git(repo, "show", f"{tag}:{f}") for f in sorted(files)])
    surface[""] |= package_names(_git(repo, "show", f"{tag}:{PACKAGE_INIT}"))
    return {
        "tag": tag,
        "commit": commit,
        "module": sorted(surface.pop("")),
        "classes": {name: sorted(members) for name, members in sorted(surface.items())},
        "bases": dict(sorted(bases.items())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, required=True, help="a clone (or bare git dir) of NVIDIA/TensorRT")
    parser.add_argument(
        "--tags", nargs="+", default=list(DEFAULT_TAGS), help=f"release tags ({' '.join(DEFAULT_TAGS)})"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the JSON to write")
    args = parser.parse_args(argv)
    data = {
        "source": "https://github.com/NVIDIA/TensorRT",
        "extracted_by": "tools/trt_api_surface.py",
        "files": [f"{BINDINGS}/**/*.cpp", PACKAGE_INIT],
        "versions": {tag: tag_surface(args.repo, tag) for tag in args.tags},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    for tag, version in data["versions"].items():
        members = sum(len(m) for m in version["classes"].values())
        print(f"{tag} ({version['commit'][:10]}): {len(version['module'])} module names, "
              f"{len(version['classes'])} classes and enums, {members} members")  # fmt: skip
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
