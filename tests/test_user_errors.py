"""What a new user hits (issue 13 items 1, 4, 5, 6): outputs, verbs, help, pipes, setup, demo, bench defaults.

The table of bad command lines is tests/test_bad_inputs.py; this file tests the mechanisms behind it
(atomic writes, the verb registry, the broken pipe, setup.sh's second run, the demo's pre-checks)
and the defaults that used to be wrong (bench's batches, the RSS ratio, build-plugins' directory).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from specdeploy import argtypes, checkpoint, outputs, zoo
from specdeploy.cli import main

REPO = Path(__file__).resolve().parents[1]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = int(e.code or 0)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _ckpt(path: Path, **cfg: Any) -> Path:
    import torch

    torch.manual_seed(0)
    config = zoo.ModelConfig(**{"model": "lenet5", "domain": "spectral", "in_channels": 1, **cfg})
    checkpoint.save(zoo.build(config), path, data={"name": "fashion-mnist"}, classes=[str(i) for i in range(10)],
                    training={}, history=[], metrics={})
    return path


# ------------------------------------------------------------------------------------------ outputs


def test_output_onto_a_hard_link_or_symlink_of_the_input_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "in.onnx"
    src.write_bytes(b"model")
    os.link(src, tmp_path / "hard.onnx")
    (tmp_path / "soft.onnx").symlink_to(src)
    for alias in ("hard.onnx", "soft.onnx", "in.onnx"):
        with pytest.raises(outputs.OutputError, match="is the command's input"):
            outputs.check_output(tmp_path / alias, [src], force=True)
    with pytest.raises(outputs.OutputError, match="is the command's input"):
        outputs.check_output(tmp_path / "x" / ".." / "in.onnx", [src], force=True)


def test_output_dir_holding_an_input_is_refused_even_with_force(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    inp = tmp_path / "runs" / "model.onnx"
    inp.write_bytes(b"m")
    with pytest.raises(outputs.OutputError, match="input"):
        outputs.check_output(tmp_path / "runs", [inp], force=True, kind="dir")


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with outputs.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    outputs.write_text(target, "new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_dir_replaces_only_with_force_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "ck"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(outputs.OutputError, match="--force"):
        with outputs.atomic_dir(target) as staged:
            (staged / "new.txt").write_text("new")
    assert (target / "old.txt").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    with outputs.atomic_dir(target, force=True) as staged:
        (staged / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"] and sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_created_dirs_removes_only_what_it_created_and_left_empty(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        with outputs.created_dirs(tmp_path / "a" / "b" / "c"):
            raise ValueError("failed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        with outputs.created_dirs(tmp_path / "a" / "b") as d:
            (d / "result.json").write_text("{}")
            raise ValueError("failed later")
    assert (tmp_path / "a" / "b" / "result.json").is_file()  # work that was written stays


def test_export_api_never_writes_over_the_checkpoint(tmp_path: Path) -> None:
    from specdeploy.export import export_checkpoint

    ck = _ckpt(tmp_path / "ck")
    before = (ck / "model.safetensors").read_bytes()
    with pytest.raises(outputs.OutputError, match="input"):
        export_checkpoint(ck, ck / "model.safetensors", calib_samples=8)
    assert (ck / "model.safetensors").read_bytes() == before
    checkpoint.load(ck)


def test_train_checks_its_output_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The output is refused up front: no data loaded, nothing trained (a finished run is never lost)."""
    import specdeploy.train as train_mod

    def no_training(*a: Any, **k: Any) -> Any:
        raise AssertionError("trained although the output was refused")

    monkeypatch.setattr(train_mod, "loaders_for", no_training)
    monkeypatch.setattr(train_mod, "train", no_training)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "model.safetensors").write_bytes(b"an earlier run")
    rc, out, err = run_cli(["train", "--model", "lenet5", "--data", "fashion-mnist", "--out", str(tmp_path / "runs")],
                           capsys)
    assert rc == 2 and "already exists" in err and "--force" in err


def test_train_writes_the_checkpoint_atomically_and_force_replaces(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ck"
    argv = ["train", "--model", "lenet5", "--data", "fashion-mnist", "--max-steps", "1", "--batch-size", "8",
            "--samples", "16", "--test-samples", "8", "--out", str(out)]
    assert run_cli(argv, capsys)[0] == 0
    first = (out / "config.json").read_text()
    assert run_cli(argv + ["--seed", "1", "--force"], capsys)[0] == 0
    assert (out / "config.json").read_text() != first and sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    checkpoint.load(out)


# --------------------------------------------------------------------------------- flags and verbs


@pytest.mark.parametrize("fn,text", [(argtypes.positive_int, "0"), (argtypes.positive_int, "-2"),
                                     (argtypes.nonneg_int, "-1"), (argtypes.positive_float, "nan"),
                                     (argtypes.positive_float, "0"), (argtypes.nonneg_float, "-inf"),
                                     (argtypes.finite_float, "inf"), (argtypes.float_at_least(1.0), "0.99"),
                                     (argtypes.fraction, "1.5"), (argtypes.positive_int, "1.5")])
def test_numeric_flag_types_refuse(fn: Any, text: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        fn(text)


def test_every_option_of_every_verb_has_help() -> None:
    from specdeploy.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    missing = [f"{verb} {'/'.join(a.option_strings) or a.dest}" for verb, p in sub.choices.items()
               for a in p._actions if a.dest != "help" and not a.help]
    assert not missing, f"options without help: {missing}"


def test_top_level_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_cli(["--help"], capsys)
    assert rc == 0 and "``" not in out and ":func:" not in out
    for verb in ("train", "export", "memory", "bench", "sweep", "demo", "build-plugins", "build"):
        assert f"    {verb} " in out or f"    {verb}\n" in out


def test_a_verb_whose_module_cannot_import_says_why(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    real = importlib.import_module

    def fake(name: str, *a: Any, **k: Any) -> Any:
        if name == "specdeploy.sweep":
            raise ModuleNotFoundError("No module named 'matplotlib'")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake)
    rc, out, _ = run_cli(["--help"], capsys)
    assert "sweep" in out and "unavailable" in out
    rc, _, err = run_cli(["sweep", "ck", "--out", "x"], capsys)
    assert rc == 2 and "'sweep' is unavailable here" in err and "matplotlib" in err


def test_head_closing_the_pipe_is_no_traceback() -> None:
    """`specdeploy --help | head -0`: the reader is gone before the first write."""
    r, w = os.pipe()
    os.close(r)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        proc = subprocess.run([sys.executable, "-c", "import sys; from specdeploy.cli import main; sys.exit(main())",
                               "--help"], stdout=w, stderr=subprocess.PIPE, env=env, timeout=120, cwd=REPO)
    finally:
        os.close(w)
    err = proc.stderr.decode()
    assert "Traceback" not in err and "Broken pipe" not in err and "BrokenPipeError" not in err, err


def test_build_plugins_builds_where_the_backends_look(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from specdeploy import native

    seen: list[Path] = []
    monkeypatch.setattr(native, "build", lambda kind, d, **k: seen.append(Path(d)) or Path(d) / "lib" / "x.so")
    monkeypatch.chdir(tmp_path)  # run elsewhere: the default must not be relative to the current directory
    assert run_cli(["build-plugins"], capsys)[0] == 0
    assert seen[-1].resolve() == Path(native.default_build_dir()).resolve()
    rc, out, _ = run_cli(["build-plugins", "--build-dir", "mine"], capsys)
    assert rc == 0 and "SPECDEPLOY_HOST_LIB=" in out


# ---------------------------------------------------------------------------------------- bench


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from specdeploy.export import export_checkpoint

    d = tmp_path_factory.mktemp("pair")
    out = {}
    for dom in ("spectral", "spatial"):
        ck = _ckpt(d / dom, domain=dom)
        out[dom] = export_checkpoint(ck, d / f"{dom}.onnx", batch=None, max_batch=4, value_dtype="fp16",
                                     calib_data="fashion-mnist", calib_samples=16).path
    return out


def test_bench_default_batches_follow_the_models_maximum(pair: dict[str, Path]) -> None:
    from specdeploy.bench import run_bench, summary

    doc = run_bench(pair["spectral"], pair["spatial"], "reference", None, samples=8, repeats=1, warmup=0,
                    progress=False)
    assert doc["settings"]["batches"] == [1, 4]
    assert "8, 32" in doc["settings"]["batch_notes"][0]
    text = summary(doc)
    assert "counted as fp16" in text and "twin" in text  # the accounting precision is stated


def test_rss_page_noise_is_not_a_ratio() -> None:
    from specdeploy.bench import measured_ratio

    ratio, note = measured_ratio((12288, "run_peak_rss_delta_bytes"), (4096, "run_peak_rss_delta_bytes"))
    assert ratio is None and "noise" in note
    ratio, _ = measured_ratio((64 << 20, "run_peak_rss_delta_bytes"), (32 << 20, "run_peak_rss_delta_bytes"))
    assert ratio == 2.0
    assert measured_ratio((3 << 20, "device_peak_bytes"), (1 << 20, "device_peak_bytes"))[0] == 3.0


def test_one_channel_vgg16_and_alexnet_recipes_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from specdeploy import recipes

    one = {r.model for r in recipes.all_recipes() if r.input_shape[0] == 1}
    assert {"vgg16", "alexnet"} <= one
    ck = _ckpt(tmp_path / "vgg", model="vgg16", width=0.125)
    rc, out, err = run_cli(["export", str(ck), "-o", str(tmp_path / "v.onnx"), "--recipe",
                            "vgg16-fmnist-jetson-orin-fp16", "--calib-samples", "8"], capsys)
    assert rc == 0, err


# ----------------------------------------------------------------------------------------- demo


def test_demo_checks_matplotlib_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "matplotlib" else real(n, *a))
    rc, out, err = run_cli(["demo", "--out", str(tmp_path / "d")], capsys)
    assert rc == 2 and "matplotlib" in err and "[plot]" in err
    assert "train" not in out and not (tmp_path / "d").exists()


def test_failed_demo_leaves_no_empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import specdeploy.train as train_mod

    def broken(*a: Any, **k: Any) -> Any:
        raise ValueError("no data here")

    monkeypatch.setattr(train_mod, "loaders_for", broken)
    rc, _, err = run_cli(["demo", "--out", str(tmp_path / "results" / "demo")], capsys)
    assert rc == 2 and "no data here" in err
    assert list(tmp_path.iterdir()) == []


def test_failed_sweep_leaves_no_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ck = _ckpt(tmp_path / "ck")
    rc, _, err = run_cli(["sweep", str(ck), "--data", "svhn", "--data-dir", str(tmp_path / "none"),
                          "--out", str(tmp_path / "sweep")], capsys)
    assert rc == 2 and "svhn" in err.lower()
    assert not (tmp_path / "sweep").exists()


# ---------------------------------------------------------------------------------- setup, package


def test_pyproject_has_no_setuptools_warnings() -> None:
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        apply_configuration(Distribution(), str(REPO / "pyproject.toml"))
    assert not [str(w.message).splitlines()[0] for w in got]


def test_check_env_finds_missing_and_wrong_versions(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import check_env
    finally:
        sys.path.pop(0)
    py = tmp_path / "pyproject.toml"
    py.write_text('[project]\nname = "x"\ndependencies = ["numpy>=1"]\n[project.optional-dependencies]\n'
                  'a = ["specdeploy-no-such-package>=1", "numpy<1", "pytest; python_version < \'3\'"]\n')
    assert check_env.missing(check_env.requirements(py, [])) == []
    got = check_env.missing(check_env.requirements(py, ["a"]))
    assert len(got) == 2 and "not installed" in got[0] and "found" in got[1]
    assert check_env.main(["--pyproject", str(py), "--no-self"]) == 0
    assert check_env.main(["--pyproject", str(py), "--extras", "a", "--no-self"]) == 1


def _fake_repo(tmp_path: Path, check_rc: int) -> tuple[Path, Path]:
    """A copy of setup.sh with a stand-in .venv/bin/python that logs its calls."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    (repo / ".venv" / "bin").mkdir(parents=True)
    log = tmp_path / "calls.log"
    py = repo / ".venv" / "bin" / "python"
    py.write_text(f'#!/bin/sh\necho "$*" >> {log}\ncase "$*" in *check_env.py*) exit {check_rc};; esac\nexit 0\n')
    py.chmod(0o755)
    return repo, log


@pytest.mark.parametrize("satisfied", [True, False])
def test_setup_second_run_only_checks(tmp_path: Path, satisfied: bool) -> None:
    repo, log = _fake_repo(tmp_path, 0 if satisfied else 1)
    data = tmp_path / "fmnist.gz"
    data.write_bytes(b"x")
    proc = subprocess.run(["bash", str(repo / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SPECDEPLOY_FMNIST_FILE": str(data)})
    calls = log.read_text()
    if satisfied:
        assert proc.returncode == 0, proc.stderr
        assert "pip install" not in calls and "nothing installed" in proc.stdout
    else:  # a fresh machine: everything is installed (then the stand-in's check fails again: exit != 0)
        assert "-m pip install -q torch==2.13.0" in calls and "-m pip install -q -e .[export,ort,data,plot,dev]" in calls


def test_demo_trains_with_the_free_cores_only() -> None:
    """2 torch threads on 2 busy cores were 4-6x slower than 1 (README): the demo takes what is free."""
    from specdeploy.demo import pick_threads

    assert pick_threads(cpus=2, load=12.4) == 1
    assert pick_threads(cpus=2, load=0.3) == 2
    assert pick_threads(cpus=16, load=5.0) == 11


def test_rss_report_does_not_call_page_noise_exact() -> None:
    from specdeploy.runtime.procmem import ProcessMemory

    rep = ProcessMemory().report("reference")
    assert "exact" not in rep and isinstance(rep["peak_reset"], bool) and rep["resolution_bytes"] >= 1024
