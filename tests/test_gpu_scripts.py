"""The GPU session's scripts, run here: scripts/bench_kernels.py's --host dry run (its incremental
JSON/CSV and what a SIGINT leaves), its --profile summary (on torch's real FunctionEvent objects, built
directly) and scripts/gpu_report.py on the committed H200 session, on a kernels JSON and on log lines.

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


# ------------------------------------------------------------------------------------------- --profile


def _fe(name: str, start: float, end: float, cuda: bool, activity: str | None) -> Any:
    """A real torch FunctionEvent (constructed directly; ``activity=None`` is what an older torch without
    ``activity_type`` leaves the summary to decide by name)."""
    from torch.autograd import DeviceType
    from torch.autograd.profiler_util import FunctionEvent

    return FunctionEvent(id=0, name=name, thread=0, start_us=start, end_us=end,
                         device_type=DeviceType.CUDA if cuda else DeviceType.CPU, activity_type=activity)


TILE0 = "void sd_k_tile<HybProd<__half>, 0>(HybProd<__half>, sd_pipe)"
TILE1 = "void sd_k_tile<HybProd<__half>, 1>(HybProd<__half>, sd_pipe)"


def _events(with_activity: bool) -> list[Any]:
    bk = _script("bench_kernels")
    a = (lambda s: s) if with_activity else (lambda s: None)
    return [
        _fe(bk.PROFILE_ANNOTATION, 100, 150, False, a("user_annotation")),
        *[_fe("cudaLaunchKernel", 101 + i, 102 + i, False, a("cuda_runtime")) for i in range(3)],
        _fe("cudaMemsetAsync", 104, 105, False, a("cuda_runtime")),
        _fe(bk.PROFILE_ANNOTATION, 104, 160, True, a("gpu_user_annotation")),  # the GPU mirror of the range
        _fe("Memset (Device)", 105, 106, True, a("gpu_memset")),
        _fe(TILE0, 110, 120, True, a("kernel")),
        _fe(TILE1, 125, 140, True, a("kernel")),
        _fe("void sd_k_scan(sd_pipe)", 141, 143, True, a("kernel")),
    ]


@pytest.mark.parametrize("with_activity", [True, False], ids=["activity_type", "by-name"])
def test_summarize_kernel_events_on_function_events(with_activity: bool) -> None:
    s = _script("bench_kernels").summarize_kernel_events(_events(with_activity), call_us=54.0)
    assert (s["kernels"], s["kernel_us"], s["memsets"], s["memset_us"], s["memcpys"]) == (3, 27.0, 1, 1.0, 0)
    assert s["other_device_events"] == 1 and s["launch_api_calls"] == 3
    assert s["device_span_us"] == 38.0  # 105 (memset) .. 143 (last kernel); the annotation mirror is not work
    assert s["enqueue_us"] == 50.0 and s["wall_us"] == 50.0  # the range ends after the last device event
    assert s["busy_fraction_of_wall"] == 0.54 and s["busy_fraction"] == 0.5 and s["us_per_launch"] == 18.0
    assert s["top_kernels"] == [{"name": "sd_k_tile<HybProd<__half>, 1>", "count": 1, "total_us": 15.0},
                                {"name": "sd_k_tile<HybProd<__half>, 0>", "count": 1, "total_us": 10.0},
                                {"name": "sd_k_scan", "count": 1, "total_us": 2.0}]
    assert "note" not in s


def test_summarize_kernel_events_wall_and_nothing_recorded() -> None:
    bk = _script("bench_kernels")
    # no annotation: the device events' span; a kernel ending after the range ends the wall time
    s = bk.summarize_kernel_events([_fe(TILE0, 10, 30, True, "kernel"), _fe(TILE0, 40, 50, True, "kernel")])
    assert (s["kernels"], s["wall_us"], s["busy_fraction_of_wall"]) == (2, 40.0, 0.75)
    assert s["top_kernels"] == [{"name": "sd_k_tile<HybProd<__half>, 0>", "count": 2, "total_us": 30.0}]
    assert "busy_fraction" not in s  # no timed median given
    late = bk.summarize_kernel_events([_fe(bk.PROFILE_ANNOTATION, 0, 5, False, None), _fe(TILE0, 4, 25, True, None)])
    assert late["wall_us"] == 25.0 and late["enqueue_us"] == 5.0
    none = bk.summarize_kernel_events([_fe(bk.PROFILE_ANNOTATION, 0, 5, False, None)], call_us=5.0)
    assert none["kernels"] == 0 and none["busy_fraction"] is None and none["us_per_launch"] is None
    assert none["note"] == "no CUDA activity recorded"


def test_short_kernel_name() -> None:
    short = _script("bench_kernels").short_kernel_name
    assert short("void sd_k_scan(sd_pipe)") == "sd_k_scan"
    assert short("void (anonymous namespace)::k_hyb_xt(HybArgs)") == "k_hyb_xt"
    long = ("void sd_k_tile<HybProd<(sd_act)2, (sd_pool)1, __half, 128, true>, (sd_tile_mode)0>"
            "(HybProd<(sd_act)2>, sd_pipe)")
    assert short(long) == "sd_k_tile<...>"
    assert len(short("k" * 200)) == 60 and short("k" * 200).endswith("...")


def test_profile_call_never_loses_the_measurement() -> None:
    import torch

    bk = _script("bench_kernels")

    def boom() -> None:
        raise RuntimeError("boom")

    assert bk.profile_call(torch, boom, False, 1.0)["error"] == "RuntimeError: boom"
    ok = bk.profile_call(torch, lambda: torch.ones(4).sum(), False, 1.0)
    assert ok["kernels"] == 0 and ok["enqueue_us"] > 0 and "no CUDA activity" in ok["note"]

    def stop() -> None:
        raise KeyboardInterrupt  # a time cap's SIGINT still stops the run (and keeps the rows)

    with pytest.raises(KeyboardInterrupt):
        bk.profile_call(torch, stop, False, 1.0)


def test_profiled_events_read_the_raw_kineto_events() -> None:
    """The cheap path (raw kineto events as ProfEvent) works on this torch; prof.events() is the fallback."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    bk = _script("bench_kernels")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function(bk.PROFILE_ANNOTATION):
            torch.ones(4).sum()
    evs = bk._profiled_events(prof)
    assert evs and all(isinstance(e, bk.ProfEvent) for e in evs)
    ann = [e for e in evs if bk.event_kind(e) == "annotation"]
    assert len(ann) == 1 and ann[0].time_range.end > ann[0].time_range.start
    assert ann[0].activity_type == "user_annotation"

    class OnlyEvents:  # a profile object without readable raw results
        def events(self) -> list[Any]:
            return _events(True)

    fallback = bk._profiled_events(OnlyEvents())
    assert len(fallback) == len(_events(True)) and bk.summarize_kernel_events(fallback)["kernels"] == 3


@pytest.fixture(scope="module")
def profile_run(host_lib_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A --host --profile dry run: one layer, batch 1, both blocks."""
    out = tmp_path_factory.mktemp("profiled") / "kernels"
    p = subprocess.run(_bench_kernels(host_lib_path, out, *TINY, "--layers", "features.0", "--blocks", "paper,hybrid",
                                      "--profile"), env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return out, p.stdout


def test_host_profile_run_records_a_profile_per_specconv(profile_run: tuple[Path, str]) -> None:
    out, log = profile_run
    doc, rows = _files(out)
    assert doc["complete"] is True and doc["settings"]["profile"] is True and len(doc["layers"]) == 1
    r = doc["layers"][0]
    for k in ("spec_fp32", "spec_fp16", "hyb_fp32", "hyb_fp16"):
        p = r[k]["profile"]
        assert r[k]["median_ms"] > 0 and "error" not in p, p
        # host run: the call ran (its record_function range was read), no CUDA activity to count
        assert p["kernels"] == 0 and p["busy_fraction"] is None and p["enqueue_us"] > 0 and "no CUDA" in p["note"]
    assert "profile" not in r["cudnn_fp16"]
    assert (rows[0]["spec_fp16_launches"], rows[0]["hyb_fp16_launches"], rows[0]["hyb_fp16_busy"]) == ("0", "0", "")
    line = next(ln for ln in log.splitlines() if ln.startswith("features.0"))
    assert line.endswith("| launches: paper 0, hybrid 0"), line
    gr = _script("gpu_report")
    assert gr.PAPER_RE.search(line) and gr.HYB_RE.search(line)["ratio"] == f"{r['ratio_hyb_fp16']:.2f}"


def test_no_profile_without_the_option(kernels_run: Path) -> None:
    doc, rows = _files(kernels_run)
    assert doc["settings"]["profile"] is False
    assert all("profile" not in r["spec_fp16"] for r in doc["layers"]) and rows[0]["spec_fp16_launches"] == ""
    assert "Kernel launches per SpecConv call" not in _report(str(kernels_run.parent)).stdout


def test_report_renders_launches_from_json(profile_run: tuple[Path, str], tmp_path: Path) -> None:
    doc, _ = _files(profile_run[0])
    r = doc["layers"][0]
    r["hyb_fp16"]["profile"] = {"kernels": 336, "busy_fraction": 0.123, "us_per_launch": 4.98}
    r["spec_fp16"]["profile"] = {"error": "RuntimeError: CUPTI_ERROR_NOT_INITIALIZED"}
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "dev.json").write_text(json.dumps(doc))
    p = _report(str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "| features.0 | 1 | profile failed | - | - | 336 | 12.3 | 4.98 |" in p.stdout
    assert "- hybrid: 336-336 launches per call, GPU busy 12.3-12.3% of the call, 4.98-4.98 us per launch (1 rows)" \
        in p.stdout
    assert ("- paper: the profile failed in 1 rows (features.0 B=1: RuntimeError: CUPTI_ERROR_NOT_INITIALIZED)"
            in p.stdout)


def test_report_parses_launches_from_the_log(tmp_path: Path) -> None:
    (tmp_path / "session.log").write_text(
        "features.0   B=1   paper fp16    0.080 ms vs cuDNN    0.035 ms x2.30 | hybrid fp16    1.674 ms vs cuDNN "
        "block    0.045 ms x37.22 | launches: paper 48 (busy 40.0%), hybrid 336 (busy 6.5%)\n"
        "features.7   B=32  paper fp16    2.390 ms vs cuDNN    0.037 ms x65.09 | hybrid fp16   33.418 ms vs cuDNN "
        "block    0.044 ms x755.67\n")
    md = _report(str(tmp_path)).stdout
    assert "| features.0 | 1 | 0.080 | 0.035 | 2.30 | met | 1.674 | 0.045 | 37.22 | **not met** |" in md
    assert "| features.7 | 32 | 2.390 | 0.037 | 65.09 | **not met** | 33.418 | 0.044 | 755.67 | **not met** |" in md
    assert "| features.0 | 1 | 48 | 40.0 | 1.67 | 336 | 6.5 | 4.98 |" in md  # 80 us / 48, 1674 us / 336
    assert "| features.7 | 32 |" not in md.split("Kernel launches per SpecConv call")[1]


def test_launch_count_of_the_committed_h200_session(capsys: pytest.CaptureFixture[str]) -> None:
    """scripts/launch_count.py on bench_kernels' layer list: every measured hybrid row of the H200 session
    gets a time per launch, and the current launcher's counts follow the planner's chunk."""
    lc = _script("launch_count")
    layers = lc.vgg16_layers()
    assert lc.main([str(SESSION)]) == 0
    out = capsys.readouterr().out
    rows = [r for r in out.splitlines() if r.startswith("| features.")]
    assert len(rows) == 3 * len(layers) == 39
    assert sum(r.split("|")[5].strip() != "-" for r in rows) == 20  # the rows the H200 measured
    L = layers[5]  # features.7
    from specdeploy.ops import spec_conv

    sb, ot = spec_conv.hybrid_chunk(32, L.C, L.O, L.Hs, L.Hs)
    assert lc.launches_current(L, 32)[0] == lc.fixed_launches(L) + 4 * 3 * (-(-32 // sb)) * (-(-L.O // ot))
