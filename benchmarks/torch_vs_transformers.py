"""PyTorch eager latency of edge-lwdetr's LW-DETR vs transformers' LwDetrForObjectDetection, same weights.

    python benchmarks/torch_vs_transformers.py --variant small --imgsz 640 --threads 2

Both models are built from one random transformers checkpoint saved with save_pretrained; each is timed over the
same input, alternating between them so that machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hf_models import save_hf_model  # noqa: E402

from edge_lwdetr.model.loading import load_model  # noqa: E402


def time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="small")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        reference = save_hf_model(args.variant, Path(folder))
        ours = load_model(folder).model
    images = torch.randn(1, 3, args.imgsz, args.imgsz)

    runs = {"edge-lwdetr": lambda: ours(images), "transformers": lambda: reference(pixel_values=images)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.inference_mode():
        for _ in range(args.warmup):
            for fn in runs.values():
                fn()
        for _ in range(args.iterations):
            for name, fn in runs.items():
                times[name].append(time_once(fn))

    print(f"LW-DETR-{args.variant}, {args.imgsz} px, batch 1, {args.threads} threads, torch {torch.__version__}")
    for name, values in times.items():
        print(f"  {name:<13} median {statistics.median(values):8.1f} ms   min {min(values):8.1f} ms")
    ratio = statistics.median(times["edge-lwdetr"]) / statistics.median(times["transformers"])
    print(f"  ratio edge-lwdetr / transformers (median): {ratio:.3f}")


if __name__ == "__main__":
    main()
