"""The CPU runtimes (reference, ort): agreement, overflow counting, and every loader/input error.

Hand-built graphs (``specdeploy.runtime.toy``, built with onnx.helper to the export contract) pin the
runtimes independently of the exporter; real exports of a small LeNet are checked against torch.
"""

from __future__ import annotations

import dataclasses

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from specdeploy import ops, packed, reference, runtime
from specdeploy.runtime import toy
from specdeploy.runtime.errors import (
    BackendUnavailableError,
    InputError,
    ModelError,
    OpExecutionError,
    SpecRuntimeError,
)

BACKENDS = ("reference", "ort")


def _x(batch: int = 5, size: int = 8, channels: int = 1, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, channels, size, size)).astype(np.float32)


def _node(m: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in m.graph.node if n.name == name)


def _set_attr(m: onnx.ModelProto, node: str, attr: str, value: object) -> onnx.ModelProto:
    n = _node(m, node)
    for a in list(n.attribute):
        if a.name == attr:
            n.attribute.remove(a)
    if value is not None:
        n.attribute.append(helper.make_attribute(attr, value))
    return m


def _spectral_part(m: onnx.ModelProto) -> onnx.ModelProto:
    """The toy model cut after Flatten(SpecToSpatial): every value comes from specdeploy ops (exact)."""
    nodes = [n for n in m.graph.node if n.name not in ("fc1", "relu_fc1", "fc2")]
    flat = next(n for n in nodes if n.op_type == "Flatten")
    flat.output[0] = "logits"
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    keep = [t for t in m.graph.initializer if not t.name.startswith("fc")]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", None]))
    return m


def _numpy_chain(m: onnx.ModelProto, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run a toy graph's specdeploy part op by op with specdeploy.reference: (spatial map, last packed)."""
    info = runtime.read_model(m)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    env = {"input": x}
    last = None
    for n in info.spec_nodes:
        a = dict(n.attrs)
        if n.op == "SpecConv":
            b = inits[n.inputs[2]] if len(n.inputs) > 2 else None
            env[n.output] = reference.spec_conv(env[n.inputs[0]], inits[n.inputs[1]], b, **a)
        elif n.op == "SpecPool":
            env[n.output] = reference.spec_pool(env[n.inputs[0]], **a)
        elif n.op == "SpecConcat":
            env[n.output] = reference.spec_concat([env[i] for i in n.inputs], **a)
        else:
            last = env[n.inputs[0]]
            env[n.output] = reference.spec_to_spatial(last, **a)
    spatial = env[info.spec_nodes[-1].output]
    return spatial.reshape(len(x), -1), last


# ------------------------------------------------------------------------------------ agreement

VARIANTS = [
    dict(),
    dict(value_dtype="fp16"),
    dict(concat=True),
    dict(bias=False),
    dict(concat=True, value_dtype="fp16", bias=False, in_channels=3, channels=(3, 5)),
]


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_spectral_part_is_bit_exact_across_backends_and_numpy(kw: dict) -> None:
    m = _spectral_part(toy.toy_spectral(**kw))
    x = _x(channels=kw.get("in_channels", 1))
    want, _ = _numpy_chain(m, x)
    for be in BACKENDS:
        got = runtime.load(m, be).run(x)
        np.testing.assert_array_equal(got, want, err_msg=be)


@pytest.mark.parametrize("kw", VARIANTS[:3], ids=["default", "fp16", "concat"])
def test_logits_agree_between_backends(kw: dict) -> None:
    m = toy.toy_spectral(**kw)
    x = _x()
    ys = {be: runtime.load(m, be).run(x) for be in BACKENDS}
    assert ys["reference"].shape == (5, 10) and ys["reference"].dtype == np.float32
    np.testing.assert_allclose(ys["ort"], ys["reference"], rtol=1e-5, atol=1e-6)


def test_spatial_twin_agrees_between_backends() -> None:
    m = toy.toy_spatial()
    x = _x(batch=3)
    ref = runtime.load(m, "reference")
    ort = runtime.load(m, "ort")
    np.testing.assert_allclose(ort.run(x), ref.run(x), rtol=1e-5, atol=1e-6)
    assert not ref.last_overflowed.any() and ref.last_overflowed.shape == (3,)
    assert ref.info.overflow_taps == [] and ref.info.value_dtype is None


def test_static_batch_model_runs_and_rejects_other_batches(tmp_path: Path) -> None:
    m = toy.toy_spectral(batch=2)
    p = tmp_path / "static.onnx"
    onnx.save(m, str(p))
    for be in BACKENDS:
        s = runtime.load(p, be)
        assert s.input_shape == (2, 1, 8, 8) and s.name == "static"
        assert s.run(_x(batch=2)).shape == (2, 10)
        with pytest.raises(InputError, match="static batch 2"):
            s.run(_x(batch=3))


# ------------------------------------------------------------------------------------- overflow


def _nnz_conv1(x: np.ndarray) -> np.ndarray:
    m = toy.toy_spectral()
    info = runtime.read_model(m)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    a = info.spec_nodes[0].attrs
    full = reference.spec_conv(x, inits["conv1.weight"], inits["conv1.bias"], **a)
    return full.view(np.uint32)[:, 0].astype(np.int64)


def test_overflow_flags_per_sample_match_the_reference_header() -> None:
    x = _x(batch=8, seed=3) * np.linspace(0.2, 3.0, 8, dtype=np.float32)[:, None, None, None]
    nnz = _nnz_conv1(x)
    cap = int(np.median(nnz))
    C, F = 4, packed.num_coeffs(10, 10)
    m = toy.toy_spectral(capacity_fraction=(cap / (C * F), 1.0, 1.0))
    assert _node(m, "conv1").attribute  # sanity
    got_cap = next(a.i for a in _node(m, "conv1").attribute if a.name == "capacity")
    expect = nnz > got_cap
    assert expect.any() and not expect.all()
    _, last = _numpy_chain(m, x)
    np.testing.assert_array_equal(last.view(np.uint32)[:, 1] != 0, expect)  # sticky flag reached the end
    for be in BACKENDS:
        s = runtime.load(m, be)
        s.run(x)
        np.testing.assert_array_equal(s.last_overflowed, expect, err_msg=be)


def test_tiny_capacity_overflows_every_sample_and_full_capacity_none() -> None:
    x = _x(batch=4)
    for frac, want in ((0.01, True), (1.0, False)):
        for kw in (dict(), dict(concat=True)):
            m = toy.toy_spectral(capacity_fraction=frac, **kw)
            for be in BACKENDS:
                s = runtime.load(m, be)
                s.run(x)
                assert s.last_overflowed.tolist() == [want] * 4, (frac, kw, be)


def test_overflow_taps_are_the_packed_tensors_ending_the_spectral_part() -> None:
    assert runtime.read_model(toy.toy_spectral()).overflow_taps == ["p3"]
    assert runtime.read_model(toy.toy_spectral(concat=True)).overflow_taps == ["p4"]


# ---------------------------------------------------------------------------------- load errors


def _bad(m: onnx.ModelProto, *match: str) -> None:
    for be in BACKENDS:
        with pytest.raises(ModelError) as e:
            runtime.load(m, be)
        for s in match:
            assert s in str(e.value), (be, str(e.value))
        assert isinstance(e.value, ValueError)


def test_not_onnx_and_missing_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_text("this is not a protobuf \x00\xff" * 10)
    for be in BACKENDS:
        with pytest.raises(ModelError, match="junk.onnx: not an ONNX model"):
            runtime.load(junk, be)
        with pytest.raises(ModelError, match="no such model file"):
            runtime.load(tmp_path / "missing.onnx", be)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="not an ONNX model"):
        runtime.load(empty)


def test_wrong_opset_version_and_missing_import() -> None:
    m = toy.toy_spectral()
    for d in m.opset_import:
        if d.domain == "specdeploy":
            d.version = 2
    _bad(m, "'specdeploy' version 2", "version 1")
    m = toy.toy_spectral()
    keep = [d for d in m.opset_import if d.domain != "specdeploy"]
    del m.opset_import[:]
    m.opset_import.extend(keep)
    _bad(m, "node 'conv1'", "not in the opset imports")


def test_unknown_op_and_unknown_domain() -> None:
    m = toy.toy_spectral()
    _node(m, "pool1").op_type = "SpecMagic"
    _bad(m, "node 'pool1'", "unknown op type 'SpecMagic'")
    m = toy.toy_spectral()
    _node(m, "pool1").domain = "com.example"
    _bad(m, "node 'pool1'", "domain 'com.example'")


@pytest.mark.parametrize("attr", sorted(ops.ATTRIBUTES["SpecConv"]))
def test_node_lacking_an_attribute(attr: str) -> None:
    _bad(_set_attr(toy.toy_spectral(), "conv2", attr, None), "node 'conv2'", attr, "lacks")


@pytest.mark.parametrize("node, attr, value, why", [
    ("conv1", "capacity", 10**6, "capacity"),
    ("conv1", "capacity", 0, "capacity"),
    ("conv1", "beta", -1.0, "beta"),
    ("conv1", "k", 50, "'k'"),
    ("conv1", "in_domain", "frequency", "in_domain"),
    ("conv1", "activation", "relu", "activation"),
    ("conv2", "value_dtype", "bf16", "value_dtype"),
    ("pool1", "out_Hs", 99, "out_Hs"),
    ("to_spatial", "C", 0, "'C'"),
    ("conv1", "C", 1.0, "type FLOAT, expected INT"),
    ("conv1", "extra", 3, "unsupported attribute"),
])
def test_attribute_out_of_range_or_mistyped(node: str, attr: str, value: object, why: str) -> None:
    _bad(_set_attr(toy.toy_spectral(), node, attr, value), f"node '{node}'", why)


def test_concat_attribute_list_must_match_inputs() -> None:
    _bad(_set_attr(toy.toy_spectral(concat=True), "cat", "C", [4, 5, 6]), "node 'cat'", "one channel count per input")


def test_packed_input_width_must_fit_the_attributes() -> None:
    m = _set_attr(toy.toy_spectral(), "pool1", "Hs", 9)  # producer wrote 10x10 rows
    _bad(m, "node 'pool1'", "wrong row size")
    m = _set_attr(toy.toy_spectral(), "conv1", "Hs", 11)  # spatial 8x8 + k - 1 = 10
    _bad(m, "node 'conv1'", "spatial input X")


def test_declared_value_info_must_agree_with_attributes() -> None:
    m = toy.toy_spectral()
    vi = next(v for v in m.graph.value_info if v.name == "p2")
    vi.type.tensor_type.shape.dim[1].dim_value += 2
    _bad(m, "node 'pool1'", "value_info of 'p2'")


def test_bad_metadata() -> None:
    m = toy.toy_spectral()
    helper.set_model_props(m, {"specdeploy.max_batch": "many"})
    _bad(m, "specdeploy.max_batch")
    m = toy.toy_spectral()
    helper.set_model_props(m, {"specdeploy.calibration": "{not json"})
    _bad(m, "specdeploy.calibration", "not valid JSON")


# --------------------------------------------------------------------------------- input errors


def test_batch_over_declared_max_and_bad_inputs() -> None:
    m = toy.toy_spectral(max_batch=4)
    for be in BACKENDS:
        s = runtime.load(m, be)
        assert s.max_batch == 4 and s.input_shape == (None, 1, 8, 8)
        assert s.run(_x(batch=4)).shape == (4, 10)
        with pytest.raises(InputError, match="batch 5 is over the declared maximum 4"):
            s.run(_x(batch=5))
        with pytest.raises(InputError, match=r"expected \[B, 1, 8, 8\]"):
            s.run(_x(batch=2, size=9))
        with pytest.raises(InputError, match="normalize"):
            s.run(np.zeros((2, 1, 8, 8), np.uint8))
        with pytest.raises(InputError, match="positive"):
            s.run(np.zeros((0, 1, 8, 8), np.float32))
        out = s.run(_x(batch=2).astype(np.float64))  # floats are cast
        assert out.dtype == np.float32


def test_static_batch_over_declared_max_is_a_model_error() -> None:
    m = toy.toy_spectral(batch=8)
    helper.set_model_props(m, {"specdeploy.max_batch": "4"})
    _bad(m, "static batch 8", "maximum 4")


def test_unknown_and_unavailable_backends() -> None:
    m = toy.toy_spectral()
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        runtime.load(m, "tpu")
    for be in ("cuda", "tensorrt"):
        try:
            s = runtime.load(m, be)
        except BackendUnavailableError as e:
            assert f"backend '{be}'" in str(e)
            assert isinstance(e, SpecRuntimeError) and isinstance(e, ValueError)
        except ValueError as e:  # e.g. the tensorrt backend asking for its plugin library on a GPU machine
            assert be in ("cuda", "tensorrt") and str(e)
        else:  # a machine with the GPU backend in place
            assert s.backend == be


# ----------------------------------------------------------------------------------- ORT safety


def test_ort_op_failure_is_reported_not_aborting(monkeypatch: pytest.MonkeyPatch) -> None:
    s = runtime.load(toy.toy_spectral(), "ort")

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("injected failure")

    # the ORT op runs the registry's reference function (specdeploy.ops)
    monkeypatch.setitem(ops.REGISTRY, "SpecPool", dataclasses.replace(ops.REGISTRY["SpecPool"], reference=boom))
    with pytest.raises(OpExecutionError, match="node 'pool1' failed inside ONNX Runtime: RuntimeError: injected"):
        s.run(_x(batch=2))
    monkeypatch.undo()
    assert s.run(_x(batch=2)).shape == (2, 10)  # the session is still usable


def test_ort_rewrites_in_memory_only(tmp_path: Path) -> None:
    p = tmp_path / "m.onnx"
    onnx.save(toy.toy_spectral(concat=True), str(p))
    before = p.read_bytes()
    runtime.load(p, "ort").run(_x(batch=1))
    assert p.read_bytes() == before
    assert {n.domain for n in onnx.load(str(p)).graph.node} == {"", "specdeploy"}


def test_memory_report_is_labelled() -> None:
    for be in BACKENDS:
        s = runtime.load(toy.toy_spectral(), be)
        s.run(_x(batch=2))
        m = s.memory()
        assert m["backend"] == be and "host process" in m["scope"] and m["runs"] == 1
        assert m["run_peak_rss_delta_bytes"] is not None and m["run_peak_rss_delta_bytes"] >= 0
        s.reset_memory()
        assert s.memory()["runs"] == 0


def test_runtime_modules_never_import_torch() -> None:
    code = (
        "import sys; import specdeploy.runtime, specdeploy.memory, specdeploy.bench;"
        "from specdeploy.runtime import reference_backend, ort_backend, toy;"
        "s = specdeploy.runtime.load(toy.toy_spectral(), 'ort'); import numpy as np;"
        "s.run(np.zeros((1, 1, 8, 8), np.float32));"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ------------------------------------------------------------------------------- real exports

@pytest.fixture(scope="module")
def lenet_exports(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Small LeNet-5 exports (width 0.25, dynamic batch up to 8); skipped where torch is absent."""
    torch = pytest.importorskip("torch")
    export = pytest.importorskip("specdeploy.export")
    from specdeploy import zoo

    out = tmp_path_factory.mktemp("exports")
    torch.manual_seed(0)
    calib = np.random.default_rng(0).standard_normal((32, 1, 32, 32)).astype(np.float32)
    res = {}
    for domain in ("spectral", "spatial"):
        model = zoo.create("lenet5", domain, in_channels=1, width=0.25, beta=0.5).eval()
        for vd in ("fp32", "fp16") if domain == "spectral" else ("fp32",):
            r = export.export_model(model, out / f"lenet-{domain}-{vd}.onnx", batch=None, max_batch=8,
                                    value_dtype=vd, calib_images=calib, metadata={"specdeploy.data": {"name": "mnist"}})
            res[(domain, vd)] = (model, r)
    return res


def test_real_exports_match_torch(lenet_exports: dict) -> None:
    import torch

    x = np.random.default_rng(5).standard_normal((6, 1, 32, 32)).astype(np.float32)
    for (domain, vd), (model, r) in lenet_exports.items():
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        outs = {}
        for be in BACKENDS:
            s = runtime.load(r.path, be)
            outs[be] = s.run(x)
            assert s.info.metadata["model"]["domain"] == domain and s.info.data_name == "mnist"
            if vd == "fp32":
                np.testing.assert_allclose(outs[be], want, rtol=1e-4, atol=1e-4, err_msg=f"{domain} {be}")
        np.testing.assert_allclose(outs["ort"], outs["reference"], rtol=1e-5, atol=1e-5)
        if vd == "fp16":  # fp16 values: close to torch, not equal
            assert np.abs(outs["reference"] - want).max() < 0.05 * (np.abs(want).max() + 1)


def test_real_export_overflow_with_tight_capacity(lenet_exports: dict, tmp_path: Path) -> None:
    _, r = lenet_exports[("spectral", "fp32")]
    m = onnx.load(str(r.path))
    first = next(n for n in m.graph.node if n.op_type == "SpecConv")
    for a in first.attribute:
        if a.name == "capacity":
            a.i = 3
    for vi in m.graph.value_info:  # keep the declared shapes consistent with the new capacity
        if vi.name == first.output[0]:
            vi.type.tensor_type.shape.dim[1].dim_value -= 2 * (r.capacities[first.name] - 3)
    p = tmp_path / "tight.onnx"
    onnx.save(m, str(p))
    x = np.random.default_rng(6).standard_normal((3, 1, 32, 32)).astype(np.float32)
    for be in BACKENDS:
        s = runtime.load(p, be)
        s.run(x)
        assert s.last_overflowed.all(), be
    meta = json.loads(next(p.value for p in m.metadata_props if p.key == "specdeploy.calibration"))
    assert first.name in meta


def test_nodes_out_of_topological_order_are_sorted_in_memory() -> None:
    m = toy.toy_spectral(concat=True)
    x = _x(batch=2)
    want = runtime.load(m, "reference").run(x)
    nodes = list(m.graph.node)[::-1]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    for be in BACKENDS:
        np.testing.assert_allclose(runtime.load(m, be).run(x), want, rtol=1e-5, atol=1e-6)
    m.graph.node[0].input[0] = "nowhere"
    _bad(m, "reads undefined tensors", "nowhere")
