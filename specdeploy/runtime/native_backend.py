"""Backends "cuda" and "native-host": one graph executor over the native op library (C ABI).

    sess = runtime.load("vgg16.onnx", "cuda")          # libspecdeploy_kernels.so, torch CUDA tensors
    sess = runtime.load("vgg16.onnx", "native-host")   # libspecdeploy_host.so, torch CPU tensors
    logits = sess.run(x); sess.last_overflowed; sess.memory()

Why one executor for both: the "cuda" backend runs exported models on any NVIDIA GPU without
TensorRT (DESIGN §1), and CI has no GPU. The host library implements the same C ABI with the same
validation, workspace arithmetic and count/scan/write pipeline, so running the *same* executor on it
("native-host") puts every line of this file and the C++ op code behind real exported models in CI;
only the CUDA kernels themselves and the device bookkeeping stay GPU-only.

How a graph runs (``info.model``'s nodes, already in topological order):
* specdeploy nodes -> the pointer-level C ABI (``native.Library.*_forward_ptr``) with torch tensors
  as buffers (``data_ptr()``) and torch's current stream, so the native kernels and torch's own
  kernels are ordered on one stream and torch's stream-ordered caching allocator may reuse a block as
  soon as its last reader has been enqueued.
* standard ONNX ops used by the exports (Conv, Relu, MaxPool, Flatten, Gemm, Concat, Reshape,
  Identity, Dropout, Add, Clip, GlobalAveragePool; also LeakyRelu, MatMul, Squeeze, Unsqueeze) -> torch ops
  (cuDNN / cuBLAS on the GPU). An op outside that set is refused when the session is created.
* liveness: every activation is dropped right after its last reader (graph outputs are kept), so the
  allocator's peak reflects the graph's real liveness, as the planner (``specdeploy.memory``, figure 1)
  assumes. Views (Flatten, Reshape, Squeeze, Unsqueeze, Identity, Dropout) alias their input;
  Relu/Clip/LeakyRelu/Add-of-a-constant right after Conv/Gemm/MatMul run in place under exactly the
  planner's rule, so the executor's own byte count equals the planned live bytes step by step.
* workspace: each specdeploy op's ``*_workspace_size`` at the run's batch (the planner declares the
  same bytes). ``workspace="per_op"`` (default) allocates each op's own size at its step from the
  caching allocator and drops it afterwards: what the planner assumes, so figure 4 is comparable
  with figure 1. ``workspace="shared"`` keeps one buffer sized to the max over the graph, held by the
  session and reused by every op and run (like TensorRT's scratch); it saves the allocator calls
  and charges the largest workspace (often a first layer's dense input spectrum) for the whole run.
* overflow: the taps (``info.overflow_taps``) are returned as their 4-word headers; word 1 is the
  sticky ``overflowed`` flag, exactly what the reference backend's full taps give ``overflow_flags``.

Memory (``memory()``, DESIGN §5):
* "cuda", figure 4: ``device_peak_bytes`` = ``torch.cuda.max_memory_allocated`` minus the allocated
  bytes before the run (peak stats reset per run; weights and the session's shared workspace are
  outside that delta), plus the shared workspace the run used; max over runs since load or
  ``reset_memory()``. ``activation_peak_bytes`` is the allocator delta alone. The first run at a new
  batch size is preceded by one unmeasured run, so one-time allocations that torch keeps for the
  process (cuBLAS/cuDNN handles and workspaces) are not charged to the graph.
* both: ``tracked_peak_bytes``: the executor's own sum of live tensor bytes (one count per storage)
  plus the running op's workspace, peak over steps; the planner's definition measured on the tensors
  that really existed.
* plus the host process figures every backend reports (``Session.memory()``).

Options (``runtime.load(path, backend, **opts)``):
    library          the .so (or a build dir); default $SPECDEPLOY_KERNELS_LIB / $SPECDEPLOY_HOST_LIB,
                     else build/plugins (``specdeploy build-plugins --kind cuda|host``)
    fp16             run the standard ops in float16 (the twin at its best precision, DESIGN §5);
                     "cuda" default: $SPECDEPLOY_CUDA_FP16 in {1,true,yes,on} (how `specdeploy bench
                     --backend cuda` gets it), else False; "native-host" default False. SpecToSpatial
                     then emits float16 directly; specdeploy ops keep float32 weights; logits are
                     returned as float32.
    workspace        "per_op" (default) | "shared", see above
    measure_memory   read the allocator stats around each run (cuda; default True)
    device           "cuda" backend: the torch device (default "cuda", the current device)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from specdeploy import native
from specdeploy.runtime.errors import BackendUnavailableError, ModelError, OpExecutionError
from specdeploy.runtime.graph import ModelInfo, SpecNode, infer_tensors
from specdeploy.runtime.session import Session

try:
    import torch
    import torch.nn.functional as TF
except ImportError as _e:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "the native backends ('cuda', 'native-host') use torch tensors as buffers: pip install torch "
        "(a CUDA build of torch for 'cuda')"
    ) from _e

from onnx import numpy_helper

__all__ = [
    "NativeSession",
    "STANDARD_OPS",
    "FP16_ENV",
    "WORKSPACE_MODES",
    "cuda_session",
    "host_session",
    "runtime_session",
]

FP16_ENV = "SPECDEPLOY_CUDA_FP16"
WORKSPACE_MODES = ("per_op", "shared")
_STANDARD_DOMAINS = ("", "ai.onnx")

#: planner rules (specdeploy.memory), mirrored so the executor's byte count is comparable step by step
_VIEW_OPS = ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout")
_FUSED_ELEMENTWISE = ("Relu", "Clip", "LeakyRelu", "Add")
_FUSE_INTO = ("Conv", "Gemm", "MatMul")


# ------------------------------------------------------------------------------------------ steps


@dataclass
class _Step:
    """One node ready to run: ``fn(args, batch, ws) -> output`` plus what liveness/accounting need."""

    pos: int
    name: str
    op: str
    inputs: tuple[str, ...]  # all input names ("" for an omitted optional input)
    output: str
    fn: Callable[[list[Any], int, "_Workspace"], Any]
    alias: bool = False  # the output shares its input's storage (view or in-place)
    ws_size: Callable[[int], int] | None = None  # the op's workspace bytes at a batch (specdeploy ops)
    spec: bool = False


@dataclass
class _Workspace:
    """The workspace an op call may use: a pointer and its size (0/0 when the op needs none)."""

    ptr: int = 0
    nbytes: int = 0


@dataclass
class _Plan:
    """Per-batch facts: each step's workspace size and the shared buffer's size (their max)."""

    batch: int
    ws: list[int]
    ws_max: int


@dataclass
class _Tracker:
    """The executor's own account of live tensor bytes (one count per storage owner), per step."""

    live: int = 0
    peak: int = 0
    peak_node: str | None = None
    steps: list[tuple[str, int, int]] = field(default_factory=list)  # (node, live bytes, workspace)
    refs: dict[str, int] = field(default_factory=dict)  # owner -> live tensor names
    size: dict[str, int] = field(default_factory=dict)  # owner -> bytes

    def add(self, owner: str, nbytes: int) -> None:
        if owner not in self.refs:
            self.refs[owner] = 0
            self.size[owner] = nbytes
            self.live += nbytes
        self.refs[owner] += 1

    def drop(self, owner: str) -> None:
        self.refs[owner] -= 1
        if self.refs[owner] == 0:
            self.live -= self.size.pop(owner)
            del self.refs[owner]

    def step(self, node: str, transient: int, ws: int) -> None:
        total = self.live + transient + ws
        self.steps.append((node, self.live + transient, ws))
        if total > self.peak:
            self.peak, self.peak_node = total, node


def _nbytes(t: "torch.Tensor") -> int:
    return t.numel() * t.element_size()


# ---------------------------------------------------------------------------------------- session


class NativeSession(Session):
    """An exported model executed node by node: specdeploy ops through the C ABI, the rest in torch."""

    def __init__(self, info: ModelInfo, lib: native.Library, device: "torch.device", *, backend: str,
                 fp16: bool = False, workspace: str = "per_op", measure_memory: bool = True) -> None:
        super().__init__(info)
        if workspace not in WORKSPACE_MODES:
            raise ValueError(f"backend '{backend}': workspace must be one of {WORKSPACE_MODES}, got {workspace!r}")
        self.backend = backend
        self.lib = lib
        self.device = device
        self.is_cuda = device.type == "cuda"
        self.fdtype = torch.float16 if fp16 else torch.float32
        self.workspace_mode = workspace
        self.measure_memory = bool(measure_memory)
        self._plans: dict[int, _Plan] = {}
        self._ws_buf: "torch.Tensor | None" = None
        self._warm: set[int] = set()  # batch sizes already run once (cuda memory measurement)
        self._transient = 0  # bytes of casts made inside the running step (fp16 mode), for the account
        self.reset_memory()
        with self._procmem.measure_load(), self._device_ctx():
            self._weights: dict[str, torch.Tensor] = {}
            self._weights16: dict[str, torch.Tensor] = {}
            self._host_ints: dict[str, list[int]] = {}
            self._steps = self._compile()
        self._liveness()

    # -- setup ----------------------------------------------------------------------------------

    def _device_ctx(self) -> Any:
        """Make the session's GPU current (kernel launches go to the current device's context)."""
        if self.is_cuda:
            return torch.cuda.device(self.device)
        import contextlib

        return contextlib.nullcontext()

    def _where(self, name: str, op: str) -> str:
        return f"{self.info.label}: node '{name}' ({op})"

    def _weight(self, name: str, half: bool = False) -> "torch.Tensor":
        """A float initializer on the device; ``half``: its float16 copy (standard ops in fp16 mode)."""
        w = self._weights[name]
        if not half or w.dtype != torch.float32:
            return w
        if name not in self._weights16:
            self._weights16[name] = w.half()
        return self._weights16[name]

    def _load_weights(self) -> None:
        g = self.info.model.graph
        arrays = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        for n in g.node:
            if n.op_type == "Constant" and n.domain in _STANDARD_DOMAINS:
                for a in n.attribute:
                    if a.name == "value" and a.HasField("t"):
                        arrays[n.output[0]] = numpy_helper.to_array(a.t)
        for name, a in arrays.items():
            if a.dtype.kind in "iu" and a.size <= 64:
                self._host_ints[name] = [int(v) for v in a.reshape(-1)]  # shapes, axes: read on the host
            if a.dtype == np.float64:
                a = a.astype(np.float32)
            self._weights[name] = torch.from_numpy(np.ascontiguousarray(a).copy()).to(self.device)

    def _compile(self) -> list[_Step]:
        """Turn every node into a step; unknown ops and attributes are refused here, not mid-run."""
        self._load_weights()
        info = self.info
        g = info.model.graph
        self._shapes = infer_tensors(info.model, info.spec_nodes, info.weights, info.batch or 1)
        spec_by_index = {n.index: n for n in info.spec_nodes}
        readers: dict[str, int] = {}
        for n in g.node:
            for x in n.input:
                if x and x not in self._weights:
                    readers[x] = readers.get(x, 0) + 1
        outputs = {o.name for o in g.output}
        fused_ok: set[str] = set()
        steps: list[_Step] = []
        for idx, n in enumerate(g.node):
            std = n.domain in _STANDARD_DOMAINS
            if std and n.op_type == "Constant":
                continue  # a weight, loaded above (the planner does not count it as a step either)
            name = n.name or f"#{idx}"
            outs = [o for o in n.output if o]
            if len(outs) != 1 or n.output[0] != outs[0]:
                extra = [o for o in n.output[1:] if o]
                raise ModelError(f"{self._where(name, n.op_type)}: the native backends run single-output nodes; "
                                 f"optional outputs {extra} are not supported")
            if idx in spec_by_index:
                try:
                    step = self._spec_step(len(steps), spec_by_index[idx])
                except native.NativeError as e:  # a params field the C ABI cannot take (e.g. int32 range)
                    raise ModelError(f"{self._where(name, n.op_type)}: {e}") from None
            elif std:
                step = self._standard_step(len(steps), n, name)
                data_in = [x for x in n.input if x and x not in self._weights]
                if n.op_type in _VIEW_OPS:
                    step.alias = True
                elif (n.op_type in _FUSED_ELEMENTWISE and len(data_in) == 1 and data_in[0] in fused_ok
                      and readers.get(data_in[0], 0) == 1 and data_in[0] not in outputs):
                    step.alias = True
                    step.fn = self._inplace(n, name)
                if n.op_type in _FUSE_INTO or (step.alias and n.op_type in _FUSED_ELEMENTWISE):
                    fused_ok.add(step.output)
            else:  # read_model admits only standard domains and specdeploy
                raise ModelError(f"{self._where(name, n.op_type)}: domain '{n.domain}' is not supported")
            steps.append(step)
        return steps

    def _liveness(self) -> None:
        """Last reading step of every activation; graph outputs are never dropped."""
        last: dict[str, int] = {}
        for s in self._steps:
            for x in s.inputs:
                if x and x not in self._weights:
                    last[x] = s.pos
        self._outputs = {o.name for o in self.info.model.graph.output}
        self._taps = frozenset(self.info.overflow_taps)
        self._drop_after: list[list[str]] = [[] for _ in self._steps]
        for s in self._steps:  # an output nobody reads lives at its own step only (as planned)
            if s.output not in last and s.output not in self._outputs:
                last[s.output] = s.pos
        for x, pos in last.items():
            if x not in self._outputs:
                self._drop_after[pos].append(x)

    # -- specdeploy ops ---------------------------------------------------------------------------

    def _checked(self, node: SpecNode, params: Any) -> Any:
        try:
            self.lib.validate(params)
        except native.NativeError as e:
            raise ModelError(f"{self._where(node.name, node.op)}: {e}") from None
        return params

    def _row_words(self, tensor: str) -> int:
        return int(self._shapes[tensor].shape[1])  # type: ignore[arg-type]

    def _call(self, node: SpecNode, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except native.NativeError as e:
            raise OpExecutionError(f"{self._where(node.name, node.op)}: {e}") from e

    def _stream(self) -> int:
        return torch.cuda.current_stream(self.device).cuda_stream if self.is_cuda else 0

    def _spec_step(self, pos: int, node: SpecNode) -> _Step:
        a = node.attrs
        lib = self.lib
        dev = self.device
        if node.op == "SpecConv":
            w = self._weight(node.inputs[1])
            b = self._weight(node.inputs[2]) if len(node.inputs) > 2 else None
            O = int(w.shape[0])
            common = dict(in_domain=a["in_domain"], C=a["C"], O=O, Hs=a["Hs"], Ws=a["Ws"], k=a["k"], beta=a["beta"],
                          activation=a["activation"], capacity=a["capacity"], value_dtype=a["value_dtype"],
                          has_bias=b is not None)
            if a["in_domain"] == "spatial":
                _, _, H, W = self._shapes[node.inputs[0]].shape
                by_dtype = {  # the spatial input arrives as float32 (graph input) or float16 (fp16 mode)
                    dt: self._checked(node, native.conv_params(**common, H=H, W=W, x_dtype=npdt))
                    for dt, npdt in ((torch.float32, np.float32), (torch.float16, np.float16))
                }
            else:
                p = self._checked(node, native.conv_params(**common, in_row_words=self._row_words(node.inputs[0])))
                by_dtype = {torch.int32: p}
            S = lib.out_row_words(next(iter(by_dtype.values())))

            def conv(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
                x = args[0].contiguous()
                p = by_dtype.get(x.dtype)
                if p is None:  # a spatial input of another float type: compute in float32
                    x, p = x.float(), by_dtype[torch.float32]
                y = torch.empty((B, S), dtype=torch.int32, device=dev)
                self._call(node, lib.spec_conv_forward_ptr, p, B, x.data_ptr(), w.data_ptr(),
                           None if b is None else b.data_ptr(), y.data_ptr(), ws.ptr, ws.nbytes, self._stream())
                return y

            variants = list(by_dtype.values())
            return _Step(pos, node.name, node.op, node.inputs, node.output, conv, spec=True,
                         ws_size=lambda B: max(lib.spec_conv_workspace_size(v, B) for v in variants))
        if node.op == "SpecPool":
            p = self._checked(node, native.pool_params(
                C=a["C"], Hs=a["Hs"], Ws=a["Ws"], out_Hs=a["out_Hs"], out_Ws=a["out_Ws"], capacity=a["capacity"],
                value_dtype=a["value_dtype"], in_row_words=self._row_words(node.inputs[0])))
            S = lib.out_row_words(p)

            def pool(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
                y = torch.empty((B, S), dtype=torch.int32, device=dev)
                self._call(node, lib.spec_pool_forward_ptr, p, B, args[0].contiguous().data_ptr(), y.data_ptr(),
                           ws.ptr, ws.nbytes, self._stream())
                return y

            return _Step(pos, node.name, node.op, node.inputs, node.output, pool, spec=True,
                         ws_size=lambda B: lib.spec_pool_workspace_size(p, B))
        if node.op == "SpecToSpatial":
            y_np = np.float16 if self.fdtype == torch.float16 else np.float32
            p = self._checked(node, native.to_spatial_params(
                C=a["C"], Hs=a["Hs"], Ws=a["Ws"], value_dtype=a["value_dtype"],
                in_row_words=self._row_words(node.inputs[0]), y_dtype=y_np))
            shape = (a["C"], a["Hs"], a["Ws"])

            def to_spatial(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
                y = torch.empty((B, *shape), dtype=self.fdtype, device=dev)
                self._call(node, lib.spec_to_spatial_forward_ptr, p, B, args[0].contiguous().data_ptr(),
                           y.data_ptr(), ws.ptr, ws.nbytes, self._stream())
                return y

            return _Step(pos, node.name, node.op, node.inputs, node.output, to_spatial, spec=True,
                         ws_size=lambda B: lib.spec_to_spatial_workspace_size(p, B))
        # SpecConcat
        p = self._checked(node, native.concat_params(
            C=a["C"], Hs=a["Hs"], Ws=a["Ws"], capacity=a["capacity"], value_dtype=a["value_dtype"],
            in_row_words=[self._row_words(x) for x in node.inputs]))
        S = lib.out_row_words(p)

        def concat(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
            xs = [t.contiguous() for t in args]
            y = torch.empty((B, S), dtype=torch.int32, device=dev)
            self._call(node, lib.spec_concat_forward_ptr, p, B, [t.data_ptr() for t in xs], y.data_ptr(),
                       ws.ptr, ws.nbytes, self._stream())
            return y

        return _Step(pos, node.name, node.op, node.inputs, node.output, concat, spec=True,
                     ws_size=lambda B: lib.spec_concat_workspace_size(p, B))

    # -- standard ops -----------------------------------------------------------------------------

    def _f(self, t: "torch.Tensor") -> "torch.Tensor":
        """A float activation in the standard ops' compute dtype (the graph input is float32)."""
        if t.is_floating_point() and t.dtype != self.fdtype:
            self._transient += t.numel() * (2 if self.fdtype == torch.float16 else 4)
            return t.to(self.fdtype)
        return t

    def _standard_step(self, pos: int, n: Any, name: str) -> _Step:
        from onnx import helper

        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        where = self._where(name, n.op_type)
        half = self.fdtype == torch.float16
        op = n.op_type

        def unsupported(what: str) -> ModelError:
            return ModelError(f"{where}: {what} is not supported by the native backends")

        def wt(i: int) -> "torch.Tensor | None":
            """Input i as a device weight (float initializers in the compute dtype), or None."""
            if i >= len(n.input) or not n.input[i]:
                return None
            if n.input[i] in self._weights:
                return self._weight(n.input[i], half)
            return None

        def pads2d(pads: Sequence[int]) -> tuple[tuple[int, int] | None, tuple[int, int, int, int]]:
            """ONNX [t, l, b, r] -> symmetric (ph, pw) for torch, or None plus F.pad's (l, r, t, b)."""
            t, l, b, r = (list(pads) + [0, 0, 0, 0])[:4] if pads else (0, 0, 0, 0)
            return ((t, l) if (t == b and l == r) else None), (l, r, t, b)

        def auto_pad_ok() -> None:
            ap = attrs.get("auto_pad", b"NOTSET")
            ap = ap.decode() if isinstance(ap, bytes) else ap
            if ap not in ("NOTSET", "VALID"):
                raise unsupported(f"auto_pad={ap!r}")

        fn: Callable[[list[Any], int, _Workspace], Any]
        if op == "Conv":
            auto_pad_ok()
            if len(n.input) < 2 or n.input[1] not in self._weights:
                raise unsupported("a Conv whose weight is not an initializer")
            w, bias = wt(1), wt(2)
            if len(n.input) > 2 and n.input[2] and bias is None:
                raise unsupported("a Conv whose bias is not an initializer")
            if w.dim() != 4:  # type: ignore[union-attr]
                raise unsupported(f"a {w.dim() - 2}-D Conv")  # type: ignore[union-attr]
            sym, full = pads2d(attrs.get("pads", []))
            stride = tuple(attrs.get("strides", [1, 1]))
            dil = tuple(attrs.get("dilations", [1, 1]))
            groups = int(attrs.get("group", 1))

            def fn(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
                x = self._f(args[0])
                if sym is None:
                    x = TF.pad(x, full)
                return TF.conv2d(x, w, bias, stride, sym or 0, dil, groups)
        elif op == "MaxPool":
            auto_pad_ok()
            if "kernel_shape" not in attrs or len(attrs["kernel_shape"]) != 2:
                raise unsupported("a MaxPool that is not 2-D")
            k = tuple(attrs["kernel_shape"])
            stride = tuple(attrs.get("strides", [1, 1]))
            dil = tuple(attrs.get("dilations", [1, 1]))
            ceil = bool(attrs.get("ceil_mode", 0))
            sym, full = pads2d(attrs.get("pads", []))

            def fn(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
                x = self._f(args[0])
                if sym is None:
                    x = TF.pad(x, full, value=float("-inf"))
                return TF.max_pool2d(x, k, stride, sym or 0, dil, ceil)
        elif op == "GlobalAveragePool":
            def fn(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
                return self._f(args[0]).mean(dim=tuple(range(2, args[0].dim())), keepdim=True)
        elif op == "Gemm":
            alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
            ta, tb = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))
            wb, wc = wt(1), wt(2)

            def fn(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
                a = self._f(args[0])
                bm = wb if wb is not None else self._f(args[1])
                c = wc if wc is not None else (self._f(args[2]) if len(args) > 2 and args[2] is not None else None)
                a = a.t() if ta else a
                bm = bm.t() if tb else bm
                if c is not None and alpha == 1.0 and beta == 1.0:
                    return torch.addmm(c, a, bm)
                y = torch.mm(a, bm)
                if alpha != 1.0:
                    y.mul_(alpha)
                if c is not None and beta != 0.0:
                    y.add_(c, alpha=beta)
                return y
        elif op == "MatMul":
            wb = wt(1)

            def fn(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
                return torch.matmul(self._f(args[0]), wb if wb is not None else self._f(args[1]))
        elif op == "Relu":
            def fn(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
                return torch.relu(self._f(args[0]))
        elif op == "LeakyRelu":
            slope = float(attrs.get("alpha", 0.01))

            def fn(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
                return TF.leaky_relu(self._f(args[0]), slope)
        elif op == "Clip":
            lo, hi = self._clip_bounds(n, attrs, where)

            def fn(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
                x = self._f(args[0])
                return x.clone() if lo is None and hi is None else torch.clamp(x, lo, hi)
        elif op == "Add":
            wa, wb = wt(0), wt(1)

            def fn(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
                a = wa if wa is not None else self._f(args[0])
                b = wb if wb is not None else self._f(args[1])
                return a + b
        elif op == "Concat":
            if "axis" not in attrs:
                raise unsupported("a Concat without 'axis'")
            axis = int(attrs["axis"])

            def fn(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
                return torch.cat([self._f(t) for t in args], dim=axis)
        elif op == "Flatten":
            axis = int(attrs.get("axis", 1))

            def fn(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
                x = args[0]
                ax = axis if axis >= 0 else axis + x.dim()
                return x.reshape(math.prod(x.shape[:ax]), math.prod(x.shape[ax:]))
        elif op == "Reshape":
            if len(n.input) < 2 or n.input[1] not in self._host_ints:
                raise unsupported("a Reshape whose shape is not a constant initializer")
            target = self._host_ints[n.input[1]]
            allowzero = int(attrs.get("allowzero", 0))

            def fn(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
                x = args[0]
                shape = [x.shape[i] if (d == 0 and not allowzero) else d for i, d in enumerate(target)]
                return x.reshape(shape)
        elif op in ("Squeeze", "Unsqueeze"):
            if len(n.input) > 1 and n.input[1]:
                if n.input[1] not in self._host_ints:
                    raise unsupported(f"a {op} whose axes are not a constant initializer")
                axes = list(self._host_ints[n.input[1]])
            else:
                axes = list(attrs.get("axes", []))
            if op == "Unsqueeze" and not axes:
                raise unsupported("an Unsqueeze without axes")

            def fn(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
                x = args[0]
                if op == "Squeeze":
                    ax = [a % x.dim() for a in axes] if axes else [i for i, s in enumerate(x.shape) if s == 1]
                    return x.reshape([s for i, s in enumerate(x.shape) if i not in ax])
                shape = list(x.shape)
                rank = x.dim() + len(axes)
                for a in sorted(a % rank for a in axes):
                    shape.insert(a, 1)
                return x.reshape(shape)
        elif op in ("Identity", "Dropout"):
            def fn(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
                return args[0]
        else:
            raise ModelError(
                f"{where}: ONNX op '{op}' is not implemented by the native backends; they run "
                f"{', '.join(STANDARD_OPS)} (use backend 'ort' or 'reference' for this model)"
            )
        inputs = tuple(n.input)
        return _Step(pos, name, op, inputs, n.output[0], fn)

    def _clip_bounds(self, n: Any, attrs: dict[str, Any], where: str) -> tuple[float | None, float | None]:
        """Clip's bounds: inputs 1 and 2 (opset >= 11, must be initializers) or attributes (older)."""
        out: list[float | None] = []
        for i, key in ((1, "min"), (2, "max")):
            name = n.input[i] if len(n.input) > i and n.input[i] else None
            if name is not None:
                if name not in self._weights:
                    raise ModelError(f"{where}: a Clip bound that is not an initializer is not supported by the "
                                     f"native backends")
                out.append(float(self._weights[name].reshape(-1)[0].item()))
            else:
                out.append(None if attrs.get(key) is None else float(attrs[key]))
        return out[0], out[1]

    def _inplace(self, n: Any, name: str) -> Callable[[list[Any], int, _Workspace], Any]:
        """The fused form of Relu/Clip/LeakyRelu/Add-of-a-constant: writes into its producer's buffer."""
        op = n.op_type
        half = self.fdtype == torch.float16
        if op == "Relu":
            return lambda args, B, ws: args[0].relu_()
        if op == "LeakyRelu":
            from onnx import helper

            slope = float(next((helper.get_attribute_value(a) for a in n.attribute if a.name == "alpha"), 0.01))
            return lambda args, B, ws: TF.leaky_relu_(args[0], slope)
        if op == "Clip":
            from onnx import helper

            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            lo, hi = self._clip_bounds(n, attrs, self._where(name, op))
            if lo is None and hi is None:
                return lambda args, B, ws: args[0]
            return lambda args, B, ws: args[0].clamp_(lo, hi)
        # Add of a constant: the activation is whichever input is not a weight
        const = next(x for x in n.input if x in self._weights)

        def add(args: list[Any], B: int, ws: _Workspace) -> "torch.Tensor":
            x = next(t for x_name, t in zip(n.input, args) if x_name not in self._weights)
            c = self._weight(const, half)
            if torch.broadcast_shapes(x.shape, c.shape) != x.shape:
                return x + c
            return x.add_(c)

        return add

    # -- running ----------------------------------------------------------------------------------

    def _plan(self, B: int) -> _Plan:
        """Workspace sizes at batch B (cached); the shared buffer grows to the largest batch seen."""
        plan = self._plans.get(B)
        if plan is None:
            ws = []
            for s in self._steps:
                if s.ws_size is None:
                    ws.append(0)
                    continue
                try:
                    ws.append(int(s.ws_size(B)))
                except native.NativeError as e:
                    raise OpExecutionError(f"{self._where(s.name, s.op)}: workspace size at batch {B}: {e}") from e
            plan = _Plan(B, ws, max(ws, default=0))
            self._plans[B] = plan
        if self.workspace_mode == "shared" and plan.ws_max > 0:
            if self._ws_buf is None or self._ws_buf.numel() < plan.ws_max:
                self._ws_buf = None  # release the smaller one first
                self._ws_buf = torch.empty(plan.ws_max, dtype=torch.uint8, device=self.device)
        return plan

    def _execute(self, x: "torch.Tensor", plan: _Plan,
                 keep: frozenset[str] = frozenset()) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run every step; returns (graph outputs and ``keep`` tensors, overflow-tap headers [B, 4])."""
        B = plan.batch
        heads: dict[str, Any] = {}
        env: dict[str, Any] = {self.info.input_name: x}
        owner: dict[str, str] = {self.info.input_name: self.info.input_name}
        tr = _Tracker()
        tr.add(self.info.input_name, _nbytes(x))
        shared = _Workspace(self._ws_buf.data_ptr(), self._ws_buf.numel()) if self._ws_buf is not None else _Workspace()
        for s, need in zip(self._steps, plan.ws):
            args = [None if not name else (env[name] if name in env else self._weights.get(name)) for name in s.inputs]
            self._transient = 0
            buf = None
            if need and self.workspace_mode == "per_op":
                buf = torch.empty(need, dtype=torch.uint8, device=self.device)
                ws = _Workspace(buf.data_ptr(), need)
            else:
                ws = shared if need else _Workspace()
            y = s.fn(args, B, ws)
            del args
            buf = None  # noqa: F841  (per-op workspace: back to the caching allocator, stream-ordered)
            env[s.output] = y
            # account by storage, not by intent: a view or in-place result shares its input's buffer
            ptr = y.untyped_storage().data_ptr()
            src = next((x for x in s.inputs if x and x in env and x != s.output
                        and env[x].untyped_storage().data_ptr() == ptr), None)
            if src is not None:
                owner[s.output] = owner[src]
                tr.add(owner[s.output], 0)
            else:
                owner[s.output] = s.output
                tr.add(s.output, _nbytes(y))
            if s.output in self._taps:
                # only the 4 header words are needed (word 1: sticky overflowed); copy them so the
                # packed tensor itself can be dropped at its last reader
                heads[s.output] = y[:, :4].clone()
                tr.add(s.output + "#header", _nbytes(heads[s.output]))
            tr.step(s.name, self._transient, need)
            for name in self._drop_after[s.pos]:
                if name in keep or name not in env:
                    continue
                del env[name]
                tr.drop(owner.pop(name))
        self._last_tracker = tr
        return env, heads

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        B = x.shape[0]
        with self._device_ctx():
            plan = self._plan(B)
            measure = self.is_cuda and self.measure_memory
            if measure and B not in self._warm:
                # one unmeasured run per new batch: lazy one-time allocations (cuBLAS/cuDNN handles and
                # workspaces that torch keeps for the process) must not count as this graph's peak
                self._execute(torch.zeros(x.shape, dtype=torch.float32, device=self.device), plan)
                self._warm.add(B)
            if measure:
                base = torch.cuda.memory_allocated(self.device)
                torch.cuda.reset_peak_memory_stats(self.device)
            xt = torch.from_numpy(x).to(self.device) if self.is_cuda else torch.from_numpy(x)
            env, heads = self._execute(xt, plan)
            del xt
            logits_t = env[self.info.output_name]
            taps_t = [heads[t] for t in self.info.overflow_taps]
            if measure:
                delta = torch.cuda.max_memory_allocated(self.device) - base
                shared = plan.ws_max if self.workspace_mode == "shared" else 0
                self._record_device(delta, shared)
            logits = logits_t.float().cpu().numpy().copy()
            if taps_t:
                heads = torch.cat(taps_t, dim=1).cpu().numpy()
                taps = [heads[:, 4 * i : 4 * i + 4] for i in range(len(taps_t))]
            else:
                taps = []
        self._record_tracked(plan)
        return logits, taps

    def run_tensors(self, x: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Run once and return the named intermediate tensors on the host (debugging, parity tests).

        Those tensors are kept alive to the end, so this run's memory figures are not recorded.
        """
        x = self.check_input(x)
        unknown = [n for n in names if n != self.info.input_name and n not in {s.output for s in self._steps}]
        if unknown:
            raise ValueError(f"{self.info.label}: no tensors named {unknown}")
        with self._device_ctx():
            plan = self._plan(x.shape[0])
            xt = torch.from_numpy(x).to(self.device) if self.is_cuda else torch.from_numpy(x)
            env, _ = self._execute(xt, plan, keep=frozenset(names))
            out = {n: env[n].cpu().numpy().copy() for n in names}
        return out

    # -- memory -----------------------------------------------------------------------------------

    def reset_memory(self) -> None:
        super().reset_memory()
        self._dev_peak: int | None = None
        self._act_peak: int | None = None
        self._dev_last: int | None = None
        self._trk_peak: int | None = None
        self._trk_node: str | None = None
        self._trk_last: int | None = None
        self._last_batch: int | None = None
        self._last_ws = 0
        self._last_tracker: _Tracker | None = None

    def _record_device(self, delta: int, shared_ws: int) -> None:
        total = delta + shared_ws
        self._dev_last = total
        self._dev_peak = total if self._dev_peak is None else max(self._dev_peak, total)
        self._act_peak = delta if self._act_peak is None else max(self._act_peak, delta)

    def _record_tracked(self, plan: _Plan) -> None:
        tr = self._last_tracker
        if tr is None:
            return
        self._trk_last = tr.peak
        if self._trk_peak is None or tr.peak > self._trk_peak:
            self._trk_peak, self._trk_node = tr.peak, tr.peak_node
        self._last_batch = plan.batch
        self._last_ws = plan.ws_max

    @property
    def last_steps(self) -> list[tuple[str, int, int]]:
        """The last run's accounting per step: (node, live tensor bytes, the op's workspace bytes)."""
        return list(self._last_tracker.steps) if self._last_tracker is not None else []

    def memory(self) -> dict[str, Any]:
        """Host process figures (``Session.memory()``) plus this executor's, labelled (bytes)."""
        out = dict(super().memory())
        out.update({
            "library": str(self.lib.path),
            "library_build": self.lib.build_info,
            "standard_ops_dtype": "float16" if self.fdtype == torch.float16 else "float32",
            "workspace_mode": self.workspace_mode,
            "workspace_bytes": self._last_ws,
            "workspace_scope": (
                "largest specdeploy-op workspace at the last batch (*_workspace_size); in 'shared' mode one "
                "buffer of this size is held by the session and reused by every op"
            ),
            "batch": self._last_batch,
            "tracked_peak_bytes": self._trk_peak,
            "tracked_peak_node": self._trk_node,
            "last_run_tracked_peak_bytes": self._trk_last,
            "tracked_scope": (
                "the executor's own sum of live tensor bytes (one count per storage; views and in-place ops "
                "add nothing) plus the running op's own workspace, peak over steps and runs since load or "
                "reset_memory(); the planner's definition (DESIGN §5 figure 1) on the tensors that existed"
            ),
        })
        if self.is_cuda:
            out.update({
                "device_name": torch.cuda.get_device_name(self.device),
                "device_peak_bytes": self._dev_peak,
                "last_run_device_peak_bytes": self._dev_last,
                "activation_peak_bytes": self._act_peak,
                "device_scope": (
                    "DESIGN §5 figure 4: torch.cuda.max_memory_allocated minus memory_allocated before the run "
                    "(peak stats reset per run: input copy, activations, outputs, per-op workspaces and "
                    "cuDNN/cuBLAS scratch) plus the shared workspace in 'shared' mode; weights excluded; max over "
                    "runs since load or reset_memory(). activation_peak_bytes: the allocator delta alone."
                    if self.measure_memory else "not measured (measure_memory=False)"
                ),
            })
        return out


STANDARD_OPS = ("Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Concat", "Reshape", "Identity", "Dropout", "Add",
                "Clip", "GlobalAveragePool", "LeakyRelu", "MatMul", "Squeeze", "Unsqueeze")


# -------------------------------------------------------------------------------------- factories


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _load_library(kind: str, backend: str, library: Any) -> native.Library:
    try:
        return native.load(kind, library)
    except native.NativeLibraryError as e:
        raise BackendUnavailableError(f"backend '{backend}' is not available: {e}") from e


def cuda_session(info: ModelInfo, *, library: Any = None, fp16: bool | None = None, workspace: str = "per_op",
                 measure_memory: bool = True, device: str | int | None = None) -> NativeSession:
    """Backend "cuda": the CUDA kernel library (libspecdeploy_kernels.so) with torch CUDA tensors.

    Raises BackendUnavailableError when torch has no CUDA, no GPU is visible, the library is not built
    (with the build command) or was built for other GPU architectures (sd_check_device's text).
    """
    if torch.version.cuda is None:
        raise BackendUnavailableError(
            f"backend 'cuda' is not available: this torch ({torch.__version__}) is a CPU-only build; install a "
            f"CUDA build of torch (its tensors are the device buffers). On a CPU machine use backend 'native-host'."
        )
    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            "backend 'cuda' is not available: torch sees no CUDA device (torch.cuda.is_available() is False: no "
            "NVIDIA GPU, driver not loaded, or CUDA_VISIBLE_DEVICES empty)"
        )
    dev = torch.device(device if device is not None else "cuda")
    if dev.type != "cuda":
        raise ValueError(f"backend 'cuda': device must be a CUDA device, got {dev}")
    if dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    with torch.cuda.device(dev):
        torch.cuda.init()
        try:
            lib = native.load("cuda", library)
            lib.check_device()  # again on this device: load() checked the device current at that time
        except native.NativeLibraryError as e:
            name = torch.cuda.get_device_name(dev)
            major, minor = torch.cuda.get_device_capability(dev)
            hint = ""
            if e.status is not None:  # the library loaded but cannot run here (sd_check_device's text)
                hint = (f"; rebuild the kernels for this GPU: `specdeploy build-plugins --kind cuda` (default "
                        f"architectures) or native.build('cuda', cuda_architectures='{major}{minor}')")
            raise BackendUnavailableError(
                f"backend 'cuda' is not available on {dev} ({name}, compute capability {major}.{minor}): {e}{hint}"
            ) from e
    if fp16 is None:
        fp16 = _env_flag(FP16_ENV)
    return NativeSession(info, lib, dev, backend="cuda", fp16=bool(fp16), workspace=workspace,
                         measure_memory=measure_memory)


def host_session(info: ModelInfo, *, library: Any = None, fp16: bool = False, workspace: str = "per_op",
                 measure_memory: bool = True) -> NativeSession:
    """Backend "native-host": the host library (libspecdeploy_host.so) with torch CPU tensors (CI)."""
    lib = _load_library("host", "native-host", library)
    return NativeSession(info, lib, torch.device("cpu"), backend="native-host", fp16=bool(fp16),
                         workspace=workspace, measure_memory=measure_memory)


def runtime_session(info: ModelInfo, **opts: Any) -> NativeSession:
    """Factory of backend "native-host" (``runtime.load(path, "native-host", **opts)``).

    Backend "cuda" is created by ``specdeploy.native.runtime_session`` (-> :func:`cuda_session`).
    """
    return host_session(info, **opts)
