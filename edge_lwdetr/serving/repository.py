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

from edge_lwdetr.defaults import DEFAULT_CONF
from edge_lwdetr.serving import protocol

PYTHON_MODEL = protocol.MODEL_NAME
PLAN_MODEL = f"{protocol.MODEL_NAME}_trt"


@dataclass
class RepositoryOptions:
    info: protocol.ModelInfo  # class names, input size, variant: every model's `parameters`
    queries: int
    classes: int
    max_batch: int = 8
    max_queue_delay_us: int = 2000
    instances: int = 1
    conf: float = DEFAULT_CONF


def _quoted(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid protobuf text-format string


def _io(kind: str, tensors: list[tuple[str, str, list[int], bool]]) -> str:
    rows = []
    for name, dtype, dims, optional in tensors:
        extra = " optional: true" if optional else ""
        rows.append(f'  {{ name: "{name}" data_type: {dtype} dims: [ {", ".join(map(str, dims))} ]{extra} }}')
    return f"{kind} [\n" + ",\n".join(rows) + "\n]\n"


def _parameters(parameters: dict[str, str]) -> str:
    return "".join(
        f"parameters {{ key: {_quoted(k)} value: {{ string_value: {_quoted(v)} }} }}\n" for k, v in parameters.items()
    )


def _common(options: RepositoryOptions, device: str) -> str:
    return (
        f"dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}\n"
        f"instance_group [ {{ count: {options.instances} kind: {device} }} ]\n"
        + _parameters(options.info.parameters())
    )


def python_config(options: RepositoryOptions) -> str:
    return (
        f'name: "{PYTHON_MODEL}"\nbackend: "python"\nmax_batch_size: {options.max_batch}\n'
        + _io("input", [(protocol.IMAGE, "TYPE_STRING", [1], False), (protocol.SIZE, "TYPE_INT32", [2], True)])
        + _io("output", [
            (protocol.BOXES, "TYPE_FP32", [-1, 4], False), (protocol.SCORES, "TYPE_FP32", [-1], False),
            (protocol.LABELS, "TYPE_INT64", [-1], False), (protocol.COUNT, "TYPE_INT32", [1], False),
        ])
        + _common(options, "KIND_CPU")
        + _parameters({"conf": str(options.conf)})
    )


def plan_config(options: RepositoryOptions) -> str:
    size = options.info.image_size
    return (
        f'name: "{PLAN_MODEL}"\nplatform: "tensorrt_plan"\nmax_batch_size: {options.max_batch}\n'
        + _io("input", [("images", "TYPE_FP32", [3, size, size], False)])
        + _io("output", [("logits", "TYPE_FP32", [options.queries, options.classes], False),
                         ("pred_boxes", "TYPE_FP32", [options.queries, 4], False)])
        + _common(options, "KIND_GPU")
    )


def readme(options: RepositoryOptions, plugin: Path | None) -> str:
    size, batch = options.info.image_size, options.max_batch
    library = f"$PWD/plugins/{plugin.name}" if plugin else "/path/to/libedge_lwdetr_msda.so"
    shipped = (f"`plugins/{plugin.name}` is the library of the machine that wrote this repository; a server with another "
               "GPU or TensorRT needs its own, from `edge-lwdetr plugin build`" if plugin else
               "build it on the server with `edge-lwdetr plugin build`")  # fmt: skip
    return f"""# LW-DETR Triton model repository

Written by `edge-lwdetr export --format triton`. Two models over the same exported graph (`lwdetr/1/model.onnx`):

| model | where | inputs | outputs |
|---|---|---|---|
| `lwdetr` | Python backend, CPU | `image` BYTES [1]: a JPEG/PNG file, or raw BGR pixels with `size` INT32 [2] (height, width) | `boxes` [N, 4] source pixels, `scores`, `labels`, `count` |
| `lwdetr_trt` | `tensorrt_plan`, GPU | `images` FP32 [B, 3, {size}, {size}] RGB in [0, 1] | `logits` [B, {options.queries}, {options.classes}], `pred_boxes` [B, {options.queries}, 4] (cx, cy, w, h in [0, 1]) |

Both batch dynamically up to {batch}; the class names (`id2label`, JSON), the input size and the variant are
parameters of each `config.pbtxt` (`GET /v2/models/NAME/config`). `edge_lwdetr.serving.Client` (and
`edge-lwdetr run --model`) with `triton://HOST:8001/lwdetr` (gRPC) or `triton+http://HOST:8000/lwdetr` (HTTP) asks
the `lwdetr` model and returns the same results as `edge_lwdetr.Detector`.

## The TensorRT model

`lwdetr_trt/1/model.plan` is built on the GPU server, with the TensorRT it runs (engines are tied to the GPU and
TensorRT version that build them); its batch profile must reach `max_batch_size` ({batch}):

    edge-lwdetr build --onnx lwdetr/1/model.onnx --precision fp16 --batch-profile 1,{batch},{batch} \\
        --plugin {library} --output lwdetr_trt/1/model.plan

The engine's MSDA nodes need the plugin library ({shipped}). It registers its plugin when loaded, so Triton takes it
either way:

    LD_PRELOAD={library} tritonserver --model-repository $PWD
    tritonserver --model-repository $PWD --backend-config=tensorrt,plugins={library}

(`plugins=` takes several libraries separated by `;`; the TensorRT backend opens them when it starts and only logs
one it cannot open: the model then fails to load on the engine's unknown plugin, so read the log above that error.)

Serving the TensorRT model alone (no Python environment for `lwdetr`, whose failed load would stop the server):
add `--model-control-mode=explicit --load-model=lwdetr_trt`.

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
