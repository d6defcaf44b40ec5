"""Per-stage latency statistics."""

from __future__ import annotations

import threading
from collections import defaultdict

import numpy as np

STAGES = ("capture", "preprocess", "wait", "h2d", "infer", "d2h", "postprocess", "sink")


class StageTimes:
    def __init__(self):
        self.samples: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()  # several pipeline threads add their stages

    def add(self, timings_ms: dict[str, float]) -> None:
        with self._lock:
            for stage, ms in timings_ms.items():
                self.samples[stage].append(ms)

    def summary(self) -> dict[str, dict[str, float]]:
        """p50 / p90 / p99 / mean per stage, in pipeline order."""
        out = {}
        for stage in [s for s in STAGES if s in self.samples] + [s for s in self.samples if s not in STAGES]:
            values = np.asarray(self.samples[stage])  # after the run: no thread adds any more
            p50, p90, p99 = np.percentile(values, [50, 90, 99])
            out[stage] = {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(values.mean())}
        return out
