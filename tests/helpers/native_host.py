"""Random packed rows, op cases and comparison rules of the native op library vs the numpy reference.

Shared by tests/test_native_host.py (host library, CI) and tests/test_native_gpu.py (CUDA library,
marked ``gpu``): same grid, same rules (stated in test_native_host.py's docstring).
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from specdeploy import packed as P


def make_packed(rng, B, C, Hs, Ws, value_dtype, *, density=0.4, capacity=None, overflowed=None, specials=True):
    """Random valid packed rows (non-Hermitian spectra), with kept zeros and fp16 edge values."""
    F = P.num_coeffs(Hs, Ws)
    v = (rng.standard_normal((B, C, F)) + 1j * rng.standard_normal((B, C, F))).astype(np.complex64)
    keep = rng.random((B, C, F)) < density
    if specials:
        u = rng.random((B, C, F))
        v[u < 0.03] = 0  # kept zeros (where kept)
        v[(u >= 0.03) & (u < 0.05)] *= np.float32(1e-9)  # fp16 underflow: kept, stored as 0
    nnz = keep.reshape(B, -1).sum(axis=1)
    cap = int(max(1, nnz.max())) if capacity is None else capacity
    ov = rng.random(B) < 0.3 if overflowed is None else overflowed
    return P.encode(v, keep, cap, value_dtype, 0.0, ov)


def y64_conv(x, w, b, *, in_domain, C, Hs, Ws, value_dtype):
    """The float64 pre-threshold spectrum Y [B, O, F] as the reference computes it."""
    if in_domain == "spatial":
        X = np.fft.rfft2(np.asarray(x, dtype=np.float64), s=(Hs, Ws), norm="ortho")
    else:
        d = P.decode(x, C, P.num_coeffs(Hs, Ws), value_dtype)
        X = d.values.astype(np.complex128).reshape(-1, C, Hs, Ws // 2 + 1)
    K = np.fft.rfft2(np.asarray(w, dtype=np.float64), s=(Hs, Ws))
    Y = np.einsum("bcpq,ocpq->bopq", X, K)
    if b is not None:
        Y[:, :, 0, 0] += np.asarray(b, dtype=np.float64) * math.sqrt(Hs * Ws)
    return Y.reshape(Y.shape[0], Y.shape[1], -1)


def _seed(*parts) -> int:
    """A seed that is the same in every process (hash() of str is randomized)."""
    return zlib.crc32(repr(parts).encode())


def _f16_close(a: np.ndarray, b: np.ndarray, extra: np.ndarray | float = 0.0) -> np.ndarray:
    """Elementwise: a and b (float32 values of fp16 numbers) differ by at most 1 fp16 ulp (+ extra)."""
    a16 = a.astype(np.float16)
    b16 = b.astype(np.float16)
    big = np.maximum(np.abs(a16), np.abs(b16))
    with np.errstate(invalid="ignore", over="ignore"):
        ulp = np.spacing(big).astype(np.float32)
        ok = np.abs(a - b) <= ulp * 1.0001 + extra
    return ok | (a16 == b16) | (np.isnan(a) & np.isnan(b))


def compare_packed(got, ref, *, C, F, value_dtype, scores64=None, rtol_thr=1e-5, rtol_val=1e-5, what=""):
    """Compare packed rows by the rules of the module docstring; the rows of `got` must also pass
    packed.validate (every format rule)."""
    assert got.dtype == np.int32 and got.shape == ref.shape, f"{what}: {got.dtype} {got.shape} vs {ref.shape}"
    dg = P.decode(got, C, F, value_dtype)  # validates every rule of the format
    dr = P.decode(ref, C, F, value_dtype)
    hg, hr = got[:, :4].view(np.uint32), ref[:, :4].view(np.uint32)
    if not np.array_equal(hg, hr):
        n = int(np.flatnonzero((hg != hr).any(axis=1))[0])
        pytest.fail(
            f"{what}: header of sample {n} differs: got nnz={hg[n, 0]} overflowed={hg[n, 1]} "
            f"beta_used={dg.beta_used[n]!r}, reference nnz={hr[n, 0]} overflowed={hr[n, 1]} beta_used={dr.beta_used[n]!r}"
        )
    diff = dg.keep != dr.keep
    if diff.any():
        assert scores64 is not None, f"{what}: {int(diff.sum())} mask bits differ"
        t = dr.beta_used.astype(np.float64)[:, None, None]
        m = np.abs(scores64) ** 2
        near = np.abs(m - t * t) <= rtol_thr * t * t
        bad = diff & ~near
        if bad.any():
            n, c, f = (int(i[0]) for i in np.nonzero(bad))
            pytest.fail(
                f"{what}: mask differs at sample {n}, channel {c}, f {f} (got {dg.keep[n, c, f]}), |Y|^2 = {m[n, c, f]!r} "
                f"is not within {rtol_thr} of t^2 = {float(t[n, 0, 0]) ** 2!r}"
            )
    both = dg.keep & dr.keep
    a, b = dg.values[both], dr.values[both]
    scale = float(np.sqrt(np.mean(np.abs(dr.values[dr.keep]) ** 2))) if dr.keep.any() else 1.0
    scale = scale if scale > 0 else 1.0
    if value_dtype == "fp32":
        err = np.abs(a - b) / (np.abs(b) + scale)
        assert err.size == 0 or err.max() <= rtol_val, f"{what}: value error {err.max():.3g} > {rtol_val}"
    else:
        # 1 fp16 ulp of each component, plus the fp32 tolerance of the complex value (a component much
        # smaller than its value carries the fp32 error of the whole value)
        tol = rtol_val * (np.abs(b) + scale)
        ok = (_f16_close(a.real, b.real, tol) & _f16_close(a.imag, b.imag, tol))
        assert ok.all(), f"{what}: {int((~ok).sum())} fp16 values differ by more than 1 ulp, e.g. {a[~ok][:3]} vs {b[~ok][:3]}"
    return dg, dr


def assert_same_packed(got, ref, *, C, F, value_dtype, what=""):
    """Bit-identical header, mask and offsets; values equal as numbers (the reference scales by a
    complex multiply, which can turn -0 into +0; the kernels multiply each component)."""
    dg, dr = compare_packed(got, ref, C=C, F=F, value_dtype=value_dtype, what=what)
    vs = P.Layout.from_row_words(C, F, ref.shape[1], value_dtype).values_start
    assert np.array_equal(got[:, :vs], ref[:, :vs]), f"{what}: header/mask/offsets differ"
    assert np.array_equal(dg.values, dr.values), f"{what}: values differ"


# ------------------------------------------------------------------------------------------------
# op cases: (B, C, O, H_or_Hs, W_or_Ws, k)

CONV_SPATIAL = [
    (2, 1, 3, 5, 4, 3),  # Hs=7 (odd), Ws=6 (even), F=28 < 128
    (2, 3, 5, 14, 15, 3),  # Hs=16, Ws=17, F=144 > 128
    (1, 2, 9, 20, 20, 5),  # Hs=Ws=24, F=312 (3 blocks), O=9 > 8 channels per tile
    (2, 2, 2, 8, 9, 1),  # k = 1
    (1, 1, 1, 1, 1, 2),  # tiny: Hs=Ws=2
]
CONV_SPECTRAL = [
    (2, 4, 3, 9, 8, 3),  # F=45
    (2, 3, 10, 16, 16, 5),  # F=144, two channel groups
    (1, 2, 2, 33, 31, 2),  # F=528
    (2, 1, 1, 3, 3, 3),  # k = Hs = Ws
]
# (beta, activation, has_bias, capacity rule): "full" = O*F, "tight" = ~35% of kept at beta, 1
CONV_SETTINGS = [
    (0.0, "none", True, "full"),
    (0.5, "tanh", False, "tight"),
    (1.0, "tanh", True, "full"),
    (0.7, "none", True, 1),
]


def _capacity(rule, total, nnz_at_beta):
    if rule == "full":
        return total
    if rule == "tight":
        return max(1, int(0.35 * max(1, nnz_at_beta)))
    return int(rule)


def conv_case(rng, case, in_domain, setting, value_dtype, x_dtype=np.float32):
    B, C, O, A1, A2, k = case
    beta, activation, has_bias, rule = setting
    if in_domain == "spatial":
        H, W = A1, A2
        Hs, Ws = H + k - 1, W + k - 1
        x = rng.standard_normal((B, C, H, W)).astype(x_dtype)
    else:
        Hs, Ws = A1, A2
        x = make_packed(rng, B, C, Hs, Ws, value_dtype, density=0.6)
    F = P.num_coeffs(Hs, Ws)
    w = (rng.standard_normal((O, C, k, k)) / math.sqrt(C * k * k)).astype(np.float32)
    b = rng.standard_normal(O).astype(np.float32) * 0.3 if has_bias else None
    Y = y64_conv(x, w, b, in_domain=in_domain, C=C, Hs=Hs, Ws=Ws, value_dtype=value_dtype)
    nnz = int((np.abs(Y) > beta).reshape(B, -1).sum(axis=1).max())
    attrs = dict(
        in_domain=in_domain, C=C, Hs=Hs, Ws=Ws, k=k, beta=beta, activation=activation,
        capacity=_capacity(rule, O * F, nnz), value_dtype=value_dtype,
    )
    return x, w, b, attrs, Y, O, F


POOL_CASES = [  # (B, C, Hs, Ws, out_Hs, out_Ws)
    (2, 3, 16, 16, 8, 8),
    (2, 2, 15, 17, 8, 9),
    (1, 2, 9, 8, 9, 8),  # identity size
    (2, 4, 33, 20, 17, 10),  # F_in=363, F_out=102
    (1, 1, 5, 5, 1, 1),
    (2, 2, 12, 13, 5, 4),
    (1, 2, 40, 40, 20, 20),  # F_out=220 > 128
]
TO_SPATIAL_CASES = [  # (B, C, Hs, Ws)
    (2, 2, 7, 6),
    (1, 3, 16, 17),
    (2, 1, 1, 1),
    (1, 2, 1, 8),
    (1, 1, 9, 2),
    (2, 2, 24, 24),
    (1, 1, 33, 31),
]
CONCAT_CASES = [  # (B, [C_i], Hs, Ws)
    (2, [2], 8, 8),
    (2, [1, 3], 9, 7),
    (1, [2, 1, 2, 3], 16, 16),
    (2, [3, 2], 17, 20),
]
