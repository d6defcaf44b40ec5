"""A Triton model repository (`edge-lwdetr export --format triton`): two models over one exported graph.

    REPO/lwdetr/        Python backend on the CPU: images in, detections out (the tensors of `edge-lwdetr serve`);
                        the bundled tritonserver of nvidia-pytriton loads it (tests/test_serving.py)
    REPO/lwdetr_trt/    platform tensorrt_plan on a GPU server: images [B, 3, S, S] in, logits and boxes out; its
                        model.plan is built on the GPU server (the README says how)
    REPO/README.md      how to start Triton on it, with the MSDA plugin library

Each config.pbtxt is text-format `ModelConfig` (tritonclient's model_config_pb2 parses it in the tests).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from edge_lwdetr.serving import protocol

PYTHON_MODEL = protocol.MODEL_NAME
PLAN_MODEL = f"{protocol.MODEL_NAME}_trt"


@dataclass
class RepositoryOptions:
    image_size: int
    queries: int
    classes: int
    id2label: dict[int, str]
    max_batch: int = 8
    max_queue_delay_us: int = 2000
    instances: int = 1
    conf: float = 0.3


def _quoted(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid protobuf text-format string


def _io(kind: str, tensors: list[tuple[str, str, list[int], bool]]) -> str:
    rows = []
    for name, dtype, dims, optional in tensors:
        extra = " optional: true" if optional else ""
        rows.append(f'  {{ name: "{name}" data_type: {dtype} dims: [ {", ".join(map(str, dims))} ]{extra} }}')
    return f"{kind} [\n" + ",\n".join(rows) + "\n]\n"


def _common(options: RepositoryOptions, device: str) -> str:
    labels = json.dumps({str(k): v for k, v in sorted(options.id2label.items())})
    return (
        f"dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}\n"
        f"instance_group [ {{ count: {options.instances} kind: {device} }} ]\n"
        f'parameters {{ key: "id2label" value: {{ string_value: {_quoted(labels)} }} }}\n'
    )


def python_config(options: RepositoryOptions) -> str:
    return (
        f'name: "{PYTHON_MODEL}"\nbackend: "python"\nmax_batch_size: {options.max_batch}\n'
        + _io("input", [(protocol.IMAGE, "TYPE_STRING", [1], False), (protocol.SIZE, "TYPE_INT32", [2], True)])
        + _io("output", [
            (protocol.BOXES, "TYPE_FP32", [-1, 4], False), (protocol.SCORES, "TYPE_FP32", [-1], False),
            (protocol.LABELS, "TYPE_INT64", [-1], False), (protocol.NAMES, "TYPE_STRING", [-1], False),
            (protocol.COUNT, "TYPE_INT32", [1], False),
        ])
        + _common(options, "KIND_CPU")
        + f'parameters {{ key: "conf" value: {{ string_value: "{options.conf}" }} }}\n'
    )


def plan_config(options: RepositoryOptions) -> str:
    size = options.image_size
    return (
        f'name: "{PLAN_MODEL}"\nplatform: "tensorrt_plan"\nmax_batch_size: {options.max_batch}\n'
        + _io("input", [("images", "TYPE_FP32", [3, size, size], False)])
        + _io("output", [("logits", "TYPE_FP32", [options.queries, options.classes], False),
                         ("pred_boxes", "TYPE_FP32", [options.queries, 4], False)])
        + _common(options, "KIND_GPU")
    )


def readme(options: RepositoryOptions, plugin: Path | None) -> str:
    size, batch = options.image_size, options.max_batch
    plugin_name = plugin.name if plugin else "libedge_lwdetr_msda.so"
    return f"""# LW-DETR Triton model repository

Written by `edge-lwdetr export --format triton`. Two models over the same exported graph (`lwdetr/1/model.onnx`):

| model | where | inputs | outputs |
|---|---|---|---|
| `lwdetr` | Python backend, CPU | `image` BYTES [1]: a JPEG/PNG file, or raw BGR pixels with `size` INT32 [2] (height, width) | `boxes` [N, 4] source pixels, `scores`, `labels`, `names`, `count` |
| `lwdetr_trt` | `tensorrt_plan`, GPU | `images` FP32 [B, 3, {size}, {size}] RGB in [0, 1] | `logits` [B, {options.queries}, {options.classes}], `pred_boxes` [B, {options.queries}, 4] (cx, cy, w, h in [0, 1]) |

Both batch dynamically up to {batch}; the class names are the `id2label` parameter of each `config.pbtxt`.
`edge_lwdetr.serving.Client("triton://HOST:8000/lwdetr")` returns the same results as `edge_lwdetr.Detector`.

## The TensorRT model

`lwdetr_trt/1/model.plan` is built on the GPU server, with the TensorRT it runs (engines are tied to the GPU and
TensorRT version that build them):

    edge-lwdetr build --onnx lwdetr/1/model.onnx --precision fp16 --batch-profile 1,{batch},{batch} \\
        --output lwdetr_trt/1/model.plan

The engine's MSDA nodes need the plugin library (`edge-lwdetr plugin build`; here: `plugins/{plugin_name}` where it
was found). Triton loads it either way:

    LD_PRELOAD=$PWD/plugins/{plugin_name} tritonserver --model-repository $PWD
    tritonserver --model-repository $PWD --backend-config=tensorrt,plugins=$PWD/plugins/{plugin_name}

## The Python model

Triton's Python-backend stub runs in the environment of the first `python` on `PATH`, which must import edge-lwdetr
with its `serve` extra (nvidia-pytriton's bundled server: put `.venv-serve/bin` first on `PATH`, and the
interpreter's `LIBDIR` first on `LD_LIBRARY_PATH`), or pack an environment with `conda-pack` and set the model's
`EXECUTION_ENV_PATH` parameter. Give each server on a machine its own
`--backend-config=python,shm-region-prefix-name=NAME_`: the default shared-memory name collides between servers.
"""


def write_repository(folder: Path, onnx: Path, options: RepositoryOptions, plugin: Path | None = None) -> None:
    """Fill `folder` (new, empty: the caller writes it atomically) with both models and the README."""
    from edge_lwdetr.outputs import write_text

    (folder / PYTHON_MODEL / "1").mkdir(parents=True)
    shutil.copyfile(onnx, folder / PYTHON_MODEL / "1" / "model.onnx")
    shutil.copyfile(Path(__file__).with_name("triton_python_model.py"), folder / PYTHON_MODEL / "1" / "model.py")
    write_text(folder / PYTHON_MODEL / "config.pbtxt", python_config(options))
    (folder / PLAN_MODEL / "1").mkdir(parents=True)
    write_text(folder / PLAN_MODEL / "config.pbtxt", plan_config(options))
    if plugin is not None:
        (folder / "plugins").mkdir()
        shutil.copyfile(plugin, folder / "plugins" / plugin.name)
    write_text(folder / "README.md", readme(options, plugin))
