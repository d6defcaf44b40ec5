"""Load on `edge-lwdetr serve`: N concurrent clients, a fixed number of requests each, with and without dynamic
batching; throughput, p50/p99 latency and the batch sizes the server formed.

    python benchmarks/serve_load.py --clients 1 4 16 --requests 8 [--protocol http|grpc]

Starts the server itself on free 127.0.0.1 ports from the serve environment (.venv-serve, made by install.sh), once
with --max-batch 8 and once with --max-batch 1, with the bundled model on ONNX Runtime. Every request and wait is
bounded (--request-timeout, --deadline).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serving import Server, bundled_onnx, serve_python

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.serving import Client
from edge_lwdetr.synthetic.dataset import scene_at
from edge_lwdetr.synthetic.shapes import render


def load(server: Server, url: str, clients: int, requests: int, timeout: float, deadline: float) -> dict:
    frame = render(scene_at(0, 0), 640, 480)
    latencies: list[float] = []
    failures: list[str] = []
    executions_before = server.metric("nv_inference_exec_count")
    requests_before = server.metric("nv_inference_request_success")

    def one_client() -> None:
        with Client(url, timeout=timeout) as client:
            for _ in range(requests):
                if time.monotonic() > deadline:
                    failures.append("deadline")
                    return
                start = time.perf_counter()
                try:
                    client.predict(frame)
                    latencies.append(time.perf_counter() - start)
                except EdgeLwdetrError as error:
                    failures.append(str(error))

    threads = [threading.Thread(target=one_client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 1))
    wall = time.perf_counter() - start
    executions = server.metric("nv_inference_exec_count") - executions_before
    served = server.metric("nv_inference_request_success") - requests_before
    ms = np.array(latencies) * 1000
    return {
        "clients": clients, "requests": len(latencies), "failed": len(failures), "throughput": len(latencies) / wall,
        "p50": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        "p99": float(np.percentile(ms, 99)) if len(ms) else float("nan"),
        "mean_batch": served / executions if executions else float("nan"),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=8, help="requests per client (8)")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="seconds one request may take (120)")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds the whole run may take (600)")
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http",
                        help="http (triton+http://, default) or grpc (triton://, needs the client extra)")  # fmt: skip
    args = parser.parse_args()
    python = serve_python()
    if python is None:
        print("no serve environment with nvidia-pytriton: run `bash install.sh` (it makes .venv-serve)", file=sys.stderr)
        return 2
    deadline = time.monotonic() + args.deadline
    print("| dynamic batching | clients | requests | failed | req/s | p50 ms | p99 ms | mean batch |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        model = bundled_onnx(Path(folder))
        for max_batch in (8, 1):
            server = Server(python, model, Path(folder) / f"serve{max_batch}.log", "--max-batch", str(max_batch))
            try:
                for clients in args.clients:
                    url = server.url if args.protocol == "grpc" else server.http_url
                    r = load(server, url, clients, args.requests, args.request_timeout, deadline)
                    print(f"| {'max 8' if max_batch > 1 else 'off'} | {r['clients']} | {r['requests']} | {r['failed']} | "
                          f"{r['throughput']:.1f} | {r['p50']:.0f} | {r['p99']:.0f} | {r['mean_batch']:.2f} |", flush=True)  # fmt: skip
            finally:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
