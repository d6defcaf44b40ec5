"""The streaming pipeline: a capture thread, the inference loop, and a sink thread, joined by bounded queues.

Live sources keep only the newest frame (a slow model never falls behind a camera: older frames are dropped and
counted). Files and folders deliver every frame exactly once, in order: the end marker waits for room like a
frame and never displaces one. No queue operation waits forever: each side gives up when the other has finished
or failed, so a failing sink or source ends the run with its error instead of hanging it. Stopping (end of source,
--max-frames, SIGINT/SIGTERM, `q` in the window) drains what was inferred into every sink and closes them.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from edge_lwdetr.backends import Backend
from edge_lwdetr.draw import draw_badge, draw_detections
from edge_lwdetr.predict import top_k
from edge_lwdetr.processing import postprocess, to_model_input
from edge_lwdetr.runtime.sinks import detection_record
from edge_lwdetr.runtime.stats import StageTimes

_END = object()
_POLL_S = 0.05  # how often a waiting thread looks at the stop events


@dataclass
class RunSummary:
    read: int = 0  # frames the source delivered
    inferred: int = 0  # frames the model ran on
    written: int = 0  # frames every sink took
    dropped: int = 0  # live sources only: stale frames replaced by a newer one before inference (by design)
    skipped: int = 0  # folder sources: files that are not decodable images
    announced: int = 0  # files: the frame count the container announces (0: unknown)
    seconds: float = 0.0
    stages: dict = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Captured:
    source: str
    index: int
    time_s: float
    frame: np.ndarray
    capture_ms: float


def _put(q: queue.Queue, item, give_up: threading.Event) -> bool:
    """Put `item`, waiting for room until `give_up` is set; False if it was not put."""
    while not give_up.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def run_stream(
    backend: Backend,
    source,
    sinks: list,
    conf: float,
    stop: threading.Event,
    max_frames: int | None = None,
    tracker=None,
) -> RunSummary:
    """Run `backend` on every frame of `source` (the newest, for live sources) into `sinks` until the source ends,
    `max_frames` are inferred or `stop` is set. Raises the first error of the source, the model or a sink.
    `tracker`: a tracking.Tracker for this source, which gives each detection its track id."""
    summary, times = RunSummary(), StageTimes()
    select = top_k(backend)
    captured: queue.Queue = queue.Queue(maxsize=1 if source.live else 4)
    processed: queue.Queue = queue.Queue(maxsize=4)
    inference_done, sink_done = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    started = time.perf_counter()

    def capture() -> None:
        index = 0
        try:
            while not (stop.is_set() or inference_done.is_set()):
                begin = time.perf_counter()
                frame = source.read()
                if frame is None:
                    break
                # Files are timed by their frame rate (reproducible), live sources by the wall clock.
                time_s = index / source.fps if not source.live and source.fps else begin - started
                name = getattr(source, "current", source.uri)
                item = _Captured(name, index, time_s, frame, (time.perf_counter() - begin) * 1000)
                index += 1
                summary.read += 1
                if source.live:  # keep the newest frame only
                    try:
                        captured.get_nowait()
                        summary.dropped += 1
                    except queue.Empty:
                        pass
                    captured.put_nowait(item)  # this thread is the only producer: there is room now
                elif not _put(captured, item, inference_done):
                    break
        except BaseException as error:  # noqa: BLE001 - raised again by run_stream
            errors.append(error)
        finally:
            _put(captured, _END, inference_done)

    def sink() -> None:
        fps, last = 0.0, None
        try:
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
                annotated = overlay(frame, detections, fps) if any(s.wants_image for s in sinks) else frame
                for s in sinks:
                    s.write(annotated, record)
                summary.written += 1
                times.add({"sink": (time.perf_counter() - begin) * 1000})
        except BaseException as error:  # noqa: BLE001 - raised again by run_stream
            errors.append(error)
        finally:
            sink_done.set()

    capture_thread = threading.Thread(target=capture, name="capture", daemon=True)
    sink_thread = threading.Thread(target=sink, name="sink", daemon=True)
    capture_thread.start()
    sink_thread.start()
    try:
        while (max_frames is None or summary.inferred < max_frames) and not stop.is_set() and not sink_done.is_set():
            try:
                item = captured.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if item is _END:
                break
            timings = {"capture": item.capture_ms}
            begin = time.perf_counter()
            batch = to_model_input(item.frame, backend.image_size, backend.input_format)[None]
            timings["preprocess"] = (time.perf_counter() - begin) * 1000
            logits, boxes = backend.infer(batch)
            timings.update(backend.stage_ms)
            begin = time.perf_counter()
            detections = postprocess(logits[0], boxes[0], item.frame.shape[:2], backend.id2label, conf, select)
            if tracker is not None:
                detections = tracker.update(detections)
            timings["postprocess"] = (time.perf_counter() - begin) * 1000
            times.add(timings)
            summary.inferred += 1
            size = (item.frame.shape[1], item.frame.shape[0])
            record = detection_record(item.source, item.index, item.time_s, size, detections, timings)
            if not _put(processed, (item.frame, record, detections), sink_done):
                break
    except BaseException as error:  # noqa: BLE001 - the model failed: finalise the outputs, then raise it
        errors.insert(0, error)
    finally:
        inference_done.set()
        _put(processed, _END, sink_done)
        sink_thread.join()
        for s in sinks:
            try:
                s.close()
            except BaseException as error:  # noqa: BLE001 - every sink is closed; the first error is raised
                errors.append(error)
        # A live read blocked on a stalled stream cannot be interrupted: leave that thread (a daemon) and its
        # capture alone rather than release a capture another thread is reading.
        capture_thread.join(timeout=1.0)
        if not capture_thread.is_alive():
            source.close()
    if errors:
        raise errors[0]
    summary.skipped = getattr(source, "skipped", 0)
    summary.announced = 0 if source.live else max(int(getattr(source, "frame_count", 0) or 0), 0)
    summary.seconds = time.perf_counter() - started
    summary.stages = times.summary()
    return summary


def overlay(frame: np.ndarray, detections, fps: float) -> np.ndarray:
    return draw_badge(draw_detections(frame, detections), f"{fps:.1f} FPS")
