"""The LW-DETR model in PyTorch (needs the `export` extra: torch)."""

from edge_lwdetr.model.config import VARIANTS, LwDetrConfig, variant_config
from edge_lwdetr.model.lwdetr import LWDETR

__all__ = ["LWDETR", "LwDetrConfig", "VARIANTS", "variant_config"]
