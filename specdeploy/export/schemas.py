"""ONNX schemas for the specdeploy op set, so the checker validates attributes and shape inference
produces the packed tensor shapes ([B, S] int32) from attributes and the batch dimension alone.

Registration is per process and idempotent (``register()``). Needs only ``onnx``, not torch.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper
from onnx.defs import OpSchema

from specdeploy import ops

_ATTR_TYPES = {
    "INT": OpSchema.AttrType.INT,
    "FLOAT": OpSchema.AttrType.FLOAT,
    "STRING": OpSchema.AttrType.STRING,
    "INTS": OpSchema.AttrType.INTS,
}

_OPTION = {"single": OpSchema.FormalParameterOption.Single, "optional": OpSchema.FormalParameterOption.Optional,
           "variadic": OpSchema.FormalParameterOption.Variadic}
_ELEM = {"int32": TensorProto.INT32, "float32": TensorProto.FLOAT}
#: every op's packed tensors; an op's own type constraints come from its descriptor (schema_types)
_PACKED_T = ("P", ["tensor(int32)"], "packed spectral map, int32 [B, S]")


class _InferHelpers:
    """What an op's ``infer_shape(ctx, h)`` needs from onnx, so the op modules never import it."""

    @staticmethod
    def attr(ctx: onnx.shape_inference.InferenceContext, name: str) -> object:
        a = ctx.get_attribute(name)
        if a is None:
            raise onnx.shape_inference.InferenceError(f"missing attribute '{name}'")
        return helper.get_attribute_value(a)

    @staticmethod
    def dtype(ctx: onnx.shape_inference.InferenceContext) -> str:
        v = _InferHelpers.attr(ctx, "value_dtype")
        return v.decode() if isinstance(v, bytes) else str(v)

    @staticmethod
    def set_output(ctx: onnx.shape_inference.InferenceContext, elem: str, dims: list[int]) -> None:
        """Output 0 gets [batch, *dims] where batch is copied from input 0 (value or symbol)."""
        out = helper.make_tensor_type_proto(_ELEM[elem], [None] + dims)
        t = ctx.get_input_type(0)
        if t is not None and t.tensor_type.HasField("shape") and len(t.tensor_type.shape.dim) > 0:
            out.tensor_type.shape.dim[0].CopyFrom(t.tensor_type.shape.dim[0])
        ctx.set_output_type(0, out)


def _schema(op: ops.OpDef) -> OpSchema:
    P = OpSchema.FormalParameter

    def params(ps: tuple[ops.SchemaParam, ...]) -> list[OpSchema.FormalParameter]:
        return [P(p.name, p.type_str, p.doc, param_option=_OPTION[p.option],
                  **({"is_homogeneous": True} if p.option == "variadic" else {})) for p in ps]

    attrs = [OpSchema.Attribute(name, _ATTR_TYPES[t], f"{op.name} attribute '{name}' (docs/ops.md)", required=True)
             for name, t in op.attributes.items()]
    types = [(n, list(ts), doc) for n, ts, doc in op.schema_types]
    used = {p.type_str for p in op.schema_inputs + op.schema_outputs}
    if "P" in used:
        types.append(_PACKED_T)
    schema = OpSchema(op.name, ops.DOMAIN, ops.VERSION, op.doc, inputs=params(op.schema_inputs),
                      outputs=params(op.schema_outputs), type_constraints=types, attributes=attrs)
    schema.set_type_and_shape_inference_function(lambda ctx: op.infer_shape(ctx, _InferHelpers))
    return schema


def register() -> None:
    """Register the op set's schemas with onnx (once per process)."""
    for op in ops.REGISTRY.values():
        if onnx.defs.has(op.name, ops.VERSION, ops.DOMAIN):
            continue
        onnx.defs.register_schema(_schema(op))
