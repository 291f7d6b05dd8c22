"""The engine sidecar (<engine>.json): what it records, and the error for each mismatch it catches."""

from __future__ import annotations

import json

import pytest

from helpers.fake_tensorrt import DEVICE
from specdeploy.trt import sidecar


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
