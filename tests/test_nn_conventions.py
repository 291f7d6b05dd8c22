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
    spatial_pool,
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
        SpecConv2d(1, 1, 3, in_domain="spectral", Hs=8, Ws=8, beta=1, activation="sigmoid")
    with pytest.raises(ValueError, match="pool 'max2' needs activation 'relu'"):
        SpecConv2d(1, 1, 3, in_domain="spectral", Hs=8, Ws=8, beta=1, activation="tanh", pool="max2")
    with pytest.raises(ValueError, match="pool must be one of"):
        SpecConv2d(1, 1, 3, in_domain="spectral", Hs=8, Ws=8, beta=1, activation="relu", pool="max3")
    layer = SpecConv2d(1, 1, 3, in_domain="spectral", Hs=8, Ws=8, beta=1)
    with pytest.raises(ValueError, match="spectral input"):
        layer(torch.randn(1, 1, 8, 8))


# ---- hybrid block (DESIGN §2b) -------------------------------------------------------------------


def hybrid_layer(C: int, O: int, k: int, in_domain: str, Hs: int, Ws: int, pool: str = "none", beta: float = 0.0,
                 seed: int = 0) -> SpecConv2d:
    """A "relu" layer with BatchNorm in eval mode holding non-trivial statistics and affine parameters."""
    torch.manual_seed(seed)
    layer = SpecConv2d(C, O, k, in_domain=in_domain, Hs=Hs, Ws=Ws, beta=beta, activation="relu", pool=pool,
                       bias=True, norm=True)
    with torch.no_grad():
        layer.bias.normal_()
        layer.bn.running_mean.normal_()
        layer.bn.running_var.uniform_(0.5, 2.0)
        layer.bn.weight.uniform_(0.5, 1.5)
        layer.bn.bias.normal_()
    return layer.eval()


def reference_pool(y: np.ndarray, pool: str) -> np.ndarray:
    """2x2 stride-2 ceil-mode pooling over the pixels that exist, written out window by window."""
    if pool == "none":
        return y
    H, W = y.shape[-2:]
    out = np.zeros(y.shape[:-2] + ((H + 1) // 2, (W + 1) // 2), dtype=np.float64)
    for i in range(out.shape[-2]):
        for j in range(out.shape[-1]):
            win = y[..., 2 * i: 2 * i + 2, 2 * j: 2 * j + 2]
            out[..., i, j] = win.max(axis=(-2, -1)) if pool == "max2" else win.mean(axis=(-2, -1))
    return out


def reference_hybrid(layer: SpecConv2d, x: torch.Tensor) -> np.ndarray:
    """§2b steps 1-3 in float64 from the spatial input: convolution (full, zero-padded for a first layer;
    circular "same" with the kernel centred otherwise), + bias, BatchNorm (eval), ReLU, pool."""
    w = layer.weight.detach().double()
    k = layer.kernel_size
    if layer.in_domain == "spatial":
        y = Fn.conv2d(x.double(), w.flip(-1, -2), padding=k - 1)
    else:
        # y_o[i, j] = sum_c sum_uv w[o, c, u, v] x_c[i - (u - k//2), j - (v - k//2)]  (indices mod Hs, Ws)
        y = torch.zeros(x.shape[0], layer.out_channels, *x.shape[-2:], dtype=torch.float64)
        for u in range(k):
            for v in range(k):
                shifted = torch.roll(x.double(), shifts=(u - k // 2, v - k // 2), dims=(-2, -1))
                y += torch.einsum("bchw,oc->bohw", shifted, w[:, :, u, v])
    y = y + layer.bias.detach().double()[None, :, None, None]
    bn = layer.bn
    s = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double()
    y = (y - bn.running_mean.double()[None, :, None, None]) * s[None, :, None, None] + bn.bias.detach().double()[None, :, None, None]
    return reference_pool(torch.relu(y).numpy(), layer.pool)


@pytest.mark.parametrize("pool", ["none", "max2", "avg2"])
@pytest.mark.parametrize("H,W,k", [(8, 8, 3), (15, 15, 3), (7, 10, 5), (12, 9, 1)])
def test_hybrid_first_layer_is_full_conv_bn_relu_pool(H: int, W: int, k: int, pool: str) -> None:
    layer = hybrid_layer(3, 4, k, "spatial", H + k - 1, W + k - 1, pool=pool)
    x = torch.randn(2, 3, H, W)
    with torch.no_grad():
        Z = layer(x)
    full = (H + k - 1, W + k - 1)
    assert (layer.out_Hs, layer.out_Ws) == (full if pool == "none" else ((full[0] + 1) // 2, (full[1] + 1) // 2))
    assert Z.shape == (2, 4, layer.out_Hs, layer.out_Ws // 2 + 1)
    got = torch.fft.irfft2(Z, s=(layer.out_Hs, layer.out_Ws), norm="ortho").numpy()
    np.testing.assert_allclose(got, reference_hybrid(layer, x), atol=2e-5 * max(1.0, float(np.abs(got).max())))


@pytest.mark.parametrize("pool", ["none", "max2", "avg2"])
@pytest.mark.parametrize("Hs,Ws,k", [(8, 8, 3), (17, 17, 3), (9, 6, 3), (11, 13, 5), (6, 6, 4), (5, 5, 1)])
def test_hybrid_spectral_layer_is_circular_same_conv_bn_relu_pool(Hs: int, Ws: int, k: int, pool: str) -> None:
    layer = hybrid_layer(4, 3, k, "spectral", Hs, Ws, pool=pool)
    x = torch.randn(2, 4, Hs, Ws)
    with torch.no_grad():
        Z = layer(torch.fft.rfft2(x, norm="ortho"))
    got = torch.fft.irfft2(Z, s=(layer.out_Hs, layer.out_Ws), norm="ortho").numpy()
    np.testing.assert_allclose(got, reference_hybrid(layer, x), atol=2e-5 * max(1.0, float(np.abs(got).max())))


@pytest.mark.parametrize("in_domain,Hs,k", [("spatial", 12, 3), ("spectral", 9, 3), ("spectral", 8, 4), ("spectral", 7, 5)])
def test_hybrid_spectral_product_equals_its_spatial_computation(in_domain: str, Hs: int, k: int) -> None:
    """§2b step 1 as written (product with the centred kernel spectrum, bias on DC) and the convolution
    the layer computes in training give the same map, also for a thresholded (conjugate-split) input."""
    layer = hybrid_layer(3, 5, k, in_domain, Hs, Hs + 1)
    if in_domain == "spatial":
        x = torch.randn(2, 3, Hs - k + 1, Hs + 1 - k + 1)
    else:
        x, _ = threshold(torch.fft.rfft2(torch.randn(2, 3, Hs, Hs + 1), norm="ortho"), 0.7)
    with torch.no_grad():
        literal = torch.fft.irfft2(layer.pre_threshold(x), s=(Hs, Hs + 1), norm="ortho")
        computed = layer.spatial_preactivation(x)
    assert rel_err(computed, literal) < 1e-5


@pytest.mark.parametrize("pool", ["none", "max2"])
def test_hybrid_output_is_conjugate_symmetric_and_thresholded(pool: str) -> None:
    layer = hybrid_layer(3, 4, 3, "spectral", 17, 17, pool=pool, beta=0.4)
    x = torch.fft.rfft2(torch.randn(2, 3, 17, 17), norm="ortho")
    with torch.no_grad():
        Z = layer(x)
        layer.beta = 0.0
        Zfull = layer(x)
    assert 0.0 < float((Z != 0).float().mean()) < 1.0
    n = layer.out_Hs
    z = torch.fft.irfft2(Z, s=(n, n), norm="ortho")
    assert torch.allclose(torch.fft.rfft2(z, norm="ortho"), Z, atol=1e-5)
    # the project's fp32 rule: kept exactly where re^2 + im^2 > beta^2, and then unchanged
    mag2 = Zfull.real * Zfull.real + Zfull.imag * Zfull.imag
    keep = mag2 > torch.tensor(0.4, dtype=torch.float32) ** 2
    assert torch.equal(Z, Zfull * keep)


@pytest.mark.parametrize("pool", ["none", "max2", "avg2"])
def test_hybrid_threshold_zero_keeps_everything(pool: str) -> None:
    """At beta 0 the output is exactly the orthonormal spectrum of the pooled ReLU map (no activation on it)."""
    layer = hybrid_layer(2, 3, 3, "spectral", 17, 17, pool=pool, beta=0.0)
    x = torch.fft.rfft2(torch.randn(2, 2, 17, 17), norm="ortho")
    with torch.no_grad():
        Z = layer(x)
        y = layer.bn(layer.spatial_preactivation(x))
        expected = torch.fft.rfft2(spatial_pool(torch.relu(y), pool), norm="ortho")
    assert torch.equal(Z, expected)
    assert layer.last_kept_fraction == float((expected != 0).float().mean())


@pytest.mark.parametrize("pool", ["max2", "avg2"])
def test_ceil_mode_pool_over_existing_pixels(pool: str) -> None:
    """17x17 -> 9x9; the last row/column windows cover the pixels that exist (avg divides by their count)."""
    y = torch.randn(2, 3, 17, 17)
    got = spatial_pool(y, pool)
    assert got.shape == (2, 3, 9, 9)
    np.testing.assert_allclose(got.numpy(), reference_pool(y.numpy().astype(np.float64), pool), atol=1e-6)
    const = spatial_pool(torch.full((1, 1, 17, 17), 2.5), pool)
    assert torch.equal(const, torch.full((1, 1, 9, 9), 2.5))


@pytest.mark.parametrize("in_domain", ["spatial", "spectral"])
@pytest.mark.parametrize("bias", [True, False])
def test_hybrid_batchnorm_folds_exactly(in_domain: str, bias: bool) -> None:
    torch.manual_seed(0)
    Hs = 11
    layer = SpecConv2d(3, 5, 3, in_domain=in_domain, Hs=Hs, Ws=Hs, beta=0.3, activation="relu", pool="max2",
                       bias=bias)
    x = torch.randn(8, 3, Hs - 2, Hs - 2) if in_domain == "spatial" else torch.fft.rfft2(torch.randn(8, 3, Hs, Hs), norm="ortho")
    layer.train()
    for _ in range(5):
        layer(x)  # running statistics
    with torch.no_grad():
        layer.bn.weight.copy_(torch.linspace(0.5, 2.0, 5))
        layer.bn.bias.copy_(torch.linspace(-0.3, 0.3, 5))
        if bias:
            layer.bias.copy_(torch.linspace(1.0, -1.0, 5))
    layer.eval()
    before = layer(x)
    folded = layer.folded()
    assert not folded.norm and folded.bn is None and folded.bias is not None and folded.pool == "max2"
    # the exact §2b formulas
    bn = layer.bn
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b = layer.bias if bias else torch.zeros(5)
    assert torch.equal(folded.weight, layer.weight * s[:, None, None, None])
    assert torch.equal(folded.bias, (b - bn.running_mean) * s + bn.bias)
    after = folded(x)
    assert torch.allclose(before, after, atol=1e-5)
    assert torch.equal(before != 0, after != 0) or float((before - after).abs().max()) < 1e-5


def test_hybrid_gradient_reaches_input_through_kept_coefficients() -> None:
    layer = hybrid_layer(2, 3, 3, "spectral", 9, 9, pool="max2", beta=0.5).train()
    X = torch.fft.rfft2(torch.randn(4, 2, 9, 9), norm="ortho").requires_grad_(True)
    Z = layer(X)
    assert 0 < int((Z != 0).sum()) < Z.numel()
    Z.abs().sum().backward()
    assert X.grad is not None and float(X.grad.abs().max()) > 0
    assert layer.weight.grad is not None and float(layer.weight.grad.abs().max()) > 0
