"""Runtime backend "tensorrt" through the stand-in TensorRT: builds, caches and reuses engines, runs a
twin without plugins, and is unavailable (with the reason) without TensorRT."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.fake_tensorrt import tiny_spatial_onnx
from specdeploy.trt import sidecar


def test_runtime_backend_tensorrt_builds_caches_and_runs(fake_trt, tmp_path, monkeypatch):
    from specdeploy import runtime
    from specdeploy.trt import cudart

    monkeypatch.setattr(cudart, "Cuda", lambda *a, **k: fake_trt.cuda)
    model = tiny_spatial_onnx(tmp_path / "tiny.onnx")
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
    tiny_spatial_onnx(model, max_batch=6)
    sess3 = runtime.load(model, "tensorrt", plugins=lib)
    assert sidecar.read_sidecar(sess3.engine_path)["build"]["profile_batch"][2] == 6
    sess3.close()
    assert len(fake_trt.registry.loads) == loads  # the plugin library is loaded once per process


def test_runtime_backend_tensorrt_unavailable_without_tensorrt(no_tensorrt, tmp_path):
    from specdeploy import runtime

    model = tiny_spatial_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(runtime.BackendUnavailableError, match="TensorRT Python package not found"):
        runtime.load(model, "tensorrt")


def test_runtime_backend_tensorrt_twin_without_plugins(fake_trt, tmp_path, monkeypatch):
    from specdeploy import runtime
    from specdeploy.trt import cudart

    monkeypatch.delenv("SPECDEPLOY_TRT_PLUGINS", raising=False)
    monkeypatch.setenv("SPECDEPLOY_TRT_FP16", "1")
    monkeypatch.setattr(cudart, "Cuda", lambda *a, **k: fake_trt.cuda)
    model = tiny_spatial_onnx(tmp_path / "twin.onnx")
    sess = runtime.load(model, "tensorrt")
    assert sess.engine_path.name == "twin.trt10.3.0.sm87.fp16.engine"
    assert fake_trt.built["config"].flags == ["FP16"]
    sess.run(np.zeros((1, 1, 8, 8), np.float32))
    sess.close()
