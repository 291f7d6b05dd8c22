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


@pytest.mark.parametrize("name", zoo.MODELS)
@pytest.mark.parametrize("domain", zoo.DOMAINS)
def test_forward_both_domains(name: str, domain: str) -> None:
    model = zoo.create(name, domain=domain, **SMALL[name])
    x = torch.randn(3, model.config.in_channels, 32, 32)
    model.train()
    model(x)  # running statistics from this batch, as a trained model would have them
    y = model.eval()(x)
    assert y.shape == (3, 10) and torch.isfinite(y).all()
    if domain == "spectral":
        assert len(spec_convs(model)) > 0
        assert all(0.0 < layer.last_kept_fraction <= 1.0 for _, layer in spec_convs(model))


@pytest.mark.parametrize("name", zoo.MODELS)
def test_twin_has_same_structure(name: str) -> None:
    """Same conv count, channels, kernel sizes and pooling positions in both domains."""
    spec = zoo.create(name, domain="spectral", **SMALL[name])
    twin = zoo.create(name, domain="spatial", **SMALL[name])
    s_layers = [(m.in_channels, m.out_channels, m.kernel_size) if isinstance(m, SpecConv2d) else "P"
                for m in spec.features.modules() if isinstance(m, (SpecConv2d, SpecPool2d))]
    t_layers = [(m.in_channels, m.out_channels, m.kernel_size[0]) if isinstance(m, nn.Conv2d) else "P"
                for m in twin.features.modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    assert s_layers == t_layers
    assert type(spec.head[-1]) is type(twin.head[-1]) and spec.head[-1].out_features == twin.head[-1].out_features


@pytest.mark.parametrize("name", zoo.MODELS)
@pytest.mark.parametrize("domain", zoo.DOMAINS)
def test_sgd_steps_on_real_data_reduce_loss(name: str, domain: str, fashion_batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = zoo.create(name, domain=domain, **SMALL[name])
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
    assert after < 0.85 * before, f"{name}/{domain}: loss {before:.3f} -> {after:.3f}"


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


def test_folding_keeps_model_outputs(fashion_batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    torch.manual_seed(1)
    model = zoo.create("vgg16", domain="spectral", in_channels=1, width=0.125)
    x = fashion_batch[0][:16]
    model.train()
    for _ in range(3):
        model(x)
    model.eval()
    before = model(x)
    fold_normalization(model)
    assert not any(layer.norm for _, layer in spec_convs(model))
    np.testing.assert_allclose(model(x).detach().numpy(), before.detach().numpy(), atol=1e-4)
