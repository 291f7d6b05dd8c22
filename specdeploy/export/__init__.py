"""Checkpoint -> ONNX with the specdeploy op set, capacities calibrated on real samples.

``export_model`` works on an in-memory zoo model, ``export_checkpoint`` on a checkpoint directory;
both fold the spectral normalization (and the twin's BN) into the kernels, set each packed op's
capacity from calibration (max nnz seen times a margin, never above C*F), store the calibration
statistics in the model's metadata, and check the file with the ONNX checker and shape inference.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from specdeploy import outputs, packed, zoo
from specdeploy.metadata import META_CALIBRATION, META_DATA
from specdeploy.recipes import CALIBRATION_MARGIN
from specdeploy.export import schemas
from specdeploy.export.graph import ExportError, build_graph, prepare
from specdeploy.nn import SpecConcat, SpecConv2d, SpecPool2d

__all__ = ["ExportError", "ExportResult", "calibrate", "export_checkpoint", "export_model"]


@dataclass
class ExportResult:
    """What an export wrote: the file, the capacity of every packed op and the calibration stats."""

    path: Path
    capacities: dict[str, int] = field(default_factory=dict)
    calibration: dict[str, dict[str, Any]] = field(default_factory=dict)


def _packed_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, (SpecConv2d, SpecPool2d, SpecConcat))}


@torch.no_grad()
def calibrate(model: zoo.ZooModel, images: np.ndarray, batch_size: int = 64) -> dict[str, dict[str, Any]]:
    """Per packed op: nnz statistics over real samples (max, p99, mean) and its dense size C*F.

    ``model`` must be prepared (eval mode, normalization folded), so the counts are those of the
    exported graph up to round-off at the threshold, which the capacity margin absorbs.
    """
    mods = _packed_modules(model)
    counts: dict[str, list[np.ndarray]] = {n: [] for n in mods}
    dense: dict[str, int] = {}

    def hook(name: str):
        def fn(_m: torch.nn.Module, _inp: Any, out: torch.Tensor) -> None:
            flat = out.reshape(out.shape[0], -1)
            counts[name].append((flat != 0).sum(dim=1).numpy())
            dense[name] = flat.shape[1]
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in mods.items()]
    try:
        for i in range(0, len(images), batch_size):
            model(torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size], dtype=np.float32)))
    finally:
        for h in handles:
            h.remove()
    stats = {}
    for name, parts in counts.items():
        c = np.concatenate(parts)
        stats[name] = {"max": int(c.max()), "p99": float(np.percentile(c, 99)), "mean": float(c.mean()),
                       "samples": int(len(c)), "dense": int(dense[name])}
    return stats


def capacities_from(stats: dict[str, dict[str, Any]], margin: float) -> dict[str, int]:
    """capacity = ceil(max nnz * margin), at least 1, never above the dense size C*F."""
    if margin < 1.0:
        raise ExportError(f"capacity margin must be >= 1.0, got {margin}")
    return {n: int(min(s["dense"], max(1, math.ceil(s["max"] * margin)))) for n, s in stats.items()}


def check_finite_weights(model: torch.nn.Module) -> None:
    """ExportError naming the first parameter or buffer holding NaN or Inf (e.g. after ``--lr nan``).

    A non-finite weight would export as a model that answers garbage (or, through the threshold,
    plausible-looking logits), and calibration would count NaN coefficients as kept.
    """
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ExportError(f"tensor '{name}' has {bad} non-finite value(s) (NaN/Inf) of {t.numel()}: "
                              "the model cannot be exported (was it trained with a non-finite learning rate?)")


def export_model(
    model: zoo.ZooModel,
    out_path: str | Path,
    *,
    batch: int | None = 1,
    max_batch: int | None = None,
    value_dtype: str = "fp32",
    beta: float | None = None,
    calib_images: np.ndarray | None = None,
    margin: float = CALIBRATION_MARGIN,
    metadata: dict[str, Any] | None = None,
) -> ExportResult:
    """Export an in-memory zoo model; ``calib_images`` are normalized float32 NCHW samples."""
    if beta is not None and (not math.isfinite(beta) or beta < 0):
        raise ExportError(f"beta must be a finite number >= 0, got {beta}")
    check_finite_weights(model)
    prepared = prepare(model)
    if beta is not None:
        for _, m in prepared.named_modules():
            if isinstance(m, SpecConv2d):
                m.beta = float(beta)
    stats: dict[str, dict[str, Any]] = {}
    caps: dict[str, int] = {}
    if calib_images is not None and model.config.domain == "spectral":
        stats = calibrate(prepared, calib_images)
        caps = capacities_from(stats, margin)
        for n, s in stats.items():
            s["capacity"] = caps[n]
            s["margin"] = margin
    meta = {META_CALIBRATION: json.dumps(stats)} if stats else {}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
    onnx_model = build_graph(prepared, batch=batch, max_batch=max_batch, value_dtype=value_dtype, beta=beta,
                             capacities=caps, metadata=meta)
    schemas.register()
    onnx.checker.check_model(onnx_model, full_check=True)
    out = Path(out_path)
    with outputs.atomic_path(out) as tmp:
        onnx.save(onnx_model, str(tmp))
    if not caps:
        caps = {n.name: int(next(a.i for a in n.attribute if a.name == "capacity"))
                for n in onnx_model.graph.node if any(a.name == "capacity" for a in n.attribute)}
    return ExportResult(out, caps, stats)


def calibration_images(config: zoo.ModelConfig, data: str, samples: int, data_dir: str | None = None,
                       seed: int = 0) -> np.ndarray:
    """Normalized training-split samples fitted to the model input (torch-free data path)."""
    from specdeploy import data as datasets

    ds = datasets.prepare(data, "train", config.input_size, config.in_channels, samples=samples, seed=seed,
                          data_dir=data_dir)
    return datasets.normalize(ds.images, ds.name)


def export_checkpoint(
    ckpt_dir: str | Path,
    out_path: str | Path,
    *,
    calib_data: str | None = None,
    calib_samples: int = 256,
    data_dir: str | None = None,
    **kwargs: Any,
) -> ExportResult:
    """Export a checkpoint directory; calibrates on ``calib_data`` (default: its training data set).

    ``out_path`` may not be one of the checkpoint's files (OutputError); an existing other file is
    replaced atomically (the CLI refuses that without --force before calling this).
    """
    from specdeploy import checkpoint

    outputs.check_output(out_path, [ckpt_dir], force=True, flag="export output")  # never over the checkpoint
    ck = checkpoint.load(ckpt_dir)
    data_name = (ck.meta.get("data") or {}).get("name") or calib_data
    if calib_data is None and ck.config.domain == "spectral":
        calib_data = data_name
    images = None
    if calib_data is not None and ck.config.domain == "spectral":
        images = calibration_images(ck.config, calib_data, calib_samples, data_dir)
    metadata = dict(kwargs.pop("metadata", None) or {})
    metadata.setdefault(META_DATA, {"name": data_name})
    metadata.setdefault("specdeploy.checkpoint", {"path": str(ckpt_dir), "metrics": ck.meta.get("metrics", {})})
    return export_model(ck.model, out_path, calib_images=images, metadata=metadata, **kwargs)
