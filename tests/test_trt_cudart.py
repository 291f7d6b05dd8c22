"""The cuda-python wrapper: status checks, decoded device properties, the error naming both layouts."""

from __future__ import annotations

import types

import pytest

from specdeploy.trt import compat
from specdeploy.trt.cudart import Cuda, CudaError, handle_int, import_cudart


class _CudaErr(int):
    def __str__(self):
        return f"cudaError_t({int(self)})"


def test_cuda_wrapper_checks_and_decodes():
    prop = types.SimpleNamespace(name=b"Orin\x00\x00junk", major=8, minor=7, totalGlobalMem=7 << 30, integrated=1)
    rt = types.SimpleNamespace(
        cudaGetDevice=lambda: (_CudaErr(0), 0),
        cudaGetDeviceProperties=lambda d: (_CudaErr(0), prop),
        cudaMemGetInfo=lambda: (_CudaErr(0), 100, 200),
        cudaMalloc=lambda n: (_CudaErr(2),),
        cudaGetErrorString=lambda e: (_CudaErr(0), b"out of memory"),
    )
    c = Cuda(rt)
    assert c.device_info() == {"index": 0, "name": "Orin", "compute_capability": "8.7", "total_memory": 7 << 30,
                               "integrated": True}
    assert c.mem_get_info() == (100, 200)
    with pytest.raises(CudaError, match=r"cudaMalloc\(64\) failed: out of memory"):
        c.malloc(64)
    assert handle_int(5) == 5
    assert handle_int(types.SimpleNamespace(getPtr=lambda: 77)) == 77


def test_import_cudart_names_both_layouts():
    with pytest.raises(compat.TensorRTUnavailableError, match="cuda-python not found"):
        import_cudart(("specdeploy_no_such.bindings.runtime", "specdeploy_no_such.cudart"))
