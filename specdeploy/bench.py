"""Bench a spectral model against its spatial twin: accuracy, planned and measured memory, latency.

Why both models in one call: DESIGN §1 says every comparison is twin vs twin, same batch, same
precision, measured in the same run. So ``run_bench`` opens both files on the same backend, feeds them
the same test images (each normalized with its own metadata's data set and fitted to its own input),
and writes one record per batch size with the spectral figures, the twin's, and their ratios.

Figures per model and batch (schema: docs/bench.md):
* ``planned_peak_bytes``: ``specdeploy.memory.plan`` at that batch (live activations + the op's
  declared workspace); activations counted as fp16 for both models when the spectral model stores
  fp16 values (the twin at its best precision). ``planned_live_peak_bytes``: the live activations
  alone (the feature maps' share, the paper's claim; the ops' scratch excluded).
* ``accuracy`` / ``overflowed`` / ``nonfinite``: over the evaluated test samples. Every op is per sample, so the
  result does not depend on the batch; it is evaluated once per model, at the largest batch asked for.
* ``latency_ms``: median wall time of one ``run`` of a batch, warmup runs excluded.
* ``measured``: what the backend's ``Session.memory()`` reports (CPU backends: process RSS deltas).

CLI: ``specdeploy bench SPEC.onnx --twin TWIN.onnx --backend ort --batch 1,8,32 --json out.json
--csv out.csv --plot out.png``. Never imports torch.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import statistics
import time
from importlib import metadata as _md
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from specdeploy import outputs

SCHEMA = "specdeploy-bench"
SCHEMA_VERSION = 1
MODELS = ("spec", "twin")

__all__ = ["SCHEMA", "SCHEMA_VERSION", "run_bench", "write_json", "write_csv", "write_plot", "environment",
           "load_eval_data", "measured_peak", "summary", "parse_batches", "register"]


# ------------------------------------------------------------------------------------------- data



#: backends whose standard ops run in float32 or float16 (option ``fp16``): bench runs them at the plan's
#: precision unless told otherwise (``--backend-opt fp16=0``), so the measured activations describe what is planned
FP16_OPTION_BACKENDS = ("native-host", "cuda")

def load_eval_data(info: Any, data: str | None, data_dir: str | None, samples: int | None,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Normalized float32 NCHW test images and labels fitted to a model's input, plus a description.

    ``data`` defaults to the model's metadata data set; normalization always uses the metadata's name
    (the constants the model was trained with), falling back to ``data``.
    """
    from specdeploy import data as datasets

    name = data or info.data_name
    if not name:
        raise ValueError(f"{info.label}: no data set given (--data) and the model has no 'specdeploy.data' metadata")
    _, C, H, W = info.input_shape
    if H != W:
        raise ValueError(f"{info.label}: input {H}x{W} is not square; the data sets are fitted to square images")
    ds = datasets.prepare(name, "test", H, C, samples=samples, seed=seed, data_dir=data_dir)
    norm = info.data_name or name
    x = datasets.normalize(ds.images, norm)
    desc = {"name": name, "split": "test", "samples": int(len(ds.labels)), "normalization": norm, "seed": seed}
    return x, ds.labels.astype(np.int64), desc


# ------------------------------------------------------------------------------------ twin checks

#: model metadata fields that must agree between a spectral model and its twin (DESIGN §1: same
#: depth, channels, kernel sizes, pooling positions and head). "domain", "beta", "activation" and
#: "norm" are the spectral model's own.
TWIN_FIELDS = ("model", "width", "num_classes", "in_channels", "input_size", "depth", "growth")


def twin_mismatches(spec: Any, twin: Any) -> list[str]:
    """Why ``twin`` is not the spatial twin of ``spec``, from the files and their ONNX metadata.

    Checked: distinct files; the twin has no specdeploy ops; the same input shape; the same data set
    (metadata ``specdeploy.data``); the same architecture (metadata ``specdeploy.model``: model family,
    width, classes, channels, size, DenseNet depth/growth). A field missing from either file is not
    compared (older exports); a file without model metadata cannot be compared at all and is reported.
    """
    problems: list[str] = []
    if spec.path is not None and twin.path is not None and Path(spec.path).resolve() == Path(twin.path).resolve():
        problems.append(f"the twin is the spectral model itself ({spec.label})")
    if twin.is_spectral:
        problems.append(f"the twin {twin.label} has specdeploy ops: it is a spectral model, not a spatial twin")
    if tuple(spec.input_shape[1:]) != tuple(twin.input_shape[1:]):
        problems.append(f"input shapes differ: spectral {list(spec.input_shape[1:])}, twin {list(twin.input_shape[1:])}")
    if spec.data_name and twin.data_name and spec.data_name != twin.data_name:
        problems.append(f"data sets differ: spectral trained on {spec.data_name!r}, twin on {twin.data_name!r}")
    sm, tm = spec.metadata.get("model"), twin.metadata.get("model")
    if not isinstance(sm, dict) or not isinstance(tm, dict):
        which = [m.label for m, d in ((spec, sm), (twin, tm)) if not isinstance(d, dict)]
        problems.append(f"no 'specdeploy.model' metadata in {', '.join(which)}: cannot tell whether the "
                        "architectures match")
    else:
        for f in TWIN_FIELDS:
            if f in sm and f in tm and sm[f] != tm[f]:
                if f in ("depth", "growth") and sm.get("model") != "densenet":
                    continue  # only DenseNet reads them
                problems.append(f"architectures differ in '{f}': spectral {sm[f]!r}, twin {tm[f]!r}")
    return problems


def default_batches(infos: dict[str, Any], wanted: Sequence[int] = (1, 8, 32)) -> tuple[list[int], list[str]]:
    """The default batch sizes both models accept, and notes on those left out.

    ``wanted`` filtered by each model's static batch or declared maximum (a recipe's max_batch 8
    drops 32); a static-batch model gets its own batch; a maximum below every wanted size gets
    [1, maximum].
    """
    statics = {i.batch for i in infos.values() if i.batch is not None}
    if len(statics) > 1:
        return sorted(statics), []  # check_batch then names the conflict
    if statics:
        b = statics.pop()
        return [b], ([f"batch {b}: a model was exported with a static batch"] if b not in wanted else [])
    limit = min((i.max_batch for i in infos.values() if i.max_batch is not None), default=None)
    keep = [b for b in wanted if limit is None or b <= limit]
    dropped = [b for b in wanted if b not in keep]
    if limit is not None and limit not in keep:
        keep.append(limit)
    notes = [f"batch {', '.join(map(str, dropped))} left out: over the models' declared maximum {limit}"] if dropped else []
    return sorted(set(keep)), notes


# -------------------------------------------------------------------------------------- measuring


def environment(backend: str) -> dict[str, Any]:
    """Where and with what the figures were measured (machine, versions, date)."""
    versions = {}
    for pkg in ("specdeploy", "numpy", "onnx", "onnxruntime", "onnxruntime-extensions", "tensorrt"):
        try:
            versions[pkg] = _md.version(pkg)
        except _md.PackageNotFoundError:
            continue
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
        "backend": backend,
    }


def _accuracy(sess: Any, x: np.ndarray, y: np.ndarray, batch: int, bar: Any = None) -> tuple[float, int, int]:
    """Accuracy, overflowed- and non-finite-sample counts in chunks of ``batch`` (a static model's last
    chunk is padded). A sample that met a NaN/Inf (``last_nonfinite``; only reached with
    ``nonfinite="flag"``) never counts as correct: its answer means nothing."""
    correct = overflowed = nonfinite = 0
    static = sess.input_shape[0] is not None
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        n = len(chunk)
        if static and n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), chunk.dtype)])
        logits = sess.run(chunk)[:n]
        bad = np.asarray(sess.last_nonfinite[:n], dtype=bool)
        correct += int(((logits.argmax(axis=1) == y[i : i + n]) & ~bad).sum())
        overflowed += int(np.asarray(sess.last_overflowed[:n]).sum())
        nonfinite += int(bad.sum())
        if bar is not None:
            bar.update(1)
    return correct / max(1, len(x)), overflowed, nonfinite


def _latency(sess: Any, x: np.ndarray, batch: int, warmup: int, repeats: int, bar: Any) -> dict[str, float]:
    reps = -(-batch // len(x))
    xb = np.ascontiguousarray(np.concatenate([x] * reps)[:batch] if reps > 1 else x[:batch])
    for _ in range(warmup):
        sess.run(xb)
        bar.update(1)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(xb)
        times.append((time.perf_counter() - t0) * 1e3)
        bar.update(1)
    times.sort()
    return {"latency_ms": statistics.median(times), "latency_ms_min": times[0],
            "latency_ms_p90": times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]}


def _ratio(a: Any, b: Any) -> float | None:
    if a is None or b is None or not b:
        return None
    return float(a) / float(b)


#: RSS deltas below this are page-granular noise (a few 4 KiB pages of interpreter and allocator
#: churn), not a model's memory: their ratio is not reported.
RSS_NOISE_FLOOR_BYTES = 1 << 20


def accounting_note(act: str, value_dtype: str | None) -> str:
    """How the planned figures count activations, said in every bench output (docs/bench.md)."""
    if act == "fp16":
        return ("planned: standard-op activations of BOTH models counted as fp16 (the twin at its best "
                f"precision, matching the spectral model's {value_dtype} values); `specdeploy memory` counts fp32 "
                "unless given --activation-dtype fp16")
    return "planned: standard-op activations of both models counted as fp32"


def measured_ratio(spec: tuple[int | None, str | None], twin: tuple[int | None, str | None]) -> tuple[float | None, str]:
    """spec/twin of the measured figures, or None with the reason when it would mean nothing.

    Process RSS deltas (CPU backends) are only compared when both are above ``RSS_NOISE_FLOOR_BYTES``:
    below it the ratio of page noise (e.g. 12 KiB / 4 KiB = 3.0) says nothing about the models.
    """
    (a, sa), (b, sb) = spec, twin
    if a is None or b is None or not b:
        return None, "not measured on this backend"
    if sa != sb:
        return None, f"different sources ({sa} vs {sb})"
    if sa == "run_peak_rss_delta_bytes":
        if min(a, b) < RSS_NOISE_FLOOR_BYTES:
            return None, (f"process RSS deltas ({a} and {b} bytes) below the {RSS_NOISE_FLOOR_BYTES} byte noise floor: "
                          "page-granular noise, not the models' memory")
        return float(a) / float(b), "process RSS deltas (host process, not device memory; approximate)"
    return float(a) / float(b), sa or ""


def measured_peak(m: dict[str, Any] | None) -> tuple[int | None, str | None]:
    """The one measured figure compared across models, and where it came from (docs/bench.md).

    Preference: TensorRT's ``device_memory_size`` (DESIGN §5 figure 2), the cuda backend's allocator
    peak ``device_peak_bytes`` (figure 4), then the CPU backends' ``run_peak_rss_delta_bytes``.
    """
    if not m:
        return None, None
    trt = m.get("tensorrt")
    if isinstance(trt, dict) and trt.get("device_memory_size") is not None:
        return int(trt["device_memory_size"]), "tensorrt.device_memory_size"
    for key in ("device_peak_bytes", "run_peak_rss_delta_bytes"):
        if m.get(key) is not None:
            return int(m[key]), key
    return None, None


# bench field -> the executor's memory() key (native backends: cuda, native-host); None elsewhere
MEASURED_SPLIT = {
    "measured_activation_bytes": "tracked_activation_peak_bytes",
    "measured_op_workspace_bytes": "tracked_op_workspace_peak_bytes",
    "measured_library_scratch_bytes": "library_scratch_peak_bytes",
}


def measured_split(m: dict[str, Any] | None) -> dict[str, int | None]:
    """The measured memory as separate figures (DESIGN §5: activations, our ops' workspace, the
    libraries' scratch such as cuDNN/cuBLAS), so a measured total never mixes what the plan counts
    with what it does not. None where the backend does not report that figure."""
    m = m or {}
    return {f: (int(m[k]) if m.get(k) is not None else None) for f, k in MEASURED_SPLIT.items()}


def run_bench(
    spec_path: str | Path,
    twin_path: str | Path,
    backend: str = "ort",
    batches: Sequence[int] | None = None,
    data: str | None = None,
    data_dir: str | None = None,
    samples: int | None = 1000,
    *,
    repeats: int = 10,
    warmup: int = 2,
    seed: int = 0,
    progress: bool = True,
    backend_opts: dict[str, Any] | None = None,
    allow_mismatched_twin: bool = False,
    allow_nonfinite: bool = False,
) -> dict[str, Any]:
    """Run both models on ``backend`` at every batch size; returns the bench document (docs/bench.md).

    ``batches``: None = 1, 8, 32 as far as both models accept them (``default_batches``).
    ``samples``: test images evaluated for accuracy (None = the whole test split). Raises ValueError
    (ModelError/InputError) if a model cannot be opened or does not accept a batch size, and when
    ``twin_path`` is not the spectral model's twin (``twin_mismatches``) unless
    ``allow_mismatched_twin``, which records the mismatches in the document instead. A test sample
    that meets a NaN/Inf raises NonFiniteError unless ``allow_nonfinite``: then it is counted in each
    model's ``nonfinite`` and never as correct.
    """
    from tqdm.auto import tqdm

    from specdeploy import memory, runtime

    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    paths = {"spec": Path(spec_path), "twin": Path(twin_path)}
    infos = {k: runtime.read_model(p) for k, p in paths.items()}
    if not infos["spec"].is_spectral:
        raise ValueError(f"{paths['spec']}: has no specdeploy ops; pass the spectral model first and the twin with --twin")
    mismatches = twin_mismatches(infos["spec"], infos["twin"])
    if mismatches and not allow_mismatched_twin:
        raise ValueError(f"{paths['twin']} is not the twin of {paths['spec']}: " + "; ".join(mismatches)
                         + " (pass --allow-mismatched-twin to compare them anyway)")
    batch_notes: list[str] = []
    if batches is None:
        batches, batch_notes = default_batches(infos)
    batches = [int(b) for b in batches]
    if not batches or any(b < 1 for b in batches):
        raise ValueError(f"batch sizes must be positive integers, got {batches}")
    for b in batches:  # fail before any work if a batch cannot run
        for info in infos.values():
            info.check_batch(b)
    act = "fp16" if infos["spec"].value_dtype == "fp16" else "fp32"
    policy = "flag" if allow_nonfinite else "raise"
    opts = dict(backend_opts or {})
    if backend in FP16_OPTION_BACKENDS:  # measure what the plan counts: standard ops at its precision
        opts.setdefault("fp16", act == "fp16")
        act = "fp16" if opts["fp16"] else "fp32"  # an explicit choice moves the plan with it
    sessions = {k: runtime.load(p, backend, nonfinite=policy, **opts) for k, p in paths.items()}
    evals = {k: load_eval_data(infos[k], data, data_dir, samples, seed) for k in MODELS}
    acc_batch = max(batches)
    chunks = {k: -(-len(evals[k][0]) // acc_batch) for k in MODELS}
    total = sum(chunks.values()) + len(batches) * 2 * (warmup + repeats)
    results: dict[str, dict[str, Any]] = {k: {} for k in MODELS}
    # disable=None: bars only on a terminal, never in logs
    with tqdm(total=total, desc=f"bench ({backend})", disable=None if progress else True, leave=False) as bar:
        for k in MODELS:
            x, y, _ = evals[k]
            acc, ovf, nonfin = _accuracy(sessions[k], x, y, acc_batch, bar)
            results[k].update(accuracy=acc, overflowed=ovf, nonfinite=nonfin, samples=len(y),
                              accuracy_batch=acc_batch)
        records = []
        for b in batches:
            rec: dict[str, Any] = {"backend": backend, "batch": b}
            for k in MODELS:
                sess = sessions[k]
                sess.reset_memory()
                lat = _latency(sess, evals[k][0], b, warmup, repeats, bar)
                p = memory.plan(paths[k], batch=b, activation_dtype=act)
                rec[k] = {
                    "model": str(paths[k]),
                    "planned_peak_bytes": p.peak_bytes,
                    "planned_peak_node": p.peak_node,
                    "planned_live_peak_bytes": p.live_peak_bytes,
                    "planned_activation_dtype": act,
                    "weights_bytes": p.weights_bytes,
                    **results[k],
                    **lat,
                    "measured": sess.memory(),
                }
                rec[k]["measured_peak_bytes"], rec[k]["measured_peak_source"] = measured_peak(rec[k]["measured"])
                rec[k].update(measured_split(rec[k]["measured"]))
            rec["ratios"] = {
                "planned_peak": _ratio(rec["spec"]["planned_peak_bytes"], rec["twin"]["planned_peak_bytes"]),
                "planned_live_peak": _ratio(rec["spec"]["planned_live_peak_bytes"],
                                            rec["twin"]["planned_live_peak_bytes"]),
                "latency": _ratio(rec["spec"]["latency_ms"], rec["twin"]["latency_ms"]),
            }
            rec["ratios"]["measured_peak"], rec["measured_peak_note"] = measured_ratio(
                (rec["spec"]["measured_peak_bytes"], rec["spec"]["measured_peak_source"]),
                (rec["twin"]["measured_peak_bytes"], rec["twin"]["measured_peak_source"]))
            records.append(rec)
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "backend": backend,
        "spec_model": str(paths["spec"]),
        "twin_model": str(paths["twin"]),
        "value_dtype": infos["spec"].value_dtype,
        "data": {k: evals[k][2] for k in MODELS},
        "settings": {"batches": batches, "batch_notes": batch_notes, "repeats": repeats, "warmup": warmup,
                     "activation_dtype": act, "accuracy_batch": acc_batch,
                     "accounting": accounting_note(act, infos["spec"].value_dtype)},
        "twin_check": {"mismatches": mismatches, "allowed": bool(mismatches and allow_mismatched_twin)},
        "environment": environment(backend),
        "records": records,
    }


# ---------------------------------------------------------------------------------------- outputs

CSV_FIELDS = (
    ["backend", "batch"]
    + [f"{m}_{f}" for m in MODELS for f in ("planned_peak_bytes", "planned_live_peak_bytes", "accuracy",
                                            "latency_ms", "overflowed", "nonfinite", "measured_peak_bytes",
                                            *MEASURED_SPLIT)]
    + ["ratio_planned_peak", "ratio_latency", "ratio_measured_peak"]
)


def write_json(doc: dict[str, Any], path: str | Path) -> Path:
    """The bench document as JSON, written atomically."""
    return outputs.write_text(path, json.dumps(doc, indent=2))


def write_csv(doc: dict[str, Any], path: str | Path) -> Path:
    """One row per batch size, spectral and twin columns side by side (``CSV_FIELDS``)."""
    out = Path(path)
    with outputs.atomic_path(out) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in doc["records"]:
            row: dict[str, Any] = {"backend": r["backend"], "batch": r["batch"]}
            for m in MODELS:
                for fld in ("planned_peak_bytes", "planned_live_peak_bytes", "accuracy", "latency_ms", "overflowed",
                            "nonfinite", "measured_peak_bytes", *MEASURED_SPLIT):
                    row[f"{m}_{fld}"] = r[m].get(fld)
            row.update(ratio_planned_peak=r["ratios"]["planned_peak"], ratio_latency=r["ratios"]["latency"],
                       ratio_measured_peak=r["ratios"].get("measured_peak"))
            w.writerow(row)
    return out


def write_plot(doc: dict[str, Any], path: str | Path) -> Path:
    """Planned peak bytes (spec vs twin per batch), latency per batch, and accuracy, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = doc["records"]
    bs = [r["batch"] for r in recs]
    xs = np.arange(len(bs))
    split = any(r[m].get("measured_activation_bytes") is not None for r in recs for m in MODELS)
    fig, axes = plt.subplots(1, 4 if split else 3, figsize=(17 if split else 13, 4))
    ax = axes[0]
    for i, (m, label) in enumerate((("spec", "spectral"), ("twin", "spatial twin"))):
        ax.bar(xs + (i - 0.5) * 0.38, [r[m]["planned_peak_bytes"] / 1024 for r in recs], 0.38, label=label)
    for xi, r in zip(xs, recs):
        if r["ratios"]["planned_peak"] is not None:
            ax.annotate(f"x{r['ratios']['planned_peak']:.2f}", (xi, max(r["spec"]["planned_peak_bytes"],
                        r["twin"]["planned_peak_bytes"]) / 1024), ha="center", va="bottom", fontsize=8)  # spec/twin
    peaks = [r[m]["planned_peak_bytes"] for r in recs for m in MODELS]
    if max(peaks) > 20 * max(1, min(peaks)):
        ax.set_yscale("log")
    ax.set_xticks(xs, [str(b) for b in bs])
    ax.set_xlabel("batch")
    ax.set_ylabel("planned peak activation memory (KiB)")
    ax.set_title(f"planned peak ({doc['settings']['activation_dtype']} activations)")
    ax.legend()
    ax = axes[1]
    for m, label in (("spec", "spectral"), ("twin", "spatial twin")):
        ax.plot(bs, [r[m]["latency_ms"] for r in recs], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch")
    ax.set_ylabel("median latency per batch (ms)")
    ax.set_title(f"latency ({doc['backend']})")
    ax.legend()
    ax = axes[2]
    accs = [recs[0]["spec"]["accuracy"], recs[0]["twin"]["accuracy"]]
    ax.bar(["spectral", "spatial twin"], accs, color=["C0", "C1"])
    for i, a in enumerate(accs):
        ax.annotate(f"{a:.3f}", (i, a), ha="center", va="bottom")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test accuracy")
    d = doc["data"]["spec"]
    ax.set_title(f"accuracy ({d['name']}, {d['samples']} samples)")
    if split:  # measured memory as separate figures, stacked per model and batch
        ax = axes[3]
        for i, m in enumerate(MODELS):
            bottom = np.zeros(len(recs))
            for j, (fld, label) in enumerate((("measured_activation_bytes", "activations"),
                                              ("measured_op_workspace_bytes", "op workspace"),
                                              ("measured_library_scratch_bytes", "library scratch"))):
                vals = np.array([(r[m].get(fld) or 0) / 1024 for r in recs])
                ax.bar(xs + (i - 0.5) * 0.38, vals, 0.38, bottom=bottom, color=f"C{j + 2}",
                       hatch="//" if m == "twin" else None, label=label if i == 0 else None)
                bottom += vals
        ax.set_xticks(xs, [str(b) for b in bs])
        ax.set_xlabel("batch (left: spectral, right/hatched: twin)")
        ax.set_ylabel("measured (KiB)")
        ax.set_title(f"measured memory, separate figures ({doc['backend']})")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return outputs.save_figure(fig, path)


def summary(doc: dict[str, Any]) -> str:
    """A short text table of the records ("maps only": the planned ratio of live activations alone)."""
    lines = [f"{'batch':>5}  {'planned spec':>13}  {'planned twin':>13}  {'ratio':>6}  {'maps only':>9}  "
             f"{'lat spec':>9}  {'lat twin':>9}  {'acc spec':>8}  {'acc twin':>8}  {'overflowed':>10}  "
             f"{'nonfinite':>9}"]

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    for r in doc["records"]:
        s, t = r["spec"], r["twin"]
        lines.append(
            f"{r['batch']:>5}  {s['planned_peak_bytes']:>13}  {t['planned_peak_bytes']:>13}  "
            f"{fmt(r['ratios']['planned_peak']):>6}  {fmt(r['ratios'].get('planned_live_peak')):>9}  "
            f"{s['latency_ms']:>7.2f}ms  {t['latency_ms']:>7.2f}ms  "
            f"{s['accuracy']:>8.4f}  {t['accuracy']:>8.4f}  {s['overflowed']:>10}  "
            f"{s.get('nonfinite', 0) + t.get('nonfinite', 0):>9}"
        )
    settings = doc.get("settings", {})
    if settings.get("accounting"):
        lines.append(settings["accounting"])
    for note in settings.get("batch_notes", []):
        lines.append(f"note: {note}")
    for m in doc.get("twin_check", {}).get("mismatches", []):
        lines.append(f"WARNING (--allow-mismatched-twin): {m}")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- CLI


def parse_batches(text: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32] (ValueError naming the bad item)."""
    out = []
    for item in text.split(","):
        item = item.strip()
        try:
            v = int(item)
        except ValueError:
            raise ValueError(f"--batch: {item!r} is not an integer (expected e.g. 1,8,32)") from None
        if v < 1:
            raise ValueError(f"--batch: batch sizes must be >= 1, got {v}")
        out.append(v)
    return out


def parse_backend_opts(items: Sequence[str]) -> dict[str, Any]:
    """['fp16=1', 'plugins=lib.so'] -> {'fp16': True, 'plugins': 'lib.so'} (ints, floats and booleans parsed)."""
    opts: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--backend-opt expects KEY=VALUE, got {item!r}")
        low = value.lower()
        if low in ("1", "true", "yes", "on"):
            opts[key] = True
        elif low in ("0", "false", "no", "off"):
            opts[key] = False
        else:
            try:
                opts[key] = int(value)
            except ValueError:
                try:
                    opts[key] = float(value)
                except ValueError:
                    opts[key] = value
    return opts


def _require_matplotlib(what: str) -> None:
    """Fail before the work when the plot extra is missing (not after minutes of measuring)."""
    from specdeploy import deps

    deps.require({"matplotlib": "plot"}, what)


def _cmd_bench(args: Any) -> int:
    if args.plot:
        _require_matplotlib("--plot")
    batches = parse_batches(args.batch) if args.batch is not None else None
    doc = run_bench(args.spec, args.twin, args.backend, batches, args.data, args.data_dir,
                    args.samples, repeats=args.repeats, warmup=args.warmup, progress=not args.no_progress,
                    backend_opts=parse_backend_opts(args.backend_opt),
                    allow_mismatched_twin=args.allow_mismatched_twin, allow_nonfinite=args.allow_nonfinite)
    print(summary(doc))
    written: Iterable[Path] = [
        f(doc, p) for f, p in ((write_json, args.json), (write_csv, args.csv), (write_plot, args.plot)) if p
    ]
    for p in written:
        print(f"written: {p}")
    return 0


def register(subparsers: Any) -> None:
    """The ``specdeploy bench`` verb."""
    from specdeploy.argtypes import nonneg_int, positive_int
    from specdeploy.runtime import BACKENDS

    p = subparsers.add_parser("bench", help="spectral model vs its spatial twin: memory, latency, accuracy")
    p.add_argument("spec", help="exported spectral .onnx")
    p.add_argument("--twin", required=True, help="exported spatial twin .onnx")
    p.add_argument("--backend", default="ort", choices=list(BACKENDS), help="runtime to run both models on (default ort)")
    p.add_argument("--batch", default=None,
                   help="comma-separated batch sizes (default: 1,8,32 as far as both models accept them)")
    p.add_argument("--data", default=None, help="test data set (default: the model's metadata)")
    p.add_argument("--data-dir", default=None, help="directory holding the data set's files")
    p.add_argument("--samples", type=positive_int, default=1000, help="test samples for accuracy (default 1000)")
    p.add_argument("--repeats", type=positive_int, default=10, help="timed runs per batch size (median reported)")
    p.add_argument("--warmup", type=nonneg_int, default=2, help="untimed runs before timing (default 2)")
    p.add_argument("--json", default=None, help="write the bench document (docs/bench.md) to this file")
    p.add_argument("--csv", default=None, help="write one CSV row per batch size to this file")
    p.add_argument("--plot", default=None, help="write a PNG of memory, latency and accuracy (needs matplotlib)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--allow-mismatched-twin", action="store_true",
                   help="compare even when --twin is not the spectral model's twin (other input shape, data set "
                        "or architecture); the mismatches are printed and recorded")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="count test samples that meet a NaN/Inf (as wrong answers) instead of stopping")
    p.add_argument("--force", action="store_true",
                   help="replace existing output files (an input is never overwritten)")
    p.add_argument("--backend-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option, repeatable (e.g. fp16=1 for cuda: standard ops in fp16, as the planned "
                        "figure assumes for fp16-value models)")
    p.set_defaults(func=_cmd_bench)
