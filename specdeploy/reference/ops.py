"""Reference implementations of the specdeploy op set in numpy: the ground truth for every runtime.

Straight from DESIGN.md §2 and docs/ops.md, with no cleverness: decode the packed inputs to dense
spectra, compute in float64, round the pre-threshold spectrum to fp32 (what every runtime
thresholds), then select (threshold + overflow policy) and encode with ``specdeploy.packed``.
Dense buffers are fine here; the memory-lean streaming belongs to the kernels.

Never imports torch: this runs on a Jetson.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from specdeploy import packed
from specdeploy.opset import (
    check_concat,
    check_conv,
    check_pool,
    check_to_spatial,
)


def _decode(x: np.ndarray, C: int, Hs: int, Ws: int, value_dtype: str, what: str) -> packed.Decoded:
    F = packed.num_coeffs(Hs, Ws)
    try:
        return packed.decode(np.asarray(x), C, F, value_dtype)
    except packed.PackedFormatError as e:
        raise packed.PackedFormatError(f"{what}: {e}") from None


def _activate(y: np.ndarray, activation: str) -> np.ndarray:
    if activation == "tanh":
        return (np.tanh(y.real) + 1j * np.tanh(y.imag)).astype(np.complex64)
    return y.astype(np.complex64)


def spatial_spectrum(x: np.ndarray, Hs: int, Ws: int) -> np.ndarray:
    """Orthonormal half spectrum of a real [B, C, H, W] map zero-padded to (Hs, Ws): [B, C, Hs, Wh]."""
    return np.fft.rfft2(np.asarray(x, dtype=np.float64), s=(Hs, Ws), norm="ortho")


def kernel_spectrum(w: np.ndarray, Hs: int, Ws: int) -> np.ndarray:
    """Plain DFT of [O, C, k, k] kernels zero-padded to (Hs, Ws): [O, C, Hs, Wh]."""
    return np.fft.rfft2(np.asarray(w, dtype=np.float64), s=(Hs, Ws))


def spec_conv(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    *,
    in_domain: str,
    C: int,
    Hs: int,
    Ws: int,
    k: int,
    beta: float,
    activation: str,
    capacity: int,
    value_dtype: str,
) -> np.ndarray:
    """SpecConv: packed [B, S_out] from a spatial [B, C, H, W] or packed [B, S_in] input."""
    w = np.asarray(w, dtype=np.float32)
    O = check_conv(
        x_shape=np.shape(x), w_shape=w.shape, b_shape=None if b is None else np.shape(b), in_domain=in_domain,
        C=C, Hs=Hs, Ws=Ws, k=k, beta=beta, activation=activation, capacity=capacity, value_dtype=value_dtype,
    )
    upstream = None
    if in_domain == "spatial":
        X = spatial_spectrum(x, Hs, Ws)
    else:
        dec = _decode(x, C, Hs, Ws, value_dtype, "SpecConv input X")
        X = dec.values.astype(np.complex128).reshape(-1, C, Hs, Ws // 2 + 1)
        upstream = dec.overflowed
    K = kernel_spectrum(w, Hs, Ws)
    Y = np.einsum("bcpq,ocpq->bopq", X, K)
    if b is not None:
        Y[:, :, 0, 0] += np.asarray(b, dtype=np.float64) * math.sqrt(Hs * Ws)
    Y = Y.astype(np.complex64).reshape(Y.shape[0], O, -1)
    return packed.pack(Y, _activate(Y, activation), beta, capacity, value_dtype, upstream_overflowed=upstream)


def spec_pool(
    x: np.ndarray, *, C: int, Hs: int, Ws: int, out_Hs: int, out_Ws: int, capacity: int, value_dtype: str
) -> np.ndarray:
    """SpecPool: crop to the lowest frequencies and rescale; kept-ness is inherited."""
    check_pool(C=C, Hs=Hs, Ws=Ws, out_Hs=out_Hs, out_Ws=out_Ws, capacity=capacity, value_dtype=value_dtype)
    dec = _decode(x, C, Hs, Ws, value_dtype, "SpecPool input")
    B = dec.values.shape[0]
    lo, hi = (out_Hs + 1) // 2, out_Hs // 2
    rows = list(range(lo)) + list(range(Hs - hi, Hs))
    cols = out_Ws // 2 + 1
    scale = np.float32(math.sqrt(out_Hs * out_Ws / (Hs * Ws)))
    vals = dec.values.reshape(B, C, Hs, -1)[:, :, rows, :cols] * scale
    keep = dec.keep.reshape(B, C, Hs, -1)[:, :, rows, :cols]
    vals = vals.reshape(B, C, -1).astype(np.complex64)
    keep = keep.reshape(B, C, -1)
    return _inherit(vals, keep, capacity, value_dtype, dec.overflowed)


def spec_to_spatial(x: np.ndarray, *, C: int, Hs: int, Ws: int, value_dtype: str) -> np.ndarray:
    """SpecToSpatial: float32 [B, C, Hs, Ws] = irfft2(Z, s=(Hs, Ws), norm="ortho")."""
    check_to_spatial(C=C, Hs=Hs, Ws=Ws, value_dtype=value_dtype)
    dec = _decode(x, C, Hs, Ws, value_dtype, "SpecToSpatial input")
    Z = dec.values.astype(np.complex128).reshape(-1, C, Hs, Ws // 2 + 1)
    return np.fft.irfft2(Z, s=(Hs, Ws), norm="ortho").astype(np.float32)


def spec_concat(
    xs: Sequence[np.ndarray], *, C: Sequence[int], Hs: int, Ws: int, capacity: int, value_dtype: str
) -> np.ndarray:
    """SpecConcat: channels of the inputs in input order; kept-ness and overflow flags inherited."""
    check_concat(n_inputs=len(xs), C=C, Hs=Hs, Ws=Ws, capacity=capacity, value_dtype=value_dtype)
    decs = [_decode(x, c, Hs, Ws, value_dtype, f"SpecConcat input {i}") for i, (x, c) in enumerate(zip(xs, C))]
    batches = {d.values.shape[0] for d in decs}
    if len(batches) != 1:
        raise ValueError(f"SpecConcat: inputs have different batch sizes {sorted(batches)}")
    vals = np.concatenate([d.values for d in decs], axis=1)
    keep = np.concatenate([d.keep for d in decs], axis=1)
    upstream = np.logical_or.reduce([d.overflowed for d in decs])
    return _inherit(vals, keep, capacity, value_dtype, upstream)


def _inherit(
    vals: np.ndarray, keep: np.ndarray, capacity: int, value_dtype: str, upstream: np.ndarray
) -> np.ndarray:
    """Re-pack inherited coefficients: the input mask is the candidate set (beta 0); over capacity
    the grid (base 2^-10, i >= 1) drops the smallest (docs/format.md)."""
    return packed.pack(vals, vals, 0.0, capacity, value_dtype, upstream_overflowed=upstream, candidates=keep)
