"""Serving's expected failures, one line each, without a server: they run wherever the base install does."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
from serving import free_ports, grpc_client_missing

from edge_lwdetr import Detector
from edge_lwdetr.cli import main
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.serving import Client
from edge_lwdetr.serving.client import ServerAddress, is_server_url, parse_url


def test_server_urls():
    assert parse_url("triton://example:9000/detector") == ServerAddress("grpc", "example", 9000, "detector")
    assert parse_url("triton://example") == ServerAddress("grpc", "example", 8001, "lwdetr")
    assert parse_url("triton+http://127.0.0.1") == ServerAddress("http", "127.0.0.1", 8000, "lwdetr")
    assert is_server_url("triton://host/lwdetr") and not is_server_url("model.onnx")
    with pytest.raises(EdgeLwdetrError, match="use triton://HOST:GRPC_PORT/MODEL .* or triton\\+http://"):
        Client("http://127.0.0.1:8000/lwdetr")


@pytest.mark.parametrize("scheme", ["triton+http", pytest.param("triton", marks=pytest.mark.skipif(
    grpc_client_missing() is not None, reason=str(grpc_client_missing())))])  # fmt: skip
def test_no_server_is_a_one_line_error(scheme):
    (port,) = free_ports(1)
    url = f"{scheme}://127.0.0.1:{port}/lwdetr"
    with Client(url, timeout=10) as client:
        assert not client.ready()
        with pytest.raises(EdgeLwdetrError, match=f"cannot reach the server at {re.escape(url)}"):
            client.predict(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(EdgeLwdetrError, match=f"cannot reach the server at {re.escape(url)}"):
        Detector(url)  # the backend asks for the class names at once


@pytest.mark.skipif(grpc_client_missing() is None, reason="tritonclient[grpc] is installed here")
def test_grpc_without_tritonclient_says_what_to_install():
    with pytest.raises(EdgeLwdetrError, match=r"pip install 'edge-lwdetr\[client\]', or use triton\+http://"):
        Client("triton://127.0.0.1:8001/lwdetr")


def test_served_models_are_for_run_and_detector_only(capsys, tmp_path):
    import cv2

    assert main(["eval", "--model", "triton+http://127.0.0.1:1/lwdetr", "--data", "missing"]) == 2
    assert "only `run` (`predict`) and Detector take" in capsys.readouterr().err
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    url = "triton+http://127.0.0.1:1/lwdetr"
    assert main(["run", "--model", url, "--source", str(tmp_path / "a.png"), "--imgsz", "320"]) == 2
    assert "leave out --backend, --imgsz" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("pytriton") is not None, reason="PyTriton is installed here")
def test_serve_without_pytriton_says_where_it_lives(capsys):
    assert main(["serve", "--model", "missing.onnx"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "bash install.sh` makes .venv-serve" in error


def test_triton_repository_refuses_a_precision_and_a_batch(capsys, tmp_path):
    assert main(["export", "--format", "triton", "--precision", "int8", "--output", str(tmp_path / "r")]) == 2
    assert "--format triton writes an fp32 dynamic-batch" in capsys.readouterr().err
    assert main(["export", "--format", "triton", "--batch", "4", "--output", str(tmp_path / "r")]) == 2
    assert "leave out --precision, --batch, --dynamic-batch and --input-format" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
