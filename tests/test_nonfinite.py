"""A NaN or Inf is never answered with plausible logits (issue 13 item 2, DESIGN §4 header flags bit 0).

Before: one NaN pixel made every coefficient of a spectral model fail the threshold (NaN > beta is
false), so the model returned finite, confident logits from its biases alone; the twin returned NaN
logits; neither said anything. Now the packed ops set the sticky NONFINITE flag, every session marks
such samples in ``last_nonfinite`` and ``run`` raises NonFiniteError unless opened with
``nonfinite="flag"``; the bench counts them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from specdeploy import data as datasets
from specdeploy import packed, runtime, zoo
from specdeploy.cli import main
from specdeploy.export import export_model
from specdeploy.reference import ops as R


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("nonfinite")
    ds = datasets.prepare("fashion-mnist", "test", 32, 1, samples=8)
    x = datasets.normalize(ds.images, "fashion-mnist")
    paths = {}
    for dom in ("spectral", "spatial"):
        torch.manual_seed(0)
        m = zoo.build(zoo.ModelConfig(model="lenet5", domain=dom, in_channels=1)).eval()
        paths[dom] = export_model(m, d / f"{dom}.onnx", batch=None, max_batch=8, value_dtype="fp16", calib_images=x,
                                  metadata={"specdeploy.data": {"name": "fashion-mnist"}}).path
    bad = x.copy()
    bad[3, 0, 5, 5] = np.nan
    bad[6, 0, 1, 1] = np.inf
    return {"paths": paths, "x": x, "bad": bad, "dir": d}


# ------------------------------------------------------------------------------------ packed format


def test_pack_sets_the_flag_and_ops_keep_it() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    x[1, 0, 2, 2] = np.nan
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    y = R.spec_conv(x, w, None, in_domain="spatial", C=2, Hs=8, Ws=8, k=3, beta=0.1, activation="tanh",
                    capacity=4 * 40, value_dtype="fp16")
    F = packed.num_coeffs(8, 8)
    d = packed.decode(y, 4, F, "fp16")
    assert d.nonfinite.tolist() == [False, True, False]
    assert not np.isnan(d.values).any()  # NaN was never kept: this is why the flag is needed
    z = R.spec_conv(y, w.repeat(2, axis=1), None, in_domain="spectral", C=4, Hs=8, Ws=8, k=3, beta=0.1,
                    activation="tanh", capacity=4 * 40, value_dtype="fp16")
    assert packed.decode(z, 4, F, "fp16").nonfinite.tolist() == [False, True, False]  # sticky
    p = R.spec_pool(z, C=4, Hs=8, Ws=8, out_Hs=4, out_Ws=4, capacity=4 * 12, value_dtype="fp16")
    assert packed.decode(p, 4, packed.num_coeffs(4, 4), "fp16").nonfinite.tolist() == [False, True, False]
    c = R.spec_concat([z, z], C=[4, 4], Hs=8, Ws=8, capacity=8 * 40, value_dtype="fp16")
    assert packed.decode(c, 8, F, "fp16").nonfinite.tolist() == [False, True, False]


def test_finite_input_overflowing_inside_the_op_is_flagged() -> None:
    x = np.full((2, 1, 6, 6), 3e38, dtype=np.float32)  # finite, but its spectrum is not an fp32 number
    x[0] = 1.0
    y = R.spec_conv(x, np.ones((1, 1, 3, 3), np.float32), None, in_domain="spatial", C=1, Hs=8, Ws=8, k=3,
                    beta=0.5, activation="none", capacity=40, value_dtype="fp32")
    assert packed.decode(y, 1, packed.num_coeffs(8, 8), "fp32").nonfinite.tolist() == [False, True]


def test_flag_word_is_validated() -> None:
    y = packed.pack(np.ones((1, 1, 5), np.complex64), np.ones((1, 1, 5), np.complex64), 0.5, 5, "fp32")
    w = y.view(np.uint32).copy()
    w[0, 3] = packed.FLAG_NONFINITE
    assert packed.decode(w.view(np.int32), 1, 5, "fp32").nonfinite.tolist() == [True]
    w[0, 3] = 2
    with pytest.raises(packed.PackedFormatError, match="flags"):
        packed.decode(w.view(np.int32), 1, 5, "fp32")


# ---------------------------------------------------------------------------------------- sessions


@pytest.mark.parametrize("domain", ["spectral", "spatial"])
@pytest.mark.parametrize("backend", ["reference", "ort"])
def test_run_raises_by_default_and_flags_on_request(models: dict[str, Any], domain: str, backend: str) -> None:
    path = models["paths"][domain]
    sess = runtime.load(path, backend)
    sess.run(models["x"])
    assert not sess.last_nonfinite.any()
    with pytest.raises(runtime.NonFiniteError, match="2 of 8 samples") as ei:
        sess.run(models["bad"])
    assert ei.value.samples == [3, 6]
    sess = runtime.load(path, backend, nonfinite="flag")
    logits = sess.run(models["bad"])
    assert np.flatnonzero(sess.last_nonfinite).tolist() == [3, 6]
    if domain == "spectral":
        # the silent failure the flag exists for: finite logits for a NaN image
        assert np.isfinite(logits).all()


def test_the_ops_flag_reaches_the_session(models: dict[str, Any]) -> None:
    """A finite input whose spectrum overflows: only the op's header flag can tell (not the input check)."""
    x = models["x"].copy()
    x[2] = 3e38
    sess = runtime.load(models["paths"]["spectral"], "reference")
    with pytest.raises(runtime.NonFiniteError) as ei:
        sess.run(x)
    assert ei.value.samples == [2]


def test_native_host_raises_too(models: dict[str, Any], host_lib_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPECDEPLOY_HOST_LIB", str(host_lib_path))
    for domain in ("spectral", "spatial"):
        sess = runtime.load(models["paths"][domain], "native-host")
        with pytest.raises(runtime.NonFiniteError):
            sess.run(models["bad"])
        sess = runtime.load(models["paths"][domain], "native-host", nonfinite="flag")
        sess.run(models["bad"])
        assert np.flatnonzero(sess.last_nonfinite).tolist() == [3, 6]


def test_unknown_policy_is_refused(models: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="nonfinite"):
        runtime.load(models["paths"]["spatial"], "reference", nonfinite="ignore")


# ------------------------------------------------------------------------------------------- bench


def test_bench_stops_on_nonfinite_data_and_counts_when_allowed(models: dict[str, Any], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import specdeploy.bench as bench

    bad, labels = models["bad"], np.zeros(8, dtype=np.int64)
    monkeypatch.setattr(bench, "load_eval_data", lambda *a, **k: (bad, labels, {"name": "fashion-mnist"}))
    argv = ["bench", str(models["paths"]["spectral"]), "--twin", str(models["paths"]["spatial"]), "--backend",
            "reference", "--batch", "8", "--repeats", "1", "--warmup", "0", "--no-progress"]
    assert main(argv) == 2
    assert "NaN or Inf" in capsys.readouterr().err
    out = tmp_path / "b.json"
    assert main(argv + ["--allow-nonfinite", "--json", str(out)]) == 0
    rec = json.loads(out.read_text())["records"][0]
    assert rec["spec"]["nonfinite"] == 2 and rec["twin"]["nonfinite"] == 2
    assert "nonfinite" in capsys.readouterr().out
