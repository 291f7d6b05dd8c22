#!/usr/bin/env bash
# Set up specdeploy on a fresh Debian/Ubuntu x86-64 or aarch64 machine: the Fashion-MNIST package,
# a virtual environment in .venv with CPU PyTorch and the export/ONNX Runtime/test extras.
# Idempotent: a second run only checks. Needs root (or sudo) for the one apt package.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
FMNIST=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

if [ ! -f "$FMNIST" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# CPU PyTorch first, pinned, so that no extra pulls a multi-GB CUDA build on a CPU machine.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[export,ort,data,plot,dev]"
echo "setup: ready ($(.venv/bin/python -c 'import torch, onnx, onnxruntime; print("torch", torch.__version__, "onnx", onnx.__version__, "onnxruntime", onnxruntime.__version__)'))"
