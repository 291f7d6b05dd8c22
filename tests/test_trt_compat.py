"""The TensorRT 10/11 shims of specdeploy.trt.compat on stand-in objects: versions, flags, tactic
sources, plugin library loading and creator lookup, parser errors."""

from __future__ import annotations

import types

import pytest

from helpers.fake_tensorrt import FakeRegistry, Flags, ParserError, fake_trt_with
from specdeploy.trt import compat


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


def test_fp16_flag_on_10_and_note_on_11():
    trt10 = types.SimpleNamespace(__version__="10.3.0", BuilderFlag=types.SimpleNamespace(FP16="FP16"))
    cfg = Flags()
    assert compat.set_fp16(trt10, cfg, True) == [] and cfg.flags == ["FP16"]
    cfg = Flags()
    assert compat.set_fp16(trt10, cfg, False) == [] and cfg.flags == []
    trt11 = types.SimpleNamespace(__version__="11.1.0", BuilderFlag=types.SimpleNamespace(TF32="TF32"))
    cfg = Flags()
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


def test_load_plugin_library_once_and_checks_creators(tmp_path, fresh_loaded):
    lib = tmp_path / "libspecdeploy_trt.so"
    lib.write_bytes(b"x")
    reg = FakeRegistry()
    trt = fake_trt_with(reg)
    h = compat.load_plugin_library(trt, lib)
    assert h is reg.handle and reg.loads == [str(lib.resolve())]
    assert compat.load_plugin_library(trt, lib) is h and len(reg.loads) == 1  # once per process
    assert compat.find_creator(reg, "SpecConcat") == "creator:SpecConcat"
    assert compat.find_creator(reg, "SpecConv", "2") is None


def test_first_load_looks_up_no_absent_creator(tmp_path, fresh_loaded):
    """Issue 13, 7(e): TensorRT logs an error per lookup of an absent creator; asking for our four
    before the library was loaded logged up to 8 errors on every first load."""
    lib = tmp_path / "libspecdeploy_trt.so"
    lib.write_bytes(b"x")
    reg = FakeRegistry()
    compat.load_plugin_library(fake_trt_with(reg), lib)
    assert reg.loads == [str(lib.resolve())]
    assert reg.missed_lookups == 0


def test_load_plugin_library_errors(tmp_path, fresh_loaded):
    with pytest.raises(compat.PluginLibraryError, match="does not exist: build it with"):
        compat.load_plugin_library(fake_trt_with(FakeRegistry()), tmp_path / "missing.so")
    lib = tmp_path / "lib.so"
    lib.write_bytes(b"x")
    with pytest.raises(compat.PluginLibraryError, match="registered no creator for SpecToSpatial, SpecConcat"):
        compat.load_plugin_library(fake_trt_with(FakeRegistry(provides=("SpecConv", "SpecPool"))), lib)
    compat._loaded.clear()
    with pytest.raises(compat.PluginLibraryError, match="must export getCreators and setLoggerFinder"):
        compat.load_plugin_library(fake_trt_with(FakeRegistry(handle=None)), lib)


def test_load_plugin_library_skips_when_already_registered(tmp_path, fresh_loaded):
    lib = tmp_path / "lib.so"
    lib.write_bytes(b"x")
    reg = FakeRegistry()
    reg.load_library("elsewhere")  # another copy registered the creators already
    assert compat.load_plugin_library(fake_trt_with(reg), lib) is None
    assert reg.loads == ["elsewhere"]


def test_find_creator_falls_back_to_v1_lookup():
    reg = FakeRegistry(v3_lookup=False)
    reg.creators[("SpecPool", "1", "")] = "c"
    assert compat.find_creator(reg, "SpecPool") == "c"

    class Raising:
        def get_creator(self, *a):
            raise RuntimeError("unknown plugin")

    assert compat.find_creator(Raising(), "SpecPool") is None


def test_parser_errors_name_the_node_and_the_missing_plugin(tmp_path):
    errs = [ParserError(3, "features.0", "SpecConv",
                 "Plugin not found, are the plugin name, version, and namespace correct?"),
            ParserError(7, "head.fc", "Gemm", "Assertion failed: inputs.size() == 3")]
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
