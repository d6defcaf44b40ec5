#!/usr/bin/env python3
"""Real-time LW-DETR on a camera: the annotated video in a window, stage timings at the end.

    python demo/camera_demo.py --model model.fp16.engine            # Jetson: CSI camera 0, TensorRT
    python demo/camera_demo.py --model model.onnx --source 0        # any machine: USB camera 0, ONNX Runtime

All options of `edge-lwdetr run` apply (--save, --save-json, --conf, --backend, ...).
"""

import sys
from pathlib import Path

from edge_lwdetr.cli import main


def default_source() -> str:
    """csi://0 on a Jetson (it has /etc/nv_tegra_release), camera 0 elsewhere."""
    return "csi://0" if Path("/etc/nv_tegra_release").exists() else "0"


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--source" not in argv:
        argv += ["--source", default_source()]
    if "--show" not in argv:
        argv.append("--show")
    sys.exit(main(["run", *argv]))
