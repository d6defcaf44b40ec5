"""How fast and how accurate an artefact is: latency per stage, accuracy against a reference (polygraphy), and the
environment the numbers were measured in.

Latency: host latency around each inference call, and the backend's own stage times (CUDA events around H2D,
compute and D2H on TensorRT; the compute time is the figure trtexec calls GPU Compute Time). Accuracy: polygraphy's
Comparator runs the reference (ONNX Runtime, FP32) and the artefact on the same inputs.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from edge_lwdetr.backends import Backend
from edge_lwdetr.device import gpu_info
from edge_lwdetr.processing import postprocess, to_model_input


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def environment() -> dict:
    """Versions, GPU or SoC, CPU; on a Jetson the L4T release, nvpmodel mode, clocks and a throttling hint."""
    env = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": next((l.split(":", 1)[1].strip() for l in (_read("/proc/cpuinfo") or "").splitlines() if l.startswith("model name")), None),
        "tensorrt": _version("tensorrt"),
        "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
        "gpu": gpu_info(),
    }
    try:
        driver = ctypes.c_int()
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(driver)) == 0:
            env["cuda_driver"] = f"{driver.value // 1000}.{driver.value % 1000 // 10}"
    except OSError:
        env["cuda_driver"] = None
    release = _read("/etc/nv_tegra_release")
    if release:  # Jetson
        jetson = {"l4t": release.splitlines()[0]}
        try:
            jetson["nvpmodel"] = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            jetson["nvpmodel"] = None
        governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
        gpu_freq = next(Path("/sys/class/devfreq").glob("*gpu*"), None) or next(Path("/sys/class/devfreq").glob("*ga10b*"), None)
        cur = _read(f"{gpu_freq}/cur_freq") if gpu_freq else None
        top = _read(f"{gpu_freq}/max_freq") if gpu_freq else None
        jetson["cpu_governor"] = governor
        jetson["gpu_freq_hz"] = {"current": cur, "max": top}
        # jetson_clocks pins the GPU at its maximum; below it, DVFS or thermal throttling is lowering the clock.
        jetson["clocks_pinned"] = cur is not None and cur == top
        jetson["throttling_hint"] = (
            None if cur is None else "GPU below its maximum clock: run `sudo jetson_clocks`, check tegrastats" if cur != top else "none"
        )
        env["jetson"] = jetson
    return env


def stats(values: list[float]) -> dict[str, float]:
    array = np.asarray(values)
    p50, p90, p99 = np.percentile(array, [50, 90, 99])
    return {"mean": float(array.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99), "min": float(array.min())}


def sample_frames(count: int, seed: int = 0) -> list[np.ndarray]:
    """720p frames with coloured shapes on a textured background (inputs for accuracy and stage timings)."""
    import cv2

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        frame = rng.integers(30, 100, (720, 1280, 3), dtype=np.uint8)
        for _ in range(6):
            x, y = int(rng.integers(0, 1100)), int(rng.integers(0, 560))
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            cv2.rectangle(frame, (x, y), (x + int(rng.integers(40, 180)), y + int(rng.integers(40, 160))), colour, -1)
        frames.append(frame)
    return frames


def measure_latency(backend: Backend, iterations: int, warmup: int) -> dict:
    frame = sample_frames(1)[0]
    pre, post, host = [], [], []
    stages: dict[str, list[float]] = {}
    for i in range(warmup + iterations):
        begin = time.perf_counter()
        batch = to_model_input(frame, backend.image_size)[None]
        prepared = time.perf_counter()
        logits, boxes = backend.infer(batch)
        inferred = time.perf_counter()
        postprocess(logits[0], boxes[0], frame.shape[:2], backend.id2label, 0.3)
        done = time.perf_counter()
        if i < warmup:
            continue
        pre.append((prepared - begin) * 1000)
        host.append((inferred - prepared) * 1000)
        post.append((done - inferred) * 1000)
        for stage, ms in backend.stage_ms.items():
            stages.setdefault(stage, []).append(ms)
    return {
        "iterations": iterations,
        "warmup": warmup,
        "host_latency_ms": stats(host),  # H2D + compute + D2H as the caller sees them
        "host_samples_ms": [round(v, 4) for v in host],
        "compute_ms": stats(stages.get("infer", host)),  # the backend's own timing (CUDA events on TensorRT)
        "throughput_fps": 1000 / float(np.mean(host)),
        "stages_ms": {
            "preprocess": stats(pre),
            **{stage: stats(values) for stage, values in stages.items()},
            "postprocess": stats(post),
        },
    }


def polygraphy_runner(path: Path, plugin: Path | None):
    """A polygraphy runner for an ONNX file (ONNX Runtime, CPU, plugin nodes through the reference body) or an
    engine (TensorRT, after loading the plugin library)."""
    if path.suffix in (".engine", ".plan"):
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        if plugin is not None:
            ctypes.CDLL(str(plugin), mode=ctypes.RTLD_GLOBAL)
        return TrtRunner(EngineFromBytes(path.read_bytes()), name=path.name)
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    from edge_lwdetr.export.msda_onnx import with_reference_functions
    from edge_lwdetr.export.rewrite import load_onnx

    model = with_reference_functions(load_onnx(path)).SerializeToString()
    return OnnxrtRunner(SessionFromOnnx(model, providers=["CPUExecutionProvider"]), name=path.name)


def compare_accuracy(
    model: Path, reference: Path, image_size: int, plugin: Path | None, atol: float, rtol: float, samples: int = 4
) -> dict:
    """The artefact against the reference on generated frames: polygraphy's verdict at atol/rtol (median error),
    per-output error statistics, and what they mean for detections (top-100 agreement, mean box L1)."""
    from polygraphy.comparator import Comparator, CompareFunc

    from edge_lwdetr.backends.onnxruntime_backend import check_graph
    from edge_lwdetr.export.rewrite import load_onnx

    check_graph(load_onnx(reference), reference)
    feeds = [{"images": to_model_input(frame, image_size)[None]} for frame in sample_frames(samples, seed=1)]
    runners = [polygraphy_runner(reference, None), polygraphy_runner(model, plugin)]
    results = Comparator.run(runners, data_loader=feeds)
    verdict = Comparator.compare_accuracy(
        results, compare_func=CompareFunc.simple(atol=atol, rtol=rtol, check_error_stat="median")
    )
    (_, reference_runs), (_, model_runs) = results
    per_output = {}
    for name in ("logits", "pred_boxes"):
        errors = np.concatenate([np.abs(np.asarray(m[name], np.float32) - np.asarray(r[name], np.float32)).ravel()
                                 for r, m in zip(reference_runs, model_runs)])  # fmt: skip
        per_output[name] = {"max_abs": float(errors.max()), "mean_abs": float(errors.mean()), "median_abs": float(np.median(errors))}
    agreement = []
    for r, m in zip(reference_runs, model_runs):
        top_r = set(np.argsort(-np.asarray(r["logits"])[0].ravel())[:100])
        top_m = set(np.argsort(-np.asarray(m["logits"])[0].ravel())[:100])
        agreement.append(len(top_r & top_m) / 100)
    return {
        "reference": str(reference),
        "samples": samples,
        "tolerance": {"atol": atol, "rtol": rtol, "error_stat": "median"},
        "passed": bool(verdict),
        "outputs": per_output,
        "top100_agreement": float(np.mean(agreement)),
    }


PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg")  # formats matplotlib writes without extra packages


def plot(report: dict, path: Path) -> None:
    """Latency histogram (host) and the per-stage breakdown (mean ms), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latency = report["latency"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.hist(latency["host_samples_ms"], bins=40, color="#3b7dd8")
    left.axvline(latency["host_latency_ms"]["p50"], color="k", linestyle="--", label="p50")
    left.axvline(latency["host_latency_ms"]["p99"], color="r", linestyle=":", label="p99")
    left.set(title=f"inference latency ({report['backend']})", xlabel="ms", ylabel="iterations")
    left.legend()
    stages = latency["stages_ms"]
    right.barh(list(stages), [s["mean"] for s in stages.values()], color="#e07b39")
    right.set(title="mean time per stage", xlabel="ms")
    right.invert_yaxis()
    figure.suptitle(f"{Path(report['model']).name}: {latency['throughput_fps']:.1f} inferences/s")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
