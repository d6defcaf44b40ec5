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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge_lwdetr.artefacts import artefact_input_format, artefact_precision
from edge_lwdetr.backends import Backend
from edge_lwdetr.defaults import DEFAULT_CONF
from edge_lwdetr.device import gpu_info
from edge_lwdetr.labels import default_id2label
from edge_lwdetr.predict import model_input
from edge_lwdetr.processing import postprocess, to_model_input
from edge_lwdetr.quiet import polygraphy_quiet


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
        batch = model_input(backend, frame)[None]
        prepared = time.perf_counter()
        logits, boxes = backend.infer(batch)
        inferred = time.perf_counter()
        postprocess(logits[0], boxes[0], frame.shape[:2], backend.id2label, DEFAULT_CONF)
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

        from edge_lwdetr.engine.plugin import plugin_library
        from edge_lwdetr.engine.sidecar import read_sidecar

        sidecar = read_sidecar(path) or {}
        if plugin is not None or (sidecar.get("msda") == "plugin" and not sidecar.get("plugin_serialized")):
            ctypes.CDLL(str(plugin_library(plugin, sidecar.get("plugin"))), mode=ctypes.RTLD_GLOBAL)
        return TrtRunner(EngineFromBytes(path.read_bytes()), name=path.name)
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    from edge_lwdetr.msda_onnx import with_reference_functions
    from edge_lwdetr.artefacts import load_onnx

    from edge_lwdetr.backends.onnxruntime_backend import optimization_level

    model = with_reference_functions(load_onnx(path))
    session = SessionFromOnnx(
        model.SerializeToString(), providers=["CPUExecutionProvider"], graph_optimization_level=optimization_level(model)
    )
    return OnnxrtRunner(session, name=path.name)


@dataclass(frozen=True)
class Tolerance:
    """How far a detector may drift from its reference and still pass: per matched detection, not per tensor."""

    min_recall: float  # share of the reference's detections the model finds (same class, IoU >= 0.5)
    max_box_error_px: float  # 95th percentile of the largest corner error of a matched box, on 512 px frames
    max_score_error: float  # 95th percentile of the score difference of a matched detection


# Set from benchmarks/accuracy_gate.py on the bundled model (8 frames, 48 reference detections): FP16 measures
# recall 1.0, box 0.011 px, score 0.0006 (under 1/100 of its bounds); INT8 (ModelOpt entropy calibration) recall 1.0,
# box 3.8 px, score 0.31 (its scores drift while its boxes and ranking hold: 0.62 AP lost); a graph with one MSDA's
# sampling offsets zeroed: recall 0.85, box 14.3 px, score 0.88, which fails every precision's bounds.
TOLERANCES = {
    "fp32": Tolerance(min_recall=0.99, max_box_error_px=0.5, max_score_error=0.01),
    "fp16": Tolerance(min_recall=0.95, max_box_error_px=2.0, max_score_error=0.05),
    "int8": Tolerance(min_recall=0.9, max_box_error_px=6.0, max_score_error=0.4),
}
GATE_FRAME_SIZE = 512
GATE_CONF = 0.3  # the reference's detections above this are what must be found again
GATE_FALLBACK_TOP = 5  # where a reference finds nothing above GATE_CONF (random weights), its top 5 per frame


def gate_frames(count: int, seed: int = 3) -> list[np.ndarray]:
    """Synthetic scenes (shapes over clutter, boxes of many sizes), the same for every run."""
    from edge_lwdetr.synthetic.dataset import scene_at
    from edge_lwdetr.synthetic.shapes import render

    return [render(scene_at(seed, index), GATE_FRAME_SIZE) for index in range(count)]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box a [4] with boxes b [N, 4] (x1, y1, x2, y2)."""
    x1, y1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x2, y2 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(union, 1e-9)


def match_detections(reference: list, candidates: list, iou_min: float = 0.5) -> list[tuple]:
    """Greedy matching, best reference score first: each reference detection takes the unmatched candidate of its
    class with the highest IoU (at least `iou_min`). Returns (reference, candidate) pairs."""
    pairs, taken = [], set()
    boxes = np.array([c.box for c in candidates], np.float64).reshape(-1, 4)
    for ref in sorted(reference, key=lambda d: -d.score):
        ious = _iou(np.array(ref.box, np.float64), boxes) if len(boxes) else np.zeros(0)
        for index in np.argsort(-ious, kind="stable"):
            if ious[index] < iou_min:
                break
            if index not in taken and candidates[index].label == ref.label:
                taken.add(index)
                pairs.append((ref, candidates[index]))
                break
    return pairs


def detection_agreement(reference_outputs: list, model_outputs: list, frames: list, id2label: dict, tolerance: Tolerance) -> dict:
    """The gate: the reference's detections found again by the model, their box and score errors, and the verdict."""
    references, pairs = 0, []
    fallback = False
    per_frame = [
        (postprocess(r["logits"][0], r["pred_boxes"][0], f.shape[:2], id2label, 0.0),
         postprocess(m["logits"][0], m["pred_boxes"][0], f.shape[:2], id2label, 0.0))
        for r, m, f in zip(reference_outputs, model_outputs, frames)
    ]  # fmt: skip
    if not any(d.score > GATE_CONF for ref, _ in per_frame for d in ref):
        fallback = True
    for ref, got in per_frame:
        wanted = ref[:GATE_FALLBACK_TOP] if fallback else [d for d in ref if d.score > GATE_CONF]
        references += len(wanted)
        pairs += match_detections(wanted, got)
    corner = np.array([np.abs(np.subtract(r.box, m.box)).max() for r, m in pairs]) if pairs else np.zeros(0)
    score = np.array([abs(r.score - m.score) for r, m in pairs]) if pairs else np.zeros(0)
    recall = len(pairs) / references if references else 1.0
    box_p95 = float(np.percentile(corner, 95)) if len(corner) else 0.0
    score_p95 = float(np.percentile(score, 95)) if len(score) else 0.0
    return {
        "reference_detections": references,
        "reference_rule": f"top {GATE_FALLBACK_TOP} per frame" if fallback else f"score > {GATE_CONF}",
        "matched": len(pairs),
        "recall": recall,
        "box_error_px": {"p95": box_p95, "mean": float(corner.mean()) if len(corner) else 0.0,
                         "max": float(corner.max()) if len(corner) else 0.0},  # fmt: skip
        "score_error": {"p95": score_p95, "mean": float(score.mean()) if len(score) else 0.0,
                        "max": float(score.max()) if len(score) else 0.0},  # fmt: skip
        "tolerance": asdict(tolerance),
        "passed": bool(
            recall >= tolerance.min_recall
            and box_p95 <= tolerance.max_box_error_px
            and score_p95 <= tolerance.max_score_error
        ),
    }


def compare_accuracy(
    model: Path,
    reference: Path,
    plugin: Path | None,
    tolerance: Tolerance | None = None,
    samples: int = 8,
    precision: str | None = None,
) -> dict:
    """The artefact against the reference on synthetic frames, both run by polygraphy's Comparator: the verdict on
    matched detections (`detection_agreement`, tolerances per precision unless given), and the tensor statistics
    per output for diagnosis. `precision`: the model's, when the caller has read it already."""
    from polygraphy.comparator import Comparator

    from edge_lwdetr.artefacts import graph_metadata, load_onnx
    from edge_lwdetr.backends.onnxruntime_backend import check_graph

    reference_graph = load_onnx(reference)
    check_graph(reference_graph, reference)
    meta = graph_metadata(reference_graph)
    image_size = meta.image_size
    precision = precision or artefact_precision(model)
    tolerance = tolerance or TOLERANCES[precision]
    frames = gate_frames(samples)
    polygraphy_quiet()
    # Each side is fed in its own input format (a uint8 engine against an FP32 float reference): one run each.
    reference_runs, model_runs = (
        Comparator.run(
            [polygraphy_runner(path, path_plugin)],
            data_loader=[{"images": to_model_input(f, image_size, artefact_input_format(path))[None]} for f in frames],
        )[0][1]
        for path, path_plugin in ((reference, None), (model, plugin))
    )
    reference_runs = [{k: np.asarray(v, np.float32) for k, v in r.items()} for r in reference_runs]
    model_runs = [{k: np.asarray(v, np.float32) for k, v in r.items()} for r in model_runs]
    id2label = meta.id2label or default_id2label(reference_runs[0]["logits"].shape[-1])
    per_output = {}
    for name in ("logits", "pred_boxes"):
        errors = np.concatenate([np.abs(m[name] - r[name]).ravel() for r, m in zip(reference_runs, model_runs)])
        per_output[name] = {"max_abs": float(errors.max()), "mean_abs": float(errors.mean()), "median_abs": float(np.median(errors))}
    detections = detection_agreement(reference_runs, model_runs, frames, id2label, tolerance)
    return {
        "reference": str(reference),
        "precision": precision,
        "samples": samples,
        "frame_size": GATE_FRAME_SIZE,
        "passed": detections["passed"],
        "detections": detections,
        "outputs": per_output,
    }


PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg")  # formats matplotlib writes without extra packages


def plot(report: dict, path: Path) -> None:
    """Latency over the timed iterations (warm-up effects and throttling show as trends), its histogram, the p50/p99
    per stage, and the accuracy verdict in the title, as an image (PNG, SVG, PDF or JPG by the suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latency = report["latency"]
    samples = latency["host_samples_ms"]
    figure, (over_time, histogram, stages_axis) = plt.subplots(1, 3, figsize=(16, 4))
    over_time.plot(range(1, len(samples) + 1), samples, color="#3b7dd8", linewidth=0.8)
    over_time.axhline(latency["host_latency_ms"]["p50"], color="k", linestyle="--", label="p50")
    over_time.set(title="latency over time", xlabel="iteration", ylabel="ms")
    over_time.legend()
    histogram.hist(samples, bins=40, color="#3b7dd8")
    histogram.axvline(latency["host_latency_ms"]["p50"], color="k", linestyle="--", label="p50")
    histogram.axvline(latency["host_latency_ms"]["p99"], color="r", linestyle=":", label="p99")
    histogram.set(title=f"inference latency ({report['backend']})", xlabel="ms", ylabel="iterations")
    histogram.legend()
    stages = latency["stages_ms"]
    rows = np.arange(len(stages))
    stages_axis.barh(rows - 0.2, [s["p50"] for s in stages.values()], height=0.4, color="#e07b39", label="p50")
    stages_axis.barh(rows + 0.2, [s["p99"] for s in stages.values()], height=0.4, color="#8c3b12", label="p99")
    stages_axis.set_yticks(rows, list(stages))
    stages_axis.set(title="time per stage", xlabel="ms")
    stages_axis.invert_yaxis()
    stages_axis.legend()
    accuracy = report.get("accuracy")
    verdict = "" if accuracy is None else f"; accuracy {'PASS' if accuracy['passed'] else 'FAIL'} ({accuracy['precision']})"
    figure.suptitle(f"{Path(report['model']).name}: {latency['throughput_fps']:.1f} inferences/s{verdict}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
