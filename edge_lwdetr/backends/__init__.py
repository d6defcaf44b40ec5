"""Inference backends behind one interface.

Every backend takes a batch [B, 3, S, S] float32 RGB in [0, 1] (the exported graph's input contract: the
normalisation is part of the model) and returns logits [B, Q, C] and boxes [B, Q, 4] as NumPy arrays. Backends are
imported lazily, so the CPU path never imports what another backend needs.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    name: str
    image_size: int
    id2label: dict[int, str]

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
