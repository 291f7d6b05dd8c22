"""Tiny hand-built models that follow the export contract exactly (no torch, no exporter).

Why: the runtimes, the memory planner and the bench are tested on graphs whose every tensor is known
by construction, independent of the exporter; and a machine without torch can still smoke-test a
backend (``toy_spectral()`` -> ``runtime.load(...)``). Weights are random (seeded) and the input
is small (default 1 x 8 x 8), so the reference backend runs them in milliseconds.

The spectral toy: SpecConv (spatial in, k=3) -> SpecPool (halves) -> SpecConv (spectral, k=3)
[-> SpecConcat of both branches when ``concat``] -> SpecToSpatial -> Flatten -> Gemm -> Relu -> Gemm.
The spatial twin: Conv(pad 1) -> Relu -> MaxPool -> Conv -> Relu -> Flatten -> Gemm -> Relu -> Gemm.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from specdeploy import ops, packed
from specdeploy.metadata import META_CALIBRATION, META_DATA, META_MAX_BATCH, META_MODEL, META_VALUE_DTYPE

__all__ = ["toy_spectral", "toy_spatial", "IR_VERSION", "ONNX_OPSET"]

IR_VERSION = 8
ONNX_OPSET = 17


def _batch_dim(batch: int | None) -> int | str:
    return "batch" if batch is None else batch


def _meta(model: onnx.ModelProto, config: dict[str, Any], value_dtype: str, max_batch: int | None,
          data: str, calibration: dict[str, Any] | None) -> None:
    meta = {
        META_MODEL: json.dumps(config),
        META_VALUE_DTYPE: value_dtype,
        META_DATA: json.dumps({"name": data}),
    }
    if calibration is not None:
        meta[META_CALIBRATION] = json.dumps(calibration)
    if max_batch is not None:
        meta[META_MAX_BATCH] = str(max_batch)
    helper.set_model_props(model, meta)


def _finish(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], infos: list[onnx.ValueInfoProto],
            name: str, C: int, size: int, classes: int, batch: int | None, spectral: bool) -> onnx.ModelProto:
    b = _batch_dim(batch)
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [b, C, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [b, classes])], initializer=inits,
        value_info=infos,
    )
    imports = [helper.make_opsetid("", ONNX_OPSET)]
    if spectral:
        imports.append(helper.make_opsetid(ops.DOMAIN, ops.VERSION))
    m = helper.make_model(graph, opset_imports=imports, producer_name="specdeploy-toy")
    m.ir_version = IR_VERSION
    return m


def toy_spectral(
    *,
    batch: int | None = None,
    max_batch: int | None = 64,
    in_channels: int = 1,
    size: int = 8,
    channels: tuple[int, int] = (4, 6),
    classes: int = 10,
    beta: float = 0.1,
    value_dtype: str = "fp32",
    capacity_fraction: float | tuple[float, float, float] = 1.0,
    concat: bool = False,
    bias: bool = True,
    data: str = "mnist",
    seed: int = 0,
) -> onnx.ModelProto:
    """A small spectral model; ``capacity_fraction`` of C*F per packed op (tiny -> overflow)."""
    rng = np.random.default_rng(seed)
    c1, c2 = channels
    k = 3
    Hs1 = size + k - 1
    Hs2 = (Hs1 + 1) // 2
    fr = capacity_fraction if isinstance(capacity_fraction, tuple) else (capacity_fraction,) * 3

    def cap(C: int, Hs: int, f: float) -> int:
        return max(1, min(C * packed.num_coeffs(Hs, Hs), int(round(f * C * packed.num_coeffs(Hs, Hs)))))

    caps = {"conv1": cap(c1, Hs1, fr[0]), "pool1": cap(c1, Hs2, fr[1]), "conv2": cap(c2, Hs2, fr[2])}
    b = _batch_dim(batch)
    inits = [numpy_helper.from_array((rng.standard_normal((c1, in_channels, k, k)) * 0.5).astype(np.float32), "conv1.weight"),
             numpy_helper.from_array((rng.standard_normal((c2, c1, k, k)) * 0.3).astype(np.float32), "conv2.weight")]
    if bias:
        inits += [numpy_helper.from_array((rng.standard_normal(c1) * 0.1).astype(np.float32), "conv1.bias"),
                  numpy_helper.from_array((rng.standard_normal(c2) * 0.1).astype(np.float32), "conv2.bias")]
    common = dict(beta=float(beta), activation="tanh", value_dtype=value_dtype)
    nodes = [
        helper.make_node("SpecConv", ["input", "conv1.weight"] + (["conv1.bias"] if bias else []), ["p1"],
                         name="conv1", domain=ops.DOMAIN, in_domain="spatial", C=in_channels, Hs=Hs1, Ws=Hs1,
                         k=k, capacity=caps["conv1"], **common),
        helper.make_node("SpecPool", ["p1"], ["p2"], name="pool1", domain=ops.DOMAIN, C=c1, Hs=Hs1, Ws=Hs1,
                         out_Hs=Hs2, out_Ws=Hs2, capacity=caps["pool1"], value_dtype=value_dtype),
        helper.make_node("SpecConv", ["p2", "conv2.weight"] + (["conv2.bias"] if bias else []), ["p3"],
                         name="conv2", domain=ops.DOMAIN, in_domain="spectral", C=c1, Hs=Hs2, Ws=Hs2, k=k,
                         capacity=caps["conv2"], **common),
    ]
    infos = [
        helper.make_tensor_value_info("p1", TensorProto.INT32, [b, packed.row_words(c1, packed.num_coeffs(Hs1, Hs1), caps["conv1"], value_dtype)]),
        helper.make_tensor_value_info("p2", TensorProto.INT32, [b, packed.row_words(c1, packed.num_coeffs(Hs2, Hs2), caps["pool1"], value_dtype)]),
        helper.make_tensor_value_info("p3", TensorProto.INT32, [b, packed.row_words(c2, packed.num_coeffs(Hs2, Hs2), caps["conv2"], value_dtype)]),
    ]
    last, C_last = "p3", c2
    if concat:
        C_last = c1 + c2
        caps["cat"] = cap(C_last, Hs2, fr[2])
        nodes.append(helper.make_node("SpecConcat", ["p2", "p3"], ["p4"], name="cat", domain=ops.DOMAIN,
                                      C=[c1, c2], Hs=Hs2, Ws=Hs2, capacity=caps["cat"], value_dtype=value_dtype))
        infos.append(helper.make_tensor_value_info(
            "p4", TensorProto.INT32, [b, packed.row_words(C_last, packed.num_coeffs(Hs2, Hs2), caps["cat"], value_dtype)]))
        last = "p4"
    nodes.append(helper.make_node("SpecToSpatial", [last], ["s"], name="to_spatial", domain=ops.DOMAIN,
                                  C=C_last, Hs=Hs2, Ws=Hs2, value_dtype=value_dtype))
    infos.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, [b, C_last, Hs2, Hs2]))
    nodes, inits = _head(nodes, inits, "s", C_last * Hs2 * Hs2, classes, rng)
    m = _finish(nodes, inits, infos, "toy_spectral", in_channels, size, classes, batch, spectral=True)
    config = {"model": "toy", "domain": "spectral", "beta": float(beta), "in_channels": in_channels,
              "input_size": size, "num_classes": classes}
    calibration = {n: {"max": c, "p99": float(c), "mean": float(c) / 2, "samples": 1, "capacity": c} for n, c in caps.items()}
    _meta(m, config, value_dtype, max_batch if batch is None else None, data, calibration)
    return m


def _head(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], x: str, features: int, classes: int,
          rng: np.random.Generator, hidden: int = 16) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    inits = inits + [
        numpy_helper.from_array((rng.standard_normal((hidden, features)) / np.sqrt(features)).astype(np.float32), "fc1.weight"),
        numpy_helper.from_array(np.zeros(hidden, np.float32), "fc1.bias"),
        numpy_helper.from_array((rng.standard_normal((classes, hidden)) / np.sqrt(hidden)).astype(np.float32), "fc2.weight"),
        numpy_helper.from_array(np.zeros(classes, np.float32), "fc2.bias"),
    ]
    nodes = nodes + [
        helper.make_node("Flatten", [x], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc1.weight", "fc1.bias"], ["h1"], name="fc1", transB=1),
        helper.make_node("Relu", ["h1"], ["h1r"], name="relu_fc1"),
        helper.make_node("Gemm", ["h1r", "fc2.weight", "fc2.bias"], ["logits"], name="fc2", transB=1),
    ]
    return nodes, inits


def toy_spatial(
    *,
    batch: int | None = None,
    max_batch: int | None = 64,
    in_channels: int = 1,
    size: int = 8,
    channels: tuple[int, int] = (4, 6),
    classes: int = 10,
    data: str = "mnist",
    seed: int = 0,
) -> onnx.ModelProto:
    """The spatial twin of ``toy_spectral`` (BN folded into the convs, as the exporter writes it)."""
    rng = np.random.default_rng(seed)
    c1, c2 = channels
    inits = [
        numpy_helper.from_array((rng.standard_normal((c1, in_channels, 3, 3)) * 0.5).astype(np.float32), "conv1.weight"),
        numpy_helper.from_array((rng.standard_normal(c1) * 0.1).astype(np.float32), "conv1.bias"),
        numpy_helper.from_array((rng.standard_normal((c2, c1, 3, 3)) * 0.3).astype(np.float32), "conv2.weight"),
        numpy_helper.from_array((rng.standard_normal(c2) * 0.1).astype(np.float32), "conv2.bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv1.weight", "conv1.bias"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["m1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["m1", "conv2.weight", "conv2.bias"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
    ]
    half = size // 2
    nodes, inits = _head(nodes, inits, "r2", c2 * half * half, classes, rng)
    m = _finish(nodes, inits, [], "toy_spatial", in_channels, size, classes, batch, spectral=False)
    config = {"model": "toy", "domain": "spatial", "beta": 0.0, "in_channels": in_channels, "input_size": size,
              "num_classes": classes}
    _meta(m, config, "fp32", max_batch if batch is None else None, data, None)
    return m
