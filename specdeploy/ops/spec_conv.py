"""SpecConv: spectral convolution, bias on DC, threshold at beta, activation; packed output.

Two blocks (DESIGN §2, §2b): activation "tanh"/"none" acts per coefficient after the threshold (the
paper's); activation "relu" (the hybrid block) inverse-transforms the product, applies ReLU and the
optional 2x2 pool (attribute ``pool``, ceil mode) on the spatial map, transforms forward and
thresholds. ``pool`` is an addition of the op set: absent means "none", so older files stay valid.

DESIGN §2/§3, docs/ops.md. Every fact of the op that is not a kernel lives here (docs/adding-an-op.md):
attributes and their rules, output row words, dense coefficients, the native library's workspace
(a port of plugins/common/src/plan.cpp), the numpy reference, the ONNX schema, and the ORT and
native adapters. Numpy only (never torch, never onnx at import).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from specdeploy import packed
from specdeploy.ops import _base as base
from specdeploy.ops._base import NativeCall, OpAttributeError, OpDef, SchemaParam

NAME = "SpecConv"
IN_DOMAINS = ("spatial", "spectral")
ACTIVATIONS = ("tanh", "none", "relu")
POOLS = ("none", "max2", "avg2")
ATTRIBUTES = {
    "in_domain": "STRING", "C": "INT", "Hs": "INT", "Ws": "INT", "k": "INT", "beta": "FLOAT",
    "activation": "STRING", "capacity": "INT", "value_dtype": "STRING", "pool": "STRING",
}
#: optional attributes (DESIGN §3 additions) and what their absence means
DEFAULTS = {"pool": "none"}
#: C ABI enum values (specdeploy_c.h: sd_domain, sd_activation, sd_input_spectrum)
NATIVE_DOMAIN = {"spatial": 0, "spectral": 1}
NATIVE_ACTIVATION = {"none": 0, "tanh": 1, "relu": 2}
NATIVE_POOL = {"none": 0, "max2": 1, "avg2": 2}  # sd_pool (activation "relu" only)
#: the hybrid block's chunk budget (plan.h kHybBudgetDiv): its dense buffers are sized by the chunk,
#: chosen per layer and batch (``hybrid_chunk``)
HYB_BUDGET_DIV = 8
#: most channels in a chunk (plan.h kHybMaxChannels: 64-row GEMM tiles in a CUDA grid's y)
HYB_MAX_CHANNELS = 65535 * 64
#: a spatial-input hybrid SpecConv streams its input spectrum (auto) only for C <= this (plan.h
#: kHybStreamMaxC: the CUDA GEMM then reads each coefficient once for all k*k taps)
HYB_STREAM_MAX_C = 16
#: the spatial step's stage plane is in the GPU block's shared memory for F <= this (plan.h
#: kHybSmemMaxF): the workspace then holds one plane per sample and channel of the chunk, else two
HYB_SMEM_MAX_F = 6144
_I32_MAX = 2**31 - 1
INPUT_SPECTRUM = {"auto": 0, "dense": 1, "streamed": 2}


# -------------------------------------------------------------------------------------- validation


def out_size(Hs: int, Ws: int, pool: str) -> tuple[int, int]:
    """Spatial size of the output map: (Hs, Ws), or (ceil(Hs/2), ceil(Ws/2)) after a 2x2 pool."""
    return (Hs, Ws) if pool == "none" else ((Hs + 1) // 2, (Ws + 1) // 2)


def check(
    *, x_shape: Sequence[int], w_shape: Sequence[int], b_shape: Sequence[int] | None, in_domain: str, C: int,
    Hs: int, Ws: int, k: int, beta: float, activation: str, capacity: int, value_dtype: str, pool: str = "none",
    node: str = NAME,
) -> int:
    """Validate a SpecConv node and its input shapes; returns the number of output channels O."""
    in_domain = base.choice(node, "in_domain", in_domain, IN_DOMAINS)
    F = base.size(node, C, Hs, Ws)
    k = base.int_at_least(node, "k", k, 1)
    if k > min(Hs, Ws):
        raise base.fail(node, "k", k, f"must be <= min(Hs, Ws) = {min(Hs, Ws)}")
    base.finite_at_least_zero(node, "beta", beta)
    activation = base.choice(node, "activation", activation, ACTIVATIONS)
    pool = base.choice(node, "pool", pool, POOLS)
    if pool != "none" and activation != "relu":
        raise base.fail(node, "pool", pool, f"pools only with activation 'relu' (hybrid block), not {activation!r}")
    base.choice(node, "value_dtype", value_dtype, packed.VALUE_DTYPES)
    if len(w_shape) != 4 or tuple(w_shape[1:]) != (C, k, k):
        raise OpAttributeError(f"{node}: weight W has shape {tuple(w_shape)}, expected [O, C={C}, k={k}, k={k}]")
    O = int(w_shape[0])
    if O < 1:
        raise OpAttributeError(f"{node}: weight W has no output channels")
    if b_shape is not None and tuple(b_shape) != (O,):
        raise OpAttributeError(f"{node}: bias B has shape {tuple(b_shape)}, expected [{O}]")
    base.capacity(node, capacity, O, packed.num_coeffs(*out_size(Hs, Ws, pool)))
    if in_domain == "spatial":
        if len(x_shape) != 4 or x_shape[1] != C or (x_shape[2] + k - 1, x_shape[3] + k - 1) != (Hs, Ws):
            raise OpAttributeError(
                f"{node}: spatial input X has shape {tuple(x_shape)}, expected [B, C={C}, H, W] with "
                f"H + k - 1 = Hs = {Hs} and W + k - 1 = Ws = {Ws}"
            )
    elif len(x_shape) != 2:
        raise OpAttributeError(f"{node}: spectral input X has shape {tuple(x_shape)}, expected packed [B, S]")
    return O


def _check_attrs(node: Any, weights: dict[str, Any], label: str) -> None:
    a = node.attrs
    w = weights.get(node.inputs[1])
    if w is None or len(w.shape) != 4:
        raise OpAttributeError(f"weight W '{node.inputs[1]}' must be an initializer of shape [O, C, k, k]")
    bias = weights.get(node.inputs[2]) if len(node.inputs) > 2 else None
    if len(node.inputs) > 2 and bias is None:
        raise OpAttributeError(f"bias B '{node.inputs[2]}' must be an initializer")
    # the input shape the attributes imply; the real one is compared in _check_node
    implied = (1, a["C"], a["Hs"] - a["k"] + 1, a["Ws"] - a["k"] + 1) if a["in_domain"] == "spatial" else (1, 0)
    check(x_shape=implied, w_shape=w.shape, b_shape=None if bias is None else bias.shape, node=label, **a)


def _check_node(node: Any, info: Any, packed_in: Any, label: str) -> None:
    a = node.attrs
    w = info(node.inputs[1], "weight W")
    bias = info(node.inputs[2], "bias B") if len(node.inputs) > 2 else None
    for what, t in (("weight W", w), ("bias B", bias)):
        if t is not None and t.dtype != "float32":
            raise OpAttributeError(f"{what} is {t.dtype}, expected float32")
    x = info(node.inputs[0], "input X")
    check(x_shape=x.shape, w_shape=w.shape, b_shape=None if bias is None else bias.shape, node=label, **a)
    if a["in_domain"] == "spatial":
        if x.dtype != "float32":
            raise OpAttributeError(f"spatial input X '{node.inputs[0]}' is {x.dtype}, expected float32")
    else:
        packed_in(node.inputs[0], "input X", a["C"], packed.num_coeffs(a["Hs"], a["Ws"]))


# ---------------------------------------------------------------------------------- shapes, memory


def out_channels(weight_shapes: Sequence[Any]) -> int:
    return int(weight_shapes[1][0])


def out_coeffs(a: dict[str, Any]) -> int:
    """Coefficients per output channel: of the pooled map for a pooling "relu" node."""
    return packed.num_coeffs(*out_size(a["Hs"], a["Ws"], a.get("pool", "none")))


def _output(a: dict[str, Any], weight_shapes: Sequence[Any]) -> tuple[tuple[int, ...], str]:
    O = out_channels(weight_shapes)
    return (packed.row_words(O, out_coeffs(a), a["capacity"], a["value_dtype"]),), "int32"


def _dense_coeffs(a: dict[str, Any], weight_shapes: Sequence[Any]) -> int:
    return out_channels(weight_shapes) * out_coeffs(a)


def streams_input(O: int, H: int, W: int, k: int, C: int = 1, hybrid: bool = False) -> bool:
    """Whether a spatial-input SpecConv recomputes its input spectrum per tile instead of storing it.

    The library's automatic choice (``sd::conv_streams_input``, plugins/spec_conv/README.md): stream
    when recomputing each coefficient for every tile of 8 output channels, ``ceil(O/8) * (H*W + H)``
    multiply-adds, costs at most 8x the op's own work per coefficient, ``O * (k*k + k + 1)``. Small
    first layers (LeNet-5: O = 6 on 32x32) then need no dense spectrum at all; wide ones keep it. The
    hybrid block (activation "relu") also needs ``C <= HYB_STREAM_MAX_C``: its GPU GEMM then recomputes a
    streamed coefficient once for all taps instead of once per tap.
    """
    if hybrid and C > HYB_STREAM_MAX_C:
        return False
    return -(-O // 8) * (H * W + H) <= 8 * O * (k * k + k + 1)


def _hybrid_chunk_bytes(F: int, sb: int, ot: int) -> int:
    """The chunk's buffers (plan.cpp hyb_chunk_bytes): one complex plane of F per (sample, channel), the
    spectrum; two for F > HYB_SMEM_MAX_F (the spatial step's stage plane no longer fits shared memory)."""
    return (2 if F > HYB_SMEM_MAX_F else 1) * base.align(base.COMPLEX64 * sb * ot * F)


def _doublings(start: int, limit: int) -> list[int]:
    """start, 2*start, 4*start, .. clamped to limit, up to the first that reaches it (plan.cpp's loops)."""
    out, v = [], start
    while True:
        out.append(min(v, limit))
        if v >= limit:
            return out
        v *= 2


def hybrid_chunk(batch: int, C: int, O: int, Hs: int, Ws: int) -> tuple[int, int]:
    """(samples, channels) of the hybrid block's chunk (plan.cpp hyb_chunk): of sb in 1, 2, 4, ..
    (clamped to the batch) and ot in 8, 16, 32, .. (clamped to O), the one with the fewest chunks whose
    buffers fit ``B*(C+O)*Hs*Ws*2 / HYB_BUDGET_DIV`` bytes (a share of the layer's dense fp16
    activations, so the workspace never becomes the model's peak where the batch lets it); ties: the
    smaller buffers, then the larger ot. None fits: ``(1, min(O, 8))``. Fewest chunks: on the GPU every
    chunk costs a fixed few kernel launches per pass, and the time per call grows with them."""
    F = packed.num_coeffs(Hs, Ws)
    budget = float(batch) * (float(C) + O) * Hs * Ws * 2.0 / HYB_BUDGET_DIV  # plan.cpp's double arithmetic
    best: tuple[int, int, int] | None = None  # (chunks, bytes, -ot)
    choice = (1, min(O, 8))
    if batch >= 1:
        for sb in _doublings(1, batch):
            for ot in _doublings(8, O):
                nbytes = _hybrid_chunk_bytes(F, sb, ot)
                if nbytes > budget or sb * 2 * F > _I32_MAX - 64 or ot > HYB_MAX_CHANNELS or sb * ot > _I32_MAX:
                    continue
                key = (-(-batch // sb) * -(-O // ot), nbytes, -ot)
                if best is None or key < best:
                    best, choice = key, (sb, ot)
    return choice


def hybrid_workspace(a: dict[str, Any], batch: int, O: int) -> int:
    """The hybrid block's part of sd_spec_conv_workspace_size (activation "relu", plan.cpp): twiddles of
    the pooled size, and the chunk's buffers (``hybrid_chunk``; DESIGN §5: bounded by the chunk, never by
    the whole output)."""
    Hs, Ws, C = int(a["Hs"]), int(a["Ws"]), int(a["C"])
    ws = 0
    if a.get("pool", "none") != "none":
        ws += base.twiddle_workspace((Hs + 1) // 2, (Ws + 1) // 2)
    if batch > 0:
        F = packed.num_coeffs(Hs, Ws)
        sb, ot = hybrid_chunk(batch, C, int(O), Hs, Ws)
        ws += _hybrid_chunk_bytes(F, sb, ot)
    return ws


def workspace(a: dict[str, Any], batch: int, O: int | None) -> int:
    """sd_spec_conv_workspace_size: pipeline + twiddles, plus the dense input spectrum of a spatial
    input that is not streamed (``B * C * F * 8`` bytes, the only dense spectral buffer allowed), plus
    the hybrid block's chunk buffers (``hybrid_workspace``)."""
    Hs, Ws = int(a["Hs"]), int(a["Ws"])
    ws = base.pipeline_workspace(batch) + base.twiddle_workspace(Hs, Ws)
    hybrid = a.get("activation") == "relu"
    if (a.get("in_domain") == "spatial" or hybrid) and O is None:
        raise ValueError("declared_workspace: a spatial-input or relu SpecConv needs out_channels (O)")
    if a.get("in_domain") == "spatial":
        k = int(a["k"])
        if not streams_input(int(O), Hs - k + 1, Ws - k + 1, k, int(a["C"]), hybrid):
            ws += base.align(base.COMPLEX64 * batch * int(a["C"]) * packed.num_coeffs(Hs, Ws))
    if hybrid:
        ws += hybrid_workspace(a, batch, int(O))
    return ws + base.WS_ALIGN


# ------------------------------------------------------------------------------------------ reference


def _activate(y: np.ndarray, activation: str) -> np.ndarray:
    if activation == "tanh":
        return (np.tanh(y.real) + 1j * np.tanh(y.imag)).astype(np.complex64)
    return y.astype(np.complex64)


def spatial_spectrum(x: np.ndarray, Hs: int, Ws: int) -> np.ndarray:
    """Orthonormal half spectrum of a real [B, C, H, W] map zero-padded to (Hs, Ws): [B, C, Hs, Wh]."""
    return np.fft.rfft2(np.asarray(x, dtype=np.float64), s=(Hs, Ws), norm="ortho")


def kernel_spectrum(w: np.ndarray, Hs: int, Ws: int) -> np.ndarray:
    """Plain DFT of [O, C, k, k] kernels zero-padded to (Hs, Ws): [O, C, Hs, Wh]."""
    return np.fft.rfft2(np.asarray(w, dtype=np.float64), s=(Hs, Ws))


def centred_kernel_spectrum(w: np.ndarray, Hs: int, Ws: int) -> np.ndarray:
    """DFT of [O, C, k, k] kernels centred on (k//2, k//2) (DESIGN §2b step 1): the zero-padded kernel
    rolled by -k//2 in both axes, then the plain DFT; the product is a circular "same" convolution."""
    w = np.asarray(w, dtype=np.float64)
    k = w.shape[-1]
    padded = np.zeros(w.shape[:-2] + (Hs, Ws))
    padded[..., : w.shape[-2], :k] = w
    return np.fft.rfft2(np.roll(padded, (-(k // 2), -(k // 2)), axis=(-2, -1)))


def spatial_pool(y: np.ndarray, pool: str) -> np.ndarray:
    """2x2 windows, stride 2, ceil mode over the pixels that exist: a partial last window takes the max
    or the mean of the pixels it covers (never of padding)."""
    if pool == "none":
        return y
    B, O, H, W = y.shape
    H2, W2 = (H + 1) // 2, (W + 1) // 2
    p = np.full((B, O, 2 * H2, 2 * W2), np.nan)
    p[..., :H, :W] = y
    win = p.reshape(B, O, H2, 2, W2, 2)
    return np.nanmax(win, axis=(3, 5)) if pool == "max2" else np.nanmean(win, axis=(3, 5))


def relu_block(X: np.ndarray, w: np.ndarray, b: np.ndarray | None, *, in_domain: str, Hs: int, Ws: int,
               pool: str) -> np.ndarray:
    """DESIGN §2b steps 1-3 and the forward transform, float64: the spectrum Z before the threshold."""
    K = kernel_spectrum(w, Hs, Ws) if in_domain == "spatial" else centred_kernel_spectrum(w, Hs, Ws)
    Y = np.einsum("bcpq,ocpq->bopq", X, K)
    if b is not None:
        Y[:, :, 0, 0] += np.asarray(b, dtype=np.float64) * math.sqrt(Hs * Ws)
    y = np.maximum(np.fft.irfft2(Y, s=(Hs, Ws), norm="ortho"), 0.0)
    return np.fft.rfft2(spatial_pool(y, pool), norm="ortho")


def reference(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, *, in_domain: str, C: int, Hs: int, Ws: int, k: int,
    beta: float, activation: str, capacity: int, value_dtype: str, pool: str = "none",
) -> np.ndarray:
    """SpecConv: packed [B, S_out] from a spatial [B, C, H, W] or packed [B, S_in] input."""
    w = np.asarray(w, dtype=np.float32)
    O = check(
        x_shape=np.shape(x), w_shape=w.shape, b_shape=None if b is None else np.shape(b), in_domain=in_domain,
        C=C, Hs=Hs, Ws=Ws, k=k, beta=beta, activation=activation, capacity=capacity, value_dtype=value_dtype,
        pool=pool,
    )
    upstream = None
    if in_domain == "spatial":
        with np.errstate(invalid="ignore", over="ignore"):  # a NaN/Inf pixel is flagged below, not warned
            X = spatial_spectrum(x, Hs, Ws)
        flags = np.where(packed.nonfinite_samples(x), np.uint32(packed.FLAG_NONFINITE), np.uint32(0))
    else:
        dec = base.decode(x, C, Hs, Ws, value_dtype, "SpecConv input X")
        X = dec.values.astype(np.complex128).reshape(-1, C, Hs, Ws // 2 + 1)
        upstream = dec.overflowed
        flags = dec.flags | np.where(packed.nonfinite_samples(dec.values), np.uint32(packed.FLAG_NONFINITE),
                                     np.uint32(0))
    if activation == "relu":
        # thresholded without an activation on the spectrum, like every runtime: in fp32
        with np.errstate(invalid="ignore", over="ignore"):
            Z = relu_block(X, w, b, in_domain=in_domain, Hs=Hs, Ws=Ws, pool=pool)
            Z = Z.astype(np.complex64).reshape(Z.shape[0], O, -1)
        return packed.pack(Z, Z, beta, capacity, value_dtype, upstream_overflowed=upstream, upstream_flags=flags)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf are flagged (header word 3), not warned
        K = kernel_spectrum(w, Hs, Ws)
        Y = np.einsum("bcpq,ocpq->bopq", X, K)
        if b is not None:
            Y[:, :, 0, 0] += np.asarray(b, dtype=np.float64) * math.sqrt(Hs * Ws)
        Y = Y.astype(np.complex64).reshape(Y.shape[0], O, -1)
        values = _activate(Y, activation)
    return packed.pack(Y, values, beta, capacity, value_dtype, upstream_overflowed=upstream, upstream_flags=flags)


def _reference(inputs: list[Any], attrs: dict[str, Any]) -> np.ndarray:
    x, w, *rest = inputs
    return reference(x, w, rest[0] if rest else None, **attrs)


# --------------------------------------------------------------------------------------- ONNX schema


def _infer_shape(ctx: Any, h: Any) -> None:
    w = ctx.get_input_type(1)
    if w is None or not w.tensor_type.HasField("shape") or not w.tensor_type.shape.dim[0].HasField("dim_value"):
        return  # output channels unknown: leave the output shape to value_info
    O = w.tensor_type.shape.dim[0].dim_value
    pool = h.attr(ctx, "pool") if h.has_attr(ctx, "pool") else DEFAULTS["pool"]
    pool = pool.decode() if isinstance(pool, bytes) else str(pool)
    F = packed.num_coeffs(*out_size(int(h.attr(ctx, "Hs")), int(h.attr(ctx, "Ws")), pool))
    h.set_output(ctx, "int32", [packed.row_words(O, F, int(h.attr(ctx, "capacity")), h.dtype(ctx))])


# ------------------------------------------------------------------------------------- ORT adapter


def _ort_variant(node: Any) -> str:
    return f"_{node.attrs['in_domain']}_{'bias' if len(node.inputs) == 3 else 'nobias'}"


def _ort_inputs(node: Any) -> list[str]:
    x = "float" if node.attrs["in_domain"] == "spatial" else "int32"
    return [x, "float", "float"][: len(node.inputs)]


# ---------------------------------------------------------------------------------- native adapter


def _native_unsupported(a: dict[str, Any]) -> str | None:
    """Why the native kernels cannot run this node (an attribute value they lack), else None."""
    if a["activation"] not in NATIVE_ACTIVATION:
        return (f"attribute 'activation' = {a['activation']!r} (hybrid block, DESIGN §2b) is not implemented by the "
                f"native kernels (they run {', '.join(map(repr, NATIVE_ACTIVATION))}); use backend 'reference' or 'ort'")
    if a.get("pool", "none") not in NATIVE_POOL:
        return (f"attribute 'pool' = {a['pool']!r} is not implemented by the native kernels; "
                "use backend 'reference' or 'ort'")
    return None


def native_params(
    *, in_domain: str, C: int, O: int, Hs: int, Ws: int, k: int, beta: float, activation: str, capacity: int,
    value_dtype: str, H: int = 0, W: int = 0, x_dtype: Any = np.float32, has_bias: bool = False,
    in_row_words: int = 0, input_spectrum: str = "auto", pool: str = "none",
) -> Any:
    """The sd_spec_conv_params of a SpecConv node (string attributes as in docs/ops.md).

    ``input_spectrum`` (spatial input): "auto" (the library's rule, what the planner assumes),
    "dense" (rfft2 into the workspace) or "streamed" (recomputed per tile, no buffer): same bits.
    ``pool`` ("none", "max2", "avg2"): the hybrid block's pool (activation "relu" only; the C validation
    refuses it otherwise, naming 'pool').
    """
    from specdeploy.native import abi

    op = NAME
    p = abi.ConvParams()
    p.in_domain = abi.enum(op, "in_domain", in_domain, NATIVE_DOMAIN)
    p.C, p.O, p.H, p.W = (abi.i32(op, n, v) for n, v in (("C", C), ("O", O), ("H", H), ("W", W)))
    p.Hs, p.Ws, p.k = (abi.i32(op, n, v) for n, v in (("Hs", Hs), ("Ws", Ws), ("k", k)))
    with np.errstate(over="ignore"):
        p.beta = float(np.float32(beta))  # non-finite values are reported by the C validation
    p.activation = abi.enum(op, "activation", activation, NATIVE_ACTIVATION)
    p.pool = abi.enum(op, "pool", pool, NATIVE_POOL)
    p.capacity = abi.i32(op, "capacity", capacity)
    p.value_dtype = abi.enum(op, "value_dtype", value_dtype, abi.VALUE_DTYPE)
    p.x_type = abi.float_type(op, "x dtype", x_dtype) if p.in_domain == 0 else 0
    p.has_bias = 1 if has_bias else 0
    p.input_spectrum = abi.enum(op, "input_spectrum", input_spectrum, INPUT_SPECTRUM)
    p.in_row_words = int(in_row_words)
    return p


def _native(node: Any, ctx: Any) -> NativeCall:
    a = node.attrs
    lib = ctx.lib
    w = ctx.weight_ptr(node.inputs[1])
    bias = ctx.weight_ptr(node.inputs[2]) if len(node.inputs) > 2 else None
    O = int(ctx.weight_shape(node.inputs[1])[0])
    common = dict(in_domain=a["in_domain"], C=a["C"], O=O, Hs=a["Hs"], Ws=a["Ws"], k=a["k"], beta=a["beta"],
                  activation=a["activation"], capacity=a["capacity"], value_dtype=a["value_dtype"],
                  has_bias=bias is not None, pool=a.get("pool", "none"))
    if a["in_domain"] == "spatial":
        _, _, H, W = ctx.in_shape(node.inputs[0])
        # the spatial input arrives as float32 (graph input) or float16 (standard ops in fp16)
        by_dtype = {dt: ctx.checked(native_params(**common, H=H, W=W, x_dtype=dt)) for dt in ("float32", "float16")}
    else:
        by_dtype = {"int32": ctx.checked(native_params(**common, in_row_words=ctx.row_words(node.inputs[0])))}
    S = lib.out_row_words(next(iter(by_dtype.values())))
    variants = list(by_dtype.values())

    def run(B: int, xs: list[int], x_dtype: str, y: int, ws: int, ws_bytes: int, stream: int) -> None:
        lib.spec_conv_forward_ptr(by_dtype[x_dtype], B, xs[0], w, bias, y, ws, ws_bytes, stream)

    return NativeCall((S,), "int32", tuple(by_dtype), run,
                      lambda B: max(lib.spec_conv_workspace_size(v, B) for v in variants))


OP = OpDef(
    name=NAME,
    attributes=ATTRIBUTES,
    doc="Spectral convolution, threshold at beta and an activation (tanh/none per coefficient, or relu + "
        "pool on the spatial map: the hybrid block); packed output (docs/ops.md).",
    n_inputs=(2, 3),
    inputs_doc="X, W and an optional B",
    weight_inputs=(1, 2),
    check_attrs=_check_attrs,
    check_node=_check_node,
    output=_output,
    dense_coeffs=_dense_coeffs,
    workspace=workspace,
    reference=_reference,
    schema_inputs=(
        SchemaParam("X", "TX", "spatial float [B,C,H,W] or packed int32 [B,S]"),
        SchemaParam("W", "TF", "kernels [O,C,k,k]"),
        SchemaParam("B", "TF", "bias [O]", "optional"),
    ),
    schema_outputs=(SchemaParam("Y", "P", "packed output"),),
    schema_types=(("TX", ("tensor(float)", "tensor(float16)", "tensor(int32)"), "input"),
                  ("TF", ("tensor(float)",), "weights")),
    infer_shape=_infer_shape,
    ort_variant=_ort_variant,
    ort_inputs=_ort_inputs,
    native=_native,
    defaults=DEFAULTS,
    native_unsupported=_native_unsupported,
)
