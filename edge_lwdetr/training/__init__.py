"""Training LW-DETR (transformers' LwDetrForObjectDetection in training mode) with this package's own losses."""
