"""Fixtures shared by test files (pytest discovers this file; nothing here runs unless requested)."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest


# ------------------------------------------------------------------------------------------------
# native libraries and the native backends' test images


@pytest.fixture(scope="session")
def host_lib_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libspecdeploy_host.so built from this checkout once per session (fails, never skips).

    Why shared: tests/test_native_host.py and tests/test_native_backend.py need the same library,
    and each cmake + g++ build costs minutes on 2 CPU cores.
    """
    from specdeploy import native

    bdir = tmp_path_factory.mktemp("plugins_host_build")
    try:
        path = native.build("host", bdir)
    except native.NativeBuildError as e:
        pytest.fail(f"building the host library failed (g++ and cmake are required in CI):\n{e}")
    return path


@pytest.fixture(scope="session")
def test_images() -> dict[int, np.ndarray]:
    """Eight test images per input channel count (1: LeNet-5, 3: the others), for the native backends."""
    from helpers.native_backend import images
    from specdeploy import zoo

    out = {}
    for c in (1, 3):
        cfg = zoo.ModelConfig(model="lenet5" if c == 1 else "vgg16", in_channels=c)
        out[c], _ = images(cfg, 8, split="test", seed=1)
    return out


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


# ------------------------------------------------------------------------------------------------
# specdeploy.trt without TensorRT (tests/test_trt_*.py; the stand-in is tests/helpers/fake_tensorrt.py)


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import tensorrt` fail even where TensorRT is installed."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


@pytest.fixture
def fresh_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget which plugin libraries this process loaded (compat loads each once per process)."""
    from specdeploy.trt import compat

    monkeypatch.setattr(compat, "_loaded", {})


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch, fresh_loaded: None) -> types.ModuleType:
    """The stand-in `tensorrt` module installed in sys.modules, with a host-memory Cuda at ``.cuda``."""
    from helpers.fake_tensorrt import FakeCuda, make_fake_trt

    trt = make_fake_trt()
    trt.cuda = FakeCuda()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt
