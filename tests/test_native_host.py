"""The native op set (plugins/, C ABI) on the CPU: the host library vs the numpy reference.

The host library (libspecdeploy_host.so) is built from the same ``__host__ __device__`` per-element
headers, validation, workspace arithmetic and count/scan/write pipeline as the CUDA kernels, so this
file is the CI check of the kernels' math. It builds the library once per session with cmake + g++
(both always present in CI: a failing build fails the tests, it never skips them). The last test
compiles the CUDA library with nvcc for every listed architecture (compile-only; no GPU needed).

Comparison rules (the reference computes in float64, the kernels in fp32):
* headers (nnz, overflowed, beta_used) bit-identical;
* masks bit-identical except coefficients whose |Y|^2 (float64) lies within a relative 1e-5 of the
  threshold t^2 (summation order differs);
* values: fp32 to ~1e-5 relative, fp16 to 1 ulp; SpecPool and SpecConcat bit-identical rows
  (pure copies and one fp32 multiply); SpecToSpatial to ~1e-5 of the output's scale.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.native_host import (  # shared with test_native_gpu.py
    CONCAT_CASES,
    CONV_SETTINGS,
    CONV_SPATIAL,
    CONV_SPECTRAL,
    POOL_CASES,
    TO_SPATIAL_CASES,
    _capacity,
    _seed,
    assert_same_packed,
    compare_packed,
    conv_case,
    make_packed,
    y64_conv,
)
from specdeploy import native
from specdeploy import packed as P
from specdeploy import reference as R

# ------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def host_lib(host_lib_path) -> native.Library:
    """libspecdeploy_host, built once per session (tests/conftest.py; fails, never skips), loaded."""
    lib = native.load("host", host_lib_path)
    assert lib.build_info == "host"
    return lib


# ------------------------------------------------------------------------------------------------
# SpecConv


@pytest.mark.parametrize("value_dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("setting", CONV_SETTINGS, ids=lambda s: f"b{s[0]}-{s[1]}-{'bias' if s[2] else 'nob'}-{s[3]}")
@pytest.mark.parametrize("case", CONV_SPATIAL, ids=lambda c: "B{}C{}O{}H{}W{}k{}".format(*c))
def test_spec_conv_spatial(host_lib, case, setting, value_dtype):
    rng = np.random.default_rng(_seed((case, setting, value_dtype)))
    x, w, b, attrs, Y, O, F = conv_case(rng, case, "spatial", setting, value_dtype)
    got = host_lib.spec_conv(x, w, b, **attrs)
    ref = R.spec_conv(x, w, b, **attrs)
    compare_packed(got, ref, C=O, F=F, value_dtype=value_dtype, scores64=Y, what=f"SpecConv {attrs}")


@pytest.mark.parametrize("value_dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("setting", CONV_SETTINGS, ids=lambda s: f"b{s[0]}-{s[1]}-{'bias' if s[2] else 'nob'}-{s[3]}")
@pytest.mark.parametrize("case", CONV_SPECTRAL, ids=lambda c: "B{}C{}O{}Hs{}Ws{}k{}".format(*c))
def test_spec_conv_spectral(host_lib, case, setting, value_dtype):
    rng = np.random.default_rng(_seed((case, setting, value_dtype, "s")))
    x, w, b, attrs, Y, O, F = conv_case(rng, case, "spectral", setting, value_dtype)
    got = host_lib.spec_conv(x, w, b, **attrs)
    ref = R.spec_conv(x, w, b, **attrs)
    dg, _ = compare_packed(got, ref, C=O, F=F, value_dtype=value_dtype, scores64=Y, what=f"SpecConv {attrs}")
    # sticky overflowed: an overflowed input sample stays flagged
    assert (dg.overflowed >= P.decode(x, case[1], F, value_dtype).overflowed).all()


def test_spec_conv_fp16_spatial_input(host_lib):
    rng = np.random.default_rng(7)
    x, w, b, attrs, Y, O, F = conv_case(rng, (2, 3, 4, 10, 9, 3), "spatial", (0.5, "tanh", True, "tight"), "fp16",
                                        x_dtype=np.float16)
    got = host_lib.spec_conv(x, w, b, **attrs)
    ref = R.spec_conv(x, w, b, **attrs)
    compare_packed(got, ref, C=O, F=F, value_dtype="fp16", scores64=Y, what="fp16 spatial input")


def test_spec_conv_overflow_and_batch_independence(host_lib):
    """Per-sample overflow decisions: a batch equals its samples run one by one; reruns are identical."""
    rng = np.random.default_rng(11)
    x, w, b, attrs, Y, O, F = conv_case(rng, (4, 2, 3, 12, 12, 3), "spatial", (0.3, "tanh", True, "tight"), "fp32")
    x[1] *= 0.01  # sample 1 keeps few coefficients: no overflow, others overflow
    Y = y64_conv(x, w, b, in_domain="spatial", C=2, Hs=14, Ws=14, value_dtype="fp32")
    got = host_lib.spec_conv(x, w, b, **attrs)
    ref = R.spec_conv(x, w, b, **attrs)
    dg, _ = compare_packed(got, ref, C=O, F=F, value_dtype="fp32", scores64=Y, what="batch")
    assert dg.overflowed.any() and not dg.overflowed.all()
    assert np.array_equal(got, host_lib.spec_conv(x, w, b, **attrs))
    for n in range(x.shape[0]):
        assert np.array_equal(got[n : n + 1], host_lib.spec_conv(x[n : n + 1], w, b, **attrs))


def test_spec_conv_realistic_size(host_lib):
    """A mid-size layer (C=32, O=24, 30x30, k=3) in fp16 with overflow: the fp32 summation of 288 terms."""
    rng = np.random.default_rng(21)
    x, w, b, attrs, Y, O, F = conv_case(rng, (2, 32, 24, 30, 30, 3), "spatial", (0.5, "tanh", True, "tight"), "fp16")
    got = host_lib.spec_conv(x, w, b, **attrs)
    compare_packed(got, R.spec_conv(x, w, b, **attrs), C=O, F=F, value_dtype="fp16", scores64=Y, what="realistic")


@pytest.mark.parametrize("x_dtype", [np.float32, np.float16])
@pytest.mark.parametrize("case", CONV_SPATIAL + [(2, 32, 24, 30, 30, 3)], ids=lambda c: "B{}C{}O{}H{}W{}k{}".format(*c))
def test_spec_conv_streamed_input_spectrum_is_bit_identical(host_lib, case, x_dtype):
    """The streamed input spectrum (no workspace buffer) performs the dense path's operations in its
    order: the packed output is identical bit for bit, also under overflow; "auto" is one of them."""
    rng = np.random.default_rng(_seed((case, "stream", str(x_dtype))))
    x, w, b, attrs, Y, O, F = conv_case(rng, case, "spatial", (0.4, "tanh", True, "tight"), "fp32", x_dtype=x_dtype)
    dense = host_lib.spec_conv(x, w, b, **attrs, input_spectrum="dense")
    streamed = host_lib.spec_conv(x, w, b, **attrs, input_spectrum="streamed")
    assert np.array_equal(dense, streamed), f"streamed != dense for {case}"
    assert np.array_equal(host_lib.spec_conv(x, w, b, **attrs), dense)
    compare_packed(streamed, R.spec_conv(x, w, b, **attrs), C=O, F=F, value_dtype="fp32", scores64=Y,
                   what=f"streamed {case}")


HYP = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@HYP
@given(
    spatial=st.booleans(), B=st.integers(1, 3), C=st.integers(1, 4), O=st.integers(1, 11), k=st.integers(1, 5),
    A1=st.integers(1, 24), A2=st.integers(1, 24), beta=st.sampled_from([0.0, 0.05, 0.4, 1.0, 3.0]),
    activation=st.sampled_from(["tanh", "none"]), bias=st.booleans(), rule=st.sampled_from(["full", "tight", 1, 5]),
    value_dtype=st.sampled_from(["fp32", "fp16"]), seed=st.integers(0, 2**31),
)
def test_spec_conv_property(host_lib, spatial, B, C, O, k, A1, A2, beta, activation, bias, rule, value_dtype, seed):
    rng = np.random.default_rng(seed)
    if not spatial:
        A1, A2 = max(A1, k), max(A2, k)
    dom = "spatial" if spatial else "spectral"
    x, w, b, attrs, Y, O, F = conv_case(rng, (B, C, O, A1, A2, k), dom, (beta, activation, bias, rule), value_dtype)
    compare_packed(host_lib.spec_conv(x, w, b, **attrs), R.spec_conv(x, w, b, **attrs), C=O, F=F,
                   value_dtype=value_dtype, scores64=Y, what=f"SpecConv {attrs}")


@HYP
@given(
    B=st.integers(1, 3), C=st.integers(1, 4), Hs=st.integers(1, 40), Ws=st.integers(1, 40),
    fo=st.floats(0, 1), fw=st.floats(0, 1), fc=st.floats(0, 1), density=st.floats(0, 1),
    value_dtype=st.sampled_from(["fp32", "fp16"]), seed=st.integers(0, 2**31),
)
def test_spec_pool_to_spatial_property(host_lib, B, C, Hs, Ws, fo, fw, fc, density, value_dtype, seed):
    rng = np.random.default_rng(seed)
    x = make_packed(rng, B, C, Hs, Ws, value_dtype, density=density)
    oH, oW = 1 + int(fo * (Hs - 1)), 1 + int(fw * (Ws - 1))
    oF = P.num_coeffs(oH, oW)
    a = dict(C=C, Hs=Hs, Ws=Ws, out_Hs=oH, out_Ws=oW, capacity=1 + int(fc * (C * oF - 1)), value_dtype=value_dtype)
    assert_same_packed(host_lib.spec_pool(x, **a), R.spec_pool(x, **a), C=C, F=oF, value_dtype=value_dtype)
    got = host_lib.spec_to_spatial(x, C=C, Hs=Hs, Ws=Ws, value_dtype=value_dtype)
    ref = R.spec_to_spatial(x, C=C, Hs=Hs, Ws=Ws, value_dtype=value_dtype)
    assert float(np.abs(got - ref).max()) <= 1e-5 * max(float(np.abs(ref).max()), 1e-30)


@HYP
@given(
    B=st.integers(1, 3), Cs=st.lists(st.integers(1, 3), min_size=1, max_size=5), Hs=st.integers(1, 24),
    Ws=st.integers(1, 24), fc=st.floats(0, 1), value_dtype=st.sampled_from(["fp32", "fp16"]),
    seed=st.integers(0, 2**31),
)
def test_spec_concat_property(host_lib, B, Cs, Hs, Ws, fc, value_dtype, seed):
    rng = np.random.default_rng(seed)
    xs = [make_packed(rng, B, c, Hs, Ws, value_dtype, density=rng.uniform(0, 1)) for c in Cs]
    F = P.num_coeffs(Hs, Ws)
    a = dict(C=Cs, Hs=Hs, Ws=Ws, capacity=1 + int(fc * (sum(Cs) * F - 1)), value_dtype=value_dtype)
    assert_same_packed(host_lib.spec_concat(xs, **a), R.spec_concat(xs, **a), C=sum(Cs), F=F, value_dtype=value_dtype)


# ------------------------------------------------------------------------------------------------
# SpecPool, SpecConcat: bit-identical


@pytest.mark.parametrize("value_dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("rule", ["full", "tight", 1])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "B{}C{}Hs{}Ws{}to{}x{}".format(*c))
def test_spec_pool(host_lib, case, rule, value_dtype):
    B, C, Hs, Ws, oH, oW = case
    rng = np.random.default_rng(_seed((case, rule, value_dtype)))
    x = make_packed(rng, B, C, Hs, Ws, value_dtype, density=0.5)
    oF = P.num_coeffs(oH, oW)
    # inherited kept count, to make "tight" overflow
    d = P.decode(x, C, P.num_coeffs(Hs, Ws), value_dtype)
    cap = _capacity(rule, C * oF, int(d.keep.reshape(B, -1).sum(axis=1).max() * oF / P.num_coeffs(Hs, Ws)))
    attrs = dict(C=C, Hs=Hs, Ws=Ws, out_Hs=oH, out_Ws=oW, capacity=cap, value_dtype=value_dtype)
    got = host_lib.spec_pool(x, **attrs)
    ref = R.spec_pool(x, **attrs)
    assert_same_packed(got, ref, C=C, F=oF, value_dtype=value_dtype, what=f"SpecPool {attrs}")


@pytest.mark.parametrize("value_dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("rule", ["full", "tight", 1])
@pytest.mark.parametrize("case", CONCAT_CASES, ids=lambda c: "B{}C{}Hs{}Ws{}".format(c[0], "-".join(map(str, c[1])), *c[2:]))
def test_spec_concat(host_lib, case, rule, value_dtype):
    B, Cs, Hs, Ws = case
    rng = np.random.default_rng(_seed((str(case), rule, value_dtype)))
    xs = [make_packed(rng, B, c, Hs, Ws, value_dtype, density=rng.uniform(0.2, 0.8)) for c in Cs]
    F = P.num_coeffs(Hs, Ws)
    nnz = sum(int(P.decode(x, c, F, value_dtype).nnz.max()) for x, c in zip(xs, Cs))
    attrs = dict(C=Cs, Hs=Hs, Ws=Ws, capacity=_capacity(rule, sum(Cs) * F, nnz), value_dtype=value_dtype)
    got = host_lib.spec_concat(xs, **attrs)
    ref = R.spec_concat(xs, **attrs)
    assert_same_packed(got, ref, C=sum(Cs), F=F, value_dtype=value_dtype, what=f"SpecConcat {attrs}")


# ------------------------------------------------------------------------------------------------
# SpecToSpatial


@pytest.mark.parametrize("value_dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("case", TO_SPATIAL_CASES, ids=lambda c: "B{}C{}Hs{}Ws{}".format(*c))
def test_spec_to_spatial(host_lib, case, value_dtype):
    B, C, Hs, Ws = case
    rng = np.random.default_rng(_seed((case, value_dtype)))
    x = make_packed(rng, B, C, Hs, Ws, value_dtype, density=0.7)
    got = host_lib.spec_to_spatial(x, C=C, Hs=Hs, Ws=Ws, value_dtype=value_dtype)
    ref = R.spec_to_spatial(x, C=C, Hs=Hs, Ws=Ws, value_dtype=value_dtype)
    assert got.dtype == np.float32 and got.shape == (B, C, Hs, Ws)
    scale = max(float(np.abs(ref).max()), 1e-30)
    err = float(np.abs(got - ref).max()) / scale
    assert err <= 1e-5, f"SpecToSpatial error {err:.3g} of the output scale"


def test_spec_to_spatial_non_hermitian_matches_numpy(host_lib):
    """Arbitrary half spectra: imaginary parts of DC / Nyquist columns are ignored as numpy does."""
    rng = np.random.default_rng(3)
    for Hs, Ws in ((6, 8), (5, 7), (4, 2), (1, 4)):
        F = P.num_coeffs(Hs, Ws)
        v = (rng.standard_normal((1, 1, F)) + 1j * rng.standard_normal((1, 1, F))).astype(np.complex64)
        x = P.encode(v, np.ones((1, 1, F), dtype=bool), F, "fp32", 0.0, False)
        got = host_lib.spec_to_spatial(x, C=1, Hs=Hs, Ws=Ws, value_dtype="fp32")
        want = np.fft.irfft2(v.reshape(1, 1, Hs, -1).astype(np.complex128), s=(Hs, Ws), norm="ortho")
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())


# ------------------------------------------------------------------------------------------------
# the C ABI: sizes, workspace rule, validation messages


def test_row_words_and_workspace(host_lib):
    for C, F, cap, vdt in ((1, 1, 1, "fp32"), (3, 129, 10, "fp16"), (8, 1000, 8000, "fp32")):
        assert host_lib.packed_row_words(C, F, cap, vdt) == P.row_words(C, F, cap, vdt)
    assert host_lib.packed_row_words(2, 5, 0, "fp32") == 0
    assert host_lib.packed_row_words(2, 5, 11, "fp32") == 0
    # SpecConv: a spatial input declares its dense spectrum (B*C*F complex); a spectral input
    # declares no dense spectral buffer at all (DESIGN §5): a few KiB per sample, independent of C*F.
    sp = native.conv_params(in_domain="spatial", C=16, O=32, H=30, W=30, Hs=32, Ws=32, k=3, beta=0.5,
                            activation="tanh", capacity=1000, value_dtype="fp16")
    F = 32 * 17
    for B in (1, 8):
        assert host_lib.spec_conv_workspace_size(sp, B) >= B * 16 * F * 8
    S_in = P.row_words(64, F, 5000, "fp16")
    sq = native.conv_params(in_domain="spectral", C=64, O=64, Hs=32, Ws=32, k=3, beta=0.5, activation="tanh",
                            capacity=5000, value_dtype="fp16", in_row_words=S_in)
    ws1, ws8 = host_lib.spec_conv_workspace_size(sq, 1), host_lib.spec_conv_workspace_size(sq, 8)
    assert ws8 - ws1 <= 7 * 4096, (ws1, ws8)
    assert ws8 < 64 * F * 8, "spectral SpecConv must not declare a dense spectral buffer"
    assert host_lib.out_row_words(sq) == P.row_words(64, F, 5000, "fp16")


@HYP
@given(
    B=st.integers(0, 64), C=st.integers(1, 300), O=st.integers(1, 300), k=st.integers(1, 7), A1=st.integers(1, 90),
    A2=st.integers(1, 90), ncat=st.integers(1, 4), value_dtype=st.sampled_from(["fp32", "fp16"]),
)
def test_planner_declares_the_library_workspace(host_lib, B, C, O, k, A1, A2, ncat, value_dtype):
    """specdeploy.memory.declared_workspace (the plan, figure 1) equals sd_*_workspace_size for every
    op, so the plan and the native runtimes charge the same scratch bytes (DESIGN §5)."""
    from specdeploy import memory

    Hs, Ws = A1 + k - 1, A2 + k - 1
    F = P.num_coeffs(Hs, Ws)
    attrs = dict(C=C, Hs=Hs, Ws=Ws)
    conv = dict(C=C, O=O, Hs=Hs, Ws=Ws, k=k, beta=0.5, activation="tanh", capacity=1, value_dtype=value_dtype)
    spatial = {**attrs, "in_domain": "spatial", "k": k}
    sp = native.conv_params(in_domain="spatial", H=A1, W=A2, **conv)  # input_spectrum "auto": the planner's rule
    assert host_lib.spec_conv_workspace_size(sp, B) == memory.declared_workspace("SpecConv", spatial, B, O)
    dense = native.conv_params(in_domain="spatial", H=A1, W=A2, input_spectrum="dense", **conv)
    streamed = native.conv_params(in_domain="spatial", H=A1, W=A2, input_spectrum="streamed", **conv)
    spectrum = memory._align(8 * B * C * F)
    assert host_lib.spec_conv_workspace_size(dense, B) - host_lib.spec_conv_workspace_size(streamed, B) == spectrum
    assert host_lib.spec_conv_workspace_size(sp, B) == host_lib.spec_conv_workspace_size(
        streamed if memory.streams_input(O, A1, A2, k) else dense, B)
    rw = P.row_words(C, F, 1, value_dtype)
    sq = native.conv_params(in_domain="spectral", in_row_words=rw, **conv)
    assert host_lib.spec_conv_workspace_size(sq, B) == memory.declared_workspace(
        "SpecConv", {**attrs, "in_domain": "spectral"}, B)
    pool = native.pool_params(C=C, Hs=Hs, Ws=Ws, out_Hs=(Hs + 1) // 2, out_Ws=(Ws + 1) // 2, capacity=1,
                              value_dtype=value_dtype, in_row_words=rw)
    assert host_lib.spec_pool_workspace_size(pool, B) == memory.declared_workspace("SpecPool", attrs, B)
    ts = native.to_spatial_params(C=C, Hs=Hs, Ws=Ws, value_dtype=value_dtype, in_row_words=rw)
    assert host_lib.spec_to_spatial_workspace_size(ts, B) == memory.declared_workspace("SpecToSpatial", attrs, B)
    cat = native.concat_params(C=[C] * ncat, Hs=Hs, Ws=Ws, capacity=1, value_dtype=value_dtype,
                               in_row_words=[rw] * ncat)
    assert host_lib.spec_concat_workspace_size(cat, B) == memory.declared_workspace("SpecConcat", attrs, B)


@pytest.mark.parametrize("O,H,W,k", [(2**31 - 1, 1, 1, 1), (1, 4096, 2**18, 1), (9, 4096, 2**18, 3),
                                     (2**20, 64, 64, 1024), (8, 28, 28, 3), (8, 29, 29, 3)])
def test_streaming_rule_at_the_extremes(host_lib, O, H, W, k):
    """The automatic streamed/dense choice agrees with the planner's port where int64 would overflow
    and at the rule's edge (O = 8, k = 3: 28x28 streams, 29x29 does not)."""
    from specdeploy import memory

    Hs, Ws = H + k - 1, W + k - 1
    p = native.conv_params(in_domain="spatial", C=1, O=O, H=H, W=W, Hs=Hs, Ws=Ws, k=k, beta=0.5, activation="tanh",
                           capacity=1, value_dtype="fp16")
    attrs = {"in_domain": "spatial", "C": 1, "Hs": Hs, "Ws": Ws, "k": k}
    assert host_lib.spec_conv_workspace_size(p, 1) == memory.declared_workspace("SpecConv", attrs, 1, O)
    if (O, k) == (8, 3):
        assert memory.streams_input(O, H, W, k) == (H == 28)


def _expect_invalid(fn, *names):
    with pytest.raises(native.NativeInvalidArgument) as ei:
        fn()
    msg = str(ei.value)
    for n in names:
        assert n in msg, f"message {msg!r} should name {n!r}"
    return msg


def test_validation_errors(host_lib):
    lib = host_lib
    good = dict(in_domain="spatial", C=2, O=3, H=6, W=5, Hs=8, Ws=7, k=3, beta=0.5, activation="tanh",
                capacity=10, value_dtype="fp32")
    lib.validate(native.conv_params(**good))
    for change, name in (
        (dict(beta=-1.0), "'beta'"),
        (dict(beta=float("nan")), "'beta'"),
        (dict(beta=float("inf")), "'beta'"),
        (dict(capacity=0), "'capacity'"),
        (dict(capacity=3 * 8 * 4 + 1), "'capacity'"),
        (dict(Hs=9), "'Hs'"),
        (dict(Ws=6), "'Ws'"),
        (dict(k=0), "'k'"),
        (dict(C=0), "'C'"),
    ):
        p = native.conv_params(**{**good, **change})
        msg = _expect_invalid(lambda: lib.validate(p), "SpecConv", name)
        assert "SD_ERR_INVALID_ARGUMENT" in msg
    # enum fields set out of range directly in the struct
    p = native.conv_params(**good)
    p.value_dtype = 7
    _expect_invalid(lambda: lib.validate(p), "'value_dtype'")
    p = native.conv_params(**good)
    p.activation = 3
    _expect_invalid(lambda: lib.validate(p), "'activation'")
    p = native.conv_params(**good)
    p.pool = 3
    _expect_invalid(lambda: lib.validate(p), "'pool'")
    p = native.conv_params(**good)
    p.pool = 1  # max2 needs activation relu (the hybrid block)
    _expect_invalid(lambda: lib.validate(p), "'pool'", "relu")
    p = native.conv_params(**good)
    p.input_spectrum = 3
    _expect_invalid(lambda: lib.validate(p), "SpecConv", "'input_spectrum'")
    _expect_invalid(lambda: native.conv_params(**{**good, "input_spectrum": "sparse"}), "'input_spectrum'")
    # Python-side checks name the attribute too
    _expect_invalid(lambda: native.conv_params(**{**good, "activation": "gelu"}), "'activation'")
    _expect_invalid(lambda: native.conv_params(**{**good, "pool": "max3"}), "'pool'")
    _expect_invalid(lambda: native.conv_params(**{**good, "capacity": 2**31}), "'capacity'")
    # bad in_row_words for every op with a packed input
    F = 8 * 4
    S = P.row_words(2, F, 10, "fp32")
    sp = native.conv_params(**{**good, "in_domain": "spectral", "in_row_words": S + 1})
    _expect_invalid(lambda: lib.validate(sp), "SpecConv", "'in_row_words'")
    sp.in_row_words = S
    lib.validate(sp)
    sp.in_row_words = P.row_words(2, F, 2 * F, "fp32") + 2  # capacity > C*F
    _expect_invalid(lambda: lib.validate(sp), "'in_row_words'")
    _expect_invalid(lambda: lib.validate(native.pool_params(C=2, Hs=8, Ws=7, out_Hs=4, out_Ws=4, capacity=5,
                                                            value_dtype="fp32", in_row_words=S - 1)), "SpecPool",
                    "'in_row_words'")
    _expect_invalid(lambda: lib.validate(native.pool_params(C=2, Hs=8, Ws=7, out_Hs=9, out_Ws=4, capacity=5,
                                                            value_dtype="fp32", in_row_words=S)), "'out_Hs'")
    _expect_invalid(lambda: lib.validate(native.pool_params(C=2, Hs=8, Ws=7, out_Hs=4, out_Ws=4, capacity=0,
                                                            value_dtype="fp32", in_row_words=S)), "'capacity'")
    _expect_invalid(lambda: lib.validate(native.to_spatial_params(C=2, Hs=8, Ws=7, value_dtype="fp32",
                                                                  in_row_words=3)), "SpecToSpatial", "'in_row_words'")
    cp = native.concat_params(C=[2, 2], Hs=8, Ws=7, capacity=10, value_dtype="fp32", in_row_words=[S, S + 7])
    _expect_invalid(lambda: lib.validate(cp), "SpecConcat", "'in_row_words[1]'")
    cp = native.concat_params(C=[2, 0], Hs=8, Ws=7, capacity=10, value_dtype="fp32", in_row_words=[S, S])
    _expect_invalid(lambda: lib.validate(cp), "'C[1]'")
    cp = native.concat_params(C=[2, 2], Hs=8, Ws=7, capacity=4 * F + 1, value_dtype="fp32", in_row_words=[S, S])
    _expect_invalid(lambda: lib.validate(cp), "'capacity'")
    # array-level calls surface the same errors
    x = np.zeros((1, 2, 6, 5), dtype=np.float32)
    w = np.zeros((3, 2, 3, 3), dtype=np.float32)
    _expect_invalid(lambda: lib.spec_conv(x, w, None, **{k: v for k, v in good.items() if k not in ("O", "H", "W")}
                                          | {"beta": -0.5}), "'beta'")


def test_forward_errors_and_edge_calls(host_lib):
    lib = host_lib
    rng = np.random.default_rng(5)
    x = make_packed(rng, 2, 2, 8, 7, "fp32")
    p = native.pool_params(C=2, Hs=8, Ws=7, out_Hs=4, out_Ws=4, capacity=5, value_dtype="fp32", in_row_words=x.shape[1])
    S = lib.out_row_words(p)
    y = np.zeros((2, S), dtype=np.int32)
    need = lib.spec_pool_workspace_size(p, 2)
    ws = np.zeros(need + 64, dtype=np.uint8)
    with pytest.raises(native.NativeError) as ei:
        lib.spec_pool_forward_ptr(p, 2, x.ctypes.data, y.ctypes.data, ws.ctypes.data, need - 1)
    assert ei.value.status == native.SD_ERR_WORKSPACE and "workspace" in str(ei.value)
    with pytest.raises(native.NativeInvalidArgument):
        lib.spec_pool_forward_ptr(p, -1, x.ctypes.data, y.ctypes.data, ws.ctypes.data, need)
    with pytest.raises(native.NativeInvalidArgument, match="'x'"):
        lib.spec_pool_forward_ptr(p, 2, 0, y.ctypes.data, ws.ctypes.data, need)
    lib.spec_pool_forward_ptr(p, 0, 0, 0, 0, 0)  # batch 0: nothing to do
    # an unaligned workspace works
    lib.spec_pool_forward_ptr(p, 2, x.ctypes.data, y.ctypes.data, ws.ctypes.data + 3, need)
    ref = R.spec_pool(x, C=2, Hs=8, Ws=7, out_Hs=4, out_Ws=4, capacity=5, value_dtype="fp32")
    assert np.array_equal(y, ref)
    # a corrupt input row (offsets past capacity) never reads out of bounds
    bad = x.copy()
    lay = P.Layout.from_row_words(2, P.num_coeffs(8, 7), x.shape[1], "fp32")
    bad[:, lay.offsets_start : lay.values_start] = 10**6
    lib.spec_pool_forward_ptr(p, 2, bad.ctypes.data, y.ctypes.data, ws.ctypes.data, need)
    P.validate(y, 2, P.num_coeffs(4, 4), "fp32")
    assert lib.last_error() == ""


def test_load_errors(tmp_path):
    with pytest.raises(native.NativeLibraryError, match="build-plugins"):
        native.load("host", tmp_path / "nope" / "libspecdeploy_host.so")
    junk = tmp_path / "libjunk.so"
    junk.write_bytes(b"not an elf")
    with pytest.raises(native.NativeLibraryError, match="cannot load"):
        native.load("host", junk)
    with pytest.raises(ValueError):
        native.load("tpu")


def test_module_level_api_matches_reference_signature(host_lib, monkeypatch):
    """native.spec_* have the reference signatures and use the host library."""
    import inspect

    for name in ("spec_conv", "spec_pool", "spec_to_spatial", "spec_concat"):
        assert inspect.signature(getattr(native, name)).parameters.keys() == \
            inspect.signature(getattr(R, name)).parameters.keys(), name
    monkeypatch.setenv("SPECDEPLOY_HOST_LIB", str(host_lib.path))
    rng = np.random.default_rng(9)
    x = make_packed(rng, 1, 2, 6, 6, "fp16")
    assert np.array_equal(
        native.spec_pool(x, C=2, Hs=6, Ws=6, out_Hs=3, out_Ws=3, capacity=8, value_dtype="fp16"),
        R.spec_pool(x, C=2, Hs=6, Ws=6, out_Hs=3, out_Ws=3, capacity=8, value_dtype="fp16"),
    )


@pytest.mark.slow
def test_cpp_tests_under_sanitizers(tmp_path_factory):
    """plugins/tests/packed_test.cpp (fp16 RNE, grid levels, random access, the pipeline vs an encoder
    written from the contract, every op's host path) and hybrid_test.cpp (the hybrid SpecConv vs a
    double-precision spatial-domain §2b) built with ASan + UBSan, run once each."""
    bdir = tmp_path_factory.mktemp("plugins_sanitize_build")
    try:
        native.build("host", bdir, sanitize=True)
    except native.NativeBuildError as e:
        pytest.fail(f"the sanitizer build failed:\n{e}")
    for name in native.CPP_TESTS:
        r = subprocess.run([str(bdir / name)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{name} failed (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
        assert "all checks passed" in r.stdout, name


# ------------------------------------------------------------------------------------------------
# nvcc: every .cu compiles for every listed architecture (compile + link only; runs in CI)


def _find_nvcc() -> str | None:
    return shutil.which("nvcc") or next(
        (str(p) for p in (Path("/usr/local/cuda/bin/nvcc"),) if p.exists()), None
    )


@pytest.mark.slow
def test_cuda_library_compiles_for_all_archs(tmp_path_factory):
    nvcc = _find_nvcc()
    if nvcc is None:
        pytest.fail("nvcc not found (PATH, /usr/local/cuda/bin): the CI image must provide the CUDA toolkit to "
                    "compile plugins/*.cu; install it or put nvcc on PATH")
    listed = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True).stdout
    want = ["87", "90"] + [a for a in ("101", "110") if f"compute_{a}" in listed]
    bdir = tmp_path_factory.mktemp("plugins_cuda_build")
    try:
        lib = native.build("cuda", bdir)
    except native.NativeBuildError as e:
        pytest.fail(f"nvcc failed to build libspecdeploy_kernels:\n{e}")
    assert lib.exists() and lib.name == "libspecdeploy_kernels.so"
    log = (bdir / native.BUILD_LOG).read_text()
    cu_files = sorted(p.relative_to(native.PLUGINS_DIR) for p in native.PLUGINS_DIR.rglob("*.cu")
                      if "trt" not in p.parts)
    assert len(cu_files) >= 5
    for cu in cu_files:
        lines = [ln for ln in log.splitlines() if str(cu) in ln and "nvcc" in ln and " -c " in ln]
        assert lines, f"{cu} was not compiled by nvcc"
        for a in want:
            assert re.search(rf"sm_{a}\b", lines[0]), f"{cu} not compiled for sm_{a}: {lines[0][:400]}"
    # the C ABI is exported by the CUDA library
    nm = shutil.which("nm")
    if nm:
        syms = subprocess.run([nm, "-D", "--defined-only", str(lib)], capture_output=True, text=True).stdout
        for fn in ("sd_abi_version", "sd_check_device", "sd_spec_conv_forward", "sd_spec_pool_forward",
                   "sd_spec_to_spatial_forward", "sd_spec_concat_forward", "sd_spec_conv_workspace_size"):
            assert re.search(rf"\bT {fn}\b", syms), f"{fn} not exported by {lib}"
