"""Zoo study: every model at beta 0.5 / 1.0 / 1.5 and its twin, trained briefly on Fashion-MNIST,
exported with fp16 values (calibrated), planned peak memory spec/twin (fp16 twin accounting).

Usage: python scripts/zoo_study.py [--out results/study] [--quick]
Writes <out>/study.json and <out>/study.md; checkpoints and ONNX files under <out>/.
Short CPU training: the accuracies say the models learn, not what they reach when trained fully.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from specdeploy import checkpoint, zoo
from specdeploy.export import export_model
from specdeploy.export import calibration_images
from specdeploy.train import TrainConfig, evaluate, loaders_for, train

DATA = "fashion-mnist"
BETAS = (0.5, 1.0, 1.5)
# model -> (architecture overrides, training steps at batch 64); widths/depths cut for 2 CPU cores
PLAN: dict[str, tuple[dict[str, Any], int]] = {
    "lenet5": ({}, 800),
    "alexnet": ({"width": 0.25}, 400),
    "vgg16": ({"width": 0.25}, 300),
    "densenet": ({"depth": 22, "growth": 12}, 150),
}


def run_one(name: str, domain: str, beta: float, arch: dict[str, Any], steps: int, out: Path) -> dict[str, Any]:
    tag = f"{name}-{domain}" + (f"-b{beta}" if domain == "spectral" else "")
    done = out / f"{tag}.json"
    if done.is_file():  # resume: each run is recorded as soon as it finishes
        return json.loads(done.read_text())
    config = zoo.ModelConfig(model=name, domain=domain, in_channels=1, beta=beta, **arch)
    cfg = TrainConfig(epochs=1 + steps * 64 // 60000, max_steps=steps, batch_size=64, lr=0.01, momentum=0.9)
    train_loader, test_loader, meta = loaders_for(config, DATA, None, cfg, None, 2000)
    torch.manual_seed(0)
    model = zoo.build(config)
    t0 = time.time()
    train(model, train_loader, None, cfg, log=lambda s: None)
    seconds = time.time() - t0
    ev = evaluate(model, test_loader)
    checkpoint.save(model, out / tag, data=meta, training=cfg.to_dict(), metrics={"test_accuracy": ev["accuracy"]})
    calib = calibration_images(config, DATA, 256) if domain == "spectral" else None
    res = export_model(model, out / f"{tag}.onnx", value_dtype="fp16", calib_images=calib, batch=None, max_batch=32,
                       metadata={"specdeploy.data": {"name": DATA}})
    kept = {n: s["mean"] / s["dense"] for n, s in res.calibration.items()}
    print(f"{tag:28s} acc {ev['accuracy']:.4f}  {steps} steps in {seconds:.0f}s", flush=True)
    run = {"model": name, "domain": domain, "beta": beta if domain == "spectral" else None, "arch": arch,
           "steps": steps, "batch": 64, "train_seconds": round(seconds, 1), "test_accuracy": ev["accuracy"],
           "test_samples": ev["samples"], "onnx": str(out / f"{tag}.onnx"), "mean_kept_fraction_per_op": kept}
    done.write_text(json.dumps(run, indent=2))
    return run


def summarize(out: Path, runs: list[dict[str, Any]], batches: tuple[int, ...] = (1, 8)) -> dict[str, Any]:
    """Planned peak (DESIGN §5 figure 1, fp16 twin accounting) of every run, and ratios spec/twin."""
    from specdeploy import memory

    for r in runs:
        r["planned_peak_bytes"] = {}
        r["planned_peak_node"] = {}
        r["planned_live_peak_bytes"] = {}
        for b in batches:
            p = memory.plan(r["onnx"], batch=b, activation_dtype="fp16")
            r["planned_peak_bytes"][str(b)] = p.peak_bytes
            r["planned_peak_node"][str(b)] = p.peak_node
            r["planned_live_peak_bytes"][str(b)] = p.live_peak_bytes
    twins = {r["model"]: r for r in runs if r["domain"] == "spatial"}
    rows = []
    for r in runs:
        if r["domain"] != "spectral" or r["model"] not in twins:
            continue
        t = twins[r["model"]]
        kept = r["mean_kept_fraction_per_op"]
        rows.append({
            "model": r["model"], "arch": r["arch"], "beta": r["beta"], "steps": r["steps"],
            "spec_accuracy": r["test_accuracy"], "twin_accuracy": t["test_accuracy"],
            "mean_kept_fraction": sum(kept.values()) / max(len(kept), 1),
            **{f"ratio_planned_peak_b{b}": r["planned_peak_bytes"][str(b)] / t["planned_peak_bytes"][str(b)]
               for b in batches},
            **{f"ratio_live_peak_b{b}": r["planned_live_peak_bytes"][str(b)] / t["planned_live_peak_bytes"][str(b)]
               for b in batches},
            **{f"spec_peak_b{b}": r["planned_peak_bytes"][str(b)] for b in batches},
            **{f"twin_peak_b{b}": t["planned_peak_bytes"][str(b)] for b in batches},
            "spec_peak_node_b1": r["planned_peak_node"]["1"], "twin_peak_node_b1": t["planned_peak_node"]["1"],
        })
    doc = {"machine": platform.platform(), "data": DATA, "value_dtype": "fp16", "twin_activation_dtype": "fp16",
           "batches": list(batches), "runs": runs, "table": rows}
    (out / "study.json").write_text(json.dumps(doc, indent=2))
    lines = ["| model | arch | beta | steps | acc spec | acc twin | mean kept | peak spec/twin b1 | b8 | "
             "maps only b1 | b8 | spec peak node |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        arch = ", ".join(f"{k}={v}" for k, v in row["arch"].items()) or "full"
        lines.append(f"| {row['model']} | {arch} | {row['beta']} | {row['steps']} | {row['spec_accuracy']:.4f} | "
                     f"{row['twin_accuracy']:.4f} | {row['mean_kept_fraction']:.3f} | "
                     f"{row['ratio_planned_peak_b1']:.3f} ({row['spec_peak_b1']} / {row['twin_peak_b1']} B) | "
                     f"{row['ratio_planned_peak_b8']:.3f} | {row['ratio_live_peak_b1']:.3f} | "
                     f"{row['ratio_live_peak_b8']:.3f} | {row['spec_peak_node_b1']} |")
    (out / "study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="results/study")
    ap.add_argument("--quick", action="store_true", help="20 steps per model (smoke test)")
    ap.add_argument("--models", default=",".join(PLAN))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for name in args.models.split(","):
        arch, steps = PLAN[name]
        steps = 20 if args.quick else steps
        runs.append(run_one(name, "spatial", 0.0, arch, steps, out))
        for beta in BETAS:
            runs.append(run_one(name, "spectral", beta, arch, steps, out))
    summarize(out, runs)
    print(f"wrote {out / 'study.json'} and {out / 'study.md'}")


if __name__ == "__main__":
    main()
