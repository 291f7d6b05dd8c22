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

# Training recipes (TrainConfig fields, all spelled out so that a change of TrainConfig's defaults never
# changes a recipe; "kd": distil from the twin trained with the same optimizer and schedule).
# "paper": the paper's SGD recipe; "study": the earlier study's (lr 0.01, momentum 0.9; the halving
# every 50 epochs never comes at these budgets).
_STEP = {"schedule": "step", "beta_anneal": 0.0}
_COSINE = {"lr": 0.02, "momentum": 0.9, "schedule": "cosine", "warmup": 0.05}
_KD = {"kd": True, "kd_alpha": 0.5, "kd_temperature": 4.0}
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"lr": 0.02, "momentum": 0.95, **_STEP},
    "study": {"lr": 0.01, "momentum": 0.9, **_STEP},
    "study-kd": {"lr": 0.01, "momentum": 0.9, **_STEP, **_KD},
    "study-anneal": {"lr": 0.01, "momentum": 0.9, "schedule": "step", "beta_anneal": 0.3},
    "cosine": {**_COSINE, "beta_anneal": 0.0},
    "cosine-anneal": {**_COSINE, "beta_anneal": 0.3},
    "cosine-kd": {**_COSINE, "beta_anneal": 0.0, **_KD},
    "cosine-anneal-kd": {**_COSINE, "beta_anneal": 0.3, **_KD},
}
# The study's recipe, chosen by the recipe comparison below (best hybrid accuracy at 100 steps; its twin
# trains with "cosine", the same optimizer and schedule). See docs/models.md.
DEFAULT_RECIPE = "cosine-anneal"
# The recipe comparison: one model, one beta, short (VGG16 width 1/4, hybrid, beta 0.5, 100 steps).
RECIPE_STUDY = {"model": "vgg16", "arch": {"width": 0.25}, "beta": 0.5, "steps": 100,
                "recipes": ("paper", "study", "study-kd", "study-anneal", "cosine", "cosine-anneal")}


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
    def optimizer(o: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in o.items() if k not in ("beta_anneal", *_KD)}

    return next(name for name, o in RECIPES.items()
                if optimizer(o) == optimizer(RECIPES[recipe]) and not o.get("kd") and not o.get("beta_anneal"))


def train_config(run: Run) -> TrainConfig:
    opts = {k: v for k, v in RECIPES[run.recipe].items() if k != "kd"}
    return TrainConfig(epochs=1, max_steps=run.steps, batch_size=BATCH, seed=0, **opts)


def model_config(run: Run) -> zoo.ModelConfig:
    if run.domain == "spatial":
        return zoo.ModelConfig(model=run.model, domain="spatial", in_channels=1, **run.arch)
    return zoo.ModelConfig(model=run.model, domain="spectral", in_channels=1, beta=run.beta, block=run.block,
                           **run.arch)


def train_run(run: Run, out: Path, device: str = "cpu") -> dict[str, Any]:
    """Train a run (its twin first when it distils) unless cached; returns the run's record."""
    runs_dir = out / "runs"
    record_path = runs_dir / f"{run.tag}.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    teacher_dir = None
    if RECIPES[run.recipe].get("kd"):
        teacher_dir = runs_dir / run.twin().tag
        train_run(run.twin(), out, device)
    config = model_config(run)
    cfg = train_config(run)
    if teacher_dir is not None:
        cfg = dataclasses.replace(cfg, teacher=str(teacher_dir))
    train_loader, test_loader, meta = loaders_for(config, DATA, None, cfg, None, TEST_SAMPLES)
    torch.manual_seed(0)
    model = zoo.build(config)
    teacher = load_teacher(str(teacher_dir), config, device) if teacher_dir is not None else None
    t0 = time.time()
    history = train(model, train_loader, None, cfg, device, log=lambda s: None, teacher=teacher)
    seconds = time.time() - t0
    ev = evaluate(model, test_loader, device)
    model.cpu()
    checkpoint.save(model, runs_dir / run.tag, data=meta, classes=meta["classes"], training=cfg.to_dict(),
                    history=history, metrics={"test_accuracy": ev["accuracy"], "kept": ev["kept"]})
    record = {
        **dataclasses.asdict(run), "tag": run.tag, "batch": BATCH, "train_seconds": round(seconds, 1),
        "test_accuracy": ev["accuracy"], "test_samples": ev["samples"], "torch_kept_per_layer": ev["kept"],
        "training": cfg.to_dict(), "date": datetime.date.today().isoformat(), "machine": platform.platform(),
        "device": device_name(device),
    }
    if device == "cpu":
        record["note"] = "train_seconds measured while other jobs shared the 2 cores"
    record_path.write_text(json.dumps(record, indent=2))
    kept = ev["kept"]
    kept_s = f"  kept {min(kept.values()):.3f}-{max(kept.values()):.3f}" if kept else ""
    print(f"{run.tag:52s} acc {ev['accuracy']:.4f}{kept_s}  {run.steps} steps in {seconds:.0f}s", flush=True)
    return record


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu"


# --gpu-full: full-width models on one GPU, both blocks and the twin, in one call of at most 9 minutes.
GPU_PLAN: dict[str, dict[str, Any]] = {"vgg16": {}, "densenet": {"depth": 40, "growth": 12}}
GPU_VARIANTS: tuple[tuple[str, str, float | None], ...] = (
    ("spatial", "-", None), ("spectral", "hybrid", 0.5), ("spectral", "hybrid", 1.0), ("spectral", "paper", 0.5),
)
GPU_BATCH = 128
GPU_RECIPE = "study"


def gpu_full(out: Path, budget_s: float, recipe: str, device: str = "cuda") -> list[dict[str, Any]]:
    """Train every GPU_PLAN model x GPU_VARIANTS with one step budget per model, sized from measured step times
    so that training, evaluation and export fit ``budget_s`` seconds; runs that would not fit are skipped
    and listed (never silently cut short)."""
    global BATCH, TEST_SAMPLES
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--gpu-full needs a CUDA GPU (torch.cuda.is_available() is False)")
    BATCH, TEST_SAMPLES = GPU_BATCH, 10000
    torch.backends.cudnn.benchmark = True

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    t_start = time.time()
    records: list[dict[str, Any]] = []
    per_model = 0.8 * budget_s / len(GPU_PLAN)  # 20% left for loading, evaluation and export
    for i, (name, arch) in enumerate(GPU_PLAN.items()):
        runs = [Run(name, d, b, beta, arch, 0, recipe if d == "spectral" else twin_recipe(recipe))
                for d, b, beta in GPU_VARIANTS]
        step_s = []
        for run in runs:  # seconds per step: time 4 and 12 steps, so warm-up and autotuning cancel out
            times = []
            for n in (4, 12):
                probe = dataclasses.replace(run, steps=n)
                config = model_config(probe)
                cfg = dataclasses.replace(train_config(probe), teacher=None)
                loader, _, _ = loaders_for(config, DATA, None, cfg, None, 256)
                model = zoo.build(config)
                sync()
                t0 = time.time()
                train(model, loader, None, cfg, device, log=lambda s: None)
                sync()
                times.append(time.time() - t0)
            step_s.append(max((times[1] - times[0]) / 8, 1e-4))
        left = budget_s - (time.time() - t_start)
        share = min(per_model, left / (len(GPU_PLAN) - i) * 0.8)
        steps = int(min(3000, share / sum(step_s)))
        print(f"{name}: seconds per step {', '.join(f'{t:.3f}' for t in step_s)} -> {steps} steps each", flush=True)
        if steps < 20:
            records.append({"model": name, "skipped": f"only {left:.0f} s left of the budget"})
            continue
        for run in runs:
            records.append(train_run(dataclasses.replace(run, steps=steps), out, device))
    return records


def carried(path: Path, date: str | None = None) -> list[dict[str, Any]]:
    """The runs of an earlier study.json (written before blocks and recipes were recorded: paper block,
    recipe "study"), as records of this script, marked ``carried_over`` with the file's date."""
    doc = json.loads(path.read_text())
    date = date or datetime.date.fromtimestamp(path.stat().st_mtime).isoformat()
    out = []
    for r in doc["runs"]:
        if r["domain"] == "spectral" and r.get("block", "paper") != "paper":
            continue
        run = Run(r["model"], r["domain"], "paper" if r["domain"] == "spectral" else "-", r["beta"], r["arch"],
                  r["steps"], r.get("recipe", "study"))
        # that study recorded kept fractions per packed op (SpecConv and SpecPool alike), not per conv
        kept = dict(r["mean_kept_fraction_per_op"])
        out.append({**r, **dataclasses.asdict(run), "tag": run.tag, "torch_kept_per_layer": kept,
                    "carried_over": date})
    return out


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


def export_run(record: dict[str, Any], out: Path, batches: tuple[int, ...]) -> dict[str, Any]:
    """Export a trained run once (fp16 values, capacities from 256 training images; the ONNX file is kept
    beside its checkpoint) and plan it at every batch on every call: plans are cheap and must follow the
    current planner (declared workspaces change with the kernels), so they are never taken from the cache."""
    from specdeploy import memory
    from specdeploy.export import calibration_images, export_model

    if record.get("carried_over"):  # no file left to plan: its figures are that run's planner's (dated rows)
        return record
    runs_dir = out / "runs"
    tag = record["tag"]
    onnx_path = runs_dir / f"{tag}.onnx"
    if not (onnx_path.is_file() and "mean_kept_fraction_per_op" in record):
        ck = checkpoint.load(runs_dir / tag)
        calib = calibration_images(ck.config, DATA, 256) if ck.config.domain == "spectral" else None
        res = export_model(ck.model, onnx_path, value_dtype="fp16", calib_images=calib, batch=None, max_batch=32,
                           metadata={"specdeploy.data": {"name": DATA}})
        record["mean_kept_fraction_per_op"] = {n: s["mean"] / s["dense"] for n, s in res.calibration.items()}
    record["onnx"] = str(onnx_path)
    record["planned_peak_bytes"], record["planned_peak_node"], record["planned_live_peak_bytes"] = {}, {}, {}
    for b in batches:
        plan = memory.plan(str(onnx_path), batch=b, activation_dtype="fp16")
        record["planned_peak_bytes"][str(b)] = plan.peak_bytes
        record["planned_peak_node"][str(b)] = plan.peak_node
        record["planned_live_peak_bytes"][str(b)] = plan.live_peak_bytes
    (runs_dir / f"{tag}.json").write_text(json.dumps(record, indent=2))
    return record


def table_rows(records: list[dict[str, Any]], batches: tuple[int, ...]) -> list[dict[str, Any]]:
    """One row per spectral run with its twin (same model, arch, steps and optimizer recipe)."""
    by_tag = {r["tag"]: r for r in records}
    rows = []
    for r in records:
        if r["domain"] != "spectral":
            continue
        run = Run(**{k: r[k] for k in ("model", "domain", "block", "beta", "arch", "steps", "recipe")})
        t = by_tag.get(run.twin().tag)
        if t is None:
            continue
        kept = r["mean_kept_fraction_per_op"]
        conv_kept = [v for k, v in r["torch_kept_per_layer"].items()]
        rows.append({
            "model": r["model"], "arch": r["arch"], "block": r["block"], "beta": r["beta"], "steps": r["steps"],
            "recipe": r["recipe"], "spec_accuracy": r["test_accuracy"], "twin_accuracy": t["test_accuracy"],
            "accuracy_gap": t["test_accuracy"] - r["test_accuracy"],
            "mean_kept_fraction": sum(kept.values()) / max(len(kept), 1),
            "conv_kept_min": min(conv_kept), "conv_kept_max": max(conv_kept),
            **{f"ratio_planned_peak_b{b}": r["planned_peak_bytes"][str(b)] / t["planned_peak_bytes"][str(b)]
               for b in batches},
            **{f"ratio_live_peak_b{b}": r["planned_live_peak_bytes"][str(b)] / t["planned_live_peak_bytes"][str(b)]
               for b in batches},
            **{f"spec_peak_b{b}": r["planned_peak_bytes"][str(b)] for b in batches},
            **{f"twin_peak_b{b}": t["planned_peak_bytes"][str(b)] for b in batches},
            "spec_peak_node_b1": r["planned_peak_node"]["1"], "twin_peak_node_b1": t["planned_peak_node"]["1"],
            "carried_over": r.get("carried_over"),
        })
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | arch | block | beta | steps | recipe | acc spec | acc twin | conv kept (min-max) | "
             "mean kept | peak spec/twin b1 | b8 | maps only b1 | b8 | spec peak node |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        arch = ", ".join(f"{k}={v}" for k, v in row["arch"].items()) or "full"
        lines.append(
            f"| {row['model']} | {arch} | {row['block']} | {row['beta']} | {row['steps']} | {row['recipe']}"
            f"{' (' + row['carried_over'] + ')' if row.get('carried_over') else ''} | "
            f"{row['spec_accuracy']:.4f} | {row['twin_accuracy']:.4f} | "
            f"{row['conv_kept_min']:.3f}-{row['conv_kept_max']:.3f} | {row['mean_kept_fraction']:.3f} | "
            f"{row['ratio_planned_peak_b1']:.3f} ({row['spec_peak_b1']} / {row['twin_peak_b1']} B) | "
            f"{row['ratio_planned_peak_b8']:.3f} | {row['ratio_live_peak_b1']:.3f} | {row['ratio_live_peak_b8']:.3f} | "
            f"{row['spec_peak_node_b1']} |")
    return "\n".join(lines) + "\n"


def pareto_plots(out: Path, rows: list[dict[str, Any]], batches: tuple[int, ...]) -> list[Path]:
    """Accuracy below the twin vs planned peak ratio, one panel per model, one plot per batch: one curve
    per (block, recipe, steps) over beta; the recipe comparison's rows (other recipes) stay out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def curve(r: dict[str, Any]) -> tuple[str, str, int, str]:
        return (r["block"], r["recipe"], r["steps"], r.get("carried_over") or "")

    shown = [r for r in rows if r["recipe"] == DEFAULT_RECIPE or r.get("carried_over")]
    paths = []
    models = sorted({r["model"] for r in shown}, key=list(PLAN).index)
    for b in batches:
        fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.6), squeeze=False)
        for ax, name in zip(axes[0], models):
            for key in sorted({curve(r) for r in shown if r["model"] == name}):
                block, recipe, steps, date = key
                pts = sorted((r[f"ratio_planned_peak_b{b}"], 100 * r["accuracy_gap"], r["beta"])
                             for r in shown if r["model"] == name and curve(r) == key)
                label = f"{block}, {recipe}, {steps} steps" + (f" ({date})" if date else "")
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="s" if block == "hybrid" else "o",
                        linestyle="-", label=label)
                for x, y, beta in pts:
                    ax.annotate(f"{beta}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
            ax.axvline(0.30, color="grey", linewidth=0.8, linestyle=":")
            ax.set_title(name)
            ax.set_xlabel(f"planned peak spec/twin, batch {b} (fp16)")
            ax.set_ylabel("twin accuracy - spec accuracy (points)")
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"pareto-b{b}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def summarize(out: Path, records: list[dict[str, Any]], batches: tuple[int, ...] = (1, 8),
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export + plan every run, then study.json, study.md and the Pareto plots under ``out``."""
    records = [export_run(r, out, batches) for r in records]
    order = list(PLAN)
    rows = sorted(table_rows(records, batches),
                  key=lambda r: (order.index(r["model"]), bool(r.get("carried_over")), r["block"] != "hybrid",
                                 r["recipe"] != DEFAULT_RECIPE, r["recipe"], -r["steps"], r["beta"]))
    doc = {"machine": platform.platform(), "data": DATA, "value_dtype": "fp16", "twin_activation_dtype": "fp16",
           "batches": list(batches), "test_samples": TEST_SAMPLES, "batch": BATCH, "recipes": RECIPES,
           "runs": records, "table": rows, **(extra or {})}
    (out / "study.json").write_text(json.dumps(doc, indent=2))
    table = markdown_table(rows)
    (out / "study.md").write_text(table)
    pareto_plots(out, rows, batches)
    print(table)
    return doc


def goal_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Per model, the issue's goal (within 1 point of the twin at a planned peak ratio <= 0.30 at batch
    1 and 8) checked on the study recipe's hybrid rows: met or not, and the closest rows."""
    lines = []
    for name in PLAN:
        hy = [r for r in rows if r["model"] == name and r["block"] == "hybrid" and r["recipe"] == DEFAULT_RECIPE
              and not r.get("carried_over")]
        if not hy:
            continue
        top = max(r["steps"] for r in hy)
        hy = [r for r in hy if r["steps"] == top]
        met = [r for r in hy if r["accuracy_gap"] <= 0.01 and max(r["ratio_planned_peak_b1"], r["ratio_planned_peak_b8"]) <= 0.30]
        pts = "; ".join(f"beta {r['beta']}: {-100 * r['accuracy_gap']:+.1f} points vs the twin, ratio "
                        f"{r['ratio_planned_peak_b1']:.2f} / {r['ratio_planned_peak_b8']:.2f} (b1 / b8)"
                        for r in sorted(hy, key=lambda r: r["beta"]))
        lines.append(f"- {name} hybrid, {top} steps: goal {'met' if met else 'not met'} ({pts}).")
    return lines


def publish(out: Path, doc: dict[str, Any], docs: Path) -> None:
    """Copy the study's files to docs/results/ and rewrite the study section of docs/results.md."""
    import shutil

    res = docs / "results"
    res.mkdir(parents=True, exist_ok=True)
    for name in ("study.json", "study.md", "pareto-b1.png", "pareto-b8.png", "recipes.json", "recipes.md"):
        if (out / name).is_file():
            shutil.copyfile(out / name, res / name)
    recipes = (out / "recipes.md").read_text() if (out / "recipes.md").is_file() else ""
    date = max((r.get("date", "") for r in doc["runs"] if not r.get("carried_over")), default="")
    section = [
        f"## Zoo study (`python scripts/zoo_study.py`), {date}",
        "Trained with `--stage train` (one run at a time, cached under `--out`), then tabulated with "
        "`python scripts/zoo_study.py --out DIR --stage summarize --carry docs/results/study-2026-11-25.json "
        "--carry-date 2026-11-25 --publish docs`.",
        "Each model trained on Fashion-MNIST (1x32x32) at batch 64 on the shared 2-core CPU, widths/depths "
        "cut for it (stated per row); every spectral run has the same step budget and optimizer recipe as the twin "
        f"it is compared with (recipes: docs/models.md; the study's is `{DEFAULT_RECIPE}`, its twin's "
        f"`{twin_recipe(DEFAULT_RECIPE)}`). Accuracy: torch, {TEST_SAMPLES} test images, one seed. Export: fp16 "
        "values, capacities from 256 training images x 1.1. Planned peak (DESIGN §5 figure 1), spec / twin, the "
        "twin counted in fp16. 'conv kept': per-SpecConv kept fraction on the test set (torch); 'mean kept': "
        "mean over the packed ops on the calibration images. Rows marked with a date are carried over "
        "unchanged from that earlier run of this script (paper block, its recipe `study` and budgets).",
        "",
        "Planned peaks include each op's declared workspace, for the hybrid block its chunk buffers "
        "(`hybrid_workspace` in `specdeploy/ops/spec_conv.py`, the native library's rule: dense planes for a "
        "chunk sized to the layer, at least 1 sample x min(O, 8) channels: tens of KiB here). At batch 1 and "
        "these CPU widths that workspace still sets most hybrid models' peak; from batch 8 the maps dominate. "
        "The 'maps only' columns give the feature maps' share.",
        "",
        markdown_table(doc["table"]).rstrip(),
        "",
        "Goal of issue 12 (within 1 point of the twin at a planned peak ratio <= 0.30 at batch 1 and 8):",
        *goal_lines(doc["table"]),
        "",
        "Files: [results/study.json](results/study.json) (every run: training settings, accuracy, kept "
        "fractions, planned peak and peak node at batch 1 and 8), [results/study.md](results/study.md).",
        "",
        "![pareto b1](results/pareto-b1.png)",
        "",
        *(["Training recipes (VGG16 width 1/4, hybrid, beta 0.5, 100 steps; [results/recipes.json](results/recipes.json)):",
           "", recipes.rstrip(), ""] if recipes else []),
    ]
    md = docs / "results.md"
    text = md.read_text()
    start = text.index("## Zoo study")
    nxt = text.find("\n## ", start + 1)
    end = len(text) if nxt < 0 else nxt + 1
    md.write_text(text[:start] + "\n".join(section) + "\n" + text[end:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/study")
    ap.add_argument("--stage", choices=("train", "recipes", "summarize", "all"), default="all",
                    help="summarize: no training; export, plan and tabulate every cached run under <out>/runs")
    ap.add_argument("--carry", default=None,
                    help="an earlier study.json whose paper-block rows (and twins) join the table, labelled "
                         "with that study's date (they keep their own recipe and budget)")
    ap.add_argument("--carry-date", default=None, help="the date of --carry's study (default: the file's mtime)")
    ap.add_argument("--publish", default=None, metavar="DOCS",
                    help="with --stage summarize: copy the results to DOCS/results/ and rewrite the study "
                         "section of DOCS/results.md")
    ap.add_argument("--models", default=",".join(PLAN))
    ap.add_argument("--blocks", default="hybrid,paper")
    ap.add_argument("--betas", default=None, help="comma list overriding the betas of every block")
    ap.add_argument("--recipe", default=DEFAULT_RECIPE, choices=sorted(RECIPES))
    ap.add_argument("--steps-scale", type=float, default=1.0, help="multiply every model's step budget")
    ap.add_argument("--steps", type=int, default=None, help="step budget for every model (instead of the plan's)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (1 wastes less on a shared, oversubscribed machine)")
    ap.add_argument("--quick", action="store_true", help="20 steps per model (smoke test)")
    ap.add_argument("--gpu-full", action="store_true",
                    help="full-width VGG16 and DenseNet-BC-40, twin + hybrid 0.5/1.0 + paper 0.5, on one GPU")
    ap.add_argument("--gpu-budget", type=float, default=360.0,
                    help="seconds for --gpu-full's training (export and planning come after; keep the whole "
                         "call under 9 minutes)")
    ap.add_argument("--all-cached", action="store_true",
                    help="summarize every cached run under <out>/runs, not only this invocation's")
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
    if args.gpu_full:
        t_start = time.time()
        records = gpu_full(out, args.gpu_budget, args.recipe if args.recipe != DEFAULT_RECIPE else GPU_RECIPE)
        trained = [r for r in records if "skipped" not in r]
        summarize(out, trained, extra={"gpu": device_name("cuda"), "gpu_budget_s": args.gpu_budget,
                                       "seconds_total": round(time.time() - t_start, 1),
                                       "skipped": [r for r in records if "skipped" in r]})
        return
    if args.stage == "recipes":
        recipe_table(out, [train_run(r, out) for r in recipe_runs()])
        return
    if args.stage == "summarize":
        records = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
        doc = summarize(out, records + (carried(Path(args.carry), args.carry_date) if args.carry else []))
        print(f"wrote {out / 'study.json'}, {out / 'study.md'} and the Pareto plots")
        if args.publish:
            publish(out, doc, Path(args.publish))
        return
    scale = 20 / 300 if args.quick else args.steps_scale
    runs = study_runs(args.models.split(","), args.blocks.split(","), args.recipe, scale)
    records = [train_run(r, out) for r in runs]
    if args.stage == "train":
        print(f"trained {len(records)} runs under {out / 'runs'}")
        return
    if args.all_cached:  # every run trained so far under <out>/runs, whatever invocation trained it
        records = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    summarize(out, records)
    print(f"wrote {out / 'study.json'}, {out / 'study.md'} and the Pareto plots")


if __name__ == "__main__":
    main()
