"""build_engine through the stand-in TensorRT: engine and sidecar written, profile from the recipe or
the ONNX metadata, every parser error reported."""

from __future__ import annotations

import sys

import pytest

from helpers.fake_tensorrt import DEVICE, ParserError, make_fake_trt
from specdeploy.trt import sidecar
from specdeploy.trt.builder import EngineBuildError


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
    errs = (ParserError(2, "features.0", "SpecConv", "Plugin not found, are the plugin name, version, and namespace "
                 "correct?"), ParserError(5, "features.3", "SpecPool", "Plugin not found, are the plugin name, version, "
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
