"""The streaming pipeline: a capture thread, the inference loop, and a sink thread, joined by bounded queues.

Live sources keep only the newest frame (a slow model never falls behind a camera: older frames are dropped and
counted); files process every frame in order. Stopping (end of source, --max-frames, SIGINT/SIGTERM, `q` in the
window) drains what was inferred and closes every sink.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_lwdetr.backends import Backend
from edge_lwdetr.draw import draw_detections
from edge_lwdetr.processing import postprocess, to_model_input
from edge_lwdetr.runtime.sinks import detection_record
from edge_lwdetr.runtime.stats import StageTimes

_END = object()


@dataclass
class RunSummary:
    frames: int = 0
    dropped: int = 0
    seconds: float = 0.0
    stages: dict = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Captured:
    index: int
    time_s: float
    frame: np.ndarray
    capture_ms: float


def run_stream(
    backend: Backend,
    source,
    sinks: list,
    conf: float,
    stop: threading.Event,
    max_frames: int | None = None,
) -> RunSummary:
    summary, times = RunSummary(), StageTimes()
    captured: queue.Queue = queue.Queue(maxsize=1 if source.live else 4)
    processed: queue.Queue = queue.Queue(maxsize=4)
    started = time.perf_counter()
    sink_errors: list[BaseException] = []

    def capture() -> None:
        index = 0
        while not stop.is_set():
            begin = time.perf_counter()
            frame = source.read()
            if frame is None:
                break
            # Files are timed by their frame rate (reproducible), live sources by the wall clock.
            time_s = index / source.fps if not source.live and source.fps else begin - started
            item = _Captured(index, time_s, frame, (time.perf_counter() - begin) * 1000)
            index += 1
            if source.live:  # keep the newest frame only
                try:
                    captured.get_nowait()
                    summary.dropped += 1
                except queue.Empty:
                    pass
                captured.put(item)
            else:
                while not stop.is_set():
                    try:
                        captured.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        _put_end(captured)

    def sink() -> None:
        fps, last = 0.0, None
        while True:
            item = processed.get()
            if item is _END:
                return
            frame, record, detections = item
            begin = time.perf_counter()
            if last is not None:  # end-to-end rate as the viewer sees it, smoothed
                rate = 1 / max(begin - last, 1e-6)
                fps = 0.9 * fps + 0.1 * rate if fps else rate
            last = begin
            try:
                annotated = overlay(frame, detections, fps) if any(s.wants_image for s in sinks) else frame
                for s in sinks:
                    s.write(annotated, record)
            except BaseException as error:  # noqa: BLE001 - reported by the inference thread
                sink_errors.append(error)
                stop.set()
                return
            times.add({"sink": (time.perf_counter() - begin) * 1000})

    threads = [threading.Thread(target=capture, daemon=True), threading.Thread(target=sink, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        while max_frames is None or summary.frames < max_frames:
            item = captured.get()
            if item is _END or stop.is_set():
                break
            timings = {"capture": item.capture_ms}
            begin = time.perf_counter()
            batch = to_model_input(item.frame, backend.image_size)[None]
            timings["preprocess"] = (time.perf_counter() - begin) * 1000
            logits, boxes = backend.infer(batch)
            timings.update(backend.stage_ms)
            begin = time.perf_counter()
            detections = postprocess(logits[0], boxes[0], item.frame.shape[:2], backend.id2label, conf)
            timings["postprocess"] = (time.perf_counter() - begin) * 1000
            times.add(timings)
            processed.put((item.frame, detection_record(item.index, item.time_s, detections, timings), detections))
            summary.frames += 1
    finally:
        stop.set()
        processed.put(_END)
        threads[1].join()
        threads[0].join(timeout=2.0)  # a live read returns within a frame period
        for s in sinks:
            s.close()
        source.close()
    if sink_errors:
        raise sink_errors[0]
    summary.seconds = time.perf_counter() - started
    summary.stages = times.summary()
    return summary


def overlay(frame: np.ndarray, detections, fps: float) -> np.ndarray:
    annotated = draw_detections(frame, detections)
    cv2.putText(annotated, f"{fps:.1f} FPS", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3)
    cv2.putText(annotated, f"{fps:.1f} FPS", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    return annotated


def _put_end(q: queue.Queue) -> None:
    while True:
        try:
            q.put(_END, timeout=0.1)
            return
        except queue.Full:
            try:
                q.get_nowait()
            except queue.Empty:
                pass
