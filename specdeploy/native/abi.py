"""ctypes bindings of the native op set's C ABI (``plugins/common/include/specdeploy/specdeploy_c.h``).

Two libraries implement it: ``"host"`` (``libspecdeploy_host.so``, the CPU build of the same
per-element kernels; host pointers) and ``"cuda"`` (``libspecdeploy_kernels.so``; device pointers,
work enqueued on a CUDA stream). :class:`Library` has the pointer-level entry points
(``spec_conv_forward_ptr`` ...) and, on the host library, array-level ones (``spec_conv`` ...).

Mirrors, checked at load (:func:`load`): every field offset and size of the ctypes params structs
and every copied constant (status codes, enum values, SD_MAX_CONCAT_INPUTS, SD_NLEV, kWsAlign) is
compared with the library's ``sd_abi_query``; a mismatch refuses the library with the names that
differ. The params structs are filled by each op's ``native_params`` (``specdeploy.ops.<op>``).

Only numpy and ctypes (never torch): this runs on a Jetson.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from specdeploy.native.build import LIB_NAMES, build_command_hint, check_kind, library_path
from specdeploy.native.errors import (
    SD_ERR_INVALID_ARGUMENT,
    SD_OK,
    STATUS_NAMES,
    NativeError,
    NativeInvalidArgument,
    NativeLibraryError,
)
from specdeploy.ops import _base as ops_base
from specdeploy.ops import spec_concat as spec_concat_op
from specdeploy.ops import spec_conv as spec_conv_op
from specdeploy.ops import spec_pool as spec_pool_op
from specdeploy.ops import spec_to_spatial as spec_to_spatial_op

__all__ = [
    "ABI_VERSION",
    "VALUE_DTYPE",
    "FLOAT_TYPE",
    "ConvParams",
    "PoolParams",
    "ToSpatialParams",
    "ConcatParams",
    "Library",
    "load",
    "spec_conv",
    "spec_pool",
    "spec_to_spatial",
    "spec_concat",
]

ABI_VERSION = 3
MAX_CONCAT_INPUTS = spec_concat_op.MAX_CONCAT_INPUTS
_ENV_LIB = {"host": "SPECDEPLOY_HOST_LIB", "cuda": "SPECDEPLOY_KERNELS_LIB"}

VALUE_DTYPE = {"fp32": 0, "fp16": 1}  # sd_value_dtype
FLOAT_TYPE = {"float32": 0, "float16": 1}  # sd_float_type


# ------------------------------------------------------------------------------------------------
# ctypes mirrors of the params structs (field order and types exactly as in specdeploy_c.h)


class ConvParams(ctypes.Structure):
    _fields_ = [
        ("in_domain", ctypes.c_int32),
        ("C", ctypes.c_int32),
        ("O", ctypes.c_int32),
        ("H", ctypes.c_int32),
        ("W", ctypes.c_int32),
        ("Hs", ctypes.c_int32),
        ("Ws", ctypes.c_int32),
        ("k", ctypes.c_int32),
        ("beta", ctypes.c_float),
        ("activation", ctypes.c_int32),
        ("pool", ctypes.c_int32),
        ("capacity", ctypes.c_int32),
        ("value_dtype", ctypes.c_int32),
        ("x_type", ctypes.c_int32),
        ("has_bias", ctypes.c_int32),
        ("input_spectrum", ctypes.c_int32),
        ("in_row_words", ctypes.c_int64),
    ]


class PoolParams(ctypes.Structure):
    _fields_ = [
        ("C", ctypes.c_int32),
        ("Hs", ctypes.c_int32),
        ("Ws", ctypes.c_int32),
        ("out_Hs", ctypes.c_int32),
        ("out_Ws", ctypes.c_int32),
        ("capacity", ctypes.c_int32),
        ("value_dtype", ctypes.c_int32),
        ("in_row_words", ctypes.c_int64),
    ]


class ToSpatialParams(ctypes.Structure):
    _fields_ = [
        ("C", ctypes.c_int32),
        ("Hs", ctypes.c_int32),
        ("Ws", ctypes.c_int32),
        ("value_dtype", ctypes.c_int32),
        ("y_type", ctypes.c_int32),
        ("in_row_words", ctypes.c_int64),
    ]


class ConcatParams(ctypes.Structure):
    _fields_ = [
        ("n_inputs", ctypes.c_int32),
        ("C", ctypes.c_int32 * MAX_CONCAT_INPUTS),
        ("in_row_words", ctypes.c_int64 * MAX_CONCAT_INPUTS),
        ("Hs", ctypes.c_int32),
        ("Ws", ctypes.c_int32),
        ("capacity", ctypes.c_int32),
        ("value_dtype", ctypes.c_int32),
    ]


_STRUCTS = {
    "sd_spec_conv_params": ConvParams,
    "sd_spec_pool_params": PoolParams,
    "sd_spec_to_spatial_params": ToSpatialParams,
    "sd_spec_concat_params": ConcatParams,
}


def mirrored_values() -> dict[str, int]:
    """Every value Python copies from specdeploy_c.h, by its name for ``sd_abi_query``."""
    from specdeploy.native import errors

    out: dict[str, int] = {}
    for cname, S in _STRUCTS.items():
        out[f"sizeof({cname})"] = ctypes.sizeof(S)
        for fname, *_ in S._fields_:
            out[f"offsetof({cname}, {fname})"] = getattr(S, fname).offset
    out.update({name: code for code, name in errors.STATUS_NAMES.items()})
    out.update({
        "SD_MAX_CONCAT_INPUTS": MAX_CONCAT_INPUTS,
        "SD_NLEV": ops_base.HIST_LEVELS,
        "SD_NOCT": ops_base.HIST_COARSE, "SD_NFINE": ops_base.HIST_FINE, "SD_HIST_WORDS": ops_base.HIST_WORDS,
        "kHybBudgetDiv": spec_conv_op.HYB_BUDGET_DIV, "kHybMaxChannels": spec_conv_op.HYB_MAX_CHANNELS,
        "kHybStreamMaxC": spec_conv_op.HYB_STREAM_MAX_C, "kHybSmemMaxF": spec_conv_op.HYB_SMEM_MAX_F,
        "kWsAlign": ops_base.WS_ALIGN,
        "SD_VALUE_FP32": VALUE_DTYPE["fp32"], "SD_VALUE_FP16": VALUE_DTYPE["fp16"],
        "SD_FLOAT32": FLOAT_TYPE["float32"], "SD_FLOAT16": FLOAT_TYPE["float16"],
        "SD_DOMAIN_SPATIAL": spec_conv_op.NATIVE_DOMAIN["spatial"],
        "SD_DOMAIN_SPECTRAL": spec_conv_op.NATIVE_DOMAIN["spectral"],
        "SD_ACT_NONE": spec_conv_op.NATIVE_ACTIVATION["none"], "SD_ACT_TANH": spec_conv_op.NATIVE_ACTIVATION["tanh"],
        "SD_ACT_RELU": spec_conv_op.NATIVE_ACTIVATION["relu"],
        "SD_POOL_NONE": spec_conv_op.NATIVE_POOL["none"], "SD_POOL_MAX2": spec_conv_op.NATIVE_POOL["max2"],
        "SD_POOL_AVG2": spec_conv_op.NATIVE_POOL["avg2"],
        "SD_SPECTRUM_AUTO": spec_conv_op.INPUT_SPECTRUM["auto"],
        "SD_SPECTRUM_DENSE": spec_conv_op.INPUT_SPECTRUM["dense"],
        "SD_SPECTRUM_STREAMED": spec_conv_op.INPUT_SPECTRUM["streamed"],
    })
    return out


# ------------------------------------------------------------------------------------------------
# attribute conversion, used by each op's native_params (errors name the attribute like the C side)


def i32(op: str, name: str, v: Any) -> int:
    if isinstance(v, (bool, np.bool_)) or not hasattr(v, "__index__"):
        raise NativeInvalidArgument(f"{op}: attribute '{name}' = {v!r} must be an integer", SD_ERR_INVALID_ARGUMENT)
    i = int(v)
    if not -(2**31) <= i < 2**31:
        raise NativeInvalidArgument(f"{op}: attribute '{name}' = {i} does not fit int32", SD_ERR_INVALID_ARGUMENT)
    return i


def enum(op: str, name: str, v: Any, table: dict[str, int]) -> int:
    if isinstance(v, bytes):
        v = v.decode()
    if v not in table:
        allowed = ", ".join(repr(k) for k in table)
        raise NativeInvalidArgument(f"{op}: attribute '{name}' = {v!r} must be one of {allowed}", SD_ERR_INVALID_ARGUMENT)
    return table[v]


def float_type(op: str, name: str, dtype: Any) -> int:
    d = np.dtype(dtype).name
    if d not in FLOAT_TYPE:
        raise NativeInvalidArgument(f"{op}: {name} must be float32 or float16, got {d}", SD_ERR_INVALID_ARGUMENT)
    return FLOAT_TYPE[d]


# ------------------------------------------------------------------------------------------------
# load


def _ptr(a: np.ndarray | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(0 if a is None else a.ctypes.data)


class Library:
    """A loaded native library (host or cuda) with typed entry points.

    Pointer-level methods (``*_forward_ptr``, ``*_workspace_size``) take raw integer addresses:
    device pointers for the cuda library (e.g. ``tensor.data_ptr()``), host pointers for the host
    library, and a stream handle (int, 0 = default stream). Array-level methods (``spec_conv`` ...)
    need the host library and numpy arrays.
    """

    def __init__(self, kind: str, path: Path, cdll: ctypes.CDLL):
        self.kind = kind
        self.path = path
        self._lib = cdll
        self._declare()
        self.build_info = self._lib.sd_build_info().decode()

    def _declare(self) -> None:
        L = self._lib
        i32, i64, vp, sz = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p, ctypes.c_size_t
        st = ctypes.c_int
        sig = {
            "sd_abi_version": (i32, []),
            "sd_build_info": (ctypes.c_char_p, []),
            "sd_last_error": (ctypes.c_char_p, []),
            "sd_check_device": (st, []),
            "sd_packed_row_words": (i64, [i32, i32, i32, i32]),
            "sd_abi_query": (i64, [ctypes.c_char_p]),
        }
        for op, P in (("conv", ConvParams), ("pool", PoolParams), ("to_spatial", ToSpatialParams), ("concat", ConcatParams)):
            pp = ctypes.POINTER(P)
            sig[f"sd_spec_{op}_validate"] = (st, [pp])
            sig[f"sd_spec_{op}_workspace_size"] = (st, [pp, i32, ctypes.POINTER(sz)])
            if op != "to_spatial":
                sig[f"sd_spec_{op}_out_row_words"] = (i64, [pp])
        sig["sd_spec_conv_forward"] = (st, [ctypes.POINTER(ConvParams), i32, vp, vp, vp, vp, vp, sz, vp])
        sig["sd_spec_pool_forward"] = (st, [ctypes.POINTER(PoolParams), i32, vp, vp, vp, sz, vp])
        sig["sd_spec_to_spatial_forward"] = (st, [ctypes.POINTER(ToSpatialParams), i32, vp, vp, vp, sz, vp])
        sig["sd_spec_concat_forward"] = (st, [ctypes.POINTER(ConcatParams), i32, ctypes.POINTER(vp), vp, vp, sz, vp])
        for name, (res, args) in sig.items():
            try:
                fn = getattr(L, name)
            except AttributeError:
                raise NativeLibraryError(
                    f"{self.path} lacks the C ABI function {name}; rebuild it from this checkout "
                    f"({build_command_hint(self.kind, self.path.parent.parent)})"
                ) from None
            fn.restype = res
            fn.argtypes = args

    # -- errors -----------------------------------------------------------------------------------

    def last_error(self) -> str:
        return (self._lib.sd_last_error() or b"").decode(errors="replace")

    def _check(self, status: int, what: str) -> None:
        if status == SD_OK:
            return
        msg = self.last_error() or f"{what} failed"
        name = STATUS_NAMES.get(status, str(status))
        cls = NativeInvalidArgument if status == SD_ERR_INVALID_ARGUMENT else NativeError
        raise cls(f"{msg} [{name}, {self.kind} library]", status)

    def check_mirrors(self) -> None:
        """Compare every mirrored struct layout and constant with the library (``sd_abi_query``).

        Raises NativeLibraryError listing each name whose value differs, e.g. a field added to a
        params struct in specdeploy_c.h but not to its ctypes mirror (which would shift every later field).
        """
        bad = [f"{name}: library {got}, Python {want}" for name, want in mirrored_values().items()
               if (got := int(self._lib.sd_abi_query(name.encode()))) != want]
        if bad:
            raise NativeLibraryError(
                f"{self.path}: the Python mirrors of the C ABI disagree with the library ({'; '.join(bad)}); "
                f"update specdeploy/native/abi.py (or the op modules' constants) to specdeploy_c.h, or rebuild the "
                f"library from this checkout ({build_command_hint(self.kind, self.path.parent.parent)})"
            )

    def abi_version(self) -> int:
        return int(self._lib.sd_abi_version())

    def check_device(self) -> None:
        """Raise NativeLibraryError with the CUDA error text if the kernels cannot run here."""
        st = self._lib.sd_check_device()
        if st != SD_OK:
            raise NativeLibraryError(f"{self.path}: {self.last_error()}", st)

    def packed_row_words(self, C: int, F: int, capacity: int, value_dtype: str) -> int:
        return int(self._lib.sd_packed_row_words(C, F, capacity, VALUE_DTYPE.get(value_dtype, -1)))

    # -- validation / sizes -----------------------------------------------------------------------

    def validate(self, params: ctypes.Structure) -> None:
        fn = {
            ConvParams: self._lib.sd_spec_conv_validate,
            PoolParams: self._lib.sd_spec_pool_validate,
            ToSpatialParams: self._lib.sd_spec_to_spatial_validate,
            ConcatParams: self._lib.sd_spec_concat_validate,
        }[type(params)]
        self._check(fn(ctypes.byref(params)), "validate")

    def out_row_words(self, params: ctypes.Structure) -> int:
        self.validate(params)
        fn = {
            ConvParams: self._lib.sd_spec_conv_out_row_words,
            PoolParams: self._lib.sd_spec_pool_out_row_words,
            ConcatParams: self._lib.sd_spec_concat_out_row_words,
        }[type(params)]
        return int(fn(ctypes.byref(params)))

    def _ws(self, fn: Any, params: ctypes.Structure, batch: int) -> int:
        n = ctypes.c_size_t(0)
        self._check(fn(ctypes.byref(params), int(batch), ctypes.byref(n)), "workspace_size")
        return int(n.value)

    def spec_conv_workspace_size(self, params: ConvParams, batch: int) -> int:
        return self._ws(self._lib.sd_spec_conv_workspace_size, params, batch)

    def spec_pool_workspace_size(self, params: PoolParams, batch: int) -> int:
        return self._ws(self._lib.sd_spec_pool_workspace_size, params, batch)

    def spec_to_spatial_workspace_size(self, params: ToSpatialParams, batch: int) -> int:
        return self._ws(self._lib.sd_spec_to_spatial_workspace_size, params, batch)

    def spec_concat_workspace_size(self, params: ConcatParams, batch: int) -> int:
        return self._ws(self._lib.sd_spec_concat_workspace_size, params, batch)

    # -- pointer level (device pointers for the cuda library) -------------------------------------

    def spec_conv_forward_ptr(
        self, params: ConvParams, batch: int, x: int, w: int, b: int | None, y: int, workspace: int,
        workspace_bytes: int, stream: int = 0,
    ) -> None:
        st = self._lib.sd_spec_conv_forward(
            ctypes.byref(params), int(batch), x, w, b or None, y, workspace or None, workspace_bytes, stream or None
        )
        self._check(st, "sd_spec_conv_forward")

    def spec_pool_forward_ptr(
        self, params: PoolParams, batch: int, x: int, y: int, workspace: int, workspace_bytes: int, stream: int = 0
    ) -> None:
        st = self._lib.sd_spec_pool_forward(
            ctypes.byref(params), int(batch), x, y, workspace or None, workspace_bytes, stream or None
        )
        self._check(st, "sd_spec_pool_forward")

    def spec_to_spatial_forward_ptr(
        self, params: ToSpatialParams, batch: int, x: int, y: int, workspace: int, workspace_bytes: int,
        stream: int = 0,
    ) -> None:
        st = self._lib.sd_spec_to_spatial_forward(
            ctypes.byref(params), int(batch), x, y, workspace or None, workspace_bytes, stream or None
        )
        self._check(st, "sd_spec_to_spatial_forward")

    def spec_concat_forward_ptr(
        self, params: ConcatParams, batch: int, xs: Sequence[int], y: int, workspace: int, workspace_bytes: int,
        stream: int = 0,
    ) -> None:
        arr = (ctypes.c_void_p * max(1, len(xs)))(*[int(p) for p in xs])
        st = self._lib.sd_spec_concat_forward(
            ctypes.byref(params), int(batch), arr, y, workspace or None, workspace_bytes, stream or None
        )
        self._check(st, "sd_spec_concat_forward")

    # -- numpy level (host library) -----------------------------------------------------------------

    def _need_host(self, op: str) -> None:
        if self.kind != "host":
            raise NativeError(
                f"{op}: the array-level API runs on the host library; with the cuda library use "
                f"{op}_forward_ptr with device buffers"
            )

    @staticmethod
    def _batch(op: str, x: np.ndarray) -> int:
        B = int(x.shape[0])
        if B >= 2**31:
            raise NativeInvalidArgument(f"{op}: batch {B} does not fit int32", SD_ERR_INVALID_ARGUMENT)
        return B

    @staticmethod
    def _packed(op: str, x: Any, what: str = "input") -> np.ndarray:
        a = np.asarray(x)
        if a.dtype != np.int32 or a.ndim != 2:
            raise NativeInvalidArgument(
                f"{op}: packed {what} must be int32 [B, S], got {a.dtype} with shape {a.shape}", SD_ERR_INVALID_ARGUMENT
            )
        return np.ascontiguousarray(a)

    def spec_conv(
        self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, *, in_domain: str, C: int, Hs: int, Ws: int,
        k: int, beta: float, activation: str, capacity: int, value_dtype: str, input_spectrum: str = "auto",
        pool: str = "none",
    ) -> np.ndarray:
        op = spec_conv_op.NAME
        self._need_host("spec_conv")
        w = np.ascontiguousarray(w, dtype=np.float32)
        if w.ndim != 4 or w.shape[1:] != (C, k, k):
            raise NativeInvalidArgument(
                f"{op}: weight W has shape {w.shape}, expected [O, C={C}, k={k}, k={k}]", SD_ERR_INVALID_ARGUMENT
            )
        O = w.shape[0]
        if b is not None:
            b = np.ascontiguousarray(b, dtype=np.float32)
            if b.shape != (O,):
                raise NativeInvalidArgument(f"{op}: bias B has shape {b.shape}, expected [{O}]", SD_ERR_INVALID_ARGUMENT)
        dom = enum(op, "in_domain", in_domain, spec_conv_op.NATIVE_DOMAIN)
        if dom == 0:
            x = np.asarray(x)
            if x.dtype not in (np.float32, np.float16):
                x = x.astype(np.float32)
            x = np.ascontiguousarray(x)
            if x.ndim != 4 or x.shape[1] != C:
                raise NativeInvalidArgument(
                    f"{op}: spatial input X has shape {x.shape}, expected [B, C={C}, H, W]", SD_ERR_INVALID_ARGUMENT
                )
            p = spec_conv_op.native_params(
                in_domain=in_domain, C=C, O=O, Hs=Hs, Ws=Ws, k=k, beta=beta, activation=activation, capacity=capacity,
                value_dtype=value_dtype, H=x.shape[2], W=x.shape[3], x_dtype=x.dtype, has_bias=b is not None,
                input_spectrum=input_spectrum, pool=pool,
            )
        else:
            x = self._packed(op, x, "input X")
            p = spec_conv_op.native_params(
                in_domain=in_domain, C=C, O=O, Hs=Hs, Ws=Ws, k=k, beta=beta, activation=activation, capacity=capacity,
                value_dtype=value_dtype, has_bias=b is not None, in_row_words=x.shape[1], pool=pool,
            )
        S = self.out_row_words(p)
        B = self._batch(op, x)
        y = np.empty((B, S), dtype=np.int32)
        ws = np.empty(max(1, self.spec_conv_workspace_size(p, B)), dtype=np.uint8)
        self.spec_conv_forward_ptr(p, B, x.ctypes.data, w.ctypes.data, None if b is None else b.ctypes.data,
                                   y.ctypes.data, ws.ctypes.data, ws.nbytes)
        return y

    def spec_pool(
        self, x: np.ndarray, *, C: int, Hs: int, Ws: int, out_Hs: int, out_Ws: int, capacity: int, value_dtype: str
    ) -> np.ndarray:
        self._need_host("spec_pool")
        x = self._packed(spec_pool_op.NAME, x)
        p = spec_pool_op.native_params(C=C, Hs=Hs, Ws=Ws, out_Hs=out_Hs, out_Ws=out_Ws, capacity=capacity, value_dtype=value_dtype,
                        in_row_words=x.shape[1])
        S = self.out_row_words(p)
        B = self._batch(spec_pool_op.NAME, x)
        y = np.empty((B, S), dtype=np.int32)
        ws = np.empty(max(1, self.spec_pool_workspace_size(p, B)), dtype=np.uint8)
        self.spec_pool_forward_ptr(p, B, x.ctypes.data, y.ctypes.data, ws.ctypes.data, ws.nbytes)
        return y

    def spec_to_spatial(self, x: np.ndarray, *, C: int, Hs: int, Ws: int, value_dtype: str) -> np.ndarray:
        self._need_host("spec_to_spatial")
        x = self._packed(spec_to_spatial_op.NAME, x)
        p = spec_to_spatial_op.native_params(C=C, Hs=Hs, Ws=Ws, value_dtype=value_dtype, in_row_words=x.shape[1])
        self.validate(p)
        B = self._batch(spec_to_spatial_op.NAME, x)
        y = np.empty((B, C, Hs, Ws), dtype=np.float32)
        ws = np.empty(max(1, self.spec_to_spatial_workspace_size(p, B)), dtype=np.uint8)
        self.spec_to_spatial_forward_ptr(p, B, x.ctypes.data, y.ctypes.data, ws.ctypes.data, ws.nbytes)
        return y

    def spec_concat(
        self, xs: Sequence[np.ndarray], *, C: Sequence[int], Hs: int, Ws: int, capacity: int, value_dtype: str
    ) -> np.ndarray:
        op = spec_concat_op.NAME
        self._need_host("spec_concat")
        xs = [self._packed(op, x, f"input {i}") for i, x in enumerate(xs)]
        if len(xs) == 0:
            raise NativeInvalidArgument(f"{op}: needs 1..{MAX_CONCAT_INPUTS} inputs, got 0", SD_ERR_INVALID_ARGUMENT)
        batches = {x.shape[0] for x in xs}
        if len(batches) != 1:
            raise NativeInvalidArgument(f"{op}: inputs have different batch sizes {sorted(batches)}", SD_ERR_INVALID_ARGUMENT)
        p = spec_concat_op.native_params(C=C, Hs=Hs, Ws=Ws, capacity=capacity, value_dtype=value_dtype,
                          in_row_words=[x.shape[1] for x in xs])
        S = self.out_row_words(p)
        B = self._batch(op, xs[0])
        y = np.empty((B, S), dtype=np.int32)
        ws = np.empty(max(1, self.spec_concat_workspace_size(p, B)), dtype=np.uint8)
        self.spec_concat_forward_ptr(p, B, [x.ctypes.data for x in xs], y.ctypes.data, ws.ctypes.data, ws.nbytes)
        return y


_loaded: dict[tuple[str, str], Library] = {}
_lock = threading.Lock()


def load(kind: str = "host", path: str | os.PathLike | None = None) -> Library:
    """Load (once per process and path) the native library of `kind`.

    `path`: the .so, or a build directory containing lib/<name>; default $SPECDEPLOY_HOST_LIB /
    $SPECDEPLOY_KERNELS_LIB, else default_build_dir(). Raises NativeLibraryError when the library is
    missing (with the command that builds it), cannot be loaded, has another ABI version, or (cuda)
    cannot run on this GPU (the CUDA error text, e.g. no kernel image for this architecture).
    """
    check_kind(kind)
    if path is None:
        path = os.environ.get(_ENV_LIB[kind]) or library_path(kind)
    p = Path(path)
    if p.is_dir():
        p = p / "lib" / LIB_NAMES[kind] if (p / "lib").is_dir() else p / LIB_NAMES[kind]
    p = p.resolve()
    key = (kind, str(p))
    with _lock:
        if key in _loaded:
            return _loaded[key]
        if not p.exists():
            bdir = p.parent.parent if p.parent.name == "lib" else p.parent
            raise NativeLibraryError(f"the {kind} library {p} does not exist; {build_command_hint(kind, bdir)}")
        try:
            cdll = ctypes.CDLL(str(p), mode=getattr(os, "RTLD_LOCAL", 0))
        except OSError as e:
            hint = ""
            if "asan" in str(e).lower() or "sanitizer" in str(e).lower():
                hint = " (a SPECDEPLOY_SANITIZE build cannot be loaded into Python; build without sanitize=True)"
            elif kind == "cuda":
                hint = " (is the CUDA driver installed? libcuda.so must be loadable)"
            raise NativeLibraryError(f"cannot load the {kind} library {p}: {e}{hint}") from None
        try:
            ver = int(cdll.sd_abi_version())
        except AttributeError:
            raise NativeLibraryError(f"{p} is not a specdeploy kernel library (no sd_abi_version)") from None
        if ver != ABI_VERSION:
            raise NativeLibraryError(
                f"{p} implements C ABI version {ver}, this specdeploy expects {ABI_VERSION}; rebuild it from this "
                f"checkout ({build_command_hint(kind, p.parent.parent)})"
            )
        lib = Library(kind, p, cdll)
        lib.check_mirrors()
        if kind == "cuda":
            lib.check_device()
        _loaded[key] = lib
        return lib


# ------------------------------------------------------------------------------------------------
# the reference API (docs/ops.md) on the host library


def spec_conv(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, *, in_domain: str, C: int, Hs: int, Ws: int, k: int,
    beta: float, activation: str, capacity: int, value_dtype: str, pool: str = "none",
) -> np.ndarray:
    """SpecConv on the host library; same signature and result as specdeploy.reference.spec_conv.
    (``pool`` of the hybrid block: ``load("host").spec_conv(..., pool=...)`` until the reference has it.)"""
    return load("host").spec_conv(
        x, w, b, in_domain=in_domain, C=C, Hs=Hs, Ws=Ws, k=k, beta=beta, activation=activation, capacity=capacity,
        value_dtype=value_dtype, pool=pool,
    )


def spec_pool(
    x: np.ndarray, *, C: int, Hs: int, Ws: int, out_Hs: int, out_Ws: int, capacity: int, value_dtype: str
) -> np.ndarray:
    """SpecPool on the host library; same signature and result as specdeploy.reference.spec_pool."""
    return load("host").spec_pool(
        x, C=C, Hs=Hs, Ws=Ws, out_Hs=out_Hs, out_Ws=out_Ws, capacity=capacity, value_dtype=value_dtype
    )


def spec_to_spatial(x: np.ndarray, *, C: int, Hs: int, Ws: int, value_dtype: str) -> np.ndarray:
    """SpecToSpatial on the host library; same signature and result as the reference."""
    return load("host").spec_to_spatial(x, C=C, Hs=Hs, Ws=Ws, value_dtype=value_dtype)


def spec_concat(
    xs: Sequence[np.ndarray], *, C: Sequence[int], Hs: int, Ws: int, capacity: int, value_dtype: str
) -> np.ndarray:
    """SpecConcat on the host library; same signature and result as the reference."""
    return load("host").spec_concat(xs, C=C, Hs=Hs, Ws=Ws, capacity=capacity, value_dtype=value_dtype)
