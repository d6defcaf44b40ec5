"""The engine sidecar: what the runtime refuses before loading an engine."""

import pytest

from edge_lwdetr.engine.sidecar import check_sidecar, read_sidecar, write_sidecar
from edge_lwdetr.errors import EdgeLwdetrError

BUILT = {"tensorrt_version": "10.3.0", "gpu": {"name": "Orin", "compute_capability": "8.7"}, "build_options": {}}


def test_matching_engine_is_accepted(tmp_path):
    engine = tmp_path / "m.engine"
    write_sidecar(engine, BUILT)
    check_sidecar(read_sidecar(engine), "10.3.0", "Orin", "8.7")


def test_other_tensorrt_or_gpu_is_refused():
    with pytest.raises(EdgeLwdetrError, match="TensorRT 10.3.0 for Orin .* this is TensorRT 10.13"):
        check_sidecar(BUILT, "10.13.3", "Orin", "8.7")
    with pytest.raises(EdgeLwdetrError, match="rebuild it here"):
        check_sidecar(BUILT, "10.3.0", "NVIDIA H100", "9.0")


def test_version_compatible_engine_spans_tensorrt_versions_not_gpus():
    compatible = {**BUILT, "build_options": {"version_compatible": True}}
    check_sidecar(compatible, "10.13.3", "Orin", "8.7")
    with pytest.raises(EdgeLwdetrError):
        check_sidecar(compatible, "10.13.3", "NVIDIA H100", "9.0")


def test_missing_or_broken_sidecar(tmp_path):
    with pytest.raises(EdgeLwdetrError, match="no sidecar"):
        read_sidecar(tmp_path / "m.engine")
    (tmp_path / "m.engine.json").write_text("{")
    with pytest.raises(EdgeLwdetrError, match="not valid JSON"):
        read_sidecar(tmp_path / "m.engine")
