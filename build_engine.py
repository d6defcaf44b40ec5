#!/usr/bin/env python3
"""Build a TensorRT engine from an edge-lwdetr ONNX export: the same as `edge-lwdetr build ...`.

    python build_engine.py --onnx model.onnx --precision fp16|int8|fp32 [--calib-data DIR_OR_VIDEO] [--onnx-only]
"""

import sys

from edge_lwdetr.cli import main

if __name__ == "__main__":
    sys.exit(main(["build", *sys.argv[1:]]))
