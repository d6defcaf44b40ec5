"""Serving's expected failures, one line each, without a server: they run wherever the base install does."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from serving import free_ports

from edge_lwdetr.cli import main
from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.serving import Client
from edge_lwdetr.serving.client import parse_url


def test_server_urls():
    assert parse_url("triton://example:9000/detector") == ("example", 9000, "detector")
    assert parse_url("http://127.0.0.1") == ("127.0.0.1", 8000, "lwdetr")
    with pytest.raises(EdgeLwdetrError, match="use triton://HOST:HTTP_PORT/MODEL"):
        Client("grpc://127.0.0.1:8001/lwdetr")


def test_no_server_is_a_one_line_error():
    (port,) = free_ports(1)
    with Client(f"triton://127.0.0.1:{port}/lwdetr", timeout=10) as client:
        assert not client.ready()
        with pytest.raises(EdgeLwdetrError, match=f"cannot reach the server at triton://127.0.0.1:{port}/lwdetr"):
            client.predict(np.zeros((8, 8, 3), np.uint8))


@pytest.mark.skipif(importlib.util.find_spec("pytriton") is not None, reason="PyTriton is installed here")
def test_serve_without_pytriton_says_where_it_lives(capsys):
    assert main(["serve", "--model", "missing.onnx"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "bash install.sh` makes .venv-serve" in error


def test_triton_repository_refuses_a_precision_and_a_batch(capsys, tmp_path):
    assert main(["export", "--format", "triton", "--precision", "int8", "--output", str(tmp_path / "r")]) == 2
    assert "--format triton writes an fp32 dynamic-batch graph" in capsys.readouterr().err
    assert main(["export", "--format", "triton", "--batch", "4", "--output", str(tmp_path / "r")]) == 2
    assert "leave out --precision, --batch and --dynamic-batch" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
