"""Model zoo: each SpecNet model and its spatial twin, built from one description.

A model is a stack of conv and pool stages plus a head. Heads flatten the whole final map rather
than average-pooling it: global average pooling reads only the DC coefficient of a spectral map, and
in deep SpecNets the DC coefficient is thresholded away (it is real, so its magnitude runs ~sqrt(2)
below the complex coefficients'), which starves the head of signal (measured on SpecVGG16). The same stage list builds both domains, so
the twin has the same depth, channels, kernel sizes, pooling positions and head (DESIGN §1):
- spectral: SpecConv2d (first one from the spatial input), SpecPool2d, SpecConcat, then SpecToSpatial;
- spatial twin: Conv2d(padding k//2) + BatchNorm2d + ReLU, MaxPool2d(2), torch.cat.

Two spectral blocks (DESIGN §2b), chosen by ``block`` (default ``DEFAULT_BLOCK``, "hybrid"):
- "paper": SpecConv2d with tanh per coefficient, SpecPool2d (crop, never below ``min_spectral_size``);
- "hybrid": SpecConv2d with BatchNorm + ReLU on the spatial map, each of the twin's pools fused into
  the conv before it (``pool="max2"``, ceil mode), no floor: the twin's pooling positions and head.
Spatial twins ignore ``block`` (the twin of a hybrid model is the ordinary twin).

``create(name, domain=...)`` returns a ``ZooModel`` whose ``config`` is everything needed to rebuild
it (checkpoints store it as JSON).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from specdeploy.catalog import DOMAINS, MODELS
from specdeploy.nn import SpecConcat, SpecConv2d, SpecPool2d, SpecToSpatial

__all__ = ["BLOCKS", "DOMAINS", "MODELS", "ModelConfig", "ZooModel", "build", "create", "twin_config"]

BLOCKS = ("paper", "hybrid")
"""Spectral blocks: the paper's per-coefficient block and the hybrid one of DESIGN §2b."""
DEFAULT_BLOCK = "hybrid"
"""The block a config gets unless it names one (the CLI's default too): the hybrid block, which kept
the twin's accuracy to 0.2-8 points where the paper block lost 17+ (docs/results.md, zoo study);
"paper" reproduces the seed. Configs stored before blocks existed load as "paper" (``from_dict``)."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a zoo model's architecture (stored in checkpoints)."""

    model: str
    domain: str = "spectral"
    num_classes: int = 10
    in_channels: int = 3
    input_size: int = 32
    width: float = 1.0
    beta: float = 1.0
    # "tanh"/"none" for the paper block; the hybrid block always uses "relu" (its default "tanh" is
    # replaced by "relu" so that the stored config says what runs).
    activation: str = "tanh"
    norm: bool = True
    block: str = DEFAULT_BLOCK
    # Paper block only: spectral pools never shrink a map below this size (the twin still halves). The
    # paper block processes every frequency independently (the product, threshold and tanh are per
    # coefficient), so the head can only see the input frequencies that survive pooling; see
    # docs/models.md. The hybrid block mixes frequencies in its ReLU and pools like the twin.
    min_spectral_size: int = 8
    depth: int = 40  # densenet only
    growth: int = 12  # densenet only

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; known models: {', '.join(MODELS)}")
        if self.domain not in DOMAINS:
            raise ValueError(f"unknown domain {self.domain!r}; expected one of {DOMAINS}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.block not in BLOCKS:
            raise ValueError(f"unknown block {self.block!r}; expected one of {BLOCKS}")
        if self.block == "hybrid":
            if self.activation == "tanh":
                object.__setattr__(self, "activation", "relu")
            elif self.activation != "relu":
                raise ValueError(f"activation {self.activation!r} belongs to the paper block; the hybrid block uses 'relu'")
        elif self.activation not in ("tanh", "none"):
            raise ValueError(f"activation {self.activation!r} is not a paper-block activation ('tanh', 'none'); "
                             "use block='hybrid' for 'relu'")
        if self.num_classes < 2 or self.in_channels < 1 or self.input_size < 4 or self.width <= 0:
            raise ValueError(f"invalid model config {self}")
        if self.model == "densenet" and (self.depth - 4) % 6 != 0:
            raise ValueError(f"densenet depth must be 6n+4 (e.g. 40, 100), got {self.depth}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        # Configs written before the hybrid block existed describe paper models, whatever the default.
        return cls(**{"block": "paper", **d})


class Builder:
    """Appends conv/pool stages in one domain while tracking channels and (spectral or spatial) size."""

    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.spectral = cfg.domain == "spectral"
        self.hybrid = self.spectral and cfg.block == "hybrid"
        self.last_conv: SpecConv2d | None = None  # the hybrid builder fuses the next pool into it
        self.channels = cfg.in_channels
        self.size = cfg.input_size  # spatial size for the twin, spectral size once in the spectral domain
        self.first = True

    def ch(self, c: int) -> int:
        return max(1, int(round(c * self.cfg.width)))

    def conv(self, out_channels: int, k: int) -> nn.Module:
        cfg = self.cfg
        if self.spectral:
            in_domain = "spatial" if self.first else "spectral"
            Hs = self.size + k - 1 if self.first else self.size
            layer: nn.Module = SpecConv2d(
                self.channels, out_channels, k, in_domain=in_domain, Hs=Hs, Ws=Hs,
                beta=cfg.beta, activation=cfg.activation, norm=cfg.norm,
                bias=not (self.hybrid and cfg.norm),  # BatchNorm's shift is the bias, as in the twin
            )
            self.last_conv = layer if self.hybrid else None
            self.size = Hs
        else:
            layer = nn.Sequential(
                nn.Conv2d(self.channels, out_channels, k, padding=k // 2, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            )
        self.first = False
        self.channels = out_channels
        return layer

    def pool(self) -> nn.Module | None:
        """A pooling stage; None for a hybrid model, whose previous conv pools (``pool="max2"``)."""
        if self.hybrid:
            if self.last_conv is None:
                raise ValueError(f"{self.cfg.model}: a hybrid pool must follow a conv")
            self.last_conv.fuse_pool("max2")
            self.size = self.last_conv.out_Hs
            self.last_conv = None
            return None
        if self.spectral:
            out = min(self.size, max((self.size + 1) // 2, self.cfg.min_spectral_size))
            layer: nn.Module = SpecPool2d(self.size, self.size, out, out)
            self.size = layer.out_Hs
        else:
            layer = nn.MaxPool2d(2)
            self.size = self.size // 2
        return layer

    def leave(self) -> nn.Module:
        """Where the features become a real spatial map."""
        return SpecToSpatial(self.size, self.size) if self.spectral else nn.Identity()


class DenseLayer(nn.Module):
    """DenseNet-BC bottleneck: 1x1 conv to 4*growth, 3x3 conv to growth, concatenated to the input."""

    def __init__(self, b: Builder, growth: int) -> None:
        super().__init__()
        c_in = b.channels
        b.last_conv = None  # a pool never fuses into a layer whose output is concatenated
        self.bottleneck = b.conv(4 * growth, 1)
        self.conv = b.conv(growth, 3)
        self.concat = SpecConcat() if b.spectral else None
        b.channels = c_in + growth
        b.last_conv = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.bottleneck(x))
        return self.concat(x, y) if self.concat is not None else torch.cat([x, y], dim=1)


class ZooModel(nn.Module):
    """features -> leave the spectral domain (identity for twins) -> head."""

    def __init__(self, config: ModelConfig, features: nn.Sequential, to_spatial: nn.Module, head: nn.Sequential) -> None:
        super().__init__()
        self.config = config
        self.features = features
        self.to_spatial = to_spatial
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.to_spatial(self.features(x)))


def _lenet5(b: Builder, n: int) -> tuple[list[nn.Module | None], nn.Sequential]:
    layers = [b.conv(b.ch(6), 5), b.pool(), b.conv(b.ch(16), 5), b.pool()]
    feat = b.channels * b.size * b.size
    head = nn.Sequential(
        nn.Flatten(), nn.Linear(feat, b.ch(120)), nn.ReLU(), nn.Linear(b.ch(120), b.ch(84)), nn.ReLU(),
        nn.Linear(b.ch(84), n),
    )
    return layers, head


def _alexnet(b: Builder, n: int) -> tuple[list[nn.Module | None], nn.Sequential]:
    layers = [
        b.conv(b.ch(64), 5), b.pool(), b.conv(b.ch(192), 5), b.pool(),
        b.conv(b.ch(384), 3), b.conv(b.ch(256), 3), b.conv(b.ch(256), 3), b.pool(),
    ]
    feat = b.channels * b.size * b.size
    head = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(feat, b.ch(512)), nn.ReLU(), nn.Linear(b.ch(512), n))
    return layers, head


VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _vgg16(b: Builder, n: int) -> tuple[list[nn.Module | None], nn.Sequential]:
    layers = [b.pool() if v == "M" else b.conv(b.ch(v), 3) for v in VGG16_CFG]
    head = nn.Sequential(nn.Flatten(), nn.Linear(b.channels * b.size * b.size, n))
    return layers, head


def _densenet(b: Builder, n: int) -> tuple[list[nn.Module | None], nn.Sequential]:
    growth = b.ch(b.cfg.growth)
    per_block = (b.cfg.depth - 4) // 6
    layers: list[nn.Module | None] = [b.conv(2 * growth, 3)]
    for block in range(3):
        layers += [DenseLayer(b, growth) for _ in range(per_block)]
        if block < 2:
            layers += [b.conv(b.channels // 2, 1), b.pool()]  # transition, compression 0.5
    head = nn.Sequential(nn.Flatten(), nn.Linear(b.channels * b.size * b.size, n))
    return layers, head


_BUILDERS = {"lenet5": _lenet5, "alexnet": _alexnet, "vgg16": _vgg16, "densenet": _densenet}


def build(config: ModelConfig) -> ZooModel:
    """Build the model a config describes."""
    b = Builder(config)
    layers, head = _BUILDERS[config.model](b, config.num_classes)
    return ZooModel(config, nn.Sequential(*[m for m in layers if m is not None]), b.leave(), head)


def create(name: str, domain: str = "spectral", **kwargs: Any) -> ZooModel:
    """Build a zoo model by name, e.g. ``create("vgg16", domain="spectral", num_classes=10, beta=1.0)``."""
    return build(ModelConfig(model=name, domain=domain, **kwargs))


def twin_config(config: ModelConfig) -> ModelConfig:
    """The config of the other domain's twin of a model."""
    other = "spatial" if config.domain == "spectral" else "spectral"
    return dataclasses.replace(config, domain=other)
