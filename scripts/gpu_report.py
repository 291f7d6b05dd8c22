#!/usr/bin/env python3
"""Markdown tables of one GPU session's results (scripts/gpu_session.sh): kernels and cuda backend.

Why: a lent GPU machine brings back a folder of logs and JSON (session.log, session.tgz or its
extracted files), and docs/results.md may quote only numbers a script of this repository renders
from such a folder. This is that script; it reads, it measures nothing.

Tables:
* kernels: per VGG16 layer and batch, the paper and the hybrid SpecConv (fp16) vs cuDNN fp16 (the
  twin's conv, resp. conv + ReLU (+ max pool)) and their ratio, with issue 14's goal (<= 3x at batch 1,
  <= 2x at batch 8 and 32) marked. From ``kernels/*.json`` (scripts/bench_kernels.py) when the folder
  has it, else parsed from the per-row lines bench_kernels.py prints into session.log (a stage cut by
  its time cap before the JSON was written: the only record then).
* launches (rows measured with ``bench_kernels.py --profile``): per layer and batch, the kernels one
  paper / hybrid SpecConv call (fp16) launched, the fraction of its timed median the GPU spent in
  kernels, and microseconds per launch (median / launches); absent for rows without a profile.
* cuda backend (``bench_<model>[_hybrid].json`` of ``specdeploy bench``): per model pair, batch and
  side, planned peak vs device peak (issue 14: measured within 10% of planned), tracked activations vs
  planned live peak, op workspace, library scratch; then spec/twin ratios of planned and device peak,
  latency (goal <= 2x the twin at batch 8) and accuracy.

    python scripts/gpu_report.py docs/results/gpu/h200-2026-11-28                # markdown to stdout
    python scripts/gpu_report.py results/gpu --out results/gpu/report.md [--force]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from specdeploy import outputs  # noqa: E402  (after the sys.path line: this checkout first)

MODEL_ORDER = ("lenet5", "alexnet", "vgg16", "densenet")
# bench_kernels.py's progress line (one per layer row); either block may be absent (--blocks)
ROW_RE = re.compile(r"^(?P<layer>\S+)\s+B=(?P<batch>\d+)\s")
PAPER_RE = re.compile(r"paper fp16\s+(?P<ms>[\d.]+) ms vs cuDNN\s+(?P<ref>[\d.]+) ms x(?P<ratio>[\d.]+)")
HYB_RE = re.compile(r"hybrid fp16\s+(?P<ms>[\d.]+) ms vs cuDNN block\s+(?P<ref>[\d.]+) ms x(?P<ratio>[\d.]+)")
# --profile's suffix of that line: "| launches: paper 336 (busy 12.3%), hybrid 4600 (busy 8.1%)"
LAUNCHES_RE = re.compile(r"\| launches: (?P<rest>.*)$")
LAUNCH_RE = re.compile(r"(?P<block>paper|hybrid) (?P<n>\d+)(?: \(busy (?P<busy>[\d.]+)%\))?")


def goal_limit(batch: int) -> float:
    """Issue 14: SpecConv <= 3x cuDNN at batch 1, <= 2x at batch 8 and 32."""
    return 3.0 if batch == 1 else 2.0


@dataclass(frozen=True)
class Timing:
    """One block's fp16 time, cuDNN's time for the same work, and their ratio."""

    ms: float
    ref_ms: float
    ratio: float


@dataclass(frozen=True)
class Launches:
    """One block's fp16 call under bench_kernels.py --profile: kernels launched, the fraction of the
    timed median the GPU ran kernels (None: not recorded), and microseconds per launch; or the error
    that profile failed with (launches None)."""

    launches: int | None
    busy: float | None
    us_per_launch: float | None
    error: str | None = None


@dataclass(frozen=True)
class KernelRow:
    layer: str
    batch: int
    paper: Timing | None
    hybrid: Timing | None
    paper_launches: Launches | None = None
    hybrid_launches: Launches | None = None


# ------------------------------------------------------------------------------------------- input


def read_folder(folder: Path) -> dict[str, bytes]:
    """Every file of the session by its relative name: the folder's own files, and the members of
    its session.tgz where the folder lacks them (read in memory, nothing extracted)."""
    files: dict[str, bytes] = {}
    tgz = folder / "session.tgz"
    if tgz.is_file():
        with tarfile.open(tgz) as tar:
            for m in tar.getmembers():
                f = tar.extractfile(m) if m.isfile() else None
                if f is not None:
                    files[m.name.removeprefix("./")] = f.read()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "session.tgz":
            files[p.relative_to(folder).as_posix()] = p.read_bytes()
    return files


def _json(files: dict[str, bytes], name: str) -> dict[str, Any]:
    try:
        return json.loads(files[name])
    except (ValueError, UnicodeDecodeError) as e:
        raise SystemExit(f"gpu_report: {name} is not valid JSON ({e})") from None


def kernel_rows(files: dict[str, bytes]) -> tuple[list[KernelRow], str]:
    """The kernel rows and where they came from (kernels/*.json, else session.log's printed lines)."""
    docs = [(n, _json(files, n)) for n in sorted(files) if n.startswith("kernels/") and n.endswith(".json")]
    docs = [(n, d) for n, d in docs if d.get("schema") == "specdeploy-kernel-bench"]
    if docs:
        rows = []
        for _, d in docs:
            for r in d.get("layers", []):
                rows.append(KernelRow(r["layer"]["name"], int(r["batch"]),
                                      _timing(r, "spec_fp16", "cudnn_fp16", None, "ratio_fp16"),
                                      _timing(r, "hyb_fp16", "cudnn_fp16", "block", "ratio_hyb_fp16"),
                                      _launches(r.get("spec_fp16")), _launches(r.get("hyb_fp16"))))
        notes = [f"{n} ({d.get('device', {}).get('name')}"
                 + ("; --host smoke test, its numbers mean nothing)" if d.get("settings", {}).get("host_smoke_test")
                    else ")")
                 + (f" (INTERRUPTED during {d.get('interrupted_during')})" if d.get("interrupted") else
                           "" if d.get("complete", True) else " (incomplete: the run stopped without a signal)")
                 for n, d in docs]
        return rows, "scripts/bench_kernels.py JSON: " + ", ".join(notes)
    rows = []
    for line in files.get("session.log", b"").decode("utf-8", "replace").splitlines():
        m, p, h = ROW_RE.match(line), PAPER_RE.search(line), HYB_RE.search(line)
        if m and (p or h):
            paper, hybrid = _parsed(p), _parsed(h)
            got = {}
            tail = LAUNCHES_RE.search(line)
            for lm in LAUNCH_RE.finditer(tail["rest"] if tail else ""):
                t = paper if lm["block"] == "paper" else hybrid
                n = int(lm["n"])
                got[lm["block"]] = Launches(n, None if lm["busy"] is None else float(lm["busy"]) / 100,
                                            t.ms * 1e3 / n if t is not None and n else None)
            rows.append(KernelRow(m["layer"], int(m["batch"]), paper, hybrid, got.get("paper"), got.get("hybrid")))
    return rows, "No kernels JSON in the folder: parsed from the rows bench_kernels.py printed into session.log"


def _timing(r: dict[str, Any], key: str, ref: str, sub: str | None, ratio: str) -> Timing | None:
    if key not in r:
        return None
    base = r[ref][sub] if sub else r[ref]
    return Timing(float(r[key]["median_ms"]), float(base["median_ms"]), float(r[ratio]))


def _launches(m: dict[str, Any] | None) -> Launches | None:
    """A measurement's --profile summary (None without one; its error where the profile failed)."""
    p = (m or {}).get("profile")
    if not p:
        return None
    if "error" in p or p.get("kernels") is None:
        return Launches(None, None, None, str(p.get("error", "no kernel count")))
    return Launches(int(p["kernels"]), p.get("busy_fraction"), p.get("us_per_launch"))


def _parsed(m: re.Match[str] | None) -> Timing | None:
    return Timing(float(m["ms"]), float(m["ref"]), float(m["ratio"])) if m else None


def bench_docs(files: dict[str, bytes]) -> list[tuple[str, dict[str, Any]]]:
    """(label, document) of each bench_<model>[_hybrid].json, in the zoo's model order."""
    out = []
    for n in files:
        m = re.fullmatch(r"bench_([A-Za-z0-9]+)(_hybrid)?\.json", n)
        if m:
            rank = MODEL_ORDER.index(m[1]) if m[1] in MODEL_ORDER else len(MODEL_ORDER)
            out.append(((rank, m[1], bool(m[2])), f"{m[1]} {'hybrid' if m[2] else 'paper'}", _json(files, n)))
    return [(label, d) for _, label, d in sorted(out, key=lambda t: t[0])]


# ------------------------------------------------------------------------------------------- render


def _b(v: Any) -> str:
    return "-" if v is None else f"{int(v):,}"


def _x(a: Any, b: Any, digits: int = 2) -> str:
    return "-" if a is None or not b else f"{a / b:.{digits}f}"


def _mark(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "**not met**")


def _range(vals: list[float], fmt: str = "{:.2f}") -> str:
    return "-" if not vals else f"{fmt.format(min(vals))}-{fmt.format(max(vals))}"


def header(files: dict[str, bytes], folder: Path) -> list[str]:
    log = files.get("session.log", b"").decode("utf-8", "replace")
    env = files.get("env.txt", b"").decode("utf-8", "replace")
    gpu = re.search(r"^\|\s+\d+\s+(NVIDIA [^|]*?)\s{2,}", env, re.M)
    lines = [f"Source: `{folder}` (rendered by `python scripts/gpu_report.py {folder}`)."]
    facts = [f"Device {gpu[1].strip()}" if gpu else None]
    facts += [ln.strip() for ln in (log + "\n" + env).splitlines() if ln.startswith(("torch ", "carried library"))][:2]
    status = files.get("status.txt", b"").decode().strip()
    facts += [f"stages: {status}" if status else None]
    tests = re.findall(r"^\d+ passed.*$", files.get("pytest_gpu.log", b"").decode("utf-8", "replace"), re.M)
    facts += [f"`pytest -m gpu`: {tests[-1]}" if tests else None]
    return lines + ["; ".join(f for f in facts if f) + "."]


def kernels_section(files: dict[str, bytes]) -> list[str]:
    rows, source = kernel_rows(files)
    out = ["### Kernels: SpecConv fp16 vs cuDNN fp16 per VGG16 layer (scripts/bench_kernels.py)", "", source + "."]
    if re.search(r"^=== kernels: TIMED OUT", files.get("session.log", b"").decode("utf-8", "replace"), re.M):
        out.append("The kernels stage hit its time cap: rows after the last one below were not measured.")
    if not rows:
        return out + ["", "No kernel rows."]
    out += ["", "| layer | batch | paper ms | cuDNN ms | paper/cuDNN | goal | hybrid ms | cuDNN block ms | "
                "hybrid/cuDNN block | goal |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r.layer, str(r.batch)]
        for t in (r.paper, r.hybrid):
            cells += (["-"] * 4 if t is None else
                      [f"{t.ms:.3f}", f"{t.ref_ms:.3f}", f"{t.ratio:.2f}", _mark(t.ratio <= goal_limit(r.batch))])
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    for name, get in (("paper", lambda r: r.paper), ("hybrid", lambda r: r.hybrid)):
        for one in (True, False):
            sel = [(r, get(r)) for r in rows if (r.batch == 1) == one and get(r) is not None]
            if sel:
                met = sum(t.ratio <= goal_limit(r.batch) for r, t in sel)
                batches = "/".join(str(b) for b in sorted({r.batch for r, _ in sel}))
                out.append(f"- {name}, batch {batches} (goal <= {goal_limit(sel[0][0].batch):.0f}x): "
                           f"{_range([t.ratio for _, t in sel])}x cuDNN, goal met in {met} of {len(sel)} rows")
    out += _launch_lines(rows)
    for d in [_json(files, n) for n in sorted(files) if n.startswith("kernels/") and n.endswith(".json")]:
        out += _packed_lines(d)
    return out


def _launch_lines(rows: list[KernelRow]) -> list[str]:
    """The --profile table: kernels per call, GPU busy fraction of the timed call, us per launch."""
    sel = [r for r in rows if r.paper_launches or r.hybrid_launches]
    if not sel:
        return []
    out = ["", "Kernel launches per SpecConv call (fp16, one call under torch.profiler, `bench_kernels.py --profile`; "
               "busy = kernel time / the timed median call, us/launch = median / launches):", "",
           "| layer | batch | paper launches | paper busy % | paper us/launch | hybrid launches | hybrid busy % | "
           "hybrid us/launch |", "|---|---|---|---|---|---|---|---|"]
    for r in sel:
        cells = [r.layer, str(r.batch)]
        for x in (r.paper_launches, r.hybrid_launches):
            cells += (["-"] * 3 if x is None else ["profile failed", "-", "-"] if x.launches is None else
                      [str(x.launches), "-" if x.busy is None else f"{100 * x.busy:.1f}",
                       "-" if x.us_per_launch is None else f"{x.us_per_launch:.2f}"])
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    for name, get in (("paper", lambda r: r.paper_launches), ("hybrid", lambda r: r.hybrid_launches)):
        failed = [f"{r.layer} B={r.batch}: {get(r).error}" for r in sel if get(r) and get(r).launches is None]
        if failed:
            out.append(f"- {name}: the profile failed in {len(failed)} rows ({'; '.join(failed[:3])})")
        xs = [get(r) for r in sel if get(r) is not None and get(r).launches is not None]
        if xs:
            busy = [x.busy for x in xs if x.busy is not None]
            upl = [x.us_per_launch for x in xs if x.us_per_launch is not None]
            parts = [f"{_range([x.launches for x in xs], '{:,}')} launches per call"]
            parts += [f"GPU busy {_range([100 * b for b in busy], '{:.1f}')}% of the call"] if busy else []
            parts += [f"{_range(upl)} us per launch"] if upl else []
            out.append(f"- {name}: {', '.join(parts)} ({len(xs)} rows)")
    return out


def _packed_lines(doc: dict[str, Any]) -> list[str]:
    rows = doc.get("packed_bandwidth") or []
    if not rows:
        return []
    out = ["", "Pack/unpack (SpecPool identity, SpecConcat of 2; goal >= 30% of peak DRAM bandwidth):", "",
           "| layer | batch | values | SpecPool GB/s | % peak | SpecConcat GB/s | % peak |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        p, c = r["spec_pool_identity"], r["spec_concat_2"]
        pct = [("-" if e.get("fraction_of_peak") is None else f"{100 * e['fraction_of_peak']:.1f}") for e in (p, c)]
        out.append(f"| {r['layer']} | {r['batch']} | {r['value_dtype']} | {p['achieved_gbps']:.1f} | {pct[0]} | "
                   f"{c['achieved_gbps']:.1f} | {pct[1]} |")
    return out


def backend_section(files: dict[str, bytes]) -> list[str]:
    docs = bench_docs(files)
    out = ["### cuda backend: memory (`specdeploy bench --backend cuda`)", ""]
    if not docs:
        return out + ["No bench_*.json in the folder."]
    out += ["Planned: DESIGN §5 figure 1 (live activations + declared op workspace) and its live peak "
            "(activations alone); device: figure 4 (allocator peak delta); library scratch = device peak - "
            "tracked peak (cuDNN/cuBLAS scratch, allocator rounding).", "",
            "| model | batch | side | planned peak B | device peak B | device/planned | within 10% | "
            "planned live B | tracked activations B | activations/planned live | op workspace B | library scratch B |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    dev_dev: dict[str, list[float]] = {"paper": [], "hybrid": [], "twin": []}
    scratch: list[int] = []
    ws_act: list[float] = []
    act_live: list[tuple[str, float]] = []
    for label, d in docs:
        for rec in d["records"]:
            for side in ("spec", "twin"):
                s = rec[side]
                m = s.get("measured") or {}
                plan, dev = s.get("planned_peak_bytes"), m.get("device_peak_bytes")
                within = None if dev is None or not plan else abs(dev / plan - 1) <= 0.10
                if dev is not None and plan:
                    dev_dev["twin" if side == "twin" else label.split()[1]].append(dev / plan)
                if side == "twin" and m.get("library_scratch_peak_bytes") is not None:
                    scratch.append(int(m["library_scratch_peak_bytes"]))
                act, ws = m.get("tracked_activation_peak_bytes"), m.get("tracked_op_workspace_peak_bytes")
                if side == "spec" and label.endswith("hybrid") and act and ws:
                    ws_act.append(ws / act)
                live = s.get("planned_live_peak_bytes")
                if act is not None and live:
                    act_live.append((f"{label} {side} batch {rec['batch']}", act / live))
                out.append(f"| {label} | {rec['batch']} | {'spectral' if side == 'spec' else 'twin'} | {_b(plan)} | "
                           f"{_b(dev)} | {_x(dev, plan, 3)} | {_mark(within)} | {_b(s.get('planned_live_peak_bytes'))} | "
                           f"{_b(act)} | {_x(act, live, 3)} | {_b(ws)} | {_b(m.get('library_scratch_peak_bytes'))} |")
    out.append("")
    for k, v in dev_dev.items():
        if v:
            dev_max = max(abs(x - 1) for x in v)
            out.append(f"- device/planned peak, {k} models: {_range(v, '{:.3f}')} (largest deviation "
                       f"{100 * dev_max:.1f}%; within 10% in {sum(abs(x - 1) <= 0.10 for x in v)} of {len(v)} rows)")
    if act_live:
        off = [f"{n} ({r:.3f})" for n, r in act_live if abs(r - 1) > 0.10]
        out.append(f"- tracked activations / planned live peak: {_range([r for _, r in act_live], '{:.3f}')}; "
                   f"within 10% in {len(act_live) - len(off)} of {len(act_live)} rows"
                   + (f" (not: {', '.join(off)})" if off else ""))
    if scratch:
        out.append(f"- twins' library scratch: {_range(scratch, '{:,}')} B")
    if ws_act:
        out.append(f"- hybrid models: op workspace / tracked activations {_range(ws_act, '{:.1f}')}x")
    lat8: list[float] = []
    out += ["", "### cuda backend: spectral vs twin (ratios spec/twin)", "",
            "| model | batch | planned peak | device peak | latency spec ms | latency twin ms | latency ratio | "
            "goal <= 2x (batch 8) | acc spec | acc twin |", "|---|---|---|---|---|---|---|---|---|---|"]
    for label, d in docs:
        for rec in d["records"]:
            s, t = rec["spec"], rec["twin"]
            sd, td = (s.get("measured") or {}).get("device_peak_bytes"), (t.get("measured") or {}).get("device_peak_bytes")
            lat = s["latency_ms"] / t["latency_ms"] if t.get("latency_ms") else None
            goal = _mark(lat <= 2.0) if rec["batch"] == 8 and lat is not None else "-"
            if rec["batch"] == 8 and lat is not None:
                lat8.append(lat)
            out.append(f"| {label} | {rec['batch']} | {_x(s['planned_peak_bytes'], t['planned_peak_bytes'], 3)} | "
                       f"{_x(sd, td, 3)} | {s['latency_ms']:.2f} | {t['latency_ms']:.2f} | "
                       f"{'-' if lat is None else f'{lat:.2f}'} | {goal} | {s['accuracy']:.4f} | {t['accuracy']:.4f} |")
    if lat8:
        out += ["", f"- latency spec/twin at batch 8: {_range(lat8, '{:.1f}')}x (goal <= 2x met in "
                    f"{sum(x <= 2.0 for x in lat8)} of {len(lat8)} models)"]
    return out


def render(folder: Path) -> str:
    files = read_folder(folder)
    if not files:
        raise SystemExit(f"gpu_report: {folder} holds no files (expected session.log, bench_*.json, ...)")
    return "\n".join(header(files, folder) + [""] + kernels_section(files) + [""] + backend_section(files)) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", help="a gpu_session.sh results folder (session.log, env.txt, bench_*.json, kernels/)")
    ap.add_argument("--out", default=None, help="write the markdown here instead of stdout")
    ap.add_argument("--force", action="store_true", help="replace an existing --out file")
    args = ap.parse_args(argv)
    folder = Path(args.folder)
    if not folder.is_dir():
        raise SystemExit(f"gpu_report: {folder} is not a directory")
    if args.out:
        try:
            outputs.check_output(args.out, [folder], force=args.force, flag="--out")
        except outputs.OutputError as e:
            raise SystemExit(f"gpu_report: {e}") from None
    text = render(folder)
    if args.out:
        outputs.write_text(args.out, text)
        print(f"written: {args.out}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
