"""Streaming runtime with ONNX Runtime on the CPU: end-to-end FPS over model-only FPS, and RSS over a long soak.

    python benchmarks/runtime_fps.py --variant tiny --imgsz 256 --frames 300 --soak-frames 10000

Model-only: the ONNX Runtime session alone on one preprocessed frame. End to end: `run_stream` on a generated
video file (capture, preprocess, inference, postprocess, overlay, MP4 and JSONL writing, overlapped). Soak: a
generated source of --soak-frames frames through the same pipeline with a JSONL sink; RSS after a warm-up and at the
end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hf_models import save_hf_model  # noqa: E402

from edge_lwdetr.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from edge_lwdetr.export.onnx_export import export_onnx  # noqa: E402
from edge_lwdetr.processing import to_model_input  # noqa: E402
from edge_lwdetr.runtime.pipeline import run_stream  # noqa: E402
from edge_lwdetr.runtime.sinks import JsonlSink, VideoSink  # noqa: E402
from edge_lwdetr.runtime.sources import open_source  # noqa: E402


def rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def frame(i: int) -> np.ndarray:
    image = np.full((480, 640, 3), 60, np.uint8)
    cv2.rectangle(image, (20 + i % 400, 60), (180 + i % 400, 220), (0, 0, 255), -1)
    cv2.circle(image, (480, 330), 70, (255, 140, 0), -1)
    return image


class GeneratedSource:
    """A file-like (not live) source of generated frames, without disk I/O."""

    live, fps, uri = False, 30.0, "generated"

    def __init__(self, count: int):
        self.count, self.index, self.frames = count, 0, [frame(i) for i in range(50)]

    def read(self):
        if self.index >= self.count:
            return None
        self.index += 1
        return self.frames[self.index % 50]

    def close(self):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="tiny")
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--soak-frames", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_hf_model(args.variant, tmp / "hf")
        export_onnx(tmp / "hf", tmp / "model.onnx", imgsz=args.imgsz, msda="native")
        backend = OnnxRuntimeBackend(tmp / "model.onnx", threads=args.threads)

        batch = to_model_input(frame(0), args.imgsz)[None]
        for _ in range(5):
            backend.infer(batch)
        start = time.perf_counter()
        for _ in range(args.frames):
            backend.infer(batch)
        model_fps = args.frames / (time.perf_counter() - start)

        video = tmp / "in.avi"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
        for i in range(args.frames):
            writer.write(frame(i))
        writer.release()
        sinks = [VideoSink(tmp / "out.mp4", 30), JsonlSink(tmp / "out.jsonl")]
        summary = run_stream(backend, open_source(str(video)), sinks, 0.3, threading.Event())
        e2e_fps = summary.fps

        warm = GeneratedSource(200)
        run_stream(backend, warm, [JsonlSink(tmp / "warm.jsonl")], 0.3, threading.Event())
        rss_start = rss_mib()
        soak = run_stream(backend, GeneratedSource(args.soak_frames), [JsonlSink(tmp / "soak.jsonl")], 0.3, threading.Event())
        rss_end = rss_mib()

    print(f"LW-DETR-{args.variant} {args.imgsz} px, ONNX Runtime CPU ({args.threads} threads), 640x480 frames")
    print(f"  model-only {model_fps:.1f} FPS; end to end {e2e_fps:.1f} FPS (file -> MP4 + JSONL); ratio {e2e_fps / model_fps:.3f}")
    for stage, stats in summary.stages.items():
        print(f"    {stage:<12} p50 {stats['p50']:7.2f} ms  p99 {stats['p99']:7.2f} ms")
    print(f"  soak: {soak.written} frames in {soak.seconds:.0f} s; RSS {rss_start:.1f} -> {rss_end:.1f} MiB "
          f"(growth {rss_end - rss_start:+.1f} MiB)")


if __name__ == "__main__":
    main()
