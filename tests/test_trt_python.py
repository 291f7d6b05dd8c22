"""specdeploy.trt on a machine without TensorRT or a GPU (CI).

What runs here: import without TensorRT (and the clear error when it is used), the engine sidecar and
its mismatch errors, the TensorRT 10/11 shims on stand-in objects, recipe -> build options, the probe
parsers on recorded Jetson text (tests/data/jetson), the tegrastats sampler thread, and the builder
and runner driven through a small stand-in of the ``tensorrt`` module (host memory as "device"
memory) so their own logic (profiles, feeds, buffers, sidecars, error messages) is exercised.
Real engines: tests/test_trt_engine.py (marked ``tensorrt``).
"""

from __future__ import annotations

import ctypes
import importlib
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from specdeploy.trt import compat, probes, sidecar
from specdeploy.trt.builder import (
    BuildOptions, EngineBuildError, input_profile, load_recipe, options_from_recipe,
)
from specdeploy.trt.cudart import Cuda, CudaError, handle_int, import_cudart
from specdeploy.trt.runner import InputShapeError, check_shape_in_profile

DATA = Path(__file__).parent / "data" / "jetson"


# ------------------------------------------------------------------------------------------------
# import without TensorRT


@pytest.fixture
def no_tensorrt(monkeypatch):
    """Make `import tensorrt` fail even where TensorRT is installed."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def test_import_does_not_need_tensorrt():
    """Importing every module pulls in neither TensorRT, cuda-python, nor torch (fresh interpreter)."""
    import subprocess

    code = ("import sys\n"
            "import specdeploy.trt, specdeploy.trt.compat, specdeploy.trt.sidecar, specdeploy.trt.builder\n"
            "import specdeploy.trt.runner, specdeploy.trt.probes, specdeploy.trt.cli, specdeploy.trt.cudart\n"
            "bad = sorted(m for m in ('tensorrt', 'cuda', 'torch', 'pynvml', 'jtop') if m in sys.modules)\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_using_tensorrt_without_it_gives_the_clear_error(no_tensorrt, tmp_path):
    with pytest.raises(compat.TensorRTUnavailableError, match="TensorRT Python package not found: install "
                       r"specdeploy\[trt\] on a machine with TensorRT"):
        compat.import_tensorrt()
    # it is an ImportError and a ValueError (one-line CLI error)
    assert issubclass(compat.TensorRTUnavailableError, ImportError)
    assert issubclass(compat.TensorRTUnavailableError, ValueError)

    from specdeploy.trt.builder import build_engine
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"not really onnx")
    with pytest.raises(compat.TensorRTUnavailableError, match="TensorRT Python package not found"):
        build_engine(onnx_file, tmp_path / "m.engine", tmp_path / "lib.so")

    from specdeploy.trt.runner import TrtRunner
    with pytest.raises(compat.TensorRTUnavailableError, match="TensorRT Python package not found"):
        TrtRunner(tmp_path / "m.engine", None)


def test_cli_build_without_tensorrt_is_a_one_line_error(no_tensorrt, tmp_path, capsys):
    from specdeploy import cli

    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"x")
    rc = cli.main(["build", str(onnx_file), "-o", str(tmp_path / "m.engine"), "--plugins", str(tmp_path / "l.so")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "TensorRT Python package not found: install specdeploy[trt]" in err
    assert "Traceback" not in err


def test_cli_build_parser_defaults(monkeypatch):
    from specdeploy import cli

    monkeypatch.delenv("SPECDEPLOY_TRT_PLUGINS", raising=False)
    args = cli.build_parser().parse_args(["build", "m.onnx", "-o", "m.engine", "--plugins", "lib.so"])
    assert args.fp16 is None and args.workspace is None and args.max_batch is None and args.recipe is None
    args = cli.build_parser().parse_args(["build", "m.onnx", "-o", "e", "--plugins", "l", "--fp16", "--workspace",
                                          "512", "--max-batch", "8", "--recipe", "r.toml"])
    assert args.fp16 is True and args.workspace == 512 and args.max_batch == 8 and args.recipe == "r.toml"


def test_cli_build_needs_plugins(monkeypatch, tmp_path, capsys):
    from specdeploy import cli

    monkeypatch.delenv("SPECDEPLOY_TRT_PLUGINS", raising=False)
    rc = cli.main(["build", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.engine")])
    assert rc == 2 and "--plugins is required" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# sidecar

DEVICE = {"name": "Orin (nvgpu)", "compute_capability": "8.7", "integrated": True}


@pytest.fixture
def built(tmp_path):
    """An 'engine', its plugin library and ONNX file, and a sidecar for them."""
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\x00plan" * 100)
    lib = tmp_path / "libspecdeploy_trt.so"
    lib.write_bytes(b"ELF plugin v1")
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"onnx")
    data = sidecar.make_sidecar(engine_path=engine, tensorrt_version="10.3.0.30", device=DEVICE, plugin_path=lib,
                                onnx_path=onnx_file, recipe={"tensorrt": {"precision": "fp16"}},
                                build={"fp16": True, "max_batch": 8})
    path = sidecar.write_sidecar(engine, data)
    return engine, lib, onnx_file, path


def test_sidecar_roundtrip(built):
    engine, lib, onnx_file, path = built
    assert path == engine.with_name("model.engine.json")
    data = json.loads(path.read_text())
    assert data["format"] == sidecar.FORMAT
    assert data["tensorrt_version"] == "10.3.0.30"
    assert data["device"] == DEVICE
    assert data["plugin_library"]["sha256"] == sidecar.file_sha256(lib)
    assert data["onnx"]["sha256"] == sidecar.file_sha256(onnx_file)
    assert data["engine"]["bytes"] == engine.stat().st_size
    assert data["recipe"] == {"tensorrt": {"precision": "fp16"}}
    got = sidecar.check_sidecar(engine, tensorrt_version="10.3.0.30", device=DEVICE, plugin_path=lib)
    assert got["build"]["max_batch"] == 8
    # another build number of the same release (x86 wheel vs JetPack deb) is the same release
    sidecar.check_sidecar(engine, tensorrt_version="10.3.0", device=DEVICE, plugin_path=lib)


def test_sidecar_other_tensorrt_version(built):
    engine, lib, _, _ = built
    with pytest.raises(sidecar.SidecarError, match=r"built with TensorRT 10\.3\.0\.30, this machine has TensorRT "
                       r"10\.13\.0\.35.*rebuild it"):
        sidecar.check_sidecar(engine, tensorrt_version="10.13.0.35", device=DEVICE, plugin_path=lib)
    with pytest.raises(sidecar.SidecarError, match="TensorRT 11.1.0"):
        sidecar.check_sidecar(engine, tensorrt_version="11.1.0", device=DEVICE, plugin_path=lib)


def test_sidecar_other_device(built):
    engine, lib, _, _ = built
    h100 = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    with pytest.raises(sidecar.SidecarError, match=r"compute capability 8\.7.*NVIDIA H100.*compute capability 9\.0"):
        sidecar.check_sidecar(engine, tensorrt_version="10.3.0", device=h100, plugin_path=lib)
    other_orin = {"name": "Orin NX", "compute_capability": "8.7"}
    with pytest.raises(sidecar.SidecarError, match="built on 'Orin \\(nvgpu\\)', this GPU is 'Orin NX'"):
        sidecar.check_sidecar(engine, tensorrt_version="10.3.0", device=other_orin, plugin_path=lib)
    sidecar.check_sidecar(engine, tensorrt_version="10.3.0", device=other_orin, plugin_path=lib,
                          allow_other_device=True)


def test_sidecar_plugin_hash_mismatch(built):
    engine, lib, _, _ = built
    lib.write_bytes(b"ELF plugin v2, rebuilt")
    with pytest.raises(sidecar.SidecarError, match="is not the one engine .* was built with .*plugin fields and "
                       "kernels must match"):
        sidecar.check_sidecar(engine, tensorrt_version="10.3.0", device=DEVICE, plugin_path=lib)
    # plugin_path=None skips the library check
    sidecar.check_sidecar(engine, tensorrt_version="10.3.0", device=DEVICE, plugin_path=None)
    with pytest.raises(sidecar.SidecarError, match="does not exist"):
        sidecar.check_sidecar(engine, tensorrt_version="10.3.0", device=DEVICE, plugin_path=lib.with_name("x.so"))


def test_sidecar_missing_or_broken(built, tmp_path):
    engine, lib, _, path = built
    lone = tmp_path / "other.engine"
    lone.write_bytes(b"plan")
    with pytest.raises(sidecar.SidecarError, match="no sidecar other.engine.json next to engine .*specdeploy build"):
        sidecar.check_sidecar(lone, tensorrt_version="10.3.0", device=DEVICE, plugin_path=lib)
    path.write_text("{not json")
    with pytest.raises(sidecar.SidecarError, match="unreadable"):
        sidecar.read_sidecar(engine)
    path.write_text(json.dumps({"format": 99}))
    with pytest.raises(sidecar.SidecarError, match="format 99"):
        sidecar.read_sidecar(engine)


def test_sidecar_engine_replaced(built):
    engine, lib, _, _ = built
    engine.write_bytes(b"another plan")
    with pytest.raises(sidecar.SidecarError, match="describes another engine file"):
        sidecar.check_sidecar(engine, tensorrt_version="10.3.0", device=DEVICE, plugin_path=lib)


# ------------------------------------------------------------------------------------------------
# compat shims on stand-in objects


def test_version_helpers():
    assert compat.version_tuple("10.3.0.30") == (10, 3, 0, 30)
    assert compat.version_tuple("11.0.0b1") == (11, 0, 0)
    assert compat.same_engine_version("10.3.0.30", "10.3.0")
    assert not compat.same_engine_version("10.3.0", "10.13.0")
    assert compat.trt_major(types.SimpleNamespace(__version__="11.1.0.106")) == 11


def test_device_memory_size_prefers_v2():
    class Engine10:  # TensorRT 10.1+: both, v2 is the one to report
        device_memory_size_v2 = 4096
        device_memory_size = 8192

    class Engine11:  # only v2
        device_memory_size_v2 = 1234

    class Engine100:  # TensorRT 10.0: only the old attribute
        device_memory_size = 777

    assert compat.device_memory_size(Engine10()) == (4096, "device_memory_size_v2")
    assert compat.device_memory_size(Engine11()) == (1234, "device_memory_size_v2")
    assert compat.device_memory_size(Engine100()) == (777, "device_memory_size")
    with pytest.raises(AttributeError):
        compat.device_memory_size(object())


class _Flags:
    def __init__(self):
        self.flags = []

    def set_flag(self, f):
        self.flags.append(f)


def test_fp16_flag_on_10_and_note_on_11():
    trt10 = types.SimpleNamespace(__version__="10.3.0", BuilderFlag=types.SimpleNamespace(FP16="FP16"))
    cfg = _Flags()
    assert compat.set_fp16(trt10, cfg, True) == [] and cfg.flags == ["FP16"]
    cfg = _Flags()
    assert compat.set_fp16(trt10, cfg, False) == [] and cfg.flags == []
    trt11 = types.SimpleNamespace(__version__="11.1.0", BuilderFlag=types.SimpleNamespace(TF32="TF32"))
    cfg = _Flags()
    notes = compat.set_fp16(trt11, cfg, True)
    assert cfg.flags == [] and len(notes) == 1 and "strongly typed" in notes[0]


def test_network_flags():
    trt10 = types.SimpleNamespace(__version__="10.3.0",
                                  NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=1))
    assert compat.network_flags(trt10, strongly_typed=False) == 0
    assert compat.network_flags(trt10, strongly_typed=True) == 2
    trt11 = types.SimpleNamespace(__version__="11.0.0",
                                  NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=0))
    assert compat.network_flags(trt11, strongly_typed=True) == 0  # always strongly typed there


class FakeRegistry:
    """IPluginRegistry stand-in: load_library registers the creators of a 'library'."""

    def __init__(self, provides=tuple(compat.SPECDEPLOY_PLUGINS), v3_lookup=True, handle=object()):
        self.creators: dict[tuple[str, str, str], object] = {}
        self.provides = provides
        self.handle = handle
        self.loads: list[str] = []
        if not v3_lookup:  # older bindings: get_plugin_creator only
            self.get_creator = None  # type: ignore[assignment]

    def get_creator(self, name, version, namespace=""):
        return self.creators.get((name, version, namespace))

    def get_plugin_creator(self, name, version, namespace=""):
        return self.creators.get((name, version, namespace))

    def load_library(self, path):
        self.loads.append(path)
        for n in self.provides:
            self.creators[(n, "1", "")] = f"creator:{n}"
        return self.handle


def _fake_trt_with(registry):
    return types.SimpleNamespace(__version__="10.3.0", get_plugin_registry=lambda: registry)


@pytest.fixture(autouse=False)
def fresh_loaded(monkeypatch):
    monkeypatch.setattr(compat, "_loaded", {})


def test_load_plugin_library_once_and_checks_creators(tmp_path, fresh_loaded):
    lib = tmp_path / "libspecdeploy_trt.so"
    lib.write_bytes(b"x")
    reg = FakeRegistry()
    trt = _fake_trt_with(reg)
    h = compat.load_plugin_library(trt, lib)
    assert h is reg.handle and reg.loads == [str(lib.resolve())]
    assert compat.load_plugin_library(trt, lib) is h and len(reg.loads) == 1  # once per process
    assert compat.find_creator(reg, "SpecConcat") == "creator:SpecConcat"
    assert compat.find_creator(reg, "SpecConv", "2") is None


def test_load_plugin_library_errors(tmp_path, fresh_loaded):
    with pytest.raises(compat.PluginLibraryError, match="does not exist: build it with"):
        compat.load_plugin_library(_fake_trt_with(FakeRegistry()), tmp_path / "missing.so")
    lib = tmp_path / "lib.so"
    lib.write_bytes(b"x")
    with pytest.raises(compat.PluginLibraryError, match="registered no creator for SpecToSpatial, SpecConcat"):
        compat.load_plugin_library(_fake_trt_with(FakeRegistry(provides=("SpecConv", "SpecPool"))), lib)
    compat._loaded.clear()
    with pytest.raises(compat.PluginLibraryError, match="must export getCreators and setLoggerFinder"):
        compat.load_plugin_library(_fake_trt_with(FakeRegistry(handle=None)), lib)


def test_load_plugin_library_skips_when_already_registered(tmp_path, fresh_loaded):
    lib = tmp_path / "lib.so"
    lib.write_bytes(b"x")
    reg = FakeRegistry()
    reg.load_library("elsewhere")  # another copy registered the creators already
    assert compat.load_plugin_library(_fake_trt_with(reg), lib) is None
    assert reg.loads == ["elsewhere"]


def test_find_creator_falls_back_to_v1_lookup():
    reg = FakeRegistry(v3_lookup=False)
    reg.creators[("SpecPool", "1", "")] = "c"
    assert compat.find_creator(reg, "SpecPool") == "c"

    class Raising:
        def get_creator(self, *a):
            raise RuntimeError("unknown plugin")

    assert compat.find_creator(Raising(), "SpecPool") is None


class _Err:
    def __init__(self, node, name, op, desc):
        self._v = (node, name, op, desc)

    def node(self):
        return self._v[0]

    def node_name(self):
        return self._v[1]

    def node_operator(self):
        return self._v[2]

    def desc(self):
        return self._v[3]

    def code(self):
        return "ErrorCode.UNSUPPORTED_NODE"


def test_parser_errors_name_the_node_and_the_missing_plugin(tmp_path):
    errs = [_Err(3, "features.0", "SpecConv",
                 "Plugin not found, are the plugin name, version, and namespace correct?"),
            _Err(7, "head.fc", "Gemm", "Assertion failed: inputs.size() == 3")]
    parser = types.SimpleNamespace(num_errors=2, get_error=lambda i: errs[i])
    got = compat.parser_errors(parser)
    assert got[0] == {"node": 3, "node_name": "features.0", "operator": "SpecConv",
                      "desc": "Plugin not found, are the plugin name, version, and namespace correct?",
                      "code": "ErrorCode.UNSUPPORTED_NODE"}
    text = compat.format_parser_errors(got, tmp_path / "lib.so")
    lines = text.splitlines()
    assert lines[0].startswith("plugin not found for node 3 'features.0' (SpecConv)")
    assert "--plugins" in lines[0] and "lib.so" in lines[0]
    assert lines[1] == "node 7 'head.fc' (Gemm): Assertion failed: inputs.size() == 3"


def test_parser_errors_with_older_accessors():
    class Old:  # a parser error without node_name/node_operator
        def node(self):
            return -1

        def desc(self):
            return "Failed to parse ONNX model"

    got = compat.parser_errors(types.SimpleNamespace(num_errors=1, get_error=lambda i: Old()))
    assert compat.format_parser_errors(got) == "graph: Failed to parse ONNX model"


# ------------------------------------------------------------------------------------------------
# recipe -> build options


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


def test_tactic_sources_on_10_and_11():
    class Cfg:
        mask = None

        def set_tactic_sources(self, m):
            self.mask = m

    trt10 = types.SimpleNamespace(__version__="10.3.0", TacticSource=types.SimpleNamespace(
        CUBLAS=0, CUBLAS_LT=1, CUDNN=2, EDGE_MASK_CONVOLUTIONS=3, JIT_CONVOLUTIONS=4))
    cfg = Cfg()
    assert compat.set_tactic_sources(trt10, cfg, ["CUDNN", "JIT_CONVOLUTIONS"]) == [] and cfg.mask == 0b10100
    trt11 = types.SimpleNamespace(__version__="11.1.0", TacticSource=types.SimpleNamespace(
        EDGE_MASK_CONVOLUTIONS=3, JIT_CONVOLUTIONS=4))
    cfg = Cfg()
    notes = compat.set_tactic_sources(trt11, cfg, ["CUDNN", "EDGE_MASK_CONVOLUTIONS"])
    assert cfg.mask == 0b1000 and len(notes) == 1 and "CUDNN does not exist in TensorRT 11.1.0" in notes[0]
    cfg = Cfg()
    assert compat.set_tactic_sources(trt10, cfg, []) == [] and cfg.mask is None


def test_input_profiles():
    opts = BuildOptions(max_batch=16, opt_batch=4)
    assert input_profile("input", (-1, 1, 28, 28), opts) == ((1, 1, 28, 28), (4, 1, 28, 28), (16, 1, 28, 28))
    assert input_profile("input", (1, 1, 28, 28), BuildOptions()) is None
    assert input_profile("input", (8, 3, 32, 32), BuildOptions(max_batch=8)) is None
    with pytest.raises(EngineBuildError, match="fixed batch of 1 .* max_batch = 8"):
        input_profile("input", (1, 3, 32, 32), BuildOptions(max_batch=8))
    with pytest.raises(EngineBuildError, match=r"dynamic dimensions \[0, 2, 3\].*only the batch"):
        input_profile("input", (-1, 3, -1, -1), BuildOptions(max_batch=8))


# ------------------------------------------------------------------------------------------------
# probes on recorded Jetson text


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


# ------------------------------------------------------------------------------------------------
# runner helpers, cuda-python wrapper


def test_shape_outside_profile_is_a_clear_error():
    check_shape_in_profile("input", (4, 1, 28, 28), (1, 1, 28, 28), (8, 1, 28, 28))
    with pytest.raises(InputShapeError, match=r"shape \[16, 1, 28, 28\], outside the engine's optimization "
                       r"profile .*batch must be in 1..8 \(rebuild with --max-batch 16"):
        check_shape_in_profile("input", (16, 1, 28, 28), (1, 1, 28, 28), (8, 1, 28, 28))
    with pytest.raises(InputShapeError, match=r"dimension\(s\) \[2, 3\]"):
        check_shape_in_profile("input", (4, 1, 32, 32), (1, 1, 28, 28), (8, 1, 28, 28))
    with pytest.raises(InputShapeError, match="rank 3"):
        check_shape_in_profile("input", (1, 28, 28), (1, 1, 28, 28), (8, 1, 28, 28))


class _CudaErr(int):
    def __str__(self):
        return f"cudaError_t({int(self)})"


def test_cuda_wrapper_checks_and_decodes():
    prop = types.SimpleNamespace(name=b"Orin\x00\x00junk", major=8, minor=7, totalGlobalMem=7 << 30, integrated=1)
    rt = types.SimpleNamespace(
        cudaGetDevice=lambda: (_CudaErr(0), 0),
        cudaGetDeviceProperties=lambda d: (_CudaErr(0), prop),
        cudaMemGetInfo=lambda: (_CudaErr(0), 100, 200),
        cudaMalloc=lambda n: (_CudaErr(2),),
        cudaGetErrorString=lambda e: (_CudaErr(0), b"out of memory"),
    )
    c = Cuda(rt)
    assert c.device_info() == {"index": 0, "name": "Orin", "compute_capability": "8.7", "total_memory": 7 << 30,
                               "integrated": True}
    assert c.mem_get_info() == (100, 200)
    with pytest.raises(CudaError, match=r"cudaMalloc\(64\) failed: out of memory"):
        c.malloc(64)
    assert handle_int(5) == 5
    assert handle_int(types.SimpleNamespace(getPtr=lambda: 77)) == 77


def test_import_cudart_names_both_layouts():
    with pytest.raises(compat.TensorRTUnavailableError, match="cuda-python not found"):
        import_cudart(("specdeploy_no_such.bindings.runtime", "specdeploy_no_such.cudart"))


# ------------------------------------------------------------------------------------------------
# builder and runner through a stand-in `tensorrt` module


class _Enum:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


def make_fake_trt(version="10.3.0.30", *, parse_ok=True, parse_errors=()):
    """A minimal `tensorrt` module: enough API for build_engine and TrtRunner, no GPU.

    The 'engine' computes logits = input.sum over (C, H, W) * [1, 2, ..., 10] on host memory, and its
    plan is JSON describing its IO tensors.
    """
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.float32, trt.int32 = _Enum("DataType.FLOAT"), _Enum("DataType.INT32")
    trt.DataType = types.SimpleNamespace(FLOAT=trt.float32, INT32=trt.int32)
    trt.nptype = lambda dt: {trt.float32: np.float32, trt.int32: np.int32}[dt]
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16")
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)

    class ILogger:
        Severity = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self, *a):
            pass

    trt.ILogger = ILogger

    class Logger(ILogger):
        WARNING, VERBOSE = 2, 4

    trt.Logger = Logger
    registry = FakeRegistry()
    trt.get_plugin_registry = lambda: registry
    trt.registry = registry
    trt.built = {}

    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class Network:
        num_inputs = 1

        def __init__(self, flags):
            self.flags = flags
            self.inputs = [Tensor("input", (-1, 1, 8, 8))]

        def get_input(self, i):
            return self.inputs[i]

    class Parser:
        def __init__(self, network, logger):
            self.num_errors = 0 if parse_ok else len(parse_errors)

        def parse_from_file(self, path):
            trt.built["parsed"] = path
            return parse_ok

        def get_error(self, i):
            return parse_errors[i]

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = (lo, opt, hi)

    class Config(_Flags):
        def set_memory_pool_limit(self, pool, size):
            trt.built["workspace"] = size

        def add_optimization_profile(self, p):
            trt.built["profile"] = p.shapes

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            return Network(flags)

        def create_builder_config(self):
            trt.built["config"] = Config()
            return trt.built["config"]

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            prof = trt.built.get("profile", {}).get("input")
            plan = {"min": list(prof[0]), "opt": list(prof[1]), "max": list(prof[2])}
            return json.dumps(plan).encode()

    trt.Builder, trt.OnnxParser = Builder, Parser

    class Engine:
        def __init__(self, plan):
            self.p = json.loads(plan)
            self.num_io_tensors = 2
            self.device_memory_size_v2 = 3 << 20

        def get_tensor_name(self, i):
            return ["input", "logits"][i]

        def get_tensor_mode(self, n):
            return "INPUT" if n == "input" else "OUTPUT"

        def get_tensor_dtype(self, n):
            return trt.float32

        def get_tensor_shape(self, n):
            return (-1, 1, 8, 8) if n == "input" else (-1, 10)

        def get_tensor_profile_shape(self, n, profile):
            return self.p["min"], self.p["opt"], self.p["max"]

        def create_execution_context(self):
            trt.cuda.used += 1 << 20
            return Context(self)

    class Context:
        def __init__(self, engine):
            self.shape, self.addr = None, {}

        def set_input_shape(self, n, shape):
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, n):
            return self.shape if n == "input" else (self.shape[0], 10)

        def set_tensor_address(self, n, ptr):
            self.addr[n] = ptr

        def execute_async_v3(self, stream):
            b = self.shape[0]
            x = np.ctypeslib.as_array((ctypes.c_float * int(np.prod(self.shape))).from_address(self.addr["input"]))
            y = np.ctypeslib.as_array((ctypes.c_float * (b * 10)).from_address(self.addr["logits"]))
            y[:] = (x.reshape(b, -1).sum(axis=1)[:, None] * np.arange(1, 11, dtype=np.float32)).ravel()
            trt.cuda.used += 4096  # lazily allocated scratch on the first run
            return True

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            trt.cuda.used += 2 << 20
            return Engine(plan)

    trt.Runtime = Runtime
    return trt


class FakeCuda:
    """Cuda stand-in: 'device' buffers are host numpy buffers, copies are memmove."""

    def __init__(self, device=None):
        self.used = 0
        self.bufs: dict[int, np.ndarray] = {}
        self.freed: list[int] = []
        self.device = device or dict(DEVICE)

    def device_info(self):
        return dict(self.device)

    def mem_get_info(self):
        return (8 << 30) - self.used, 8 << 30

    def malloc(self, n):
        b = np.zeros(max(int(n), 1), dtype=np.uint8)
        self.bufs[b.ctypes.data] = b
        self.used += b.nbytes
        return b.ctypes.data

    def free(self, ptr):
        self.freed.append(ptr)
        self.used -= self.bufs.pop(ptr).nbytes

    def memcpy_htod_async(self, dst, src, n, stream):
        ctypes.memmove(dst, src, n)

    def memcpy_dtoh_async(self, dst, src, n, stream):
        ctypes.memmove(dst, src, n)

    def stream_create(self):
        return 42

    def stream_synchronize(self, s):
        pass

    def stream_destroy(self, s):
        pass


@pytest.fixture
def fake_trt(monkeypatch, fresh_loaded):
    trt = make_fake_trt()
    trt.cuda = FakeCuda()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


def test_build_engine_writes_engine_and_sidecar(fake_trt, tmp_path):
    from specdeploy.trt.builder import build_engine

    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"onnx bytes")
    lib = tmp_path / "libspecdeploy_trt.so"
    lib.write_bytes(b"plugin")
    out = build_engine(onnx_file, tmp_path / "out" / "m.engine", lib, fp16=True, workspace_mib=64, max_batch=None,
                       recipe={"export": {"dynamic_batch": True, "max_batch": 8}}, device_info=DEVICE)
    assert out == tmp_path / "out" / "m.engine" and out.is_file()
    assert fake_trt.built["workspace"] == 64 << 20 and fake_trt.built["config"].flags == ["FP16"]
    assert fake_trt.built["profile"] == {"input": ((1, 1, 8, 8), (8, 1, 8, 8), (8, 1, 8, 8))}
    assert fake_trt.registry.loads == [str(lib.resolve())]
    side = sidecar.read_sidecar(out)
    assert side["tensorrt_version"] == "10.3.0.30" and side["device"]["compute_capability"] == "8.7"
    assert side["build"]["profile_batch"] == [1, 8, 8] and side["build"]["fp16"] is True
    assert side["recipe"] == {"export": {"dynamic_batch": True, "max_batch": 8}}
    assert side["plugin_library"]["sha256"] == sidecar.file_sha256(lib)
    assert side["build"]["plan_bytes"] == out.stat().st_size


def test_build_engine_uses_onnx_max_batch_metadata(fake_trt, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from specdeploy.trt.builder import build_engine

    g = helper.make_graph([helper.make_node("Relu", ["input"], ["logits"])], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1, 8, 8])])
    m = helper.make_model(g)
    helper.set_model_props(m, {"specdeploy.max_batch": "12"})
    onnx_file = tmp_path / "m.onnx"
    onnx.save(m, str(onnx_file))
    lib = tmp_path / "lib.so"
    lib.write_bytes(b"plugin")
    build_engine(onnx_file, tmp_path / "m.engine", lib, device_info=DEVICE)
    assert fake_trt.built["profile"]["input"][2] == (12, 1, 8, 8)


def test_build_engine_reports_every_parser_error(monkeypatch, tmp_path, fresh_loaded):
    errs = (_Err(2, "features.0", "SpecConv", "Plugin not found, are the plugin name, version, and namespace "
                 "correct?"), _Err(5, "features.3", "SpecPool", "Plugin not found, are the plugin name, version, "
                                   "and namespace correct?"))
    trt = make_fake_trt(parse_ok=False, parse_errors=errs)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    from specdeploy.trt.builder import build_engine

    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"x")
    lib = tmp_path / "lib.so"
    lib.write_bytes(b"plugin")
    with pytest.raises(EngineBuildError) as ei:
        build_engine(onnx_file, tmp_path / "m.engine", lib, device_info=DEVICE)
    msg = str(ei.value)
    assert "plugin not found for node 2 'features.0' (SpecConv)" in msg
    assert "plugin not found for node 5 'features.3' (SpecPool)" in msg
    assert not (tmp_path / "m.engine").exists()


def _built_engine(fake_trt, tmp_path, max_batch=4):
    from specdeploy.trt.builder import build_engine

    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"x")
    lib = tmp_path / "lib.so"
    lib.write_bytes(b"plugin")
    return build_engine(onnx_file, tmp_path / "m.engine", lib, max_batch=max_batch, device_info=DEVICE), lib


def test_runner_runs_and_reports_memory(fake_trt, tmp_path):
    from specdeploy.trt.runner import TrtRunner

    engine, lib = _built_engine(fake_trt, tmp_path)
    x = np.arange(3 * 64, dtype=np.float64).reshape(3, 1, 8, 8)  # float64 is converted to the engine's fp32
    with TrtRunner(engine, lib, cuda=fake_trt.cuda) as r:
        assert r.inputs == ["input"] and r.outputs == ["logits"]
        out = r.run({"input": x})
        expect = x.reshape(3, -1).sum(axis=1)[:, None] * np.arange(1, 11)
        np.testing.assert_allclose(out["logits"], expect, rtol=1e-6)
        out2 = r.run({"input": x[:1]})
        np.testing.assert_allclose(out2["logits"], expect[:1], rtol=1e-6)
        m = r.memory_figures()
        assert m["device_memory_size"] == 3 << 20 and m["device_memory_size_attribute"] == "device_memory_size_v2"
        assert m["plan_bytes"] == engine.stat().st_size
        d = m["cuda_mem_get_info_delta"]
        assert d["engine_load"] == 2 << 20 and d["context_creation"] == 1 << 20
        assert d["first_inference"] >= 4096  # io buffers + scratch, measured around the first run only
        assert m["io_buffer_bytes"] > 0
        with pytest.raises(InputShapeError, match=r"batch must be in 1..4 \(rebuild with --max-batch 9"):
            r.run({"input": np.zeros((9, 1, 8, 8), np.float32)})
        with pytest.raises(InputShapeError, match=r"missing \['input'\], unknown \['x'\]"):
            r.run({"x": x})
        with pytest.raises(InputShapeError, match="dtype"):
            r.run({"input": np.zeros((1, 1, 8, 8), dtype=np.complex64)})
    assert fake_trt.cuda.bufs == {}  # every buffer freed on close


def test_runner_checks_the_sidecar_before_deserializing(fake_trt, tmp_path):
    from specdeploy.trt.runner import TrtRunner

    engine, lib = _built_engine(fake_trt, tmp_path)
    other = FakeCuda(device={"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "integrated": False})
    with pytest.raises(sidecar.SidecarError, match="compute capability 9.0"):
        TrtRunner(engine, lib, cuda=other)
    assert other.used == 0  # nothing was deserialized
    lib.write_bytes(b"another plugin build")
    with pytest.raises(sidecar.SidecarError, match="plugin fields and kernels must match"):
        TrtRunner(engine, lib, cuda=fake_trt.cuda)
    fake_trt.__version__ = "10.13.0.35"
    with pytest.raises(sidecar.SidecarError, match="built with TensorRT 10.3.0.30"):
        TrtRunner(engine, None, cuda=fake_trt.cuda)


def _tiny_spatial_onnx(path: Path, max_batch: int = 4) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((64, 10), np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], name="flatten"),
         helper.make_node("MatMul", ["flat", "w"], ["logits"], name="fc")], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], initializer=[w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    helper.set_model_props(m, {"specdeploy.max_batch": str(max_batch)})
    onnx.save(m, str(path))
    return path


def test_runtime_backend_tensorrt_builds_caches_and_runs(fake_trt, tmp_path, monkeypatch):
    from specdeploy import runtime
    from specdeploy.trt import cudart

    monkeypatch.setattr(cudart, "Cuda", lambda *a, **k: fake_trt.cuda)
    model = _tiny_spatial_onnx(tmp_path / "tiny.onnx")
    lib = tmp_path / "lib.so"
    lib.write_bytes(b"plugin")
    sess = runtime.load(model, "tensorrt", plugins=lib)
    assert sess.backend == "tensorrt"
    assert sess.engine_path.name == "tiny.trt10.3.0.sm87.engine" and sess.engine_path.is_file()
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    logits = sess.run(x)
    np.testing.assert_allclose(logits, x.reshape(2, -1).sum(1)[:, None] * np.arange(1, 11), rtol=1e-5)
    assert sess.last_overflowed.tolist() == [False, False]
    mem = sess.memory()
    assert mem["tensorrt"]["device_memory_size"] == 3 << 20 and mem["overflow_flags_available"]
    sess.close()
    # the engine is reused while its sidecar matches (no second build), rebuilt when the ONNX changes
    loads = len(fake_trt.registry.loads)
    mtime = sess.engine_path.stat().st_mtime_ns
    sess2 = runtime.load(model, "tensorrt", plugins=lib)
    assert sess2.engine_path.stat().st_mtime_ns == mtime
    sess2.close()
    _tiny_spatial_onnx(model, max_batch=6)
    sess3 = runtime.load(model, "tensorrt", plugins=lib)
    assert sidecar.read_sidecar(sess3.engine_path)["build"]["profile_batch"][2] == 6
    sess3.close()
    assert len(fake_trt.registry.loads) == loads  # the plugin library is loaded once per process


def test_runtime_backend_tensorrt_unavailable_without_tensorrt(no_tensorrt, tmp_path):
    from specdeploy import runtime

    model = _tiny_spatial_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(runtime.BackendUnavailableError, match="TensorRT Python package not found"):
        runtime.load(model, "tensorrt")


def test_cli_build_prints_a_summary_and_needs_no_plugins_for_a_twin(fake_trt, tmp_path, monkeypatch, capsys):
    from specdeploy import cli
    from specdeploy.trt import cudart

    monkeypatch.delenv("SPECDEPLOY_TRT_PLUGINS", raising=False)
    monkeypatch.setattr(cudart, "Cuda", lambda *a, **k: fake_trt.cuda)
    model = _tiny_spatial_onnx(tmp_path / "twin.onnx", max_batch=8)
    rc = cli.main(["build", str(model), "-o", str(tmp_path / "twin.engine"), "--fp16", "--workspace", "128"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[0].startswith(f"engine  {tmp_path / 'twin.engine'}  ") and " bytes  built in " in out[0]
    assert out[1].strip() == ("TensorRT 10.3.0.30 on Orin (nvgpu) (sm_87), fp16, workspace 128 MiB, "
                              "batch 1..8 (opt 8)")
    assert out[2].strip() == "plugins none (no specdeploy ops)"
    assert out[3] == f"sidecar {tmp_path / 'twin.engine.json'}"
    data = sidecar.read_sidecar(tmp_path / "twin.engine")
    assert data["plugin_library"] is None
    # an engine built without plugins passes the check whatever library the runner is given
    other = tmp_path / "lib.so"
    other.write_bytes(b"x")
    sidecar.check_sidecar(tmp_path / "twin.engine", tensorrt_version="10.3.0", device=DEVICE, plugin_path=other)
    assert fake_trt.registry.loads == []


def test_runtime_backend_tensorrt_twin_without_plugins(fake_trt, tmp_path, monkeypatch):
    from specdeploy import runtime
    from specdeploy.trt import cudart

    monkeypatch.delenv("SPECDEPLOY_TRT_PLUGINS", raising=False)
    monkeypatch.setenv("SPECDEPLOY_TRT_FP16", "1")
    monkeypatch.setattr(cudart, "Cuda", lambda *a, **k: fake_trt.cuda)
    model = _tiny_spatial_onnx(tmp_path / "twin.onnx")
    sess = runtime.load(model, "tensorrt")
    assert sess.engine_path.name == "twin.trt10.3.0.sm87.fp16.engine"
    assert fake_trt.built["config"].flags == ["FP16"]
    sess.run(np.zeros((1, 1, 8, 8), np.float32))
    sess.close()
