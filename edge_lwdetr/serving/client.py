"""A client of `edge-lwdetr serve` that returns the same `Result`s as `Detector.predict`.

It speaks Triton's HTTP/REST protocol (KServe v2 with the binary-tensor extension) with the standard library, so
it runs on the base install (numpy 2, a Jetson) without tritonclient or PyTriton. Frames go as raw BGR pixels by
default (lossless: the server sees the frame `Detector` would); `encoding=".jpg"` sends them compressed.
"""

from __future__ import annotations

import http.client
import json
import re
import struct
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import cv2
import numpy as np

from edge_lwdetr.defaults import DEFAULT_CONF
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.results import Result
from edge_lwdetr.serving import protocol

_DTYPES = {"FP32": np.float32, "INT64": np.int64, "INT32": np.int32}


def parse_url(url: str) -> tuple[str, int, str]:
    """(host, port, model) of triton://host:port/model or http://host:port/model (port 8000, model lwdetr)."""
    parts = urlsplit(url)
    if parts.scheme not in ("triton", "http") or not parts.hostname:
        raise EdgeLwdetrError(f"{url} is not a server URL: use triton://HOST:HTTP_PORT/MODEL, e.g. triton://127.0.0.1:8000/lwdetr")
    return parts.hostname, parts.port or 8000, parts.path.strip("/") or protocol.MODEL_NAME


def _bytes_tensor(items: list[bytes]) -> bytes:
    """Triton's BYTES serialisation: each element as a 4-byte little-endian length, then its bytes."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def _read_bytes_tensor(data: bytes) -> list[str]:
    items, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        items.append(data[offset + 4 : offset + 4 + length].decode())
        offset += 4 + length
    return items


def _reason(error) -> str:
    """The line that says why, from an error Triton wraps in the Python backend's traceback."""
    text = str(error)
    reasons = re.findall(r"^\w*(?:Error|Exception): (.+)$", text, re.MULTILINE)
    return reasons[-1].strip() if reasons else text.strip().splitlines()[0]


class Client:
    """Detections from a server: `Client("triton://host:8000/lwdetr").predict(source)` as `Detector.predict`.

    conf: the default threshold of predict(); the server's --conf is the floor below which nothing comes back.
    encoding: None (raw BGR pixels) or an OpenCV image suffix (".jpg", ".png") to compress frames with.
    timeout: seconds to wait for one answer. Each thread gets its own connection.
    """

    def __init__(self, url: str, conf: float = DEFAULT_CONF, encoding: str | None = None, timeout: float = 60.0):
        self.host, self.port, self.model = parse_url(url)
        self.url, self.conf, self.encoding, self.timeout = url, conf, encoding, timeout
        self.names: dict[int, str] = {}  # every class id -> name the server has answered with
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        if getattr(self._local, "connection", None) is None:
            self._local.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._local.connection

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        connection = self._connection()
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.getheader("Inference-Header-Content-Length"), response.read()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            self._local.connection = None
            raise EdgeLwdetrError(f"cannot reach the server at {self.url}: {error}") from None

    def ready(self) -> bool:
        """Whether the server answers and the model is loaded."""
        try:
            return self._request("GET", f"/v2/models/{self.model}/ready")[0] == 200
        except EdgeLwdetrError:
            return False

    def infer(self, image_bgr: np.ndarray) -> dict[str, np.ndarray]:
        """The server's raw answer for one BGR frame: boxes [N, 4], scores [N], labels [N], names [N]."""
        if self.encoding:
            ok, encoded = cv2.imencode(self.encoding, image_bgr)
            if not ok:
                raise EdgeLwdetrError(f"OpenCV cannot encode a frame as {self.encoding}")
            return self.infer_bytes(encoded.tobytes())
        return self.infer_bytes(np.ascontiguousarray(image_bgr).tobytes(), image_bgr.shape[:2])

    def infer_bytes(self, data: bytes, size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """The server's raw answer for an encoded image, or raw BGR pixels of `size` (height, width)."""
        payload = _bytes_tensor([data])
        inputs = [{"name": protocol.IMAGE, "shape": [1, 1], "datatype": "BYTES",
                   "parameters": {"binary_data_size": len(payload)}}]  # fmt: skip
        binary = [payload]
        if size is not None:
            inputs.append({"name": protocol.SIZE, "shape": [1, 2], "datatype": "INT32", "parameters": {"binary_data_size": 8}})
            binary.append(np.array(size, "<i4").tobytes())
        outputs = [{"name": name, "parameters": {"binary_data": True}} for name in protocol.OUTPUT_NAMES]
        header = json.dumps({"inputs": inputs, "outputs": outputs}).encode()
        status, header_length, body = self._request(
            "POST", f"/v2/models/{self.model}/infer", header + b"".join(binary),
            {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
        )  # fmt: skip
        json_length = int(header_length) if header_length else len(body)
        answer = json.loads(body[:json_length] or b"{}")
        if status != 200 or "error" in answer:
            raise EdgeLwdetrError(f"the server at {self.url} refused the request: {_reason(answer.get('error', status))}")
        return self._outputs(answer, body[json_length:])

    @staticmethod
    def _outputs(answer: dict, data: bytes) -> dict[str, np.ndarray]:
        tensors, offset = {}, 0
        for output in answer["outputs"]:
            size = output["parameters"]["binary_data_size"]
            chunk, offset = data[offset : offset + size], offset + size
            if output["datatype"] == "BYTES":
                tensors[output["name"]] = np.array(_read_bytes_tensor(chunk), object).reshape(output["shape"])
            else:
                tensors[output["name"]] = np.frombuffer(chunk, _DTYPES[output["datatype"]]).reshape(output["shape"])
        count = int(tensors[protocol.COUNT].reshape(-1)[0])
        return {name: tensors[name][0, :count] for name in (protocol.BOXES, protocol.SCORES, protocol.LABELS, protocol.NAMES)}

    def predict(self, source, stream: bool = False, conf: float | None = None) -> list[Result] | Iterator[Result]:
        """Results for any source `Detector.predict` takes; stream=True yields them as frames arrive."""
        results = self._results(source, self.conf if conf is None else conf)
        return results if stream else list(results)

    def _results(self, source, conf: float) -> Iterator[Result]:
        from edge_lwdetr.api import frames_of

        for name, index, image in frames_of(source):
            answer = self.infer(image)
            keep = answer[protocol.SCORES] > conf
            self.names.update({int(l): str(n) for l, n in zip(answer[protocol.LABELS], answer[protocol.NAMES])})
            yield Result(
                xyxy=answer[protocol.BOXES][keep].astype(np.float32), scores=answer[protocol.SCORES][keep].astype(np.float32),
                labels=answer[protocol.LABELS][keep].astype(np.int64), names=dict(self.names), source=name, frame=index,
                shape=(int(image.shape[0]), int(image.shape[1])), image=image,
            )  # fmt: skip

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
