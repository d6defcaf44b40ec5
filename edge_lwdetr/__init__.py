"""edge-lwdetr: LW-DETR from PyTorch to a TensorRT engine on NVIDIA Jetson, and live video inference.

    from edge_lwdetr import Detector
    results = Detector("model.onnx").predict("image.jpg")
"""

__version__ = "0.1.0"
__all__ = ["Detector", "Result", "__version__"]


def __getattr__(name: str):
    # Lazy, so that `edge-lwdetr --help` and the CLI's error paths import neither OpenCV nor a backend.
    if name == "Detector":
        from edge_lwdetr.api import Detector

        return Detector
    if name == "Result":
        from edge_lwdetr.results import Result

        return Result
    raise AttributeError(f"module 'edge_lwdetr' has no attribute {name!r}")
