"""Checkpoints: safetensors weights + a JSON config. Loading never unpickles.

Layout of a checkpoint directory ``runs/NAME/``:
- ``model.safetensors``: the state dict (parameters and buffers), nothing executable;
- ``config.json``: ``{"format": "specdeploy-checkpoint", "format_version": 1, "specdeploy_version",
  "model": ModelConfig, "data": {...}, "input_shape": [C, H, W], "classes": [...], "metrics": {...},
  "training": {...}}``.

``load`` rebuilds the architecture from the config with ``zoo.build`` and then insists that the
tensors match it one to one: a missing, extra or mis-shaped tensor is an error naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from specdeploy import __version__, zoo

FORMAT = "specdeploy-checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not match its architecture."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode) and its metadata."""

    model: zoo.ZooModel
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def config(self) -> zoo.ModelConfig:
        return self.model.config


def save(model: zoo.ZooModel, out_dir: str | Path, **meta: Any) -> Path:
    """Write ``model.safetensors`` + ``config.json`` into ``out_dir``; returns the directory."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS), metadata={"format": FORMAT})
    cfg = model.config
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "specdeploy_version": __version__,
        "model": cfg.to_dict(),
        "input_shape": [cfg.in_channels, cfg.input_size, cfg.input_size],
        **meta,
    }
    (out / CONFIG).write_text(json.dumps(doc, indent=2, sort_keys=True))
    return out


def read_config(path: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint directory, validated."""
    cfg_path = Path(path) / CONFIG
    if not Path(path).is_dir():
        raise CheckpointError(f"{path}: not a checkpoint directory (expected {CONFIG} and {WEIGHTS} inside)")
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: missing checkpoint config")
    try:
        doc = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path}: not a specdeploy checkpoint config (format != {FORMAT!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path}: checkpoint format version {doc.get('format_version')!r}, this specdeploy reads {FORMAT_VERSION}"
        )
    if not isinstance(doc.get("model"), dict):
        raise CheckpointError(f"{cfg_path}: missing 'model' section")
    return doc


def load(path: str | Path, map_location: str = "cpu") -> Checkpoint:
    """Load a checkpoint directory; every mismatch is a CheckpointError naming the tensor or field."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    doc = read_config(path)
    try:
        config = zoo.ModelConfig.from_dict(doc["model"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path / CONFIG}: invalid model config: {e}") from None
    weights = path / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing weights file")
    try:
        state = load_file(str(weights), device=map_location)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: corrupt or truncated safetensors file ({e})") from None
    model = zoo.build(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing:
        raise CheckpointError(f"{weights}: missing tensor(s) for {config.model}: {', '.join(missing)}")
    if extra:
        raise CheckpointError(f"{weights}: unexpected tensor(s) for {config.model}: {', '.join(extra)}")
    for name, ref in expected.items():
        got = state[name]
        if tuple(got.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{weights}: tensor '{name}' has shape {tuple(got.shape)}, {config.model} expects {tuple(ref.shape)}"
            )
        if got.dtype != ref.dtype:
            raise CheckpointError(f"{weights}: tensor '{name}' has dtype {got.dtype}, expected {ref.dtype}")
    model.load_state_dict(state, strict=True)
    model.eval()
    meta = {k: v for k, v in doc.items() if k not in ("model",)}
    return Checkpoint(model=model, meta=meta, path=path)
