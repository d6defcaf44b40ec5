"""The MSDA CUDA kernel (through its C entry point) vs PyTorch's grid_sample path, on a GPU, for every variant's
MSDA shapes: correctness (FP32 within 1e-5, FP16 within 1e-2 relative) and latency at batch 1 and 8.

    cmake -S plugins/msda -B build/plugins && cmake --build build/plugins -j
    python benchmarks/msda_kernel_gpu.py --library build/plugins/libedge_lwdetr_msda_kernel.so

Needs a CUDA GPU with PyTorch (CUDA build) and CuPy; the goal is a speed-up of at least 10x over grid_sample.
"""

from __future__ import annotations

import argparse
import ctypes
from pathlib import Path

import torch

from edge_lwdetr.model.msda import level_start_index, ms_deform_attn_reference

# (levels at 640 px, heads, channels per head, points, queries) of each variant's cross-attention.
SHAPES = {
    "tiny": (((40, 40),), 16, 16, 2, 100),
    "small/medium": (((40, 40),), 16, 16, 2, 300),
    "large/xlarge": (((80, 80), (20, 20)), 24, 16, 4, 300),
}
TYPES = {"fp32": (torch.float32, torch.float32, 0, 0), "fp16": (torch.float16, torch.float16, 1, 1), "fp16-fp32loc": (torch.float16, torch.float32, 1, 0)}


def time_ms(fn, iterations: int = 200) -> float:
    for _ in range(20):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iterations):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, required=True)
    args = parser.parse_args()
    library = ctypes.CDLL(str(args.library))
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    for name, (shapes, heads, channels, points, queries) in SHAPES.items():
        for batch in (1, 8):
            tokens, levels = sum(h * w for h, w in shapes), len(shapes)
            value = torch.randn(batch, tokens, heads, channels, device="cuda")
            locations = torch.rand(batch, queries, heads, levels, points, 2, device="cuda") * 1.2 - 0.1
            weights = torch.rand(batch, queries, heads, levels * points, device="cuda").softmax(-1)
            weights = weights.reshape(batch, queries, heads, levels, points)
            shapes_t = torch.tensor(shapes, dtype=torch.int32, device="cuda")
            starts_t = torch.tensor(level_start_index(shapes), dtype=torch.int32, device="cuda")
            expected = ms_deform_attn_reference(value, shapes, locations, weights)
            reference_ms = time_ms(lambda: ms_deform_attn_reference(value, shapes, locations, weights))
            for mode, (value_type, loc_type, value_code, loc_code) in TYPES.items():
                v, l, w = value.to(value_type), locations.to(loc_type), weights.to(loc_type)
                out = torch.empty(batch, queries, heads, channels, device="cuda", dtype=value_type)

                def kernel():
                    code = library.edgeLwdetrMsdaEnqueue(
                        value_code, loc_code, ctypes.c_void_p(v.data_ptr()), ctypes.c_void_p(shapes_t.data_ptr()),
                        ctypes.c_void_p(starts_t.data_ptr()), ctypes.c_void_p(l.data_ptr()), ctypes.c_void_p(w.data_ptr()),
                        ctypes.c_void_p(out.data_ptr()), batch, tokens, heads, channels, queries, levels, points,
                        ctypes.c_void_p(torch.cuda.current_stream().cuda_stream),
                    )  # fmt: skip
                    assert code == 0

                kernel()
                torch.cuda.synchronize()
                error = (out.float() - expected).abs().max().item()
                scale = expected.abs().max().item()
                ok = error <= 1e-5 if mode == "fp32" else error <= 1e-2 * scale
                kernel_ms = time_ms(kernel)
                print(f"  {name:<13} batch {batch}  {mode:<13} max err {error:.2e} ({'ok' if ok else 'FAIL'})  "
                      f"kernel {kernel_ms * 1000:7.1f} us  grid_sample {reference_ms * 1000:7.1f} us  "
                      f"speed-up {reference_ms / kernel_ms:5.1f}x")


if __name__ == "__main__":
    main()
