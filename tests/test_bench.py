"""The bench (spectral vs twin, one record per batch) and the beta sweep, on tiny models."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from specdeploy import bench, memory, sweep
from specdeploy.cli import main
from specdeploy.runtime import toy
from specdeploy.runtime.errors import InputError

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def toy_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("toys")
    spec, twin = d / "spec.onnx", d / "twin.onnx"
    onnx.save(toy.toy_spectral(value_dtype="fp16", max_batch=8), str(spec))
    onnx.save(toy.toy_spatial(max_batch=8), str(twin))
    return spec, twin


def _check_schema(doc: dict, backend: str, batches: list[int]) -> None:
    assert doc["schema"] == bench.SCHEMA and doc["schema_version"] == bench.SCHEMA_VERSION
    assert doc["backend"] == backend and [r["batch"] for r in doc["records"]] == batches
    env = doc["environment"]
    assert {"date", "machine", "platform", "cpu_count", "python", "versions"} <= set(env)
    assert "numpy" in env["versions"] and "onnx" in env["versions"]
    for r in doc["records"]:
        assert r["backend"] == backend
        for m in ("spec", "twin"):
            e = r[m]
            assert {"planned_peak_bytes", "accuracy", "latency_ms", "overflowed", "measured",
                    "measured_peak_bytes", "measured_peak_source", "samples"} <= set(e)
            assert e["planned_peak_bytes"] > 0 and 0.0 <= e["accuracy"] <= 1.0
            assert e["latency_ms"] > 0 and e["latency_ms_min"] <= e["latency_ms"] <= e["latency_ms_p90"]
            assert isinstance(e["overflowed"], int) and 0 <= e["overflowed"] <= e["samples"]
        assert r["ratios"]["planned_peak"] == pytest.approx(r["spec"]["planned_peak_bytes"] / r["twin"]["planned_peak_bytes"])
        assert 0 < r["spec"]["planned_live_peak_bytes"] <= r["spec"]["planned_peak_bytes"]
        assert r["twin"]["planned_live_peak_bytes"] == r["twin"]["planned_peak_bytes"]  # standard ops declare 0
        assert r["ratios"]["planned_live_peak"] == pytest.approx(
            r["spec"]["planned_live_peak_bytes"] / r["twin"]["planned_live_peak_bytes"])
        assert r["ratios"]["latency"] == pytest.approx(r["spec"]["latency_ms"] / r["twin"]["latency_ms"])
        assert r["twin"]["overflowed"] == 0


def test_run_bench_reference_schema_and_ratios(toy_pair: tuple[Path, Path]) -> None:
    spec, twin = toy_pair
    doc = bench.run_bench(spec, twin, "reference", [1, 4], samples=40, repeats=2, warmup=1, progress=False)
    _check_schema(doc, "reference", [1, 4])
    # fp16 values -> both models' float activations counted as fp16; figures equal the planner's
    assert doc["settings"]["activation_dtype"] == "fp16" and doc["value_dtype"] == "fp16"
    for r in doc["records"]:
        for m, path in (("spec", spec), ("twin", twin)):
            assert r[m]["planned_peak_bytes"] == memory.plan(path, batch=r["batch"], activation_dtype="fp16").peak_bytes
    r1, r4 = doc["records"]
    assert r4["twin"]["planned_peak_bytes"] == 4 * r1["twin"]["planned_peak_bytes"]  # activations only
    # the spectral ops' workspaces hold per-batch-constant twiddles and alignment slack
    assert r1["spec"]["planned_peak_bytes"] < r4["spec"]["planned_peak_bytes"] < 4 * r1["spec"]["planned_peak_bytes"]
    assert r1["spec"]["samples"] == 40 and doc["data"]["spec"]["name"] == "mnist"
    assert r1["spec"]["accuracy"] == r4["spec"]["accuracy"]  # evaluated once, at the largest batch


def test_outputs_json_csv_png(toy_pair: tuple[Path, Path], tmp_path: Path) -> None:
    spec, twin = toy_pair
    doc = bench.run_bench(spec, twin, "ort", [2], samples=20, repeats=2, warmup=0, progress=False)
    _check_schema(doc, "ort", [2])
    j = bench.write_json(doc, tmp_path / "o" / "b.json")
    c = bench.write_csv(doc, tmp_path / "o" / "b.csv")
    p = bench.write_plot(doc, tmp_path / "o" / "b.png")
    assert json.loads(j.read_text())["records"][0]["batch"] == 2
    rows = list(csv.DictReader(c.open()))
    assert list(rows[0]) == bench.CSV_FIELDS and rows[0]["batch"] == "2" and rows[0]["backend"] == "ort"
    assert float(rows[0]["ratio_planned_peak"]) == pytest.approx(doc["records"][0]["ratios"]["planned_peak"])
    assert p.read_bytes()[:8] == PNG


def test_cli_bench_writes_all_three(toy_pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, twin = toy_pair
    out = tmp_path / "cli"
    rc = main(["bench", str(spec), "--twin", str(twin), "--backend", "ort", "--batch", "1,8", "--samples", "16",
               "--repeats", "2", "--warmup", "1", "--json", str(out / "b.json"), "--csv", str(out / "b.csv"),
               "--plot", str(out / "b.png"), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "planned spec" in text and "written:" in text
    doc = json.loads((out / "b.json").read_text())
    _check_schema(doc, "ort", [1, 8])
    assert (out / "b.png").read_bytes()[:8] == PNG and len((out / "b.csv").read_text().splitlines()) == 3


def test_overflow_is_counted(tmp_path: Path) -> None:
    spec, twin = tmp_path / "tight.onnx", tmp_path / "twin.onnx"
    onnx.save(toy.toy_spectral(capacity_fraction=0.01), str(spec))
    onnx.save(toy.toy_spatial(), str(twin))
    doc = bench.run_bench(spec, twin, "ort", [4], samples=12, repeats=1, warmup=0, progress=False)
    assert doc["records"][0]["spec"]["overflowed"] == 12


def test_bad_requests_fail_before_running(toy_pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    spec, twin = toy_pair
    with pytest.raises(InputError, match="over the declared maximum 8"):
        bench.run_bench(spec, twin, "reference", [1, 16], samples=8, progress=False)
    with pytest.raises(ValueError, match="pass the spectral model first"):
        bench.run_bench(twin, spec, "reference", [1], samples=8, progress=False)
    with pytest.raises(ValueError, match="positive"):
        bench.run_bench(spec, twin, "reference", [0], samples=8, progress=False)
    with pytest.raises(ValueError, match="'x' is not an integer"):
        bench.parse_batches("1,x")
    assert bench.parse_batches("1, 8,32") == [1, 8, 32]
    assert main(["bench", str(spec), "--twin", str(twin), "--batch", "64", "--no-progress"]) == 2
    assert "declared maximum" in capsys.readouterr().err


def test_measured_peak_preference() -> None:
    assert bench.measured_peak({"run_peak_rss_delta_bytes": 5}) == (5, "run_peak_rss_delta_bytes")
    assert bench.measured_peak({"run_peak_rss_delta_bytes": 5, "tensorrt": {"device_memory_size": 7}}) == (
        7, "tensorrt.device_memory_size")
    assert bench.measured_peak({"device_peak_bytes": 3, "run_peak_rss_delta_bytes": 5}) == (3, "device_peak_bytes")
    assert bench.measured_peak({}) == (None, None)


# ------------------------------------------------------------------------------------------ sweep


def test_parse_betas_and_pareto() -> None:
    assert sweep.parse_betas("0,0.25,...,1.0") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert sweep.parse_betas("0,0.5,...,1.2") == [0.0, 0.5, 1.0, 1.2]
    assert sweep.parse_betas("1, 0.5") == [1.0, 0.5]
    for bad in ("", "a", "-1", "0,...,1", "1,0.5,...,2", "nan"):
        with pytest.raises(ValueError, match="--betas"):
            sweep.parse_betas(bad)
    pts = [(1.0, 0.9), (0.5, 0.8), (0.7, 0.7), (0.3, 0.8), (1.2, 0.95)]
    assert sweep.pareto_front(pts) == [3, 0, 4]


def test_sweep_on_a_tiny_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("specdeploy.export")
    from specdeploy import checkpoint, zoo

    torch.manual_seed(0)
    classes = [str(i) for i in range(10)]
    spec = checkpoint.save(zoo.create("lenet5", "spectral", in_channels=1, width=0.25, beta=0.5),
                           tmp_path / "spec", data={"name": "mnist"}, classes=classes)
    twin = checkpoint.save(zoo.create("lenet5", "spatial", in_channels=1, width=0.25), tmp_path / "twin",
                           data={"name": "mnist"}, classes=classes)
    out = tmp_path / "sweep"
    assert main(["sweep", str(spec), "--betas", "0,1,...,2", "--twin", str(twin), "--samples", "16",
                 "--calib-samples", "16", "--out", str(out), "--no-progress"]) == 0
    assert "mem ratio" in (printed := capsys.readouterr().out) and "maps only" in printed
    doc = json.loads((out / "sweep.json").read_text())
    rows = doc["rows"]
    assert [r["beta"] for r in rows] == [0.0, 1.0, 2.0] and doc["value_dtype"] == "fp16"
    assert doc["twin"]["accuracy"] is not None and doc["twin"]["planned_peak_bytes"] > 0
    kept = [r["kept_mean"] for r in rows]
    assert kept[0] == pytest.approx(1.0, abs=0.02) and kept[0] > kept[1] > kept[2] >= 0
    ratios = [r["planned_ratio"] for r in rows]
    assert ratios[0] > ratios[1] >= ratios[2] > 0
    live = [r["planned_live_ratio"] for r in rows]  # without the ops' scratch: never above the full ratio
    assert live[0] > live[1] >= live[2] > 0 and all(lv <= r for lv, r in zip(live, ratios))
    assert all(set(r["kept"]) == set(r["capacities"]) for r in rows)
    assert any(r["pareto"] for r in rows)
    assert (out / "pareto.png").read_bytes()[:8] == PNG
    assert len((out / "sweep.csv").read_text().splitlines()) == 4
    assert (out / "onnx" / "spec_beta1.onnx").is_file() and (out / "onnx" / "twin.onnx").is_file()

    # without a twin checkpoint: the twin architecture's planned memory, no twin accuracy
    doc2 = sweep.run_sweep(spec, [1.0], tmp_path / "sweep2", samples=8, calib_samples=8, progress=False)
    assert doc2["twin"]["accuracy"] is None
    assert doc2["twin"]["planned_peak_bytes"] == doc["twin"]["planned_peak_bytes"]
    with pytest.raises(ValueError, match="spectral checkpoint"):
        sweep.run_sweep(twin, [1.0], tmp_path / "sweep3", samples=8, progress=False)


def test_bench_on_real_exports(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    export = pytest.importorskip("specdeploy.export")
    from specdeploy import zoo

    calib = np.random.default_rng(0).standard_normal((16, 1, 32, 32)).astype(np.float32)
    meta = {"specdeploy.data": {"name": "fashion-mnist"}}
    s = export.export_model(zoo.create("lenet5", "spectral", in_channels=1, width=0.25), tmp_path / "s.onnx",
                            batch=None, max_batch=8, calib_images=calib, metadata=meta)
    t = export.export_model(zoo.create("lenet5", "spatial", in_channels=1, width=0.25), tmp_path / "t.onnx",
                            batch=None, max_batch=8, metadata=meta)
    doc = bench.run_bench(s.path, t.path, "ort", [1, 8], samples=24, repeats=2, warmup=1, progress=False)
    _check_schema(doc, "ort", [1, 8])
    assert doc["data"]["spec"]["normalization"] == "fashion-mnist" and doc["settings"]["activation_dtype"] == "fp32"
