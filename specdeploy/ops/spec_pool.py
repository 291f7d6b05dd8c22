"""SpecPool: spectral pooling, keep the lowest frequencies; packed in and out (DESIGN §2, docs/ops.md).

Every fact of the op that is not a kernel lives here (docs/adding-an-op.md). Numpy only.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from specdeploy import packed
from specdeploy.ops import _base as base
from specdeploy.ops._base import NativeCall, OpDef, SchemaParam

NAME = "SpecPool"
ATTRIBUTES = {
    "C": "INT", "Hs": "INT", "Ws": "INT", "out_Hs": "INT", "out_Ws": "INT", "capacity": "INT", "value_dtype": "STRING",
}


def check(
    *, C: int, Hs: int, Ws: int, out_Hs: int, out_Ws: int, capacity: int, value_dtype: str, node: str = NAME
) -> None:
    """Validate a SpecPool node."""
    base.size(node, C, Hs, Ws)
    if not 1 <= base.int_at_least(node, "out_Hs", out_Hs, 1) <= Hs:
        raise base.fail(node, "out_Hs", out_Hs, f"must be in 1..Hs={Hs}")
    if not 1 <= base.int_at_least(node, "out_Ws", out_Ws, 1) <= Ws:
        raise base.fail(node, "out_Ws", out_Ws, f"must be in 1..Ws={Ws}")
    base.choice(node, "value_dtype", value_dtype, packed.VALUE_DTYPES)
    base.capacity(node, capacity, C, packed.num_coeffs(out_Hs, out_Ws))


def _check_attrs(node: Any, weights: dict[str, Any], label: str) -> None:
    check(node=label, **node.attrs)


def _check_node(node: Any, info: Any, packed_in: Any, label: str) -> None:
    a = node.attrs
    check(node=label, **a)
    packed_in(node.inputs[0], "input", a["C"], packed.num_coeffs(a["Hs"], a["Ws"]))


def _dense_coeffs(a: dict[str, Any], weight_shapes: Sequence[Any]) -> int:
    return a["C"] * packed.num_coeffs(a["out_Hs"], a["out_Ws"])


def _output(a: dict[str, Any], weight_shapes: Sequence[Any]) -> tuple[tuple[int, ...], str]:
    F = packed.num_coeffs(a["out_Hs"], a["out_Ws"])
    return (packed.row_words(a["C"], F, a["capacity"], a["value_dtype"]),), "int32"


def workspace(a: dict[str, Any], batch: int, O: int | None) -> int:
    """sd_spec_pool_workspace_size: the overflow pipeline only."""
    return base.pipeline_workspace(batch) + base.WS_ALIGN


def reference(
    x: np.ndarray, *, C: int, Hs: int, Ws: int, out_Hs: int, out_Ws: int, capacity: int, value_dtype: str
) -> np.ndarray:
    """SpecPool: crop to the lowest frequencies and rescale; kept-ness is inherited."""
    check(C=C, Hs=Hs, Ws=Ws, out_Hs=out_Hs, out_Ws=out_Ws, capacity=capacity, value_dtype=value_dtype)
    dec = base.decode(x, C, Hs, Ws, value_dtype, "SpecPool input")
    B = dec.values.shape[0]
    lo, hi = (out_Hs + 1) // 2, out_Hs // 2
    rows = list(range(lo)) + list(range(Hs - hi, Hs))
    cols = out_Ws // 2 + 1
    scale = np.float32(math.sqrt(out_Hs * out_Ws / (Hs * Ws)))
    vals = dec.values.reshape(B, C, Hs, -1)[:, :, rows, :cols] * scale
    keep = dec.keep.reshape(B, C, Hs, -1)[:, :, rows, :cols]
    vals = vals.reshape(B, C, -1).astype(np.complex64)
    keep = keep.reshape(B, C, -1)
    return base.inherit(vals, keep, capacity, value_dtype, dec.overflowed, dec.flags)


def _infer_shape(ctx: Any, h: Any) -> None:
    F = packed.num_coeffs(int(h.attr(ctx, "out_Hs")), int(h.attr(ctx, "out_Ws")))
    h.set_output(ctx, "int32", [packed.row_words(int(h.attr(ctx, "C")), F, int(h.attr(ctx, "capacity")), h.dtype(ctx))])


def native_params(
    *, C: int, Hs: int, Ws: int, out_Hs: int, out_Ws: int, capacity: int, value_dtype: str, in_row_words: int
) -> Any:
    """The sd_spec_pool_params of a SpecPool node."""
    from specdeploy.native import abi

    p = abi.PoolParams()
    for n, v in (("C", C), ("Hs", Hs), ("Ws", Ws), ("out_Hs", out_Hs), ("out_Ws", out_Ws), ("capacity", capacity)):
        setattr(p, n, abi.i32(NAME, n, v))
    p.value_dtype = abi.enum(NAME, "value_dtype", value_dtype, abi.VALUE_DTYPE)
    p.in_row_words = int(in_row_words)
    return p


def _native(node: Any, ctx: Any) -> NativeCall:
    lib = ctx.lib
    p = ctx.checked(native_params(**node.attrs, in_row_words=ctx.row_words(node.inputs[0])))

    def run(B: int, xs: list[int], x_dtype: str, y: int, ws: int, ws_bytes: int, stream: int) -> None:
        lib.spec_pool_forward_ptr(p, B, xs[0], y, ws, ws_bytes, stream)

    return NativeCall((lib.out_row_words(p),), "int32", ("int32",), run, lambda B: lib.spec_pool_workspace_size(p, B))


OP = OpDef(
    name=NAME,
    attributes=ATTRIBUTES,
    doc="Spectral pooling: keep the lowest frequencies; packed in and out (docs/ops.md).",
    n_inputs=(1, 1),
    inputs_doc="1",
    weight_inputs=(),
    check_attrs=_check_attrs,
    check_node=_check_node,
    output=_output,
    dense_coeffs=_dense_coeffs,
    workspace=workspace,
    reference=lambda inputs, attrs: reference(inputs[0], **attrs),
    schema_inputs=(SchemaParam("X", "P", "packed input"),),
    schema_outputs=(SchemaParam("Y", "P", "packed output"),),
    schema_types=(),
    infer_shape=_infer_shape,
    ort_variant=lambda node: "",
    ort_inputs=lambda node: ["int32"],
    native=_native,
)
