"""Read an exported ONNX file, validate all of it, and work out every tensor's shape.

Why one validation before any backend sees the graph: ONNX Runtime's Python custom ops abort the
whole process on an exception, and a TensorRT plugin that gets a bad field fails deep inside the
engine build. So everything a specdeploy op could object to (op-set version, unknown op, a missing or
mistyped attribute, an attribute out of range, a packed input whose row size does not fit the op's
attributes, a batch over the declared maximum) is checked here, once, with ``specdeploy.ops`` (the
same checks every runtime uses), and reported as one ``ModelError`` naming the file, node and
attribute. The memory planner (``specdeploy.memory``) reuses the shapes worked out here.

Shapes: specdeploy ops' output shapes follow from their attributes, the weight shape and the batch
alone (DESIGN §3), so they are computed directly; the standard ops' shapes then come from ONNX shape
inference with those shapes as seeds. Never imports torch (runs on a Jetson).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from specdeploy import ops, packed
from specdeploy.metadata import META_CALIBRATION, META_DATA, META_MAX_BATCH, META_MODEL, META_VALUE_DTYPE
from specdeploy.runtime.errors import InputError, ModelError

try:  # onnx is an optional dependency of the package (extra "ort"); say so clearly when absent
    import onnx
    from onnx import AttributeProto, TensorProto, helper
except ImportError as _e:  # pragma: no cover - exercised only without onnx
    raise ImportError("specdeploy.runtime needs the 'onnx' package: pip install 'specdeploy[ort]'") from _e

__all__ = [
    "META_MODEL",
    "META_VALUE_DTYPE",
    "META_CALIBRATION",
    "META_DATA",
    "META_MAX_BATCH",
    "PACKED_OPS",
    "TensorInfo",
    "SpecNode",
    "ModelInfo",
    "read_model",
    "infer_tensors",
    "spec_output",
    "dense_coeffs",
]

_JSON_META = {META_MODEL: "model", META_CALIBRATION: "calibration", META_DATA: "data"}

#: ops whose output is a packed [B, S] int32 tensor (SpecToSpatial's is a float map)
PACKED_OPS = tuple(name for name, d in ops.REGISTRY.items() if d.packed_output)
_STANDARD_DOMAINS = ("", "ai.onnx")
_ATTR_TYPE_NAMES = {
    AttributeProto.INT: "INT", AttributeProto.FLOAT: "FLOAT", AttributeProto.STRING: "STRING",
    AttributeProto.INTS: "INTS", AttributeProto.FLOATS: "FLOATS", AttributeProto.STRINGS: "STRINGS",
    AttributeProto.TENSOR: "TENSOR", AttributeProto.GRAPH: "GRAPH",
}
# initializers small enough (and integer) to keep through shape inference, so Reshape targets resolve
_SMALL_INT_INIT = 64


@dataclass(frozen=True)
class TensorInfo:
    """A tensor's shape (None for a dimension inference could not resolve) and numpy dtype name."""

    shape: tuple[int | None, ...]
    dtype: str

    @property
    def known(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def nbytes(self, itemsize: int | None = None) -> int:
        """Bytes of the tensor (``itemsize`` overrides the dtype's, e.g. 2 for fp16 accounting)."""
        if not self.known:
            raise ValueError(f"shape {self.shape} is not fully known")
        size = np.dtype(self.dtype).itemsize if itemsize is None else itemsize
        return int(math.prod(self.shape)) * size  # type: ignore[arg-type]


@dataclass(frozen=True)
class SpecNode:
    """One validated specdeploy node: its position, name, op type, parsed attributes and tensors."""

    index: int
    name: str
    op: str
    attrs: dict[str, Any]
    inputs: tuple[str, ...]
    output: str

    @property
    def value_dtype(self) -> str:
        return self.attrs["value_dtype"]


@dataclass
class ModelInfo:
    """Everything a backend needs about a validated model file (the proto is the backend's to edit)."""

    path: Path | None
    model: "onnx.ModelProto"
    input_name: str
    input_shape: tuple[int | None, int, int, int]  # batch is None when dynamic
    output_name: str
    max_batch: int | None
    metadata: dict[str, Any]
    spec_nodes: list[SpecNode]
    overflow_taps: list[str]  # packed tensors whose sticky flag covers every op of the model
    weights: dict[str, TensorInfo] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How messages name this model: the file path, or '<in-memory model>'."""
        return str(self.path) if self.path is not None else "<in-memory model>"

    @property
    def name(self) -> str:
        return self.path.stem if self.path is not None else (self.model.graph.name or "model")

    @property
    def is_spectral(self) -> bool:
        return bool(self.spec_nodes)

    @property
    def value_dtype(self) -> str | None:
        """fp32/fp16 of the packed values (metadata, else the nodes'); None for a spatial model."""
        if not self.spec_nodes:
            return None
        meta = self.metadata.get("value_dtype")
        if meta:
            return str(meta)
        return self.spec_nodes[0].value_dtype

    @property
    def data_name(self) -> str | None:
        """The data set whose normalization the model was trained with (metadata "specdeploy.data")."""
        data = self.metadata.get("data")
        return data.get("name") if isinstance(data, dict) else None

    @property
    def batch(self) -> int | None:
        return self.input_shape[0]

    def check_batch(self, batch: int) -> int:
        """Return ``batch`` if the model accepts it; else InputError (static batch, declared max)."""
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise InputError(f"{self.label}: batch must be a positive integer, got {batch!r}")
        if self.batch is not None and batch != self.batch:
            raise InputError(f"{self.label}: the model was exported with static batch {self.batch}, got batch {batch}")
        if self.max_batch is not None and batch > self.max_batch:
            raise InputError(
                f"{self.label}: batch {batch} is over the declared maximum {self.max_batch} "
                f"(metadata '{META_MAX_BATCH}'); re-export with a larger max_batch"
            )
        return int(batch)


# ------------------------------------------------------------------------------------------ loading


def _load_proto(model: "str | Path | onnx.ModelProto") -> tuple["onnx.ModelProto", Path | None]:
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)  # backends edit the proto in memory; never the caller's
        return copy, None
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # DecodeError, or external data that cannot be read
        raise ModelError(f"{path}: not an ONNX model file ({type(e).__name__}: {e})") from None
    if proto.ir_version <= 0 or not proto.graph.node or not proto.graph.input or not proto.graph.output:
        raise ModelError(f"{path}: not an ONNX model file (no ir_version, graph nodes, inputs or outputs)")
    return proto, path


def _attr_value(a: "onnx.AttributeProto", where: str) -> Any:
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelError(f"{where}: attribute '{a.name}' is not valid UTF-8") from None
    if isinstance(v, list):
        return [int(x) if isinstance(x, (int, np.integer)) else x for x in v]
    return v


def _parse_attrs(node: "onnx.NodeProto", where: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    try:
        ops.check_required(node.op_type, {a.name: None for a in node.attribute}, where)
    except ops.OpAttributeError as e:
        raise ModelError(str(e)) from None
    expected = ops.ATTRIBUTES[node.op_type]
    for a in node.attribute:
        got = _ATTR_TYPE_NAMES.get(a.type, str(a.type))
        if got != expected[a.name]:
            raise ModelError(f"{where}: attribute '{a.name}' has type {got}, expected {expected[a.name]}")
        attrs[a.name] = _attr_value(a, where)
    return attrs


def _metadata(proto: "onnx.ModelProto", label: str) -> dict[str, Any]:
    """Parsed metadata_props: JSON fields decoded, max_batch an int, the rest kept as strings."""
    out: dict[str, Any] = {}
    for p in proto.metadata_props:
        if p.key in _JSON_META:
            try:
                out[_JSON_META[p.key]] = json.loads(p.value)
            except json.JSONDecodeError as e:
                raise ModelError(f"{label}: metadata '{p.key}' is not valid JSON ({e})") from None
        elif p.key == META_MAX_BATCH:
            try:
                mb = int(p.value)
            except ValueError:
                raise ModelError(f"{label}: metadata '{p.key}' = {p.value!r} is not an integer") from None
            if mb < 1:
                raise ModelError(f"{label}: metadata '{p.key}' = {mb} must be >= 1")
            out["max_batch"] = mb
        elif p.key == META_VALUE_DTYPE:
            if p.value not in packed.VALUE_DTYPES:
                raise ModelError(f"{label}: metadata '{p.key}' = {p.value!r}, expected one of {packed.VALUE_DTYPES}")
            out["value_dtype"] = p.value
        else:
            out[p.key] = p.value
    return out


def _node_label(label: str, node: "onnx.NodeProto", index: int) -> str:
    name = node.name or f"#{index}"
    return f"{label}: node '{name}' ({node.op_type})"


def _sort_topologically(proto: "onnx.ModelProto", label: str) -> None:
    """Put the nodes in topological order in place (stable: file order wherever it already is one).

    ONNX requires that order but not every writer keeps it; shape inference and the reference
    evaluator walk the list as is, and the memory planner's steps are this order.
    """
    g = proto.graph
    nodes = list(g.node)
    have = {vi.name for vi in g.input} | {t.name for t in g.initializer}
    order: list[int] = []
    pending = list(range(len(nodes)))
    while pending:
        rest = []
        for i in pending:
            if all(not x or x in have for x in nodes[i].input):
                order.append(i)
                have.update(nodes[i].output)
            else:
                rest.append(i)
        if len(rest) == len(pending):
            missing = sorted({x for i in rest for x in nodes[i].input if x and x not in have})
            raise ModelError(f"{label}: the graph has a cycle or reads undefined tensors: {', '.join(missing[:5])}")
        pending = rest
    if order != list(range(len(nodes))):
        del g.node[:]
        g.node.extend(nodes[i] for i in order)


def _check_opsets(proto: "onnx.ModelProto", label: str) -> None:
    imports = {d.domain: d.version for d in proto.opset_import}
    if ops.DOMAIN in imports and imports[ops.DOMAIN] != ops.VERSION:
        raise ModelError(
            f"{label}: imports op set '{ops.DOMAIN}' version {imports[ops.DOMAIN]}; this runtime implements "
            f"version {ops.VERSION} only"
        )
    for i, node in enumerate(proto.graph.node):
        if node.domain == ops.DOMAIN:
            if ops.DOMAIN not in imports:
                raise ModelError(f"{_node_label(label, node, i)}: domain '{ops.DOMAIN}' is not in the opset imports")
        elif node.domain not in _STANDARD_DOMAINS:
            raise ModelError(
                f"{_node_label(label, node, i)}: domain '{node.domain}' is not supported "
                f"(only standard ONNX ops and '{ops.DOMAIN}')"
            )


def _static_shape(t: "onnx.TensorProto") -> tuple[int, ...]:
    return tuple(int(d) for d in t.dims)


def _weight_shapes(proto: "onnx.ModelProto") -> dict[str, TensorInfo]:
    """Initializers and Constant-node outputs: weights, reported apart from activations."""
    out = {
        t.name: TensorInfo(_static_shape(t), np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).name)
        for t in proto.graph.initializer
    }
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.domain in _STANDARD_DOMAINS:
            for a in node.attribute:
                if a.name == "value" and a.type == AttributeProto.TENSOR:
                    t = a.t
                    out[node.output[0]] = TensorInfo(
                        _static_shape(t), np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).name
                    )
    return out


def _weight_shapes_of(node: SpecNode, weights: dict[str, TensorInfo]) -> list[tuple[int | None, ...] | None]:
    return [weights[x].shape if x in weights else None for x in node.inputs]


def spec_output(node: SpecNode, weights: dict[str, TensorInfo], batch: int | None) -> TensorInfo:
    """Output shape of a specdeploy node from its attributes, its weight shape and the batch."""
    shape, dtype = ops.REGISTRY[node.op].output(node.attrs, _weight_shapes_of(node, weights))
    return TensorInfo((batch, *shape), dtype)


def dense_coeffs(node: SpecNode, weights: dict[str, TensorInfo]) -> int:
    """C_out * F of a packed-output node: the coefficient count its kept fraction is relative to."""
    fn = ops.REGISTRY[node.op].dense_coeffs
    if fn is None:
        raise ValueError(f"{node.op} has no packed output")
    return fn(node.attrs, _weight_shapes_of(node, weights))


def _elem(vi: "onnx.ValueInfoProto") -> tuple[int, tuple[int | str | None, ...] | None]:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return tt.elem_type, None
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return tt.elem_type, tuple(dims)


def infer_tensors(
    proto: "onnx.ModelProto", spec_nodes: list[SpecNode], weights: dict[str, TensorInfo], batch: int
) -> dict[str, TensorInfo]:
    """Shape and dtype of every activation tensor (graph inputs included) at a concrete batch.

    Works on a light copy of the graph: large initializers become typed inputs (their values are
    not needed, only their shapes), small integer ones stay so Reshape targets resolve; the graph
    input gets the batch; specdeploy outputs are seeded from ``spec_output``; ONNX shape inference
    fills in the rest. Weights are not in the result (see ``ModelInfo.weights``).
    """
    g = proto.graph
    keep_inits = [
        t for t in g.initializer
        if t.data_type in (TensorProto.INT64, TensorProto.INT32) and math.prod(t.dims) <= _SMALL_INT_INIT
    ]
    kept = {t.name for t in keep_inits}
    init_names = {t.name for t in g.initializer}
    inputs = []
    for vi in g.input:
        if vi.name in init_names:
            continue
        elem, dims = _elem(vi)
        shape = [batch] + [d if isinstance(d, int) else None for d in (dims or ())[1:]]
        inputs.append(helper.make_tensor_value_info(vi.name, elem, shape))
    for t in g.initializer:
        if t.name not in kept:
            inputs.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    seeds = [
        helper.make_tensor_value_info(
            n.output, TensorProto.INT32 if spec_output(n, weights, batch).dtype == "int32" else TensorProto.FLOAT,
            list(spec_output(n, weights, batch).shape),
        )
        for n in spec_nodes
    ]
    outputs = [helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, None) for o in g.output]
    light = helper.make_graph(list(g.node), g.name or "graph", inputs, outputs, keep_inits, value_info=seeds)
    m = helper.make_model(light, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
    try:
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
    except Exception as e:  # an inconsistent standard part of the graph
        raise ModelError(f"ONNX shape inference failed: {e}") from None
    out: dict[str, TensorInfo] = {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.name in weights or not vi.type.HasField("tensor_type"):
            continue
        elem, dims = _elem(vi)
        if dims is None or elem == TensorProto.UNDEFINED:
            continue
        shape = tuple(d if isinstance(d, int) else None for d in dims)
        out[vi.name] = TensorInfo(shape, np.dtype(helper.tensor_dtype_to_np_dtype(elem)).name)
    for n in spec_nodes:  # authoritative: from the attributes
        out[n.output] = spec_output(n, weights, batch)
    return out


# -------------------------------------------------------------------------------------- validation


def _spec_node(proto_node: "onnx.NodeProto", index: int, label: str) -> SpecNode:
    where = _node_label(label, proto_node, index)
    if proto_node.op_type not in ops.REGISTRY:
        raise ModelError(
            f"{where}: unknown op type '{proto_node.op_type}' in domain '{ops.DOMAIN}'; known: {', '.join(ops.OPS)}"
        )
    d = ops.REGISTRY[proto_node.op_type]
    attrs = _parse_attrs(proto_node, where)
    n_in = len(proto_node.input)
    if d.n_inputs is not None and not d.n_inputs[0] <= n_in <= d.n_inputs[1]:
        raise ModelError(f"{where}: has {n_in} inputs, expected {d.inputs_doc}")
    if len(proto_node.output) != 1:
        raise ModelError(f"{where}: has {len(proto_node.output)} outputs, expected 1")
    inputs = tuple(proto_node.input)
    optional = [i for i in range(len(inputs)) if d.n_inputs is not None and i >= d.n_inputs[0]]
    while inputs and not inputs[-1] and len(inputs) - 1 in optional:
        inputs = inputs[:-1]  # an empty name is ONNX's way of omitting an optional input
    if "" in inputs:
        raise ModelError(f"{where}: input {inputs.index('')} has an empty name (only SpecConv's bias is optional)")
    return SpecNode(index, proto_node.name or f"#{index}", proto_node.op_type, attrs, inputs, proto_node.output[0])


def _check_attrs(node: SpecNode, weights: dict[str, TensorInfo], label: str) -> None:
    """Attribute ranges (the op's ``check_attrs``) before any shape is computed from them.

    SpecConv's check also wants the input shape; the one its attributes imply is checked here and the
    real one in ``_check_node`` once shapes are inferred.
    """
    node_label = f"{label}: node '{node.name}'"
    try:
        ops.REGISTRY[node.op].check_attrs(node, weights, node_label)
    except (ops.OpAttributeError, packed.PackedFormatError) as e:
        msg = str(e)
        raise ModelError(msg if msg.startswith(label) else f"{node_label} ({node.op}): {msg}") from None


def _check_node(
    node: SpecNode, tensors: dict[str, TensorInfo], weights: dict[str, TensorInfo], label: str
) -> None:
    """Attributes in range (the op's ``check_node``) and every input's shape and dtype consistent with them."""
    where = f"{label}: node '{node.name}' ({node.op})"
    a = node.attrs

    def info(name: str, what: str) -> TensorInfo:
        t = tensors.get(name) or weights.get(name)
        if t is None:
            raise ModelError(f"{where}: cannot determine the shape of {what} '{name}'")
        return t

    def packed_in(name: str, what: str, C: int, F: int) -> None:
        t = info(name, what)
        if t.dtype != "int32" or len(t.shape) != 2 or not isinstance(t.shape[1], int):
            raise ModelError(f"{where}: {what} '{name}' is {t.dtype} {list(t.shape)}, expected packed int32 [B, S]")
        try:
            packed.Layout.from_row_words(C, F, t.shape[1], a["value_dtype"])
        except packed.PackedFormatError as e:
            raise ModelError(f"{where}: {what} '{name}' has the wrong row size: {e}") from None

    try:
        ops.REGISTRY[node.op].check_node(node, info, packed_in, f"{label}: node '{node.name}'")
    except (ops.OpAttributeError, packed.PackedFormatError) as e:
        msg = str(e)
        raise ModelError(msg if msg.startswith(label) else f"{where}: {msg}") from None


def _check_declared(proto: "onnx.ModelProto", tensors: dict[str, TensorInfo], spec_nodes: list[SpecNode], label: str) -> None:
    """A value_info the exporter wrote for a specdeploy output must agree with the attributes."""
    outs = {n.output: n for n in spec_nodes}
    for vi in list(proto.graph.value_info) + list(proto.graph.output):
        n = outs.get(vi.name)
        if n is None:
            continue
        elem, dims = _elem(vi)
        want = tensors[vi.name]
        want_elem = TensorProto.INT32 if want.dtype == "int32" else TensorProto.FLOAT
        if elem not in (TensorProto.UNDEFINED, want_elem):
            raise ModelError(f"{label}: node '{n.name}' ({n.op}): value_info of '{vi.name}' has elem_type {elem}, "
                             f"the op produces {want.dtype}")
        if dims is None:
            continue
        if len(dims) != len(want.shape) or any(
            isinstance(d, int) and d != w for d, w in zip(dims[1:], want.shape[1:])
        ):
            raise ModelError(
                f"{label}: node '{n.name}' ({n.op}): value_info of '{vi.name}' says {list(dims)}, but the attributes "
                f"give [B, {', '.join(str(s) for s in want.shape[1:])}]"
            )


def _overflow_taps(spec_nodes: list[SpecNode], graph_outputs: set[str]) -> list[str]:
    """Packed tensors that end the spectral part: read by SpecToSpatial, by no specdeploy op, or an output.

    ``overflowed`` is sticky (each op ORs its inputs' flags), so the OR over these covers every op.
    """
    packed_out = [n.output for n in spec_nodes if n.op in PACKED_OPS]
    read_by_spectral_packed = {i for n in spec_nodes if n.op in PACKED_OPS for i in n.inputs}
    return [t for t in packed_out if t not in read_by_spectral_packed or t in graph_outputs]


def read_model(model: "str | Path | onnx.ModelProto") -> ModelInfo:
    """Load and validate a model file (or proto); raise one ModelError naming file, node and attribute."""
    proto, path = _load_proto(model)
    label = str(path) if path is not None else "<in-memory model>"
    _check_opsets(proto, label)
    _sort_topologically(proto, label)
    meta = _metadata(proto, label)
    g = proto.graph
    init_names = {t.name for t in g.initializer}
    real_inputs = [vi for vi in g.input if vi.name not in init_names]
    if len(real_inputs) != 1:
        raise ModelError(f"{label}: expected one graph input (the image batch), found {[v.name for v in real_inputs]}")
    vin = real_inputs[0]
    elem, dims = _elem(vin)
    if elem != TensorProto.FLOAT or dims is None or len(dims) != 4 or not all(isinstance(d, int) for d in dims[1:]):
        raise ModelError(f"{label}: graph input '{vin.name}' must be float32 [B, C, H, W] with static C, H, W, "
                         f"found elem_type {elem} shape {None if dims is None else list(dims)}")
    batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
    max_batch = meta.get("max_batch")
    if batch is not None and max_batch is not None and batch > max_batch:
        raise ModelError(f"{label}: static batch {batch} is over the declared maximum {max_batch}")

    spec_nodes = [_spec_node(n, i, label) for i, n in enumerate(g.node) if n.domain == ops.DOMAIN]
    weights = _weight_shapes(proto)
    for n in spec_nodes:
        _check_attrs(n, weights, label)
    try:
        tensors = infer_tensors(proto, spec_nodes, weights, batch or 1)
    except ModelError as e:
        raise ModelError(f"{label}: {e}") from None
    for n in spec_nodes:
        _check_node(n, tensors, weights, label)
    _check_declared(proto, tensors, spec_nodes, label)
    out = g.output[0]
    return ModelInfo(
        path=path, model=proto, input_name=vin.name,
        input_shape=(batch, int(dims[1]), int(dims[2]), int(dims[3])),  # type: ignore[arg-type]
        output_name=out.name, max_batch=max_batch, metadata=meta, spec_nodes=spec_nodes,
        overflow_taps=_overflow_taps(spec_nodes, {o.name for o in g.output}), weights=weights,
    )
