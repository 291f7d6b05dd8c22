"""specdeploy.trt without TensorRT: importing pulls in nothing optional; using it gives one clear error."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from specdeploy.trt import compat


def test_import_does_not_need_tensorrt():
    """Importing every module pulls in neither TensorRT, cuda-python, nor torch (fresh interpreter)."""
    import subprocess

    code = ("import sys\n"
            "import specdeploy.trt, specdeploy.trt.compat, specdeploy.trt.sidecar, specdeploy.trt.builder\n"
            "import specdeploy.trt.runner, specdeploy.trt.probes, specdeploy.trt.cli, specdeploy.trt.cudart\n"
            "bad = sorted(m for m in ('tensorrt', 'cuda', 'torch', 'pynvml', 'jtop') if m in sys.modules)\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_using_tensorrt_without_it_gives_the_clear_error(no_tensorrt, tmp_path):
    with pytest.raises(compat.TensorRTUnavailableError, match="TensorRT Python package not found: install "
                       r"specdeploy\[trt\] on a machine with TensorRT"):
        compat.import_tensorrt()
    # it is an ImportError and a ValueError (one-line CLI error)
    assert issubclass(compat.TensorRTUnavailableError, ImportError)
    assert issubclass(compat.TensorRTUnavailableError, ValueError)

    from specdeploy.trt.builder import build_engine
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"not really onnx")
    with pytest.raises(compat.TensorRTUnavailableError, match="TensorRT Python package not found"):
        build_engine(onnx_file, tmp_path / "m.engine", tmp_path / "lib.so")

    from specdeploy.trt.runner import TrtRunner
    with pytest.raises(compat.TensorRTUnavailableError, match="TensorRT Python package not found"):
        TrtRunner(tmp_path / "m.engine", None)
