"""Training and evaluation of zoo models (spectral and twin alike), on CPU or CUDA.

Defaults are the paper's recipe: SGD, batch 128, lr 0.02 halved every 50 epochs, momentum 0.95.
Every epoch logs loss, accuracy and, for spectral models, the fraction of spectral coefficients each
SpecConv keeps, because that fraction is what the deployed memory saving is made of.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import nn

from specdeploy.nn import spec_convs


@dataclass
class TrainConfig:
    """Optimizer and schedule; ``max_steps`` caps the run for quick jobs and tests."""

    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.02
    momentum: float = 0.95
    weight_decay: float = 5e-4
    lr_halve_every: int = 50
    max_steps: int | None = None
    augment: bool = True
    seed: int = 0
    grad_clip: float = 5.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pick_device(name: str = "auto") -> torch.device:
    """'auto' takes CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class KeptMeter:
    """Running mean of each SpecConv's kept fraction over the batches of an epoch."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = spec_convs(model)
        self.sums = {n: 0.0 for n, _ in self.layers}
        self.count = 0

    def update(self) -> None:
        for n, m in self.layers:
            self.sums[n] += m.last_kept_fraction
        self.count += 1

    def means(self) -> dict[str, float]:
        return {n: s / max(self.count, 1) for n, s in self.sums.items()}


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Accuracy, mean loss and per-layer kept fractions of a model over a loader (eval mode)."""
    device = torch.device(device)
    model.eval().to(device)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    correct = total = 0
    loss = 0.0
    kept = KeptMeter(model)
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss += float(loss_fn(logits, y))
        correct += int((logits.argmax(1) == y).sum())
        total += len(y)
        kept.update()
    return {"accuracy": correct / max(total, 1), "loss": loss / max(total, 1), "samples": total, "kept": kept.means()}


def train(
    model: nn.Module,
    train_loader: Any,
    test_loader: Any | None,
    cfg: TrainConfig,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] = print,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train in place; returns one record per epoch (loss, accuracy, kept fractions, test metrics)."""
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_halve_every, gamma=0.5)
    loss_fn = nn.CrossEntropyLoss()
    history: list[dict[str, Any]] = []
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        kept = KeptMeter(model)
        seen = correct = 0
        loss_sum = 0.0
        t0 = time.time()
        batches = train_loader
        if progress:
            from tqdm import tqdm

            batches = tqdm(train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=None)
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = loss_fn(logits, y)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss became {loss_value} at step {step}; lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            loss_sum += loss_value * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            kept.update()
            step += 1
            if cfg.max_steps is not None and step >= cfg.max_steps:
                break
        sched.step()
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "steps": step,
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "kept": kept.means(),
            "seconds": time.time() - t0,
        }
        if test_loader is not None:
            ev = evaluate(model, test_loader, device)
            record.update(test_accuracy=ev["accuracy"], test_loss=ev["loss"], test_kept=ev["kept"])
        history.append(record)
        log(format_record(record))
        if cfg.max_steps is not None and step >= cfg.max_steps:
            break
    return history


def format_record(r: dict[str, Any]) -> str:
    """One log line per epoch."""
    s = f"epoch {r['epoch']:3d}  steps {r['steps']:6d}  loss {r['train_loss']:.4f}  acc {r['train_accuracy']:.4f}"
    if "test_accuracy" in r:
        s += f"  test_acc {r['test_accuracy']:.4f}"
    if r["kept"]:
        s += "  kept " + " ".join(f"{v:.3f}" for v in r["kept"].values())
    return s + f"  ({r['seconds']:.1f}s)"


def loaders_for(
    config: Any, name: str, data_dir: str | None, cfg: TrainConfig, samples: int | None, test_samples: int | None
) -> tuple[Any, Any, dict[str, Any]]:
    """Train and test loaders for a model config, plus a description of the data for the checkpoint."""
    from specdeploy import data
    from specdeploy.loader import make_loader

    size, ch = config.input_size, config.in_channels
    train_ds = data.prepare(name, "train", size, ch, samples=samples or None, seed=cfg.seed, data_dir=data_dir)
    test_ds = data.prepare(name, "test", size, ch, samples=test_samples or None, seed=cfg.seed, data_dir=data_dir)
    meta = {"name": name, "train_samples": len(train_ds.labels), "test_samples": len(test_ds.labels),
            "classes": list(train_ds.classes), "source": str(train_ds.source)}
    return (
        make_loader(train_ds, cfg.batch_size, train=True, augment=cfg.augment, seed=cfg.seed),
        make_loader(test_ds, 256, train=False, augment=False, seed=cfg.seed),
        meta,
    )


def eval_loader_for(config: Any, name: str, data_dir: str | None, samples: int | None, batch_size: int) -> tuple[Any, dict[str, Any]]:
    """The test split as a loader for evaluation (named eval_ so test runners never collect it)."""
    from specdeploy import data
    from specdeploy.loader import make_loader

    ds = data.prepare(name, "test", config.input_size, config.in_channels, samples=samples or None, data_dir=data_dir)
    return make_loader(ds, batch_size, train=False, augment=False, seed=0), {"name": name, "samples": len(ds.labels)}
