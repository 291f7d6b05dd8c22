"""What every op module of ``specdeploy.ops`` shares: the op descriptor, attribute checks, the
native library's workspace layout, and the numpy helpers of the reference functions.

Why a descriptor (:class:`OpDef`) of plain functions and not a class hierarchy: each op module reads
top to bottom as the list of that op's facts (attributes, checks, shapes, workspace, reference,
adapters), and the rest of the code iterates over ``specdeploy.ops.REGISTRY`` instead of testing
op names. Numpy only: never imports torch (Jetson) nor onnx (the reference runs without it); the
few onnx-facing facts are plain data or functions handed onnx objects by ``export/schemas.py``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from specdeploy import packed

DOMAIN = "specdeploy"
VERSION = 1

# ------------------------------------------------------------------------------------------ errors


class OpAttributeError(ValueError):
    """An op's attribute or input shape is outside what the op set allows."""


def fail(node: str, attr: str, value: Any, rule: str) -> OpAttributeError:
    return OpAttributeError(f"{node}: attribute '{attr}' = {value!r} is invalid: {rule}")


def int_at_least(node: str, attr: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise fail(node, attr, value, "must be an integer")
    v = int(value)
    if v < lo:
        raise fail(node, attr, value, f"must be >= {lo}")
    return v


def choice(node: str, attr: str, value: Any, allowed: Sequence[str]) -> str:
    if isinstance(value, bytes):
        value = value.decode()
    if value not in allowed:
        raise fail(node, attr, value, f"must be one of {', '.join(repr(a) for a in allowed)}")
    return value


def finite_at_least_zero(node: str, attr: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise fail(node, attr, value, "must be a finite number >= 0")
    return float(value)


def size(node: str, C: int, Hs: int, Ws: int) -> int:
    """C, Hs, Ws >= 1; returns F, the coefficients per channel."""
    int_at_least(node, "C", C, 1)
    int_at_least(node, "Hs", Hs, 1)
    int_at_least(node, "Ws", Ws, 1)
    return packed.num_coeffs(Hs, Ws)


def capacity(node: str, cap: Any, channels: int, F: int) -> int:
    c = int_at_least(node, "capacity", cap, 1)
    if c > channels * F:
        raise fail(node, "capacity", cap, f"must be <= C*F = {channels}*{F} = {channels * F}")
    return c


# ---------------------------------------------------------------- the native library's workspace
# plugins/common/src/plan.cpp and threshold.h: sub-buffers aligned to WS_ALIGN plus WS_ALIGN of slack
# for an unaligned base pointer. Ported (not called) so the planner runs from the ONNX file alone;
# tests/test_native_host.py holds the port equal to sd_*_workspace_size, and specdeploy.native checks
# HIST_LEVELS and WS_ALIGN against the library's sd_abi_query at load.

WS_ALIGN = 256
HIST_LEVELS = 600  # SD_NLEV: levels of the overflow grid (threshold.h)
# The per-sample level histogram is two-level (threshold.h): SD_NOCT = 75 coarse bins (octaves of 8
# levels) filled by the count pass, SD_NFINE = 8 fine bins of one octave filled by a refine pass for
# samples that overflowed; SD_HIST_WORDS = 83 uint32 per sample instead of 600.
HIST_COARSE, HIST_FINE = HIST_LEVELS // 8, 8
HIST_WORDS = HIST_COARSE + HIST_FINE
PIPE_WORDS = 5  # per sample: threshold, own, overflow flag, octave, header flags (uint32/float32 each)
COMPLEX64 = 8


def align(n: int) -> int:
    return (n + WS_ALIGN - 1) // WS_ALIGN * WS_ALIGN


def twiddle_workspace(Hs: int, Ws: int) -> int:
    """The DFT twiddle tables of the Hs- and Ws-point transforms (SpecConv, SpecToSpatial)."""
    return align(COMPLEX64 * Hs) + align(COMPLEX64 * Ws)


def pipeline_workspace(batch: int) -> int:
    """Ops with a packed output: the two-level level histogram, then five words per sample
    (threshold, owner, overflow flag, octave, header flags)."""
    return align(4 * batch * HIST_WORDS) + align(4 * PIPE_WORDS * batch)


# ------------------------------------------------------------------ reference helpers (numpy)


def decode(x: np.ndarray, C: int, Hs: int, Ws: int, value_dtype: str, what: str) -> packed.Decoded:
    F = packed.num_coeffs(Hs, Ws)
    try:
        return packed.decode(np.asarray(x), C, F, value_dtype)
    except packed.PackedFormatError as e:
        raise packed.PackedFormatError(f"{what}: {e}") from None


def inherit(vals: np.ndarray, keep: np.ndarray, cap: int, value_dtype: str, upstream: np.ndarray,
            upstream_flags: np.ndarray | None = None) -> np.ndarray:
    """Re-pack inherited coefficients: the input mask is the candidate set (beta 0); over capacity
    the grid (base 2^-10, i >= 1) drops the smallest (docs/format.md). ``upstream`` (overflowed) and
    ``upstream_flags`` (header word 3, NONFINITE) of the inputs stay set (sticky)."""
    return packed.pack(vals, vals, 0.0, cap, value_dtype, upstream_overflowed=upstream, candidates=keep,
                       upstream_flags=upstream_flags)


# ------------------------------------------------------------------------------------- descriptor


@dataclass(frozen=True)
class NativeCall:
    """One node bound to the C ABI, as the native executor runs it (``specdeploy.native.executor``).

    Buffers are raw addresses, so the executor may hold them in numpy (host) or torch (cuda) arrays.
    ``accepts``: dtypes input 0 may have; another float input is cast to ``accepts[0]`` first.
    ``run(B, in_ptrs, in_dtype0, y_ptr, ws_ptr, ws_bytes, stream)``; ``workspace(B)`` -> bytes.
    """

    out_shape: tuple[int, ...]  # without the batch dimension
    out_dtype: str  # numpy dtype name
    accepts: tuple[str, ...]
    run: Callable[[int, list[int], str, int, int, int, int], None]
    workspace: Callable[[int], int]


@dataclass(frozen=True)
class SchemaParam:
    """One formal input/output of the ONNX schema (export/schemas.py builds the OpSchema)."""

    name: str
    type_str: str
    doc: str
    option: str = "single"  # "single", "optional", "variadic"


@dataclass(frozen=True)
class OpDef:
    """Every fact of one specdeploy op; see docs/adding-an-op.md for what each entry must do.

    Functions take ``node`` objects with ``name``, ``op``, ``attrs`` (parsed ONNX attributes),
    ``inputs`` (names; SpecConv's omitted bias already dropped) and ``output``
    (``specdeploy.runtime.graph.SpecNode``), and ``weights``: initializer name -> TensorInfo.
    """

    name: str
    #: attribute name -> ONNX type ("INT", "FLOAT", "STRING", "INTS"); all required
    attributes: dict[str, str]
    doc: str
    #: allowed input counts (inclusive) and how the error names them; None: ``check_attrs`` checks
    n_inputs: tuple[int, int] | None
    inputs_doc: str
    #: inputs that must be initializers (weights), by position
    weight_inputs: tuple[int, ...]
    #: graph-level checks before shapes are known: (node, weights, node_label) -> None
    check_attrs: Callable[[Any, dict[str, Any], str], None]
    #: graph-level checks once every input's TensorInfo is known: (node, info, packed_in, node_label)
    check_node: Callable[[Any, Callable[[str, str], Any], Callable[[str, str, int, int], None], str], None]
    #: (node attrs, weight shapes of the node's inputs or None) -> (output shape without batch, dtype)
    output: Callable[[dict[str, Any], Sequence[Any]], tuple[tuple[int, ...], str]]
    #: C_out * F of a packed output (the count its kept fraction is relative to), else None
    dense_coeffs: Callable[[dict[str, Any], Sequence[Any]], int] | None
    #: bytes the native library's workspace needs at a batch: (attrs, batch, out_channels) -> int
    workspace: Callable[[dict[str, Any], int, int | None], int]
    #: the numpy ground truth: (inputs, attrs) -> output array
    reference: Callable[[list[np.ndarray | None], dict[str, Any]], np.ndarray]
    #: ONNX schema: formal inputs/outputs, type constraints, shape inference (onnx objects passed in)
    schema_inputs: tuple[SchemaParam, ...]
    schema_outputs: tuple[SchemaParam, ...]
    schema_types: tuple[tuple[str, tuple[str, ...], str], ...]
    infer_shape: Callable[[Any, Any], None]  # (ctx, helpers) -> None
    #: ONNX Runtime Python op: variant suffix of the op type, and input dtypes ("float"/"int32")
    ort_variant: Callable[[Any], str]
    ort_inputs: Callable[[Any], list[str]]
    #: the native adapter: (node, ctx) -> NativeCall (ctx: see specdeploy.native.executor.BindContext)
    native: Callable[[Any, Any], NativeCall]
    #: plugin version TensorRT registers for this op (namespace "")
    trt_version: str = "1"
    #: whether the output is a packed [B, S] int32 row (SpecToSpatial's is a float map)
    packed_output: bool = True
    #: attributes added after files were written (DESIGN §3 "additions"): name -> the value an absent
    #: attribute means, so old files stay valid; every other attribute is required
    defaults: dict[str, Any] = field(default_factory=dict)
    #: why the native kernels (C ABI, cuda backend, TensorRT plugin) cannot run a node with these
    #: attributes, naming the attribute; None when they can
    native_unsupported: Callable[[dict[str, Any]], str | None] = lambda attrs: None

    def with_defaults(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """``attrs`` with every absent optional attribute set to its default."""
        return {**self.defaults, **attrs}

    def check_required(self, attrs: dict[str, Any], node: str) -> None:
        """Every required attribute of the op is present and none is unknown (used when reading ONNX nodes)."""
        missing = sorted(set(self.attributes) - set(attrs) - set(self.defaults))
        if missing:
            raise OpAttributeError(f"{node}: {self.name} lacks required attribute(s) {', '.join(missing)}")
        unknown = sorted(set(attrs) - set(self.attributes))
        if unknown:
            raise OpAttributeError(f"{node}: {self.name} has unsupported attribute(s) {', '.join(unknown)}")
