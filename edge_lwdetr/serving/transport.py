"""The two ways a client reaches Triton: HTTP/REST (KServe v2 with the binary-tensor extension, written here with the
standard library, so it runs on the base install and a Jetson) and gRPC (tritonclient's, the `client` extra).

Both answer the same three questions: is the model ready, what are its configuration's parameters, and what are the
detections of one request row (padded tensors with their count). Failures are EdgeLwdetrError, one line each.
"""

from __future__ import annotations

import http.client
import json
import re
import struct
import threading

import numpy as np

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.serving import protocol

_DTYPES = {"FP32": np.float32, "INT64": np.int64, "INT32": np.int32}


def reason(error) -> str:
    """The line that says why, from an error Triton wraps in the Python backend's traceback."""
    text = str(error)
    reasons = re.findall(r"^\w*(?:Error|Exception): (.+)$", text, re.MULTILINE)
    return reasons[-1].strip() if reasons else text.strip().splitlines()[0]


def _bytes_tensor(items: list[bytes]) -> bytes:
    """Triton's BYTES serialisation: each element as a 4-byte little-endian length, then its bytes."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def _rows(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The first row's detections, cut to its count (the server pads rows to the longest of a request)."""
    count = int(tensors[protocol.COUNT].reshape(-1)[0])
    return {name: tensors[name][0, :count] for name in (protocol.BOXES, protocol.SCORES, protocol.LABELS)}


class HttpTransport:
    """HTTP/REST with one keep-alive connection per thread."""

    def __init__(self, url: str, host: str, port: int, model: str, timeout: float):
        self.url, self.host, self.port, self.model, self.timeout = url, host, port, model, timeout
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        if getattr(self._local, "connection", None) is None:
            self._local.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._local.connection

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, Inference-Header-Content-Length, body) of one request on this thread's connection."""
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
        return self.request("GET", f"/v2/models/{self.model}/ready")[0] == 200

    def parameters(self) -> dict[str, str]:
        status, _, body = self.request("GET", f"/v2/models/{self.model}/config")
        answer = json.loads(body or b"{}")
        if status != 200:
            raise EdgeLwdetrError(f"the server at {self.url} has no model {self.model}: {answer.get('error', status)}")
        return {key: value.get("string_value", "") for key, value in answer.get("parameters", {}).items()}

    def infer(self, data: bytes, size: tuple[int, int] | None) -> dict[str, np.ndarray]:
        payload = _bytes_tensor([data])
        inputs = [{"name": protocol.IMAGE, "shape": [1, 1], "datatype": "BYTES",
                   "parameters": {"binary_data_size": len(payload)}}]  # fmt: skip
        binary = [payload]
        if size is not None:
            inputs.append({"name": protocol.SIZE, "shape": [1, 2], "datatype": "INT32", "parameters": {"binary_data_size": 8}})
            binary.append(np.array(size, "<i4").tobytes())
        outputs = [{"name": name, "parameters": {"binary_data": True}} for name in protocol.OUTPUT_NAMES]
        header = json.dumps({"inputs": inputs, "outputs": outputs}).encode()
        status, header_length, body = self.request(
            "POST", f"/v2/models/{self.model}/infer", header + b"".join(binary),
            {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
        )  # fmt: skip
        json_length = int(header_length) if header_length else len(body)
        answer = json.loads(body[:json_length] or b"{}")
        if status != 200 or "error" in answer:
            raise EdgeLwdetrError(f"the server at {self.url} refused the request: {reason(answer.get('error', status))}")
        tensors, offset, data = {}, 0, body[json_length:]
        for output in answer["outputs"]:
            length = output["parameters"]["binary_data_size"]
            chunk, offset = data[offset : offset + length], offset + length
            tensors[output["name"]] = np.frombuffer(chunk, _DTYPES[output["datatype"]]).reshape(output["shape"])
        return _rows(tensors)

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


class GrpcTransport:
    """gRPC through tritonclient: one channel, shared by the threads (its unary calls are thread-safe)."""

    def __init__(self, url: str, host: str, port: int, model: str, timeout: float):
        try:
            import tritonclient.grpc as grpcclient
            from tritonclient.utils import InferenceServerException
        except ImportError as error:
            raise EdgeLwdetrError(
                f"{url} speaks gRPC, which needs tritonclient[grpc] ({error}): pip install 'edge-lwdetr[client]', or "
                f"use triton+http://{host}:HTTP_PORT/{model}, which needs nothing more"
            ) from None
        self.url, self.model, self.timeout = url, model, timeout
        self._grpc, self._error = grpcclient, InferenceServerException
        self._client = grpcclient.InferenceServerClient(f"{host}:{port}")

    def _call(self, what: str, function, *args, **kwargs):
        try:
            return function(*args, client_timeout=self.timeout, **kwargs)
        except self._error as error:
            if str(error.status()) in ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"):
                raise EdgeLwdetrError(f"cannot reach the server at {self.url}: {error.message()}") from None
            raise EdgeLwdetrError(f"the server at {self.url} refused {what}: {reason(error.message())}") from None

    def ready(self) -> bool:
        return bool(self._call("the readiness check", self._client.is_model_ready, self.model))

    def parameters(self) -> dict[str, str]:
        config = self._call(f"the model {self.model}", self._client.get_model_config, self.model, as_json=True)
        parameters = config.get("config", {}).get("parameters", {})
        return {key: value.get("string_value", "") for key, value in parameters.items()}

    def infer(self, data: bytes, size: tuple[int, int] | None) -> dict[str, np.ndarray]:
        image = self._grpc.InferInput(protocol.IMAGE, [1, 1], "BYTES")
        image.set_data_from_numpy(np.array([[data]], object))
        inputs = [image]
        if size is not None:
            inputs.append(self._grpc.InferInput(protocol.SIZE, [1, 2], "INT32"))
            inputs[-1].set_data_from_numpy(np.array([size], np.int32))
        outputs = [self._grpc.InferRequestedOutput(name) for name in protocol.OUTPUT_NAMES]
        answer = self._call("the request", self._client.infer, self.model, inputs, outputs=outputs)
        return _rows({name: answer.as_numpy(name) for name in protocol.OUTPUT_NAMES})

    def close(self) -> None:
        self._client.close()
