"""Full-depth SpecVGG16 (13 SpecConvs, 5 pools; width/8) trains on real Fashion-MNIST at beta 1.0."""

from __future__ import annotations

import math

import pytest
import torch

from specdeploy import zoo
from specdeploy.train import TrainConfig, evaluate, loaders_for, train


@pytest.mark.slow
def test_spec_vgg16_trains_on_fashion_mnist() -> None:
    torch.manual_seed(0)
    config = zoo.ModelConfig(model="vgg16", domain="spectral", in_channels=1, beta=1.0, width=0.125, block="paper")
    cfg = TrainConfig(epochs=1, max_steps=200, batch_size=32, lr=0.01, momentum=0.9, seed=0)
    train_loader, test_loader, _ = loaders_for(config, "fashion-mnist", None, cfg, 20000, 500)
    model = zoo.build(config)
    assert len([m for m in model.modules() if type(m).__name__ == "SpecConv2d"]) == 13
    train(model, train_loader, None, cfg, log=lambda _: None)
    ev = evaluate(model, test_loader)
    chance = math.log(10)
    assert ev["loss"] < chance - 0.4, f"test loss {ev['loss']:.3f} not clearly below chance {chance:.3f}"
    assert ev["accuracy"] > 0.3
    assert all(frac > 0.0 for frac in ev["kept"].values()), ev["kept"]
    assert max(ev["kept"].values()) < 0.6  # thresholding really sparsifies
