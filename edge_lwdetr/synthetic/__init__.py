"""Deterministic synthetic detection data: shape scenes, COCO-format datasets and demo videos."""
