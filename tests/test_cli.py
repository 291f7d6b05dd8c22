"""The command line end to end on tiny runs: train -> eval -> info -> export -> memory -> bench."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specdeploy.cli import main


def test_cli_flow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ck = {d: tmp_path / d for d in ("spectral", "spatial")}
    for domain, out in ck.items():
        assert main(["train", "--model", "lenet5", "--domain", domain, "--data", "fashion-mnist", "--max-steps", "5",
                     "--batch-size", "32", "--samples", "320", "--test-samples", "64", "--out", str(out)]) == 0
        assert (out / "model.safetensors").is_file()
    assert main(["eval", str(ck["spectral"]), "--data", "fashion-mnist", "--samples", "64",
                 "--json", str(tmp_path / "eval.json")]) == 0
    ev = json.loads((tmp_path / "eval.json").read_text())
    # the default block is hybrid: LeNet-5's two SpecConvs pool inside, so they are features.0 and .1
    assert ev["samples"] == 64 and 0.0 <= ev["accuracy"] <= 1.0 and set(ev["kept"]) == {"features.0", "features.1"}
    assert main(["info", str(ck["spectral"])]) == 0
    onnx = {d: tmp_path / f"{d}.onnx" for d in ck}
    for d in ck:
        assert main(["export", str(ck[d]), "-o", str(onnx[d]), "--dynamic-batch", "--max-batch", "4",
                     "--value-dtype", "fp16", "--calib-samples", "64"]) == 0
    assert main(["memory", str(onnx["spectral"]), "--batch", "2", "--activation-dtype", "fp16",
                 "--json", str(tmp_path / "mem.json")]) == 0
    assert json.loads((tmp_path / "mem.json").read_text())["peak_bytes"] > 0
    assert main(["bench", str(onnx["spectral"]), "--twin", str(onnx["spatial"]), "--backend", "reference",
                 "--batch", "1,4", "--samples", "32", "--repeats", "2", "--no-progress",
                 "--json", str(tmp_path / "b.json"), "--csv", str(tmp_path / "b.csv")]) == 0
    doc = json.loads((tmp_path / "b.json").read_text())
    assert [r["batch"] for r in doc["records"]] == [1, 4]
    capsys.readouterr()
    # user errors: one line, exit status 2
    assert main(["bench", str(onnx["spectral"]), "--twin", str(onnx["spatial"]), "--batch", "8"]) == 2
    assert "max" in capsys.readouterr().err
    assert main(["train", "--model", "lenet5", "--data", "svhn", "--data-dir", str(tmp_path / "none"),
                 "--out", str(tmp_path / "x")]) == 2
    assert "svhn" in capsys.readouterr().err.lower()


def test_train_block_and_short_budget_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "--model", "lenet5", "--data", "fashion-mnist", "--max-steps", "3", "--batch-size", "32",
            "--samples", "128", "--test-samples", "32"]
    assert main(base + ["--domain", "spatial", "--out", str(tmp_path / "twin")]) == 0
    assert main(base + ["--block", "paper", "--out", str(tmp_path / "paper")]) == 0
    assert json.loads((tmp_path / "paper" / "config.json").read_text())["model"]["block"] == "paper"
    assert main(base + ["--schedule", "cosine", "--beta-anneal", "0.3", "--teacher", str(tmp_path / "twin"),
                        "--kd-alpha", "0.7", "--out", str(tmp_path / "hy")]) == 0
    doc = json.loads((tmp_path / "hy" / "config.json").read_text())
    assert doc["model"]["block"] == "hybrid" and doc["model"]["activation"] == "relu"
    t = doc["training"]
    assert (t["schedule"], t["beta_anneal"], t["teacher"], t["kd_alpha"]) == ("cosine", 0.3, str(tmp_path / "twin"), 0.7)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # argparse rejects it, naming the flag
        main(base + ["--max-steps", "0", "--out", str(tmp_path / "z")])
    assert e.value.code == 2 and "max-steps" in capsys.readouterr().err
