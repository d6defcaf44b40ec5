"""transformers' own LwDetrForObjectDetection, randomly initialised, as the reference for parity tests.

The transformers configs below are written from the published conversion script's values (out_indices counted
with the patch embedding as stage 0), independently of edge_lwdetr's variant table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

# Reduced input sizes for the ONNX tests (enough memory tokens for each variant's queries).
ONNX_SIZES = {"tiny": 256, "small": 320, "medium": 320, "large": 320, "xlarge": 256}

_WINDOWS = [0, 1, 3, 6, 7, 9]
HF_VARIANTS = {
    "tiny": dict(vit=(192, 6, [0, 2, 4], [2, 4, 6]), scales=[1.0], queries=100, heads=(8, 16), points=2, d=256),
    "small": dict(vit=(192, 10, _WINDOWS, [3, 5, 6, 10]), scales=[1.0], queries=300, heads=(8, 16), points=2, d=256),
    "medium": dict(vit=(384, 10, _WINDOWS, [3, 5, 6, 10]), scales=[1.0], queries=300, heads=(8, 16), points=2, d=256),
    "large": dict(vit=(384, 10, _WINDOWS, [3, 5, 6, 10]), scales=[2.0, 0.5], queries=300, heads=(12, 24), points=4, d=384),
    "xlarge": dict(vit=(768, 10, _WINDOWS, [3, 5, 6, 10]), scales=[2.0, 0.5], queries=300, heads=(12, 24), points=4, d=384),
}  # fmt: skip


def hf_config(
    variant: str, num_labels: int = 91, out_indices: list[int] | None = None, backbone: dict | None = None, **fields
):
    """The transformers config of `variant`; `backbone` and `fields` override backbone_config and top-level fields."""
    from transformers import LwDetrConfig

    spec = HF_VARIANTS[variant]
    width, depth, windows, outs = spec["vit"]
    backbone_config = dict(
        model_type="lw_detr_vit",
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=12,
        window_block_indices=windows,
        out_indices=out_indices or outs,
        image_size=1024,
    )
    top = dict(
        projector_scale_factors=spec["scales"],
        num_queries=spec["queries"],
        decoder_self_attention_heads=spec["heads"][0],
        decoder_cross_attention_heads=spec["heads"][1],
        decoder_n_points=spec["points"],
        d_model=spec["d"],
        num_labels=num_labels,
    )
    return LwDetrConfig(backbone_config={**backbone_config, **(backbone or {})}, **{**top, **fields})


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int) -> None:
    """Give every weight a random value of a realistic scale.

    transformers' init zeroes the box heads, the reference-point table and the MSDA offset and weight projections,
    and its class logits barely differ between tokens (near-ties make the two-stage top-k order fragile). Random
    values everywhere make every tensor, and so every key of the mapping, matter to the outputs.
    """
    generator = torch.Generator().manual_seed(seed)

    def normal(t: torch.Tensor) -> torch.Tensor:
        return torch.randn(t.shape, generator=generator, dtype=torch.float32)

    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if not tensor.is_floating_point():
            continue
        if name.endswith("running_var"):
            value = 1 + 0.2 * normal(tensor).abs()
        elif tensor.ndim == 1 and "gamma" in name:
            value = 0.1 + 0.05 * normal(tensor)
        elif tensor.ndim == 1 and name.endswith("weight"):  # LayerNorm / BatchNorm scales
            value = 1 + 0.1 * normal(tensor)
        elif tensor.ndim == 1:  # biases, running means
            value = 0.1 * normal(tensor)
        elif "reference_point_embed" in name or "refpoint_embed" in name:
            value = 0.5 * normal(tensor)
        else:
            fan_in = tensor[0].numel() if tensor.ndim > 1 else tensor.numel()
            value = normal(tensor) / fan_in**0.5
        tensor.copy_(value)


def save_hf_model(variant: str, folder: Path | None, seed: int = 0, **config_overrides):
    """A random transformers LwDetrForObjectDetection of `variant`, saved with save_pretrained (unless `folder` is
    None); returns the model."""
    from transformers import LwDetrForObjectDetection

    torch.manual_seed(seed)
    model = LwDetrForObjectDetection(hf_config(variant, **config_overrides)).eval()
    randomize(model, seed)
    if folder is not None:
        model.save_pretrained(folder)
    return model


def well_conditioned_images(model, count: int, size: int, margin: float = 1e-5, seed: int = 0):
    """`count` random images in [0, 1] on which the two-stage top-k selection is well-conditioned.

    Two runtimes (PyTorch, ONNX Runtime) compute the encoder scores with different kernels, about 4e-6 apart. When
    two of the top-k+1 scores are closer than that, the runtimes may order them differently: two queries swap
    reference boxes and every output moves. Comparing runtimes is meaningful only on inputs whose sorted top-k+1
    scores are all more than `margin` apart, so those are drawn here (random weights make near-ties common).
    """
    from edge_lwdetr.processing import normalize

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(200):
        image = rng.random((1, 3, size, size), dtype=np.float32)
        with torch.no_grad():
            memory, shapes = model.memory(torch.from_numpy(normalize(image)))
            scores = model.proposal_scores(memory, shapes)[2][0]
        top = torch.sort(scores, descending=True).values[: model.config.num_queries + 1]
        if (top[:-1] - top[1:]).min().item() > margin:
            images.append(image)
            if len(images) == count:
                return np.concatenate(images)
    raise AssertionError(f"no well-conditioned input found in 200 draws (margin {margin})")


def fails_with(capsys, argv: list[str], *fragments: str) -> str:
    """Runs the CLI in-process: it must fail with status 2 and one `edge-lwdetr: error:` line holding `fragments`."""
    from edge_lwdetr.cli import main

    capsys.readouterr()  # drop what fixtures printed (save_pretrained's progress bar)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edge-lwdetr: error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]
    return err[0]


def build_plugin_library(folder: Path) -> Path:
    """The MSDA plugin built with TensorRT (for tests that run where TensorRT is installed)."""
    import subprocess

    source = Path(__file__).resolve().parents[1] / "plugins" / "msda"
    subprocess.run(["cmake", "-S", source, "-B", folder], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", folder, "-j"], check=True, capture_output=True)
    return folder / "libedge_lwdetr_plugins.so"


def zero_sampling_offsets(model, layer: int = 0):
    """A broken export: one decoder layer's sampling-offset projection (weight and bias) set to zero."""
    from onnx import numpy_helper

    bias = f"model.decoder.layers.{layer}.cross_attn.sampling_offsets.bias"
    gemm = next(node for node in model.graph.node if node.op_type == "Gemm" and bias in node.input)
    for initializer in model.graph.initializer:
        if initializer.name in gemm.input[1:]:
            zeros = np.zeros_like(numpy_helper.to_array(initializer))
            initializer.CopyFrom(numpy_helper.from_array(zeros, initializer.name))
    return model
