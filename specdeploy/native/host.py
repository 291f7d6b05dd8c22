"""Backend "native-host": the host library (libspecdeploy_host.so) with numpy buffers. No torch.

    sess = runtime.load("vgg16.onnx", "native-host")   # CI; also a Jetson's CPU without torch

The executor (``specdeploy.native.executor``) runs specdeploy ops through the C ABI on numpy arrays
and the standard ops (``standard_ops.TABLE``) with :class:`NumpyKernels`: float32 arithmetic (a
float16 operand is computed in float32 and rounded to float16 after each op, as torch does on a CPU).

Options (``runtime.load(path, "native-host", **opts)``):
    library     the .so (or a build dir); default $SPECDEPLOY_HOST_LIB, else build/plugins
                (``specdeploy build-plugins --kind host``)
    fp16        run the standard ops in float16 (the twin at its best precision, DESIGN §5); default False
    workspace   "per_op" (default) | "shared" (``specdeploy.native.executor``)
    measure_memory  accepted for symmetry with "cuda"; the host has no allocator figures
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from specdeploy.native import abi
from specdeploy.native.errors import NativeLibraryError
from specdeploy.native.executor import NativeSession, flag_option
from specdeploy.runtime.errors import BackendUnavailableError
from specdeploy.runtime.graph import ModelInfo

__all__ = ["NumpyDevice", "host_session", "runtime_session"]


def _f32(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) if x.dtype == np.float16 else x


class NumpyKernels:
    """The standard ops' primitives in numpy (``standard_ops.Kernels``); results keep the input's dtype."""

    def conv2d(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: tuple[int, int],
               pads: tuple[int, int, int, int], dilation: tuple[int, int], groups: int) -> np.ndarray:
        dt = x.dtype
        t, l, bo, r = pads
        xp = np.pad(_f32(x), ((0, 0), (0, 0), (t, bo), (l, r)))
        wf = _f32(w)
        O, Cg, kh, kw = wf.shape
        dh, dw = dilation
        win = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
        win = win[:, :, :: stride[0], :: stride[1], ::dh, ::dw]  # [B, C, Ho, Wo, kh, kw]
        Og = O // groups
        outs = []
        for g in range(groups):
            xg = win[:, g * Cg:(g + 1) * Cg]
            outs.append(np.einsum("bchwij,ocij->bohw", xg, wf[g * Og:(g + 1) * Og], optimize=True))
        y = outs[0] if groups == 1 else np.concatenate(outs, axis=1)
        if b is not None:
            y += _f32(b)[None, :, None, None]
        return np.ascontiguousarray(y, dtype=dt)

    def max_pool2d(self, x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                   pads: tuple[int, int, int, int], dilation: tuple[int, int], ceil_mode: bool) -> np.ndarray:
        t, l, bo, r = pads
        H, W = x.shape[2:]
        (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
        ekh, ekw = (kh - 1) * dh + 1, (kw - 1) * dw + 1

        def out_size(n: int, k: int, s: int, lo: int, hi: int) -> int:
            span = n + lo + hi - k
            o = (-(-span // s) if ceil_mode else span // s) + 1
            if ceil_mode and (o - 1) * s >= n + lo:  # the last window must start inside the input
                o -= 1
            return o

        Ho, Wo = out_size(H, ekh, sh, t, bo), out_size(W, ekw, sw, l, r)
        extra_h = max(0, (Ho - 1) * sh + ekh - (H + t + bo))
        extra_w = max(0, (Wo - 1) * sw + ekw - (W + l + r))
        xp = np.pad(x, ((0, 0), (0, 0), (t, bo + extra_h), (l, r + extra_w)), constant_values=-np.inf)
        win = sliding_window_view(xp, (ekh, ekw), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :Ho, :Wo]
        return np.ascontiguousarray(win.max(axis=(4, 5)))

    def mean_spatial(self, x: np.ndarray) -> np.ndarray:
        return _f32(x).mean(axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype)

    def gemm(self, a: np.ndarray, b: np.ndarray, c: np.ndarray | None, alpha: float, beta: float) -> np.ndarray:
        y = _f32(a) @ _f32(b)
        if alpha != 1.0:
            y *= np.float32(alpha)
        if c is not None and beta != 0.0:
            y += _f32(c) * np.float32(beta) if beta != 1.0 else _f32(c)
        return y.astype(a.dtype, copy=False)

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (_f32(a) @ _f32(b)).astype(a.dtype, copy=False)

    def transpose(self, a: np.ndarray) -> np.ndarray:
        return a.T

    def relu(self, x: np.ndarray, inplace: bool) -> np.ndarray:
        return np.maximum(x, 0, out=x if inplace else None)

    def leaky_relu(self, x: np.ndarray, slope: float, inplace: bool) -> np.ndarray:
        y = np.where(x >= 0, x, x * x.dtype.type(slope))
        if inplace:
            x[...] = y
            return x
        return y

    def clamp(self, x: np.ndarray, lo: float | None, hi: float | None, inplace: bool) -> np.ndarray:
        return np.clip(x, lo, hi, out=x if inplace else None)

    def clone(self, x: np.ndarray) -> np.ndarray:
        return x.copy()

    def add(self, a: np.ndarray, b: np.ndarray, inplace: bool) -> np.ndarray:
        if inplace:
            return np.add(a, b, out=a, casting="same_kind")
        return (_f32(a) + _f32(b)).astype(np.result_type(a.dtype, b.dtype), copy=False)

    def cat(self, xs: Sequence[np.ndarray], axis: int) -> np.ndarray:
        return np.concatenate(list(xs), axis=axis)

    def reshape(self, x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
        return x.reshape(tuple(shape))


class NumpyDevice(NumpyKernels):
    """Host buffers: numpy arrays, addresses from ``ndarray.ctypes``, no stream, no allocator figures."""

    is_cuda = False

    def __init__(self, float_dtype: str = "float32") -> None:
        self.float_dtype = float_dtype

    def context(self) -> ContextManager[Any]:
        return contextlib.nullcontext()

    def empty(self, shape: Sequence[int], dtype: str) -> np.ndarray:
        return np.empty(tuple(shape), dtype=dtype)

    def from_host(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a)

    def to_host(self, a: np.ndarray) -> np.ndarray:
        return a

    def ptr(self, a: np.ndarray) -> int:
        return int(a.ctypes.data)

    def storage(self, a: np.ndarray) -> int:
        while isinstance(a.base, np.ndarray):
            a = a.base
        return int(a.ctypes.data)

    def nbytes(self, a: np.ndarray) -> int:
        return int(a.nbytes)

    def dtype(self, a: np.ndarray) -> str:
        return a.dtype.name

    def contiguous(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a)

    def cast(self, a: np.ndarray, dtype: str) -> np.ndarray:
        return a.astype(dtype)

    def header_copy(self, y: np.ndarray) -> np.ndarray:
        return y[:, :4].copy()

    def stream(self) -> int:
        return 0

    def warm_up(self, batch: int, run: Callable[[], Any]) -> None:
        pass

    def measure_begin(self) -> None:
        pass

    def measure_end(self) -> int | None:
        return None

    def memory_fields(self, peak: int | None, last: int | None, activation_peak: int | None) -> dict[str, Any]:
        return {}


def host_session(info: ModelInfo, *, library: Any = None, fp16: bool = False, workspace: str = "per_op",
                 measure_memory: bool = True) -> NativeSession:
    """Backend "native-host": the host library with numpy buffers (``measure_memory`` has no effect)."""
    fp16 = flag_option("native-host", "fp16", fp16)
    try:
        lib = abi.load("host", library)
    except NativeLibraryError as e:
        raise BackendUnavailableError(f"backend 'native-host' is not available: {e}") from e
    return NativeSession(info, lib, NumpyDevice("float16" if fp16 else "float32"), backend="native-host",
                         workspace=workspace)


def runtime_session(info: ModelInfo, **opts: Any) -> NativeSession:
    """Factory of backend "native-host" (``runtime.load(path, "native-host", **opts)``)."""
    return host_session(info, **opts)


