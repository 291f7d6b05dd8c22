"""Every zoo model runs in both domains, learns on real data, and its twin matches its structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from specdeploy import data, zoo
from specdeploy.nn import SpecConv2d, SpecPool2d, fold_normalization, spec_convs

SMALL = {
    "lenet5": {"in_channels": 1},
    "alexnet": {"width": 0.125},
    "vgg16": {"width": 0.125},
    "densenet": {"depth": 10, "growth": 4},
}


@pytest.fixture(scope="module")
def fashion_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """64 real Fashion-MNIST training images, padded to 32x32, normalized."""
    ds = data.prepare("fashion-mnist", "train", 32, 1, samples=64, seed=0)
    return torch.from_numpy(data.normalize(ds.images, ds.name)), torch.from_numpy(ds.labels)


def _inputs(cfg: zoo.ModelConfig, x1: torch.Tensor) -> torch.Tensor:
    return x1.expand(-1, cfg.in_channels, -1, -1).contiguous()


# (domain, block): the twin, and the spectral model in each block
VARIANTS = [("spatial", "paper"), ("spectral", "paper"), ("spectral", "hybrid")]


@pytest.mark.parametrize("name", zoo.MODELS)
@pytest.mark.parametrize("domain,block", VARIANTS)
def test_forward_both_domains(name: str, domain: str, block: str) -> None:
    model = zoo.create(name, domain=domain, block=block, **SMALL[name])
    x = torch.randn(3, model.config.in_channels, 32, 32)
    model.train()
    model(x)  # running statistics from this batch, as a trained model would have them
    y = model.eval()(x)
    assert y.shape == (3, 10) and torch.isfinite(y).all()
    if domain == "spectral":
        assert len(spec_convs(model)) > 0
        kept = [layer.last_kept_fraction for _, layer in spec_convs(model)]
        assert all(0.0 <= f <= 1.0 for f in kept) and kept[0] > 0.0
        if block == "paper":  # its normalization takes the first batch's statistics outright
            assert all(f > 0.0 for f in kept)


def _spectral_stages(model: zoo.ZooModel) -> list:
    """Convs as (in, out, k) and pools as "P"; a hybrid conv that pools counts as conv then pool."""
    stages: list = []
    for m in model.features.modules():
        if isinstance(m, SpecConv2d):
            stages.append((m.in_channels, m.out_channels, m.kernel_size))
            if m.pool != "none":
                stages.append("P")
        elif isinstance(m, SpecPool2d):
            stages.append("P")
    return stages


@pytest.mark.parametrize("name", zoo.MODELS)
@pytest.mark.parametrize("block", zoo.BLOCKS)
def test_twin_has_same_structure(name: str, block: str) -> None:
    """Same conv count, channels, kernel sizes and pooling positions in both domains."""
    spec = zoo.create(name, domain="spectral", block=block, **SMALL[name])
    twin = zoo.create(name, domain="spatial", **SMALL[name])
    s_layers = _spectral_stages(spec)
    t_layers = [(m.in_channels, m.out_channels, m.kernel_size[0]) if isinstance(m, nn.Conv2d) else "P"
                for m in twin.features.modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    assert s_layers == t_layers
    assert type(spec.head[-1]) is type(twin.head[-1]) and spec.head[-1].out_features == twin.head[-1].out_features


@pytest.mark.parametrize("name", zoo.MODELS)
@pytest.mark.parametrize("domain,block", VARIANTS)
def test_sgd_steps_on_real_data_reduce_loss(name: str, domain: str, block: str,
                                            fashion_batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = zoo.create(name, domain=domain, block=block, **SMALL[name])
    x, y = _inputs(model.config, fashion_batch[0]), fashion_batch[1]
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(loss_fn(model(x), y))

    model.train()
    model(x)  # one pass to set the normalization's running statistics
    before = eval_loss()
    for _ in range(25):
        model.train()
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    after = eval_loss()
    assert after < 0.85 * before, f"{name}/{domain}/{block}: loss {before:.3f} -> {after:.3f}"


def test_unknown_model_and_bad_config() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        zoo.create("resnet")
    with pytest.raises(ValueError, match="beta"):
        zoo.create("lenet5", beta=-1.0)
    with pytest.raises(ValueError, match="depth"):
        zoo.create("densenet", depth=41)


def test_config_round_trip() -> None:
    cfg = zoo.ModelConfig(model="vgg16", beta=0.5, width=0.25)
    assert zoo.ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert zoo.twin_config(cfg).domain == "spatial"
    with pytest.raises(ValueError, match="unknown model config keys"):
        zoo.ModelConfig.from_dict({**cfg.to_dict(), "colour": "red"})


@pytest.mark.parametrize("name, kw", [
    ("vgg16", {"block": "paper", "width": 0.125}),
    ("densenet", {"block": "hybrid", "depth": 10, "growth": 4, "beta": 0.3}),
])
def test_folding_keeps_model_outputs(fashion_batch: tuple[torch.Tensor, torch.Tensor], name: str,
                                     kw: dict) -> None:
    """Folding the normalization (paper: the spectral channel norm; hybrid: also the BN on the spatial
    map) into the weights leaves the model's outputs as they were."""
    torch.manual_seed(1)
    model = zoo.create(name, domain="spectral", in_channels=1, **kw)
    x = fashion_batch[0][:16]
    model.train()
    for _ in range(3):
        model(x)
    model.eval()
    before = model(x)
    fold_normalization(model)
    assert not any(layer.norm or layer.bn is not None for _, layer in spec_convs(model))
    np.testing.assert_allclose(model(x).detach().numpy(), before.detach().numpy(), atol=1e-4)


def test_hybrid_pools_like_the_twin_without_floor() -> None:
    """Hybrid VGG16 halves (ceil) 34 -> 17 -> 9 -> 5 -> 3 -> 2 inside its convs: no SpecPool, no 8x8 floor."""
    spec = zoo.create("vgg16", block="hybrid", width=0.125)
    assert not any(isinstance(m, SpecPool2d) for m in spec.modules())
    convs = [m for _, m in spec_convs(spec)]
    assert all(m.activation == "relu" and m.bn is not None and m.bias is None for m in convs)
    assert [m.out_Hs for m in convs if m.pool == "max2"] == [17, 9, 5, 3, 2]
    assert spec.to_spatial.Hs == 2 and spec.head[-1].in_features == convs[-1].out_channels * 2 * 2
    paper = zoo.create("vgg16", block="paper", width=0.125)
    assert paper.to_spatial.Hs == 8  # the paper block keeps its floor


def test_hybrid_densenet_transitions_pool_in_their_conv() -> None:
    m = zoo.create("densenet", block="hybrid", depth=10, growth=4)
    pooling = [(n, c.kernel_size, c.Hs, c.out_Hs) for n, c in spec_convs(m) if c.pool != "none"]
    assert [p[1:] for p in pooling] == [(1, 34, 17), (1, 17, 9)]  # the two 1x1 transition convs
    assert not any(isinstance(c, SpecPool2d) for c in m.modules())


def test_block_config() -> None:
    cfg = zoo.ModelConfig(model="lenet5", block="hybrid")
    assert cfg.activation == "relu"  # the stored config says what runs
    assert zoo.ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert zoo.ModelConfig(model="lenet5").block == zoo.DEFAULT_BLOCK == "hybrid"
    old = zoo.ModelConfig(model="lenet5", block="paper").to_dict()
    del old["block"]  # a config written before blocks existed
    assert zoo.ModelConfig.from_dict(old).block == "paper"
    with pytest.raises(ValueError, match="unknown block 'spatial'"):
        zoo.ModelConfig(model="lenet5", block="spatial")
    with pytest.raises(ValueError, match="activation 'none' belongs to the paper block"):
        zoo.ModelConfig(model="lenet5", block="hybrid", activation="none")
    with pytest.raises(ValueError, match="use block='hybrid' for 'relu'"):
        zoo.ModelConfig(model="lenet5", block="paper", activation="relu")
