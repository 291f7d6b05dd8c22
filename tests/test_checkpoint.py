"""Checkpoints round-trip, and every kind of bad checkpoint is a CheckpointError naming the problem."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from specdeploy import checkpoint, zoo
from specdeploy.checkpoint import CheckpointError


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[zoo.ZooModel, Path]:
    torch.manual_seed(0)
    model = zoo.create("lenet5", domain="spectral", in_channels=1, beta=0.7, width=0.5)
    model.train()
    model(torch.randn(4, 1, 32, 32))  # move running statistics away from their initial value
    out = checkpoint.save(model, tmp_path / "ck", metrics={"test_accuracy": 0.5}, data={"name": "fashion-mnist"})
    return model, out


def test_round_trip(saved: tuple[zoo.ZooModel, Path]) -> None:
    model, path = saved
    ck = checkpoint.load(path)
    assert ck.config == model.config
    assert ck.meta["metrics"] == {"test_accuracy": 0.5}
    model.eval()
    x = torch.randn(3, 1, 32, 32)
    assert torch.equal(model(x), ck.model(x))
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck.model.state_dict()[k]), k


@pytest.mark.parametrize("name", ["vgg16", "densenet", "alexnet"])
def test_round_trip_every_model(tmp_path: Path, name: str) -> None:
    kw = {"depth": 10, "growth": 4} if name == "densenet" else {}
    for domain in zoo.DOMAINS:
        model = zoo.create(name, domain=domain, width=0.125, **kw).eval()
        ck = checkpoint.load(checkpoint.save(model, tmp_path / f"{name}-{domain}"))
        x = torch.randn(2, 3, 32, 32)
        assert torch.equal(model(x), ck.model(x))


def test_truncated_weights(saved: tuple[zoo.ZooModel, Path]) -> None:
    _, path = saved
    w = path / checkpoint.WEIGHTS
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        checkpoint.load(path)


def test_wrong_shape(saved: tuple[zoo.ZooModel, Path]) -> None:
    _, path = saved
    state = load_file(str(path / checkpoint.WEIGHTS))
    state["head.1.weight"] = torch.zeros(3, 3)
    save_file(state, str(path / checkpoint.WEIGHTS))
    with pytest.raises(CheckpointError, match=r"'head\.1\.weight' has shape \(3, 3\)"):
        checkpoint.load(path)


def test_missing_and_extra_tensor(saved: tuple[zoo.ZooModel, Path]) -> None:
    _, path = saved
    state = load_file(str(path / checkpoint.WEIGHTS))
    gone = state.pop("features.0.weight")
    save_file(state, str(path / checkpoint.WEIGHTS))
    with pytest.raises(CheckpointError, match=r"missing tensor\(s\).*features\.0\.weight"):
        checkpoint.load(path)
    state["features.0.weight"] = gone
    state["surprise"] = torch.zeros(1)
    save_file(state, str(path / checkpoint.WEIGHTS))
    with pytest.raises(CheckpointError, match=r"unexpected tensor\(s\).*surprise"):
        checkpoint.load(path)


def test_unknown_model_name(saved: tuple[zoo.ZooModel, Path]) -> None:
    _, path = saved
    doc = json.loads((path / checkpoint.CONFIG).read_text())
    doc["model"]["model"] = "resnet50"
    (path / checkpoint.CONFIG).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="unknown model 'resnet50'"):
        checkpoint.load(path)


def test_bad_config_files(saved: tuple[zoo.ZooModel, Path], tmp_path: Path) -> None:
    _, path = saved
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        checkpoint.load(tmp_path / "nowhere")
    (path / checkpoint.CONFIG).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        checkpoint.load(path)
    (path / checkpoint.CONFIG).write_text(json.dumps({"format": "other"}))
    with pytest.raises(CheckpointError, match="not a specdeploy checkpoint"):
        checkpoint.load(path)
    (path / checkpoint.CONFIG).unlink()
    with pytest.raises(CheckpointError, match="missing checkpoint config"):
        checkpoint.load(path)


def test_pickle_is_never_loaded(saved: tuple[zoo.ZooModel, Path], tmp_path: Path) -> None:
    """A pickle posing as the weights file is rejected without being executed."""
    _, path = saved
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # noqa: D105
            return (Path.touch, (marker,))

    (path / checkpoint.WEIGHTS).write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(CheckpointError):
        checkpoint.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["lenet5", "densenet"])
def test_hybrid_round_trip_records_the_block(tmp_path: Path, name: str) -> None:
    kw = {"depth": 10, "growth": 4} if name == "densenet" else {}
    model = zoo.create(name, block="hybrid", width=0.5, **kw)
    model.train()
    model(torch.randn(4, 3, 32, 32))  # BatchNorm statistics away from their initial values
    model.eval()
    path = checkpoint.save(model, tmp_path / "hy")
    assert json.loads((path / checkpoint.CONFIG).read_text())["model"]["block"] == "hybrid"
    ck = checkpoint.load(path)
    assert ck.config.block == "hybrid" and ck.config.activation == "relu"
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), ck.model(x))


def test_checkpoint_without_block_loads_as_paper(tmp_path: Path) -> None:
    model = zoo.create("lenet5", domain="spectral", in_channels=1, beta=0.7, width=0.5, block="paper")
    path = checkpoint.save(model, tmp_path / "ck")
    cfg_path = path / checkpoint.CONFIG
    doc = json.loads(cfg_path.read_text())
    del doc["model"]["block"]  # as written before blocks existed
    cfg_path.write_text(json.dumps(doc))
    ck = checkpoint.load(path)
    assert ck.config.block == "paper" and ck.config == model.config
