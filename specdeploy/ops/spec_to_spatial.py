"""SpecToSpatial: orthonormal inverse real 2-D FFT of a packed map to float [B, C, Hs, Ws] (docs/ops.md).

Every fact of the op that is not a kernel lives here (docs/adding-an-op.md). Numpy only.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from specdeploy import packed
from specdeploy.ops import _base as base
from specdeploy.ops._base import NativeCall, OpDef, SchemaParam

NAME = "SpecToSpatial"
ATTRIBUTES = {"C": "INT", "Hs": "INT", "Ws": "INT", "value_dtype": "STRING"}


def check(*, C: int, Hs: int, Ws: int, value_dtype: str, node: str = NAME) -> None:
    """Validate a SpecToSpatial node."""
    base.size(node, C, Hs, Ws)
    base.choice(node, "value_dtype", value_dtype, packed.VALUE_DTYPES)


def _check_attrs(node: Any, weights: dict[str, Any], label: str) -> None:
    check(node=label, **node.attrs)


def _check_node(node: Any, info: Any, packed_in: Any, label: str) -> None:
    a = node.attrs
    check(node=label, **a)
    packed_in(node.inputs[0], "input", a["C"], packed.num_coeffs(a["Hs"], a["Ws"]))


def _output(a: dict[str, Any], weight_shapes: Sequence[Any]) -> tuple[tuple[int, ...], str]:
    return (a["C"], a["Hs"], a["Ws"]), "float32"


def workspace(a: dict[str, Any], batch: int, O: int | None) -> int:
    """sd_spec_to_spatial_workspace_size: the twiddle tables (no packed output, no pipeline)."""
    return base.twiddle_workspace(int(a["Hs"]), int(a["Ws"])) + base.WS_ALIGN


def reference(x: np.ndarray, *, C: int, Hs: int, Ws: int, value_dtype: str) -> np.ndarray:
    """SpecToSpatial: float32 [B, C, Hs, Ws] = irfft2(Z, s=(Hs, Ws), norm="ortho")."""
    check(C=C, Hs=Hs, Ws=Ws, value_dtype=value_dtype)
    dec = base.decode(x, C, Hs, Ws, value_dtype, "SpecToSpatial input")
    Z = dec.values.astype(np.complex128).reshape(-1, C, Hs, Ws // 2 + 1)
    return np.fft.irfft2(Z, s=(Hs, Ws), norm="ortho").astype(np.float32)


def _infer_shape(ctx: Any, h: Any) -> None:
    h.set_output(ctx, "float32", [int(h.attr(ctx, "C")), int(h.attr(ctx, "Hs")), int(h.attr(ctx, "Ws"))])


def native_params(
    *, C: int, Hs: int, Ws: int, value_dtype: str, in_row_words: int, y_dtype: Any = np.float32
) -> Any:
    """The sd_spec_to_spatial_params of a SpecToSpatial node (``y_dtype``: float32 or float16 output)."""
    from specdeploy.native import abi

    p = abi.ToSpatialParams()
    for n, v in (("C", C), ("Hs", Hs), ("Ws", Ws)):
        setattr(p, n, abi.i32(NAME, n, v))
    p.value_dtype = abi.enum(NAME, "value_dtype", value_dtype, abi.VALUE_DTYPE)
    p.y_type = abi.float_type(NAME, "y dtype", y_dtype)
    p.in_row_words = int(in_row_words)
    return p


def _native(node: Any, ctx: Any) -> NativeCall:
    """The output is emitted directly in the standard ops' float type (``ctx.float_dtype``)."""
    a = node.attrs
    lib = ctx.lib
    p = ctx.checked(native_params(C=a["C"], Hs=a["Hs"], Ws=a["Ws"], value_dtype=a["value_dtype"],
                                  in_row_words=ctx.row_words(node.inputs[0]), y_dtype=ctx.float_dtype))

    def run(B: int, xs: list[int], x_dtype: str, y: int, ws: int, ws_bytes: int, stream: int) -> None:
        lib.spec_to_spatial_forward_ptr(p, B, xs[0], y, ws, ws_bytes, stream)

    return NativeCall((a["C"], a["Hs"], a["Ws"]), ctx.float_dtype, ("int32",), run,
                      lambda B: lib.spec_to_spatial_workspace_size(p, B))


OP = OpDef(
    name=NAME,
    attributes=ATTRIBUTES,
    doc="Orthonormal inverse real 2-D FFT of a packed spectral map (docs/ops.md).",
    n_inputs=(1, 1),
    inputs_doc="1",
    weight_inputs=(),
    check_attrs=_check_attrs,
    check_node=_check_node,
    output=_output,
    dense_coeffs=None,
    workspace=workspace,
    reference=lambda inputs, attrs: reference(inputs[0], **attrs),
    schema_inputs=(SchemaParam("X", "P", "packed input"),),
    schema_outputs=(SchemaParam("Y", "T", "spatial [B,C,Hs,Ws]"),),
    schema_types=(("T", ("tensor(float)",), "output"),),
    infer_shape=_infer_shape,
    ort_variant=lambda node: "",
    ort_inputs=lambda node: ["int32"],
    native=_native,
    packed_output=False,
)
