"""Training semantics: config validation, exact step counts, schedules, beta annealing, distillation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from specdeploy import checkpoint, zoo
from specdeploy.nn import spec_convs
from specdeploy.train import (
    TrainConfig,
    beta_scale_at,
    distillation_loss,
    load_teacher,
    loaders_for,
    lr_at,
    total_steps,
    train,
)


@pytest.mark.parametrize(
    "field,value",
    [("epochs", 0), ("epochs", -1), ("epochs", 1.5), ("max_steps", 0), ("max_steps", -3), ("batch_size", 0),
     ("lr", 0.0), ("lr", float("nan")), ("momentum", 1.0), ("weight_decay", -1e-4), ("lr_halve_every", 0),
     ("grad_clip", -1.0), ("schedule", "linear"), ("warmup", 1.0), ("beta_anneal", 1.5), ("teacher", ""),
     ("kd_alpha", 2.0), ("kd_temperature", 0.0)],
)
def test_bad_config_fields_are_named(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} must be"):
        TrainConfig(**{field: value})


def test_validate_catches_fields_changed_after_construction() -> None:
    cfg = TrainConfig()
    cfg.max_steps = 0
    with pytest.raises(ValueError, match=r"TrainConfig\.max_steps"):
        cfg.validate()


def test_step_counts() -> None:
    assert total_steps(TrainConfig(epochs=3), 10) == 30
    assert total_steps(TrainConfig(epochs=1, max_steps=25), 10) == 25  # not capped by epochs
    assert total_steps(TrainConfig(epochs=5, max_steps=7), 10) == 7
    with pytest.raises(ValueError, match="no batch"):
        total_steps(TrainConfig(), 0)


def test_schedules() -> None:
    paper = TrainConfig(lr=0.02, lr_halve_every=2)
    assert [lr_at(paper, s, 100, 10) for s in (0, 19, 20, 39, 40)] == [0.02, 0.02, 0.01, 0.01, 0.005]
    cos = TrainConfig(lr=0.1, schedule="cosine", warmup=0.1)
    lrs = [lr_at(cos, s, 100, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)  # linear warmup over 10 steps
    assert lrs[10] == pytest.approx(0.1) and lrs[55] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and 0 < lrs[-1] < 0.001
    anneal = TrainConfig(beta_anneal=0.5)
    assert [beta_scale_at(anneal, s, 100) for s in (0, 25, 50, 99)] == [0.0, 0.5, 1.0, 1.0]
    assert beta_scale_at(TrainConfig(), 0, 100) == 1.0


def test_distillation_loss() -> None:
    logits = torch.randn(8, 10)
    assert float(distillation_loss(logits, logits.clone(), 4.0)) == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(8, 10)
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits / 2, 1), torch.log_softmax(other / 2, 1),
                                    reduction="batchmean", log_target=True)
    assert float(distillation_loss(logits, other, 2.0)) == pytest.approx(4 * float(kl), rel=1e-5)


@pytest.fixture(scope="module")
def small_data() -> tuple[object, object]:
    """128 real Fashion-MNIST training images in batches of 32 (4 per epoch), 64 test images."""
    config = zoo.ModelConfig(model="lenet5", in_channels=1)
    train_loader, test_loader, _ = loaders_for(config, "fashion-mnist", None, TrainConfig(batch_size=32), 128, 64)
    return train_loader, test_loader


def test_max_steps_runs_exactly_and_cycles_epochs(small_data: tuple[object, object]) -> None:
    train_loader, _ = small_data
    torch.manual_seed(0)
    model = zoo.create("lenet5", in_channels=1, width=0.5, block="hybrid")
    history = train(model, train_loader, None, TrainConfig(epochs=1, max_steps=10, batch_size=32), log=lambda _: None)
    assert [r["steps"] for r in history] == [4, 8, 10]


def test_beta_annealing_ramps_and_restores(small_data: tuple[object, object]) -> None:
    train_loader, _ = small_data
    torch.manual_seed(0)
    model = zoo.create("lenet5", in_channels=1, width=0.5, block="hybrid", beta=0.8)
    seen: list[float] = []
    first = spec_convs(model)[0][1]
    hook = first.register_forward_pre_hook(lambda m, args: seen.append(m.beta))
    train(model, train_loader, None, TrainConfig(max_steps=8, batch_size=32, beta_anneal=0.5), log=lambda _: None)
    hook.remove()
    assert seen == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 0.8, 0.8, 0.8])
    assert all(m.beta == 0.8 for _, m in spec_convs(model))


def test_distillation_from_a_twin_checkpoint(tmp_path: Path, small_data: tuple[object, object]) -> None:
    train_loader, test_loader = small_data
    torch.manual_seed(0)
    twin = zoo.create("lenet5", domain="spatial", in_channels=1, width=0.5)
    train(twin, train_loader, None, TrainConfig(max_steps=4, batch_size=32), log=lambda _: None)
    ck = checkpoint.save(twin, tmp_path / "twin")
    student = zoo.create("lenet5", in_channels=1, width=0.5, block="hybrid")
    teacher = load_teacher(str(ck), student.config)
    assert not any(p.requires_grad for p in teacher.parameters())
    cfg = TrainConfig(max_steps=4, batch_size=32, teacher=str(ck), kd_alpha=1.0, kd_temperature=2.0)
    history = train(student, train_loader, test_loader, cfg, log=lambda _: None, teacher=teacher)
    assert math.isfinite(history[-1]["train_loss"]) and "test_accuracy" in history[-1]
    wrong = zoo.ModelConfig(model="lenet5", in_channels=3)
    with pytest.raises(ValueError, match="teacher .*input 1x32x32"):
        load_teacher(str(ck), wrong)
