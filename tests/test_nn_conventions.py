"""The torch layers implement DESIGN.md §2 exactly: convolution theorem, bias, symmetry, pooling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as Fn

from specdeploy.nn import (
    SpecConcat,
    SpecConv2d,
    SpecPool2d,
    SpecToSpatial,
    complex_tanh,
    fold_normalization,
    spec_convs,
    threshold,
)

torch.set_default_dtype(torch.float32)


def conv_layer(C: int, O: int, k: int, in_domain: str, Hs: int, Ws: int, beta: float = 0.0,
               activation: str = "none", bias: bool = False, seed: int = 0) -> SpecConv2d:
    torch.manual_seed(seed)
    layer = SpecConv2d(C, O, k, in_domain=in_domain, Hs=Hs, Ws=Ws, beta=beta, activation=activation,
                       bias=bias, norm=False)
    return layer.eval()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).detach())


@pytest.mark.parametrize("H,W,k", [(8, 8, 3), (7, 10, 5), (12, 9, 1), (6, 6, 4)])
def test_spatial_first_layer_is_full_linear_convolution(H: int, W: int, k: int) -> None:
    C, O = 3, 4
    layer = conv_layer(C, O, k, "spatial", H + k - 1, W + k - 1)
    x = torch.randn(2, C, H, W)
    out = SpecToSpatial(layer.Hs, layer.Ws)(layer(x))
    # true convolution == torch's cross-correlation with the flipped kernel
    expected = Fn.conv2d(x, layer.weight.flip(-1, -2), padding=k - 1)
    assert out.shape == expected.shape == (2, O, H + k - 1, W + k - 1)
    assert rel_err(out, expected) < 1e-4


@pytest.mark.parametrize("Hs,Ws,k", [(8, 8, 3), (9, 6, 3), (11, 13, 5), (5, 5, 1)])
def test_spectral_layer_is_circular_convolution(Hs: int, Ws: int, k: int) -> None:
    C, O = 4, 3
    layer = conv_layer(C, O, k, "spectral", Hs, Ws)
    x = torch.randn(2, C, Hs, Ws)
    X = torch.fft.rfft2(x, norm="ortho")
    out = SpecToSpatial(Hs, Ws)(layer(X))
    xp = Fn.pad(x, (k - 1, 0, k - 1, 0), mode="circular")
    expected = Fn.conv2d(xp, layer.weight.flip(-1, -2))
    assert rel_err(out, expected) < 1e-4


@torch.no_grad()
def test_bias_lands_on_dc_only() -> None:
    layer = conv_layer(2, 3, 3, "spectral", 8, 8, bias=True)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
    X = torch.fft.rfft2(torch.randn(1, 2, 8, 8), norm="ortho")
    with_bias = layer(X)
    layer.bias.data.zero_()
    diff = with_bias - layer(X)
    assert torch.allclose(diff[:, :, 0, 0].real, torch.tensor([[1.0, -2.0, 0.5]]) * 8, atol=1e-4)
    diff[:, :, 0, 0] = 0
    assert float(diff.abs().max()) == 0.0
    # in the spatial domain the bias is a constant offset of every pixel
    spatial = SpecToSpatial(8, 8)(with_bias) - SpecToSpatial(8, 8)(layer(X))
    assert torch.allclose(spatial, torch.tensor([1.0, -2.0, 0.5])[None, :, None, None].expand_as(spatial), atol=1e-5)


@pytest.mark.parametrize("Hs,Ws", [(8, 8), (9, 7), (10, 11)])
@pytest.mark.parametrize("activation", ["tanh", "none"])
def test_threshold_and_activation_keep_conjugate_symmetry(Hs: int, Ws: int, activation: str) -> None:
    layer = conv_layer(3, 4, 3, "spatial", Hs, Ws, beta=0.8, activation=activation, bias=True)
    x = torch.randn(2, 3, Hs - 2, Ws - 2) * 3
    with torch.no_grad():
        Z = layer(x)
    assert 0.0 < layer.last_kept_fraction < 1.0
    # The full spectrum of Z (Hermitian completion) inverse-transforms to a real map: compare the
    # half spectrum with the rfft2 of irfft2(Z); only a Hermitian-consistent Z survives the round trip.
    z = torch.fft.irfft2(Z, s=(Hs, Ws), norm="ortho")
    assert torch.allclose(torch.fft.rfft2(z, norm="ortho"), Z, atol=1e-5)
    # zeros stay zero
    Y = layer.pre_threshold(x)
    dropped = (Y.real**2 + Y.imag**2) <= 0.8**2
    assert bool((Z[dropped] == 0).all())
    if activation == "tanh":
        assert float(Z.real.abs().max()) <= 1.0 and float(Z.imag.abs().max()) <= 1.0


def test_threshold_gradient_only_through_kept() -> None:
    layer = conv_layer(2, 2, 3, "spectral", 8, 8, beta=1.0, activation="tanh")
    X = (torch.fft.rfft2(torch.randn(1, 2, 8, 8) * 2, norm="ortho")).requires_grad_(True)
    Y = layer.pre_threshold(X)
    Y.retain_grad()
    Zt, keep = threshold(Y, 1.0)
    complex_tanh(Zt).abs().sum().backward()
    g = Y.grad
    assert 0 < int(keep.sum()) < keep.numel()
    assert float(g[~keep].abs().max()) == 0.0
    assert float(g[keep].abs().max()) > 0.0
    assert X.grad is not None and float(X.grad.abs().max()) > 0.0


@pytest.mark.parametrize("Hs,Ws", [(8, 8), (9, 9), (7, 10), (17, 17)])
def test_spec_pool_of_constant_keeps_constant(Hs: int, Ws: int) -> None:
    x = torch.full((1, 2, Hs, Ws), 3.25)
    pool = SpecPool2d(Hs, Ws)
    out = SpecToSpatial(pool.out_Hs, pool.out_Ws)(pool(torch.fft.rfft2(x, norm="ortho")))
    assert out.shape == (1, 2, math.ceil(Hs / 2), math.ceil(Ws / 2))
    assert torch.allclose(out, torch.full_like(out, 3.25), atol=1e-5)


def test_spec_pool_never_creates_nonzeros() -> None:
    torch.manual_seed(1)
    X = torch.fft.rfft2(torch.randn(2, 3, 12, 12), norm="ortho")
    X = X * (torch.rand(X.shape) < 0.3)
    pool = SpecPool2d(12, 12)
    out = pool(X)
    # every output coefficient comes from one input coefficient; count non-zeros in the kept band
    rows = pool.rows
    band = X.index_select(-2, rows)[..., : pool.out_Ws // 2 + 1]
    assert bool(((out != 0) == (band != 0)).all())
    assert int((out != 0).sum()) <= int((X != 0).sum())


def test_spec_concat_is_channel_concat() -> None:
    a, b = torch.randn(1, 2, 4, 3, dtype=torch.complex64), torch.randn(1, 3, 4, 3, dtype=torch.complex64)
    assert torch.equal(SpecConcat()(a, b), torch.cat([a, b], 1))


@pytest.mark.parametrize("in_domain", ["spatial", "spectral"])
def test_normalization_folds_exactly(in_domain: str) -> None:
    torch.manual_seed(0)
    Hs = 10
    layer = SpecConv2d(3, 5, 3, in_domain=in_domain, Hs=Hs, Ws=Hs, beta=0.5, activation="tanh", norm=True)
    x = torch.randn(8, 3, Hs - 2, Hs - 2) if in_domain == "spatial" else torch.fft.rfft2(torch.randn(8, 3, Hs, Hs), norm="ortho")
    layer.train()
    for _ in range(5):
        layer(x)  # accumulate running statistics
    with torch.no_grad():
        layer.gain.copy_(torch.linspace(0.5, 2.0, 5))
    layer.eval()
    before = layer(x)
    folded = layer.folded()
    after = folded(x)
    assert not folded.norm
    assert torch.allclose(before, after, atol=1e-5)
    # the normalized output channels have unit-ish RMS in training mode
    layer.train()
    Y = layer.pre_threshold(x)
    rms = (Y.abs() ** 2).mean(dim=(0, 2, 3)).sqrt()
    assert torch.allclose(rms / torch.linspace(0.5, 2.0, 5), torch.ones(5), atol=0.05)


def test_fold_normalization_on_module_tree() -> None:
    from specdeploy import zoo

    m = zoo.create("densenet", in_channels=1, depth=10, growth=4).eval()
    x = torch.randn(2, 1, 32, 32)
    before = m(x)
    fold_normalization(m)
    assert all(not layer.norm for _, layer in spec_convs(m))
    assert torch.allclose(before, m(x), atol=1e-4)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="beta"):
        SpecConv2d(1, 1, 3, in_domain="spectral", Hs=8, Ws=8, beta=-1)
    with pytest.raises(ValueError, match="activation"):
        SpecConv2d(1, 1, 3, in_domain="spectral", Hs=8, Ws=8, beta=1, activation="relu")
    layer = SpecConv2d(1, 1, 3, in_domain="spectral", Hs=8, Ws=8, beta=1)
    with pytest.raises(ValueError, match="spectral input"):
        layer(torch.randn(1, 1, 8, 8))
