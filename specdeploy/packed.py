"""The packed sparse spectral format (DESIGN.md §4, docs/format.md): numpy reference implementation.

One sample of a spectral map with C channels of F complex coefficients is one row of an int32
tensor ``[B, S]``::

    header  : 4 words       nnz (uint32), overflowed (uint32 0/1), beta_used (float32 bits),
                             flags (uint32: bit 0 NONFINITE, sticky downstream; other bits 0)
    mask    : NB*C*4 words   block b of channel c at words [(b*C + c)*4 .. +3]
    offsets : NB*C + 1 words exclusive prefix sum of the (b, c) blocks' popcounts; last = nnz
    values  : capacity * vw  kept values in (b, c, f) order, then zeros (vw = 2 fp32, 1 fp16)

with ``NB = ceil(F / 128)`` and bit ``j`` of mask word ``i`` of a block being coefficient
``f = 128*b + 32*i + j``.

Why block-major (b, c) and not channel-major (c, b): the GPU kernels tile over frequencies (a tile of
128 coefficients of *all* channels is what a SpecConv output tile needs from its input, and what a
thread block writes). In block-major order that tile's mask words, offsets and values are each one
contiguous stretch of the row, so a tile is read with coalesced loads and written after a single
prefix sum over its own (b, c) pairs; channel-major order would scatter it over C strides.
Random access stays O(1) either way (``get``): ``offsets[b*C+c]`` + popcounts of the earlier words
of the block + ``popcount(word & ((1 << j) - 1))``.

Why the threshold rules look the way they do (docs/format.md): kept-ness is decided by
``re*re + im*im > t*t`` in fp32 without a square root, and an over-capacity sample raises its
threshold along a fixed fp32 grid built with exact ``ldexp``; both make every runtime (this module,
torch, the C++/CUDA kernels, TensorRT) agree bit for bit on the same fp32 inputs.

This module uses numpy only (never torch): it runs on a Jetson next to TensorRT.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "VALUE_DTYPES",
    "BLOCK",
    "HEADER_WORDS",
    "FLAG_NONFINITE",
    "nonfinite_samples",
    "GRID_R",
    "GRID_MIN_BASE",
    "PackedFormatError",
    "num_coeffs",
    "Layout",
    "row_words",
    "threshold_grid",
    "kept_at",
    "select",
    "encode",
    "pack",
    "Decoded",
    "decode",
    "validate",
    "get",
]

VALUE_DTYPES = ("fp32", "fp16")
BLOCK = 128
HEADER_WORDS = 4
#: header word 3, bit 0 (DESIGN §4): a non-finite value (NaN/Inf) reached this op for this sample. Sticky:
#: every op ORs its packed inputs' flags into its output. Without it a NaN pixel would make every
#: coefficient fail the threshold and the model would answer plausible logits from the biases alone.
FLAG_NONFINITE = 1
_FLAGS_DEFINED = FLAG_NONFINITE
_WORDS_PER_BLOCK = BLOCK // 32

#: fp32 of 2^(j/8), j = 0..7 (docs/format.md); the grid's mantissa steps.
GRID_R = np.array(
    [
        1.0,
        1.0905077326652577,
        1.189207115002721,
        1.2968395546510096,
        1.4142135623730951,
        1.5422108254079407,
        1.681792830507429,
        1.8340080864093424,
    ],
    dtype=np.float32,
)
#: the grid never starts below 2^-10 (so beta = 0 still gives a finite, positive grid)
GRID_MIN_BASE = np.float32(2.0**-10)


class PackedFormatError(ValueError):
    """A packed row, its layout or an argument of this module is invalid.

    The message names what is wrong: the field (header word, mask word, offsets entry, value slot),
    the sample index, and the expected versus the found value.
    """


# --------------------------------------------------------------------------------------------
# small helpers


_POP16 = np.unpackbits(np.arange(1 << 16, dtype="<u2").view(np.uint8)).reshape(-1, 16).sum(axis=1, dtype=np.uint8)


def _popcount32_lut(words: np.ndarray) -> np.ndarray:
    """Per-element popcount of uint32 words via a 16-bit lookup table (numpy < 2 fallback)."""
    w = np.asarray(words, dtype=np.uint32)
    return _POP16[w & np.uint32(0xFFFF)] + _POP16[w >> np.uint32(16)]


#: per-element popcount of uint32 words: np.bitwise_count (numpy >= 2.0, one instruction per word
#: where the CPU has it) or the lookup table on older numpy (e.g. older JetPack images)
_popcount32 = getattr(np, "bitwise_count", _popcount32_lut)


def _as_int(x: object, name: str) -> int:
    """operator.index with an error naming the argument (rejects floats and bools)."""
    if isinstance(x, (bool, np.bool_)):
        raise PackedFormatError(f"{name} must be an integer, got bool {x!r}")
    try:
        return operator.index(x)  # type: ignore[arg-type]
    except TypeError:
        raise PackedFormatError(f"{name} must be an integer, got {type(x).__name__} {x!r}") from None


def _check_dtype(value_dtype: str) -> str:
    if value_dtype not in VALUE_DTYPES:
        raise PackedFormatError(f"value_dtype must be one of {VALUE_DTYPES}, got {value_dtype!r}")
    return value_dtype


def _check_beta(beta: object, name: str = "beta") -> np.float32:
    """beta as the fp32 every runtime uses; must be finite and >= 0.

    Finite beta also guarantees a finite beta_used: the search stops at the first t_i with
    fp32(t_i * t_i) = inf, and that t_i is still finite (about 2^64).
    """
    with np.errstate(over="ignore"):
        b = np.float32(beta)
    if not np.isfinite(b) or b < 0:
        raise PackedFormatError(f"{name} must be finite and >= 0 (as fp32), got {beta!r}")
    return b


def num_coeffs(Hs: int, Ws: int) -> int:
    """F = Hs * (Ws // 2 + 1): coefficients per channel of a real 2-D FFT's half spectrum."""
    Hs = _as_int(Hs, "Hs")
    Ws = _as_int(Ws, "Ws")
    if Hs < 1 or Ws < 1:
        raise PackedFormatError(f"Hs and Ws must be >= 1, got Hs={Hs}, Ws={Ws}")
    return Hs * (Ws // 2 + 1)


# --------------------------------------------------------------------------------------------
# layout


@dataclass(frozen=True)
class Layout:
    """Word positions of one packed row for (C, F, capacity, value_dtype).

    The format layer allows ``0 <= capacity <= C * F`` (a row can hold at most every coefficient;
    ops additionally require ``capacity >= 1``, docs/ops.md).
    """

    C: int
    F: int
    capacity: int
    value_dtype: str

    def __post_init__(self) -> None:
        C = _as_int(self.C, "C")
        F = _as_int(self.F, "F")
        cap = _as_int(self.capacity, "capacity")
        _check_dtype(self.value_dtype)
        if C < 1:
            raise PackedFormatError(f"C must be >= 1, got {C}")
        if F < 1:
            raise PackedFormatError(f"F must be >= 1, got {F}")
        if not 0 <= cap <= C * F:
            raise PackedFormatError(f"capacity must be in 0..C*F = 0..{C * F} (C={C}, F={F}), got {cap}")
        # normalise numpy integers to int so Layouts compare and hash by value
        object.__setattr__(self, "C", C)
        object.__setattr__(self, "F", F)
        object.__setattr__(self, "capacity", cap)

    @property
    def NB(self) -> int:
        """Number of 128-coefficient blocks per channel, ceil(F / 128)."""
        return -(-self.F // BLOCK)

    @property
    def value_words(self) -> int:
        """Words per stored value: 2 (fp32 re, im) or 1 (fp16 pair)."""
        return 2 if self.value_dtype == "fp32" else 1

    @property
    def n_pairs(self) -> int:
        """Number of (block, channel) pairs, NB * C."""
        return self.NB * self.C

    @property
    def mask_start(self) -> int:
        return HEADER_WORDS

    @property
    def offsets_start(self) -> int:
        return HEADER_WORDS + _WORDS_PER_BLOCK * self.n_pairs

    @property
    def values_start(self) -> int:
        return self.offsets_start + self.n_pairs + 1

    @property
    def row_words(self) -> int:
        """S, the int32 words of one row."""
        return self.values_start + self.capacity * self.value_words

    @staticmethod
    def from_row_words(C: int, F: int, row_words: int, value_dtype: str) -> "Layout":
        """Derive the capacity from a row size S (what a runtime sees: the input tensor's shape).

        Raises PackedFormatError when S is not ``values_start + capacity * value_words`` for an
        integer ``0 <= capacity <= C * F``.
        """
        _check_dtype(value_dtype)
        S = _as_int(row_words, "row_words")
        probe = Layout(C, F, 0, value_dtype)
        vw = probe.value_words
        rest = S - probe.values_start
        if rest < 0 or rest % vw != 0 or rest // vw > probe.C * probe.F:
            why = (
                "shorter than header+mask+offsets"
                if rest < 0
                else f"leaves {rest} value words, not a whole number of {value_dtype} values ({vw} words each)"
                if rest % vw
                else f"implies capacity {rest // vw} > C*F = {probe.C * probe.F}"
            )
            raise PackedFormatError(
                f"row size S={S} words does not fit C={probe.C}, F={probe.F}, value_dtype={value_dtype!r}: "
                f"header+mask+offsets take {probe.values_start} words, S {why}; valid sizes are "
                f"{probe.values_start} + capacity*{vw} for capacity 0..{probe.C * probe.F}"
            )
        return Layout(probe.C, probe.F, rest // vw, value_dtype)


def row_words(C: int, F: int, capacity: int, value_dtype: str) -> int:
    """S = 4 + 5*NB*C + 1 + capacity * value_words (docs/format.md)."""
    return Layout(C, F, capacity, value_dtype).row_words


# --------------------------------------------------------------------------------------------
# threshold and overflow grid


def threshold_grid(beta: float, i: int) -> np.float32:
    """Grid threshold t_i = ldexp(fp32(base * R[i % 8]), i // 8), base = max(fp32(beta), 2^-10).

    Exact fp32 arithmetic (one rounding in the multiply, ldexp exact or inf) so every runtime gets
    the same bits. ``i >= 1`` are the overflow thresholds; ``i = 0`` returns ``base`` (never used
    as a threshold, but handy for reasoning: t_{i+8} == 2 * t_i).
    """
    i = _as_int(i, "i")
    if i < 0:
        raise PackedFormatError(f"grid index i must be >= 0, got {i}")
    b = _check_beta(beta)
    base = max(b, GRID_MIN_BASE)
    with np.errstate(over="ignore"):
        m = np.float32(base * GRID_R[i % 8])
        return np.float32(np.ldexp(m, i // 8))


@functools.lru_cache(maxsize=64)
def _grid_squares(base_bits: int) -> np.ndarray:
    """tt[k] = fp32(t_{k+1} * t_{k+1}) for k = 0 .. L-1, ending at the first inf.

    A coefficient is kept at t_i iff m2 > tt[i-1]; its *level* (the largest i it survives) is
    ``searchsorted(tt, m2, 'left')``. For any finite base >= 2^-10, L <= 600.
    """
    base = np.array([base_bits], dtype=np.uint32).view(np.float32)[0]
    out = []
    with np.errstate(over="ignore"):
        i = 1
        while True:
            t = np.float32(np.ldexp(np.float32(base * GRID_R[i % 8]), i // 8))
            tt = np.float32(t * t)
            out.append(tt)
            if np.isinf(tt):
                break
            i += 1
    tab = np.array(out, dtype=np.float32)
    tab.setflags(write=False)
    return tab


def _grid_table(beta: np.float32) -> np.ndarray:
    base = max(beta, GRID_MIN_BASE)
    return _grid_squares(int(np.array([base], dtype=np.float32).view(np.uint32)[0]))


def _mag2(values: np.ndarray) -> np.ndarray:
    """fp32(fp32(re*re) + fp32(im*im)): two roundings of products, one of the sum, no FMA."""
    v = np.asarray(values)
    if v.dtype != np.complex64:
        v = v.astype(np.complex64)
    re = v.real
    im = v.imag
    with np.errstate(over="ignore", invalid="ignore"):
        m2 = re * re
        m2 += im * im
    return m2


def kept_at(values: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Bool mask ``re*re + im*im > t*t``, all in fp32 (values cast to complex64, t to float32).

    ``t`` may be an array broadcastable against ``values`` (e.g. per-sample ``[B, 1, 1]``).
    NaN values are never kept; with t = inf nothing is kept.
    """
    tt = np.asarray(t, dtype=np.float32)
    with np.errstate(over="ignore"):
        tt = tt * tt
    with np.errstate(invalid="ignore"):
        return _mag2(values) > tt


def select(
    scores: np.ndarray,
    beta: float,
    capacity: int,
    *,
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Threshold at beta, and per sample over capacity the smallest grid threshold that fits.

    scores: complex ``[B, C, F]`` (cast to complex64): the magnitudes tested (docs/format.md says
    which tensor that is for each op). Returns ``keep`` bool ``[B, C, F]``, ``beta_used`` float32
    ``[B]`` (fp32(beta), or the grid value t_i used) and ``overflowed`` bool ``[B]``.

    ``candidates`` (bool ``[B, C, F]``, optional) replaces "kept at beta" as the starting set: SpecPool
    and SpecConcat inherit kept-ness from their input mask (a kept coefficient stays kept even when its
    value is 0), so they pass the inherited mask with beta = 0. Over capacity the result is then
    ``candidates & kept_at(scores, t_i)``.

    The search is vectorized: each candidate's grid level (the largest i it survives) is found once
    with a binary search in the table of fp32 t_i^2, a histogram of levels gives the count kept at
    every t_i, and the smallest i >= 1 whose count is <= capacity wins. Only overflowing samples pay
    for it; the Python loop is over those samples, never over coefficients or grid steps.
    """
    s = np.asarray(scores)
    if s.ndim != 3:
        raise PackedFormatError(f"scores must be [B, C, F], got shape {s.shape}")
    cap = _as_int(capacity, "capacity")
    if cap < 0:
        raise PackedFormatError(f"capacity must be >= 0, got {cap}")
    b32 = _check_beta(beta)
    B = s.shape[0]
    m2 = _mag2(s)
    if candidates is None:
        with np.errstate(over="ignore"):
            bb = np.float32(b32 * b32)
        cand = m2 > bb
    else:
        cand = np.asarray(candidates)
        if cand.shape != s.shape or cand.dtype != np.bool_:
            raise PackedFormatError(
                f"candidates must be bool with the shape of scores {s.shape}, got {cand.dtype} {cand.shape}"
            )
    counts = cand.sum(axis=(1, 2))
    overflowed = counts > cap
    beta_used = np.full(B, b32, dtype=np.float32)
    if not overflowed.any():
        return cand.copy() if candidates is not None else cand, beta_used, overflowed
    keep = cand.copy()
    tt = _grid_table(b32)
    L = tt.shape[0]
    for n in np.flatnonzero(overflowed):
        m2n = m2[n]
        cn = cand[n]
        mc = m2n[cn]
        level = np.searchsorted(tt, mc, side="left")
        level[np.isnan(mc)] = 0  # NaN is never kept (searchsorted would sort it past inf)
        hist = np.bincount(level, minlength=L + 1)
        kept_from = np.cumsum(hist[::-1])[::-1]  # kept_from[i] = count kept at t_i
        # kept_from[L] == 0 (tt[L-1] is inf), so a fitting i >= 1 always exists
        i = int(np.argmax(kept_from[1:] <= cap)) + 1
        keep[n] = cn & (m2n > tt[i - 1])
        beta_used[n] = threshold_grid(b32, i)
    return keep, beta_used, overflowed


# --------------------------------------------------------------------------------------------
# encode / decode


def _per_sample(x: object, B: int, dtype: type, name: str) -> np.ndarray:
    a = np.asarray(x)
    try:
        return np.broadcast_to(a, (B,)).astype(dtype)
    except ValueError:
        raise PackedFormatError(f"{name} must be a scalar or shape [{B}], got shape {a.shape}") from None


def _to_block_major(x: np.ndarray, dtype: type) -> np.ndarray:
    """[B, C, F] -> contiguous [B, NB, C, 128] of dtype ((b, c, f) order), zero past F; one copy."""
    B, C, F = x.shape
    full, tail = divmod(F, BLOCK)
    NB = full + (tail > 0)
    out = np.empty((B, NB, C, BLOCK), dtype=dtype)
    if full:
        # splitting the last axis of a slice is always a view, so this reads x in place
        out[:, :full] = x[:, :, : full * BLOCK].reshape(B, C, full, BLOCK).transpose(0, 2, 1, 3)
    if tail:
        out[:, full, :, :tail] = x[:, :, full * BLOCK :]
        out[:, full, :, tail:] = 0
    return out


def _from_block_major(x: np.ndarray, F: int) -> np.ndarray:
    """[B, NB, C, 128] -> contiguous [B, C, F] (drops positions past F); one copy."""
    B, NB, C, _ = x.shape
    full, tail = divmod(F, BLOCK)
    out = np.empty((B, C, F), dtype=x.dtype)
    if full:
        dst = out[:, :, : full * BLOCK].reshape(B, C, full, BLOCK)  # a view into out (axis split)
        assert dst.size == 0 or np.may_share_memory(dst, out)
        dst[...] = x[:, :full].transpose(0, 2, 1, 3)
    if tail:
        out[:, :, full * BLOCK :] = x[:, full, :, :tail]
    return out


def _slot_mask(counts: np.ndarray, capacity: int) -> np.ndarray:
    """bool [B, capacity]: slot k of sample n holds a value (k < counts[n]).

    Boolean indexing walks arrays in row-major order, so ``vals[_slot_mask(...)]`` and
    ``block_major[kept]`` enumerate the same (sample, (b, c, f)) sequence: no sort, no index math.
    """
    return np.arange(capacity)[None, :] < np.asarray(counts)[:, None]


def encode(
    values: np.ndarray,
    keep: np.ndarray,
    capacity: int,
    value_dtype: str,
    beta_used: np.ndarray | float,
    overflowed: np.ndarray | bool,
    flags: np.ndarray | int = 0,
) -> np.ndarray:
    """Write packed rows int32 ``[B, S]`` from complex ``values [B, C, F]`` and ``keep``.

    ``values`` are cast to complex64 (and, for fp16, each component rounded to binary16 with
    round-to-nearest-even). Only kept values are read. Raises PackedFormatError if a sample keeps
    more than ``capacity`` coefficients: encode never drops values silently; ``select`` is the policy.
    ``beta_used``, ``overflowed`` and ``flags`` (header word 3, ``FLAG_NONFINITE``) may be scalars or ``[B]``.
    """
    v = np.asarray(values)
    k = np.asarray(keep)
    if v.ndim != 3:
        raise PackedFormatError(f"values must be [B, C, F], got shape {v.shape}")
    if k.shape != v.shape:
        raise PackedFormatError(f"keep shape {k.shape} must equal values shape {v.shape}")
    if k.dtype != np.bool_:
        raise PackedFormatError(f"keep must be bool, got {k.dtype}")
    B, C, F = v.shape
    lay = Layout(C, F, capacity, value_dtype)
    bu = _per_sample(beta_used, B, np.float32, "beta_used")
    ov = _per_sample(overflowed, B, np.bool_, "overflowed")
    fl = _per_sample(flags, B, np.uint32, "flags")
    if (fl & ~np.uint32(_FLAGS_DEFINED)).any():
        n = int(np.flatnonzero(fl & ~np.uint32(_FLAGS_DEFINED))[0])
        raise PackedFormatError(f"sample {n}: flags {int(fl[n]):#x} has bits other than FLAG_NONFINITE set")
    bad = ~(np.isfinite(bu) & (bu >= 0))
    if bad.any():
        n = int(np.flatnonzero(bad)[0])
        raise PackedFormatError(f"sample {n}: beta_used must be finite and >= 0, got {bu[n].item()!r}")

    kt = _to_block_major(k, np.bool_)  # [B, NB, C, 128]
    pair_counts = kt.sum(axis=3, dtype=np.int64).reshape(B, lay.n_pairs)
    nnz = pair_counts.sum(axis=1)
    over = nnz > lay.capacity
    if over.any():
        n = int(np.flatnonzero(over)[0])
        raise PackedFormatError(
            f"sample {n}: keep has {int(nnz[n])} coefficients but capacity is {lay.capacity}; "
            f"use select()/pack() to apply the overflow grid"
        )

    out = np.zeros((B, lay.row_words), dtype=np.uint32)
    out[:, 0] = nnz
    out[:, 1] = ov
    out[:, 2] = bu.view(np.uint32)
    out[:, 3] = fl
    # mask: bit j of byte m is coefficient 8m+j of the block; 4 bytes read as a little-endian word
    bits = np.packbits(kt, axis=3, bitorder="little")  # [B, NB, C, 16] uint8
    out[:, lay.mask_start : lay.offsets_start] = bits.reshape(B, lay.n_pairs * 16).view("<u4")
    # offsets: exclusive prefix sum over (b, c) pairs, last entry nnz
    np.cumsum(pair_counts, axis=1, out=out[:, lay.offsets_start + 1 : lay.values_start], dtype=np.uint32)
    # values in (b, c, f) order: block-major copy, then boolean gather into the used slots
    if nnz.any():
        vals = np.zeros((B, lay.capacity), dtype=np.complex64)
        vals[_slot_mask(nnz, lay.capacity)] = _to_block_major(v, np.complex64)[kt]
        if lay.value_dtype == "fp32":
            out[:, lay.values_start :] = vals.view(np.float32).view(np.uint32)
        else:
            with np.errstate(over="ignore"):  # beyond the fp16 range -> inf, as IEEE says
                re = vals.real.astype(np.float16).view(np.uint16).astype(np.uint32)
                im = vals.imag.astype(np.float16).view(np.uint16).astype(np.uint32)
            out[:, lay.values_start :] = re | (im << np.uint32(16))
    return out.view(np.int32)


def pack(
    scores: np.ndarray,
    values: np.ndarray,
    beta: float,
    capacity: int,
    value_dtype: str,
    upstream_overflowed: np.ndarray | bool | None = None,
    *,
    candidates: np.ndarray | None = None,
    upstream_flags: np.ndarray | int | None = None,
) -> np.ndarray:
    """select(scores, ...) then encode(values, ...); ``overflowed |= upstream_overflowed`` (sticky).

    ``scores`` are the magnitudes tested (e.g. SpecConv's pre-activation Y), ``values`` what is stored
    (e.g. tanh of it); they may be the same array. ``candidates``: see ``select``. The NONFINITE flag
    is set for a sample whose scores or values hold a NaN or Inf anywhere (kept or not), and ORed with
    ``upstream_flags`` (the inputs' header word 3, or ``FLAG_NONFINITE`` for a non-finite spatial input).
    """
    s = np.asarray(scores)
    v = np.asarray(values)
    if s.shape != v.shape:
        raise PackedFormatError(f"scores shape {s.shape} must equal values shape {v.shape}")
    keep, beta_used, overflowed = select(s, beta, capacity, candidates=candidates)
    if upstream_overflowed is not None:
        overflowed = overflowed | _per_sample(upstream_overflowed, s.shape[0], np.bool_, "upstream_overflowed")
    flags = np.where(nonfinite_samples(s) | nonfinite_samples(v), np.uint32(FLAG_NONFINITE), np.uint32(0))
    if upstream_flags is not None:
        flags = flags | _per_sample(upstream_flags, s.shape[0], np.uint32, "upstream_flags")
    return encode(v, keep, capacity, value_dtype, beta_used, overflowed, flags)


def nonfinite_samples(a: np.ndarray) -> np.ndarray:
    """bool ``[B]``: sample n of ``a`` (any shape ``[B, ...]``, real or complex) holds a NaN or Inf."""
    a = np.asarray(a)
    if a.size == 0:
        return np.zeros(a.shape[0] if a.ndim else 0, dtype=np.bool_)
    return ~np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1)


@dataclass
class Decoded:
    """A decoded packed tensor. ``values`` are 0 where not kept; kept-ness is ``keep`` (a kept value
    may be 0 after fp16 underflow). ``nnz``/``overflowed``/``beta_used``/``flags`` are the header words."""

    values: np.ndarray  # complex64 [B, C, F]
    keep: np.ndarray  # bool [B, C, F]
    nnz: np.ndarray  # uint32 [B]
    overflowed: np.ndarray  # bool [B]
    beta_used: np.ndarray  # float32 [B]
    flags: np.ndarray | None = None  # uint32 [B], header word 3

    @property
    def nonfinite(self) -> np.ndarray:
        """bool ``[B]``: the NONFINITE flag (a NaN/Inf reached the op that wrote this tensor, or earlier)."""
        if self.flags is None:
            return np.zeros_like(self.overflowed, dtype=np.bool_)
        return (np.asarray(self.flags) & np.uint32(FLAG_NONFINITE)) != 0


def _check_blob(blob: object) -> np.ndarray:
    if not isinstance(blob, np.ndarray):
        raise PackedFormatError(f"packed tensor must be a numpy int32 array [B, S], got {type(blob).__name__}")
    if blob.dtype != np.int32 or blob.ndim != 2:
        raise PackedFormatError(f"packed tensor must be int32 [B, S], got {blob.dtype} with shape {blob.shape}")
    return blob.view(np.uint32)


def _pair_name(lay: Layout, p: int) -> str:
    return f"pair {p} = block {p // lay.C}, channel {p % lay.C}"


def _first(bad: np.ndarray) -> tuple[int, int]:
    """(sample, index) of the first True of a [B, N] mask."""
    n = int(np.flatnonzero(bad.any(axis=1))[0])
    return n, int(np.flatnonzero(bad[n])[0])


def _validate_words(w: np.ndarray, lay: Layout) -> np.ndarray:
    """Check every rule of the format on uint32 rows; returns the per-pair popcounts [B, NB*C]."""
    B = w.shape[0]
    nnz = w[:, 0].astype(np.int64)
    ov = w[:, 1]
    bu = w[:, 2].view(np.float32)
    for name, bad, got, want in (
        ("flags (header word 3)", (w[:, 3] & ~np.uint32(_FLAGS_DEFINED)) != 0, w[:, 3],
         f"only bit 0 (FLAG_NONFINITE) set, i.e. 0 or {FLAG_NONFINITE}"),
        ("overflowed (header word 1)", ov > 1, ov, "0 or 1"),
        ("beta_used (header word 2)", ~(np.isfinite(bu) & (bu >= 0)), bu, "finite and >= 0"),
        ("nnz (header word 0)", nnz > lay.capacity, nnz, f"<= capacity {lay.capacity}"),
    ):
        if bad.any():
            n = int(np.flatnonzero(bad)[0])
            raise PackedFormatError(f"sample {n}: {name} must be {want}, got {got[n].item()!r}")

    mask = w[:, lay.mask_start : lay.offsets_start]
    tail = lay.F - (lay.NB - 1) * BLOCK  # valid coefficients in the last block, 1..128
    if tail < BLOCK:
        valid = np.zeros(BLOCK, dtype=np.bool_)
        valid[:tail] = True
        allowed = np.packbits(valid, bitorder="little").view("<u4").astype(np.uint32)  # [4]
        last = mask[:, (lay.NB - 1) * lay.C * 4 :].reshape(B, lay.C, 4)
        stray = (last & ~allowed) != 0
        if stray.any():
            n = int(np.flatnonzero(stray.any(axis=(1, 2)))[0])
            c, i = (int(x[0]) for x in np.nonzero(stray[n]))
            word = int(last[n, c, i] & ~allowed[i])
            f = (lay.NB - 1) * BLOCK + 32 * i + (word & -word).bit_length() - 1
            raise PackedFormatError(
                f"sample {n}: mask bit set beyond F={lay.F} (channel {c}, coefficient f={f}, "
                f"mask word {lay.mask_start + ((lay.NB - 1) * lay.C + c) * 4 + i}); bits for f >= F must be 0"
            )

    pops = _popcount32(mask).reshape(B, lay.n_pairs, 4).sum(axis=2, dtype=np.int64)
    off = w[:, lay.offsets_start : lay.values_start].astype(np.int64)
    if (off[:, 0] != 0).any():
        n = int(np.flatnonzero(off[:, 0] != 0)[0])
        raise PackedFormatError(f"sample {n}: offsets[0] (word {lay.offsets_start}) must be 0, got {off[n, 0]}")
    d = np.diff(off, axis=1)
    if (d < 0).any():
        n, p = _first(d < 0)
        raise PackedFormatError(
            f"sample {n}: offsets not monotone: offsets[{p}]={off[n, p]} > offsets[{p + 1}]={off[n, p + 1]} "
            f"(word {lay.offsets_start + p + 1})"
        )
    if (d != pops).any():
        n, p = _first(d != pops)
        raise PackedFormatError(
            f"sample {n}: offsets[{p + 1}]-offsets[{p}] = {d[n, p]} but the mask popcount of "
            f"{_pair_name(lay, p)} is {pops[n, p]}"
        )
    total = pops.sum(axis=1)
    if (nnz != total).any():
        n = int(np.flatnonzero(nnz != total)[0])
        raise PackedFormatError(
            f"sample {n}: nnz (header word 0) = {nnz[n]} but the mask has {total[n]} bits set "
            f"(offsets[last] = {off[n, -1]})"
        )
    vw = lay.value_words
    vals = w[:, lay.values_start :]
    if vals.shape[1]:
        unused = (np.arange(vals.shape[1])[None, :] >= (nnz * vw)[:, None]) & (vals != 0)
        if unused.any():
            n, k = _first(unused)
            raise PackedFormatError(
                f"sample {n}: unused value slot {k // vw} (word {lay.values_start + k}, nnz={nnz[n]}) "
                f"must be 0, got 0x{int(vals[n, k]):08x}"
            )
    return pops


def validate(blob: np.ndarray, C: int, F: int, value_dtype: str) -> Layout:
    """Check a packed tensor against every rule of the format; return its Layout (capacity derived
    from S). Raises PackedFormatError naming the sample, the field and expected vs found."""
    w = _check_blob(blob)
    lay = Layout.from_row_words(C, F, w.shape[1], value_dtype)
    _validate_words(w, lay)
    return lay


def decode(blob: np.ndarray, C: int, F: int, value_dtype: str, validate: bool = True) -> Decoded:
    """Unpack int32 ``[B, S]`` rows into dense complex64 ``[B, C, F]`` values and the keep mask.

    With ``validate=True`` (default) every rule is checked first (see ``validate``). With
    ``validate=False`` only the row size is checked and the mask is trusted: offsets and nnz are not
    read for values (the slot of a kept coefficient is its rank in the mask), bits past F are
    ignored, and a mask with more bits than capacity still raises (it could not be read safely).
    """
    w = _check_blob(blob)
    lay = Layout.from_row_words(C, F, w.shape[1], value_dtype)
    B = w.shape[0]
    if validate:
        _validate_words(w, lay)
    mask = np.ascontiguousarray(w[:, lay.mask_start : lay.offsets_start]).astype("<u4", copy=False)
    bits = np.unpackbits(mask.view(np.uint8), axis=1, bitorder="little").view(np.bool_)  # [B, NB*C*128]
    counts = bits.sum(axis=1, dtype=np.int64)
    if (counts > lay.capacity).any():
        n = int(np.flatnonzero(counts > lay.capacity)[0])
        raise PackedFormatError(f"sample {n}: mask has {counts[n]} bits set but capacity is {lay.capacity}")

    vw = lay.value_words
    vwords = np.ascontiguousarray(w[:, lay.values_start :])
    if vw == 2:
        stored = vwords.view(np.float32).view(np.complex64)  # [B, capacity]
    else:
        stored = np.empty((B, lay.capacity), dtype=np.complex64)
        stored.real = (vwords & np.uint32(0xFFFF)).astype(np.uint16).view(np.float16)
        stored.imag = (vwords >> np.uint32(16)).astype(np.uint16).view(np.float16)

    dense = np.zeros((B, lay.NB * lay.C * BLOCK), dtype=np.complex64)  # block-major
    dense[bits] = stored[_slot_mask(counts, lay.capacity)]
    shape = (B, lay.NB, lay.C, BLOCK)
    return Decoded(
        values=_from_block_major(dense.reshape(shape), lay.F),
        keep=_from_block_major(bits.reshape(shape), lay.F),
        nnz=w[:, 0].copy(),
        overflowed=w[:, 1] != 0,
        beta_used=w[:, 2].view(np.float32).copy(),
        flags=w[:, 3].copy(),
    )


def get(row: np.ndarray, layout: Layout, c: int, f: int) -> complex:
    """Value of coefficient (c, f) of one packed row (int32 ``[S]``) in O(1); 0 if not kept.

    Slot = ``offsets[b*C + c]`` + popcounts of the block's earlier mask words +
    ``popcount(word & ((1 << j) - 1))`` with b = f // 128, i = (f % 128) // 32, j = f % 32: what a
    kernel does to read one coefficient without decoding the row.
    """
    c = _as_int(c, "c")
    f = _as_int(f, "f")
    if not 0 <= c < layout.C or not 0 <= f < layout.F:
        raise IndexError(f"(c, f) = ({c}, {f}) out of range for C={layout.C}, F={layout.F}")
    r = np.asarray(row)
    if r.ndim != 1 or r.shape[0] != layout.row_words:
        raise PackedFormatError(f"row must be 1-D with {layout.row_words} words, got shape {r.shape}")
    r = r.view(np.uint32) if r.dtype.itemsize == 4 else r.astype(np.uint32)
    b, rem = divmod(f, BLOCK)
    i, j = divmod(rem, 32)
    p = b * layout.C + c
    base = layout.mask_start + p * _WORDS_PER_BLOCK
    word = int(r[base + i])
    if not (word >> j) & 1:
        return 0j
    slot = int(r[layout.offsets_start + p])
    for k in range(i):
        slot += int(r[base + k]).bit_count()
    slot += (word & ((1 << j) - 1)).bit_count()
    if slot >= layout.capacity:
        raise PackedFormatError(f"(c={c}, f={f}) maps to value slot {slot} >= capacity {layout.capacity}")
    if layout.value_dtype == "fp32":
        pair = r[layout.values_start + 2 * slot : layout.values_start + 2 * slot + 2].view(np.float32)
        return complex(float(pair[0]), float(pair[1]))
    vw = int(r[layout.values_start + slot])
    halves = np.array([vw & 0xFFFF, vw >> 16], dtype=np.uint16).view(np.float16)
    return complex(float(halves[0]), float(halves[1]))
