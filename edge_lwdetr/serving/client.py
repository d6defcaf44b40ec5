"""A client of `edge-lwdetr serve` (or of the exported repository's `lwdetr` model) that returns the same `Result`s as
`Detector.predict`.

    triton://HOST[:8001]/MODEL        gRPC (Triton's default gRPC port), through tritonclient: the `client` extra
    triton+http://HOST[:8000]/MODEL   HTTP/REST, with the standard library: nothing beyond the base install

Frames go as raw BGR pixels by default (lossless: the server sees the frame `Detector` would); `encoding=".jpg"`
sends them compressed. The class names come from the served model's configuration, asked for once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import cv2
import numpy as np

from edge_lwdetr.defaults import DEFAULT_CONF
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.processing import Detection
from edge_lwdetr.results import Result
from edge_lwdetr.serving import protocol
from edge_lwdetr.serving.transport import GrpcTransport, HttpTransport

SCHEMES = {"triton": ("grpc", 8001), "triton+http": ("http", 8000)}  # scheme -> protocol, default port


@dataclass(frozen=True)
class ServerAddress:
    protocol: str  # grpc or http
    host: str
    port: int
    model: str


def is_server_url(model) -> bool:
    """Whether `model` names a served model (triton://...) rather than a local file."""
    return isinstance(model, str) and urlsplit(model).scheme in SCHEMES


def parse_url(url: str) -> ServerAddress:
    """The protocol, host, port and model of a server URL (default port: the protocol's; default model: lwdetr)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise EdgeLwdetrError(
            f"{url} is not a server URL: use triton://HOST:GRPC_PORT/MODEL (gRPC, e.g. triton://127.0.0.1:8001/lwdetr) "
            "or triton+http://HOST:HTTP_PORT/MODEL (HTTP, e.g. triton+http://127.0.0.1:8000/lwdetr)"
        )
    kind, default_port = SCHEMES[parts.scheme]
    return ServerAddress(kind, parts.hostname, parts.port or default_port, parts.path.strip("/") or protocol.MODEL_NAME)


class Client:
    """Detections from a server: `Client("triton://host:8001/lwdetr").predict(source)` as `Detector.predict`.

    conf: the default threshold of predict(); the server's --conf is the floor below which nothing comes back.
    encoding: None (raw BGR pixels) or an OpenCV image suffix (".jpg", ".png") to compress frames with.
    timeout: seconds to wait for one answer. The client may be shared by threads.
    """

    def __init__(self, url: str, conf: float = DEFAULT_CONF, encoding: str | None = None, timeout: float = 60.0):
        self.address = parse_url(url)
        self.url, self.conf, self.encoding, self.timeout = url, conf, encoding, timeout
        transport = GrpcTransport if self.address.protocol == "grpc" else HttpTransport
        self.transport = transport(url, self.address.host, self.address.port, self.address.model, timeout)
        self._info: protocol.ModelInfo | None = None

    @property
    def model(self) -> str:
        return self.address.model

    @property
    def info(self) -> protocol.ModelInfo:
        """The served model's class names, input size and variant, from its configuration (asked for once)."""
        if self._info is None:
            try:
                self._info = protocol.ModelInfo.from_parameters(self.transport.parameters(), self.url)
            except ValueError as error:
                raise EdgeLwdetrError(str(error)) from None
        return self._info

    @property
    def names(self) -> dict[int, str]:
        return self.info.id2label

    def ready(self) -> bool:
        """Whether the server answers and the model is loaded."""
        try:
            return self.transport.ready()
        except EdgeLwdetrError:
            return False

    def infer(self, image_bgr: np.ndarray) -> dict[str, np.ndarray]:
        """The server's answer for one BGR frame: boxes [N, 4] in its pixels, scores [N], labels [N]."""
        if self.encoding:
            ok, encoded = cv2.imencode(self.encoding, image_bgr)
            if not ok:
                raise EdgeLwdetrError(f"OpenCV cannot encode a frame as {self.encoding}")
            return self.infer_bytes(encoded.tobytes())
        return self.infer_bytes(np.ascontiguousarray(image_bgr).tobytes(), image_bgr.shape[:2])

    def infer_bytes(self, data: bytes, size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """The server's answer for an encoded image, or raw BGR pixels of `size` (height, width)."""
        return self.transport.infer(data, size)

    def detect(self, image_bgr: np.ndarray, conf: float) -> list[Detection]:
        """Detections in one BGR frame scoring above `conf`, in its pixels, best first (as `predict.detect`)."""
        names = self.names
        answer = self.infer(image_bgr)
        keep = answer[protocol.SCORES] > conf
        return [
            Detection(int(label), names.get(int(label), str(label)), float(score), [float(v) for v in box])
            for box, score, label in zip(answer[protocol.BOXES][keep], answer[protocol.SCORES][keep],
                                         answer[protocol.LABELS][keep])
        ]  # fmt: skip

    def predict(self, source, stream: bool = False, conf: float | None = None) -> list[Result] | Iterator[Result]:
        """Results for any source `Detector.predict` takes; stream=True yields them as frames arrive."""
        results = self._results(source, self.conf if conf is None else conf)
        return results if stream else list(results)

    def _results(self, source, conf: float) -> Iterator[Result]:
        from edge_lwdetr.api import frames_of

        for name, index, image in frames_of(source):
            yield Result.from_detections(self.detect(image, conf), self.names, name, index, image)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
