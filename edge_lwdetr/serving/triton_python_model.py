"""The Python-backend model of a Triton repository from `edge-lwdetr export --format triton` (copied as
`lwdetr/1/model.py`): the exported ONNX on ONNX Runtime, with the same tensors as `edge-lwdetr serve`.

It runs inside Triton's Python-backend stub, whose Python must have edge-lwdetr[serve] importable. Unlike PyTriton,
the Python backend answers each request on its own, so a malformed request fails alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by the stub; exists only inside Triton

from edge_lwdetr.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_lwdetr.serving import protocol
from edge_lwdetr.serving.server import detect_all, request_images, response_tensors


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.conf = float(config["parameters"]["conf"]["string_value"])
        self.backend = OnnxRuntimeBackend(Path(__file__).with_name("model.onnx"))

    def execute(self, requests: list) -> list:
        images, errors = [], []
        for request in requests:
            inputs = {}
            for name in (protocol.IMAGE, protocol.SIZE):
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is not None:
                    inputs[name] = tensor.as_numpy()
            try:
                images.append(request_images(inputs))
                errors.append(None)
            except ValueError as error:
                images.append([])
                errors.append(str(error))
        flat = [image for rows in images for image in rows]
        detections = detect_all(self.backend, flat, self.conf) if flat else []
        responses, start = [], 0
        for rows, error in zip(images, errors):
            if error is not None:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(error)))
                continue
            tensors = response_tensors(detections[start : start + len(rows)])
            start += len(rows)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(n, np.asarray(t)) for n, t in tensors.items()]))
        return responses

    def finalize(self) -> None:
        self.backend.close()
