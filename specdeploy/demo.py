"""The README's end-to-end job: train -> export -> bench, SpecLeNet-5 against its spatial twin.

1. Train both models briefly on Fashion-MNIST (the Debian package ``dataset-fashion-mnist``, padded
   to 32x32) on the CPU or a GPU.
2. Export both to ONNX (the spectral model with the specdeploy op set, fp16 values, capacities
   calibrated on training images; the twin with BN folded).
3. Bench both on the best backend present (TensorRT, then the CUDA kernels, else the numpy
   reference on the CPU): accuracy on the test split, planned peak memory, latency, overflow count.
Everything lands under the output directory: checkpoints, the two .onnx files, bench.json/.csv/.png
and summary.json.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from specdeploy import deps, outputs

DATA = "fashion-mnist"
BLOCK = "hybrid"  # the spectral block (DESIGN §2b); the study in docs/results.md shows it wins
BACKEND_ORDER = ("tensorrt", "cuda", "reference")

#: import name -> the pip extra that provides it: everything the demo needs, checked before training.
REQUIRED = {"torch": "train", "safetensors": "train", "onnx": "export", "onnxscript": "export",
            "matplotlib": "plot"}


def check_requirements() -> None:
    """MissingDependencyError naming every missing dependency and its extra, before minutes of training."""
    deps.require(REQUIRED, "the demo")


def ensure_cuda_library() -> str | None:
    """On a machine with a GPU and nvcc, build the CUDA kernel library if it is not built yet.

    The cuda backend is "present" whenever the hardware and compiler are, so the demo builds what it
    needs (for this GPU's architecture only, to keep it quick). Returns a message when it cannot.
    """
    import shutil

    import torch

    from specdeploy import native

    if not torch.cuda.is_available() or shutil.which("nvcc") is None:
        return None
    if native.library_path("cuda").is_file():
        return None
    major, minor = torch.cuda.get_device_capability()
    try:
        print(f"== building the CUDA kernel library for sm_{major}{minor}", flush=True)
        native.build("cuda", cuda_architectures=f"{major}{minor}")
    except native.NativeBuildError as e:
        return f"could not build the CUDA kernel library: {e}"
    return None


def pick_backend(model_path: Path) -> tuple[str, list[str]]:
    """The first backend in BACKEND_ORDER that can open the model here, and why the others could not."""
    from specdeploy import runtime

    skipped = []
    problem = ensure_cuda_library()
    if problem:
        skipped.append(problem)
    for name in BACKEND_ORDER:
        try:
            runtime.load(model_path, name)
            return name, skipped
        except runtime.BackendUnavailableError as e:
            skipped.append(f"{name}: {e}")
    raise RuntimeError("no backend can run the model: " + "; ".join(skipped))


def pick_threads(cpus: int | None = None, load: float | None = None) -> int:
    """Torch CPU threads for the demo: the cores other processes leave free, at least 1.

    Why: torch's intra-op threads spin at every barrier; on a busy machine (2 cores, load 12 measured
    here) 2 threads trained LeNet-5 4-6x slower than 1 (60 steps: 237 s vs 41-66 s), which is how a
    "few minutes" demo took 15. On an idle machine this keeps every core.
    """
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = 0.0
    return max(1, min(cpus, cpus - int(load)))


def run_demo(out: Path, steps: int = 1500, beta: float = 1.0, test_samples: int = 2000, seed: int = 0,
             value_dtype: str = "fp16", batches: tuple[int, ...] = (1, 8, 32), force: bool = False) -> dict[str, Any]:
    """Train, export and bench both models; returns (and writes) the summary.

    Checked before any training: the dependencies (``check_requirements``), the data set, and the
    output directory (refused when it exists, unless ``force``). A failed run leaves no empty folders.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    check_requirements()
    outputs.check_output(out, kind="dir", force=force, flag="--out")
    from specdeploy import data as datasets

    datasets.prepare(DATA, "test", 32, 1, samples=8)  # the data set is there (DataError names the fix)
    with outputs.created_dirs(out):
        return _run(out, steps, beta, test_samples, seed, value_dtype, batches, force)


def _run(out: Path, steps: int, beta: float, test_samples: int, seed: int, value_dtype: str,
         batches: tuple[int, ...], force: bool) -> dict[str, Any]:
    import torch

    from specdeploy import bench, checkpoint, zoo
    from specdeploy.export import export_checkpoint
    from specdeploy.train import TrainConfig, evaluate, loaders_for, pick_device, train

    device = pick_device("auto")
    threads = None
    if device.type == "cpu":
        threads = pick_threads()
        torch.set_num_threads(threads)
        print(f"== CPU training with {threads} torch thread(s) (free cores now)", flush=True)
    t_start = time.time()
    summary: dict[str, Any] = {"data": DATA, "block": BLOCK, "steps": steps, "beta": beta, "train_device": str(device),
                               "train_threads": threads,
                               "value_dtype": value_dtype, "models": {}}
    # the short-budget recipe measured best in docs/models.md (annealing is a no-op for the twin)
    cfg = TrainConfig(epochs=1 + steps * 128 // 60000, max_steps=steps, seed=seed, lr=0.02, momentum=0.9,
                      schedule="cosine", warmup=0.05, beta_anneal=0.3)
    onnx_paths: dict[str, Path] = {}
    for domain in ("spectral", "spatial"):
        config = zoo.ModelConfig(model="lenet5", domain=domain, in_channels=1, beta=beta, block=BLOCK)
        train_loader, test_loader, meta = loaders_for(config, DATA, None, cfg, None, test_samples)
        torch.manual_seed(seed)
        model = zoo.build(config)
        print(f"== train {domain} LeNet-5 on {DATA}: {steps} steps, batch {cfg.batch_size}, {device}", flush=True)
        t0 = time.time()
        history = train(model, train_loader, None, cfg, device, progress=True)
        seconds = time.time() - t0
        ev = evaluate(model, test_loader, device)
        ck = out / f"lenet5-{domain}"
        with outputs.atomic_dir(ck, force=force) as staged:
            checkpoint.save(model.cpu(), staged, data=meta, classes=meta["classes"], training=cfg.to_dict(),
                            history=history, metrics={"test_accuracy": ev["accuracy"], "kept": ev["kept"]})
        onnx_paths[domain] = export_checkpoint(ck, out / f"lenet5-{domain}.onnx", value_dtype=value_dtype,
                                               batch=None, max_batch=max(batches), calib_samples=512).path
        summary["models"][domain] = {
            "torch_test_accuracy": ev["accuracy"], "kept": ev["kept"], "train_seconds": round(seconds, 1),
            "final_train_loss": history[-1]["train_loss"], "onnx": str(onnx_paths[domain]),
        }
    t_bench = time.time()
    backend, skipped = pick_backend(onnx_paths["spectral"])
    print(f"== bench on backend '{backend}'" + (f" (not available: {'; '.join(skipped)})" if skipped else ""), flush=True)
    doc = bench.run_bench(onnx_paths["spectral"], onnx_paths["spatial"], backend=backend, batches=batches,
                          data=DATA, samples=test_samples, repeats=5)
    bench.write_json(doc, out / "bench.json")
    bench.write_csv(doc, out / "bench.csv")
    bench.write_plot(doc, out / "bench.png")
    summary["backend"] = backend
    summary["bench"] = {f"batch{r['batch']}": {**r["ratios"], "measured_peak_note": r.get("measured_peak_note")}
                        for r in doc["records"]}
    summary["accounting"] = doc["settings"].get("accounting")
    summary["seconds"] = {"bench": round(time.time() - t_bench, 1), "total": round(time.time() - t_start, 1)}
    outputs.write_text(out / "summary.json", json.dumps(summary, indent=2))
    _print(summary, doc)
    return summary


def _print(summary: dict[str, Any], doc: dict[str, Any]) -> None:
    spec, twin = summary["models"]["spectral"], summary["models"]["spatial"]
    print()
    print(f"LeNet-5 ({BLOCK} block) on {summary['data']}, {summary['steps']} training steps each, beta {summary['beta']}, "
          f"{summary['value_dtype']} spectral values")
    print(f"  kept fraction per SpecConv (test set): " + " ".join(f"{v:.3f}" for v in spec["kept"].values()))
    print(f"  torch test accuracy: spectral {spec['torch_test_accuracy']:.4f}, twin {twin['torch_test_accuracy']:.4f}")
    print(f"\nbench on '{summary['backend']}' (exported models, same run):")
    from specdeploy import bench

    print(bench.summary(doc))
    print(f"\nwritten under {Path(spec['onnx']).parent}: both .onnx, bench.json, bench.csv, bench.png, summary.json")
