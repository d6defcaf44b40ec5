"""The streaming pipeline: capture threads, batch assembly, inference and sink threads, joined by bounded queues.

Each capture thread reads its source and hands each frame to a small pool (a thread per CPU core) that prepares it
for the model (resize, layout, type: `model_input`). An assembling thread gathers the prepared frames, at most one
per source, into the next batch while the model runs the current one, so the inference loop only takes a ready
batch and calls the backend; the sink threads turn the outputs into detections, draw them and write them. The CPU
work thus overlaps the model's, and one source's decoding overlaps the preparation of its frames.

Live sources keep only their newest prepared frame (a slow model never falls behind a camera: older frames are
dropped and counted). Files and folders deliver every frame exactly once, in order. A source that ends or fails
ends alone; the run goes on until every source has ended. No queue operation waits forever: each side gives up when
the other has finished or failed, so a failing sink or model ends the run with its error instead of hanging it.
Stopping (every source ended, --max-frames, SIGINT/SIGTERM, `q` in the window) drains what was inferred into every
sink and closes them.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from edge_lwdetr.backends import Backend, FrameBackend
from edge_lwdetr.draw import draw_badge, draw_detections
from edge_lwdetr.predict import model_input, top_k
from edge_lwdetr.processing import postprocess
from edge_lwdetr.runtime.sinks import detection_record
from edge_lwdetr.runtime.stats import StageTimes
from edge_lwdetr.video import letterbox

_END = object()
_POLL_S = 0.05  # how often a waiting thread looks at the stop events
FILE_QUEUE = 4  # prepared frames a file source may hold ready (live sources: 1, the newest)
DYNAMIC_BATCH_CAP = 8  # frames per call for a dynamic-batch model that declares no largest batch (ONNX, PyTorch)
TILE_WIDTH = 1920  # the tiled view (--tile): this wide, in 16:9 cells (1920 x 1080 for 2 to 4 sources)


@dataclass
class RunSummary:
    read: int = 0  # frames taken from the source (with those --vid-stride passes over)
    inferred: int = 0  # frames the model ran on
    written: int = 0  # frames every sink took
    dropped: int = 0  # live sources only: stale frames replaced by a newer one before inference (by design)
    strided: int = 0  # frames --vid-stride passed over
    skipped: int = 0  # folder sources: files that are not decodable images
    announced: int = 0  # files: the frame count the container announces (0: unknown)
    batches: int = 0  # model calls
    seconds: float = 0.0
    uri: str = ""
    decoder: str = ""
    stages: dict = field(default_factory=dict)
    sources: list[RunSummary] = field(default_factory=list)  # per source, in --source order (totals above)

    @property
    def fps(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Feed:
    """A source and the sinks that take its frames (its own video, JSONL, ...)."""

    source: object  # Source, FolderSource, or any object with read(), live, fps, uri and close()
    sinks: list
    tracker: object | None = None  # a tracking.Tracker: this source's track ids (one tracker per source)


@dataclass
class _Captured:
    source: str
    index: int
    time_s: float
    frame: np.ndarray
    prepared: Future | None  # (the frame as the model takes it, ms it took to prepare); None: a served model
    timings: dict


class _Lanes:
    """One queue of prepared frames per source, and the one condition the inference loop waits on.

    Live lanes hold the newest frame only; file lanes hold up to FILE_QUEUE frames and make their capture wait for
    room. A batch takes at most one frame per lane, starting after the lane served first last time, so every source
    gets its turn when there are more sources than the batch holds.
    """

    def __init__(self, live: list[bool]):
        self.live = live
        self.queues: list[deque] = [deque() for _ in live]
        self.open = [True] * len(live)
        self.condition = threading.Condition()
        self._first = 0

    def put_newest(self, lane: int, item):
        """Replace what the lane holds by `item`; returns the stale frame dropped, or None."""
        with self.condition:
            replaced = self.queues[lane].popleft() if self.queues[lane] else None
            self.queues[lane].append(item)
            self.condition.notify_all()
        return replaced

    def put_every(self, lane: int, item, give_up: threading.Event) -> bool:
        """Append `item`, waiting for room until `give_up` is set; False if it was not put."""
        with self.condition:
            while len(self.queues[lane]) >= FILE_QUEUE:
                if give_up.is_set():
                    return False
                self.condition.wait(_POLL_S)
            self.queues[lane].append(item)
            self.condition.notify_all()
        return True

    def end(self, lane: int) -> None:
        """The source ended: its lane closes once the frames it holds are taken."""
        with self.condition:
            self.open[lane] = False
            self.condition.notify_all()

    def take(self, limit: int, timeout_s: float) -> list[tuple[int, _Captured]] | None:
        """Up to `limit` (lane, frame) pairs, at most one per lane; [] if none came within `timeout_s`; None once every
        lane has ended and been emptied."""
        count = len(self.queues)
        order = [(self._first + i) % count for i in range(count)]
        with self.condition:
            ready = [lane for lane in order if self.queues[lane]]
            if not ready:
                if not any(self.open):
                    return None
                self.condition.wait(timeout_s)
                ready = [lane for lane in order if self.queues[lane]]
            taken = [(lane, self.queues[lane].popleft()) for lane in ready[:limit]]
            if taken:
                self._first = (taken[-1][0] + 1) % count
                self.condition.notify_all()  # room for the file captures waiting
        return taken


def batch_limit(backend: Backend, sources: int) -> int:
    """Frames per model call: a static-batch model's batch; for a dynamic batch, one per source up to the model's
    largest batch (an engine's optimization profile), else up to DYNAMIC_BATCH_CAP."""
    static = getattr(backend, "batch", None)
    if static:
        return int(static)
    largest = getattr(backend, "max_batch", None) or DYNAMIC_BATCH_CAP
    return max(1, min(sources, int(largest)))


def _prepared(backend: Backend, frame: np.ndarray) -> tuple[np.ndarray, float]:
    begin = time.perf_counter()
    tensor = model_input(backend, frame)
    return tensor, (time.perf_counter() - begin) * 1000


def _batch(tensors: list[np.ndarray], backend: Backend) -> np.ndarray:
    """The prepared frames as one batch; a static batch larger than the frames is filled with zeros."""
    if len(tensors) == 1 and not (getattr(backend, "batch", None) or 1) > 1:
        return tensors[0][None]  # a view: one frame is not copied
    batch = np.zeros((max(len(tensors), getattr(backend, "batch", None) or 0), *tensors[0].shape), tensors[0].dtype)
    for row, tensor in enumerate(tensors):
        batch[row] = tensor
    return batch


def _put(q: queue.Queue, item, give_up: threading.Event) -> bool:
    """Put `item`, waiting for room until `give_up` is set; False if it was not put."""
    while not give_up.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _pass_over(source) -> bool:
    """Take one frame from `source` without keeping it (--vid-stride); False at its end."""
    grab = getattr(source, "grab", None)
    return grab() if grab is not None else source.read() is not None


def run_stream(
    backend: Backend | FrameBackend,
    source,
    sinks: list,
    conf: float,
    stop: threading.Event,
    max_frames: int | None = None,
    vid_stride: int = 1,
    tracker=None,
) -> RunSummary:
    """Run `backend` on every frame of `source` (the newest, for live sources) into `sinks` until the source ends,
    `max_frames` are inferred or `stop` is set. Raises the first error of the source, the model or a sink.
    `tracker`: a tracking.Tracker for this source, which gives each detection its track id."""
    return run_streams(backend, [Feed(source, sinks, tracker)], conf, stop, max_frames, vid_stride)


def run_streams(
    backend: Backend | FrameBackend,
    feeds: list[Feed],
    conf: float,
    stop: threading.Event,
    max_frames: int | None = None,
    vid_stride: int = 1,
    tiled: list | None = None,
) -> RunSummary:
    """Run `backend` on the frames of every feed's source, batched across sources, into each feed's sinks (and, for
    `tiled` sinks, one view of all sources side by side per batch) until every source has ended, `max_frames` are
    inferred in all or `stop` is set. Every `vid_stride`-th frame of each source is taken. Returns the totals with
    a summary per source; raises the first error of a source, the model or a sink once every sink is closed."""
    per_source = [RunSummary(uri=feed.source.uri) for feed in feeds]
    summary, times = RunSummary(sources=per_source), StageTimes()
    select = top_k(backend)
    frames_backend = getattr(backend, "takes_frames", False)
    lanes = _Lanes([bool(feed.source.live) for feed in feeds])
    limit = batch_limit(backend, len(feeds))
    # Without a tiled view each source has its own sink thread (its video encodes beside the others'); a tiled
    # view needs every source's newest frame, so one thread serves them all.
    groups = [list(range(len(feeds)))] if tiled else [[k] for k in range(len(feeds))]
    group_of = {k: g for g, members in enumerate(groups) for k in members}
    outputs = [queue.Queue(maxsize=4) for _ in groups]
    # Double buffering: the next batch is assembled while the model runs the current one, and only then, so that a
    # live source's frame waits at most one model call.
    ready: queue.Queue = queue.Queue()
    room = threading.Semaphore(1)
    inference_done, sink_failed = threading.Event(), threading.Event()
    sink_ended = [threading.Event() for _ in groups]
    errors: list[BaseException] = []
    # The lanes bound the frames in flight: FILE_QUEUE per file, one (and the one being replaced) per live source.
    preparing = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="prepare")
    started = time.perf_counter()

    def capture(lane: int) -> None:
        source, counts, index = feeds[lane].source, per_source[lane], 0
        try:
            while not (stop.is_set() or inference_done.is_set()):
                if index % vid_stride:
                    if not _pass_over(source):
                        break
                    index += 1
                    counts.read += 1
                    counts.strided += 1
                    continue
                begin = time.perf_counter()
                frame = source.read()
                if frame is None:
                    break
                timings = {"capture": (time.perf_counter() - begin) * 1000}
                # Files are timed by their frame rate (reproducible), live sources by the wall clock.
                time_s = index / source.fps if not source.live and source.fps else begin - started
                try:
                    prepared = None if frames_backend else preparing.submit(_prepared, backend, frame)
                except RuntimeError:  # the pool was shut down while this frame was read: the run is ending
                    if inference_done.is_set():
                        break
                    raise
                item = _Captured(getattr(source, "current", source.uri), index, time_s, frame, prepared, timings)
                index += 1
                counts.read += 1
                if source.live:
                    stale = lanes.put_newest(lane, item)
                    if stale is not None:
                        if stale.prepared is not None:
                            stale.prepared.cancel()  # not prepared yet: never will be
                        counts.dropped += 1
                elif not lanes.put_every(lane, item, inference_done):
                    break
        except BaseException as error:  # noqa: BLE001 - raised again by run_streams; the other sources go on
            errors.append(error)
        finally:
            lanes.end(lane)

    def sink(group: int) -> None:
        rates: dict[int, tuple[float, float | None]] = {}  # source -> (smoothed end-to-end FPS, last write time)
        members, cells = groups[group], {}
        wants_image = bool(tiled) or any(s.wants_image for k in groups[group] for s in feeds[k].sinks)
        try:
            while True:
                entries = outputs[group].get()
                if entries is _END:
                    return
                for lane, item, row, infer_ms in entries:
                    begin = time.perf_counter()
                    if frames_backend:
                        detections = row
                    else:
                        detections = postprocess(*row, item.frame.shape[:2], backend.id2label, conf, select)
                    if feeds[lane].tracker is not None:  # this sink thread sees the source's frames in order
                        detections = feeds[lane].tracker.update(detections)
                    timings = item.timings | infer_ms | {"postprocess": (time.perf_counter() - begin) * 1000}
                    times.add(timings)
                    size = (item.frame.shape[1], item.frame.shape[0])
                    record = detection_record(item.source, item.index, item.time_s, size, detections, timings)
                    if len(feeds) > 1:
                        record |= {"source_index": lane, "uri": feeds[lane].source.uri}
                    begin = time.perf_counter()
                    fps, last = rates.get(lane, (0.0, None))
                    if last is not None:  # end-to-end rate as the viewer sees it, smoothed
                        rate = 1 / max(begin - last, 1e-6)
                        fps = 0.9 * fps + 0.1 * rate if fps else rate
                    rates[lane] = (fps, begin)
                    annotated = overlay(item.frame, detections, fps) if wants_image else item.frame
                    for s in feeds[lane].sinks:
                        s.write(annotated, record)
                    cells[lane] = annotated
                    times.add({"sink": (time.perf_counter() - begin) * 1000})
                if tiled:
                    view = tile([cells.get(k) for k in members])
                    for s in tiled:
                        s.write(view, {})
                for lane, *_ in entries:
                    per_source[lane].written += 1
        except BaseException as error:  # noqa: BLE001 - raised again by run_streams
            errors.append(error)
            sink_failed.set()
        finally:
            sink_ended[group].set()

    def assemble() -> None:
        """Gather each batch (ready tensors of up to `limit` sources) while the model runs the one before it."""
        assembled = 0
        try:
            while not (stop.is_set() or inference_done.is_set()) and (max_frames is None or assembled < max_frames):
                if not room.acquire(timeout=_POLL_S):
                    continue
                taken = lanes.take(limit, _POLL_S)
                if taken is None:
                    break
                if not taken:
                    room.release()
                    continue
                if max_frames is not None:
                    taken = taken[: max_frames - assembled]
                assembled += len(taken)
                batch = None  # a served model takes the frames themselves
                if not frames_backend:
                    tensors = []
                    for _, item in taken:
                        tensor, item.timings["preprocess"] = item.prepared.result()
                        tensors.append(tensor)
                    batch = _batch(tensors, backend)
                ready.put((taken, batch))
            ready.put(_END)
        except BaseException as error:  # noqa: BLE001 - preparing failed: the inference loop raises it
            ready.put(error)

    captures = [
        threading.Thread(target=capture, args=(k,), name=f"capture-{k}", daemon=True) for k in range(len(feeds))
    ]
    sinkers = [threading.Thread(target=sink, args=(g,), name=f"sink-{g}", daemon=True) for g in range(len(groups))]
    assembler = threading.Thread(target=assemble, name="assemble", daemon=True)
    for thread in captures + sinkers + [assembler]:
        thread.start()
    try:
        waiting_since = time.perf_counter()
        while not stop.is_set() and not sink_failed.is_set():
            try:
                next_batch = ready.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            room.release()
            if next_batch is _END:
                break
            if isinstance(next_batch, BaseException):
                raise next_batch
            taken, batch = next_batch
            times.add({"wait": (time.perf_counter() - waiting_since) * 1000})
            if frames_backend:  # a served model: its server prepares, batches and decodes
                rows = [backend.detect(item.frame, conf) for _, item in taken]
            else:
                logits, boxes = backend.infer(batch)
                rows = list(zip(logits, boxes))
            waiting_since = time.perf_counter()
            infer_ms = dict(backend.stage_ms)
            summary.inferred += len(taken)
            summary.batches += 1
            routed: list[list] = [[] for _ in groups]
            for row, (lane, item) in zip(rows, taken):
                per_source[lane].inferred += 1
                routed[group_of[lane]].append((lane, item, row, infer_ms))
            if not all(_put(outputs[g], entries, sink_failed) for g, entries in enumerate(routed) if entries):
                break
    except BaseException as error:  # noqa: BLE001 - the model failed: finalise the outputs, then raise it
        errors.insert(0, error)
    finally:
        inference_done.set()
        preparing.shutdown(cancel_futures=True)
        assembler.join()
        for g, thread in enumerate(sinkers):
            _put(outputs[g], _END, sink_ended[g])  # a sink that failed takes no more; the others drain, then end
            thread.join()
        every_sink = {id(s): s for s in [s for feed in feeds for s in feed.sinks] + (tiled or [])}  # shared ones once
        for s in every_sink.values():
            try:
                s.close()
            except BaseException as error:  # noqa: BLE001 - every sink is closed; the first error is raised
                errors.append(error)
        # A live read blocked on a stalled stream cannot be interrupted: leave that thread (a daemon) and its
        # capture alone rather than release a capture another thread is reading.
        deadline = time.monotonic() + 1.0
        for feed, thread in zip(feeds, captures):
            thread.join(timeout=max(deadline - time.monotonic(), 0.0))
            if not thread.is_alive():
                feed.source.close()
    if errors:
        raise errors[0]
    for feed, counts in zip(feeds, per_source):
        counts.skipped = getattr(feed.source, "skipped", 0)
        counts.announced = 0 if feed.source.live else max(int(getattr(feed.source, "frame_count", 0) or 0), 0)
        counts.decoder = getattr(feed.source, "decoder", "")
        counts.batches = summary.batches
    for name in ("read", "written", "dropped", "strided", "skipped", "announced"):
        setattr(summary, name, sum(getattr(counts, name) for counts in per_source))
    if len(feeds) == 1:
        summary.uri, summary.decoder = per_source[0].uri, per_source[0].decoder
    summary.seconds = time.perf_counter() - started
    summary.stages = times.summary()
    for counts in per_source:
        counts.seconds, counts.stages = summary.seconds, summary.stages
    return summary


def overlay(frame: np.ndarray, detections, fps: float) -> np.ndarray:
    return draw_badge(draw_detections(frame, detections), f"{fps:.1f} FPS")


def _grid(count: int) -> tuple[int, int]:
    """(columns, rows) of a grid for `count` cells, as square as it goes."""
    columns = math.ceil(math.sqrt(count))
    return columns, math.ceil(count / columns)


def tile(frames: list[np.ndarray | None]) -> np.ndarray:
    """The frames side by side in a grid of 16:9 cells TILE_WIDTH wide in all (the same size whatever the sources,
    so the video keeps one size), each letterboxed into its cell; a source without a frame yet is black."""
    columns, rows = _grid(len(frames))
    cell_w = TILE_WIDTH // columns // 2 * 2
    cell_h = cell_w * 9 // 16 // 2 * 2
    view = np.zeros((rows * cell_h, columns * cell_w, 3), np.uint8)
    for k, frame in enumerate(frames):
        if frame is not None:
            top, left = (k // columns) * cell_h, (k % columns) * cell_w
            view[top : top + cell_h, left : left + cell_w] = letterbox(frame, cell_w, cell_h)
    return view
