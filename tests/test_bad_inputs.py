"""Every bad input of docs/bad-inputs.md, through the CLI in-process (``main(argv)``): what it gets.

Each row: an id (the doc table's first column), the command line, the exit status and the words the
one-line error must contain. After every row, no file of the shared artifacts changed (an input is
never overwritten) and there is no traceback. ``test_doc_table_matches`` keeps the doc and this table
the same set of rows.

The artifacts are untrained models (building and exporting them takes seconds; training is not what
these rows test): a SpecLeNet-5 checkpoint and its twin on Fashion-MNIST, both exported with a dynamic
batch up to 8, and a few deliberately broken or mismatched ones.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from specdeploy import checkpoint, zoo
from specdeploy.cli import main
from specdeploy.export import export_checkpoint

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-inputs.md"


def _ckpt(path: Path, data: str = "fashion-mnist", **cfg: Any) -> Path:
    config = zoo.ModelConfig(**{"model": "lenet5", "domain": "spectral", "in_channels": 1, **cfg})
    import torch

    torch.manual_seed(0)
    checkpoint.save(zoo.build(config), path, data={"name": data, "train_samples": 0, "test_samples": 0},
                    classes=[str(i) for i in range(10)], training={}, history=[], metrics={})
    return path


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad_inputs")
    a: dict[str, Path] = {"dir": d}
    a["ck"] = _ckpt(d / "ck")
    a["ck_twin"] = _ckpt(d / "ck_twin", domain="spatial")
    a["ck_rgb"] = _ckpt(d / "ck_rgb", in_channels=3)
    a["ck_wide_twin"] = _ckpt(d / "ck_wide_twin", domain="spatial", width=0.5)
    a["ck_mnist_twin"] = _ckpt(d / "ck_mnist_twin", domain="spatial", data="mnist")
    a["ck_vgg_twin"] = _ckpt(d / "ck_vgg_twin", model="vgg16", domain="spatial", width=0.125)
    common = dict(batch=None, max_batch=8, calib_data="fashion-mnist", calib_samples=16)
    for name in ("ck", "ck_twin", "ck_rgb", "ck_wide_twin", "ck_mnist_twin", "ck_vgg_twin"):
        a[name.replace("ck", "onnx", 1)] = export_checkpoint(a[name], d / f"{name}.onnx", **common).path
    # broken checkpoints
    a["ck_trunc"] = shutil.copytree(a["ck"], d / "ck_trunc")
    w = a["ck_trunc"] / checkpoint.WEIGHTS
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    a["ck_unknown"] = shutil.copytree(a["ck"], d / "ck_unknown")
    cfg = json.loads((a["ck_unknown"] / checkpoint.CONFIG).read_text())
    cfg["model"]["model"] = "resnet50"
    (a["ck_unknown"] / checkpoint.CONFIG).write_text(json.dumps(cfg))
    a["ck_nan"] = shutil.copytree(a["ck"], d / "ck_nan")
    from safetensors.torch import load_file, save_file

    state = load_file(str(a["ck_nan"] / checkpoint.WEIGHTS))
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first][...] = float("nan")
    save_file(state, str(a["ck_nan"] / checkpoint.WEIGHTS), metadata={"format": checkpoint.FORMAT})
    a["existing"] = d / "existing.onnx"
    a["existing"].write_bytes(b"keep me")
    a["existing_dir"] = d / "existing_dir"
    a["existing_dir"].mkdir()
    (a["existing_dir"] / "keep.txt").write_text("keep me")
    return a


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


TRAIN = ["train", "--model", "lenet5", "--data", "fashion-mnist"]

#: (id, argv with {placeholders} for artifacts and {tmp} for a fresh directory, exit status, words).
ROWS: list[tuple[str, str, int, str]] = [
    # --- 1. nothing lost: inputs never overwritten, existing outputs refused, checked before the work
    ("export-onto-own-weights", "export {ck} -o {ck}/model.safetensors --force", 2, "is the command's input"),
    ("export-onto-own-config", "export {ck} -o {ck}/config.json", 2, "is the command's input"),
    ("export-onto-existing", "export {ck} -o {existing}", 2, "already exists"),
    ("export-onto-checkpoint-dir", "export {ck} -o {ck}", 2, "is the command's input"),
    ("eval-json-onto-config", "eval {ck} --data fashion-mnist --samples 8 --json {ck}/config.json", 2,
     "is the command's input"),
    ("bench-json-onto-spec", "bench {onnx} --twin {onnx_twin} --json {onnx} --force", 2, "is the command's input"),
    ("bench-csv-onto-twin", "bench {onnx} --twin {onnx_twin} --csv {onnx_twin}", 2, "is the command's input"),
    ("bench-json-existing", "bench {onnx} --twin {onnx_twin} --json {existing}", 2, "already exists"),
    ("bench-json-equals-csv", "bench {onnx} --twin {onnx_twin} --json {tmp}/a --csv {tmp}/a", 2, "same path"),
    ("memory-json-onto-model", "memory {onnx} --json {onnx} --force", 2, "is the command's input"),
    ("memory-json-existing", "memory {onnx} --json {existing}", 2, "already exists"),
    ("train-out-existing", " ".join(TRAIN) + " --out {existing_dir}", 2, "already exists"),
    ("train-out-is-file", " ".join(TRAIN) + " --out {existing} --force", 2, "not a directory"),
    ("train-out-under-a-file", " ".join(TRAIN) + " --out {existing}/ck", 2, "is not a directory"),
    ("sweep-out-existing", "sweep {ck} --out {existing_dir}", 2, "already exists"),
    ("sweep-out-onto-checkpoint", "sweep {ck} --out {ck} --force", 2, "is the command's input"),
    ("demo-out-existing", "demo --out {existing_dir}", 2, "already exists"),
    ("build-onto-model", "build {onnx} -o {onnx} --force", 2, "is the command's input"),
    # --- 4. numeric flags validated when parsed (argparse: exit 2, "argument --flag: ...")
    ("train-epochs-0", " ".join(TRAIN) + " --epochs 0 --out {tmp}/o", 2, "argument --epochs: must be a positive"),
    ("train-epochs-negative", " ".join(TRAIN) + " --epochs -3 --out {tmp}/o", 2, "argument --epochs"),
    ("train-max-steps-0", " ".join(TRAIN) + " --max-steps 0 --out {tmp}/o", 2, "argument --max-steps"),
    ("train-samples-0", " ".join(TRAIN) + " --samples 0 --out {tmp}/o", 2, "argument --samples"),
    ("train-test-samples-0", " ".join(TRAIN) + " --test-samples 0 --out {tmp}/o", 2, "argument --test-samples"),
    ("train-batch-size-0", " ".join(TRAIN) + " --batch-size 0 --out {tmp}/o", 2, "argument --batch-size"),
    ("train-width-0", " ".join(TRAIN) + " --width 0 --out {tmp}/o", 2, "argument --width: must be a finite number > 0"),
    ("train-lr-nan", " ".join(TRAIN) + " --lr nan --out {tmp}/o", 2, "argument --lr: must be a finite number"),
    ("train-lr-inf", " ".join(TRAIN) + " --lr inf --out {tmp}/o", 2, "argument --lr: must be a finite number"),
    ("train-lr-negative", " ".join(TRAIN) + " --lr -0.1 --out {tmp}/o", 2, "argument --lr"),
    ("train-momentum-1", " ".join(TRAIN) + " --momentum 1 --out {tmp}/o", 2, "argument --momentum"),
    ("train-beta-negative", " ".join(TRAIN) + " --beta -1 --out {tmp}/o", 2, "argument --beta"),
    ("train-beta-nan", " ".join(TRAIN) + " --beta nan --out {tmp}/o", 2, "argument --beta"),
    ("train-epochs-text", " ".join(TRAIN) + " --epochs two --out {tmp}/o", 2, "expected an integer"),
    ("eval-samples-0", "eval {ck} --data fashion-mnist --samples 0", 2, "argument --samples"),
    ("export-margin-0", "export {ck} -o {tmp}/m.onnx --margin 0", 2, "argument --margin: must be a finite number >= 1"),
    ("export-margin-nan", "export {ck} -o {tmp}/m.onnx --margin nan", 2, "argument --margin"),
    ("export-calib-samples-0", "export {ck} -o {tmp}/m.onnx --calib-samples 0", 2, "argument --calib-samples"),
    ("export-batch-0", "export {ck} -o {tmp}/m.onnx --batch 0", 2, "argument --batch"),
    ("demo-steps-0", "demo --steps 0 --out {tmp}/d", 2, "argument --steps"),
    ("bench-samples-0", "bench {onnx} --twin {onnx_twin} --samples 0", 2, "argument --samples"),
    ("bench-repeats-0", "bench {onnx} --twin {onnx_twin} --repeats 0", 2, "argument --repeats"),
    ("bench-warmup-negative", "bench {onnx} --twin {onnx_twin} --warmup -1", 2, "argument --warmup"),
    ("bench-batch-0", "bench {onnx} --twin {onnx_twin} --batch 0", 2, "--batch: batch sizes must be >= 1"),
    ("bench-batch-text", "bench {onnx} --twin {onnx_twin} --batch 1,x", 2, "is not an integer"),
    ("bench-batch-over-max", "bench {onnx} --twin {onnx_twin} --batch 16 --samples 8", 2, "declared maximum 8"),
    ("bench-backend-opt-not-a-switch", "bench {onnx} --twin {onnx_twin} --backend native-host --backend-opt fp16=maybe "
     "--samples 8", 2, "option 'fp16' must be true or false"),
    ("sweep-samples-0", "sweep {ck} --samples 0 --out {tmp}/s", 2, "argument --samples"),
    ("sweep-margin-below-1", "sweep {ck} --margin 0.9 --out {tmp}/s", 2, "argument --margin"),
    ("build-workspace-0", "build {onnx} -o {tmp}/e.engine --workspace 0", 2, "argument --workspace"),
    ("memory-batch-0", "memory {onnx} --batch 0", 2, "argument --batch"),
    # --- 5. confident nonsense refused
    ("bench-twin-other-channels", "bench {onnx_rgb} --twin {onnx_twin} --samples 8", 2, "input shapes differ"),
    ("bench-twin-other-family", "bench {onnx} --twin {onnx_vgg_twin} --samples 8", 2,
     "architectures differ in 'model'"),
    ("bench-twin-other-width", "bench {onnx} --twin {onnx_wide_twin} --samples 8", 2, "architectures differ in 'width'"),
    ("bench-twin-other-data", "bench {onnx} --twin {onnx_mnist_twin} --samples 8", 2, "data sets differ"),
    ("bench-twin-same-file", "bench {onnx} --twin {onnx} --samples 8", 2, "the twin is the spectral model itself"),
    ("bench-twin-spectral", "bench {onnx} --twin {onnx_rgb} --samples 8", 2, "it is a spectral model"),
    ("info-truncated-weights", "info {ck_trunc}", 2, "corrupt or truncated"),
    ("info-unknown-model", "info {ck_unknown}", 2, "unknown model 'resnet50'"),
    ("info-missing-path", "info {tmp}/nothing", 2, "no such checkpoint directory or model file"),
    ("export-nan-weights", "export {ck_nan} -o {tmp}/nan.onnx", 2, "non-finite"),
    ("sweep-twin-spectral", "sweep {ck} --twin {ck_rgb} --out {tmp}/s", 2, "must be a spatial checkpoint"),
]


def _format(argv: str, art: dict[str, Path], tmp: Path) -> list[str]:
    return [t.format(tmp=tmp, **art) for t in argv.split()]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse errors
        rc = int(e.code or 0)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(row: tuple[str, str, int, str], art: dict[str, Path], tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    name, argv, status, words = row
    before = _digest(art["dir"])
    rc, out, err = run_cli(_format(argv, art, tmp_path), capsys)
    assert rc == status, f"{name}: exit {rc}\nstdout: {out}\nstderr: {err}"
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert last.startswith("specdeploy ") and words in last, f"{name}: {words!r} not in the error line:\n{err}"
    assert "Traceback" not in err, err
    assert "training" not in out  # refused before any work
    assert _digest(art["dir"]) == before, f"{name} changed an input or an existing file"
    assert not (tmp_path / "o").exists() and not (tmp_path / "s").exists() and not (tmp_path / "d").exists()


def test_force_replaces_an_existing_output_atomically(art: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    rc, _, err = run_cli(["export", str(art["ck"]), "-o", str(out), "--calib-samples", "16"], capsys)
    assert rc == 2 and "--force" in err and out.read_bytes() == b"old"
    rc, stdout, err = run_cli(["export", str(art["ck"]), "-o", str(out), "--calib-samples", "16", "--force"], capsys)
    assert rc == 0, err
    assert out.read_bytes()[:4] != b"old" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temp left


def test_mismatched_twin_runs_when_allowed_and_says_so(art: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(["bench", str(art["onnx"]), "--twin", str(art["onnx_wide_twin"]), "--backend", "reference",
                            "--samples", "8", "--batch", "1", "--repeats", "1", "--warmup", "0", "--no-progress",
                            "--allow-mismatched-twin", "--json", str(tmp_path / "b.json")], capsys)
    assert rc == 0, err
    assert "WARNING (--allow-mismatched-twin): architectures differ in 'width'" in out
    doc = json.loads((tmp_path / "b.json").read_text())
    assert doc["twin_check"]["allowed"] and doc["twin_check"]["mismatches"]


def test_doc_table_matches() -> None:
    """docs/bad-inputs.md lists exactly these rows (first column), so the doc cannot drift."""
    text = DOC.read_text()
    in_doc = set(re.findall(r"^\| `([a-z0-9-]+)` \|", text, re.M))
    in_test = {r[0] for r in ROWS}
    assert in_doc == in_test, f"only in doc: {sorted(in_doc - in_test)}; only in test: {sorted(in_test - in_doc)}"
