"""`edge-lwdetr serve` for real: the bundled model on ONNX Runtime behind PyTriton's Triton, asked by the client.

The server runs in the serve environment (.venv-serve, which install.sh makes; nvidia-pytriton pins numpy<2), so
these tests skip, saying so, where it is missing.
"""

from __future__ import annotations

import json
import threading

import cv2
import numpy as np
import pytest
from serving import Server, bundled_onnx, grpc_client_missing, serve_python

from edge_lwdetr import Detector
from edge_lwdetr.cli import main
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.serving import Client
from edge_lwdetr.synthetic.dataset import scene_at
from edge_lwdetr.synthetic.shapes import render

PYTHON = serve_python()
pytestmark = pytest.mark.skipif(
    PYTHON is None, reason="no serve environment with nvidia-pytriton: `bash install.sh` makes .venv-serve"
)
SIZES = [(320, 240), (256, 256), (200, 300), (640, 360)]
GRPC = pytest.param("grpc", marks=pytest.mark.skipif(grpc_client_missing() is not None, reason=str(grpc_client_missing())))


def url_of(server: Server, protocol: str) -> str:
    return server.url if protocol == "grpc" else server.http_url


def images(count: int = 4) -> list[np.ndarray]:
    return [render(scene_at(16, i), *SIZES[i % len(SIZES)]) for i in range(count)]


@pytest.fixture(scope="module")
def onnx(tmp_path_factory):
    return bundled_onnx(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def server(onnx, tmp_path_factory):
    running = Server(PYTHON, onnx, tmp_path_factory.mktemp("log") / "serve.log", "--max-batch", "8")
    yield running
    assert running.stop() == 0, running.log.read_text()[-4000:]


def assert_same(local, remote) -> None:
    assert remote.shape == local.shape and remote.source == local.source and remote.frame == local.frame
    np.testing.assert_array_equal(remote.labels, local.labels)
    np.testing.assert_allclose(remote.scores, local.scores, atol=1e-4)
    np.testing.assert_allclose(remote.xyxy, local.xyxy, atol=1e-2)  # pixels; ONNX Runtime builds may differ slightly
    assert remote.names == local.names  # every class, from the served model's configuration


@pytest.mark.parametrize("protocol", [GRPC, "http"])
def test_detections_equal_local_inference(server, onnx, tmp_path, protocol):
    frames = images()
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), frames[0])
    url = url_of(server, protocol)
    with Detector(onnx) as detector, Client(url) as client, Detector(url) as served:
        assert client.ready()
        assert client.names == detector.names and client.info.image_size == detector.backend.image_size
        local, remote = detector.predict([*frames, path]), client.predict([*frames, path])
        assert sum(len(r) for r in local) > 0
        for a, b in zip(local, remote, strict=True):
            assert_same(a, b)
        for a, b in zip(local, served.predict([*frames, path]), strict=True):  # Detector(url): the same client
            assert_same(a, b)
        png = Client(url, encoding=".png").predict(frames[1])[0]  # lossless: the same pixels, encoded
        assert_same(local[1], png)
        assert remote[0].plot().shape == frames[0].shape


@pytest.mark.parametrize("protocol", [GRPC, "http"])
def test_run_with_a_served_model_records_what_the_local_model_does(server, onnx, tmp_path, protocol):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(images()):
        cv2.imwrite(str(folder / f"{i}.png"), frame)  # lossless: the server sees the frames run reads
    records = {}
    for name, model in (("local", str(onnx)), ("served", url_of(server, protocol))):
        out = tmp_path / f"{name}.jsonl"
        assert main(["run", "--model", model, "--source", str(folder), "--save-json", str(out)]) == 0
        records[name] = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records["served"]) == len(records["local"]) == 4
    assert sum(len(r["detections"]) for r in records["local"]) > 0
    for local, served in zip(records["local"], records["served"]):
        assert served["source"] == local["source"] and served["size"] == local["size"]
        assert "remote" in served["timings_ms"] and "preprocess" not in served["timings_ms"]
        assert [d["name"] for d in served["detections"]] == [d["name"] for d in local["detections"]]
        for a, b in zip(local["detections"], served["detections"]):
            assert a["label"] == b["label"] and abs(a["score"] - b["score"]) < 1e-4
            np.testing.assert_allclose(b["box"], a["box"], atol=1e-2)


def test_concurrent_requests_are_batched(server):
    frames = images(4)
    before_requests = server.metric("nv_inference_request_success")
    before_executions = server.metric("nv_inference_exec_count")
    answers, errors = [], []

    def ask() -> None:
        with Client(server.http_url, timeout=120) as client:
            for frame in frames:
                try:
                    answers.append(client.predict(frame)[0])
                except EdgeLwdetrError as error:
                    errors.append(error)

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors and len(answers) == 12 * len(frames)
    requests = server.metric("nv_inference_request_success") - before_requests
    executions = server.metric("nv_inference_exec_count") - before_executions
    assert requests == 12 * len(frames)
    assert executions < requests, f"{requests} requests ran in {executions} executions: no batch over 1"


def test_malformed_requests_get_a_clear_error_and_the_server_keeps_serving(server):
    frame = images(1)[0]
    with Client(server.http_url) as client:
        with pytest.raises(EdgeLwdetrError, match="not an image OpenCV can decode"):
            client.infer_bytes(b"this is not an image")
        with pytest.raises(EdgeLwdetrError, match="raw 20x30 BGR frame is 1800 bytes"):
            client.infer_bytes(b"\0" * 100, (20, 30))
        with pytest.raises(EdgeLwdetrError, match="not a frame size"):
            client.infer_bytes(b"\0" * 100, (100000, 100000))
        status, error = wrong_dtype(client, frame)
        assert status == 400 and "'size' data-type is 'FP32', but model 'lwdetr' expects 'INT32'" in error
        assert len(client.predict(frame)[0]) > 0  # still serving
    if grpc_client_missing() is None:  # the same reason through gRPC
        with Client(server.url) as client:
            with pytest.raises(EdgeLwdetrError, match="refused the request: .*not an image OpenCV can decode"):
                client.infer_bytes(b"this is not an image")
            assert len(client.predict(frame)[0]) > 0


def wrong_dtype(client: Client, frame: np.ndarray) -> tuple[int, str]:
    """A request whose `size` is FP32, not INT32: Triton refuses it before the model sees it."""
    import json

    header = json.dumps({"inputs": [
        {"name": "image", "shape": [1, 1], "datatype": "BYTES", "data": ["x"]},
        {"name": "size", "shape": [1, 2], "datatype": "FP32", "data": [float(frame.shape[0]), float(frame.shape[1])]},
    ]}).encode()  # fmt: skip
    status, _, body = client.transport.request("POST", f"/v2/models/{client.model}/infer", header,
                                               {"Content-Type": "application/json"})  # fmt: skip
    return status, json.loads(body).get("error", "")


def test_sigterm_during_load_answers_every_request(onnx, tmp_path):
    running = Server(PYTHON, onnx, tmp_path / "serve.log", "--max-batch", "4")
    frame = images(1)[0]
    outcomes: list[str] = []
    first = threading.Event()

    def ask() -> None:
        with Client(running.http_url, timeout=120) as client:
            for _ in range(6):
                try:
                    client.predict(frame)
                    outcomes.append("ok")
                    first.set()
                except EdgeLwdetrError as error:  # refused or cut off: an answer, not a hang
                    outcomes.append(f"error: {error}")

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    assert first.wait(180), running.log.read_text()[-4000:]
    running.terminate()
    for thread in threads:
        thread.join(300)
    assert not any(thread.is_alive() for thread in threads)
    assert len(outcomes) == 36 and "ok" in outcomes
    assert running.stop() == 0, running.log.read_text()[-4000:]


def graph_io(path) -> dict[str, list]:
    """Each input and output of an ONNX graph: its dims, a symbolic one as 'batch'."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    return {
        tensor.name: [d.dim_value if d.HasField("dim_value") else "batch" for d in tensor.type.tensor_type.shape.dim]
        for tensor in [*graph.input, *graph.output]
    }


PARSE_CONFIGS = """
import json, sys
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
configs = [text_format.Parse(open(path).read(), model_config_pb2.ModelConfig()) for path in sys.argv[1:]]
print(json.dumps([json_format.MessageToDict(config) for config in configs]))
"""


def test_exported_repository_parses_and_loads_in_the_bundled_server(tmp_path):
    import subprocess
    import sys

    from serving import RepositoryServer

    repository = tmp_path / "repo"
    subprocess.run([sys.executable, "-m", "edge_lwdetr", "export", "--format", "triton", "--output", str(repository)],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    configs = [repository / "lwdetr" / "config.pbtxt", repository / "lwdetr_trt" / "config.pbtxt"]
    parsed = subprocess.run([PYTHON, "-c", PARSE_CONFIGS, *map(str, configs)], capture_output=True, text=True, timeout=120, check=False)
    assert parsed.returncode == 0, parsed.stderr
    python_model, plan_model = json.loads(parsed.stdout)
    assert python_model["backend"] == "python" and python_model["maxBatchSize"] == 8
    assert python_model["instanceGroup"][0]["kind"] == "KIND_CPU" and "dynamicBatching" in python_model
    assert plan_model["platform"] == "tensorrt_plan" and plan_model["instanceGroup"][0]["kind"] == "KIND_GPU"
    assert [i["dims"] for i in plan_model["input"]] == [["3", "256", "256"]]
    assert graph_io(repository / "lwdetr" / "1" / "model.onnx") == {  # the plan's I/O: the graph's, batch first
        tensor["name"]: ["batch", *map(int, tensor["dims"])] for tensor in plan_model["input"] + plan_model["output"]
    }
    for config in (python_model, plan_model):
        parameters = {key: value["stringValue"] for key, value in config["parameters"].items()}
        assert json.loads(parameters["id2label"])["1"] == "circle" and parameters["image_size"] == "256"
    assert "LD_PRELOAD" in (repository / "README.md").read_text()

    running = RepositoryServer(PYTHON, repository, tmp_path)
    try:
        frames = images()
        urls = [running.http_url] + ([running.url] if grpc_client_missing() is None else [])
        with Detector(repository / "lwdetr" / "1" / "model.onnx") as detector:
            local = detector.predict(frames)
            for url in urls:
                with Client(url) as client:
                    with pytest.raises(EdgeLwdetrError, match="not an image OpenCV can decode"):
                        client.infer_bytes(b"not an image")
                    for a, b in zip(local, client.predict(frames), strict=True):
                        assert_same(a, b)
    finally:
        running.stop()
