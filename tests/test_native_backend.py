"""Backend "native-host": the graph executor of the cuda backend on the host build of the kernels.

Why this runs in CI: ``specdeploy.native.executor`` is one executor for backends "cuda"
(libspecdeploy_kernels.so, torch CUDA tensors) and "native-host" (libspecdeploy_host.so, numpy
arrays). The host library has the same C ABI, validation, workspace arithmetic and op pipeline, so
real exported models (LeNet-5, VGG16 at width 0.125, DenseNet depth 10 growth 4, spectral and twin)
run end to end through the C++ op code and every line of the executor here; only the CUDA kernels and
the allocator figures are left to tests/test_native_backend_gpu.py.

Comparison with the reference backend (numpy, float64 inside the spectral ops):
* logits within 1e-4 (fp32 values) / 1e-3 (fp16 values) of the largest reference logit;
* the overflow flags identical per sample, also when tiny capacities force overflow;
* the last packed tensor's header (nnz, overflowed, beta_used) identical word for word.
The executor's own byte account must equal the memory planner's live bytes step by step.

The host library is built once per session with cmake + g++ (a failing build fails, never skips).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="the native backends use torch tensors as buffers")

from helpers.native_backend import (  # noqa: E402  (shared with test_native_backend_gpu.py)
    RTOL,
    SMALL,
    VALUE_DTYPES,
    _x,
    assert_logits_close,
    assert_same_headers,
    assert_steps_follow_plan,
    export_overflowing,
    export_suite,
    have_data,
    reference_tensors,
)
from specdeploy import bench, memory, native, runtime  # noqa: E402
from specdeploy.runtime.errors import BackendUnavailableError, ModelError  # noqa: E402

# ------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(autouse=True)
def _host_lib_env(monkeypatch: pytest.MonkeyPatch, host_lib_path: Path) -> None:
    """runtime.load(..., "native-host") and the CLI find the library (tests/conftest.py) without options."""
    monkeypatch.setenv("SPECDEPLOY_HOST_LIB", str(host_lib_path))


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    return export_suite(tmp_path_factory.mktemp("native_backend_models"))


# ------------------------------------------------------------------------------------------------
# parity with the reference backend


@pytest.mark.parametrize("value_dtype", VALUE_DTYPES)
@pytest.mark.parametrize("name", list(SMALL))
def test_spectral_matches_reference(models: dict, test_images: dict, name: str, value_dtype: str) -> None:
    path = models[(name, value_dtype)]
    x = _x(models, test_images, name)
    ref = runtime.load(path, "reference")
    nh = runtime.load(path, "native-host")
    assert nh.backend == "native-host" and nh.input_shape[1:] == ref.input_shape[1:]
    want = ref.run(x)
    got = nh.run(x)
    assert_logits_close(got, want, RTOL[value_dtype], f"{name} {value_dtype}")
    np.testing.assert_array_equal(nh.last_overflowed, ref.last_overflowed)
    taps = list(nh.info.overflow_taps)
    assert taps, "a spectral model has overflow taps"
    got_t = nh.run_tensors(x, taps)
    ref_t = reference_tensors(path, x, taps)
    for t in taps:
        assert got_t[t].dtype == np.int32 and got_t[t].shape == ref_t[t].shape
        assert_same_headers(got_t[t], ref_t[t], f"{name} {value_dtype} tap {t}")


TOY_VARIANTS = [dict(), dict(value_dtype="fp16"), dict(concat=True), dict(bias=False),
                dict(concat=True, value_dtype="fp16", bias=False, in_channels=3, channels=(3, 5))]


@pytest.mark.parametrize("kw", TOY_VARIANTS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_toy_graphs_match_reference(kw: dict) -> None:
    """The hand-built graphs of runtime.toy (no bias, SpecConcat, fp16): independent of the exporter."""
    from specdeploy.runtime import toy

    m = toy.toy_spectral(**kw)
    x = np.random.default_rng(1).standard_normal((5, kw.get("in_channels", 1), 8, 8)).astype(np.float32)
    ref = runtime.load(m, "reference")
    nh = runtime.load(m, "native-host")
    assert_logits_close(nh.run(x), ref.run(x), RTOL[kw.get("value_dtype", "fp32")], str(kw))
    np.testing.assert_array_equal(nh.last_overflowed, ref.last_overflowed)
    assert_logits_close(runtime.load(toy.toy_spatial(), "native-host").run(x[:, :1]),
                        runtime.load(toy.toy_spatial(), "reference").run(x[:, :1]), 1e-5, "toy twin")


def _standard_ops_graph() -> onnx.ModelProto:
    """Every standard op the executor implements, with the attribute forms the exports do not use
    (asymmetric pads, Gemm alpha/beta, Clip bounds as inputs, Squeeze/Unsqueeze axes as inputs)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)

    def init(name: str, a: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(a, name)

    f32 = np.float32
    inits = [
        init("w1", rng.standard_normal((4, 2, 3, 3)).astype(f32)), init("b1", rng.standard_normal(4).astype(f32)),
        init("w2", rng.standard_normal((3, 2, 1, 1)).astype(f32)),
        init("bias", rng.standard_normal((1, 4, 1, 1)).astype(f32)),
        init("lo", np.array(-0.5, f32)), init("hi", np.array(1.5, f32)),
        init("shape", np.array([0, -1], np.int64)), init("ax", np.array([1], np.int64)),
        init("wg", rng.standard_normal((5, 7)).astype(f32)), init("cg", rng.standard_normal(5).astype(f32)),
    ]
    N = helper.make_node
    nodes = [
        N("Conv", ["input", "w1", "b1"], ["c1"], name="conv_asym", pads=[1, 0, 1, 2], kernel_shape=[3, 3]),
        N("Add", ["c1", "bias"], ["a1"], name="add_const"),  # fused in place (after Conv)
        N("Clip", ["a1", "lo", "hi"], ["k1"], name="clip"),  # fused in place (after a fused op)
        N("MaxPool", ["k1"], ["p1"], name="pool_pad", kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1]),
        N("Conv", ["input", "w2"], ["c2"], name="conv1x1"),
        N("LeakyRelu", ["c2"], ["r2"], name="leaky", alpha=0.2),
        N("MaxPool", ["r2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        N("Concat", ["p1", "p2"], ["cat"], name="concat", axis=1),
        N("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        N("Reshape", ["gap", "shape"], ["flat"], name="reshape"),
        N("Unsqueeze", ["flat", "ax"], ["u"], name="unsq"),
        N("Squeeze", ["u", "ax"], ["s"], name="sq"),
        N("Identity", ["s"], ["i"], name="ident"),
        N("Gemm", ["i", "wg", "cg"], ["g"], name="gemm", alpha=0.5, beta=2.0, transB=1),
        N("Relu", ["g"], ["logits"], name="relu_out"),
    ]
    graph = helper.make_graph(nodes, "std_ops", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                              ["batch", 2, 9, 9])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    return m


def test_standard_ops_graph_matches_reference() -> None:
    m = _standard_ops_graph()
    x = np.random.default_rng(4).standard_normal((3, 2, 9, 9)).astype(np.float32)
    want = runtime.load(m, "reference").run(x)
    s = runtime.load(m, "native-host")
    assert_logits_close(s.run(x), want, 1e-5, "standard ops")
    assert_steps_follow_plan(s, memory.plan(m, batch=3), "standard ops")
    assert_logits_close(runtime.load(m, "native-host", fp16=True).run(x), want, 2e-2, "standard ops fp16")


@pytest.mark.parametrize("name", list(SMALL))
def test_twin_matches_reference(models: dict, test_images: dict, name: str) -> None:
    path = models[(name, "twin")]
    x = _x(models, test_images, name)
    want = runtime.load(path, "reference").run(x)
    nh = runtime.load(path, "native-host")
    assert_logits_close(nh.run(x), want, 1e-5, f"{name} twin")
    assert not nh.last_overflowed.any() and nh.info.overflow_taps == []
    # fp16 standard ops (the twin at its best precision): close, not exact
    assert_logits_close(runtime.load(path, "native-host", fp16=True).run(x), want, 2e-2, f"{name} twin fp16 ops")


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_torch_device_runs_the_same_graphs(models: dict, test_images: dict, host_lib_path: Path, fp16: bool) -> None:
    """The cuda backend's device (torch tensors, TorchKernels) on CPU tensors with the host library:
    its code runs in CI, not only on a GPU, and agrees with the numpy device step by step."""
    from specdeploy.native import cuda, executor

    lib = native.load("host", host_lib_path)
    for key in (("vgg16", "fp16"), ("densenet", "twin"), ("lenet5", "fp32")):
        path = models[key]
        x = _x(models, test_images, key[0])
        info = runtime.read_model(path)
        dev = cuda.TorchDevice(torch.device("cpu"), "float16" if fp16 else "float32")
        ts = executor.NativeSession(info, lib, dev, backend="cuda")
        nh = runtime.load(path, "native-host", library=host_lib_path, fp16=fp16)
        assert_logits_close(ts.run(x), nh.run(x), 2e-2 if fp16 else 1e-5, f"{key} torch vs numpy device")
        np.testing.assert_array_equal(ts.last_overflowed, nh.last_overflowed)
        assert ts.last_steps == nh.last_steps  # the same liveness, views and in-place fusion


def test_fp16_standard_ops_on_a_spectral_model(models: dict, test_images: dict) -> None:
    """fp16 mode: SpecToSpatial writes float16 for the head; the spectral part is unchanged."""
    path = models[("vgg16", "fp16")]
    x = _x(models, test_images, "vgg16")
    want = runtime.load(path, "reference").run(x)
    s = runtime.load(path, "native-host", fp16=True)
    assert_logits_close(s.run(x), want, 2e-2, "vgg16 fp16 values, fp16 ops")
    assert s.memory()["standard_ops_dtype"] == "float16"


@pytest.mark.parametrize(("name", "value_dtype", "scale"), [("vgg16", "fp16", 0.3), ("densenet", "fp32", 0.3),
                                                             ("lenet5", "fp32", 1.0)])
def test_overflow_flags_agree(tmp_path: Path, test_images: dict, name: str, value_dtype: str, scale: float) -> None:
    """Capacities calibrated on 4 (scaled) images with margin 1.0: other images overflow; both agree."""
    path = export_overflowing(tmp_path, name, value_dtype, scale=scale)
    info = runtime.read_model(path)
    x = test_images[info.input_shape[1]]
    ref = runtime.load(path, "reference")
    nh = runtime.load(path, "native-host")
    want = ref.run(x)
    got = nh.run(x)
    assert ref.last_overflowed.any(), "the test needs overflowing samples"
    np.testing.assert_array_equal(nh.last_overflowed, ref.last_overflowed)
    assert_logits_close(got, want, RTOL[value_dtype], f"{name} overflowing")
    got_t = nh.run_tensors(x, info.overflow_taps)
    ref_t = reference_tensors(path, x, info.overflow_taps)
    for t in info.overflow_taps:
        assert_same_headers(got_t[t], ref_t[t], f"{name} overflowing tap {t}")


def test_batches_and_workspace_modes(models: dict, test_images: dict) -> None:
    """Per-sample ops: a sub-batch gives the same rows; a shared workspace gives the same bits."""
    path = models[("densenet", "fp16")]
    x = _x(models, test_images, "densenet")
    per_op = runtime.load(path, "native-host")
    full = per_op.run(x)
    flags = per_op.last_overflowed.copy()
    part = per_op.run(x[2:5])
    np.testing.assert_allclose(part, full[2:5], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(per_op.last_overflowed, flags[2:5])
    assert per_op.memory()["workspace_mode"] == "per_op"
    shared = runtime.load(path, "native-host", workspace="shared")
    np.testing.assert_array_equal(shared.run(x), full)
    np.testing.assert_array_equal(shared.last_overflowed, flags)
    assert shared.memory()["workspace_mode"] == "shared"


# ------------------------------------------------------------------------------------------------
# memory


@pytest.mark.parametrize("kind", ["fp32", "twin"])
@pytest.mark.parametrize("name", list(SMALL))
def test_tracked_bytes_follow_the_plan(models: dict, test_images: dict, name: str, kind: str) -> None:
    """The executor's live bytes and workspaces equal the planner's step by step (same liveness,
    views, in-place; the planner declares the library's workspace sizes)."""
    path = models[(name, kind)]
    x = _x(models, test_images, name)[:4]
    s = runtime.load(path, "native-host")
    s.run(x)
    p = memory.plan(path, batch=4)
    assert_steps_follow_plan(s, p, f"{name} {kind}")
    m = s.memory()
    for key in ("tracked_peak_bytes", "last_run_tracked_peak_bytes", "tracked_peak_node", "tracked_scope",
                "workspace_bytes", "workspace_mode", "library", "standard_ops_dtype", "batch",
                "run_peak_rss_delta_bytes", "backend", "scope"):
        assert key in m, key
    assert m["backend"] == "native-host" and m["batch"] == 4 and m["workspace_mode"] == "per_op"
    assert m["tracked_peak_bytes"] > 0 and isinstance(m["tracked_peak_node"], str)
    assert "device_peak_bytes" not in m  # host tensors: no device figure
    # activations and op scratch as separate figures (issue 14): each the plan's own part
    assert m["tracked_activation_peak_bytes"] == max(live for _, live, _ in s.last_steps)
    assert m["tracked_op_workspace_peak_bytes"] == max(r.workspace_bytes for r in p.steps)
    assert m["tracked_activation_peak_bytes"] <= m["tracked_peak_bytes"]
    assert "library_scratch_peak_bytes" not in m  # a device figure only (cuda)
    if kind == "twin":
        assert m["tracked_peak_bytes"] == p.peak_bytes and m["workspace_bytes"] == 0
    else:
        assert m["workspace_bytes"] == max(r.workspace_bytes for r in p.steps) > 0
        first = s.info.spec_nodes[0]
        O = s.info.weights[first.inputs[1]].shape[0]
        assert m["workspace_bytes"] >= memory.declared_workspace("SpecConv", first.attrs, 4, O)
        # the tap headers the executor keeps (16 bytes per sample and tap) are all it adds
        assert p.peak_bytes <= m["tracked_peak_bytes"] <= p.peak_bytes + 16 * 4 * len(s.info.overflow_taps)
    s.reset_memory()
    assert s.memory()["tracked_peak_bytes"] is None


@pytest.mark.parametrize("device", ["numpy", "torch-cpu"])
def test_fp16_tracked_bytes_follow_the_fp16_plan(models: dict, test_images: dict, host_lib_path: Path,
                                                  device: str) -> None:
    """fp16 standard ops (how bench runs both models when the values are fp16) against the plan with
    ``activation_dtype="fp16"``, step by step, on both devices of the executor: the twin's first Conv
    reads a float16 copy of the fp32 input, which both allocate and the plan charges (issue 14 item 3:
    LeNet-5's twin peaks at that step, measured 12.5% above a plan that left the copy out)."""
    from specdeploy.native import cuda, executor

    lib = native.load("host", host_lib_path)
    for name in SMALL:
        x = _x(models, test_images, name)[:2]
        for kind in ("twin", "fp16"):
            path = models[(name, kind)]
            info = runtime.read_model(path)
            if device == "numpy":
                s = runtime.load(path, "native-host", fp16=True)
            else:
                s = executor.NativeSession(info, lib, cuda.TorchDevice(torch.device("cpu"), "float16"), backend="cuda")
            s.run(x)
            p = memory.plan(path, batch=2, activation_dtype="fp16")
            assert_steps_follow_plan(s, p, f"{name} {kind} fp16 ops on {device}")
            casts = [t for t in p.tensors if t.op == "Cast"]
            if kind == "twin":  # exactly one conversion: the input at the first Conv
                assert [(t.first, t.bytes) for t in casts] == [(0, 2 * 2 * int(np.prod(info.input_shape[1:])))]
            else:  # the first SpecConv reads the fp32 input itself; SpecToSpatial writes float16
                assert casts == []
            if not info.overflow_taps:
                assert s.memory()["tracked_activation_peak_bytes"] == p.live_peak_bytes


def test_memory_scales_with_batch(models: dict, test_images: dict) -> None:
    path = models[("vgg16", "fp16")]
    x = _x(models, test_images, "vgg16")
    s = runtime.load(path, "native-host")
    s.run(x[:1])
    one = s.last_steps
    ws1 = s.memory()["workspace_bytes"]
    s.reset_memory()
    s.run(x[:8])
    eight = s.last_steps
    assert [8 * live for _, live, _ in one] == [live for _, live, _ in eight]  # activations: linear
    assert ws1 < s.memory()["workspace_bytes"] <= 8 * ws1  # the library's workspace: per sample + slack


# ------------------------------------------------------------------------------------------------
# registration, errors, bench


def test_backend_registered_and_cuda_hook() -> None:
    assert "native-host" in runtime.BACKENDS and "cuda" in runtime.BACKENDS
    from specdeploy.native import cuda, host

    assert callable(cuda.runtime_session) and callable(host.runtime_session)


def test_missing_library_says_how_to_build(models: dict, tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match=r"specdeploy build-plugins --kind host"):
        runtime.load(models[("lenet5", "fp32")], "native-host", library=tmp_path / "nowhere")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_backend_without_gpu_is_unavailable(models: dict) -> None:
    with pytest.raises(BackendUnavailableError, match=r"backend 'cuda' is not available"):
        runtime.load(models[("lenet5", "fp32")], "cuda")


def test_cuda_backend_messages_without_a_device(models: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA build of torch on a machine without a visible GPU: say so (no library is touched)."""
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendUnavailableError, match=r"torch sees no CUDA device"):
        runtime.load(models[("lenet5", "fp32")], "cuda")


def test_unsupported_op_and_options(models: dict) -> None:
    m = onnx.load(str(models[("lenet5", "twin")]))
    last = m.graph.node[-1]
    last.output[0] = "pre_softmax"
    m.graph.node.append(onnx.helper.make_node("Softmax", ["pre_softmax"], ["logits"], name="softmax", axis=1))
    with pytest.raises(ModelError, match=r"node 'softmax' \(Softmax\).*not implemented by the native backends"):
        runtime.load(m, "native-host")
    with pytest.raises(ValueError, match="workspace must be one of"):
        runtime.load(models[("lenet5", "twin")], "native-host", workspace="huge")


needs_data = pytest.mark.skipif(not have_data(), reason="the bench evaluates on Fashion-MNIST: "
                                                        "apt-get install dataset-fashion-mnist")


@needs_data
def test_run_bench_native_host(models: dict, tmp_path: Path) -> None:
    doc = bench.run_bench(models[("vgg16", "fp16")], models[("vgg16", "twin")], "native-host", [1, 4],
                          samples=16, repeats=2, warmup=1, progress=False)
    assert doc["backend"] == "native-host" and [r["batch"] for r in doc["records"]] == [1, 4]
    for r in doc["records"]:
        for k in ("spec", "twin"):
            e = r[k]
            assert e["measured"]["backend"] == "native-host" and e["measured"]["batch"] == r["batch"]
            assert e["measured"]["tracked_peak_bytes"] > 0 and e["latency_ms"] > 0
            assert e["measured_peak_source"] in ("run_peak_rss_delta_bytes", None)
            # issue 14 item 3: activations and scratch as separate measured figures
            assert e["measured_activation_bytes"] == e["measured"]["tracked_activation_peak_bytes"] > 0
            assert e["measured_op_workspace_bytes"] == e["measured"]["tracked_op_workspace_peak_bytes"]
            assert e["measured_library_scratch_bytes"] is None  # no device allocator on the host
        assert r["spec"]["measured_op_workspace_bytes"] > 0 and r["twin"]["measured_op_workspace_bytes"] == 0
        assert r["twin"]["overflowed"] == 0
        # fp16 values: the plan counts fp16 activations, and the standard ops ran in fp16 to match it, so
        # the twin's measured activations are its planned peak (no tap headers, no workspace)
        assert r["twin"]["planned_activation_dtype"] == "fp16"
        for k in ("spec", "twin"):
            assert r[k]["measured"]["standard_ops_dtype"] == "float16"
        assert r["twin"]["measured_activation_bytes"] == r["twin"]["planned_peak_bytes"]
    fp32 = bench.run_bench(models[("vgg16", "fp16")], models[("vgg16", "twin")], "native-host", [1], samples=8,
                           repeats=1, warmup=0, progress=False, backend_opts={"fp16": False})
    assert fp32["records"][0]["twin"]["measured"]["standard_ops_dtype"] == "float32"  # the caller's choice wins
    csv_path = bench.write_csv(doc, tmp_path / "b.csv")
    header = csv_path.read_text().splitlines()[0].split(",")
    assert {"spec_measured_activation_bytes", "twin_measured_library_scratch_bytes"} <= set(header)
    png = bench.write_plot(doc, tmp_path / "b.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_data
def test_cli_bench_backend_native_host(models: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from specdeploy.cli import main

    out = tmp_path / "b.json"
    rc = main(["bench", str(models[("lenet5", "fp32")]), "--twin", str(models[("lenet5", "twin")]),
               "--backend", "native-host", "--batch", "2", "--samples", "8", "--repeats", "1", "--warmup", "0",
               "--json", str(out), "--no-progress"])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["backend"] == "native-host" and doc["records"][0]["spec"]["measured"]["tracked_peak_bytes"] > 0


def test_the_input_is_released_after_its_last_reader(models: dict, test_images: dict, host_lib_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The executor holds the only reference to the input tensor and drops it after its last reader, as
    the plan frees it (on the H200 the device copy stayed alive to the end of the run: the paper VGG16's
    device peak was 10% over its plan). Checked with a weak reference on the torch-cpu device."""
    import weakref

    from specdeploy.native import cuda, executor

    lib = native.load("host", host_lib_path)
    path = models[("vgg16", "fp16")]
    dev = cuda.TorchDevice(torch.device("cpu"), "float32")
    s = executor.NativeSession(runtime.read_model(path), lib, dev, backend="cuda")
    refs: list = []
    to_device = dev.from_host

    def from_host(a: np.ndarray) -> Any:
        t = to_device(a).clone()  # its own storage (torch.from_numpy shares the caller's array)
        refs.append(weakref.ref(t))
        return t

    monkeypatch.setattr(dev, "from_host", from_host)
    alive: list[bool] = []
    step = executor._Tracker.step

    def record(self: Any, *args: Any) -> None:
        step(self, *args)
        alive.append(refs[-1]() is not None)

    monkeypatch.setattr(executor._Tracker, "step", record)
    s.run(_x(models, test_images, "vgg16")[:2])
    p = memory.plan(path, batch=2)
    last = next(t.last for t in p.tensors if t.producer == memory.GRAPH_INPUT)
    assert len(alive) == len(p.steps) and last < len(alive) - 1
    assert alive == [i <= last for i in range(len(alive))]
