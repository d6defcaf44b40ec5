"""`edge-lwdetr export --format triton`: the weights' ONNX export (dynamic batch) written into a Triton model
repository (`repository.py`). The TensorRT plan is not built here: engines are tied to the GPU and TensorRT version
that build them, so the repository's README gives the build command to run on the GPU server."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from edge_lwdetr.errors import EdgeLwdetrError


def export_triton(weights: str, output: Path, onnx_options: dict, plugin: Path | None = None,
                  log: Callable[[str], None] = print) -> None:  # fmt: skip
    """Write the repository folder `output` atomically; `onnx_options` are export_onnx's (imgsz, opset, msda,
    variant, ema); `plugin`: an MSDA plugin library to ship in the repository for the GPU server."""
    import onnx

    from edge_lwdetr.backends.onnxruntime_backend import OnnxRuntimeBackend
    from edge_lwdetr.export.onnx_export import export_onnx
    from edge_lwdetr.outputs import atomic_folder
    from edge_lwdetr.serving.protocol import ModelInfo
    from edge_lwdetr.serving.repository import RepositoryOptions, write_repository

    if plugin is not None and not plugin.is_file():
        raise EdgeLwdetrError(f"--plugin {plugin}: no such file; build it with `edge-lwdetr plugin build` or leave it out")
    with tempfile.TemporaryDirectory() as scratch:
        graph = Path(scratch) / "model.onnx"
        # The temporary graph's path means nothing to the user: keep the export's other messages.
        export_onnx(weights, graph, dynamic_batch=True, log=lambda m: None if m.startswith("wrote ") else log(m),
                    **onnx_options)  # fmt: skip
        logits = {o.name: o for o in onnx.load(graph, load_external_data=False).graph.output}["logits"]
        queries, classes = (d.dim_value for d in logits.type.tensor_type.shape.dim[1:])
        backend = OnnxRuntimeBackend(graph)
        info = ModelInfo(backend.id2label, backend.image_size, backend.variant)
        options = RepositoryOptions(info, queries, classes)
        with atomic_folder(output) as folder:
            write_repository(folder, graph, options, plugin)
    log(f"wrote the Triton model repository {output}: lwdetr (Python backend, CPU) and lwdetr_trt (tensorrt_plan, its "
        f"engine to build on the GPU server: {output / 'README.md'})")  # fmt: skip
