"""SpecConcat: channel concatenation of packed maps (DenseNet); packed in and out (docs/ops.md).

Every fact of the op that is not a kernel lives here (docs/adding-an-op.md). Numpy only.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from specdeploy import packed
from specdeploy.ops import _base as base
from specdeploy.ops._base import NativeCall, OpAttributeError, OpDef, SchemaParam

NAME = "SpecConcat"
ATTRIBUTES = {"C": "INTS", "Hs": "INT", "Ws": "INT", "capacity": "INT", "value_dtype": "STRING"}
#: SD_MAX_CONCAT_INPUTS of specdeploy_c.h (the params struct's array length); specdeploy.native checks
#: it against the library's sd_abi_query at load
MAX_CONCAT_INPUTS = 64


def check(
    *, n_inputs: int, C: Sequence[int], Hs: int, Ws: int, capacity: int, value_dtype: str, node: str = NAME
) -> None:
    """Validate a SpecConcat node: one channel count per input."""
    C = list(C)
    if not 1 <= n_inputs <= MAX_CONCAT_INPUTS:
        raise OpAttributeError(f"{node}: has {n_inputs} inputs, allowed 1..{MAX_CONCAT_INPUTS}")
    if len(C) != n_inputs:
        raise base.fail(node, "C", C, f"must list one channel count per input ({n_inputs})")
    for c in C:
        base.int_at_least(node, "C", c, 1)
    F = base.size(node, sum(C), Hs, Ws)
    base.choice(node, "value_dtype", value_dtype, packed.VALUE_DTYPES)
    base.capacity(node, capacity, sum(C), F)


def _check_attrs(node: Any, weights: dict[str, Any], label: str) -> None:
    check(n_inputs=len(node.inputs), node=label, **node.attrs)


def _check_node(node: Any, info: Any, packed_in: Any, label: str) -> None:
    a = node.attrs
    check(n_inputs=len(node.inputs), node=label, **a)
    F = packed.num_coeffs(a["Hs"], a["Ws"])
    for i, (name, c) in enumerate(zip(node.inputs, a["C"])):
        packed_in(name, f"input {i}", c, F)


def _dense_coeffs(a: dict[str, Any], weight_shapes: Sequence[Any]) -> int:
    return sum(a["C"]) * packed.num_coeffs(a["Hs"], a["Ws"])


def _output(a: dict[str, Any], weight_shapes: Sequence[Any]) -> tuple[tuple[int, ...], str]:
    return (packed.row_words(sum(a["C"]), packed.num_coeffs(a["Hs"], a["Ws"]), a["capacity"], a["value_dtype"]),), "int32"


def workspace(a: dict[str, Any], batch: int, O: int | None) -> int:
    """sd_spec_concat_workspace_size: the overflow pipeline only."""
    return base.pipeline_workspace(batch) + base.WS_ALIGN


def reference(
    xs: Sequence[np.ndarray], *, C: Sequence[int], Hs: int, Ws: int, capacity: int, value_dtype: str
) -> np.ndarray:
    """SpecConcat: channels of the inputs in input order; kept-ness and overflow flags inherited."""
    check(n_inputs=len(xs), C=C, Hs=Hs, Ws=Ws, capacity=capacity, value_dtype=value_dtype)
    decs = [base.decode(x, c, Hs, Ws, value_dtype, f"SpecConcat input {i}") for i, (x, c) in enumerate(zip(xs, C))]
    batches = {d.values.shape[0] for d in decs}
    if len(batches) != 1:
        raise ValueError(f"SpecConcat: inputs have different batch sizes {sorted(batches)}")
    vals = np.concatenate([d.values for d in decs], axis=1)
    keep = np.concatenate([d.keep for d in decs], axis=1)
    upstream = np.logical_or.reduce([d.overflowed for d in decs])
    flags = np.bitwise_or.reduce([d.flags for d in decs])
    return base.inherit(vals, keep, capacity, value_dtype, upstream, flags)


def _reference(inputs: list[Any], attrs: dict[str, Any]) -> np.ndarray:
    return reference(list(inputs), **{**attrs, "C": [int(c) for c in attrs["C"]]})


def _infer_shape(ctx: Any, h: Any) -> None:
    C = sum(int(c) for c in h.attr(ctx, "C"))
    F = packed.num_coeffs(int(h.attr(ctx, "Hs")), int(h.attr(ctx, "Ws")))
    h.set_output(ctx, "int32", [packed.row_words(C, F, int(h.attr(ctx, "capacity")), h.dtype(ctx))])


def native_params(
    *, C: Sequence[int], Hs: int, Ws: int, capacity: int, value_dtype: str, in_row_words: Sequence[int]
) -> Any:
    """The sd_spec_concat_params of a SpecConcat node (one channel count and row size per input)."""
    from specdeploy.native import abi

    op = NAME
    C = list(C)
    rw = list(in_row_words)
    if not 1 <= len(C) <= MAX_CONCAT_INPUTS:
        raise abi.NativeInvalidArgument(
            f"{op}: attribute 'C' has {len(C)} entries; 1..{MAX_CONCAT_INPUTS} inputs are allowed",
            abi.SD_ERR_INVALID_ARGUMENT,
        )
    if len(rw) != len(C):
        raise abi.NativeInvalidArgument(
            f"{op}: attribute 'C' lists {len(C)} channel counts but there are {len(rw)} inputs",
            abi.SD_ERR_INVALID_ARGUMENT,
        )
    p = abi.ConcatParams()
    p.n_inputs = len(C)
    for i, (c, s) in enumerate(zip(C, rw)):
        p.C[i] = abi.i32(op, f"C[{i}]", c)
        p.in_row_words[i] = int(s)
    p.Hs, p.Ws, p.capacity = (abi.i32(op, n, v) for n, v in (("Hs", Hs), ("Ws", Ws), ("capacity", capacity)))
    p.value_dtype = abi.enum(op, "value_dtype", value_dtype, abi.VALUE_DTYPE)
    return p


def _native(node: Any, ctx: Any) -> NativeCall:
    lib = ctx.lib
    p = ctx.checked(native_params(**node.attrs, in_row_words=[ctx.row_words(x) for x in node.inputs]))

    def run(B: int, xs: list[int], x_dtype: str, y: int, ws: int, ws_bytes: int, stream: int) -> None:
        lib.spec_concat_forward_ptr(p, B, xs, y, ws, ws_bytes, stream)

    return NativeCall((lib.out_row_words(p),), "int32", ("int32",), run,
                      lambda B: lib.spec_concat_workspace_size(p, B))


OP = OpDef(
    name=NAME,
    attributes=ATTRIBUTES,
    doc="Channel concatenation of packed spectral maps (docs/ops.md).",
    n_inputs=None,  # check() names the allowed range
    inputs_doc="one packed map per entry of C",
    weight_inputs=(),
    check_attrs=_check_attrs,
    check_node=_check_node,
    output=_output,
    dense_coeffs=_dense_coeffs,
    workspace=workspace,
    reference=_reference,
    schema_inputs=(SchemaParam("X", "P", "packed inputs", "variadic"),),
    schema_outputs=(SchemaParam("Y", "P", "packed output"),),
    schema_types=(),
    infer_shape=_infer_shape,
    ort_variant=lambda node: f"_{len(node.inputs)}",
    ort_inputs=lambda node: ["int32"] * len(node.inputs),
    native=_native,
)
