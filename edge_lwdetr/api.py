"""The Python API: a detector for any model format and any source.

    from edge_lwdetr import Detector

    detector = Detector()                               # the bundled model; or Detector("model.fp16.engine")
    result = detector.predict("image.jpg")[0]           # one Result per image
    result.xyxy, result.scores, result.labels           # NumPy arrays, source pixels
    for result in detector.predict("video.mp4", stream=True):   # one Result per frame, as they come
        cv2.imwrite(f"{result.frame}.jpg", result.plot())
    for result in detector.predict(["cam0.mp4", "rtsp://..."], stream=True):   # several sources, batched
        print(result.source, result.frame)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge_lwdetr.bundled import BUNDLED_MODEL
from edge_lwdetr.defaults import DEFAULT_CONF
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.predict import detect
from edge_lwdetr.processing import IMAGE_SUFFIXES, Detection
from edge_lwdetr.results import Result


def read_image(path: Path) -> np.ndarray:
    """A BGR image from a file, or a one-line error saying what is wrong with it."""
    if not path.is_file():
        raise EdgeLwdetrError(f"cannot read image {path}: no such file")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise EdgeLwdetrError(f"cannot read image {path}: the file is empty (0 bytes)")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:
        raise EdgeLwdetrError(f"cannot read image {path}: not an image OpenCV can decode (JPEG, PNG, BMP, ...)")
    return image


def is_image_file(source) -> bool:
    return isinstance(source, (str, Path)) and Path(source).suffix.lower() in IMAGE_SUFFIXES and Path(source).is_file()


def _check_array(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise EdgeLwdetrError(
            f"an image array must be H x W x 3 uint8 BGR (as cv2.imread returns), not {image.dtype} {list(image.shape)}"
        )
    return image


def frames_of(source) -> Iterator[tuple[str, int, np.ndarray]]:
    """(source name, frame index, BGR frame) for an image file, an array, a list of those, or any source
    `edge-lwdetr run` accepts (video file, image folder, camera, stream)."""
    from edge_lwdetr.runtime.sources import open_source

    if isinstance(source, np.ndarray):
        yield "array", 0, _check_array(source)
    elif isinstance(source, (list, tuple)):
        for item in source:
            for name, _, image in frames_of(item):
                yield name, 0, image
    elif is_image_file(source):
        yield str(source), 0, read_image(Path(source))
    elif isinstance(source, (str, Path)):
        opened = open_source(str(source), log=lambda message: None)
        try:
            index = 0
            while (frame := opened.read()) is not None:
                yield getattr(opened, "current", str(source)), index, frame
                index += 1
        finally:
            opened.close()
    else:
        raise EdgeLwdetrError(f"cannot read {type(source).__name__} as a source: pass a path, a URI or a BGR array")


def _is_stream(item) -> bool:
    """A source of frames (video, folder, camera, stream), not an image or an array."""
    return isinstance(item, (str, Path)) and not is_image_file(item)


def _hand(handed: queue.Queue, item, stop: threading.Event) -> None:
    """Put `item` for the caller, waiting for room until it stops listening."""
    while True:
        try:
            handed.put(item, timeout=0.05)
            return
        except queue.Full:
            if stop.is_set():
                return


def _new_tracker(frame_rate: float = 0.0):
    """A tracker for one source's frames (tracking.Tracker; the `track` extra)."""
    from edge_lwdetr.tracking import Tracker

    return Tracker(frame_rate=frame_rate)


class _HandOver:
    """A pipeline sink that hands each frame's Result to the caller of predict()."""

    wants_image = False

    def __init__(self, handed: queue.Queue, stop: threading.Event, names: dict[int, str], tracked: bool):
        self.handed, self.stop, self.names, self.tracked = handed, stop, names, tracked

    def write(self, frame: np.ndarray, record: dict) -> None:
        detections = [Detection(**d) for d in record["detections"]]
        result = Result.from_detections(
            detections, self.names, record["source"], record["frame"], frame, tracked=self.tracked
        )
        _hand(self.handed, result, self.stop)

    def close(self) -> None:
        pass


class Detector:
    """LW-DETR on any backend: an engine (TensorRT), an ONNX export (ONNX Runtime), weights (PyTorch), or a served
    model (triton://HOST:8001/MODEL over gRPC, triton+http://HOST:8000/MODEL over HTTP: `edge-lwdetr serve`).

    model: None for the bundled shapes model; backend: auto, tensorrt, onnxruntime or torch; imgsz: input size for
    weights (default: the size their folder names, else 640); conf: the default score threshold of predict();
    plugin: the MSDA plugin library for an engine; device, variant, ema (a training checkpoint's EMA weights): for
    weights run with PyTorch.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        backend: str = "auto",
        imgsz: int | None = None,
        conf: float = DEFAULT_CONF,
        plugin: str | Path | None = None,
        device: str | None = None,
        variant: str | None = None,
        ema: bool = False,
    ):
        from edge_lwdetr.backends import open_backend

        if not 0.0 <= conf <= 1.0:
            raise EdgeLwdetrError(f"conf {conf} is outside [0, 1]")
        self.model = str(model or BUNDLED_MODEL)
        self.conf = conf
        self._weights_options = {"variant": variant, "ema": ema}  # how the weights were read, for export()
        self.backend = open_backend(
            self.model, backend, imgsz, Path(plugin) if plugin else None, device=device, variant=variant, ema=ema,
            served=True,
        )

    @property
    def names(self) -> dict[int, str]:
        return self.backend.id2label

    def predict(
        self, source, stream: bool = False, conf: float | None = None, track: bool = False
    ) -> list[Result] | Iterator[Result]:
        """Results for an image file, a BGR array, a list of them, or every frame of a video, folder, camera or
        stream. A list that holds videos, folders, cameras or streams runs them as the sources of one run, their
        frames batched in one model call (`edge-lwdetr run --source A --source B`); its results come interleaved as
        frames are done, each naming its `source`. stream=True yields them one by one as frames arrive (constant
        memory); otherwise a list. track=True follows the objects across each source's frames (ByteTrack, the
        `track` extra): `Result.track_ids`."""
        conf = self.conf if conf is None else conf
        several = isinstance(source, (list, tuple)) and any(_is_stream(item) for item in source)
        if several:
            results = self._batched_results(list(source), conf, track)
        else:
            results = self._results(source, conf, _new_tracker() if track else None)
        return results if stream else list(results)

    def _results(self, source, conf: float, tracker=None) -> Iterator[Result]:
        for name, index, image in frames_of(source):
            detections = detect(self.backend, image, conf)
            if tracker is not None:
                detections = tracker.update(detections)
            yield Result.from_detections(detections, self.names, name, index, image, tracked=tracker is not None)

    def _batched_results(self, sources: list, conf: float, track: bool) -> Iterator[Result]:
        """The frames of several sources through the streaming pipeline (run in a thread), as they are done."""
        from edge_lwdetr.runtime.pipeline import Feed, run_streams
        from edge_lwdetr.runtime.sources import open_source

        for item in sources:
            if not _is_stream(item):
                raise EdgeLwdetrError(
                    f"{item if isinstance(item, (str, Path)) else type(item).__name__} cannot be one of several video "
                    "sources: pass images (or arrays) in a list of their own, or put them in a folder"
                )
        done, stop, handed = object(), threading.Event(), queue.Queue(maxsize=8)
        opened = []
        try:
            for item in sources:
                opened.append(open_source(str(item), log=lambda message: None, stop=stop))
        except BaseException:
            for source in opened:
                source.close()
            raise
        sink = _HandOver(handed, stop, self.names, tracked=track)
        outcome: list = []

        def run() -> None:
            try:
                feeds = [Feed(source, [sink], _new_tracker(source.fps) if track else None) for source in opened]
                run_streams(self.backend, feeds, conf, stop)
            except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread
                outcome.append(error)
            finally:
                _hand(handed, done, stop)

        thread = threading.Thread(target=run, name="predict-sources", daemon=True)
        thread.start()
        try:
            while (result := handed.get()) is not done:
                yield result
        finally:
            stop.set()  # the caller stopped early (or the run ended): end the run, let its sinks drain
            thread.join()
        if outcome:
            raise outcome[0]

    def export(
        self,
        format: str = "onnx",
        output: str | Path | None = None,
        precision: str | None = None,
        data: str | Path | None = None,
        **export_options,
    ):
        """This detector's weights as `edge-lwdetr export` writes them: an ONNX (fp32 by default), a precision graph
        (precision="fp16"/"int8"; int8 calibrates on `data`) or an engine (format="engine"); export_options are
        `ExportOptions` fields (imgsz, batch, dynamic_batch, opset, input_format: "uint8" makes the graph take uint8
        BGR frames [B, H, W, 3], so the runtime only resizes). Returns an `Exported` (graph, engine, engine_built)."""
        from edge_lwdetr.engine.options import EngineOptions
        from edge_lwdetr.export.options import ExportOptions
        from edge_lwdetr.export.target import export_to

        if self.backend.name != "torch":
            raise EdgeLwdetrError(f"{self.model} is not PyTorch weights: only weights can be exported")
        options = EngineOptions(precision=precision or ("fp16" if format == "engine" else "fp32"))
        export = ExportOptions(**self._weights_options | export_options)
        return export_to(self.model, format, Path(output) if output else None, options, export, Path(data) if data else None)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
