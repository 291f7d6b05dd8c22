"""Zoo study: every model x block {paper, hybrid} x beta and its spatial twin, trained on Fashion-MNIST
with the same step budget and recipe as the twin, exported with fp16 values (calibrated), planned peak
memory spec/twin at batch 1 and 8 (fp16 twin accounting, DESIGN §5 figure 1).

Usage:
  python scripts/zoo_study.py --out DIR --stage train     # train what is missing (resumable)
  python scripts/zoo_study.py --out DIR --stage recipes   # the training-recipe comparison (VGG16 hybrid)
  python scripts/zoo_study.py --out DIR                   # train what is missing, export, plan, write tables

Every run is cached under <out>/runs/: its checkpoint directory <tag>/ and <tag>.json (accuracy,
kept fractions, training config, date); a later invocation reuses them and only exports and plans.
Runs train one at a time, as the 2-core machine needs. Short CPU training: the accuracies compare
blocks and recipes at one budget; they are not what the models reach when trained fully.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from specdeploy import checkpoint, zoo
from specdeploy.train import TrainConfig, evaluate, load_teacher, loaders_for, train

DATA = "fashion-mnist"
BATCH = 64
TEST_SAMPLES = 2000
# model -> (architecture overrides, training steps at batch 64); widths/depths cut for 2 CPU cores
PLAN: dict[str, tuple[dict[str, Any], int]] = {
    "lenet5": ({}, 800),
    "alexnet": ({"width": 0.25}, 400),
    "vgg16": ({"width": 0.25}, 300),
    "densenet": ({"depth": 22, "growth": 12}, 150),
}
BETAS: dict[str, tuple[float, ...]] = {"paper": (0.5, 1.0, 1.5), "hybrid": (0.25, 0.5, 1.0)}

# Training recipes (TrainConfig fields; "kd": distil from the twin trained with the same recipe).
# "study" is the recipe of the earlier study (SGD, lr 0.01, momentum 0.9, constant at these budgets);
# "paper" is TrainConfig's default, the paper's SGD recipe.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},
    "study": {"lr": 0.01, "momentum": 0.9},
    "study-kd": {"lr": 0.01, "momentum": 0.9, "kd": True},
    "study-anneal": {"lr": 0.01, "momentum": 0.9, "beta_anneal": 0.3},
    "cosine": {"lr": 0.02, "momentum": 0.9, "schedule": "cosine", "warmup": 0.05},
    "cosine-anneal": {"lr": 0.02, "momentum": 0.9, "schedule": "cosine", "warmup": 0.05, "beta_anneal": 0.3},
    "cosine-kd": {"lr": 0.02, "momentum": 0.9, "schedule": "cosine", "warmup": 0.05, "kd": True},
    "cosine-anneal-kd": {"lr": 0.02, "momentum": 0.9, "schedule": "cosine", "warmup": 0.05, "beta_anneal": 0.3,
                         "kd": True},
}
DEFAULT_RECIPE = "study"
# The recipe comparison: one model, one beta, short (DESIGN-sized: VGG16 width 1/4, hybrid, beta 0.5).
RECIPE_STUDY = {"model": "vgg16", "arch": {"width": 0.25}, "beta": 0.5, "steps": 100,
                "recipes": ("study", "cosine", "cosine-anneal", "cosine-kd")}


@dataclass(frozen=True)
class Run:
    """One trained model of the study."""

    model: str
    domain: str  # "spectral" | "spatial"
    block: str  # "paper" | "hybrid" ("-" for twins)
    beta: float | None
    arch: dict[str, Any]
    steps: int
    recipe: str

    @property
    def tag(self) -> str:
        arch = "".join(f"-{k}{v}" for k, v in sorted(self.arch.items()))
        base = f"{self.model}{arch}-s{self.steps}-{self.recipe}"
        return f"{base}-twin" if self.domain == "spatial" else f"{base}-{self.block}-b{self.beta}"

    def twin(self) -> "Run":
        return dataclasses.replace(self, domain="spatial", block="-", beta=None, recipe=twin_recipe(self.recipe))


def twin_recipe(recipe: str) -> str:
    """The twin trains with the same optimizer and schedule; annealing and distillation do not apply."""
    opts = {k: v for k, v in RECIPES[recipe].items() if k not in ("kd", "beta_anneal")}
    return next(name for name, o in RECIPES.items() if o == opts)


def train_config(run: Run) -> TrainConfig:
    opts = {k: v for k, v in RECIPES[run.recipe].items() if k != "kd"}
    return TrainConfig(epochs=1, max_steps=run.steps, batch_size=BATCH, seed=0, **opts)


def model_config(run: Run) -> zoo.ModelConfig:
    if run.domain == "spatial":
        return zoo.ModelConfig(model=run.model, domain="spatial", in_channels=1, **run.arch)
    return zoo.ModelConfig(model=run.model, domain="spectral", in_channels=1, beta=run.beta, block=run.block,
                           **run.arch)


def train_run(run: Run, out: Path) -> dict[str, Any]:
    """Train a run (its twin first when it distils) unless cached; returns the run's record."""
    runs_dir = out / "runs"
    record_path = runs_dir / f"{run.tag}.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    teacher_dir = None
    if RECIPES[run.recipe].get("kd"):
        teacher_dir = runs_dir / run.twin().tag
        train_run(run.twin(), out)
    config = model_config(run)
    cfg = train_config(run)
    if teacher_dir is not None:
        cfg = dataclasses.replace(cfg, teacher=str(teacher_dir))
    train_loader, test_loader, meta = loaders_for(config, DATA, None, cfg, None, TEST_SAMPLES)
    torch.manual_seed(0)
    model = zoo.build(config)
    teacher = load_teacher(str(teacher_dir), config) if teacher_dir is not None else None
    t0 = time.time()
    history = train(model, train_loader, None, cfg, log=lambda s: None, teacher=teacher)
    seconds = time.time() - t0
    ev = evaluate(model, test_loader)
    checkpoint.save(model, runs_dir / run.tag, data=meta, classes=meta["classes"], training=cfg.to_dict(),
                    history=history, metrics={"test_accuracy": ev["accuracy"], "kept": ev["kept"]})
    record = {
        **dataclasses.asdict(run), "tag": run.tag, "batch": BATCH, "train_seconds": round(seconds, 1),
        "test_accuracy": ev["accuracy"], "test_samples": ev["samples"], "torch_kept_per_layer": ev["kept"],
        "training": cfg.to_dict(), "date": datetime.date.today().isoformat(), "machine": platform.platform(),
        "note": "train_seconds measured while other jobs shared the 2 cores",
    }
    record_path.write_text(json.dumps(record, indent=2))
    kept = ev["kept"]
    kept_s = f"  kept {min(kept.values()):.3f}-{max(kept.values()):.3f}" if kept else ""
    print(f"{run.tag:52s} acc {ev['accuracy']:.4f}{kept_s}  {run.steps} steps in {seconds:.0f}s", flush=True)
    return record


def study_runs(models: list[str], blocks: list[str], recipe: str, steps_scale: float) -> list[Run]:
    """Twin first, then every block x beta, per model (the order the training follows)."""
    runs = []
    for name in models:
        arch, steps = PLAN[name]
        steps = max(1, int(round(steps * steps_scale)))
        twin = Run(name, "spatial", "-", None, arch, steps, twin_recipe(recipe))
        runs.append(twin)
        for block in blocks:
            runs += [Run(name, "spectral", block, beta, arch, steps, recipe) for beta in BETAS[block]]
    return runs


def recipe_runs() -> list[Run]:
    s = RECIPE_STUDY
    runs = []
    for recipe in s["recipes"]:
        twin = Run(s["model"], "spatial", "-", None, s["arch"], s["steps"], twin_recipe(recipe))
        if twin not in runs:
            runs.append(twin)
        runs.append(Run(s["model"], "spectral", "hybrid", s["beta"], s["arch"], s["steps"], recipe))
    return runs


def recipe_table(out: Path, records: list[dict[str, Any]]) -> None:
    """The recipe comparison as JSON + markdown: recipe -> accuracy, kept fractions, twin accuracy."""
    twins = {r["recipe"]: r for r in records if r["domain"] == "spatial"}
    rows = []
    for r in records:
        if r["domain"] != "spectral":
            continue
        t = twins.get(twin_recipe(r["recipe"]))
        kept = r["torch_kept_per_layer"]
        rows.append({"recipe": r["recipe"], "options": RECIPES[r["recipe"]], "steps": r["steps"],
                     "spec_accuracy": r["test_accuracy"], "twin_accuracy": t["test_accuracy"] if t else None,
                     "kept_min": min(kept.values()), "kept_max": max(kept.values()),
                     "train_seconds": r["train_seconds"]})
    doc = {"study": RECIPE_STUDY, "data": DATA, "batch": BATCH, "test_samples": TEST_SAMPLES, "rows": rows,
           "runs": records}
    (out / "recipes.json").write_text(json.dumps(doc, indent=2))
    lines = ["| recipe | options | spec acc | twin acc (same recipe) | kept per layer |", "|---|---|---|---|---|"]
    for row in rows:
        opts = ", ".join(f"{k}={v}" for k, v in row["options"].items())
        twin = f"{row['twin_accuracy']:.4f}" if row["twin_accuracy"] is not None else "-"
        lines.append(f"| {row['recipe']} | {opts} | {row['spec_accuracy']:.4f} | {twin} | "
                     f"{row['kept_min']:.3f}-{row['kept_max']:.3f} |")
    (out / "recipes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/study")
    ap.add_argument("--stage", choices=("train", "recipes", "all"), default="all")
    ap.add_argument("--models", default=",".join(PLAN))
    ap.add_argument("--blocks", default="hybrid,paper")
    ap.add_argument("--betas", default=None, help="comma list overriding the betas of every block")
    ap.add_argument("--recipe", default=DEFAULT_RECIPE, choices=sorted(RECIPES))
    ap.add_argument("--steps-scale", type=float, default=1.0, help="multiply every model's step budget")
    ap.add_argument("--steps", type=int, default=None, help="step budget for every model (instead of the plan's)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (1 wastes less on a shared, oversubscribed machine)")
    ap.add_argument("--quick", action="store_true", help="20 steps per model (smoke test)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.steps is not None:
        for name, (arch, _) in list(PLAN.items()):
            PLAN[name] = (arch, args.steps)
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    if args.betas:
        betas = tuple(float(b) for b in args.betas.split(","))
        for block in BETAS:
            BETAS[block] = betas
    if args.stage == "recipes":
        recipe_table(out, [train_run(r, out) for r in recipe_runs()])
        return
    scale = 20 / 300 if args.quick else args.steps_scale
    runs = study_runs(args.models.split(","), args.blocks.split(","), args.recipe, scale)
    records = [train_run(r, out) for r in runs]
    if args.stage == "train":
        print(f"trained {len(records)} runs under {out / 'runs'}")
        return
    raise SystemExit("export and planning of the hybrid block arrive with the op set's 'relu' support")


if __name__ == "__main__":
    main()
