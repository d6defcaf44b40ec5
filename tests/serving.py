"""A real `edge-lwdetr serve` on free local ports, for the serving tests and the load benchmark.

The server runs in the serve environment (nvidia-pytriton pins numpy<2; install.sh makes .venv-serve); the tests
and the client run here. Every wait is bounded, so a broken server fails a test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def serve_python() -> Path | None:
    """The serve environment's interpreter: $EDGE_LWDETR_SERVE_PYTHON, else .venv-serve/bin/python, if it has PyTriton."""
    candidate = Path(os.environ.get("EDGE_LWDETR_SERVE_PYTHON") or REPO / ".venv-serve" / "bin" / "python")
    if not candidate.is_file():
        return None
    found = subprocess.run([candidate, "-c", "import pytriton, edge_lwdetr"], capture_output=True, timeout=120, check=False)
    return candidate if found.returncode == 0 else None


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Server:
    """`edge-lwdetr serve MODEL` in the serve environment, until stop()."""

    def __init__(self, python: Path, model: Path, log: Path, *options: str, start_timeout: float = 180.0):
        self.http, self.grpc, self.metrics = free_ports(3)
        command = [str(python), "-m", "edge_lwdetr", "serve", "--model", str(model), "--http-port", str(self.http),
                   "--grpc-port", str(self.grpc), "--metrics-port", str(self.metrics), *options]  # fmt: skip
        self._start(command, log, None, start_timeout)

    def _start(self, command: list[str], log: Path, env: dict | None, start_timeout: float) -> None:
        self.url = f"triton://127.0.0.1:{self.grpc}/lwdetr"  # gRPC: needs tritonclient (the `client` extra)
        self.http_url = f"triton+http://127.0.0.1:{self.http}/lwdetr"  # HTTP: the base install
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + start_timeout
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not become ready; its log:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)

    def _ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.http}/v2/models/lwdetr/ready"
            return urllib.request.urlopen(url, timeout=5).status == 200
        except OSError:
            return False

    def metric(self, name: str) -> float:
        """A model metric from the metrics port (the statistics endpoint needs a token PyTriton keeps)."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10).read().decode()
        found = re.search(rf'^{name}{{[^}}]*model="lwdetr"[^}}]*}} (\S+)$', text, re.MULTILINE)
        if not found:
            raise AssertionError(f"no {name} for lwdetr in the metrics:\n{text[:2000]}")
        return float(found.group(1))

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 90.0) -> int:
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        return self.process.returncode


class RepositoryServer(Server):
    """The tritonserver that nvidia-pytriton bundles, on a repository from `export --format triton`, loading its
    CPU model `lwdetr` (the GPU model waits for a GPU server). Set up as PyTriton sets it up: the Python-backend stub
    for this Python beside the backend, the serve environment's libraries and packages on the paths."""

    def __init__(self, python: Path, repository: Path, scratch: Path, start_timeout: float = 180.0):
        where = subprocess.run([python, "-c", _WHERE], capture_output=True, text=True, timeout=120, check=True)
        paths = json.loads(where.stdout)
        backends = scratch / "backends"
        shutil.copytree(Path(paths["server"]) / "backends", backends)
        shutil.copy(paths["stub"], backends / "python" / "triton_python_backend_stub")
        self.http, self.grpc, self.metrics = free_ports(3)
        command = [str(Path(paths["server"]) / "bin" / "tritonserver"), f"--model-repository={repository}",
                   f"--backend-directory={backends}", "--model-control-mode=explicit", "--load-model=lwdetr",
                   "--http-address=127.0.0.1", f"--http-port={self.http}", "--grpc-address=127.0.0.1",
                   f"--grpc-port={self.grpc}", "--allow-metrics=false", "--exit-timeout-secs=30",
                   # Python-backend shared memory is named; the default name collides with other servers here.
                   f"--backend-config=python,shm-region-prefix-name=edge_lwdetr_{os.getpid()}_{self.http}_"]  # fmt: skip
        # As PyTriton starts it: the stub takes its environment from the first `python` on PATH (PYTHONPATH into
        # another environment's site-packages gives its NumPy arrays zero strides).
        # This tree first on PYTHONPATH: the model imports edge_lwdetr, the one under test (not another checkout's).
        env = {**os.environ, "LD_LIBRARY_PATH": f"{paths['libdir']}:{paths['libs']}",
               "PATH": f"{Path(python).parent}:{os.environ['PATH']}",
               "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
        self._start(command, scratch / "tritonserver.log", env, start_timeout)


_WHERE = """
import json, sys, sysconfig
from pytriton.utils.distribution import get_libs_path, get_root_module_path, get_stub_path
print(json.dumps({"server": str(get_root_module_path() / "tritonserver"), "libs": str(get_libs_path()),
    "stub": str(get_stub_path(f"{sys.version_info.major}.{sys.version_info.minor}")),
    "libdir": sysconfig.get_config_var("LIBDIR")}))
"""


def grpc_client_missing() -> str | None:
    """Why the gRPC client cannot run here, or None (tritonclient[grpc] is the `client` extra)."""
    try:
        import tritonclient.grpc  # noqa: F401
    except ImportError as error:
        return f"no tritonclient[grpc] here ({error}): pip install -e '.[client]'"
    return None


def bundled_onnx(folder: Path) -> Path:
    """The bundled model's ONNX export, made once per folder."""
    path = folder / "bundled.onnx"
    if not path.is_file():
        subprocess.run([sys.executable, "-m", "edge_lwdetr", "export", "--output", str(path)], check=True,
                       capture_output=True, timeout=600)  # fmt: skip
    return path
