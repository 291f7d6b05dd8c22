"""Training and evaluation of zoo models (spectral and twin alike), on CPU or CUDA.

Defaults are the paper's recipe: SGD, batch 128, lr 0.02 halved every 50 epochs, momentum 0.95.
Three additions aim at short budgets (each measured in docs/models.md, none assumed to help):
- ``schedule="cosine"``: linear warmup over ``warmup`` of the steps, then cosine decay to 0, per step;
- ``beta_anneal``: every SpecConv's threshold rises linearly from 0 to its target over that fraction of
  the steps (dense maps early, the target sparsity for the rest), restored exactly at the end;
- distillation: with a ``teacher`` model (normally the trained spatial twin), the loss is
  ``(1 - kd_alpha) * CE + kd_alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T))``.
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

SCHEDULES = ("step", "cosine")
"""``step``: the paper's lr halving every ``lr_halve_every`` epochs; ``cosine``: warmup + cosine per step."""


@dataclass
class TrainConfig:
    """Optimizer, schedule and the short-budget options; ``validate()`` names any bad field.

    ``max_steps``, when set, is the exact number of steps (epochs repeat as needed and ``epochs`` is
    then only the unit of the step schedule's halving); otherwise ``epochs`` full passes run.
    ``teacher`` is the checkpoint path of a distillation teacher (recorded in checkpoints; the caller
    loads it, see ``load_teacher``).
    """

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
    schedule: str = "step"
    warmup: float = 0.05
    beta_anneal: float = 0.0
    teacher: str | None = None
    kd_alpha: float = 0.5
    kd_temperature: float = 4.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every field in range, or a ValueError naming the field and the value."""

        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be {rule}, got {getattr(self, name)!r}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        need(is_int(self.epochs) and self.epochs >= 1, "epochs", "an integer >= 1")
        need(is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "an integer >= 1")
        need(is_num(self.lr) and self.lr > 0, "lr", "a finite number > 0")
        need(is_num(self.momentum) and 0 <= self.momentum < 1, "momentum", "in [0, 1)")
        need(is_num(self.weight_decay) and self.weight_decay >= 0, "weight_decay", "a finite number >= 0")
        need(is_int(self.lr_halve_every) and self.lr_halve_every >= 1, "lr_halve_every", "an integer >= 1")
        need(self.max_steps is None or (is_int(self.max_steps) and self.max_steps >= 1), "max_steps",
             "None or an integer >= 1")
        need(is_int(self.seed), "seed", "an integer")
        need(is_num(self.grad_clip) and self.grad_clip >= 0, "grad_clip", "a finite number >= 0 (0: off)")
        need(self.schedule in SCHEDULES, "schedule", f"one of {SCHEDULES}")
        need(is_num(self.warmup) and 0 <= self.warmup < 1, "warmup", "a fraction of the steps in [0, 1)")
        need(is_num(self.beta_anneal) and 0 <= self.beta_anneal <= 1, "beta_anneal",
             "a fraction of the steps in [0, 1] (0: off)")
        need(self.teacher is None or (isinstance(self.teacher, str) and self.teacher != ""), "teacher",
             "None or a checkpoint path")
        need(is_num(self.kd_alpha) and 0 <= self.kd_alpha <= 1, "kd_alpha", "in [0, 1]")
        need(is_num(self.kd_temperature) and self.kd_temperature > 0, "kd_temperature", "a finite number > 0")

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


def total_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    """Steps a run takes: ``max_steps`` exactly when set, else ``epochs`` full passes."""
    if batches_per_epoch < 1:
        raise ValueError("the training loader yields no batch (fewer samples than batch_size?)")
    return cfg.max_steps if cfg.max_steps is not None else cfg.epochs * batches_per_epoch


def lr_at(cfg: TrainConfig, step: int, steps: int, batches_per_epoch: int) -> float:
    """Learning rate of step ``step`` (0-based) of ``steps``."""
    if cfg.schedule == "step":
        return cfg.lr * 0.5 ** ((step // batches_per_epoch) // cfg.lr_halve_every)
    warm = int(cfg.warmup * steps)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(steps - warm, 1)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))


def beta_scale_at(cfg: TrainConfig, step: int, steps: int) -> float:
    """Fraction of its target beta every SpecConv uses at ``step`` (1 without annealing)."""
    ramp = cfg.beta_anneal * steps
    return 1.0 if ramp <= 0 else min(1.0, step / ramp)


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, batch mean (Hinton et al.)."""
    log_p = torch.log_softmax(logits / T, dim=1)
    log_q = torch.log_softmax(teacher_logits / T, dim=1)
    return (T * T) * torch.sum(log_q.exp() * (log_q - log_p), dim=1).mean()


def load_teacher(path: str, student_config: Any, device: torch.device | str = "cpu") -> nn.Module:
    """A trained checkpoint as a frozen distillation teacher; it must read the student's inputs and classes."""
    from specdeploy import checkpoint

    ck = checkpoint.load(path)
    t, s = ck.config, student_config
    if (t.in_channels, t.input_size, t.num_classes) != (s.in_channels, s.input_size, s.num_classes):
        raise ValueError(
            f"teacher {path}: input {t.in_channels}x{t.input_size}x{t.input_size} with {t.num_classes} classes, "
            f"the student needs {s.in_channels}x{s.input_size}x{s.input_size} with {s.num_classes}"
        )
    teacher = ck.model.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def train(
    model: nn.Module,
    train_loader: Any,
    test_loader: Any | None,
    cfg: TrainConfig,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] = print,
    progress: bool = False,
    teacher: nn.Module | None = None,
) -> list[dict[str, Any]]:
    """Train in place; returns one record per epoch (loss, accuracy, kept fractions, test metrics).

    An epoch is one pass over ``train_loader`` (the last one may be cut short by ``max_steps``).
    ``teacher`` (eval mode, same inputs) turns on distillation with ``cfg.kd_alpha`` and ``cfg.kd_temperature``.
    """
    cfg.validate()
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    batches_per_epoch = len(train_loader)
    steps = total_steps(cfg, batches_per_epoch)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    convs = [m for _, m in spec_convs(model)]
    targets = [m.beta for m in convs]
    history: list[dict[str, Any]] = []
    step = 0
    epoch = 0
    try:
        while step < steps:
            epoch += 1
            model.train()
            kept = KeptMeter(model)
            seen = correct = 0
            loss_sum = 0.0
            t0 = time.time()
            batches = train_loader
            if progress:
                from tqdm import tqdm

                n_epochs = math.ceil(steps / batches_per_epoch)
                batches = tqdm(train_loader, desc=f"epoch {epoch}/{n_epochs}", leave=False, disable=None)
            for x, y in batches:
                for group in opt.param_groups:
                    group["lr"] = lr_at(cfg, step, steps, batches_per_epoch)
                scale = beta_scale_at(cfg, step, steps)
                for m, b in zip(convs, targets):
                    m.beta = b * scale
                x, y = x.to(device), y.to(device)
                logits = model(x)
                loss = loss_fn(logits, y)
                if teacher is not None and cfg.kd_alpha > 0:
                    with torch.no_grad():
                        teacher_logits = teacher(x)
                    loss = (1 - cfg.kd_alpha) * loss + cfg.kd_alpha * distillation_loss(
                        logits, teacher_logits, cfg.kd_temperature)
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
                if step >= steps:
                    break
            for m, b in zip(convs, targets):
                m.beta = b
            record: dict[str, Any] = {
                "epoch": epoch,
                "steps": step,
                "lr": opt.param_groups[0]["lr"],
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
    finally:
        # Annealing never leaves a model at a lower threshold than its config says (also on errors).
        for m, b in zip(convs, targets):
            m.beta = b
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
