"""ctypes bindings of the native op set (plugins/, C ABI ``specdeploy_c.h``): build, load, call.

Two libraries implement the same C ABI (``plugins/common/include/specdeploy/specdeploy_c.h``):

* ``"host"``: ``libspecdeploy_host.so``, the CPU build of the same per-element kernels (CI);
  pointers are host pointers. :func:`spec_conv` & co. run numpy arrays through it.
* ``"cuda"``: ``libspecdeploy_kernels.so``, the CUDA kernels; pointers are device pointers and work
  is enqueued on a CUDA stream. Use the pointer-level methods of :class:`Library`
  (``spec_conv_forward_ptr`` ...) with buffers from torch / cupy / cuda-python, after sizing the
  workspace with ``spec_conv_workspace_size`` ...

Typical use::

    from specdeploy import native
    native.build("host", "build/plugins")           # cmake + build; CLI: specdeploy build-plugins
    y = native.spec_conv(x, w, b, in_domain="spatial", C=3, Hs=34, Ws=34, k=3, beta=0.5,
                         activation="tanh", capacity=4000, value_dtype="fp16")

Only numpy and ctypes (never torch): this runs on a Jetson.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = [
    "ABI_VERSION",
    "INPUT_SPECTRUM",
    "KINDS",
    "NativeError",
    "NativeBuildError",
    "NativeLibraryError",
    "NativeInvalidArgument",
    "ConvParams",
    "PoolParams",
    "ToSpatialParams",
    "ConcatParams",
    "Library",
    "build",
    "load",
    "library_path",
    "default_build_dir",
    "spec_conv",
    "spec_pool",
    "spec_to_spatial",
    "spec_concat",
    "runtime_session",
]

ABI_VERSION = 2
KINDS = ("host", "cuda")
MAX_CONCAT_INPUTS = 64

_REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGINS_DIR = _REPO_ROOT / "plugins"
_LIB_NAMES = {"host": "libspecdeploy_host.so", "cuda": "libspecdeploy_kernels.so"}
_TARGETS = {"host": "specdeploy_host", "cuda": "specdeploy_kernels"}
_ENV_LIB = {"host": "SPECDEPLOY_HOST_LIB", "cuda": "SPECDEPLOY_KERNELS_LIB"}
_ENV_BUILD_DIR = "SPECDEPLOY_PLUGINS_BUILD_DIR"
BUILD_LOG = "specdeploy_build.log"

# sd_status
SD_OK = 0
SD_ERR_INVALID_ARGUMENT = 1
SD_ERR_WORKSPACE = 2
SD_ERR_CUDA = 3
SD_ERR_UNSUPPORTED = 4
SD_ERR_INTERNAL = 5
STATUS_NAMES = {
    SD_OK: "SD_OK",
    SD_ERR_INVALID_ARGUMENT: "SD_ERR_INVALID_ARGUMENT",
    SD_ERR_WORKSPACE: "SD_ERR_WORKSPACE",
    SD_ERR_CUDA: "SD_ERR_CUDA",
    SD_ERR_UNSUPPORTED: "SD_ERR_UNSUPPORTED",
    SD_ERR_INTERNAL: "SD_ERR_INTERNAL",
}

_VALUE_DTYPE = {"fp32": 0, "fp16": 1}
_DOMAIN = {"spatial": 0, "spectral": 1}
_ACTIVATION = {"none": 0, "tanh": 1}
INPUT_SPECTRUM = {"auto": 0, "dense": 1, "streamed": 2}  # sd_input_spectrum (spatial-input SpecConv)
_FLOAT_TYPE = {"float32": 0, "float16": 1}


class NativeError(RuntimeError):
    """A call into the native library failed; ``status`` is the sd_status code (or None)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class NativeInvalidArgument(NativeError, ValueError):
    """SD_ERR_INVALID_ARGUMENT (or a Python-side check of the same kind): names the attribute."""


class NativeBuildError(NativeError):
    """cmake configure/build failed; the message carries the command and the tail of its output."""


class NativeLibraryError(NativeError):
    """The library could not be found, loaded, or is incompatible (ABI version, GPU architecture)."""


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


# ------------------------------------------------------------------------------------------------
# attribute conversion (Python-side errors name the attribute like the C side does)


def _i32(op: str, name: str, v: Any) -> int:
    if isinstance(v, (bool, np.bool_)) or not hasattr(v, "__index__"):
        raise NativeInvalidArgument(f"{op}: attribute '{name}' = {v!r} must be an integer", SD_ERR_INVALID_ARGUMENT)
    i = int(v)
    if not -(2**31) <= i < 2**31:
        raise NativeInvalidArgument(f"{op}: attribute '{name}' = {i} does not fit int32", SD_ERR_INVALID_ARGUMENT)
    return i


def _choice(op: str, name: str, v: Any, table: dict[str, int]) -> int:
    if isinstance(v, bytes):
        v = v.decode()
    if v not in table:
        allowed = ", ".join(repr(k) for k in table)
        raise NativeInvalidArgument(f"{op}: attribute '{name}' = {v!r} must be one of {allowed}", SD_ERR_INVALID_ARGUMENT)
    return table[v]


def _float_type(op: str, name: str, dtype: Any) -> int:
    d = np.dtype(dtype).name
    if d not in _FLOAT_TYPE:
        raise NativeInvalidArgument(f"{op}: {name} must be float32 or float16, got {d}", SD_ERR_INVALID_ARGUMENT)
    return _FLOAT_TYPE[d]


def conv_params(
    *, in_domain: str, C: int, O: int, Hs: int, Ws: int, k: int, beta: float, activation: str, capacity: int,
    value_dtype: str, H: int = 0, W: int = 0, x_dtype: Any = np.float32, has_bias: bool = False,
    in_row_words: int = 0, input_spectrum: str = "auto",
) -> ConvParams:
    """The sd_spec_conv_params of a SpecConv node (string attributes as in docs/ops.md).

    ``input_spectrum`` (spatial input): "auto" (the library's rule, what the planner assumes),
    "dense" (rfft2 into the workspace) or "streamed" (recomputed per tile, no buffer): same bits.
    """
    op = "SpecConv"
    p = ConvParams()
    p.in_domain = _choice(op, "in_domain", in_domain, _DOMAIN)
    p.C, p.O, p.H, p.W = (_i32(op, n, v) for n, v in (("C", C), ("O", O), ("H", H), ("W", W)))
    p.Hs, p.Ws, p.k = (_i32(op, n, v) for n, v in (("Hs", Hs), ("Ws", Ws), ("k", k)))
    with np.errstate(over="ignore"):
        p.beta = float(np.float32(beta))  # non-finite values are reported by the C validation
    p.activation = _choice(op, "activation", activation, _ACTIVATION)
    p.capacity = _i32(op, "capacity", capacity)
    p.value_dtype = _choice(op, "value_dtype", value_dtype, _VALUE_DTYPE)
    p.x_type = _float_type(op, "x dtype", x_dtype) if p.in_domain == 0 else 0
    p.has_bias = 1 if has_bias else 0
    p.input_spectrum = _choice(op, "input_spectrum", input_spectrum, INPUT_SPECTRUM)
    p.in_row_words = int(in_row_words)
    return p


def pool_params(
    *, C: int, Hs: int, Ws: int, out_Hs: int, out_Ws: int, capacity: int, value_dtype: str, in_row_words: int
) -> PoolParams:
    op = "SpecPool"
    p = PoolParams()
    for n, v in (("C", C), ("Hs", Hs), ("Ws", Ws), ("out_Hs", out_Hs), ("out_Ws", out_Ws), ("capacity", capacity)):
        setattr(p, n, _i32(op, n, v))
    p.value_dtype = _choice(op, "value_dtype", value_dtype, _VALUE_DTYPE)
    p.in_row_words = int(in_row_words)
    return p


def to_spatial_params(
    *, C: int, Hs: int, Ws: int, value_dtype: str, in_row_words: int, y_dtype: Any = np.float32
) -> ToSpatialParams:
    op = "SpecToSpatial"
    p = ToSpatialParams()
    for n, v in (("C", C), ("Hs", Hs), ("Ws", Ws)):
        setattr(p, n, _i32(op, n, v))
    p.value_dtype = _choice(op, "value_dtype", value_dtype, _VALUE_DTYPE)
    p.y_type = _float_type(op, "y dtype", y_dtype)
    p.in_row_words = int(in_row_words)
    return p


def concat_params(
    *, C: Sequence[int], Hs: int, Ws: int, capacity: int, value_dtype: str, in_row_words: Sequence[int]
) -> ConcatParams:
    op = "SpecConcat"
    C = list(C)
    rw = list(in_row_words)
    if not 1 <= len(C) <= MAX_CONCAT_INPUTS:
        raise NativeInvalidArgument(
            f"{op}: attribute 'C' has {len(C)} entries; 1..{MAX_CONCAT_INPUTS} inputs are allowed", SD_ERR_INVALID_ARGUMENT
        )
    if len(rw) != len(C):
        raise NativeInvalidArgument(
            f"{op}: attribute 'C' lists {len(C)} channel counts but there are {len(rw)} inputs", SD_ERR_INVALID_ARGUMENT
        )
    p = ConcatParams()
    p.n_inputs = len(C)
    for i, (c, s) in enumerate(zip(C, rw)):
        p.C[i] = _i32(op, f"C[{i}]", c)
        p.in_row_words[i] = int(s)
    p.Hs, p.Ws, p.capacity = (_i32(op, n, v) for n, v in (("Hs", Hs), ("Ws", Ws), ("capacity", capacity)))
    p.value_dtype = _choice(op, "value_dtype", value_dtype, _VALUE_DTYPE)
    return p


# ------------------------------------------------------------------------------------------------
# build


def default_build_dir() -> Path:
    """$SPECDEPLOY_PLUGINS_BUILD_DIR, else <repo>/build/plugins."""
    env = os.environ.get(_ENV_BUILD_DIR)
    return Path(env) if env else _REPO_ROOT / "build" / "plugins"


def library_path(kind: str, build_dir: str | os.PathLike | None = None) -> Path:
    """Where build() puts the library of `kind` (``<build_dir>/lib/<name>``)."""
    _check_kind(kind)
    return Path(build_dir or default_build_dir()) / "lib" / _LIB_NAMES[kind]


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def _build_command_hint(kind: str, build_dir: Path) -> str:
    return (
        f"build it with `specdeploy build-plugins --kind {kind} --build-dir {build_dir}` or "
        f"`cmake -S {PLUGINS_DIR} -B {build_dir} -DSPECDEPLOY_BUILD_CUDA={'ON' if kind == 'cuda' else 'OFF'} && "
        f"cmake --build {build_dir} --target {_TARGETS[kind]} -j`"
    )


def build(
    kind: str = "host",
    build_dir: str | os.PathLike | None = None,
    sanitize: bool = False,
    *,
    jobs: int | None = None,
    cuda_architectures: str | None = None,
    build_type: str | None = None,
    targets: Sequence[str] | None = None,
) -> Path:
    """Configure and build the native library of `kind` with cmake; returns the library's path.

    kind "host": libspecdeploy_host.so (g++ only; SPECDEPLOY_BUILD_CUDA=OFF). kind "cuda":
    libspecdeploy_kernels.so (needs nvcc; the CUDA architectures default to 87;90 plus 110/101 where
    the toolkit has them; ``cuda_architectures`` overrides, e.g. "90"). ``sanitize``: ASan+UBSan
    for the host library and the C++ tests (such a library cannot be loaded into a plain Python
    process; run ctest in the build dir). The full cmake output is kept in <build_dir>/specdeploy_build.log.
    Raises NativeBuildError with the failing command and the tail of its output.
    """
    _check_kind(kind)
    bdir = Path(build_dir or default_build_dir()).resolve()
    bdir.mkdir(parents=True, exist_ok=True)
    cmake = shutil.which("cmake")
    if cmake is None:
        raise NativeBuildError("cmake not found on PATH; install cmake >= 3.24 to build the native library")
    cfg = [
        cmake,
        "-S",
        str(PLUGINS_DIR),
        "-B",
        str(bdir),
        f"-DCMAKE_BUILD_TYPE={build_type or ('RelWithDebInfo' if sanitize else 'Release')}",
        "-DSPECDEPLOY_BUILD_HOST=ON",
        f"-DSPECDEPLOY_BUILD_CUDA={'ON' if kind == 'cuda' else 'OFF'}",
        f"-DSPECDEPLOY_SANITIZE={'ON' if sanitize else 'OFF'}",
    ]
    if kind == "cuda":
        nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
        if nvcc is None:
            raise NativeBuildError(
                "kind 'cuda' needs the CUDA compiler nvcc, which is not on PATH (nor /usr/local/cuda/bin); "
                "install the CUDA toolkit or build kind 'host'"
            )
        cfg.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
        if cuda_architectures:
            cfg.append(f"-DCMAKE_CUDA_ARCHITECTURES={cuda_architectures}")
    jobs = jobs or os.cpu_count() or 2
    tgts = list(targets) if targets else [_TARGETS[kind]]
    if sanitize and "specdeploy_packed_test" not in tgts:
        tgts.append("specdeploy_packed_test")
    bld = [cmake, "--build", str(bdir), "-j", str(jobs), "-v", "--target", *tgts]
    log_path = bdir / BUILD_LOG
    with open(log_path, "w") as log:
        for cmd in (cfg, bld):
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            log.write(r.stdout)
            if r.returncode != 0:
                tail = "\n".join(r.stdout.splitlines()[-60:])
                raise NativeBuildError(
                    f"building the {kind} library failed (exit {r.returncode}):\n$ {' '.join(cmd)}\n{tail}\n"
                    f"(full log: {log_path})"
                )
    lib = library_path(kind, bdir)
    if not lib.exists():
        raise NativeBuildError(f"the build succeeded but {lib} does not exist (full log: {log_path})")
    return lib


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
                    f"({_build_command_hint(self.kind, self.path.parent.parent)})"
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

    def abi_version(self) -> int:
        return int(self._lib.sd_abi_version())

    def check_device(self) -> None:
        """Raise NativeLibraryError with the CUDA error text if the kernels cannot run here."""
        st = self._lib.sd_check_device()
        if st != SD_OK:
            raise NativeLibraryError(f"{self.path}: {self.last_error()}", st)

    def packed_row_words(self, C: int, F: int, capacity: int, value_dtype: str) -> int:
        return int(self._lib.sd_packed_row_words(C, F, capacity, _VALUE_DTYPE.get(value_dtype, -1)))

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
    ) -> np.ndarray:
        op = "SpecConv"
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
        dom = _choice(op, "in_domain", in_domain, _DOMAIN)
        if dom == 0:
            x = np.asarray(x)
            if x.dtype not in (np.float32, np.float16):
                x = x.astype(np.float32)
            x = np.ascontiguousarray(x)
            if x.ndim != 4 or x.shape[1] != C:
                raise NativeInvalidArgument(
                    f"{op}: spatial input X has shape {x.shape}, expected [B, C={C}, H, W]", SD_ERR_INVALID_ARGUMENT
                )
            p = conv_params(
                in_domain=in_domain, C=C, O=O, Hs=Hs, Ws=Ws, k=k, beta=beta, activation=activation, capacity=capacity,
                value_dtype=value_dtype, H=x.shape[2], W=x.shape[3], x_dtype=x.dtype, has_bias=b is not None,
                input_spectrum=input_spectrum,
            )
        else:
            x = self._packed(op, x, "input X")
            p = conv_params(
                in_domain=in_domain, C=C, O=O, Hs=Hs, Ws=Ws, k=k, beta=beta, activation=activation, capacity=capacity,
                value_dtype=value_dtype, has_bias=b is not None, in_row_words=x.shape[1],
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
        x = self._packed("SpecPool", x)
        p = pool_params(C=C, Hs=Hs, Ws=Ws, out_Hs=out_Hs, out_Ws=out_Ws, capacity=capacity, value_dtype=value_dtype,
                        in_row_words=x.shape[1])
        S = self.out_row_words(p)
        B = self._batch("SpecPool", x)
        y = np.empty((B, S), dtype=np.int32)
        ws = np.empty(max(1, self.spec_pool_workspace_size(p, B)), dtype=np.uint8)
        self.spec_pool_forward_ptr(p, B, x.ctypes.data, y.ctypes.data, ws.ctypes.data, ws.nbytes)
        return y

    def spec_to_spatial(self, x: np.ndarray, *, C: int, Hs: int, Ws: int, value_dtype: str) -> np.ndarray:
        self._need_host("spec_to_spatial")
        x = self._packed("SpecToSpatial", x)
        p = to_spatial_params(C=C, Hs=Hs, Ws=Ws, value_dtype=value_dtype, in_row_words=x.shape[1])
        self.validate(p)
        B = self._batch("SpecToSpatial", x)
        y = np.empty((B, C, Hs, Ws), dtype=np.float32)
        ws = np.empty(max(1, self.spec_to_spatial_workspace_size(p, B)), dtype=np.uint8)
        self.spec_to_spatial_forward_ptr(p, B, x.ctypes.data, y.ctypes.data, ws.ctypes.data, ws.nbytes)
        return y

    def spec_concat(
        self, xs: Sequence[np.ndarray], *, C: Sequence[int], Hs: int, Ws: int, capacity: int, value_dtype: str
    ) -> np.ndarray:
        op = "SpecConcat"
        self._need_host("spec_concat")
        xs = [self._packed(op, x, f"input {i}") for i, x in enumerate(xs)]
        if len(xs) == 0:
            raise NativeInvalidArgument(f"{op}: needs 1..{MAX_CONCAT_INPUTS} inputs, got 0", SD_ERR_INVALID_ARGUMENT)
        batches = {x.shape[0] for x in xs}
        if len(batches) != 1:
            raise NativeInvalidArgument(f"{op}: inputs have different batch sizes {sorted(batches)}", SD_ERR_INVALID_ARGUMENT)
        p = concat_params(C=C, Hs=Hs, Ws=Ws, capacity=capacity, value_dtype=value_dtype,
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
    _check_kind(kind)
    if path is None:
        path = os.environ.get(_ENV_LIB[kind]) or library_path(kind)
    p = Path(path)
    if p.is_dir():
        p = p / "lib" / _LIB_NAMES[kind] if (p / "lib").is_dir() else p / _LIB_NAMES[kind]
    p = p.resolve()
    key = (kind, str(p))
    with _lock:
        if key in _loaded:
            return _loaded[key]
        if not p.exists():
            bdir = p.parent.parent if p.parent.name == "lib" else p.parent
            raise NativeLibraryError(f"the {kind} library {p} does not exist; {_build_command_hint(kind, bdir)}")
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
                f"checkout ({_build_command_hint(kind, p.parent.parent)})"
            )
        lib = Library(kind, p, cdll)
        if kind == "cuda":
            lib.check_device()
        _loaded[key] = lib
        return lib


# ------------------------------------------------------------------------------------------------
# the reference API (docs/ops.md) on the host library


def spec_conv(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, *, in_domain: str, C: int, Hs: int, Ws: int, k: int,
    beta: float, activation: str, capacity: int, value_dtype: str,
) -> np.ndarray:
    """SpecConv on the host library; same signature and result as specdeploy.reference.spec_conv."""
    return load("host").spec_conv(
        x, w, b, in_domain=in_domain, C=C, Hs=Hs, Ws=Ws, k=k, beta=beta, activation=activation, capacity=capacity,
        value_dtype=value_dtype,
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


# ------------------------------------------------------------------------------------------------
# backend "cuda" of specdeploy.runtime


def runtime_session(info: Any, **opts: Any) -> Any:
    """Factory of backend "cuda" (``specdeploy.runtime.load(path, "cuda", **opts)``).

    The graph executor lives in ``specdeploy.runtime.native_backend`` and uses torch CUDA tensors as
    device buffers; it is imported here, on use, so that this module stays torch-free (Jetson).
    Options: see that module (library, fp16, workspace, measure_memory, device).
    """
    from specdeploy.runtime.native_backend import cuda_session

    return cuda_session(info, **opts)
