"""Tests of the packed format (specdeploy.packed) against DESIGN.md §4 and docs/format.md.

Round trips alone cannot catch a layout bug made symmetrically in encode and decode, so the bytes
are also compared with a word-by-word reference written straight from the contract, and with a
hand-computed example.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from specdeploy import packed as P

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

F_VALUES = [1, 2, 31, 32, 33, 100, 127, 128, 129, 200, 255, 256, 257, 300, 384, 400]


# ----------------------------------------------------------------------------------------------
# helpers


def _rand_values(rng: np.random.Generator, shape: tuple[int, ...], special: bool) -> np.ndarray:
    """Random complex64, optionally with exact zeros, fp16 overflow/underflow and negative zeros."""
    v = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    if special:
        u = rng.random(shape)
        v[u < 0.05] = 0
        v[(u >= 0.05) & (u < 0.1)] *= np.float32(1e6)  # beyond fp16 range -> inf
        v[(u >= 0.1) & (u < 0.15)] *= np.float32(1e-9)  # fp16 underflow -> kept zero
        v.real[(u >= 0.15) & (u < 0.2)] = -0.0
    return v


def _expected_stored(values: np.ndarray, value_dtype: str) -> np.ndarray:
    v = values.astype(np.complex64)
    if value_dtype == "fp32":
        return v
    out = np.empty_like(v)
    with np.errstate(over="ignore"):
        out.real = v.real.astype(np.float16).astype(np.float32)
        out.imag = v.imag.astype(np.float16).astype(np.float32)
    return out


def _bits(x: np.ndarray) -> np.ndarray:
    """complex64 -> uint32 bits of (re, im), so -0.0, NaN and inf compare exactly."""
    return np.ascontiguousarray(x, dtype=np.complex64).view(np.uint32)


def _reference_row(values, keep, C, F, capacity, value_dtype, beta_used, overflowed) -> np.ndarray:
    """One row written word by word from DESIGN.md §4 with Python loops (slow, obviously right)."""
    NB = (F + 127) // 128
    vw = 2 if value_dtype == "fp32" else 1
    words = [0] * (4 + 4 * NB * C + NB * C + 1 + capacity * vw)
    vals: list[complex] = []
    off = [0]
    for b in range(NB):
        for c in range(C):
            n = 0
            for i in range(4):
                w = 0
                for j in range(32):
                    f = 128 * b + 32 * i + j
                    if f < F and keep[c, f]:
                        w |= 1 << j
                        vals.append(values[c, f])
                        n += 1
                words[4 + (b * C + c) * 4 + i] = w
            off.append(off[-1] + n)
    words[0] = len(vals)
    words[1] = int(overflowed)
    words[2] = int(np.array([beta_used], dtype=np.float32).view(np.uint32)[0])
    o0 = 4 + 4 * NB * C
    words[o0 : o0 + NB * C + 1] = off
    v0 = o0 + NB * C + 1
    for k, z in enumerate(vals):
        z = np.complex64(z)
        if value_dtype == "fp32":
            words[v0 + 2 * k] = int(np.float32(z.real).view(np.uint32))
            words[v0 + 2 * k + 1] = int(np.float32(z.imag).view(np.uint32))
        else:
            with np.errstate(over="ignore"):
                lo = int(np.float16(z.real).view(np.uint16))
                hi = int(np.float16(z.imag).view(np.uint16))
            words[v0 + k] = lo | (hi << 16)
    return np.array(words, dtype=np.uint32).view(np.int32)


@st.composite
def packed_case(draw, max_B: int = 3, max_C: int = 5):
    """(values, keep, capacity, value_dtype, beta_used, overflowed) for a valid encode call."""
    B = draw(st.integers(1, max_B))
    C = draw(st.integers(1, max_C))
    F = draw(st.sampled_from(F_VALUES))
    dt = draw(st.sampled_from(P.VALUE_DTYPES))
    density = draw(st.sampled_from([0.0, 0.01, 0.1, 0.5, 0.9, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = _rand_values(rng, (B, C, F), special=draw(st.booleans()))
    keep = rng.random((B, C, F)) < density
    nnz_max = int(keep.reshape(B, -1).sum(axis=1).max())
    capacity = draw(st.integers(nnz_max, C * F))
    beta_used = rng.random(B).astype(np.float32) * 3
    overflowed = rng.random(B) < 0.5
    return values, keep, capacity, dt, beta_used, overflowed


# ----------------------------------------------------------------------------------------------
# layout


def test_layout_numbers_hand_computed():
    # C=3, F=300 -> NB=3, 9 (b, c) pairs: mask 36 words at 4, offsets 10 words at 40, values at 50
    lay = P.Layout(3, 300, 100, "fp32")
    assert (lay.NB, lay.value_words, lay.mask_start, lay.offsets_start, lay.values_start) == (3, 2, 4, 40, 50)
    assert lay.row_words == 250 == P.row_words(3, 300, 100, "fp32")
    assert P.row_words(3, 300, 100, "fp16") == 150
    assert P.Layout(1, 128, 0, "fp16").NB == 1 and P.Layout(1, 129, 0, "fp16").NB == 2
    assert P.row_words(1, 128, 0, "fp16") == 4 + 4 + 2
    assert P.row_words(2, 256, 512, "fp32") == 4 + 16 + 5 + 1024
    assert P.num_coeffs(28, 28) == 28 * 15 and P.num_coeffs(5, 1) == 5 and P.num_coeffs(3, 7) == 12


def test_layout_rejects_bad_arguments():
    with pytest.raises(P.PackedFormatError, match="capacity"):
        P.Layout(2, 10, 21, "fp32")
    with pytest.raises(P.PackedFormatError, match="capacity"):
        P.Layout(2, 10, -1, "fp32")
    with pytest.raises(P.PackedFormatError, match="value_dtype"):
        P.Layout(2, 10, 1, "bf16")
    with pytest.raises(P.PackedFormatError, match="C must be >= 1"):
        P.Layout(0, 10, 0, "fp16")
    with pytest.raises(P.PackedFormatError, match="F must be >= 1"):
        P.Layout(1, 0, 0, "fp16")
    with pytest.raises(P.PackedFormatError, match="integer"):
        P.Layout(1, 10.0, 0, "fp16")  # type: ignore[arg-type]


@SETTINGS
@given(C=st.integers(1, 600), F=st.integers(1, 3000), frac=st.floats(0, 1), dt=st.sampled_from(P.VALUE_DTYPES))
def test_from_row_words_inverts_row_words(C, F, frac, dt):
    cap = int(frac * C * F)
    S = P.row_words(C, F, cap, dt)
    lay = P.Layout.from_row_words(C, F, S, dt)
    assert lay == P.Layout(C, F, cap, dt)
    assert lay.row_words == S
    assert S == 4 + 5 * lay.NB * C + 1 + cap * lay.value_words
    assert lay.NB == -(-F // 128)


def test_from_row_words_rejects_inconsistent_sizes():
    lay = P.Layout(3, 300, 10, "fp32")
    with pytest.raises(P.PackedFormatError, match=r"S=69 .*not a whole number of fp32 values"):
        P.Layout.from_row_words(3, 300, lay.row_words - 1, "fp32")
    with pytest.raises(P.PackedFormatError, match=r"S=49 .*header\+mask\+offsets take 50 words"):
        P.Layout.from_row_words(3, 300, 49, "fp16")
    with pytest.raises(P.PackedFormatError, match=r"capacity 901 > C\*F = 900"):
        P.Layout.from_row_words(3, 300, 50 + 901, "fp16")
    assert P.Layout.from_row_words(3, 300, 50, "fp32").capacity == 0
    assert P.Layout.from_row_words(3, 300, 51, "fp16").capacity == 1


# ----------------------------------------------------------------------------------------------
# encode / decode


def test_hand_computed_blob():
    # C=2, F=130 (NB=2): keep (c=0,f=0), (c=0,f=129), (c=1,f=33), (c=1,f=128)
    C, F = 2, 130
    values = np.zeros((1, C, F), np.complex64)
    keep = np.zeros((1, C, F), bool)
    for c, f, z in [(0, 0, 1 + 2j), (0, 129, 3 - 1j), (1, 33, -0.5 + 0j), (1, 128, 0.25 + 4j)]:
        values[0, c, f] = z
        keep[0, c, f] = True
    values[0, 1, 5] = 99  # not kept: must not appear
    blob = P.encode(values, keep, 5, "fp32", np.float32(0.75), True)
    w = blob[0].view(np.uint32)
    assert blob.dtype == np.int32 and blob.shape == (1, 4 + 16 + 5 + 10)
    assert list(w[:4]) == [4, 1, int(np.float32(0.75).view(np.uint32)), 0]
    # (b, c) order: (0,0) (0,1) (1,0) (1,1); 4 words each
    assert list(w[4:8]) == [1, 0, 0, 0]
    assert list(w[8:12]) == [0, 1 << 1, 0, 0]  # f=33 -> word 1, bit 1
    assert list(w[12:16]) == [1 << 1, 0, 0, 0]  # f=129 -> block 1, bit 1
    assert list(w[16:20]) == [1, 0, 0, 0]  # f=128
    assert list(w[20:25]) == [0, 1, 2, 3, 4]
    got = w[25:33].view(np.float32).tolist()
    assert got == [1, 2, -0.5, 0, 3, -1, 0.25, 4]
    assert list(w[33:35]) == [0, 0]
    # fp16: re in the low half
    b16 = P.encode(values, keep, 5, "fp16", 0.75, False)[0].view(np.uint32)
    assert b16[25] == int(np.float16(1).view(np.uint16)) | (int(np.float16(2).view(np.uint16)) << 16)
    assert b16[1] == 0


@SETTINGS
@given(case=packed_case())
def test_encode_matches_word_by_word_reference(case):
    values, keep, capacity, dt, beta_used, overflowed = case
    B, C, F = values.shape
    blob = P.encode(values, keep, capacity, dt, beta_used, overflowed)
    for n in range(B):
        ref = _reference_row(values[n], keep[n], C, F, capacity, dt, beta_used[n], overflowed[n])
        assert np.array_equal(blob[n], ref), f"sample {n} differs from the contract reference"


@SETTINGS
@given(case=packed_case(max_B=4, max_C=6))
def test_round_trip(case):
    values, keep, capacity, dt, beta_used, overflowed = case
    B, C, F = values.shape
    blob = P.encode(values, keep, capacity, dt, beta_used, overflowed)
    assert blob.dtype == np.int32 and blob.shape == (B, P.row_words(C, F, capacity, dt))
    assert P.validate(blob, C, F, dt) == P.Layout(C, F, capacity, dt)
    d = P.decode(blob, C, F, dt)
    assert d.values.dtype == np.complex64 and d.values.shape == (B, C, F)
    assert d.keep.dtype == np.bool_ and np.array_equal(d.keep, keep)
    assert d.nnz.dtype == np.uint32 and np.array_equal(d.nnz, keep.reshape(B, -1).sum(axis=1))
    assert np.array_equal(d.overflowed, overflowed)
    assert d.beta_used.dtype == np.float32 and np.array_equal(d.beta_used, beta_used)
    expected = np.where(keep, _expected_stored(values, dt), np.complex64(0))
    assert np.array_equal(_bits(d.values), _bits(expected))
    # decoding without validation reads the same thing from a valid blob
    d2 = P.decode(blob, C, F, dt, validate=False)
    assert np.array_equal(_bits(d2.values), _bits(d.values)) and np.array_equal(d2.keep, d.keep)
    # re-encoding the decoded tensor reproduces the bytes (fp16 values are fixed points of rounding)
    again = P.encode(d.values, d.keep, capacity, dt, d.beta_used, d.overflowed)
    assert np.array_equal(again, blob)


def test_encode_refuses_over_capacity_and_bad_header_fields():
    values = np.ones((3, 2, 10), np.complex64)
    keep = np.zeros((3, 2, 10), bool)
    keep[2, :, :4] = True  # 8 kept in sample 2
    with pytest.raises(P.PackedFormatError, match=r"sample 2: keep has 8 coefficients but capacity is 7"):
        P.encode(values, keep, 7, "fp16", 0.0, False)
    with pytest.raises(P.PackedFormatError, match=r"sample 1: beta_used"):
        P.encode(values, keep, 8, "fp16", np.array([0, np.nan, 0], np.float32), False)
    with pytest.raises(P.PackedFormatError, match=r"keep shape"):
        P.encode(values, keep[:, :, :5], 8, "fp16", 0.0, False)
    with pytest.raises(P.PackedFormatError, match=r"beta_used must be a scalar or shape \[3\]"):
        P.encode(values, keep, 8, "fp16", np.zeros(2, np.float32), False)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=packed_case(max_B=2, max_C=4))
def test_get_random_access_matches_decode(case):
    values, keep, capacity, dt, beta_used, overflowed = case
    B, C, F = values.shape
    blob = P.encode(values, keep, capacity, dt, beta_used, overflowed)
    lay = P.validate(blob, C, F, dt)
    d = P.decode(blob, C, F, dt)
    for n in range(B):
        for c in range(C):
            for f in range(F):
                z = P.get(blob[n], lay, c, f)
                assert isinstance(z, complex)
                assert _bits(np.complex64(z)).tolist() == _bits(d.values[n, c, f]).tolist(), (n, c, f)
    with pytest.raises(IndexError):
        P.get(blob[0], lay, C, 0)
    with pytest.raises(IndexError):
        P.get(blob[0], lay, 0, F)


# ----------------------------------------------------------------------------------------------
# threshold grid and selection


def test_grid_constants_and_hand_values():
    assert np.array_equal(P.GRID_R, np.array([2.0 ** (j / 8) for j in range(8)], np.float32))
    assert P.threshold_grid(0.0, 0) == np.float32(2.0**-10)
    assert P.threshold_grid(0.0, 8) == np.float32(2.0**-9)
    assert P.threshold_grid(0.5, 8) == 1.0 and P.threshold_grid(0.5, 16) == 2.0
    assert P.threshold_grid(1.0, 1) == np.float32(1.0905077326652577)
    assert P.threshold_grid(1.0, 11) == np.float32(2 * np.float32(1.2968395546510096))
    assert P.threshold_grid(1e-5, 3) == P.threshold_grid(0.0, 3)  # below 2^-10 the base is 2^-10
    assert isinstance(P.threshold_grid(1.0, 3), np.float32)
    assert P.threshold_grid(3e38, 9) == np.inf  # ldexp overflows to inf
    for bad in (-0.5, float("nan"), float("inf"), 1e39):
        with pytest.raises(P.PackedFormatError, match="beta must be finite and >= 0"):
            P.threshold_grid(bad, 1)


@SETTINGS
@given(beta=st.one_of(st.just(0.0), st.floats(0, 1e4), st.floats(1e-12, 1e-2)), i=st.integers(1, 400))
def test_threshold_grid_properties(beta, i):
    base = max(np.float32(beta), np.float32(2.0**-10))
    assert P.threshold_grid(beta, 0) == base
    t = P.threshold_grid(beta, i)
    assert t.dtype == np.float32
    assert P.threshold_grid(beta, 1) > base
    assert P.threshold_grid(beta, i + 1) > t or np.isinf(t)
    assert P.threshold_grid(beta, i + 8) == 2 * t  # exact, inf included
    assert t == np.ldexp(np.float32(base * P.GRID_R[i % 8]), i // 8)


def test_kept_at_is_fp32_squared_strict():
    t = np.float32(0.3)
    v = np.array([0.3, -0.3j, 0.3000001, np.nan, np.inf, 0, 0.2 + 0.2239j], np.complex64)
    re, im = v.real, v.imag
    with np.errstate(invalid="ignore", over="ignore"):
        expected = (re * re + im * im) > t * t
    got = P.kept_at(v, t)
    assert np.array_equal(got, expected)
    assert got.tolist()[:6] == [False, False, True, False, True, False]
    assert not P.kept_at(v, np.inf).any()
    # per-sample thresholds broadcast
    vv = np.ones((2, 1, 3), np.complex64)
    assert P.kept_at(vv, np.array([0.5, 2.0], np.float32)[:, None, None]).tolist() == [[[True] * 3], [[False] * 3]]


def test_kept_at_matches_explicit_fp32_at_the_boundary():
    # thresholds at (and one ulp around) each value's own magnitude: where a sqrt or a different
    # rounding order would flip the decision
    rng = np.random.default_rng(7)
    v = _rand_values(rng, (20000,), special=False) * np.float32(10.0) ** rng.integers(-3, 4, 20000).astype(np.float32)
    re, im = v.real.copy(), v.imag.copy()
    m2 = np.float32(re * re) + np.float32(im * im)
    root = np.sqrt(m2)
    for t in (root, np.nextafter(root, np.float32(0)), np.nextafter(root, np.float32(np.inf))):
        expected = m2 > (t * t).astype(np.float32)
        assert np.array_equal(P.kept_at(v, t), expected)
    # at t = fp32 sqrt(m2) both outcomes occur, so the test can tell rounding orders apart
    assert 0 < P.kept_at(v, root).sum() < v.size


def _brute_grid_index(scores_n: np.ndarray, beta: float, capacity: int) -> int:
    """The smallest i >= 1 whose count fits, by walking the grid (the spec, literally)."""
    i = 1
    while P.kept_at(scores_n, P.threshold_grid(beta, i)).sum() > capacity:
        i += 1
    return i


@st.composite
def overflow_case(draw):
    B = draw(st.integers(1, 4))
    C = draw(st.integers(1, 4))
    F = draw(st.sampled_from([1, 7, 128, 130, 300]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["normal", "ties", "wide"]))
    if kind == "normal":
        s = _rand_values(rng, (B, C, F), special=False)
    elif kind == "ties":  # few distinct magnitudes: ties at the cut must be kept or dropped together
        s = rng.choice(np.array([0.1, 0.5, 1.0, 2.0, 3.0], np.float32), (B, C, F)).astype(np.complex64)
    else:  # magnitudes over many octaves
        s = (rng.standard_normal((B, C, F)) * 10.0 ** rng.uniform(-4, 4, (B, C, F))).astype(np.complex64)
    beta = draw(st.sampled_from([0.0, 1e-4, 0.05, 0.5, 1.0]))
    capacity = draw(st.integers(0, C * F))
    dt = draw(st.sampled_from(P.VALUE_DTYPES))
    return s, beta, capacity, dt


@SETTINGS
@given(case=overflow_case())
def test_overflow_policy(case):
    scores, beta, capacity, dt = case
    B, C, F = scores.shape
    values = (np.tanh(scores.real) + 1j * np.tanh(scores.imag)).astype(np.complex64)
    blob = P.pack(scores, values, beta, capacity, dt)
    assert blob.shape == (B, P.row_words(C, F, capacity, dt))  # never past the row
    assert np.array_equal(P.pack(scores.copy(), values.copy(), beta, capacity, dt), blob)  # deterministic
    d = P.decode(blob, C, F, dt)
    keep, beta_used, overflowed = P.select(scores, beta, capacity)
    assert np.array_equal(keep, d.keep) and np.array_equal(beta_used, d.beta_used)
    assert np.array_equal(overflowed, d.overflowed)
    m2 = (scores.real * scores.real + scores.imag * scores.imag).astype(np.float32)
    at_beta = P.kept_at(scores, beta)
    for n in range(B):
        assert int(d.nnz[n]) <= capacity
        assert int(d.nnz[n]) == d.keep[n].sum()
        if at_beta[n].sum() <= capacity:
            assert not d.overflowed[n]
            assert d.beta_used[n] == np.float32(beta)
            assert np.array_equal(d.keep[n], at_beta[n])
            continue
        assert d.overflowed[n]
        i = _brute_grid_index(scores[n], beta, capacity)
        assert d.beta_used[n] == P.threshold_grid(beta, i)
        assert np.array_equal(d.keep[n], P.kept_at(scores[n], d.beta_used[n]))
        # one step lower does not fit (for i == 1 that is beta itself, which overflowed)
        lower = P.threshold_grid(beta, i - 1) if i > 1 else np.float32(beta)
        assert P.kept_at(scores[n], lower).sum() > capacity
        # kept = the largest magnitudes among those above beta
        kept_m2 = m2[n][d.keep[n]]
        dropped_m2 = m2[n][at_beta[n] & ~d.keep[n]]
        assert dropped_m2.size > 0
        if kept_m2.size:
            assert kept_m2.min() > dropped_m2.max()
        assert d.keep[n].sum() <= at_beta[n].sum()
    # stored values are the activations of the kept scores
    expected = np.where(d.keep, _expected_stored(values, dt), np.complex64(0))
    assert np.array_equal(_bits(d.values), _bits(expected))


def test_no_overflow_keeps_beta_and_flag_zero():
    rng = np.random.default_rng(1)
    s = _rand_values(rng, (3, 4, 50), special=False)
    blob = P.pack(s, s, 0.7, 200, "fp32")
    d = P.decode(blob, 4, 50, "fp32")
    assert not d.overflowed.any()
    assert np.all(d.beta_used == np.float32(0.7))
    assert np.array_equal(d.keep, np.abs(s) > np.float32(0.7))  # no boundary values in this draw


def test_overflow_forced_example():
    # magnitudes 1..10 in one channel; beta 0.5, capacity 3 -> keep 8, 9, 10
    s = np.arange(1, 11, dtype=np.float32).astype(np.complex64).reshape(1, 1, 10)
    keep, bu, ov = P.select(s, 0.5, 3)
    assert ov.tolist() == [True]
    assert keep[0, 0].tolist() == [False] * 7 + [True] * 3
    assert 7 <= bu[0] < 8
    assert P.threshold_grid(0.5, 32) == 8.0  # ... the next grid value would drop 8
    assert bu[0] in [P.threshold_grid(0.5, i) for i in range(25, 32)]


def test_overflow_extremes_nan_inf_and_capacity_zero():
    s = np.array([[[np.inf, np.inf, np.nan, 5.0, 1e30, 0.0]]], np.complex64)
    # capacity 0: everything dropped, at the first grid value whose count is 0
    keep, bu, ov = P.select(s, 0.0, 0)
    assert not keep.any() and ov[0]
    i = _brute_grid_index(s[0], 0.0, 0)
    assert bu[0] == P.threshold_grid(0.0, i) and np.isfinite(bu[0])
    assert P.kept_at(s[0], P.threshold_grid(0.0, i - 1)).sum() > 0
    # 1e30**2 overflows fp32, so it ties with the two infs: with capacity 1 or 2 none of the three
    # fits before t*t itself overflows, and nothing is kept
    for cap in (1, 2):
        keep, bu, ov = P.select(s, 0.0, cap)
        assert not keep.any() and ov[0] and bu[0] == P.threshold_grid(0.0, i)
    keep, bu, ov = P.select(s, 0.0, 3)
    assert keep[0, 0].tolist() == [True, True, False, False, True, False] and ov[0]
    # NaN is never kept, even with room for everything
    keep, bu, ov = P.select(s, 0.0, 6)
    assert keep[0, 0].tolist() == [True, True, False, True, True, False] and not ov[0]
    # a beta whose square overflows fp32 keeps nothing without overflowing
    keep, bu, ov = P.select(s, 1e20, 0)
    assert not keep.any() and not ov[0] and bu[0] == np.float32(1e20)
    blob = P.pack(s, s, 0.0, 3, "fp16")
    assert P.decode(blob, 1, 6, "fp16").nnz[0] == 3


def test_select_rejects_bad_arguments():
    s = np.ones((1, 1, 4), np.complex64)
    with pytest.raises(P.PackedFormatError, match="beta"):
        P.select(s, -1.0, 2)
    with pytest.raises(P.PackedFormatError, match="beta"):
        P.select(s, float("nan"), 2)
    with pytest.raises(P.PackedFormatError, match="beta"):
        P.select(s, float("inf"), 2)
    with pytest.raises(P.PackedFormatError, match="capacity"):
        P.select(s, 0.0, -1)
    with pytest.raises(P.PackedFormatError, match=r"\[B, C, F\]"):
        P.select(s[0], 0.0, 2)


def test_sticky_upstream_overflow():
    rng = np.random.default_rng(2)
    s = _rand_values(rng, (4, 2, 40), special=False)
    up = np.array([True, False, False, True])
    # sample 2 overflows on its own (capacity 1 at beta 0), the others have room
    s[[0, 1, 3]] *= 0
    s[[0, 1, 3], 0, 0] = 1
    blob = P.pack(s, s, 0.0, 1, "fp32", upstream_overflowed=up)
    d = P.decode(blob, 2, 40, "fp32")
    assert d.overflowed.tolist() == [True, False, True, True]
    assert d.beta_used[0] == 0 and d.beta_used[3] == 0 and d.beta_used[2] > 0  # upstream does not move beta
    assert P.decode(P.pack(s, s, 0.0, 1, "fp32", True), 2, 40, "fp32").overflowed.all()
    assert P.decode(P.pack(s, s, 0.0, 1, "fp32"), 2, 40, "fp32").overflowed.tolist() == [False, False, True, False]


def test_candidates_inherit_keptness():
    # SpecPool-style: an inherited coefficient whose value is 0 stays kept while there is room
    s = np.array([[[0.0, 3.0, 0.5, 2.0]]], np.complex64)
    cand = np.array([[[True, True, False, True]]])
    keep, bu, ov = P.select(s, 0.0, 3, candidates=cand)
    assert keep.tolist() == cand.tolist() and not ov[0] and bu[0] == 0
    keep, bu, ov = P.select(s, 0.0, 1, candidates=cand)
    assert keep[0, 0].tolist() == [False, True, False, False] and ov[0]
    keep, bu, ov = P.select(s, 0.0, 2, candidates=cand)
    assert keep[0, 0].tolist() == [False, True, False, True]  # 0.5 is not a candidate
    assert bu[0] == P.threshold_grid(0.0, 1)  # smallest grid value drops the zero
    blob = P.pack(s, s, 0.0, 3, "fp16", candidates=cand)
    assert P.decode(blob, 1, 4, "fp16").keep.tolist() == cand.tolist()
    # an inherited NaN is carried while there is room, and is the first thing dropped on overflow
    s2 = np.array([[[np.nan, 3.0, 1.0, 2.0]]], np.complex64)
    cand2 = np.ones((1, 1, 4), bool)
    keep, bu, ov = P.select(s2, 0.0, 4, candidates=cand2)
    assert keep.all() and not ov[0]
    keep, bu, ov = P.select(s2, 0.0, 3, candidates=cand2)
    assert keep[0, 0].tolist() == [False, True, True, True] and ov[0] and bu[0] == P.threshold_grid(0.0, 1)
    keep, bu, ov = P.select(s2, 0.0, 2, candidates=cand2)
    assert keep[0, 0].tolist() == [False, True, False, True] and 1 <= bu[0] < 2


# ----------------------------------------------------------------------------------------------
# validation of corrupt blobs


def _valid_blob(dt: str = "fp32", F: int = 300):
    C, B = 3, 3
    rng = np.random.default_rng(3)
    values = _rand_values(rng, (B, C, F), special=False)
    keep = rng.random((B, C, F)) < 0.3
    keep[1, 0, 0] = True
    keep[1, 0, 1] = False
    capacity = int(keep.reshape(B, -1).sum(axis=1).max()) + 5
    blob = P.encode(values, keep, capacity, dt, np.float32(0.5), False)
    return blob, P.Layout(C, F, capacity, dt)


def _corrupt(fn, dt="fp32", F=300):
    blob, lay = _valid_blob(dt, F)
    bad = blob.copy()
    w = bad.view(np.uint32)
    fn(w[1], lay)  # corrupt sample 1 only
    return bad, lay


CORRUPTIONS = {
    "mask bit cleared": (lambda w, L: w.__setitem__(L.mask_start, w[L.mask_start] & ~np.uint32(1)), r"sample 1: .*popcount of pair 0 = block 0, channel 0"),
    "mask bit set": (lambda w, L: w.__setitem__(L.mask_start, w[L.mask_start] | np.uint32(2)), r"sample 1: .*popcount"),
    "nnz too large": (lambda w, L: w.__setitem__(0, w[0] + 1), r"sample 1: nnz \(header word 0\) = \d+ but the mask has"),
    "nnz over capacity": (lambda w, L: w.__setitem__(0, L.capacity + 1), r"sample 1: nnz \(header word 0\) must be <= capacity"),
    "offsets not monotone": (lambda w, L: w.__setitem__(L.offsets_start + 2, 10**6), r"sample 1: offsets not monotone: offsets\[2\]=1000000 > offsets\[3\]"),
    "offsets[0]": (lambda w, L: w.__setitem__(L.offsets_start, 1), r"sample 1: offsets\[0\] .* must be 0, got 1"),
    "offsets last": (lambda w, L: w.__setitem__(L.values_start - 1, w[L.values_start - 1] - 1), r"sample 1: offsets\[9\]-offsets\[8\]"),
    "bit beyond F": (lambda w, L: w.__setitem__(L.mask_start + (2 * L.C + 1) * 4 + 1, w[L.mask_start + (2 * L.C + 1) * 4 + 1] | np.uint32(1 << 12)), r"sample 1: mask bit set beyond F=300 \(channel 1, coefficient f=300"),
    "undefined flag bits": (lambda w, L: w.__setitem__(3, 7), r"sample 1: flags \(header word 3\) must be only bit 0 .*, got 7"),
    "overflowed=2": (lambda w, L: w.__setitem__(1, 2), r"sample 1: overflowed \(header word 1\) must be 0 or 1, got 2"),
    "unused slot": (lambda w, L: w.__setitem__(L.row_words - 1, 0x3F800000), r"sample 1: unused value slot \d+ \(word \d+, nnz=\d+\) must be 0, got 0x3f800000"),
    "first unused slot": (lambda w, L: w.__setitem__(L.values_start + int(w[0]) * L.value_words, 1), r"sample 1: unused value slot (\d+) \(word \d+, nnz=\1\) must be 0, got 0x00000001"),
    "NaN beta_used": (lambda w, L: w.__setitem__(2, 0x7FC00000), r"sample 1: beta_used \(header word 2\) must be finite and >= 0, got nan"),
    "negative beta_used": (lambda w, L: w.__setitem__(2, np.float32(-1).view(np.uint32)), r"sample 1: beta_used .* got -1.0"),
    "inf beta_used": (lambda w, L: w.__setitem__(2, np.float32(np.inf).view(np.uint32)), r"sample 1: beta_used"),
}


@pytest.mark.parametrize("dt", P.VALUE_DTYPES)
@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupt_blobs_are_rejected(name, dt):
    fn, pattern = CORRUPTIONS[name]
    bad, lay = _corrupt(fn, dt)
    with pytest.raises(P.PackedFormatError, match=pattern):
        P.validate(bad, lay.C, lay.F, dt)
    with pytest.raises(P.PackedFormatError, match=pattern):
        P.decode(bad, lay.C, lay.F, dt)
    # the intact samples are fine on their own
    P.validate(np.delete(bad, 1, axis=0), lay.C, lay.F, dt)


def test_wrong_row_length_and_container_are_rejected():
    blob, lay = _valid_blob("fp32")
    with pytest.raises(P.PackedFormatError, match=r"row size S=\d+ words does not fit C=3, F=300, value_dtype='fp32'"):
        P.validate(blob[:, :-1], 3, 300, "fp32")
    with pytest.raises(P.PackedFormatError, match=r"row size S=40 .*shorter than header\+mask\+offsets"):
        P.decode(blob[:, :40], 3, 300, "fp32")
    with pytest.raises(P.PackedFormatError, match=r"row size"):
        P.validate(blob, 4, 300, "fp32")  # wrong C: the sizes no longer line up
    with pytest.raises(P.PackedFormatError, match=r"int32 \[B, S\], got float32"):
        P.validate(blob.view(np.float32), 3, 300, "fp32")
    with pytest.raises(P.PackedFormatError, match=r"int32 \[B, S\], got int32 with shape \(\d+,\)"):
        P.validate(blob[0], 3, 300, "fp32")
    with pytest.raises(P.PackedFormatError, match=r"numpy int32 array"):
        P.validate(blob.tolist(), 3, 300, "fp32")  # type: ignore[arg-type]


def test_bit_beyond_F_in_partial_word():
    # F=33: the last block's word 1 may only use bit 0
    v = np.ones((1, 2, 33), np.complex64)
    k = np.zeros((1, 2, 33), bool)
    k[0, 1, 32] = True
    blob = P.encode(v, k, 4, "fp16", 0, False)
    P.validate(blob, 2, 33, "fp16")
    blob.view(np.uint32)[0, 4 + 4 + 1] |= np.uint32(1 << 1)  # channel 1, f = 33
    with pytest.raises(P.PackedFormatError, match=r"sample 0: mask bit set beyond F=33 \(channel 1, coefficient f=33"):
        P.validate(blob, 2, 33, "fp16")


def test_decode_without_validation_trusts_the_mask():
    blob, lay = _valid_blob("fp32")
    bad = blob.copy()
    bad[1, 0] += 1  # wrong nnz: only validation notices
    d = P.decode(bad, lay.C, lay.F, "fp32", validate=False)
    good = P.decode(blob, lay.C, lay.F, "fp32")
    assert np.array_equal(_bits(d.values), _bits(good.values))
    assert d.nnz[1] == good.nnz[1] + 1
    # a mask that claims more values than the row holds is refused even then
    full = blob.copy()
    full.view(np.uint32)[0, lay.mask_start : lay.offsets_start] = 0xFFFFFFFF
    with pytest.raises(P.PackedFormatError, match=r"sample 0: mask has \d+ bits set but capacity is"):
        P.decode(full, lay.C, lay.F, "fp32", validate=False)


def test_popcount_matches_python():
    rng = np.random.default_rng(4)
    w = rng.integers(0, 2**32, 1000, dtype=np.uint64).astype(np.uint32)
    w[:3] = [0, 0xFFFFFFFF, 0x80000001]
    expected = [int(x).bit_count() for x in w]
    assert P._popcount32(w).astype(int).tolist() == expected
    assert P._popcount32_lut(w).astype(int).tolist() == expected  # the numpy < 2 path


@pytest.mark.parametrize("dt", P.VALUE_DTYPES)
def test_empty_batch_and_zero_capacity(dt):
    z = np.zeros((0, 2, 130), np.complex64)
    blob = P.pack(z, z, 0.5, 10, dt)
    assert blob.shape == (0, P.row_words(2, 130, 10, dt))
    assert P.decode(blob, 2, 130, dt).values.shape == (0, 2, 130)
    s = np.ones((2, 2, 130), np.complex64)
    blob = P.pack(s, s, 0.5, 0, dt)
    assert blob.shape == (2, P.Layout(2, 130, 0, dt).values_start)
    d = P.decode(blob, 2, 130, dt)
    assert not d.keep.any() and d.overflowed.all() and (d.nnz == 0).all()


def test_large_batch_round_trip_shapes():
    # the whole-model scale path (block-major copies, boolean gathers) at a moderate size
    rng = np.random.default_rng(5)
    B, C, F = 4, 64, 1000
    s = _rand_values(rng, (B, C, F), special=False)
    cap = C * F // 5
    for dt in P.VALUE_DTYPES:
        blob = P.pack(s, s, 1.0, cap, dt)
        d = P.decode(blob, C, F, dt)
        assert d.overflowed.all() and (d.nnz <= cap).all() and (d.nnz > cap * 0.6).all()
        assert np.array_equal(d.keep, P.kept_at(s, d.beta_used[:, None, None]))
