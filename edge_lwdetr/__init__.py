"""edge-lwdetr: LW-DETR from PyTorch to a TensorRT engine on NVIDIA Jetson, and live video inference."""

__version__ = "0.1.0"
