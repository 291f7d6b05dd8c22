"""The GPU session's scripts, run here: scripts/bench_kernels.py's --host dry run (its incremental
JSON/CSV and what a SIGINT leaves), and scripts/gpu_report.py on the committed H200 session and on a
kernels JSON.

Why: a lent GPU machine runs these scripts once, under a time cap, with no second chance; a run that
loses its rows to the cap (as on 2026-11-28) or a report that misreads a file costs a GPU session.
The --host numbers mean nothing; what is checked is what gets written.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SESSION = ROOT / "docs" / "results" / "gpu" / "h200-2026-11-28"
TINY = ["--host", "--width", "0.125", "--batches", "1", "--repeats", "1", "--warmup", "1", "--inner", "1"]


def _script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _bench_kernels(lib: Path, out: Path, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / "bench_kernels.py"), "--library", str(lib), "--out", str(out), *args]


def _report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_report.py"), *args], env=_env(),
                          capture_output=True, text=True, timeout=60)


def _files(out: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    names = sorted(p.name for p in out.iterdir())  # the two files, no temporary one left beside them
    assert len(names) == 2 and names[0].endswith(".csv") and names[1].endswith(".json"), names
    jsons, csvs = list(out.glob("*.json")), list(out.glob("*.csv"))
    with csvs[0].open(newline="") as f:
        return json.loads(jsons[0].read_text()), list(csv.DictReader(f))


def test_timer_budget_cuts_slow_calls_only() -> None:
    Timer = _script("bench_kernels").Timer
    t = Timer(None, False, warmup=5, repeats=30, inner=10, budget_s=0.15)
    assert t._counts(0.033) == (0, Timer.MIN_REPEATS, 1)  # a 33 ms hybrid call: 5 pairs of 1 call
    assert t._counts(4e-5) == (3, 30, 10)  # a 0.04 ms cuDNN call keeps the full counts
    calls = []
    r = Timer(None, False, warmup=3, repeats=4, inner=2)(lambda: calls.append(1))
    assert len(calls) == 3 + 4 * 2 and (r["repeats"], r["inner"]) == (4, 2)


@pytest.fixture(scope="module")
def kernels_run(host_lib_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished --host dry run (two layers, batch 1, paper block, pack/unpack, a timing budget)."""
    out = tmp_path_factory.mktemp("session") / "kernels"
    p = subprocess.run(_bench_kernels(host_lib_path, out, *TINY, "--layers", "features.0,features.1",
                                      "--blocks", "paper", "--packed-bandwidth", "--timing-budget-s", "0.05"),
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return out


def test_host_dry_run_writes_every_row(kernels_run: Path) -> None:
    doc, rows = _files(kernels_run)
    assert doc["schema_version"] == 3 and doc["complete"] is True and doc["interrupted"] is False
    assert [(r["layer"]["name"], r["batch"]) for r in doc["layers"]] == [("features.0", 1), ("features.1", 1)]
    assert [(r["layer"], int(r["batch"])) for r in rows] == [("features.0", 1), ("features.1", 1)]
    for r in doc["layers"]:
        for k in ("spec_fp32", "spec_fp16", "cudnn_fp32", "cudnn_fp16"):
            assert r[k]["repeats"] >= 1 and r[k]["inner"] >= 1 and r[k]["median_ms"] > 0
    assert len(doc["packed_bandwidth"]) == 2 and len(doc["first_layer_dft"]) == 1  # features.1 fp32/fp16; features.0
    assert doc["settings"]["timing_budget_s"] == 0.05


def test_sigint_keeps_the_rows_measured(host_lib_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "kernels"
    layers = "features.0,features.1,features.3,features.4"
    proc = subprocess.Popen(_bench_kernels(host_lib_path, out, *TINY, "--width", "0.5", "--batches", "1,2",
                                           "--layers", layers, "--blocks", "paper,hybrid"),
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            js = list(out.glob("*.json")) if out.is_dir() else []
            if js and json.loads(js[0].read_text())["layers"]:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before its first row could be interrupted:\n" + proc.stdout.read()
        proc.send_signal(signal.SIGINT)
        log, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, log
    doc, rows = _files(out)
    assert doc["interrupted"] is True and doc["complete"] is False and doc["interrupted_during"], doc
    assert 1 <= len(doc["layers"]) < 8
    assert [(r["layer"]["name"], r["batch"]) for r in doc["layers"]] == [(r["layer"], int(r["batch"])) for r in rows]
    assert "INTERRUPTED during" in log


def test_report_of_the_committed_h200_session() -> None:
    p = _report(str(SESSION))
    assert p.returncode == 0, p.stderr
    md = p.stdout
    assert "parsed from the rows bench_kernels.py printed into session.log" in md and "time cap" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| features.")]
    assert len(rows) == 20  # the kernels stage was cut in features.8 at batch 32
    assert "| features.0 | 1 | 0.080 | 0.035 | 2.30 | met | 1.674 | 0.045 | 37.22 | **not met** |" in rows
    assert "| features.7 | 32 | 2.390 | 0.037 | 65.09 | **not met** | 33.418 | 0.044 | 755.67 | **not met** |" in rows
    # vgg16 paper, batch 1: device 46,592 B vs planned 42,204 B
    assert "| vgg16 paper | 1 | spectral | 42,204 | 46,592 | 1.104 | **not met** |" in md
    assert "188 passed, 1 skipped" in md and "NVIDIA H200" in md


def test_report_reads_a_kernels_json_and_guards_its_output(kernels_run: Path, tmp_path: Path) -> None:
    folder = kernels_run.parent
    p = _report(str(folder))
    assert p.returncode == 0, p.stderr
    assert "kernels/host-x86_64.json" in p.stdout and "--host smoke test" in p.stdout
    assert sum(ln.startswith("| features.") for ln in p.stdout.splitlines()) == 2 + 2  # rows + pack/unpack
    out = tmp_path / "report.md"
    out.write_text("keep me")
    refused = _report(str(folder), "--out", str(out))
    assert refused.returncode != 0 and "already exists" in refused.stderr and out.read_text() == "keep me"
    assert _report(str(folder), "--out", str(out), "--force").returncode == 0
    assert out.read_text() == p.stdout
