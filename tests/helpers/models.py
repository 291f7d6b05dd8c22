"""Small zoo models "as trained", shared by the export and native-backend tests."""

from __future__ import annotations

from typing import Any

from specdeploy import zoo

#: keyword arguments that make each zoo model small enough for CI (2 CPU cores)
SMALL: dict[str, dict[str, Any]] = {
    "lenet5": {"in_channels": 1},
    "alexnet": {"width": 0.125},
    "vgg16": {"width": 0.125},
    "densenet": {"depth": 10, "growth": 4},
}


def trained_like(name: str, domain: str, **kw: Any) -> zoo.ZooModel:
    """A seeded small model whose normalization/BN statistics moved off their initial values (as trained)."""
    import torch

    torch.manual_seed(0)
    # the paper block unless told (these fixtures predate the hybrid block, which has its own tests)
    m = zoo.create(name, domain=domain, **{**SMALL[name], "block": "paper", **kw})
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(8, m.config.in_channels, 32, 32))
    return m.eval()
