#!/usr/bin/env python3
"""Real-time LW-DETR on a camera: the annotated video in a window, stage timings at the end.

    python demo/camera_demo.py --model model.fp16.engine            # Jetson: CSI camera 0, TensorRT
    python demo/camera_demo.py --model model.onnx --source 0        # any machine: USB camera 0, ONNX Runtime
    python demo/camera_demo.py --save out.mp4                       # headless: no window, a recording

All options of `edge-lwdetr run` apply (--save, --save-json, --conf, --backend, ...). The window opens where OpenCV
has window support and a display; elsewhere the demo records with --save instead.
"""

import sys
from pathlib import Path

from edge_lwdetr.cli import main
from edge_lwdetr.runtime.sinks import window_support


def default_source() -> str:
    """csi://0 on a Jetson (it has /etc/nv_tegra_release), camera 0 elsewhere."""
    return "csi://0" if Path("/etc/nv_tegra_release").exists() else "0"


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--source" not in argv:
        argv += ["--source", default_source()]
    problem = window_support()
    if problem is None and "--show" not in argv:
        argv.append("--show")
    elif problem is not None and not {"--save", "--save-json"} & set(argv):
        print(f"camera_demo: error: no window to show the video in: {problem}", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(["run", *argv]))
