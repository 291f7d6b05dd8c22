"""One graph executor over the native op library (C ABI), for backends "native-host" and "cuda".

Why one executor for both: the "cuda" backend runs exported models on any NVIDIA GPU without
TensorRT (DESIGN §1), and CI has no GPU. The host library implements the same C ABI with the same
validation, workspace arithmetic and count/scan/write pipeline, so running the *same* executor on it
("native-host") puts every line of this file and the C++ op code behind real exported models in CI;
only the CUDA kernels themselves and the device bookkeeping stay GPU-only.

The executor is generic over a :class:`Device`: where buffers live and how standard ops compute.
``specdeploy.native.host`` gives numpy arrays and numpy kernels (no torch: a Jetson's CPU);
``specdeploy.native.cuda`` gives torch CUDA tensors, torch's current stream and cuDNN/cuBLAS.

How a graph runs (``info.model``'s nodes, already in topological order):
* specdeploy nodes -> each op's native adapter (``specdeploy.ops.<op>``, ``OpDef.native``), which fills
  the params struct once and calls the pointer-level C ABI with the buffers' addresses and the
  device's stream, so native kernels and the device's own kernels are ordered on one stream.
* standard ONNX ops -> ``specdeploy.native.standard_ops.TABLE``; an op outside it is refused when the
  session is created.
* liveness, views and in-place fusion: ``specdeploy.liveness``, the same rule the planner
  (``specdeploy.memory``, figure 1) uses, so the executor's own byte count equals the planned live
  bytes step by step. Every activation is dropped right after its last reader (graph outputs kept).
* workspace: each specdeploy op's ``*_workspace_size`` at the run's batch (the planner declares the
  same bytes). ``workspace="per_op"`` (default) allocates each op's own size at its step and drops it
  afterwards: what the planner assumes, so figure 4 is comparable with figure 1.
  ``workspace="shared"`` keeps one buffer sized to the max over the graph, held by the session and
  reused by every op and run (like TensorRT's scratch).
* overflow: the taps (``info.overflow_taps``) are returned as their 4-word headers; word 1 is the
  sticky ``overflowed`` flag, exactly what the reference backend's full taps give ``overflow_flags``.

Memory (``memory()``, DESIGN §5): ``tracked_peak_bytes``, the executor's own sum of live tensor bytes
(one count per storage) plus the running op's workspace, peak over steps (the planner's definition
measured on the tensors that really existed); the device's own figures (cuda: figure 4, see
``specdeploy.native.cuda``); plus the host process figures every backend reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Protocol, Sequence

import numpy as np
from onnx import helper, numpy_helper

from specdeploy import liveness, ops
from specdeploy.native import abi
from specdeploy.native.errors import NativeError
from specdeploy.native.standard_ops import IN_PLACE, STANDARD_OPS, TABLE, BuildContext, Kernels
from specdeploy.runtime.errors import ModelError, OpExecutionError, UnsupportedByBackendError
from specdeploy.runtime.graph import ModelInfo, SpecNode, infer_tensors
from specdeploy.runtime.session import Session

__all__ = ["Device", "NativeSession", "WORKSPACE_MODES", "STANDARD_OPS"]

WORKSPACE_MODES = ("per_op", "shared")


class Device(Kernels, Protocol):
    """Where a session's buffers live and how its standard ops compute (host: numpy; cuda: torch)."""

    is_cuda: bool
    float_dtype: str  # compute dtype of the standard ops: "float32" or "float16"

    def context(self) -> ContextManager[Any]: ...
    def empty(self, shape: Sequence[int], dtype: str) -> Any: ...
    def from_host(self, a: np.ndarray) -> Any: ...
    def to_host(self, a: Any) -> np.ndarray: ...
    def ptr(self, a: Any) -> int: ...
    def storage(self, a: Any) -> int: ...  # identity of the buffer an array views
    def nbytes(self, a: Any) -> int: ...
    def dtype(self, a: Any) -> str: ...  # numpy dtype name
    def contiguous(self, a: Any) -> Any: ...
    def cast(self, a: Any, dtype: str) -> Any: ...
    def header_copy(self, y: Any) -> Any: ...  # y[:, :4], copied
    def stream(self) -> int: ...
    def warm_up(self, batch: int, run: Callable[[], Any]) -> None: ...  # before a measured run
    def measure_begin(self) -> None: ...
    def measure_end(self) -> int | None: ...  # peak bytes allocated during the run, or None
    def memory_fields(self, peak: int | None, last: int | None, activation_peak: int | None) -> dict[str, Any]: ...


@dataclass
class _Step:
    """One node ready to run: ``fn(args, batch, ws) -> output`` plus what accounting needs."""

    pos: int
    name: str
    op: str
    inputs: tuple[str, ...]  # all input names ("" for an omitted optional input)
    output: str
    fn: Callable[[list[Any], int, "_Workspace"], Any]
    ws_size: Callable[[int], int] | None = None  # the op's workspace bytes at a batch (specdeploy ops)


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


@dataclass
class BindContext:
    """What an op's native adapter (``OpDef.native``) may ask of the executor while binding a node."""

    lib: abi.Library
    float_dtype: str
    checked: Callable[[Any], Any]  # validate a params struct with the library (ModelError naming the node)
    weight_ptr: Callable[[str], int]
    weight_shape: Callable[[str], tuple[int, ...]]
    in_shape: Callable[[str], tuple[int, ...]]
    row_words: Callable[[str], int]


def flag_option(backend: str, name: str, value: Any) -> bool:
    """A backend option that is a switch (e.g. ``fp16``): a bool, or a clear error naming it (a string
    like ``--backend-opt fp16=maybe`` must not switch it on by being truthy)."""
    if not isinstance(value, bool):
        raise ValueError(f"backend '{backend}': option '{name}' must be true or false, got {value!r}")
    return value


class NativeSession(Session):
    """An exported model executed node by node: specdeploy ops through the C ABI, the rest on ``device``."""

    def __init__(self, info: ModelInfo, lib: abi.Library, device: Device, *, backend: str,
                 workspace: str = "per_op") -> None:
        super().__init__(info)
        if workspace not in WORKSPACE_MODES:
            raise ValueError(f"backend '{backend}': workspace must be one of {WORKSPACE_MODES}, got {workspace!r}")
        self.backend = backend
        self.lib = lib
        self.dev = device
        self.workspace_mode = workspace
        self._plans: dict[int, _Plan] = {}
        self._ws_buf: Any = None
        self._transient = 0  # bytes of casts made inside the running step (fp16 mode), for the account
        self.reset_memory()
        with self._procmem.measure_load(), device.context():
            self._weights: dict[str, Any] = {}
            self._weights_f: dict[str, Any] = {}
            self._host_small: dict[str, list[float]] = {}
            self._steps = self._compile()

    # -- setup ----------------------------------------------------------------------------------

    def _where(self, name: str, op: str) -> str:
        return f"{self.info.label}: node '{name}' ({op})"

    def _weight_f(self, name: str) -> Any:
        """A float initializer in the standard ops' compute dtype (a float16 copy in fp16 mode)."""
        w = self._weights[name]
        if self.dev.dtype(w) != "float32" or self.dev.float_dtype == "float32":
            return w
        if name not in self._weights_f:
            self._weights_f[name] = self.dev.cast(w, self.dev.float_dtype)
        return self._weights_f[name]

    def _load_weights(self) -> None:
        g = self.info.model.graph
        arrays = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        for n in g.node:
            if n.op_type == "Constant" and n.domain in liveness.STANDARD_DOMAINS:
                for a in n.attribute:
                    if a.name == "value" and a.HasField("t"):
                        arrays[n.output[0]] = numpy_helper.to_array(a.t)
        for name, a in arrays.items():
            if a.size <= 64:
                self._host_small[name] = [v.item() for v in a.reshape(-1)]  # shapes, axes, bounds: on the host
            if a.dtype == np.float64:
                a = a.astype(np.float32)
            self._weights[name] = self.dev.from_host(np.ascontiguousarray(a).copy())

    def _compile(self) -> list[_Step]:
        """Turn every node into a step; unknown ops and attributes are refused here, not mid-run."""
        self._load_weights()
        info = self.info
        g = info.model.graph
        self._shapes = infer_tensors(info.model, info.spec_nodes, info.weights, info.batch or 1)
        self._live = liveness.analyse(list(g.node), self._weights, info.input_name, {o.name for o in g.output})
        spec_by_index = {n.index: n for n in info.spec_nodes}
        steps: list[_Step] = []
        for ls in self._live.steps:
            n, idx, name = ls.node, ls.index, ls.name
            outs = [o for o in n.output if o]
            if len(outs) != 1 or n.output[0] != outs[0]:
                extra = [o for o in n.output[1:] if o]
                raise ModelError(f"{self._where(name, n.op_type)}: the native backends run single-output nodes; "
                                 f"optional outputs {extra} are not supported")
            if idx in spec_by_index:
                node = spec_by_index[idx]
                why = ops.REGISTRY[node.op].native_unsupported(node.attrs)
                if why is not None:
                    raise UnsupportedByBackendError(f"{self._where(name, n.op_type)}: {why}")
                try:
                    step = self._spec_step(ls.pos, spec_by_index[idx])
                except NativeError as e:  # a params field the C ABI cannot take (e.g. int32 range)
                    raise ModelError(f"{self._where(name, n.op_type)}: {e}") from None
            elif n.domain in liveness.STANDARD_DOMAINS:
                step = self._standard_step(ls.pos, n, name, ls.in_place)
            else:  # read_model admits only standard domains and specdeploy
                raise ModelError(f"{self._where(name, n.op_type)}: domain '{n.domain}' is not supported")
            steps.append(step)
        self._taps = frozenset(info.overflow_taps)
        self._outputs = self._live.outputs
        self._drop_after = self._live.drop_after()
        return steps

    # -- specdeploy ops ---------------------------------------------------------------------------

    def _spec_step(self, pos: int, node: SpecNode) -> _Step:
        d = ops.REGISTRY[node.op]
        where = self._where(node.name, node.op)

        def checked(params: Any) -> Any:
            try:
                self.lib.validate(params)
            except NativeError as e:
                raise ModelError(f"{where}: {e}") from None
            return params

        ctx = BindContext(
            lib=self.lib, float_dtype=self.dev.float_dtype, checked=checked,
            weight_ptr=lambda name: self.dev.ptr(self._weights[name]),
            weight_shape=lambda name: tuple(self._weights[name].shape),
            in_shape=lambda name: tuple(self._shapes[name].shape),  # type: ignore[arg-type]
            row_words=lambda name: int(self._shapes[name].shape[1]),  # type: ignore[arg-type]
        )
        call = d.native(node, ctx)
        data = [i for i in range(len(node.inputs)) if i not in d.weight_inputs]
        dev = self.dev

        def fn(args: list[Any], B: int, ws: _Workspace) -> Any:
            xs = [dev.contiguous(args[i]) for i in data]
            dt = dev.dtype(xs[0])
            if dt not in call.accepts:  # e.g. a spatial input of another float type: compute in float32
                xs[0], dt = self._cast(xs[0], call.accepts[0]), call.accepts[0]
            y = dev.empty((B, *call.out_shape), call.out_dtype)
            try:
                call.run(B, [dev.ptr(x) for x in xs], dt, dev.ptr(y), ws.ptr, ws.nbytes, dev.stream())
            except NativeError as e:
                raise OpExecutionError(f"{where}: {e}") from e
            return y

        return _Step(pos, node.name, node.op, node.inputs, node.output, fn, ws_size=call.workspace)

    # -- standard ops -----------------------------------------------------------------------------

    def _cast(self, t: Any, dtype: str) -> Any:
        """A converted copy of ``t``: a tensor of the running step alone, charged as its transient bytes
        (the planner's "Conversions" rule, ``specdeploy.memory``, charges the same copy)."""
        self._transient += int(np.prod(t.shape)) * np.dtype(dtype).itemsize
        return self.dev.cast(t, dtype)

    def _f(self, t: Any) -> Any:
        """A float activation in the standard ops' compute dtype (the graph input is float32)."""
        dt = self.dev.dtype(t)
        if dt.startswith("float") and dt != self.dev.float_dtype:
            return self._cast(t, self.dev.float_dtype)
        return t

    def _standard_step(self, pos: int, n: Any, name: str, in_place: bool) -> _Step:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        where = self._where(name, n.op_type)
        builder = (IN_PLACE if in_place else TABLE).get(n.op_type)
        if builder is None:
            raise ModelError(
                f"{where}: ONNX op '{n.op_type}' is not implemented by the native backends; they run "
                f"{', '.join(STANDARD_OPS)} (use backend 'ort' or 'reference' for this model)"
            )
        ctx = BuildContext(k=self.dev, where=where, weight=self._weight_f, is_weight=lambda x: x in self._weights,
                           host_values=self._host_small.get, f=self._f)
        fn = builder(n, attrs, ctx)
        return _Step(pos, name, n.op_type, tuple(n.input), n.output[0], lambda args, B, ws: fn(args, B))

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
                except NativeError as e:
                    raise OpExecutionError(f"{self._where(s.name, s.op)}: workspace size at batch {B}: {e}") from e
            plan = _Plan(B, ws, max(ws, default=0))
            self._plans[B] = plan
        if self.workspace_mode == "shared" and plan.ws_max > 0:
            if self._ws_buf is None or self.dev.nbytes(self._ws_buf) < plan.ws_max:
                self._ws_buf = None  # release the smaller one first
                self._ws_buf = self.dev.empty((plan.ws_max,), "uint8")
        return plan

    def _execute(self, inputs: list[Any], plan: _Plan,
                 keep: frozenset[str] = frozenset()) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run every step; returns (graph outputs and ``keep`` tensors, overflow-tap headers [B, 4]).

        The input tensor is taken out of ``inputs`` (a one-element list) so that the executor holds its
        only reference and releases it after its last reader, as the plan does (a caller's variable
        would keep the device copy alive to the end of the run: +4 KiB per sample on the H200's paper
        VGG16, 10% over the plan)."""
        dev = self.dev
        B = plan.batch
        heads: dict[str, Any] = {}
        env: dict[str, Any] = {self.info.input_name: inputs.pop()}
        owner: dict[str, str] = {self.info.input_name: self.info.input_name}
        tr = _Tracker()
        tr.add(self.info.input_name, dev.nbytes(env[self.info.input_name]))
        shared = _Workspace(dev.ptr(self._ws_buf), dev.nbytes(self._ws_buf)) if self._ws_buf is not None else _Workspace()
        for s, need in zip(self._steps, plan.ws):
            args = [None if not name else (env[name] if name in env else self._weights.get(name)) for name in s.inputs]
            self._transient = 0
            buf = None
            if need and self.workspace_mode == "per_op":
                buf = dev.empty((need,), "uint8")
                ws = _Workspace(dev.ptr(buf), need)
            else:
                ws = shared if need else _Workspace()
            y = s.fn(args, B, ws)
            del args
            buf = None  # noqa: F841  (per-op workspace: released (cuda: stream-ordered) after its step)
            env[s.output] = y
            # account by storage, not by intent: a view or in-place result shares its input's buffer
            st = dev.storage(y)
            src = next((x for x in s.inputs if x and x in env and x != s.output and dev.storage(env[x]) == st), None)
            if src is not None:
                owner[s.output] = owner[src]
                tr.add(owner[s.output], 0)
            else:
                owner[s.output] = s.output
                tr.add(s.output, dev.nbytes(y))
            if s.output in self._taps:
                # only the 4 header words are needed (word 1: sticky overflowed); copy them so the
                # packed tensor itself can be dropped at its last reader
                heads[s.output] = dev.header_copy(y)
                tr.add(s.output + "#header", dev.nbytes(heads[s.output]))
            del y  # env holds it: no second reference while later steps run
            tr.step(s.name, self._transient, need)
            for name in self._drop_after[s.pos]:
                if name in keep or name not in env:
                    continue
                del env[name]
                tr.drop(owner.pop(name))
        self._last_tracker = tr
        return env, heads

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        with self.dev.context():
            plan = self._plan(x.shape[0])
            # cuda: one unmeasured run per new batch (one-time library allocations are not the graph's)
            self.dev.warm_up(plan.batch, lambda: self._execute([self.dev.from_host(np.zeros_like(x))], plan))
            self.dev.measure_begin()
            env, heads = self._execute([self.dev.from_host(x)], plan)
            logits_t = env[self.info.output_name]
            taps_t = [heads[t] for t in self.info.overflow_taps]
            peak = self.dev.measure_end()
            if peak is not None:
                self._record_device(peak, plan.ws_max if self.workspace_mode == "shared" else 0)
            logits = self.dev.to_host(logits_t).astype(np.float32, copy=True)
            taps = [self.dev.to_host(t).copy() for t in taps_t]
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
        with self.dev.context():
            plan = self._plan(x.shape[0])
            env, _ = self._execute([self.dev.from_host(x)], plan, keep=frozenset(names))
            return {n: self.dev.to_host(env[n]).copy() for n in names}

    # -- memory -----------------------------------------------------------------------------------

    def reset_memory(self) -> None:
        super().reset_memory()
        self._dev_peak: int | None = None
        self._act_peak: int | None = None
        self._dev_last: int | None = None
        self._trk_peak: int | None = None
        self._trk_node: str | None = None
        self._trk_last: int | None = None
        self._trk_act: int | None = None  # live tensor bytes alone (no workspace), peak over steps and runs
        self._trk_ws: int | None = None  # the largest op workspace charged at a step
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
        act = max((live for _, live, _ in tr.steps), default=0)
        ws = max((w for _, _, w in tr.steps), default=0)
        self._trk_act = act if self._trk_act is None else max(self._trk_act, act)
        self._trk_ws = ws if self._trk_ws is None else max(self._trk_ws, ws)
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
            "standard_ops_dtype": self.dev.float_dtype,
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
            # issue 14: activations and scratch as separate figures
            "tracked_activation_peak_bytes": self._trk_act,
            "tracked_op_workspace_peak_bytes": self._trk_ws,
        })
        out.update(self.dev.memory_fields(self._dev_peak, self._dev_last, self._act_peak))
        if out.get("device_peak_bytes") is not None and self._trk_peak is not None:
            # what the allocator held beyond the tensors and op workspaces the executor charged: the
            # libraries' scratch (cuDNN/cuBLAS workspaces) and the caching allocator's rounding
            out["library_scratch_peak_bytes"] = max(0, int(out["device_peak_bytes"]) - int(self._trk_peak))
            out["separate_scope"] = (
                "tracked_activation_peak_bytes: live tensors alone (the plan's activations); "
                "tracked_op_workspace_peak_bytes: the largest specdeploy-op workspace (the plan's declared "
                "workspace); library_scratch_peak_bytes: device_peak_bytes - tracked_peak_bytes (cuDNN/cuBLAS "
                "scratch and allocator rounding, which the plan does not count)"
            )
        return out

