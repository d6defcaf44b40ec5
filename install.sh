#!/usr/bin/env bash
# Install edge-lwdetr with everything the tests and the main commands use (CPU machine). .ci/run calls this.
set -euo pipefail
cd "$(dirname "$0")"
pip_install() { python -m pip install --quiet --disable-pip-version-check "$@"; }
# torch's CPU build first: a plain `torch` requirement would pull several GB of CUDA packages. On a GPU machine,
# install the torch build you want before running this.
python -c "import torch" 2>/dev/null || pip_install "torch==2.13.0"
pip_install -e ".[export,dev,quant,profile,train,client,track]"
# On x86-64 ModelOpt's ONNX extra installs onnxruntime-gpu next to the CPU onnxruntime; both are the module
# `onnxruntime`, and two builds overwriting each other's files break it. Keep ModelOpt's build alone: its CPU
# provider runs everything on a machine without a GPU.
gpu_ort=$(python -m pip show onnxruntime-gpu 2>/dev/null | awk '/^Version:/{print $2}')
if [ -n "$gpu_ort" ] && python -m pip show onnxruntime >/dev/null 2>&1; then
  python -m pip uninstall --quiet -y onnxruntime onnxruntime-gpu
  pip_install "onnxruntime-gpu==$gpu_ort"
fi
# edge-lwdetr serve runs in its own environment: nvidia-pytriton pins numpy<2, which the OpenCV above does not
# take. The serving tests start the server from it; the client (edge_lwdetr.serving.Client) runs in the above.
[ -x .venv-serve/bin/python ] || python -m venv .venv-serve
.venv-serve/bin/python -m pip install --quiet --disable-pip-version-check -e ".[serve]"
