"""The README's end-to-end job: train SpecLeNet and its spatial twin on real shipped data.

Fashion-MNIST (the Debian package ``dataset-fashion-mnist``) padded to 32x32, a few hundred SGD
steps per model on the CPU, then test accuracy and the fraction of spectral coefficients each
layer keeps. Writes both checkpoints and ``summary.json`` under the output directory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

DATA = "fashion-mnist"


def run_demo(out: Path, steps: int = 1500, beta: float = 1.0, test_samples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Train and evaluate both models; returns (and writes) the summary."""
    import torch

    from specdeploy import checkpoint, zoo
    from specdeploy.train import TrainConfig, evaluate, loaders_for, pick_device, train

    torch.set_num_threads(max(1, torch.get_num_threads()))
    device = pick_device("auto")
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"data": DATA, "steps": steps, "beta": beta, "device": str(device), "models": {}}
    epochs = 1 + steps * 128 // 60000
    cfg = TrainConfig(epochs=epochs, max_steps=steps, seed=seed, lr=0.02, momentum=0.9)
    for domain in ("spectral", "spatial"):
        config = zoo.ModelConfig(model="lenet5", domain=domain, in_channels=1, beta=beta)
        train_loader, test_loader, meta = loaders_for(config, DATA, None, cfg, None, test_samples)
        torch.manual_seed(seed)
        model = zoo.build(config)
        print(f"== {domain} LeNet-5 on {DATA}: {steps} steps, batch {cfg.batch_size}, {device}")
        t0 = time.time()
        history = train(model, train_loader, None, cfg, device, progress=True)
        seconds = time.time() - t0
        ev = evaluate(model, test_loader, device)
        checkpoint.save(model.cpu(), out / f"lenet5-{domain}", data=meta, classes=meta["classes"],
                        training=cfg.to_dict(), history=history,
                        metrics={"test_accuracy": ev["accuracy"], "kept": ev["kept"]})
        summary["models"][domain] = {
            "test_accuracy": ev["accuracy"], "test_samples": ev["samples"], "kept": ev["kept"],
            "train_seconds": round(seconds, 1), "final_train_loss": history[-1]["train_loss"],
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print()
    print(f"{'model':<22}{'test acc':>10}   kept fraction per SpecConv")
    for domain, m in summary["models"].items():
        kept = " ".join(f"{v:.3f}" for v in m["kept"].values()) or "-"
        print(f"{'LeNet-5 ' + domain:<22}{m['test_accuracy']:>10.4f}   {kept}")
    print(f"\nwritten: {out}/summary.json and the two checkpoints")
    return summary
