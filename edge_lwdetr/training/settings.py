"""Training hyper-parameters (no heavy imports: the CLI builds its options from them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 4500
    batch: int = 8
    image_size: int = 256
    lr: float = 4e-4
    weight_decay: float = 1e-4
    warmup: int = 300
    ema_decay: float = 0.998
    seed: int = 0
    groups: int = 13
    num_queries: int = 30
    threads: int = 2
