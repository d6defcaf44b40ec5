"""Defaults shared by the command line and the Python API (kept free of imports, so the CLI starts fast)."""

DEFAULT_CONF = 0.3  # detections scoring above this are kept
