"""ONNX schemas for the specdeploy op set, so the checker validates attributes and shape inference
produces the packed tensor shapes ([B, S] int32) from attributes and the batch dimension alone.

Registration is per process and idempotent (``register()``). Needs only ``onnx``, not torch.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper
from onnx.defs import OpSchema

from specdeploy import opset, packed

_ATTR_TYPES = {
    "INT": OpSchema.AttrType.INT,
    "FLOAT": OpSchema.AttrType.FLOAT,
    "STRING": OpSchema.AttrType.STRING,
    "INTS": OpSchema.AttrType.INTS,
}
_OPTIONAL = OpSchema.FormalParameterOption.Optional
_VARIADIC = OpSchema.FormalParameterOption.Variadic

_DOCS = {
    "SpecConv": "Spectral convolution, threshold at beta and tanh activation; packed output (docs/ops.md).",
    "SpecPool": "Spectral pooling: keep the lowest frequencies; packed in and out (docs/ops.md).",
    "SpecToSpatial": "Orthonormal inverse real 2-D FFT of a packed spectral map (docs/ops.md).",
    "SpecConcat": "Channel concatenation of packed spectral maps (docs/ops.md).",
}


def _attr(ctx: onnx.shape_inference.InferenceContext, name: str) -> object:
    a = ctx.get_attribute(name)
    if a is None:
        raise onnx.shape_inference.InferenceError(f"missing attribute '{name}'")
    return helper.get_attribute_value(a)


def _batch_dim(ctx: onnx.shape_inference.InferenceContext) -> onnx.TensorShapeProto.Dimension | None:
    t = ctx.get_input_type(0)
    if t is None or not t.tensor_type.HasField("shape") or len(t.tensor_type.shape.dim) == 0:
        return None
    return t.tensor_type.shape.dim[0]


def _set_output(ctx: onnx.shape_inference.InferenceContext, elem: int, dims: list[int]) -> None:
    """Output 0 gets [batch, *dims] where batch is copied from input 0 (value or symbol)."""
    out = helper.make_tensor_type_proto(elem, [None] + dims)
    b = _batch_dim(ctx)
    if b is not None:
        out.tensor_type.shape.dim[0].CopyFrom(b)
    ctx.set_output_type(0, out)


def _dtype(ctx: onnx.shape_inference.InferenceContext) -> str:
    v = _attr(ctx, "value_dtype")
    return v.decode() if isinstance(v, bytes) else str(v)


def _infer_conv(ctx: onnx.shape_inference.InferenceContext) -> None:
    w = ctx.get_input_type(1)
    if w is None or not w.tensor_type.HasField("shape") or not w.tensor_type.shape.dim[0].HasField("dim_value"):
        return  # output channels unknown: leave the output shape to value_info
    O = w.tensor_type.shape.dim[0].dim_value
    F = packed.num_coeffs(int(_attr(ctx, "Hs")), int(_attr(ctx, "Ws")))
    _set_output(ctx, TensorProto.INT32, [packed.row_words(O, F, int(_attr(ctx, "capacity")), _dtype(ctx))])


def _infer_pool(ctx: onnx.shape_inference.InferenceContext) -> None:
    F = packed.num_coeffs(int(_attr(ctx, "out_Hs")), int(_attr(ctx, "out_Ws")))
    _set_output(ctx, TensorProto.INT32, [packed.row_words(int(_attr(ctx, "C")), F, int(_attr(ctx, "capacity")), _dtype(ctx))])


def _infer_to_spatial(ctx: onnx.shape_inference.InferenceContext) -> None:
    _set_output(ctx, TensorProto.FLOAT, [int(_attr(ctx, "C")), int(_attr(ctx, "Hs")), int(_attr(ctx, "Ws"))])


def _infer_concat(ctx: onnx.shape_inference.InferenceContext) -> None:
    C = sum(int(c) for c in _attr(ctx, "C"))
    F = packed.num_coeffs(int(_attr(ctx, "Hs")), int(_attr(ctx, "Ws")))
    _set_output(ctx, TensorProto.INT32, [packed.row_words(C, F, int(_attr(ctx, "capacity")), _dtype(ctx))])


def _schema(op: str, inputs: list[OpSchema.FormalParameter], outputs: list[OpSchema.FormalParameter],
            constraints: list[tuple[str, list[str], str]]) -> OpSchema:
    attrs = [OpSchema.Attribute(name, _ATTR_TYPES[t], f"{op} attribute '{name}' (docs/ops.md)", required=True)
             for name, t in opset.ATTRIBUTES[op].items()]
    return OpSchema(op, opset.DOMAIN, opset.VERSION, _DOCS[op], inputs=inputs, outputs=outputs,
                    type_constraints=constraints, attributes=attrs)


def _build() -> list[OpSchema]:
    P = OpSchema.FormalParameter
    packed_t = ("P", ["tensor(int32)"], "packed spectral map, int32 [B, S]")
    conv = _schema(
        "SpecConv",
        [P("X", "TX", "spatial float [B,C,H,W] or packed int32 [B,S]"), P("W", "TF", "kernels [O,C,k,k]"),
         P("B", "TF", "bias [O]", param_option=_OPTIONAL)],
        [P("Y", "P", "packed output")],
        [("TX", ["tensor(float)", "tensor(float16)", "tensor(int32)"], "input"), ("TF", ["tensor(float)"], "weights"),
         packed_t],
    )
    conv.set_type_and_shape_inference_function(_infer_conv)
    pool = _schema("SpecPool", [P("X", "P", "packed input")], [P("Y", "P", "packed output")], [packed_t])
    pool.set_type_and_shape_inference_function(_infer_pool)
    to_spatial = _schema("SpecToSpatial", [P("X", "P", "packed input")], [P("Y", "T", "spatial [B,C,Hs,Ws]")],
                         [packed_t, ("T", ["tensor(float)"], "output")])
    to_spatial.set_type_and_shape_inference_function(_infer_to_spatial)
    concat = _schema("SpecConcat", [P("X", "P", "packed inputs", param_option=_VARIADIC, is_homogeneous=True)],
                     [P("Y", "P", "packed output")], [packed_t])
    concat.set_type_and_shape_inference_function(_infer_concat)
    return [conv, pool, to_spatial, concat]


def register() -> None:
    """Register the op set's schemas with onnx (once per process)."""
    for schema in _build():
        if onnx.defs.has(schema.name, schema.since_version, opset.DOMAIN):
            continue
        onnx.defs.register_schema(schema)
