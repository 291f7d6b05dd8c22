"""The numpy reference ops (packed in, packed out) agree with the torch layers on random data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specdeploy import packed, reference
from specdeploy.nn import SpecConv2d, SpecPool2d, SpecToSpatial, complex_tanh

VALUE_DTYPES = ["fp32", "fp16"]


def random_packed(rng: np.random.Generator, B: int, C: int, Hs: int, Ws: int, value_dtype: str,
                  beta: float = 0.6, activation: str = "tanh") -> np.ndarray:
    """A packed spectral map made the way models make them: spectrum of a real map, thresholded, tanh."""
    x = rng.standard_normal((B, C, Hs, Ws)).astype(np.float32) * 2
    Y = np.fft.rfft2(x, norm="ortho").astype(np.complex64).reshape(B, C, -1)
    Z = (np.tanh(Y.real) + 1j * np.tanh(Y.imag)).astype(np.complex64) if activation == "tanh" else Y
    return packed.pack(Y, Z, beta, C * Y.shape[-1], value_dtype)


def torch_pack(Y: torch.Tensor, Z: torch.Tensor, beta: float, capacity: int, value_dtype: str) -> np.ndarray:
    """Pack a torch layer's output with the same selection rule as every runtime."""
    B, O = Y.shape[:2]
    y = Y.detach().numpy().reshape(B, O, -1).astype(np.complex64)
    z = Z.detach().numpy().reshape(B, O, -1).astype(np.complex64)
    return packed.pack(y, z, beta, capacity, value_dtype)


def assert_packed_match(got: np.ndarray, want: np.ndarray, C: int, F: int, value_dtype: str,
                        Y: np.ndarray, t: np.ndarray) -> None:
    """Same kept set except coefficients whose |Y|^2 is within round-off of the threshold; same values."""
    assert got.shape == want.shape
    a = packed.decode(got, C, F, value_dtype)
    b = packed.decode(want, C, F, value_dtype)
    mag2 = (Y.real.astype(np.float64) ** 2 + Y.imag.astype(np.float64) ** 2)
    t2 = (t.astype(np.float64) ** 2)[:, None, None]
    near = np.abs(mag2 - t2) <= 1e-4 * np.maximum(t2, 1e-6) + 1e-7
    differ = a.keep != b.keep
    assert not (differ & ~near).any(), f"{int((differ & ~near).sum())} coefficients differ away from the threshold"
    both = a.keep & b.keep
    tol = 2e-3 if value_dtype == "fp16" else 1e-4
    np.testing.assert_allclose(a.values[both], b.values[both], atol=tol, rtol=tol)
    np.testing.assert_array_equal(a.overflowed, b.overflowed)
    np.testing.assert_array_equal(a.beta_used, b.beta_used)


CONV_CASES = [
    # C, O, Hs, Ws, k, beta
    (3, 4, 10, 10, 3, 0.5),
    (2, 5, 9, 12, 5, 1.0),
    (4, 3, 7, 7, 1, 0.0),
    (1, 6, 16, 17, 3, 1.5),
    (5, 2, 20, 14, 4, 0.8),
]


@pytest.mark.parametrize("value_dtype", VALUE_DTYPES)
@pytest.mark.parametrize("in_domain", ["spatial", "spectral"])
@pytest.mark.parametrize("C,O,Hs,Ws,k,beta", CONV_CASES)
@pytest.mark.parametrize("activation", ["tanh", "none"])
def test_spec_conv_matches_torch(C: int, O: int, Hs: int, Ws: int, k: int, beta: float, in_domain: str,
                                 value_dtype: str, activation: str) -> None:
    rng = np.random.default_rng(hash((C, O, Hs, Ws, k)) % 2**32)
    torch.manual_seed(0)
    layer = SpecConv2d(C, O, k, in_domain=in_domain, Hs=Hs, Ws=Ws, beta=beta, activation=activation,
                       bias=True, norm=False).eval()
    with torch.no_grad():
        layer.bias.normal_()
    F = packed.num_coeffs(Hs, Ws)
    if in_domain == "spatial":
        x_np = rng.standard_normal((3, C, Hs - k + 1, Ws - k + 1)).astype(np.float32)
        x_t = torch.from_numpy(x_np)
    else:
        x_np = random_packed(rng, 3, C, Hs, Ws, value_dtype)
        x_t = torch.from_numpy(packed.decode(x_np, C, F, value_dtype).values.reshape(3, C, Hs, -1))
    w = layer.weight.detach().numpy()
    b = layer.bias.detach().numpy()
    attrs = dict(in_domain=in_domain, C=C, Hs=Hs, Ws=Ws, k=k, beta=beta, activation=activation,
                 value_dtype=value_dtype)
    with torch.no_grad():
        Y = layer.pre_threshold(x_t)
        Z = complex_tanh(Y) if activation == "tanh" else Y
    Yn = Y.numpy().reshape(3, O, F)
    for capacity in (O * F, max(1, O * F // 10)):  # no overflow, then overflow
        ref = reference.spec_conv(x_np, w, b, capacity=capacity, **attrs)
        mine = torch_pack(Y, Z, beta, capacity, value_dtype)
        t = packed.decode(ref, O, F, value_dtype).beta_used
        assert_packed_match(mine, ref, O, F, value_dtype, Yn, t)
        dec = packed.decode(ref, O, F, value_dtype)
        assert (dec.nnz <= capacity).all()
        if capacity < O * F // 4:
            assert dec.overflowed.any()


@pytest.mark.parametrize("value_dtype", VALUE_DTYPES)
@pytest.mark.parametrize("Hs,Ws,out", [(10, 10, None), (9, 9, None), (17, 12, None), (12, 12, (5, 7)), (8, 8, (8, 8))])
def test_spec_pool_matches_torch(Hs: int, Ws: int, out: tuple[int, int] | None, value_dtype: str) -> None:
    rng = np.random.default_rng(Hs * 100 + Ws)
    C = 3
    pool = SpecPool2d(Hs, Ws, *(out or (None, None)))
    x = random_packed(rng, 2, C, Hs, Ws, value_dtype)
    F, F2 = packed.num_coeffs(Hs, Ws), packed.num_coeffs(pool.out_Hs, pool.out_Ws)
    dec = packed.decode(x, C, F, value_dtype)
    with torch.no_grad():
        vals = pool(torch.from_numpy(dec.values.reshape(2, C, Hs, -1))).numpy().reshape(2, C, F2)
        keep = pool(torch.from_numpy(dec.keep.reshape(2, C, Hs, -1).astype(np.complex64))).numpy().reshape(2, C, F2) != 0
    ref = reference.spec_pool(x, C=C, Hs=Hs, Ws=Ws, out_Hs=pool.out_Hs, out_Ws=pool.out_Ws, capacity=C * F2,
                              value_dtype=value_dtype)
    got = packed.decode(ref, C, F2, value_dtype)
    np.testing.assert_array_equal(got.keep, keep)
    tol = 1e-3 if value_dtype == "fp16" else 1e-6
    np.testing.assert_allclose(got.values, vals, atol=tol)
    assert int(got.nnz.sum()) <= int(dec.nnz.sum())


def test_spec_pool_overflow_keeps_largest() -> None:
    rng = np.random.default_rng(3)
    C, Hs = 2, 12
    # activation none: saturated tanh values tie in one grid step and would all be dropped together
    x = random_packed(rng, 2, C, Hs, Hs, "fp32", beta=0.0, activation="none")
    F2 = packed.num_coeffs(6, 6)
    ref = reference.spec_pool(x, C=C, Hs=Hs, Ws=Hs, out_Hs=6, out_Ws=6, capacity=10, value_dtype="fp32")
    full = reference.spec_pool(x, C=C, Hs=Hs, Ws=Hs, out_Hs=6, out_Ws=6, capacity=C * F2, value_dtype="fp32")
    got, all_ = packed.decode(ref, C, F2, "fp32"), packed.decode(full, C, F2, "fp32")
    assert got.overflowed.all() and (got.nnz <= 10).all() and (got.beta_used > 0).all()
    for s in range(2):
        kept = np.abs(got.values[s][got.keep[s]])
        dropped = np.abs(all_.values[s][all_.keep[s] & ~got.keep[s]])
        assert 0 < len(kept) <= 10 and kept.min() >= dropped.max()


@pytest.mark.parametrize("value_dtype", VALUE_DTYPES)
@pytest.mark.parametrize("Hs,Ws", [(8, 8), (9, 7), (12, 13)])
def test_spec_to_spatial_matches_torch(Hs: int, Ws: int, value_dtype: str) -> None:
    rng = np.random.default_rng(Hs + Ws)
    C = 4
    x = random_packed(rng, 2, C, Hs, Ws, value_dtype)
    dec = packed.decode(x, C, packed.num_coeffs(Hs, Ws), value_dtype)
    want = SpecToSpatial(Hs, Ws)(torch.from_numpy(dec.values.reshape(2, C, Hs, -1))).numpy()
    got = reference.spec_to_spatial(x, C=C, Hs=Hs, Ws=Ws, value_dtype=value_dtype)
    assert got.dtype == np.float32 and got.shape == (2, C, Hs, Ws)
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("value_dtype", VALUE_DTYPES)
def test_spec_concat_matches_torch(value_dtype: str) -> None:
    rng = np.random.default_rng(7)
    Hs, Ws = 9, 10
    F = packed.num_coeffs(Hs, Ws)
    parts = [random_packed(rng, 2, c, Hs, Ws, value_dtype) for c in (2, 3, 1)]
    ref = reference.spec_concat(parts, C=[2, 3, 1], Hs=Hs, Ws=Ws, capacity=6 * F, value_dtype=value_dtype)
    got = packed.decode(ref, 6, F, value_dtype)
    decs = [packed.decode(p, c, F, value_dtype) for p, c in zip(parts, (2, 3, 1))]
    want = torch.cat([torch.from_numpy(d.values) for d in decs], 1).numpy()
    np.testing.assert_array_equal(got.values, want)
    np.testing.assert_array_equal(got.keep, np.concatenate([d.keep for d in decs], 1))
    assert not got.overflowed.any()


def test_reference_rejects_bad_attributes() -> None:
    from specdeploy.ops import OpAttributeError

    w = np.zeros((2, 1, 3, 3), np.float32)
    x = np.zeros((1, 1, 6, 6), np.float32)
    good = dict(in_domain="spatial", C=1, Hs=8, Ws=8, k=3, beta=1.0, activation="tanh", capacity=10, value_dtype="fp32")
    for attr, bad, words in [("beta", -0.5, "beta"), ("capacity", 0, "capacity"), ("capacity", 2 * 40 + 1, "C*F"),
                             ("activation", "gelu", "activation"), ("pool", "max2", "pool"),
                             ("value_dtype", "bf16", "value_dtype"),
                             ("in_domain", "time", "in_domain"), ("Hs", 9, "Hs")]:
        with pytest.raises(OpAttributeError, match=words):
            reference.spec_conv(x, w, None, **{**good, attr: bad})
    with pytest.raises(OpAttributeError, match="out_Hs"):
        reference.spec_pool(np.zeros((1, 10), np.int32), C=1, Hs=4, Ws=4, out_Hs=5, out_Ws=2, capacity=1,
                            value_dtype="fp32")
