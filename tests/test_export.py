"""Export: checker-valid graphs with the specdeploy op set, calibrated capacities, folded weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from helpers.models import trained_like
from specdeploy import checkpoint, ops, packed, recipes, zoo
from specdeploy.cli import main as cli_main
from specdeploy.export import ExportError, export_checkpoint, export_model, schemas


def calib(m: zoo.ZooModel, n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, m.config.in_channels, 32, 32)).astype(np.float32)


@pytest.mark.parametrize("name", zoo.MODELS)
@pytest.mark.parametrize("value_dtype", ["fp32", "fp16"])
def test_spectral_export_is_valid_and_calibrated(tmp_path: Path, name: str, value_dtype: str) -> None:
    m = trained_like(name, "spectral")
    res = export_model(m, tmp_path / "m.onnx", calib_images=calib(m), value_dtype=value_dtype, batch=2)
    model = onnx.load(str(res.path))
    schemas.register()
    onnx.checker.check_model(model, full_check=True)
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 17), (ops.DOMAIN, ops.VERSION)}
    # shape inference from the schemas alone (value_info stripped) gives the packed widths
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    del stripped.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(stripped, strict_mode=True)
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in inferred.graph.value_info}
    spec_nodes = [n for n in model.graph.node if n.domain == ops.DOMAIN]
    assert {n.op_type for n in spec_nodes} >= {"SpecConv", "SpecPool", "SpecToSpatial"}
    meta = {p.key: p.value for p in model.metadata_props}
    stats = json.loads(meta["specdeploy.calibration"])
    for n in spec_nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        ops.check_required(n.op_type, attrs, n.name)
        assert attrs["value_dtype"] == value_dtype.encode()
        if n.op_type == "SpecToSpatial":
            continue
        C = sum(attrs["C"]) if n.op_type == "SpecConcat" else (
            next(i for i in model.graph.initializer if i.name == n.input[1]).dims[0] if n.op_type == "SpecConv" else attrs["C"])
        Hs, Ws = (attrs["out_Hs"], attrs["out_Ws"]) if n.op_type == "SpecPool" else (attrs["Hs"], attrs["Ws"])
        F = packed.num_coeffs(Hs, Ws)
        assert 1 <= attrs["capacity"] <= C * F
        assert shapes[n.output[0]] == [2, packed.row_words(C, F, attrs["capacity"], value_dtype)]
        s = stats[n.name]
        assert s["capacity"] == attrs["capacity"] == res.capacities[n.name]
        assert s["samples"] == 16 and s["max"] >= s["p99"] >= s["mean"] > 0 and s["dense"] == C * F
        assert attrs["capacity"] == min(C * F, int(np.ceil(s["max"] * 1.1)))
    cfg = json.loads(meta["specdeploy.model"])
    assert cfg["model"] == name and cfg["domain"] == "spectral"


@pytest.mark.parametrize("name", zoo.MODELS)
def test_twin_export_folds_bn(tmp_path: Path, name: str) -> None:
    m = trained_like(name, "spatial")
    model = onnx.load(str(export_model(m, tmp_path / "t.onnx", batch=3).path))
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops
    assert all(n.domain == "" for n in model.graph.node)
    import onnxruntime as ort

    x = np.random.default_rng(1).standard_normal((3, m.config.in_channels, 32, 32)).astype(np.float32)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, m(torch.from_numpy(x)).detach().numpy(), atol=1e-4, rtol=1e-4)


def test_dynamic_batch_and_beta_override(tmp_path: Path) -> None:
    m = trained_like("lenet5", "spectral", beta=1.0)
    res = export_model(m, tmp_path / "d.onnx", batch=None, max_batch=16, beta=0.25, calib_images=calib(m))
    model = onnx.load(str(res.path))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["specdeploy.max_batch"] == "16" and json.loads(meta["specdeploy.model"])["beta"] == 0.25
    betas = {onnx.helper.get_attribute_value(a) for n in model.graph.node for a in n.attribute if a.name == "beta"}
    assert betas == {0.25}
    # a lower beta keeps more coefficients than the trained one
    hi = export_model(m, tmp_path / "h.onnx", calib_images=calib(m))
    assert sum(res.capacities.values()) > sum(hi.capacities.values())


def test_bad_export_options(tmp_path: Path) -> None:
    m = trained_like("lenet5", "spectral")
    with pytest.raises(ExportError, match="beta"):
        export_model(m, tmp_path / "x.onnx", beta=-0.5)
    with pytest.raises(ExportError, match="max_batch"):
        export_model(m, tmp_path / "x.onnx", batch=None)
    with pytest.raises(ExportError, match="margin"):
        export_model(m, tmp_path / "x.onnx", calib_images=calib(m), margin=0.5)
    with pytest.raises(ExportError, match="value_dtype"):
        export_model(m, tmp_path / "x.onnx", value_dtype="bf16")
    m.head.append(nn.GELU())
    with pytest.raises(ExportError, match=r"head\.6: unsupported layer GELU"):
        export_model(m, tmp_path / "x.onnx")


def test_cli_export_with_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = trained_like("lenet5", "spectral")
    ck = checkpoint.save(m, tmp_path / "ck", data={"name": "fashion-mnist"})
    out = tmp_path / "m.onnx"
    assert cli_main(["export", str(ck), "-o", str(out), "--recipe", "lenet5-jetson-orin-fp16", "--calib-samples", "64"]) == 0
    model = onnx.load(str(out))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["specdeploy.recipe"])["name"] == "lenet5-jetson-orin-fp16"
    assert meta["specdeploy.value_dtype"] == "fp16" and meta["specdeploy.max_batch"] == "8"
    assert json.loads(meta["specdeploy.data"])["name"] == "fashion-mnist"
    assert all(s["samples"] == 64 for s in json.loads(meta["specdeploy.calibration"]).values())
    assert "capacity" in capsys.readouterr().out
    # a recipe for another model is refused with a clear message, exit status 2
    assert cli_main(["export", str(ck), "-o", str(tmp_path / "other.onnx"), "--recipe", "vgg16-x86-fp32"]) == 2
    assert "is for model vgg16" in capsys.readouterr().err
    assert cli_main(["export", str(tmp_path / "nope"), "-o", str(tmp_path / "other.onnx")]) == 2
    assert "not a checkpoint directory" in capsys.readouterr().err


def test_export_checkpoint_uses_training_data_for_calibration(tmp_path: Path) -> None:
    m = trained_like("lenet5", "spectral")
    ck = checkpoint.save(m, tmp_path / "ck", data={"name": "fashion-mnist"})
    res = export_checkpoint(ck, tmp_path / "m.onnx", calib_samples=32)
    assert res.calibration and all(s["samples"] == 32 for s in res.calibration.values())


def test_shipped_recipes_are_valid() -> None:
    rs = recipes.all_recipes()
    assert {r.model for r in rs} >= {"lenet5", "vgg16", "densenet"}
    assert any(r.target == "jetson-orin" and r.export.value_dtype == "fp16" for r in rs)


@pytest.mark.parametrize("patch,words", [
    ({"model": "resnet"}, "unknown model 'resnet'"),
    ({"input_shape": [1, 32]}, "input_shape"),
    ({"export": {"value_dtype": "bf16"}}, r"export\.value_dtype"),
    ({"export": {"dynamic_batch": True}}, "max_batch"),
    ({"export": {"beta": -1.0}}, r"export\.beta"),
    ({"export": {"batsh": 2}}, "unknown key"),
    ({"calibration": {"margin": 0.9}}, "margin"),
    ({"tensorrt": {"precision": "int8"}}, "precision"),
    ({"tensorrt": {"tactic_sources": ["MAGIC"]}}, "tactic_sources"),
    ({"tensorrt": {"workspace_mib": 0}}, "workspace_mib"),
])
def test_recipe_validation(patch: dict, words: str) -> None:
    doc = {"name": "x", "model": "lenet5", "target": "x86", "input_shape": [1, 32, 32]}
    doc.update(patch)
    with pytest.raises(recipes.RecipeError, match=words):
        recipes.parse(doc, "test.toml")


def test_recipe_not_found_lists_known(tmp_path: Path) -> None:
    with pytest.raises(recipes.RecipeError, match="known recipes: .*vgg16-x86-fp32"):
        recipes.load("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(recipes.RecipeError, match="not valid TOML"):
        recipes.load(bad)


def test_cli_info_describes_an_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = trained_like("lenet5", "spectral")
    path = export_model(m, tmp_path / "m.onnx", batch=None, max_batch=4, calib_images=calib(m)).path
    assert cli_main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "spectral model" in out and "dynamic (max 4)" in out and "SpecConv" in out and "capacity" in out
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert cli_main(["info", str(tmp_path / "junk.onnx")]) == 2
    assert "not an ONNX model" in capsys.readouterr().err
