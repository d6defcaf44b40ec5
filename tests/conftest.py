import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hf_models import ONNX_SIZES, save_hf_model  # noqa: E402


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory):
    """variant -> (folder saved by transformers' save_pretrained, the transformers model); built once per session."""
    cache = {}

    def get(variant: str):
        if variant not in cache:
            folder = tmp_path_factory.mktemp(f"hf_{variant}")
            cache[variant] = (folder, save_hf_model(variant, folder, seed=0))
        return cache[variant]

    return get


@pytest.fixture(scope="session")
def native_export(hf_checkpoint, tmp_path_factory):
    """variant -> (checkpoint folder, path of its dynamic-batch native export, the model); exported once."""
    cache = {}

    def get(variant):
        from edge_lwdetr.export.onnx_export import export_onnx

        if variant not in cache:
            folder, _ = hf_checkpoint(variant)
            path = tmp_path_factory.mktemp(f"onnx_{variant}") / "native.onnx"
            model = export_onnx(folder, path, imgsz=ONNX_SIZES[variant], dynamic_batch=True, msda="native")
            cache[variant] = (folder, path, model)
        return cache[variant]

    return get


@pytest.fixture(scope="session")
def bundled_onnx(tmp_path_factory):
    """The bundled model's float-input export (native MSDA), exported once."""
    from edge_lwdetr.bundled import BUNDLED_MODEL
    from edge_lwdetr.export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("bundled") / "float.onnx"
    export_onnx(BUNDLED_MODEL, path, msda="native")
    return path
