"""ONNX Runtime CPU latency: edge-lwdetr's portable export vs transformers' own torch.onnx export, same weights.

    python benchmarks/onnx_vs_transformers.py --variant small --imgsz 640 --threads 2

Both graphs come from one random transformers checkpoint. transformers' model is exported as its docs do it
(torch.onnx.export, dynamo, the same opset and optimiser); ours with `edge-lwdetr export --msda native`. Sessions
alternate so that machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hf_models import save_hf_model  # noqa: E402

from edge_lwdetr.export.onnx_export import export_onnx  # noqa: E402
from edge_lwdetr.processing import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402


class TransformersOutputs(torch.nn.Module):
    """transformers' model with the same input contract as ours (RGB in [0, 1]) and its two outputs."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.from_numpy(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.from_numpy(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images):
        out = self.model(pixel_values=(images - self.mean) / self.std)
        return out.logits, out.pred_boxes


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="small")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "hf"
        reference = save_hf_model(args.variant, folder)
        ours_path, theirs_path = Path(tmp) / "ours.onnx", Path(tmp) / "transformers.onnx"
        export_onnx(folder, ours_path, imgsz=args.imgsz, msda="native")
        example = torch.rand(1, 3, args.imgsz, args.imgsz)
        with torch.no_grad():
            torch.onnx.export(
                TransformersOutputs(reference).eval(), (example,), dynamo=True, opset_version=18, optimize=True,
                input_names=["images"], output_names=["logits", "pred_boxes"], verbose=False,
            ).save(theirs_path)  # fmt: skip
        sessions = {"edge-lwdetr": session(ours_path, args.threads), "transformers": session(theirs_path, args.threads)}
        sizes = {name: path.stat().st_size / 2**20 for name, path in (("edge-lwdetr", ours_path), ("transformers", theirs_path))}

        images = np.random.default_rng(0).random((1, 3, args.imgsz, args.imgsz), dtype=np.float32)
        outputs = {name: s.run(None, {"images": images}) for name, s in sessions.items()}
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(args.warmup):
            for s in sessions.values():
                s.run(None, {"images": images})
        for _ in range(args.iterations):
            for name, s in sessions.items():
                start = time.perf_counter()
                s.run(None, {"images": images})
                times[name].append((time.perf_counter() - start) * 1000)

    print(f"LW-DETR-{args.variant}, {args.imgsz} px, batch 1, ONNX Runtime {ort.__version__} CPU, {args.threads} threads")
    for name, values in times.items():
        print(f"  {name:<13} median {statistics.median(values):8.1f} ms   min {min(values):8.1f} ms   file {sizes[name]:.1f} MiB")
    diff = np.abs(outputs["edge-lwdetr"][0] - outputs["transformers"][0]).max()
    print(f"  max |logits difference| between the two graphs: {diff:.2e}")
    ratio = statistics.median(times["edge-lwdetr"]) / statistics.median(times["transformers"])
    print(f"  ratio edge-lwdetr / transformers (median): {ratio:.3f}")


if __name__ == "__main__":
    main()
