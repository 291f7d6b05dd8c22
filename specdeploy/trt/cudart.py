"""The few CUDA runtime calls the TensorRT runner needs, through cuda-python.

cuda-python moved its runtime module: ``cuda.bindings.runtime`` (cuda-python >= 12.6 and 13.x, where
``cuda.cudart`` is gone) and ``cuda.cudart`` (older 12.x). Both return ``(err, *values)`` tuples.
Imported lazily: nothing here runs at ``import specdeploy.trt``.
"""

from __future__ import annotations

import importlib
from typing import Any

from specdeploy.trt.compat import TensorRTUnavailableError

CUDA_MISSING_MESSAGE = ("cuda-python not found (neither cuda.bindings.runtime nor cuda.cudart): install "
                        "specdeploy[trt] on a machine with TensorRT")

_MODULE_CANDIDATES = ("cuda.bindings.runtime", "cuda.cudart")


class CudaError(RuntimeError):
    """A CUDA runtime call failed."""


def import_cudart(candidates: tuple[str, ...] = _MODULE_CANDIDATES) -> Any:
    """The cuda-python runtime module, whichever layout is installed."""
    errors = []
    for name in candidates:
        try:
            return importlib.import_module(name)
        except ImportError as e:
            errors.append(f"{name}: {e}")
    raise TensorRTUnavailableError(f"{CUDA_MISSING_MESSAGE} ({'; '.join(errors)})")


class Cuda:
    """Thin, checked wrapper over the cuda-python runtime module ``rt`` (injectable for tests)."""

    def __init__(self, rt: Any | None = None) -> None:
        self.rt = rt if rt is not None else import_cudart()

    def check(self, result: Any, what: str) -> Any:
        """Unpack ``(err, *values)``; raise CudaError naming the call and the error."""
        if isinstance(result, tuple):
            err, values = result[0], result[1:]
        else:
            err, values = result, ()
        code = int(getattr(err, "value", err))
        if code != 0:
            name = str(err)
            try:
                got = self.rt.cudaGetErrorString(err)
                if isinstance(got, tuple) and len(got) > 1:
                    name = f"{got[1].decode() if isinstance(got[1], bytes) else got[1]} ({err})"
            except Exception:  # noqa: BLE001 - the message is a courtesy
                pass
            raise CudaError(f"{what} failed: {name}")
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    # --- device ---
    def device_info(self, device: int | None = None) -> dict[str, Any]:
        if device is None:
            device = int(self.check(self.rt.cudaGetDevice(), "cudaGetDevice"))
        prop = self.check(self.rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        name = prop.name
        if isinstance(name, (bytes, bytearray)):
            name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
        return {"index": int(device), "name": str(name).strip(), "compute_capability": f"{prop.major}.{prop.minor}",
                "total_memory": int(prop.totalGlobalMem), "integrated": bool(getattr(prop, "integrated", 0))}

    def mem_get_info(self) -> tuple[int, int]:
        free, total = self.check(self.rt.cudaMemGetInfo(), "cudaMemGetInfo")
        return int(free), int(total)

    # --- memory ---
    def malloc(self, nbytes: int) -> int:
        return int(self.check(self.rt.cudaMalloc(max(int(nbytes), 1)), f"cudaMalloc({nbytes})"))

    def free(self, ptr: int) -> None:
        if ptr:
            self.check(self.rt.cudaFree(ptr), "cudaFree")

    def memcpy_htod_async(self, dst: int, src_host_ptr: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.check(self.rt.cudaMemcpyAsync(dst, src_host_ptr, nbytes, kind, stream), "cudaMemcpyAsync(H2D)")

    def memcpy_dtoh_async(self, dst_host_ptr: int, src: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.check(self.rt.cudaMemcpyAsync(dst_host_ptr, src, nbytes, kind, stream), "cudaMemcpyAsync(D2H)")

    # --- streams ---
    def stream_create(self) -> Any:
        return self.check(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def stream_synchronize(self, stream: Any) -> None:
        self.check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def stream_destroy(self, stream: Any) -> None:
        self.check(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def device_synchronize(self) -> None:
        self.check(self.rt.cudaDeviceSynchronize(), "cudaDeviceSynchronize")


def handle_int(obj: Any) -> int:
    """Integer value of a cuda-python handle (cudaStream_t, ...): what TensorRT's Python API takes."""
    if isinstance(obj, int):
        return obj
    try:
        return int(obj)
    except TypeError:
        get = getattr(obj, "getPtr", None)
        if get is None:
            raise
        return int(get())
