"""The TensorRT plugin sources compile against the TensorRT headers present, and their adapters pass the
host test (plugins/trt_common/tests/trt_plugin_host_test.cpp) against the host C ABI library.

Needs only TensorRT *headers* (no libnvinfer, no GPU): TENSORRT_INCLUDE_DIR (one directory, or several
separated by ':'), $TensorRT_ROOT/include, or a system install (/usr/include/x86_64-linux-gnu,
/usr/include/aarch64-linux-gnu on JetPack). Skipped with that reason where none is present; the same
check by hand: plugins/tools/check_trt_headers.sh [--host-test LIB] INCLUDE_DIR...
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "plugins" / "tools" / "check_trt_headers.sh"


def tensorrt_include_dirs() -> list[Path]:
    cands: list[Path] = []
    env = os.environ.get("TENSORRT_INCLUDE_DIR")
    if env:
        cands += [Path(p) for p in env.split(os.pathsep) if p]
    for var in ("TensorRT_ROOT", "TENSORRT_ROOT"):
        if os.environ.get(var):
            cands.append(Path(os.environ[var]) / "include")
    cands += [Path("/usr/include/x86_64-linux-gnu"), Path("/usr/include/aarch64-linux-gnu"),
              Path("/usr/local/TensorRT/include"), Path("/usr/include")]
    seen, out = set(), []
    for c in cands:
        if (c / "NvInferRuntime.h").is_file() and c.resolve() not in seen:
            seen.add(c.resolve())
            out.append(c)
    return out


def _cuda_headers() -> bool:
    inc = os.environ.get("CUDA_INCLUDE_DIR")
    cands = [Path(inc)] if inc else []
    cands += [Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include", Path("/usr/local/cuda/include"),
              Path("/usr/include")]
    return any((c / "cuda_runtime_api.h").is_file() for c in cands)


DIRS = tensorrt_include_dirs()
pytestmark = [
    pytest.mark.skipif(not DIRS, reason="no TensorRT headers (NvInferRuntime.h): set TENSORRT_INCLUDE_DIR, or run "
                                        "plugins/tools/check_trt_headers.sh on a machine with TensorRT"),
    pytest.mark.skipif(not _cuda_headers(), reason="no CUDA headers (cuda_runtime_api.h), which TensorRT's headers include"),
    pytest.mark.skipif(shutil.which("bash") is None or shutil.which(os.environ.get("CXX", "g++")) is None,
                       reason="needs bash and a C++17 compiler"),
]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=1800, cwd=ROOT)


def test_plugin_sources_compile_against_tensorrt_headers():
    r = _run([str(d) for d in DIRS])
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("OK ") == len(DIRS)


def test_plugin_adapters_pass_the_host_test(tmp_path_factory):
    from specdeploy import native

    lib = native.build("host", tmp_path_factory.mktemp("host_build"))
    r = _run(["--host-test", str(lib), *[str(d) for d in DIRS]])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "host test (C ABI: host" in r.stdout
