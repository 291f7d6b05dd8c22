"""The planned-memory figure (DESIGN §5 figure 1): exact bytes on graphs with known liveness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from specdeploy import memory, packed
from specdeploy.cli import main
from specdeploy.runtime import toy
from specdeploy.runtime.errors import InputError, ModelError


def _rw(C: int, Hs: int, cap_fraction: float = 1.0, vd: str = "fp32") -> int:
    F = packed.num_coeffs(Hs, Hs)
    return packed.row_words(C, F, int(round(cap_fraction * C * F)), vd)


def test_toy_spectral_exact_bytes_per_step() -> None:
    B = 2
    p = memory.plan(toy.toy_spectral(), batch=B)
    inp = B * 1 * 8 * 8 * 4
    p1, p2, p3 = (B * 4 * _rw(4, 10), B * 4 * _rw(4, 5), B * 4 * _rw(6, 5))
    s = B * 6 * 5 * 5 * 4
    h1, logits = B * 16 * 4, B * 10 * 4
    # the library's workspaces, sub-buffers rounded up to A(n) = 256 * ceil(n / 256), + 256 slack:
    pipe = 768 + 256  # A(4 * B * 83) two-level level histograms + A(20 * B) five words per sample
    # conv1 (spatial, O = 4 on 8x8) streams its input spectrum (memory.streams_input): no dense buffer
    ws = [pipe + 2 * 256 + 256,  # conv1: + twiddles A(8 * 10) twice
          pipe + 256,  # pool1
          pipe + 2 * 256 + 256,  # conv2 (spectral, Hs = Ws = 5): twiddles A(8 * 5) twice
          2 * 256 + 256,  # to_spatial: twiddles only
          0, 0, 0, 0]
    want = [w + live for w, live in zip(ws, [inp + p1, p1 + p2, p2 + p3, p3 + s, s, s + h1, h1, h1 + logits])]
    assert [r.op for r in p.steps][:4] == ["SpecConv", "SpecPool", "SpecConv", "SpecToSpatial"]
    assert [r.workspace_bytes for r in p.steps] == ws
    assert [r.total_bytes for r in p.steps] == want
    assert p.peak_bytes == max(want) == 6480 and p.peak_node == "pool1" and p.peak_step == 1
    rows = {t.name: t for t in p.tensors}
    assert rows["flat"].alias_of == "s" and rows["flat"].bytes == 0  # Flatten is a view
    assert rows["h1r"].alias_of == "h1" and rows["h1r"].bytes == 0  # Relu fused into Gemm
    assert (rows["s"].first, rows["s"].last) == (3, 5)  # the view extends the buffer to fc1
    assert (rows["input"].first, rows["input"].last) == (0, 0)
    assert rows["logits"].last == 7 and p.output_bytes == logits and p.input_bytes == inp
    assert p.weights_bytes == sum(
        numpy_helper.to_array(t).nbytes for t in toy.toy_spectral().graph.initializer
    )


def test_batch_scales_linearly_and_respects_the_declared_max() -> None:
    m = toy.toy_spectral(max_batch=16)
    one, sixteen = memory.plan(m), memory.plan(m, batch=16)  # dynamic batch defaults to 1
    assert one.batch == 1 and [16 * r.live_bytes for r in one.steps] == [r.live_bytes for r in sixteen.steps]
    # workspaces: per-sample parts scale, twiddle tables and alignment slack do not
    assert one.peak_bytes < sixteen.peak_bytes < 16 * one.peak_bytes
    with pytest.raises(InputError, match="over the declared maximum 16"):
        memory.plan(m, batch=17)
    static = toy.toy_spectral(batch=3)
    assert memory.plan(static).batch == 3
    with pytest.raises(InputError, match="static batch 3"):
        memory.plan(static, batch=4)


def test_workspace_holds_a_dense_input_spectrum_only_at_a_wide_first_layer() -> None:
    """A small first layer streams its input spectrum (no buffer); a wide one declares the dense
    spectrum on top of the per-sample pipeline words; no other op has a B*C*F term. Equality with
    the native library's figures: tests/test_native_host.py and tests/test_native_backend.py."""
    F = packed.num_coeffs(8, 8)  # Hs = 6 + 3 - 1
    spectral = memory.declared_workspace("SpecConv", {"in_domain": "spectral", "C": 3, "Hs": 8, "Ws": 8}, 5)
    small = memory.plan(toy.toy_spectral(in_channels=3, size=6), batch=5)
    assert small.steps[0].op == "SpecConv" and memory.streams_input(4, 6, 6, 3)
    assert small.steps[0].workspace_bytes == spectral
    wide = memory.plan(toy.toy_spectral(in_channels=3, size=32, channels=(64, 6)), batch=5)
    assert not memory.streams_input(64, 32, 32, 3)
    F = packed.num_coeffs(34, 34)
    spectral = memory.declared_workspace("SpecConv", {"in_domain": "spectral", "C": 3, "Hs": 34, "Ws": 34}, 5)
    assert wide.steps[0].workspace_bytes - spectral == memory._align(5 * 3 * F * 8)
    for op in ("SpecPool", "SpecConcat"):
        one, many = memory.declared_workspace(op, {}, 1), memory.declared_workspace(op, {}, 100)
        # two-level histogram (83 words) and five words per sample: 352 B, not 2412 B, per sample
        assert 0 < one < many <= 100 * (4 * memory.HIST_WORDS + 4 * memory.PIPE_WORDS) + 3 * memory.WS_ALIGN
        assert many > 100 * (4 * memory.HIST_WORDS + 4 * memory.PIPE_WORDS)
    big = {"in_domain": "spectral", "C": 512, "Hs": 64, "Ws": 64}
    assert memory.declared_workspace("SpecConv", big, 1) < 8 << 10  # independent of C * F
    assert memory.declared_workspace("Conv", {}, 5) == 0
    with pytest.raises(ValueError, match="batch"):
        memory.declared_workspace("SpecPool", {}, -1)
    with pytest.raises(ValueError, match="out_channels"):
        memory.declared_workspace("SpecConv", {"in_domain": "spatial", "C": 3, "Hs": 8, "Ws": 8, "k": 3}, 1)
    with pytest.raises(ValueError, match="out_channels"):  # the hybrid block's chunk depends on O too
        memory.declared_workspace("SpecConv", {"in_domain": "spectral", "C": 3, "Hs": 8, "Ws": 8, "k": 3,
                                               "activation": "relu"}, 1)


def test_fp16_accounting() -> None:
    B = 2
    twin32 = memory.plan(toy.toy_spatial(), batch=B)
    twin16 = memory.plan(toy.toy_spatial(), batch=B, activation_dtype="fp16")
    inp = B * 8 * 8 * 4
    assert twin32.peak_bytes == inp + B * 4 * 8 * 8 * 4
    # the input binding stays fp32; the fp16 Conv reads a float16 copy of it, live at its step only
    assert twin16.peak_bytes == inp + B * 8 * 8 * 2 + B * 4 * 8 * 8 * 2 and twin16.peak_node == "conv1"
    rows = {t.name: t for t in twin16.tensors}
    assert rows["input"].dtype == "float32" and rows["c1"].dtype == "float16" and rows["logits"].bytes == B * 10 * 2
    cast = rows["input as float16 (step 0)"]
    assert (cast.op, cast.producer, cast.dtype, cast.bytes, cast.first, cast.last) == (
        "Cast", "conv1", "float16", B * 8 * 8 * 2, 0, 0)
    assert not [t for t in twin32.tensors if t.op == "Cast"]  # fp32 accounting: nothing to convert
    spec16 = memory.plan(toy.toy_spectral(value_dtype="fp16"), batch=B, activation_dtype="fp16")
    rows = {t.name: t for t in spec16.tensors}
    assert rows["p1"].bytes == B * 4 * _rw(4, 10, vd="fp16") and rows["p1"].dtype == "int32"
    # fp16 runs (cuda fp16, TensorRT kHALF) write SpecToSpatial's output as float16 (issue 14 item 3)
    assert rows["s"].dtype == "float16" and rows["s"].bytes == B * 6 * 25 * 2
    assert rows["h1"].dtype == "float16" and rows["h1"].bytes == B * 16 * 2
    assert spec16.value_dtype == "fp16" and twin16.value_dtype is None
    # the spectral model's first SpecConv reads the fp32 input itself (no conversion), its head fp16
    assert not [t for t in spec16.tensors if t.op == "Cast"]
    with pytest.raises(ValueError, match="activation_dtype"):
        memory.plan(toy.toy_spatial(), activation_dtype="int8")


# ------------------------------------------------------------------------------ fusion rules


def _graph(nodes: list, inits: dict[str, np.ndarray], out: str, out_shape: list, in_shape=(1, 2, 4, 4)) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


W = {"w": np.ones((3, 2, 1, 1)), "b": np.zeros(3)}


def _rows(m: onnx.ModelProto) -> dict[str, memory.TensorRow]:
    return {t.name: t for t in memory.plan(m).tensors}


def test_relu_after_conv_is_fused_but_not_after_maxpool() -> None:
    m = _graph([
        helper.make_node("Conv", ["input", "w", "b"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Relu", ["p"], ["out"], name="relu2"),
    ], W, "out", [1, 3, 2, 2])
    rows = _rows(m)
    assert rows["r"].alias_of == "c" and rows["r"].bytes == 0
    assert rows["out"].alias_of is None and rows["out"].bytes == 3 * 2 * 2 * 4
    p = memory.plan(m)
    c = 3 * 16 * 4
    assert [s.total_bytes for s in p.steps] == [2 * 16 * 4 + c, c, c + 12 * 4, 24 * 4]


def test_no_fusion_when_the_producer_has_another_reader() -> None:
    m = _graph([
        helper.make_node("Conv", ["input", "w", "b"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Add", ["c", "r"], ["out"], name="add"),
    ], W, "out", [1, 3, 4, 4])
    rows = _rows(m)
    assert rows["r"].alias_of is None and rows["r"].bytes == 3 * 16 * 4
    assert rows["out"].alias_of is None  # Add of two activations is never fused


def test_matmul_bias_add_relu_clip_chain_is_one_buffer() -> None:
    inits = {"w": np.ones((32, 5)), "b": np.zeros(5), "lo": np.zeros(()), "hi": np.ones(())}
    m = _graph([
        helper.make_node("Flatten", ["input"], ["f"], name="flat", axis=1),
        helper.make_node("MatMul", ["f", "w"], ["mm"], name="mm"),
        helper.make_node("Add", ["mm", "b"], ["a"], name="bias"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Clip", ["r", "lo", "hi"], ["out"], name="clip"),
    ], inits, "out", [1, 5])
    rows = _rows(m)
    assert rows["f"].alias_of == "input"
    assert [rows[n].alias_of for n in ("a", "r", "out")] == ["mm", "mm", "mm"]
    assert rows["mm"].last == 4  # the graph output keeps the shared buffer alive to the end
    p = memory.plan(m)
    assert p.output_bytes == 20 and p.peak_bytes == 2 * 16 * 4 + 20


def test_relu_on_a_graph_output_producer_is_not_fused() -> None:
    m = _graph([
        helper.make_node("Conv", ["input", "w", "b"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["out"], name="relu"),
    ], W, "out", [1, 3, 4, 4])
    assert _rows(m)["out"].alias_of == "c"
    g = m.graph
    g.output.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 3, 4, 4]))
    assert _rows(m)["out"].alias_of is None  # in place would clobber an output


def test_order_of_nodes_in_the_file_does_not_matter() -> None:
    m = toy.toy_spectral(concat=True)
    want = memory.plan(m, batch=2)
    nodes = list(m.graph.node)[::-1]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    got = memory.plan(m, batch=2)
    assert got.peak_bytes == want.peak_bytes
    assert [s.node for s in got.steps] == [s.node for s in want.steps]


# ---------------------------------------------------------------------------------- output/CLI


def test_fp16_conversions_of_the_fp32_input() -> None:
    """Under fp16 accounting every computing standard op that reads the fp32 input (directly or
    through a view) is charged a float16 copy per read at its own step: what the native executor's
    casts allocate (tests/test_native_backend.py holds the two equal step by step)."""
    m = _graph([
        helper.make_node("Flatten", ["input"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "wm"], ["mm"], name="matmul"),
        helper.make_node("Add", ["flat", "flat"], ["twice"], name="add"),
        helper.make_node("Relu", ["mm"], ["r"], name="relu"),
        helper.make_node("Concat", ["r", "twice"], ["out"], name="cat", axis=1),
    ], {"wm": np.ones((32, 3))}, "out", [1, 35])
    p16 = memory.plan(m, activation_dtype="fp16")
    rows = {t.name: t for t in p16.tensors}
    casts = {t.name: (t.producer, t.bytes, t.first, t.last) for t in p16.tensors if t.op == "Cast"}
    # the view itself converts nothing; MatMul reads the input once, Add twice; Relu (fused in place)
    # and Concat read float16 tensors
    assert casts == {"flat as float16 (step 1)": ("matmul", 32 * 2, 1, 1),
                     "flat as float16 (step 2)": ("add", 2 * 32 * 2, 2, 2)}
    assert rows["flat"].alias_of == "input" and rows["flat"].dtype == "float32"
    inp, mm, twice = 32 * 4, 3 * 2, 32 * 2
    assert [s.live_bytes for s in p16.steps] == [inp, inp + 64 + mm, inp + 128 + mm + twice, mm + twice,
                                                 mm + twice + 35 * 2]
    assert "flat as float16 (step 2)" in p16.steps[2].live
    assert not [t for t in memory.plan(m).tensors if t.op == "Cast"]


def test_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "toy.onnx"
    onnx.save(toy.toy_spectral(), str(path))
    out = tmp_path / "plan.json"
    assert main(["memory", str(path), "--batch", "2", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "planned peak" in text and "6480 bytes" in text and "node 'pool1' (SpecPool)" in text
    assert "1*" in text and "= s" in text  # the peak step is starred
    doc = json.loads(out.read_text())
    assert doc["peak_bytes"] == 6480 and doc["batch"] == 2 and len(doc["steps"]) == 8
    assert {"name", "op", "shape", "dtype", "bytes", "first", "last", "alias_of"} <= set(doc["tensors"][0])
    assert main(["memory", str(path), "--activation-dtype", "fp16"]) == 0


def test_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_text("nope")
    assert main(["memory", str(bad)]) == 2
    assert "not an ONNX model" in capsys.readouterr().err
    path = tmp_path / "toy.onnx"
    onnx.save(toy.toy_spectral(max_batch=4), str(path))
    assert main(["memory", str(path), "--batch", "5"]) == 2
    assert "declared maximum 4" in capsys.readouterr().err
    m = toy.toy_spectral()
    for a in m.graph.node[0].attribute:
        if a.name == "capacity":
            a.i = 10**6
    with pytest.raises(ModelError, match="node 'conv1'.*capacity"):
        memory.plan(m)


def test_real_lenet_export(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    export = pytest.importorskip("specdeploy.export")
    from specdeploy import zoo

    calib = np.random.default_rng(0).standard_normal((8, 1, 32, 32)).astype(np.float32)
    # the paper block: its first SpecConv declares no chunk buffers (the hybrid's are held equal to the
    # library's in test_native_hybrid.py)
    spec = export.export_model(zoo.create("lenet5", "spectral", in_channels=1, width=0.25, block="paper"), tmp_path / "s.onnx",
                               batch=None, max_batch=8, value_dtype="fp16", calib_images=calib)
    twin = export.export_model(zoo.create("lenet5", "spatial", in_channels=1, width=0.25), tmp_path / "t.onnx",
                               batch=None, max_batch=8)
    ps = memory.plan(spec.path, batch=4, activation_dtype="fp16")
    pt = memory.plan(twin.path, batch=4, activation_dtype="fp16")
    first = ps.steps[0]
    # the dense input spectrum, the histograms and words per sample, two twiddle tables, alignment
    dense = 4 * 1 * packed.num_coeffs(36, 36) * 8
    assert first.op == "SpecConv" and dense < first.workspace_bytes <= dense + 4 * (4 * 600 + 12) + 2 * 8 * 36 + 6 * 256
    assert ps.peak_bytes == max(s.total_bytes for s in ps.steps)
    rows = {t.op: t for t in pt.tensors}
    assert rows["Relu"].alias_of is not None  # the twin's Conv+ReLU are fused
    assert pt.steps[0].op == "Conv" and pt.peak_bytes > 0
