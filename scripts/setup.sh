#!/usr/bin/env bash
# Set up specdeploy on a fresh Debian/Ubuntu x86-64 or aarch64 machine: the Fashion-MNIST package,
# a virtual environment in .venv with CPU PyTorch and the export/ONNX Runtime/test extras.
# Idempotent: a second run only checks (scripts/check_env.py reads the installed metadata; nothing is
# downloaded or reinstalled when every requirement is satisfied). Needs root (or sudo) for the one apt
# package. SPECDEPLOY_SETUP_FORCE=1 reinstalls anyway.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
FMNIST=${SPECDEPLOY_FMNIST_FILE:-/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz}
EXTRAS="export,ort,data,plot,dev"
TORCH="torch==2.13.0"

if [ ! -f "$FMNIST" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
else
  echo "setup: Fashion-MNIST present ($FMNIST)"
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
if [ "${SPECDEPLOY_SETUP_FORCE:-0}" != "1" ] && .venv/bin/python scripts/check_env.py --extras "$EXTRAS" --pin "$TORCH"; then
  echo "setup: .venv already satisfies specdeploy[$EXTRAS] and $TORCH: nothing installed"
else
  echo "setup: installing into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  # CPU PyTorch first, pinned, so that no extra pulls a multi-GB CUDA build on a CPU machine.
  .venv/bin/python -m pip install -q "$TORCH"
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  .venv/bin/python scripts/check_env.py --extras "$EXTRAS" --pin "$TORCH"
fi
echo "setup: ready ($(.venv/bin/python -c 'import torch, onnx, onnxruntime; print("torch", torch.__version__, "onnx", onnx.__version__, "onnxruntime", onnxruntime.__version__)'))"
