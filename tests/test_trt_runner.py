"""TrtRunner through the stand-in TensorRT: feeds, outputs, memory figures, shape checks against the
profile, and the sidecar check before anything is deserialized."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.fake_tensorrt import DEVICE, FakeCuda
from specdeploy.trt import sidecar
from specdeploy.trt.runner import InputShapeError, check_shape_in_profile


def test_shape_outside_profile_is_a_clear_error():
    check_shape_in_profile("input", (4, 1, 28, 28), (1, 1, 28, 28), (8, 1, 28, 28))
    with pytest.raises(InputShapeError, match=r"shape \[16, 1, 28, 28\], outside the engine's optimization "
                       r"profile .*batch must be in 1..8 \(rebuild with --max-batch 16"):
        check_shape_in_profile("input", (16, 1, 28, 28), (1, 1, 28, 28), (8, 1, 28, 28))
    with pytest.raises(InputShapeError, match=r"dimension\(s\) \[2, 3\]"):
        check_shape_in_profile("input", (4, 1, 32, 32), (1, 1, 28, 28), (8, 1, 28, 28))
    with pytest.raises(InputShapeError, match="rank 3"):
        check_shape_in_profile("input", (1, 28, 28), (1, 1, 28, 28), (8, 1, 28, 28))


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
