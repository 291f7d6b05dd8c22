"""Sweep the threshold beta of a trained SpecNet: accuracy vs planned memory (the paper's Fig. 1).

Why at export time: beta only enters the graph as an attribute and, through calibration, as the
capacities. Re-exporting one checkpoint at several betas (``export_checkpoint(..., beta=b)``, each
calibrated on real training samples) shows the trade-off a deployment can pick from without
retraining. For each beta: the kept fraction per packed op (mean nnz / (C*F) from the calibration
statistics), the test accuracy on a CPU backend, overflowed samples, and the planned peak memory
relative to the spatial twin (exported once; activations counted as fp16 for both when the values
are fp16). Output: ``sweep.json``, ``sweep.csv``, ``pareto.png`` and the exported files in ``DIR``.

The twin: pass its checkpoint (``twin=``) to get its accuracy too; without it the twin architecture
is built from the spectral config (untrained: its planned memory is exact, its accuracy is omitted).
Imports torch (it exports); the runtimes it calls do not.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Sequence

from specdeploy import outputs
from specdeploy.argtypes import float_at_least, positive_int
from specdeploy.metadata import META_DATA
from specdeploy.recipes import CALIBRATION_MARGIN

__all__ = ["run_sweep", "parse_betas", "pareto_front", "write_csv", "write_plot", "register"]


def parse_betas(text: str) -> list[float]:
    """'0,0.5,1' or '0,0.25,...,2.0' (an arithmetic progression from the first step to the last value)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        if "..." in items:
            i = items.index("...")
            if i < 2 or i != len(items) - 2:
                raise ValueError
            head = [float(t) for t in items[:i]]
            last = float(items[-1])
            step = head[1] - head[0]
            if step <= 0 or last < head[-1]:
                raise ValueError
            n = int(math.floor((last - head[0]) / step + 1e-9))
            out = [round(head[0] + j * step, 10) for j in range(n + 1)]
            if not math.isclose(out[-1], last, rel_tol=0, abs_tol=1e-9):
                out.append(last)
            return out
        out = [float(t) for t in items]
    except ValueError:
        raise ValueError(f"--betas: cannot parse {text!r}; expected e.g. 0,0.5,1 or 0,0.25,...,2.0") from None
    if not out or any(not math.isfinite(b) or b < 0 for b in out):
        raise ValueError(f"--betas: betas must be finite and >= 0, got {text!r}")
    return out


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated in (lower memory ratio, higher accuracy), by ratio."""
    idx = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in idx:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _kept(info: Any, calibration: dict[str, dict[str, Any]]) -> dict[str, float]:
    """mean nnz / (C*F) per packed op, from the calibration statistics stored at export."""
    from specdeploy.runtime.graph import PACKED_OPS, dense_coeffs

    out = {}
    for n in info.spec_nodes:
        if n.op not in PACKED_OPS or n.name not in calibration:
            continue
        s = calibration[n.name]
        dense = s.get("dense") or dense_coeffs(n, info.weights)
        out[n.name] = float(s["mean"]) / float(dense)
    return out


def _evaluate(path: Path, backend: str, data: str | None, data_dir: str | None, samples: int | None,
              eval_batch: int, allow_nonfinite: bool = False) -> dict[str, Any]:
    """Accuracy, overflowed and non-finite counts on ``backend``; a NaN/Inf sample raises NonFiniteError
    unless ``allow_nonfinite`` (then it is counted and never correct)."""
    from specdeploy import runtime
    from specdeploy.bench import _accuracy, load_eval_data

    sess = runtime.load(path, backend, nonfinite="flag" if allow_nonfinite else "raise")
    x, y, desc = load_eval_data(sess.info, data, data_dir, samples)
    accuracy, overflowed, nonfinite = _accuracy(sess, x, y, eval_batch)
    return {"accuracy": accuracy, "overflowed": overflowed, "nonfinite": nonfinite, "samples": int(len(y)),
            "data": desc}


def run_sweep(
    ckpt: str | Path,
    betas: Sequence[float],
    out: str | Path,
    *,
    twin: str | Path | None = None,
    data: str | None = None,
    data_dir: str | None = None,
    samples: int | None = 500,
    calib_samples: int = 256,
    value_dtype: str = "fp16",
    margin: float = CALIBRATION_MARGIN,
    backend: str = "ort",
    batch: int = 1,
    eval_batch: int = 64,
    progress: bool = True,
    allow_nonfinite: bool = False,
) -> dict[str, Any]:
    """Export ``ckpt`` at every beta, evaluate and plan each; returns (and writes) the sweep document.

    A test sample meeting a NaN/Inf stops the sweep (NonFiniteError) unless ``allow_nonfinite``."""
    from specdeploy import checkpoint

    betas = [float(b) for b in betas]
    if not betas or any(not math.isfinite(b) or b < 0 for b in betas):
        raise ValueError(f"betas must be finite and >= 0, got {betas}")
    out = Path(out)
    act = "fp16" if value_dtype == "fp16" else "fp32"
    common = dict(batch=None, max_batch=max(eval_batch, batch), value_dtype=value_dtype)
    doc_cfg = checkpoint.read_config(ckpt)
    if doc_cfg["model"].get("domain") != "spectral":
        raise ValueError(f"{ckpt}: the sweep needs a spectral checkpoint, this one is {doc_cfg['model'].get('domain')!r}")
    if twin is not None:
        twin_domain = checkpoint.read_config(twin)["model"].get("domain")
        if twin_domain != "spatial":
            raise ValueError(f"{twin}: --twin must be a spatial checkpoint, this one is {twin_domain!r}")
    _check_data(doc_cfg, data, data_dir)
    with outputs.created_dirs(out / "onnx"):  # a sweep that fails before writing anything leaves no folders
        return _sweep(ckpt, betas, out, twin, data, data_dir, samples, calib_samples, value_dtype, margin, backend,
                      batch, eval_batch, progress, act, common, doc_cfg, allow_nonfinite)


def _check_data(doc_cfg: dict[str, Any], data: str | None, data_dir: str | None) -> None:
    """Both splits the sweep reads exist (DataError naming the fix) before anything is exported."""
    from specdeploy import data as datasets

    name = data or (doc_cfg.get("data") or {}).get("name")
    if not name:
        raise ValueError("no data set given (--data) and the checkpoint records none")
    m = doc_cfg["model"]
    for split in ("train", "test"):
        datasets.prepare(name, split, m.get("input_size"), m.get("in_channels"), samples=4, data_dir=data_dir)


def _sweep(ckpt: str | Path, betas: list[float], out: Path, twin: str | Path | None, data: str | None,
           data_dir: str | None, samples: int | None, calib_samples: int, value_dtype: str, margin: float,
           backend: str, batch: int, eval_batch: int, progress: bool, act: str, common: dict[str, Any],
           doc_cfg: dict[str, Any], allow_nonfinite: bool = False) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from specdeploy import memory, runtime, zoo
    from specdeploy.export import export_checkpoint, export_model

    twin_path = out / "onnx" / "twin.onnx"
    twin_row: dict[str, Any] = {"checkpoint": None if twin is None else str(twin), "path": str(twin_path)}
    if twin is not None:
        export_checkpoint(twin, twin_path, **common)
        twin_row.update(_evaluate(twin_path, backend, data, data_dir, samples, eval_batch, allow_nonfinite))
    else:
        cfg = zoo.twin_config(zoo.ModelConfig.from_dict(doc_cfg["model"]))
        data_name = (doc_cfg.get("data") or {}).get("name") or data
        export_model(zoo.build(cfg), twin_path, metadata={META_DATA: {"name": data_name}}, **common)
        twin_row.update(accuracy=None, note="untrained twin built from the spectral config: planned memory only")
    twin_plan = memory.plan(twin_path, batch=batch, activation_dtype=act)
    twin_row.update(planned_peak_bytes=twin_plan.peak_bytes, planned_peak_node=twin_plan.peak_node,
                    planned_live_peak_bytes=twin_plan.live_peak_bytes)

    rows = []
    for beta in tqdm(betas, desc="sweep", disable=None if progress else True):
        path = out / "onnx" / f"spec_beta{beta:g}.onnx"
        res = export_checkpoint(ckpt, path, beta=beta, calib_data=data, calib_samples=calib_samples,
                                data_dir=data_dir, margin=margin, **common)
        info = runtime.read_model(path)
        kept = _kept(info, res.calibration)
        p = memory.plan(path, batch=batch, activation_dtype=act)
        ev = _evaluate(path, backend, data, data_dir, samples, eval_batch, allow_nonfinite)
        rows.append({
            "beta": beta, "path": str(path), "kept": kept,
            "kept_mean": sum(kept.values()) / len(kept) if kept else None,
            "capacities": res.capacities, "planned_peak_bytes": p.peak_bytes, "planned_peak_node": p.peak_node,
            "planned_ratio": p.peak_bytes / twin_plan.peak_bytes, "planned_live_peak_bytes": p.live_peak_bytes,
            "planned_live_ratio": p.live_peak_bytes / twin_plan.live_peak_bytes, **ev,
        })
    front = pareto_front([(r["planned_ratio"], r["accuracy"]) for r in rows])
    for i, r in enumerate(rows):
        r["pareto"] = i in front
    from specdeploy.bench import environment

    doc = {
        "schema": "specdeploy-sweep", "schema_version": 1, "checkpoint": str(ckpt), "backend": backend,
        "value_dtype": value_dtype, "activation_dtype": act, "batch": batch, "margin": margin,
        "calib_samples": calib_samples, "twin": twin_row, "rows": rows, "environment": environment(backend),
    }
    outputs.write_text(out / "sweep.json", json.dumps(doc, indent=2))
    write_csv(doc, out / "sweep.csv")
    write_plot(doc, out / "pareto.png")
    return doc


def write_csv(doc: dict[str, Any], path: str | Path) -> Path:
    """One row per beta: beta, kept_mean, accuracy, overflowed, planned bytes and ratios, pareto."""
    fields = ["beta", "kept_mean", "accuracy", "overflowed", "nonfinite", "samples", "planned_peak_bytes", "planned_ratio",
              "planned_live_ratio", "pareto"]
    with outputs.atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in doc["rows"]:
            w.writerow({k: r.get(k) for k in fields})
    return Path(path)


def write_plot(doc: dict[str, Any], path: str | Path) -> Path:
    """Accuracy vs planned memory ratio (spectral / twin), one point per beta, Pareto front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["rows"]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    xs = [r["planned_ratio"] for r in rows]
    ys = [r["accuracy"] for r in rows]
    ax.scatter(xs, ys, c="C0", label="SpecNet (one point per beta)", zorder=3)
    for r in rows:
        ax.annotate(f"β={r['beta']:g}", (r["planned_ratio"], r["accuracy"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    front = sorted((r for r in rows if r.get("pareto")), key=lambda r: r["planned_ratio"])
    if len(front) > 1:
        ax.plot([r["planned_ratio"] for r in front], [r["accuracy"] for r in front], "C0--", lw=1, label="Pareto front")
    twin = doc["twin"]
    if twin.get("accuracy") is not None:
        ax.scatter([1.0], [twin["accuracy"]], c="C1", marker="s", label="spatial twin", zorder=3)
    ax.axvline(1.0, color="C1", lw=0.8, ls=":")
    ax.set_xlabel(f"planned peak memory / twin ({doc['activation_dtype']} activations, batch {doc['batch']})")
    ax.set_ylabel("test accuracy")
    ax.set_title("accuracy vs memory over beta")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return outputs.save_figure(fig, path)


def _cmd_sweep(args: Any) -> int:
    from specdeploy.bench import _require_matplotlib

    _require_matplotlib("specdeploy sweep (pareto.png)")
    doc = run_sweep(args.checkpoint, parse_betas(args.betas), args.out, twin=args.twin, data=args.data,
                    data_dir=args.data_dir, samples=args.samples, calib_samples=args.calib_samples,
                    value_dtype=args.value_dtype, margin=args.margin, backend=args.backend, batch=args.batch,
                    progress=not args.no_progress, allow_nonfinite=args.allow_nonfinite)
    print(f"{'beta':>6}  {'kept':>6}  {'accuracy':>8}  {'overflowed':>10}  {'mem ratio':>9}  {'maps only':>9}  pareto")
    for r in doc["rows"]:
        kept = "-" if r["kept_mean"] is None else f"{r['kept_mean']:.3f}"
        print(f"{r['beta']:>6g}  {kept:>6}  {r['accuracy']:>8.4f}  {r['overflowed']:>10}  "
              f"{r['planned_ratio']:>9.3f}  {r['planned_live_ratio']:>9.3f}  {'*' if r['pareto'] else ''}")
    print(f"written: {Path(args.out) / 'sweep.json'}, sweep.csv, pareto.png")
    return 0


def register(subparsers: Any) -> None:
    """The ``specdeploy sweep`` verb."""
    p = subparsers.add_parser("sweep", help="export a SpecNet at several betas: accuracy vs planned memory")
    p.add_argument("checkpoint", help="spectral checkpoint directory")
    p.add_argument("--betas", default="0,0.25,...,2.0", help="e.g. 0,0.5,1 or 0,0.25,...,2.0")
    p.add_argument("--twin", default=None, help="the spatial twin's checkpoint (for its accuracy)")
    p.add_argument("--data", default=None, help="data set (default: the checkpoint's)")
    p.add_argument("--data-dir", default=None, help="directory holding the data set's files")
    p.add_argument("--samples", type=positive_int, default=500, help="test samples per accuracy (default 500)")
    p.add_argument("--calib-samples", type=positive_int, default=256,
                   help="training samples for calibration (default 256)")
    p.add_argument("--value-dtype", choices=("fp32", "fp16"), default="fp16",
                   help="precision of the packed values (default fp16)")
    p.add_argument("--margin", type=float_at_least(1.0), default=CALIBRATION_MARGIN,
                   help=f"capacity = max nnz seen * margin (>= 1, default {CALIBRATION_MARGIN})")
    p.add_argument("--backend", choices=("reference", "ort"), default="ort",
                   help="CPU backend for the accuracy (default ort)")
    p.add_argument("--batch", type=positive_int, default=1, help="batch of the planned memory figures (default 1)")
    p.add_argument("--out", required=True, help="output directory (sweep.json, sweep.csv, pareto.png, onnx/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="count test samples that meet a NaN/Inf (as wrong answers) instead of stopping")
    p.add_argument("--force", action="store_true", help="replace an existing output directory's files")
    p.set_defaults(func=_cmd_sweep)
