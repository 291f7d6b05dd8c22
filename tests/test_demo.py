"""The README's main job end to end, shortened: train -> export -> bench on the best backend here."""

from __future__ import annotations

import json
from pathlib import Path

from specdeploy.demo import run_demo


def test_demo_end_to_end_short(tmp_path: Path) -> None:
    summary = run_demo(tmp_path, steps=40, test_samples=200, batches=(1, 4))
    for name in ("lenet5-spectral.onnx", "lenet5-spatial.onnx", "bench.json", "bench.csv", "bench.png", "summary.json"):
        assert (tmp_path / name).is_file(), name
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["backend"] == summary["backend"] and [r["batch"] for r in doc["records"]] == [1, 4]
    for rec in doc["records"]:
        for side in ("spec", "twin"):
            assert rec[side]["planned_peak_bytes"] > 0 and rec[side]["samples"] == 200
            assert 0.0 <= rec[side]["accuracy"] <= 1.0
        assert rec["ratios"]["planned_peak"] > 0
    # the exported models learned something after 40 steps (chance is 0.1)
    assert doc["records"][0]["twin"]["accuracy"] > 0.3
    assert doc["records"][0]["spec"]["accuracy"] > 0.2
