"""Jetson memory probes on recorded text (tests/data/jetson), the tegrastats sampler thread, and
probes that never raise on a machine without the Jetson files."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from specdeploy.trt import probes

DATA = Path(__file__).parent / "data" / "jetson"


def test_meminfo_parser_orin():
    info = probes.parse_meminfo((DATA / "meminfo_orin_nano_jp6.txt").read_text())
    assert info["MemTotal"] == 7802624 * 1024
    assert info["NvMapMemUsed"] == 826112 * 1024
    assert info["HugePages_Total"] == 0  # unitless stays a count
    s = probes.meminfo_summary(info)
    assert s["mem_used"] == (7802624 - 5329016) * 1024
    assert s["swap_used"] == 0
    assert s["cma_total"] == 524288 * 1024
    p = probes.meminfo_probe(DATA / "meminfo_orin_nano_jp6.txt")
    assert p["available"] and p["reason"] == "" and p["nvmap_mem_used"] == 826112 * 1024


def test_meminfo_probe_x86_and_missing(tmp_path):
    p = probes.meminfo_probe(DATA / "meminfo_x86.txt")
    assert p["available"] and p["nvmap_mem_used"] is None and "NvMapMemUsed" in p["nvmap_note"]
    q = probes.meminfo_probe(tmp_path / "nope")
    assert not q["available"] and "cannot read" in q["reason"]


def test_tegrastats_parser_orin_nano_user():
    lines = (DATA / "tegrastats_orin_nano_jp6.txt").read_text().splitlines()
    s = probes.parse_tegrastats_line(lines[0])
    assert s["timestamp"] == "06-02-2026 10:15:00"
    assert (s["ram_used_mb"], s["ram_total_mb"], s["lfb_blocks"], s["lfb_block_mb"]) == (2272, 7620, 4, 4)
    assert (s["swap_used_mb"], s["swap_total_mb"], s["swap_cached_mb"]) == (0, 3810, 0)
    assert s["gr3d_percent"] == 0 and s["gr3d_mhz"] is None
    assert s["emc_percent"] is None  # not printed without root
    assert s["rails_mw"]["VDD_IN"] == {"cur": 4673, "avg": 4673}
    assert s["temps_c"]["gpu"] == pytest.approx(47.937)
    assert probes.parse_tegrastats_line(lines[2])["gr3d_percent"] == 99
    summary = probes.summarize_tegrastats([probes.parse_tegrastats_line(x) for x in lines])
    assert summary == {"samples": 4, "ram_used_mb_first": 2272, "ram_used_mb_last": 2301, "ram_used_mb_min": 2272,
                       "ram_used_mb_peak": 2458, "ram_total_mb": 7620, "gr3d_percent_max": 99,
                       "gr3d_percent_mean": 35.0}


def test_tegrastats_parser_agx_root():
    lines = (DATA / "tegrastats_agx_orin_root.txt").read_text().splitlines()
    s = probes.parse_tegrastats_line(lines[1])
    assert (s["ram_used_mb"], s["ram_total_mb"]) == (14712, 62841)
    assert (s["emc_percent"], s["emc_mhz"]) == (12, 3199)
    assert s["gr3d_percent"] == 87 and s["gr3d_mhz"] == [1300, 1300]
    assert s["rails_mw"]["VDD_GPU_SOC"] == {"cur": 9580, "avg": 6386}
    assert probes.parse_tegrastats_line("garbage")["ram_used_mb"] is None


def test_tegrastats_sampler_thread():
    script = ("import sys, time\n"
              f"for line in open({str(DATA / 'tegrastats_orin_nano_jp6.txt')!r}):\n"
              "    print(line.strip(), flush=True)\n"
              "time.sleep(30)\n")
    ts = probes.TegrastatsSampler(interval_ms=100, command=[sys.executable, "-c", script])
    with ts:
        import time
        deadline = time.monotonic() + 20
        while len(ts.samples) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    r = ts.result()
    assert r["available"] and r["samples"] and len(r["samples"]) == 4
    assert r["ram_used_mb_peak"] == 2458 and r["gr3d_percent_max"] == 99
    assert ts._proc is not None and ts._proc.poll() is not None  # the child was stopped


def test_tegrastats_sampler_unavailable(monkeypatch):
    monkeypatch.setattr(probes.shutil, "which", lambda name: None)
    monkeypatch.setattr(probes, "Path", lambda p: types.SimpleNamespace(exists=lambda: False))
    ts = probes.TegrastatsSampler()
    with ts:
        pass
    r = ts.result()
    assert not r["available"] and "tegrastats not found" in r["reason"]
    bad = probes.TegrastatsSampler(command=["/nonexistent/tegrastats"])
    with bad:
        pass
    assert not bad.result()["available"] and "cannot start" in bad.result()["reason"]


def test_nvmap_clients_parser_and_probe(tmp_path):
    parsed = probes.parse_nvmap_clients((DATA / "nvmap_iovmm_clients.txt").read_text())
    assert parsed["total_bytes"] == 564224 * 1024
    assert len(parsed["clients"]) == 5
    assert parsed["clients"][2] == {"client": "user", "process": "python3", "pid": 4242, "bytes": 412672 * 1024}
    p = probes.nvmap_probe([DATA / "nvmap_iovmm_clients.txt"], pid=4242)
    assert p["available"] and p["this_process_bytes"] == (412672 + 8192) * 1024
    q = probes.nvmap_probe([tmp_path / "no" / "clients"])
    assert not q["available"] and "no NvMap client table" in q["reason"]


def test_nvmap_probe_needs_root(tmp_path, monkeypatch):
    f = tmp_path / "clients"
    f.write_text("x")

    def deny(self, *a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", deny)
    q = probes.nvmap_probe([f])
    assert not q["available"] and "needs root" in q["reason"]


def test_probes_never_raise_here():
    snap = probes.snapshot()
    for key in ("meminfo", "nvmap", "nvml"):
        assert set(snap[key]) >= {"available", "reason"}
        assert snap[key]["available"] or snap[key]["reason"]
    j = probes.jtop_probe()
    assert j["available"] or j["reason"]
