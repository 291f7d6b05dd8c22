"""Fixtures shared by test files (pytest discovers this file; nothing here runs unless requested)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def gpu_lib_paths(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(CUDA kernel library, host library) for the GPU tests, built once per session from this
    checkout, the CUDA one for the present GPU only ($SPECDEPLOY_KERNELS_LIB: a prebuilt one).

    Why shared: tests/test_native_gpu.py and tests/test_native_backend_gpu.py need the same two
    libraries, and an nvcc build costs minutes of a lent GPU machine's time.
    """
    import torch

    from specdeploy import native

    major, minor = torch.cuda.get_device_capability()
    env = os.environ.get("SPECDEPLOY_KERNELS_LIB")
    bdir = tmp_path_factory.mktemp("plugins_gpu_build")
    try:
        host = native.build("host", bdir)
        cuda = Path(env) if env else native.build("cuda", bdir, cuda_architectures=f"{major}{minor}")
    except native.NativeBuildError as e:
        pytest.fail(f"building the native libraries failed:\n{e}")
    return cuda, host


@pytest.fixture(scope="session")
def host_lib_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libspecdeploy_host.so built from this checkout once per session (fails, never skips).

    Shared by tests/test_native_backend.py and tests/test_torch_boundary.py (native-host without torch).
    """
    from specdeploy import native

    bdir = tmp_path_factory.mktemp("native_backend_host_build")
    try:
        path = native.build("host", bdir)
    except native.NativeBuildError as e:
        pytest.fail(f"building the host library failed (g++ and cmake are required in CI):\n{e}")
    return path
