"""Zoo model -> ONNX graph with onnx.helper: standard ops plus the specdeploy op set.

The graph is written node by node from the model's modules rather than traced, so every tensor
has a known name, shape and dtype, BN and the spectral normalization are folded explicitly, and an
unsupported layer is an error naming it. Spectral models and twins go through the same walker.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from specdeploy import __version__, ops, packed, zoo
from specdeploy.metadata import META_MAX_BATCH, META_MODEL, META_VALUE_DTYPE
from specdeploy.ops import spec_concat, spec_conv, spec_pool, spec_to_spatial
from specdeploy.nn import SpecConcat, SpecConv2d, SpecPool2d, SpecToSpatial, fold_normalization

ONNX_OPSET = 17
IR_VERSION = 8
INPUT = "input"
OUTPUT = "logits"


class ExportError(ValueError):
    """The model cannot be exported (unsupported layer, bad option)."""


@dataclass
class Spectral:
    """A packed spectral tensor in the graph."""

    C: int
    Hs: int
    Ws: int
    capacity: int

    @property
    def F(self) -> int:
        return packed.num_coeffs(self.Hs, self.Ws)


@dataclass
class GraphWriter:
    """Accumulates nodes, initializers and value_info while walking a model."""

    batch: int | str
    value_dtype: str
    capacities: dict[str, int]
    beta: float | None
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: list[onnx.TensorProto] = field(default_factory=list)
    infos: list[onnx.ValueInfoProto] = field(default_factory=list)
    spectral: dict[str, Spectral] = field(default_factory=dict)
    shapes: dict[str, list[int]] = field(default_factory=dict)
    counter: int = 0

    def name(self, base: str) -> str:
        self.counter += 1
        return f"{base}_{self.counter}"

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def float_info(self, name: str, dims: list[int]) -> None:
        self.shapes[name] = dims
        self.infos.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [self.batch] + dims))

    def packed_info(self, name: str, t: Spectral) -> None:
        self.spectral[name] = t
        S = packed.row_words(t.C, t.F, t.capacity, self.value_dtype)
        self.infos.append(helper.make_tensor_value_info(name, TensorProto.INT32, [self.batch, S]))

    def capacity(self, node: str, C: int, F: int) -> int:
        """The calibrated capacity of a node, or the dense worst case C*F without calibration."""
        return int(self.capacities.get(node, C * F))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """Conv (no bias) followed by BN in eval mode == Conv with w' = w*g/s, b' = beta - mean*g/s."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = conv.weight * scale[:, None, None, None]
    b = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        b = b + conv.bias * scale
    return _np(w), _np(b)


def _spec_node(g: GraphWriter, op: str, inputs: list[str], out: str, node: str, **attrs: Any) -> None:
    """Append a specdeploy node; its attributes must be exactly the op's (``specdeploy.ops``), so an
    attribute added to an op module and forgotten here fails at export, not in a runtime."""
    ops.get(op, node).check_required(attrs, node)
    g.nodes.append(helper.make_node(op, inputs, [out], name=node, domain=ops.DOMAIN, **attrs))


def _emit_spec_conv(g: GraphWriter, m: SpecConv2d, x: str, path: str) -> str:
    if m.norm:
        raise ExportError(f"{path}: SpecConv2d still has its normalization; fold it first (fold_normalization)")
    beta = m.beta if g.beta is None else g.beta
    out = g.name("spec")
    node = path or out
    F = packed.num_coeffs(m.Hs, m.Ws)
    cap = g.capacity(node, m.out_channels, F)
    inputs = [x, g.init(f"{node}.weight", _np(m.weight))]
    if m.bias is not None:
        inputs.append(g.init(f"{node}.bias", _np(m.bias)))
    _spec_node(
        g, spec_conv.NAME, inputs, out, node,
        in_domain=m.in_domain, C=m.in_channels, Hs=m.Hs, Ws=m.Ws, k=m.kernel_size, beta=float(beta),
        activation=m.activation, capacity=cap, value_dtype=g.value_dtype,
    )
    g.packed_info(out, Spectral(m.out_channels, m.Hs, m.Ws, cap))
    return out


def _emit_spec_pool(g: GraphWriter, m: SpecPool2d, x: str, path: str) -> str:
    t = g.spectral[x]
    out = g.name("spec")
    node = path or out
    cap = g.capacity(node, t.C, packed.num_coeffs(m.out_Hs, m.out_Ws))
    _spec_node(
        g, spec_pool.NAME, [x], out, node, C=t.C, Hs=t.Hs, Ws=t.Ws, out_Hs=m.out_Hs,
        out_Ws=m.out_Ws, capacity=cap, value_dtype=g.value_dtype,
    )
    g.packed_info(out, Spectral(t.C, m.out_Hs, m.out_Ws, cap))
    return out


def _emit_concat(g: GraphWriter, xs: list[str], path: str) -> str:
    if all(x in g.spectral for x in xs):
        ts = [g.spectral[x] for x in xs]
        out = g.name("spec")
        node = path or out
        C = sum(t.C for t in ts)
        cap = g.capacity(node, C, ts[0].F)
        _spec_node(
            g, spec_concat.NAME, xs, out, node, C=[t.C for t in ts], Hs=ts[0].Hs,
            Ws=ts[0].Ws, capacity=cap, value_dtype=g.value_dtype,
        )
        g.packed_info(out, Spectral(C, ts[0].Hs, ts[0].Ws, cap))
        return out
    out = g.name("concat")
    g.nodes.append(helper.make_node("Concat", xs, [out], name=path or out, axis=1))
    dims = list(g.shapes[xs[0]])
    dims[0] = sum(g.shapes[x][0] for x in xs)
    g.float_info(out, dims)
    return out


def _emit_conv(g: GraphWriter, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, x: str, path: str) -> str:
    if conv.groups != 1 or conv.dilation != (1, 1) or conv.stride != (1, 1):
        raise ExportError(f"{path}: only stride-1, undilated, ungrouped Conv2d is supported")
    w, b = _fold_bn(conv, bn) if bn is not None else (_np(conv.weight), _np(conv.bias) if conv.bias is not None else None)
    out = g.name("conv")
    inputs = [x, g.init(f"{path}.weight", w)]
    if b is not None:
        inputs.append(g.init(f"{path}.bias", b))
    k = conv.kernel_size[0]
    p = conv.padding[0]
    g.nodes.append(helper.make_node("Conv", inputs, [out], name=path, kernel_shape=[k, k], pads=[p, p, p, p]))
    C, H, W = g.shapes[x]
    g.float_info(out, [conv.out_channels, H + 2 * p - k + 1, W + 2 * p - k + 1])
    return out


def _unary(g: GraphWriter, op: str, x: str, path: str, dims: list[int] | None = None, **attrs: Any) -> str:
    out = g.name(op.lower())
    g.nodes.append(helper.make_node(op, [x], [out], name=path or out, **attrs))
    g.float_info(out, dims if dims is not None else g.shapes[x])
    return out


def emit(g: GraphWriter, m: nn.Module, x: str, path: str) -> str:
    """Append the nodes of module ``m`` applied to tensor ``x``; returns the output tensor name."""
    if isinstance(m, SpecConv2d):
        return _emit_spec_conv(g, m, x, path)
    if isinstance(m, SpecPool2d):
        return _emit_spec_pool(g, m, x, path)
    if isinstance(m, SpecToSpatial):
        t = g.spectral[x]
        out = g.name("spatial")
        _spec_node(g, spec_to_spatial.NAME, [x], out, path or out, C=t.C, Hs=t.Hs, Ws=t.Ws, value_dtype=g.value_dtype)
        g.float_info(out, [t.C, t.Hs, t.Ws])
        return out
    if isinstance(m, zoo.DenseLayer):
        y = emit(g, m.conv, emit(g, m.bottleneck, x, f"{path}.bottleneck"), f"{path}.conv")
        return _emit_concat(g, [x, y], f"{path}.concat")
    if isinstance(m, nn.Sequential):
        mods = list(m.named_children())
        i = 0
        while i < len(mods):
            name, child = mods[i]
            sub = f"{path}.{name}" if path else name
            nxt = mods[i + 1][1] if i + 1 < len(mods) else None
            if isinstance(child, nn.Conv2d):
                bn = nxt if isinstance(nxt, nn.BatchNorm2d) else None
                x = _emit_conv(g, child, bn, x, sub)
                i += 2 if bn is not None else 1
                continue
            x = emit(g, child, x, sub)
            i += 1
        return x
    if isinstance(m, (nn.Identity, nn.Dropout)):
        return x
    if isinstance(m, nn.ReLU):
        return _unary(g, "Relu", x, path)
    if isinstance(m, nn.MaxPool2d):
        k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        C, H, W = g.shapes[x]
        return _unary(g, "MaxPool", x, path, [C, H // k, W // k], kernel_shape=[k, k], strides=[k, k])
    if isinstance(m, nn.Flatten):
        return _unary(g, "Flatten", x, path, [int(np.prod(g.shapes[x]))], axis=1)
    if isinstance(m, nn.Linear):
        out = g.name("gemm")
        inputs = [x, g.init(f"{path}.weight", _np(m.weight))]
        if m.bias is not None:
            inputs.append(g.init(f"{path}.bias", _np(m.bias)))
        g.nodes.append(helper.make_node("Gemm", inputs, [out], name=path, transB=1))
        g.float_info(out, [m.out_features])
        return out
    raise ExportError(f"{path or 'model'}: unsupported layer {type(m).__name__} for export")


def prepare(model: zoo.ZooModel) -> zoo.ZooModel:
    """An eval-mode copy with the spectral normalization folded into the kernels."""
    m = copy.deepcopy(model).cpu().eval()
    return fold_normalization(m)


def build_graph(
    model: zoo.ZooModel,
    *,
    batch: int | None = 1,
    max_batch: int | None = None,
    value_dtype: str = "fp32",
    beta: float | None = None,
    capacities: dict[str, int] | None = None,
    metadata: dict[str, Any] | None = None,
) -> onnx.ModelProto:
    """The ONNX model of a (prepared) zoo model; ``batch=None`` makes the batch dynamic up to ``max_batch``."""
    if value_dtype not in packed.VALUE_DTYPES:
        raise ExportError(f"value_dtype must be one of {packed.VALUE_DTYPES}, got {value_dtype!r}")
    if beta is not None and (not math.isfinite(beta) or beta < 0):
        raise ExportError(f"beta must be a finite number >= 0, got {beta}")
    if batch is not None and batch < 1:
        raise ExportError(f"batch must be >= 1, got {batch}")
    if batch is None and (max_batch is None or max_batch < 1):
        raise ExportError("a dynamic batch needs a declared maximum (max_batch >= 1)")
    cfg = model.config
    g = GraphWriter(batch=batch if batch is not None else "batch", value_dtype=value_dtype,
                    capacities=capacities or {}, beta=beta)
    g.shapes[INPUT] = [cfg.in_channels, cfg.input_size, cfg.input_size]
    x = emit(g, model.features, INPUT, "features")
    x = emit(g, model.to_spatial, x, "to_spatial")
    x = emit(g, model.head, x, "head")
    # the last node's output becomes the graph output "logits"
    g.nodes[-1].output[0] = OUTPUT
    g.infos = [vi for vi in g.infos if vi.name != x]
    graph = helper.make_graph(
        g.nodes, f"specdeploy_{cfg.model}_{cfg.domain}",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [g.batch] + g.shapes[INPUT])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [g.batch, cfg.num_classes])],
        initializer=g.inits, value_info=g.infos,
    )
    imports = [helper.make_opsetid("", ONNX_OPSET)]
    if g.spectral:
        imports.append(helper.make_opsetid(ops.DOMAIN, ops.VERSION))
    onnx_model = helper.make_model(graph, opset_imports=imports, producer_name="specdeploy",
                                   producer_version=__version__)
    onnx_model.ir_version = IR_VERSION
    model_meta = cfg.to_dict()
    if beta is not None and cfg.domain == "spectral":
        model_meta["beta"] = float(beta)
    meta = {META_MODEL: json.dumps(model_meta), META_VALUE_DTYPE: value_dtype, **(metadata or {})}
    if batch is None:
        meta[META_MAX_BATCH] = str(int(max_batch))  # type: ignore[arg-type]
    helper.set_model_props(onnx_model, meta)
    return onnx_model
