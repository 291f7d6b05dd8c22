"""The standard ONNX ops the native executor runs, as one table over a small array-kernel interface.

Why a table over :class:`Kernels`: the executor runs the same graphs on two kinds of buffers (numpy on
the host, torch on the GPU), so what depends on the ONNX node (attributes, which inputs are
initializers, pads, bounds, targets) is read once here and what depends on the array library is a
dozen primitives (``specdeploy.native.host.NumpyKernels``, ``specdeploy.native.cuda.TorchKernels``).
An op outside :data:`TABLE` is refused when the session is created, naming the node.

Each entry: ``build(n, attrs, ctx) -> fn(args, B) -> output``; :data:`IN_PLACE` holds the fused forms
(``specdeploy.liveness``: Relu/Clip/LeakyRelu/Add-of-a-constant that write into their producer's
buffer). ``ctx`` is the executor's :class:`BuildContext`. Never imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np

__all__ = ["Kernels", "BuildContext", "TABLE", "IN_PLACE", "STANDARD_OPS", "Fn"]

Fn = Callable[[list[Any], int], Any]


class Kernels(Protocol):
    """The array primitives a device offers the standard ops (float arrays of one compute dtype)."""

    def conv2d(self, x: Any, w: Any, b: Any | None, stride: tuple[int, int], pads: tuple[int, int, int, int],
               dilation: tuple[int, int], groups: int) -> Any: ...
    def max_pool2d(self, x: Any, kernel: tuple[int, int], stride: tuple[int, int], pads: tuple[int, int, int, int],
                   dilation: tuple[int, int], ceil_mode: bool) -> Any: ...
    def mean_spatial(self, x: Any) -> Any: ...
    def gemm(self, a: Any, b: Any, c: Any | None, alpha: float, beta: float) -> Any: ...
    def matmul(self, a: Any, b: Any) -> Any: ...
    def transpose(self, a: Any) -> Any: ...
    def relu(self, x: Any, inplace: bool) -> Any: ...
    def leaky_relu(self, x: Any, slope: float, inplace: bool) -> Any: ...
    def clamp(self, x: Any, lo: float | None, hi: float | None, inplace: bool) -> Any: ...
    def clone(self, x: Any) -> Any: ...
    def add(self, a: Any, b: Any, inplace: bool) -> Any: ...
    def cat(self, xs: Sequence[Any], axis: int) -> Any: ...
    def reshape(self, x: Any, shape: Sequence[int]) -> Any: ...


@dataclass
class BuildContext:
    """What a table entry may ask of the executor while it builds one node's step."""

    k: Kernels
    where: str  # "<model>: node 'x' (Op)", for messages
    weight: Callable[[str], Any]  # an initializer in the compute dtype, on the device
    is_weight: Callable[[str], bool]
    host_values: Callable[[str], list[float] | None]  # a small initializer's values on the host
    f: Callable[[Any], Any]  # an activation in the compute dtype (casts are counted as transient bytes)

    def unsupported(self, what: str) -> Exception:
        from specdeploy.runtime.errors import ModelError

        return ModelError(f"{self.where}: {what} is not supported by the native backends")


def _wt(n: Any, c: BuildContext, i: int) -> Any | None:
    """Input i as a device weight (float initializers in the compute dtype), or None."""
    if i >= len(n.input) or not n.input[i] or not c.is_weight(n.input[i]):
        return None
    return c.weight(n.input[i])


def _pads(attrs: dict[str, Any]) -> tuple[int, int, int, int]:
    """ONNX [t, l, b, r] (missing: 0)."""
    p = list(attrs.get("pads", [])) + [0, 0, 0, 0]
    return (int(p[0]), int(p[1]), int(p[2]), int(p[3])) if attrs.get("pads") else (0, 0, 0, 0)


def _auto_pad_ok(attrs: dict[str, Any], c: BuildContext) -> None:
    ap = attrs.get("auto_pad", b"NOTSET")
    ap = ap.decode() if isinstance(ap, bytes) else ap
    if ap not in ("NOTSET", "VALID"):
        raise c.unsupported(f"auto_pad={ap!r}")


def _conv(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    _auto_pad_ok(attrs, c)
    if len(n.input) < 2 or not c.is_weight(n.input[1]):
        raise c.unsupported("a Conv whose weight is not an initializer")
    w, bias = _wt(n, c, 1), _wt(n, c, 2)
    if len(n.input) > 2 and n.input[2] and bias is None:
        raise c.unsupported("a Conv whose bias is not an initializer")
    if len(w.shape) != 4:
        raise c.unsupported(f"a {len(w.shape) - 2}-D Conv")
    pads = _pads(attrs)
    stride = tuple(attrs.get("strides", [1, 1]))
    dil = tuple(attrs.get("dilations", [1, 1]))
    groups = int(attrs.get("group", 1))
    return lambda args, B: c.k.conv2d(c.f(args[0]), w, bias, stride, pads, dil, groups)  # type: ignore[arg-type]


def _max_pool(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    _auto_pad_ok(attrs, c)
    if "kernel_shape" not in attrs or len(attrs["kernel_shape"]) != 2:
        raise c.unsupported("a MaxPool that is not 2-D")
    k = tuple(attrs["kernel_shape"])
    stride = tuple(attrs.get("strides", [1, 1]))
    dil = tuple(attrs.get("dilations", [1, 1]))
    ceil = bool(attrs.get("ceil_mode", 0))
    pads = _pads(attrs)
    return lambda args, B: c.k.max_pool2d(c.f(args[0]), k, stride, pads, dil, ceil)  # type: ignore[arg-type]


def _global_average_pool(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    return lambda args, B: c.k.mean_spatial(c.f(args[0]))


def _gemm(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    ta, tb = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))
    wb, wc = _wt(n, c, 1), _wt(n, c, 2)

    def fn(args: list[Any], B: int) -> Any:
        a = c.f(args[0])
        bm = wb if wb is not None else c.f(args[1])
        cc = wc if wc is not None else (c.f(args[2]) if len(args) > 2 and args[2] is not None else None)
        a = c.k.transpose(a) if ta else a
        bm = c.k.transpose(bm) if tb else bm
        return c.k.gemm(a, bm, cc, alpha, beta)

    return fn


def _matmul(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    wb = _wt(n, c, 1)
    return lambda args, B: c.k.matmul(c.f(args[0]), wb if wb is not None else c.f(args[1]))


def _relu(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    return lambda args, B: c.k.relu(c.f(args[0]), False)


def _leaky_relu(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    slope = float(attrs.get("alpha", 0.01))
    return lambda args, B: c.k.leaky_relu(c.f(args[0]), slope, False)


def _clip_bounds(n: Any, attrs: dict[str, Any], c: BuildContext) -> tuple[float | None, float | None]:
    """Clip's bounds: inputs 1 and 2 (opset >= 11, must be initializers) or attributes (older)."""
    out: list[float | None] = []
    for i, key in ((1, "min"), (2, "max")):
        name = n.input[i] if len(n.input) > i and n.input[i] else None
        if name is not None:
            vals = c.host_values(name)
            if vals is None:
                raise c.unsupported("a Clip bound that is not an initializer")
            out.append(float(vals[0]))
        else:
            out.append(None if attrs.get(key) is None else float(attrs[key]))
    return out[0], out[1]


def _clip(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    lo, hi = _clip_bounds(n, attrs, c)

    def fn(args: list[Any], B: int) -> Any:
        x = c.f(args[0])
        return c.k.clone(x) if lo is None and hi is None else c.k.clamp(x, lo, hi, False)

    return fn


def _add(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    wa, wb = _wt(n, c, 0), _wt(n, c, 1)

    def fn(args: list[Any], B: int) -> Any:
        a = wa if wa is not None else c.f(args[0])
        b = wb if wb is not None else c.f(args[1])
        return c.k.add(a, b, False)

    return fn


def _concat(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    if "axis" not in attrs:
        raise c.unsupported("a Concat without 'axis'")
    axis = int(attrs["axis"])
    ws = [_wt(n, c, i) for i in range(len(n.input))]  # a constant part: the weight in the compute dtype
    return lambda args, B: c.k.cat([w if w is not None else c.f(t) for w, t in zip(ws, args)], axis)


def _flatten(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    axis = int(attrs.get("axis", 1))

    def fn(args: list[Any], B: int) -> Any:
        x = args[0]
        shape = tuple(x.shape)
        ax = axis if axis >= 0 else axis + len(shape)
        return c.k.reshape(x, (math.prod(shape[:ax]), math.prod(shape[ax:])))

    return fn


def _reshape(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    target = c.host_values(n.input[1]) if len(n.input) > 1 and n.input[1] else None
    if target is None:
        raise c.unsupported("a Reshape whose shape is not a constant initializer")
    target = [int(d) for d in target]
    allowzero = int(attrs.get("allowzero", 0))

    def fn(args: list[Any], B: int) -> Any:
        x = args[0]
        return c.k.reshape(x, [x.shape[i] if (d == 0 and not allowzero) else d for i, d in enumerate(target)])

    return fn


def _squeeze_unsqueeze(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    op = n.op_type
    if len(n.input) > 1 and n.input[1]:
        vals = c.host_values(n.input[1])
        if vals is None:
            raise c.unsupported(f"a {op} whose axes are not a constant initializer")
        axes = [int(a) for a in vals]
    else:
        axes = list(attrs.get("axes", []))
    if op == "Unsqueeze" and not axes:
        raise c.unsupported("an Unsqueeze without axes")

    def fn(args: list[Any], B: int) -> Any:
        x = args[0]
        shape = list(x.shape)
        if op == "Squeeze":
            ax = [a % len(shape) for a in axes] if axes else [i for i, s in enumerate(shape) if s == 1]
            return c.k.reshape(x, [s for i, s in enumerate(shape) if i not in ax])
        rank = len(shape) + len(axes)
        for a in sorted(a % rank for a in axes):
            shape.insert(a, 1)
        return c.k.reshape(x, shape)

    return fn


def _identity(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    return lambda args, B: args[0]


#: ONNX op type (standard domain) -> builder
TABLE: dict[str, Callable[[Any, dict[str, Any], BuildContext], Fn]] = {
    "Conv": _conv,
    "Relu": _relu,
    "MaxPool": _max_pool,
    "Flatten": _flatten,
    "Gemm": _gemm,
    "Concat": _concat,
    "Reshape": _reshape,
    "Identity": _identity,
    "Dropout": _identity,
    "Add": _add,
    "Clip": _clip,
    "GlobalAveragePool": _global_average_pool,
    "LeakyRelu": _leaky_relu,
    "MatMul": _matmul,
    "Squeeze": _squeeze_unsqueeze,
    "Unsqueeze": _squeeze_unsqueeze,
}
STANDARD_OPS = tuple(TABLE)


def _relu_(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    return lambda args, B: c.k.relu(args[0], True)


def _leaky_relu_(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    slope = float(attrs.get("alpha", 0.01))
    return lambda args, B: c.k.leaky_relu(args[0], slope, True)


def _clip_(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    lo, hi = _clip_bounds(n, attrs, c)
    if lo is None and hi is None:
        return lambda args, B: args[0]
    return lambda args, B: c.k.clamp(args[0], lo, hi, True)


def _add_(n: Any, attrs: dict[str, Any], c: BuildContext) -> Fn:
    """Add of a constant: the activation is whichever input is not a weight."""
    const = next(x for x in n.input if c.is_weight(x))
    cw = c.weight(const)

    def fn(args: list[Any], B: int) -> Any:
        x = next(t for x_name, t in zip(n.input, args) if not c.is_weight(x_name))
        inplace = tuple(np.broadcast_shapes(tuple(x.shape), tuple(cw.shape))) == tuple(x.shape)
        return c.k.add(x, cw, inplace)

    return fn


#: the fused forms (``specdeploy.liveness``): write into the producer's buffer
IN_PLACE: dict[str, Callable[[Any, dict[str, Any], BuildContext], Fn]] = {
    "Relu": _relu_, "LeakyRelu": _leaky_relu_, "Clip": _clip_, "Add": _add_,
}
