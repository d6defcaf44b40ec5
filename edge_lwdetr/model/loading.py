"""Load LW-DETR weights from a transformers folder, a Hugging Face hub id, an original `.pth` or a `.safetensors`.

Every expected failure (missing file, truncated file, foreign architecture, wrong shapes, no network) raises
EdgeLwdetrError with a one-line message that names the file and the fix.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from edge_lwdetr.errors import EdgeLwdetrError
from edge_lwdetr.labels import default_id2label
from edge_lwdetr.model.checkpoint import (
    CheckpointWarning,
    config_from_original_args,
    config_from_transformers,
    convert_state_dict,
    detect_layout,
    infer_config,
)
from edge_lwdetr.model.config import LwDetrConfig, variant_name
from edge_lwdetr.model.lwdetr import LWDETR

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_FILES = ["config.json", "*.safetensors", "model.safetensors.index.json", "preprocessor_config.json"]


@dataclass
class LoadedModel:
    model: LWDETR
    config: LwDetrConfig
    variant: str
    id2label: dict[int, str]
    weights_files: list[Path]  # what the weights were read from, for hashes and messages
    image_size: int | None = None  # the square input size the folder's preprocessor_config.json names, if any
    num_select: int | None = None  # the original `--num_select`: how many (query, class) pairs its evaluation kept
    weights_key: str | None = None  # the entry of a training checkpoint the weights came from: 'model' or 'ema_model'
    notes: list[str] = field(default_factory=list)  # what the loader chose or guessed, also given as warnings


@dataclass
class TorchCheckpoint:
    state: dict[str, torch.Tensor]
    args: Any = None  # the original training arguments (an argparse.Namespace read as data), if saved
    key: str | None = None  # 'model' or 'ema_model' when the file is a checkpoint dict
    has_ema: bool = False


def load_model(weights: str | Path, variant: str | None = None, device: str = "cpu", ema: bool = False) -> LoadedModel:
    """Build LW-DETR from `weights`: a folder (config.json + model.safetensors), a hub id, a .pth or .safetensors.

    The architecture comes from config.json, or from the `args` an original `.pth` saved, else from the weights'
    shapes (a guess, said in a warning); `variant` overrides. `ema`: take a training checkpoint's `ema_model`.
    """
    path = Path(weights)
    if ema and not (path.is_file() and path.suffix in (".pth", ".pt")):
        raise EdgeLwdetrError(f"--ema applies to original training checkpoints (.pth) only, not {weights}")
    if path.is_dir():
        return _load_transformers_folder(path, variant, device)
    if path.is_file():
        if path.suffix in (".pth", ".pt"):
            return _load_torch_checkpoint(path, variant, device, ema)
        if path.suffix == ".safetensors":
            if (path.parent / "config.json").is_file():
                return _load_transformers_folder(path.parent, variant, device)
            return _build(read_safetensors([path]), None, variant, None, [path], device, str(path))
        raise EdgeLwdetrError(
            f"{path}: unknown weights format '{path.suffix}'; pass a transformers folder, a .pth or a .safetensors"
        )
    if HUB_ID.match(str(weights)) and not str(weights).startswith("."):
        return _load_transformers_folder(download_from_hub(str(weights)), variant, device)
    raise EdgeLwdetrError(
        f"weights not found: {weights} (pass a transformers folder with config.json and model.safetensors, "
        "an original LW-DETR .pth, a .safetensors, or a hub id such as AnnaZhang/lwdetr_small_60e_coco)"
    )


def download_from_hub(repo_id: str) -> Path:
    """Download (or reuse from the Hugging Face cache) the files a transformers LW-DETR checkpoint needs."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
    except Exception as error:  # noqa: BLE001 - offline, unknown repo, gated, HTTP: all mean "not available"
        detail = " ".join(str(error).split())[:200]
        raise EdgeLwdetrError(
            f"cannot download '{repo_id}' from the Hugging Face Hub ({type(error).__name__}: {detail}); "
            "when offline, pass a local folder holding its config.json and model.safetensors with --weights"
        ) from None


def read_safetensors(files: list[Path]) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state = {}
    for file in files:
        try:
            state.update(load_file(file))
        except (SafetensorError, OSError, ValueError) as error:
            raise EdgeLwdetrError(
                f"{file} is not a readable safetensors file ({' '.join(str(error).split())}); it may be truncated "
                "or corrupt: download it again"
            ) from None
    return state


def read_torch_checkpoint(path: Path, ema: bool = False) -> TorchCheckpoint:
    """Tensors of an original LW-DETR checkpoint, read without running its pickle.

    `weights_only=True` refuses any pickled callable. The original files also pickle their training arguments as
    an argparse.Namespace (plain data), which is allowed so the file loads: they tell the architecture, which the
    tensors' shapes cannot fully tell. Training checkpoints (`checkpoint.pth`) also hold `ema_model`, taken with
    `ema`.
    """
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives; anything else is another format
        raise EdgeLwdetrError(
            f"{path} is not a checkpoint written by torch.save (a plain pickle, or not PyTorch at all); pass the "
            "original LW-DETR .pth, a transformers folder or a .safetensors file"
        )
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: the refusal below says what matters
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        unsafe = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path)) or "unknown objects"
        raise EdgeLwdetrError(
            f"{path} pickles objects that could run code when loaded ({unsafe}), so it is refused; if you trust "
            "it, re-save only its tensors: torch.save(torch.load(p, weights_only=False)['model'], 'weights.pth')"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise EdgeLwdetrError(
            f"{path} is not a readable PyTorch checkpoint ({' '.join(str(error).split())[:160]}); "
            "it may be truncated: download it again"
        ) from None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        has_ema = isinstance(checkpoint.get("ema_model"), dict)
        if ema and not has_ema:
            raise EdgeLwdetrError(
                f"{path} holds no 'ema_model' (only {', '.join(map(repr, checkpoint))}): drop --ema to load 'model'"
            )
        key = "ema_model" if ema else "model"
        return TorchCheckpoint(checkpoint[key], checkpoint.get("args"), key, has_ema)
    if isinstance(checkpoint, dict) and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        if ema:
            raise EdgeLwdetrError(f"{path} is a bare state dict with no 'ema_model': drop --ema")
        return TorchCheckpoint(checkpoint)
    raise EdgeLwdetrError(f"{path} holds neither a state dict nor an LW-DETR checkpoint dict with a 'model' entry")


def _load_torch_checkpoint(path: Path, variant: str | None, device: str, ema: bool) -> LoadedModel:
    checkpoint = read_torch_checkpoint(path, ema)
    notes = []
    if checkpoint.key == "ema_model":
        notes.append(f"{path}: loaded the EMA weights ('ema_model')")
    elif checkpoint.has_ema:
        notes.append(f"{path}: loaded 'model', not the EMA weights the file also holds: pass --ema for 'ema_model'")
    config, extra = None, {}
    args = checkpoint.args
    if isinstance(args, dict):  # some training scripts save vars(args)
        args = argparse.Namespace(**args)
    if args is not None and variant is None and _layout(checkpoint.state, str(path)) == "original":
        classes = checkpoint.state.get("class_embed.weight")
        from_args = config_from_original_args(args, classes.shape[0] if classes is not None else 91, str(path))
        config = from_args.config
        extra = dict(num_select=from_args.num_select, image_size=from_args.image_size)
    num_queries = getattr(args, "num_queries", None) if isinstance(getattr(args, "num_queries", None), int) else None
    loaded = _build(checkpoint.state, config, variant, num_queries, [path], device, str(path), notes=notes)
    loaded.weights_key = checkpoint.key
    for name, value in extra.items():
        setattr(loaded, name, value)
    return loaded


def _layout(state: dict[str, torch.Tensor], source: str) -> str:
    try:
        return detect_layout(state)
    except EdgeLwdetrError as error:
        raise EdgeLwdetrError(f"{source}: {error}") from None


def _load_transformers_folder(folder: Path, variant: str | None, device: str) -> LoadedModel:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise EdgeLwdetrError(f"{folder} has no config.json: it is not a transformers model folder")
    try:
        hf_config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EdgeLwdetrError(f"{config_file} is not valid JSON ({error})") from None
    config = config_from_transformers(hf_config, str(config_file))
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [folder / shard for shard in shards]
    else:
        files = [folder / "model.safetensors"]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise EdgeLwdetrError(f"{folder} lacks {missing[0].name}: the folder needs config.json and model.safetensors")
    id2label = {int(k): v for k, v in (hf_config.get("id2label") or {}).items()}
    loaded = _build(read_safetensors(files), config, variant, None, files, device, str(folder), id2label)
    loaded.image_size = preprocessor_size(folder)
    return loaded


def preprocessor_size(folder: Path) -> int | None:
    """The square resize of the folder's preprocessor_config.json (the size the model was trained at), if any."""
    path = folder / "preprocessor_config.json"
    try:
        size = json.loads(path.read_text()).get("size") or {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
    return size["height"] if size.get("height") and size.get("height") == size.get("width") else None


def _build(
    state: dict[str, torch.Tensor],
    config: LwDetrConfig | None,
    variant: str | None,
    num_queries: int | None,
    files: list[Path],
    device: str,
    source: str,
    id2label: dict[int, str] | None = None,
    notes: list[str] | None = None,
) -> LoadedModel:
    notes = list(notes or [])
    layout = _layout(state, source)
    if layout == "edge_lwdetr" and num_queries is None and "query_feat.weight" in state:
        num_queries = state["query_feat.weight"].shape[0]  # saved by this package: one group only
    if config is None or variant is not None:
        guess = convert_state_dict(state, num_queries or 300)[0]
        config = infer_config(guess, variant, num_queries)
        if layout == "original":
            config = replace(config, border_proposals="rank")  # the original code's two-stage selection
        if variant is None:
            notes.append(
                f"{source}: no training arguments or config.json, so the architecture is guessed from tensor shapes "
                f"as LW-DETR-{variant_name(config)}{'' if num_queries else f' with {config.num_queries} queries'}; "
                "shapes cannot tell attention heads, window blocks or queries: pass --variant to choose"
            )
    converted, unexpected = convert_state_dict(state, config.num_queries)

    model = LWDETR(config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in converted and not k.endswith("num_batches_tracked")]
    unexpected += [k for k in converted if k not in expected]
    mismatched = [
        f"{k} {list(converted[k].shape)} vs model {list(v.shape)}"
        for k, v in expected.items()
        if k in converted and converted[k].shape != v.shape
    ]
    name = variant_name(config)
    if missing or unexpected or mismatched:
        problems = [
            f"{label}: {', '.join(items[:4])}{f' (+{len(items) - 4} more)' if len(items) > 4 else ''}"
            for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
            if items
        ]
        raise EdgeLwdetrError(
            f"{source} does not fit LW-DETR-{name}: {'; '.join(problems)}; if the variant was guessed wrong, "
            "pass --variant"
        )
    refuse_non_finite(converted, source)
    model.load_state_dict({k: v for k, v in converted.items() if k in expected}, strict=False)
    model.eval().to(device)
    for note in notes:
        warnings.warn(note, CheckpointWarning, stacklevel=3)
    id2label = id2label or default_id2label(config.num_classes)
    return LoadedModel(model, config, name, id2label, files, notes=notes)


def refuse_non_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """NaN or infinite weights make every score NaN, which reads as "no detections": refuse them, naming a tensor."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise EdgeLwdetrError(
                f"{source}: tensor {name} holds {bad} NaN or infinite values of {tensor.numel()}; the weights are "
                "corrupt or training diverged: use another checkpoint"
            )
