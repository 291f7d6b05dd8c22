"""The specdeploy op set (domain "specdeploy", version 1): names, attributes and their validation.

One definition shared by the exporter, the reference runtime and ONNX Runtime, so every runtime
rejects the same bad attributes with the same message (node, attribute, allowed range). The C ABI
validates the same rules for the CUDA kernels and TensorRT plugins (plugins/common).
Never imports torch.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

from specdeploy import packed

DOMAIN = "specdeploy"
VERSION = 1
OPS = ("SpecConv", "SpecPool", "SpecToSpatial", "SpecConcat")
MAX_CONCAT_INPUTS = 64

# attribute name -> ONNX type name ("INT", "FLOAT", "STRING", "INTS"), per op.
ATTRIBUTES: dict[str, dict[str, str]] = {
    "SpecConv": {
        "in_domain": "STRING", "C": "INT", "Hs": "INT", "Ws": "INT", "k": "INT", "beta": "FLOAT",
        "activation": "STRING", "capacity": "INT", "value_dtype": "STRING",
    },
    "SpecPool": {
        "C": "INT", "Hs": "INT", "Ws": "INT", "out_Hs": "INT", "out_Ws": "INT", "capacity": "INT",
        "value_dtype": "STRING",
    },
    "SpecToSpatial": {"C": "INT", "Hs": "INT", "Ws": "INT", "value_dtype": "STRING"},
    "SpecConcat": {"C": "INTS", "Hs": "INT", "Ws": "INT", "capacity": "INT", "value_dtype": "STRING"},
}


class OpAttributeError(ValueError):
    """An op's attribute or input shape is outside what the op set allows."""


def _fail(node: str, attr: str, value: Any, rule: str) -> OpAttributeError:
    return OpAttributeError(f"{node}: attribute '{attr}' = {value!r} is invalid: {rule}")


def _int_at_least(node: str, attr: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(node, attr, value, "must be an integer")
    v = int(value)
    if v < lo:
        raise _fail(node, attr, value, f"must be >= {lo}")
    return v


def _choice(node: str, attr: str, value: Any, allowed: Sequence[str]) -> str:
    if isinstance(value, bytes):
        value = value.decode()
    if value not in allowed:
        raise _fail(node, attr, value, f"must be one of {', '.join(repr(a) for a in allowed)}")
    return value


def _size(node: str, C: int, Hs: int, Ws: int) -> int:
    _int_at_least(node, "C", C, 1)
    _int_at_least(node, "Hs", Hs, 1)
    _int_at_least(node, "Ws", Ws, 1)
    return packed.num_coeffs(Hs, Ws)


def _capacity(node: str, capacity: Any, channels: int, F: int) -> int:
    cap = _int_at_least(node, "capacity", capacity, 1)
    if cap > channels * F:
        raise _fail(node, "capacity", capacity, f"must be <= C*F = {channels}*{F} = {channels * F}")
    return cap


def check_conv(
    *, x_shape: Sequence[int], w_shape: Sequence[int], b_shape: Sequence[int] | None, in_domain: str, C: int,
    Hs: int, Ws: int, k: int, beta: float, activation: str, capacity: int, value_dtype: str,
    node: str = "SpecConv",
) -> int:
    """Validate a SpecConv node and its input shapes; returns the number of output channels O."""
    in_domain = _choice(node, "in_domain", in_domain, ("spatial", "spectral"))
    F = _size(node, C, Hs, Ws)
    k = _int_at_least(node, "k", k, 1)
    if k > min(Hs, Ws):
        raise _fail(node, "k", k, f"must be <= min(Hs, Ws) = {min(Hs, Ws)}")
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not math.isfinite(beta) or beta < 0:
        raise _fail(node, "beta", beta, "must be a finite number >= 0")
    _choice(node, "activation", activation, ("tanh", "none"))
    _choice(node, "value_dtype", value_dtype, packed.VALUE_DTYPES)
    if len(w_shape) != 4 or tuple(w_shape[1:]) != (C, k, k):
        raise OpAttributeError(f"{node}: weight W has shape {tuple(w_shape)}, expected [O, C={C}, k={k}, k={k}]")
    O = int(w_shape[0])
    if O < 1:
        raise OpAttributeError(f"{node}: weight W has no output channels")
    if b_shape is not None and tuple(b_shape) != (O,):
        raise OpAttributeError(f"{node}: bias B has shape {tuple(b_shape)}, expected [{O}]")
    _capacity(node, capacity, O, F)
    if in_domain == "spatial":
        if len(x_shape) != 4 or x_shape[1] != C or (x_shape[2] + k - 1, x_shape[3] + k - 1) != (Hs, Ws):
            raise OpAttributeError(
                f"{node}: spatial input X has shape {tuple(x_shape)}, expected [B, C={C}, H, W] with "
                f"H + k - 1 = Hs = {Hs} and W + k - 1 = Ws = {Ws}"
            )
    elif len(x_shape) != 2:
        raise OpAttributeError(f"{node}: spectral input X has shape {tuple(x_shape)}, expected packed [B, S]")
    return O


def check_pool(
    *, C: int, Hs: int, Ws: int, out_Hs: int, out_Ws: int, capacity: int, value_dtype: str, node: str = "SpecPool"
) -> None:
    """Validate a SpecPool node."""
    _size(node, C, Hs, Ws)
    if not 1 <= _int_at_least(node, "out_Hs", out_Hs, 1) <= Hs:
        raise _fail(node, "out_Hs", out_Hs, f"must be in 1..Hs={Hs}")
    if not 1 <= _int_at_least(node, "out_Ws", out_Ws, 1) <= Ws:
        raise _fail(node, "out_Ws", out_Ws, f"must be in 1..Ws={Ws}")
    _choice(node, "value_dtype", value_dtype, packed.VALUE_DTYPES)
    _capacity(node, capacity, C, packed.num_coeffs(out_Hs, out_Ws))


def check_to_spatial(*, C: int, Hs: int, Ws: int, value_dtype: str, node: str = "SpecToSpatial") -> None:
    """Validate a SpecToSpatial node."""
    _size(node, C, Hs, Ws)
    _choice(node, "value_dtype", value_dtype, packed.VALUE_DTYPES)


def check_concat(
    *, n_inputs: int, C: Sequence[int], Hs: int, Ws: int, capacity: int, value_dtype: str, node: str = "SpecConcat"
) -> None:
    """Validate a SpecConcat node: one channel count per input."""
    C = list(C)
    if not 1 <= n_inputs <= MAX_CONCAT_INPUTS:
        raise OpAttributeError(f"{node}: has {n_inputs} inputs, allowed 1..{MAX_CONCAT_INPUTS}")
    if len(C) != n_inputs:
        raise _fail(node, "C", C, f"must list one channel count per input ({n_inputs})")
    for c in C:
        _int_at_least(node, "C", c, 1)
    F = _size(node, sum(C), Hs, Ws)
    _choice(node, "value_dtype", value_dtype, packed.VALUE_DTYPES)
    _capacity(node, capacity, sum(C), F)


def check_required(op: str, attrs: dict[str, Any], node: str) -> None:
    """Every attribute of the op is present and none is unknown (used when reading ONNX nodes)."""
    if op not in ATTRIBUTES:
        raise OpAttributeError(f"{node}: unknown op type '{op}' in domain '{DOMAIN}'; known: {', '.join(OPS)}")
    expected = ATTRIBUTES[op]
    missing = sorted(set(expected) - set(attrs))
    if missing:
        raise OpAttributeError(f"{node}: {op} lacks required attribute(s) {', '.join(missing)}")
    unknown = sorted(set(attrs) - set(expected))
    if unknown:
        raise OpAttributeError(f"{node}: {op} has unsupported attribute(s) {', '.join(unknown)}")
