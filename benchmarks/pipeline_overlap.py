"""How close the streaming pipeline comes to the model's own rate: `run_stream(s)` with a stand-in model that holds
the inference thread for a fixed time without using the CPU (a sleep, as waiting on a GPU stream does).

    python benchmarks/pipeline_overlap.py                     # 720p and 1080p, 1 and 4 sources, without and with --save
    python benchmarks/pipeline_overlap.py --sizes 720 --sources 1 --infer-ms 5 --frames 150

Generated H.264 files (moving shapes on a gradient, 30 FPS) are decoded, prepared, "inferred", post-processed and
drawn; with --save each source's annotated video is also encoded (x264). It prints:
- FPS: the end-to-end rate from the first batch into the model to the last out (a stream's steady rate); ratio:
  that over the stand-in's ideal FPS (batch / infer time: the frames of all sources go in one call; with
  --per-frame the stand-in holds the time per frame of the batch, as an engine whose time grows with the batch,
  and the ideal is 1 / infer time). whole: the ratio over the whole run, start-up and teardown included; start ms:
  from the start of the run to the first batch (the decoders' start-up: FFmpeg's frame threads fill before the
  first frame comes out).
- hold: the stand-in's mean time per call (per frame with --per-frame), in ms. Its sleep is shortened by how late a
  sleep wakes on the idle machine (its timer, measured before the runs), so that an unloaded call holds --infer-ms;
  wake-ups made later by the pipeline's threads holding the cores (as for a thread waiting on a GPU) still count.
  busy: the share of the steady run the stand-in was held.
- the CPU time the run spent per frame (all threads) and the rate the machine's cores could sustain at that cost
  (cores / CPU time per frame: the ratio cannot pass CPU-bound FPS / ideal), and the per-stage p50 times.
The run time is bounded (about a minute and a half by default on a 2-core machine).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from edge_lwdetr.runtime import pipeline
from edge_lwdetr.runtime.sinks import VideoSink
from edge_lwdetr.runtime.sources import open_source

SIZES = {720: (1280, 720), 1080: (1920, 1080)}


class SleepBackend:
    """A stand-in model (not a model): each call holds the calling thread for `infer_ms` without CPU work, whatever
    the batch, and reports three confident boxes per frame (so drawing costs what it costs with detections)."""

    name, variant, device = "stand-in (sleep)", "none", "none"

    def __init__(
        self, infer_ms: float, image_size: int, input_format: str = "float", per_frame: bool = False,
        timer_late_s: float = 0.0,
    ):  # fmt: skip
        self.infer_s, self.image_size, self.input_format, self.stage_ms = infer_ms / 1000, image_size, input_format, {}
        self.per_frame = per_frame  # hold infer_ms per frame of the batch (an engine whose time grows with it)
        self.timer_late_s = timer_late_s  # how late a sleep wakes on this machine when it is idle (timer_lateness)
        self.id2label = {0: "thing", 1: "other"}
        self.first_call: float | None = None  # when the first batch came (perf_counter): the end of the start-up
        self.last_return = 0.0  # when the last batch left: the end of the steady run (the sinks' teardown follows)
        self.held_s, self.calls, self.frames = 0.0, 0, 0

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        begin = time.perf_counter()
        self.first_call = self.first_call or begin
        hold = self.infer_s * (len(images) if self.per_frame else 1)
        # Ask for less by the idle machine's own timer lateness (0.125 ms here), so that an unloaded call holds
        # what it stands for; wake-ups made later by the pipeline's threads holding the cores still count.
        time.sleep(max(hold - self.timer_late_s, 0.0))
        logits = np.full((len(images), 30, 2), -9.0, np.float32)
        logits[:, :3, 0] = 4.0
        boxes = np.tile(
            np.float32([[0.3, 0.3, 0.2, 0.2], [0.6, 0.5, 0.3, 0.2], [0.5, 0.8, 0.1, 0.1]] + [[0.5] * 4] * 27),
            (len(images), 1, 1),
        )
        self.last_return = time.perf_counter()
        self.held_s += self.last_return - begin
        self.calls, self.frames = self.calls + 1, self.frames + len(images)
        self.stage_ms = {"infer": (self.last_return - begin) * 1000}
        return logits, boxes

    def close(self) -> None:
        pass


def timer_lateness(seconds: float, samples: int = 40) -> float:
    """How much longer than asked a sleep lasts on this machine when nothing else runs (median, in seconds)."""
    late = []
    for _ in range(samples):
        begin = time.perf_counter()
        time.sleep(seconds)
        late.append(time.perf_counter() - begin - seconds)
    return float(np.median(late))


def generate(path: Path, size: tuple[int, int], frames: int, fps: int = 30) -> Path:
    """An H.264 file of moving shapes on a gradient (PyAV, as a camera's recording would be encoded)."""
    import av

    width, height = size
    ramp = np.linspace(40, 200, width, dtype=np.float32)
    background = np.dstack([np.tile(ramp, (height, 1))] * 3).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "g": str(fps)}
        for i in range(frames):
            image = background.copy()
            x = (i * width // frames) % (width - width // 5)
            cv2.rectangle(image, (x, height // 4), (x + width // 6, height // 2), (0, 0, 230), -1)
            cv2.circle(image, (width - x - width // 10, height * 2 // 3), height // 8, (230, 120, 0), -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def measure(
    video: Path, sources: int, save: Path | None, infer_ms: float, imgsz: int, input_format: str, per_frame: bool,
    timer_late_s: float,
) -> dict:  # fmt: skip
    backend = SleepBackend(infer_ms, imgsz, input_format, per_frame, timer_late_s)
    opened = [open_source(str(video), log=lambda message: None) for _ in range(sources)]
    sinks = [
        [VideoSink(save.with_name(f"{save.stem}.{k}.mp4"), 30, log=lambda m: None)] if save else []
        for k in range(sources)
    ]
    stop, cpu, started = threading.Event(), time.process_time(), time.perf_counter()
    if sources == 1:
        summary = pipeline.run_stream(backend, opened[0], sinks[0], 0.3, stop)
    else:
        feeds = [pipeline.Feed(source, k_sinks) for source, k_sinks in zip(opened, sinks)]
        summary = pipeline.run_streams(backend, feeds, 0.3, stop)
    ended = time.perf_counter()
    cpu_ms = (time.process_time() - cpu) * 1000 / max(summary.written, 1)  # every thread of the run, per frame
    ideal = 1000 / infer_ms if per_frame else sources / (infer_ms / 1000)
    steady_s = backend.last_return - backend.first_call  # from the first batch in to the last one out
    steady = summary.written / steady_s
    return {
        "cpu_ms": cpu_ms,
        "cpu_bound": (os.cpu_count() or 1) * 1000 / cpu_ms,
        "fps": steady,
        "ratio": steady / ideal,
        "whole": summary.written / (ended - started) / ideal,
        "start_ms": (backend.first_call - started) * 1000,
        "ideal": ideal,
        "frames": summary.written,
        "hold": backend.held_s * 1000 / (backend.frames if per_frame else backend.calls),
        "busy": backend.held_s / steady_s,  # the model's share
        "stages": {stage: stats["p50"] for stage, stats in summary.stages.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[720, 1080], choices=sorted(SIZES))
    parser.add_argument("--sources", type=int, nargs="+", default=[1, 4], help="sources per run (batched together)")
    parser.add_argument("--infer-ms", type=float, default=5.0, help="the stand-in's time per call (5)")
    parser.add_argument("--imgsz", type=int, default=640, help="the model input the frames are prepared for (640)")
    parser.add_argument("--frames", type=int, default=150, help="frames per generated file (150: 5 s at 30 FPS)")
    parser.add_argument("--no-save", action="store_true", help="skip the runs that encode the annotated videos")
    parser.add_argument("--per-frame", action="store_true",
                        help="the stand-in holds --infer-ms per frame of a batch (default: per call, whatever the "
                        "batch)")
    parser.add_argument("--input-format", choices=["float", "uint8"], default="float",
                        help="the model input prepared: float (RGB NCHW in [0, 1]) or uint8 (export --input-format "
                        "uint8: resized BGR frames only)")  # fmt: skip
    args = parser.parse_args()

    print(
        f"stand-in model: {args.infer_ms:g} ms per {'frame' if args.per_frame else 'call'} (a sleep), "
        f"{args.input_format} input {args.imgsz} px; "
        f"{args.frames} frames per source"
    )
    print(f"{os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f} at the start")
    timer_late_s = timer_lateness(args.infer_ms / 1000)
    late_ms = timer_late_s * 1000
    print(f"a {args.infer_ms:g} ms sleep wakes {late_ms:.3f} ms late at rest (the stand-in sleeps less by that)")
    print(f"{'video':<6} {'sources':>7} {'save':>5} {'FPS':>7} {'ideal':>6} {'ratio':>6} {'whole':>6} {'start ms':>8} "
          f"{'hold':>5} {'busy':>5} {'CPU ms/frame':>12} {'CPU-bound FPS':>13}   stage p50 ms")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for height in args.sizes:
            video = generate(Path(tmp) / f"{height}p.mp4", SIZES[height], args.frames)
            for sources in args.sources:
                for save in [False] if args.no_save else [False, True]:
                    result = measure(
                        video, sources, Path(tmp) / "out.mp4" if save else None, args.infer_ms, args.imgsz,
                        args.input_format, args.per_frame, timer_late_s,
                    )
                    stages = "  ".join(f"{stage} {ms:.2f}" for stage, ms in result["stages"].items())
                    r = result
                    print(
                        f"{height}p   {sources:>7} {'yes' if save else 'no':>5} {r['fps']:7.1f} {r['ideal']:6.0f} "
                        f"{r['ratio']:6.3f} {r['whole']:6.3f} {r['start_ms']:8.0f} {r['hold']:5.2f} {r['busy']:5.2f} "
                        f"{r['cpu_ms']:12.2f} {r['cpu_bound']:13.0f}   {stages}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
