"""The Python API: a detector for any model format and any source.

    from edge_lwdetr import Detector

    detector = Detector()                               # the bundled model; or Detector("model.fp16.engine")
    result = detector.predict("image.jpg")[0]           # one Result per image
    result.xyxy, result.scores, result.labels           # NumPy arrays, source pixels
    for result in detector.predict("video.mp4", stream=True):   # one Result per frame, as they come
        cv2.imwrite(f"{result.frame}.jpg", result.plot())
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge_lwdetr.bundled import BUNDLED_MODEL
from edge_lwdetr.defaults import DEFAULT_CONF
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.predict import detect
from edge_lwdetr.processing import IMAGE_SUFFIXES
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


class Detector:
    """LW-DETR on any backend: an engine (TensorRT), an ONNX export (ONNX Runtime) or weights (PyTorch).

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
            self.model, backend, imgsz, Path(plugin) if plugin else None, device=device, variant=variant, ema=ema
        )

    @property
    def names(self) -> dict[int, str]:
        return self.backend.id2label

    def predict(
        self, source, stream: bool = False, conf: float | None = None, track: bool = False
    ) -> list[Result] | Iterator[Result]:
        """Results for an image file, a BGR array, a list of them, or every frame of a video, folder, camera or
        stream. stream=True yields them one by one as frames arrive (constant memory); otherwise a list.
        track=True follows the objects across the frames (ByteTrack, the `track` extra): `Result.track_ids`."""
        tracker = None
        if track:
            from edge_lwdetr.tracking import Tracker

            tracker = Tracker()  # one per call: one source's frames
        results = self._results(source, self.conf if conf is None else conf, tracker)
        return results if stream else list(results)

    def _results(self, source, conf: float, tracker=None) -> Iterator[Result]:
        for name, index, image in frames_of(source):
            detections = detect(self.backend, image, conf)
            if tracker is not None:
                detections = tracker.update(detections)
            yield Result.from_detections(detections, self.names, name, index, image, tracked=tracker is not None)

    def export(
        self,
        format: str = "onnx",
        output: str | Path | None = None,
        precision: str | None = None,
        data: str | Path | None = None,
        input_format: str = "float",
        **onnx_options,
    ):
        """This detector's weights as `edge-lwdetr export` writes them: an ONNX (fp32 by default), a precision graph
        (precision="fp16"/"int8"; int8 calibrates on `data`) or an engine (format="engine"); input_format "uint8"
        makes the graph take uint8 BGR frames [B, H, W, 3] (the runtime then only resizes); onnx_options as
        export_onnx's (imgsz, batch, dynamic_batch, opset). Returns an `Exported` (graph, engine, engine_built)."""
        from edge_lwdetr.engine.options import EngineOptions
        from edge_lwdetr.export.target import export_to

        if self.backend.name != "torch":
            raise EdgeLwdetrError(f"{self.model} is not PyTorch weights: only weights can be exported")
        options = EngineOptions(precision=precision or ("fp16" if format == "engine" else "fp32"))
        onnx_options = self._weights_options | onnx_options | {"input_format": input_format}
        return export_to(
            self.model, format, Path(output) if output else None, options, Path(data) if data else None, **onnx_options
        )

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
