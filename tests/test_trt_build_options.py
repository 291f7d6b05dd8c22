"""Recipe -> TensorRT build options (defaults, explicit arguments, bad recipes) and input profiles."""

from __future__ import annotations

import json

import pytest

from specdeploy.trt.builder import (
    BuildOptions, EngineBuildError, input_profile, load_recipe, options_from_recipe,
)


def test_options_defaults_and_recipe_tables():
    assert options_from_recipe(None) == BuildOptions()
    r = {"tensorrt": {"precision": "fp16", "workspace_mib": 128, "builder_optimization_level": 5,
                      "tactic_sources": ["CUBLAS", "EDGE_MASK_CONVOLUTIONS"]},
         "export": {"batch": 1, "dynamic_batch": True, "max_batch": 8, "value_dtype": "fp16"},
         "calibration": {"data": "fashion-mnist"}, "name": "x"}
    o = options_from_recipe(r)
    assert (o.fp16, o.workspace_mib, o.builder_optimization_level, o.max_batch) == (True, 128, 5, 8)
    assert o.tactic_sources == ("CUBLAS", "EDGE_MASK_CONVOLUTIONS") and o.profile() == (1, 8, 8)
    # a static export keeps its own batch: no profile maximum from the recipe
    o = options_from_recipe({"export": {"batch": 4, "dynamic_batch": False, "max_batch": 8}})
    assert o.max_batch is None


def test_options_explicit_arguments_win():
    r = {"tensorrt": {"precision": "fp16", "workspace_mib": 256}, "export": {"dynamic_batch": True, "max_batch": 32}}
    o = options_from_recipe(r, fp16=False, workspace_mib=2048, max_batch=2)
    assert (o.fp16, o.workspace_mib, o.max_batch) == (False, 2048, 2)
    o = options_from_recipe(r, fp16=None, workspace_mib=None, max_batch=None)
    assert (o.fp16, o.workspace_mib, o.max_batch) == (True, 256, 32)


@pytest.mark.parametrize("recipe, match", [
    ({"tensorrt": {"fp16": True}}, r"unknown keys \['fp16'\]"),
    ({"tensorrt": {"precision": "int8"}}, "precision must be 'fp16' or 'fp32'"),
    ({"tensorrt": {"workspace_mib": 2.5}}, "workspace_mib must be an integer"),
    ({"tensorrt": {"workspace_mib": 0}}, "workspace_mib must be > 0"),
    ({"tensorrt": {"builder_optimization_level": 9}}, "builder_optimization_level must be in 0..5"),
    ({"tensorrt": {"tactic_sources": "CUDNN"}}, "must be a list of names"),
    ({"export": {"dynamic_batch": "yes", "max_batch": 4}}, "dynamic_batch must be true or false"),
])
def test_options_bad_recipes(recipe, match):
    with pytest.raises(ValueError, match=match):
        options_from_recipe(recipe)


def test_load_recipe_by_name_path_json_and_object(tmp_path):
    from specdeploy import recipes

    shipped = sorted(recipes.RECIPE_DIR.glob("*.toml"))
    if shipped:  # the repository's recipes, by name: validated by specdeploy.recipes
        name = shipped[0].stem
        r = load_recipe(name)
        assert r["name"] == name and "tensorrt" in r
        options_from_recipe(r)  # every shipped recipe maps onto build options
        for p in shipped:
            options_from_recipe(load_recipe(p))
        assert load_recipe(recipes.load(name)) == r
    t = tmp_path / "mine.toml"
    t.write_text('name = "mine"\nmodel = "lenet5"\ntarget = "x86"\ninput_shape = [1, 32, 32]\n\n'
                 '[export]\ndynamic_batch = true\nmax_batch = 16\n\n[tensorrt]\nprecision = "fp16"\n')
    o = options_from_recipe(load_recipe(t))
    assert o.fp16 and o.max_batch == 16
    j = tmp_path / "r.json"
    j.write_text(json.dumps({"tensorrt": {"workspace_mib": 64}}))
    assert options_from_recipe(load_recipe(j)).workspace_mib == 64
    assert load_recipe({"a": 1}) == {"a": 1} and load_recipe(None) is None
    with pytest.raises(ValueError, match="not found"):
        load_recipe("no-such-recipe")
    bad = tmp_path / "bad.toml"
    bad.write_text("[tensorrt\nprecision = ")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_recipe(bad)


def test_input_profiles():
    opts = BuildOptions(max_batch=16, opt_batch=4)
    assert input_profile("input", (-1, 1, 28, 28), opts) == ((1, 1, 28, 28), (4, 1, 28, 28), (16, 1, 28, 28))
    assert input_profile("input", (1, 1, 28, 28), BuildOptions()) is None
    assert input_profile("input", (8, 3, 32, 32), BuildOptions(max_batch=8)) is None
    with pytest.raises(EngineBuildError, match="fixed batch of 1 .* max_batch = 8"):
        input_profile("input", (1, 3, 32, 32), BuildOptions(max_batch=8))
    with pytest.raises(EngineBuildError, match=r"dynamic dimensions \[0, 2, 3\].*only the batch"):
        input_profile("input", (-1, 3, -1, -1), BuildOptions(max_batch=8))
