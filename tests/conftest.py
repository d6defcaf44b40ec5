import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hf_models import save_hf_model  # noqa: E402


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
