"""Planned inference memory (DESIGN §5, figure 1) from the ONNX file alone.

Why a planner and not only measurements: it is deterministic, needs no GPU, runs in CI, and is the
figure an engine with an ideal allocator would reach, so the spectral model and its twin are compared
on what their graphs *need*, not on what an allocator happened to do. The rules (docs/bench.md):

* Steps, views, in-place fusion and live ranges follow ``specdeploy.liveness`` (the one rule, shared
  with the native executor): steps are the nodes in topological order (file order when it is one;
  Constant nodes are weights); a tensor is live from the step that produces it (graph input: step 0)
  to its last reader (graph outputs: the last step); views (Flatten, Reshape, Squeeze, Unsqueeze,
  Identity, Dropout) alias their input; Relu, Clip, LeakyRelu and Add of a constant directly after
  Conv/Gemm/MatMul write in place when the producer's output has no other reader (be fair to the
  twin, as TensorRT fuses): no new tensor, the buffer's live range is extended. At each step the live
  tensors' bytes plus the op's declared workspace are summed; the peak over steps is the planned
  peak, reported with the node where it occurs.
* Weights (initializers, Constant outputs) are reported separately, never as activations.
* Workspace: each specdeploy op declares exactly what the native library's ``*_workspace_size``
  returns at the planned batch (each op's ``workspace`` in ``specdeploy.ops`` ports
  plugins/common/src/plan.cpp; a CI test
  holds the two equal), so the plan and the cuda backend's allocator peak count the same bytes, and
  a TensorRT plugin the same at its profile's maximum batch. That is the overflow pipeline's per-sample level histogram and threshold words (every op
  with a packed output), the DFT twiddle tables (SpecConv, SpecToSpatial), and for SpecConv with
  ``in_domain = spatial`` whose input spectrum is not streamed (``streams_input``) the dense
  spectrum of its input, ``B * C * F * 8`` bytes (fp32 complex, F = Hs * (Ws // 2 + 1)), the only
  dense spectral buffer the contract allows. Standard ops declare 0: the twin's conv workspace
  depends on the algorithm cuDNN/TensorRT picks and is not charged, which favours the twin.
* ``activation_dtype = "fp16"`` counts float32 activations as 2 bytes (the twin at its best
  precision, to compare with fp16 spectral values), SpecToSpatial's output included: the fp16 runs
  write it as float16 (the cuda backend with ``fp16``, and TensorRT, whose plugin offers kHALF).
  The graph input (an fp32 binding), packed tensors (int32 rows, their value width is already in S)
  and the workspace keep their sizes.
* Conversions: a standard op that computes (not a view, not fused in place) runs in the accounted
  precision, so a float activation of another dtype that it reads (under fp16 accounting: the fp32
  graph input or a view of it, e.g. a twin's first Conv) is first converted. The converted copy is a
  tensor of its own, ``"<input> as <dtype> (step s)"`` (op "Cast"), live at that step only, one per
  read: what the native backends allocate (the executor's cast, counted as transient bytes of the
  step); TensorRT inserts the same kind of copy (a reformat) when an fp16 layer reads an fp32 binding.
  A spectral model's first SpecConv reads the fp32 input itself: no copy.

CLI: ``specdeploy memory MODEL.onnx [--batch B] [--activation-dtype fp32|fp16] [--json F]``.
Never imports torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from specdeploy import liveness, ops
from specdeploy.liveness import FUSED_ELEMENTWISE, VIEW_OPS
from specdeploy.ops._base import HIST_LEVELS, HIST_WORDS, PIPE_WORDS, WS_ALIGN  # noqa: F401  (the library layout the plan ports)
from specdeploy.ops._base import align as _align  # noqa: F401  (tests size the dense spectrum with it)
from specdeploy.ops.spec_conv import streams_input

__all__ = [
    "ACTIVATION_DTYPES",
    "FUSED_ELEMENTWISE",
    "VIEW_OPS",
    "TensorRow",
    "StepRow",
    "MemoryPlan",
    "plan",
    "declared_workspace",
    "streams_input",
    "register",
]

ACTIVATION_DTYPES = ("fp32", "fp16")
GRAPH_INPUT = "(graph input)"


@dataclass
class TensorRow:
    """One activation tensor: who makes it, its size, and its live range in steps (inclusive)."""

    name: str
    producer: str
    op: str
    shape: tuple[int, ...]
    dtype: str  # as accounted (float16 under fp16 accounting)
    bytes: int  # 0 when it aliases another tensor's buffer
    first: int
    last: int
    alias_of: str | None = None


@dataclass
class StepRow:
    """One node: bytes live while it runs, its declared workspace, and the sum."""

    step: int
    node: str
    op: str
    outputs: list[str]
    live_bytes: int
    workspace_bytes: int
    total_bytes: int
    live: list[str] = field(default_factory=list)


@dataclass
class MemoryPlan:
    """The planned memory of one model at one batch and accounting precision."""

    model: str
    batch: int
    activation_dtype: str
    value_dtype: str | None
    tensors: list[TensorRow]
    steps: list[StepRow]
    peak_bytes: int
    peak_step: int
    peak_node: str
    peak_op: str
    live_peak_bytes: int  # the peak of live activations alone (no workspace): the feature maps' share
    weights_bytes: int
    input_bytes: int
    output_bytes: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for t in d["tensors"]:
            t["shape"] = list(t["shape"])
        return d

    def table(self) -> str:
        """The per-layer table: one row per tensor (graph input first), peak step starred."""
        rows = [("step", "tensor", "op (node)", "shape", "dtype", "bytes", "live", "workspace", "live total")]
        by_first = {s.step: s for s in self.steps}
        for t in self.tensors:
            s = by_first.get(t.first) if t.producer != GRAPH_INPUT else None
            size = f"= {t.alias_of}" if t.alias_of else _fmt(t.bytes)
            star = "*" if s is not None and s.step == self.peak_step else ""
            rows.append((
                "-" if t.producer == GRAPH_INPUT else f"{t.first}{star}", t.name,
                t.op if t.producer == GRAPH_INPUT else f"{t.op} ({t.producer})", "x".join(map(str, t.shape)),
                t.dtype, size, f"{t.first}..{t.last}", _fmt(s.workspace_bytes) if s else "",
                _fmt(s.total_bytes) if s else "",
            ))
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines += [
            "",
            f"model {self.model}: batch {self.batch}, activations counted as {self.activation_dtype}"
            + (f", packed values {self.value_dtype}" if self.value_dtype else ""),
            f"planned peak {_fmt(self.peak_bytes)} ({self.peak_bytes} bytes) at step {self.peak_step}, "
            f"node '{self.peak_node}' ({self.peak_op}); live activations alone peak at "
            f"{_fmt(self.live_peak_bytes)} ({self.live_peak_bytes} bytes)",
            f"weights {_fmt(self.weights_bytes)} (reported separately), input {_fmt(self.input_bytes)}, "
            f"output {_fmt(self.output_bytes)}",
        ]
        return "\n".join(lines)


def _fmt(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def declared_workspace(op: str, attrs: dict[str, Any], batch: int, out_channels: int | None = None) -> int:
    """Workspace bytes a specdeploy op declares at ``batch`` (DESIGN §5): the library's own figure.

    ``out_channels`` (O, the weight's first dimension) is needed for a spatial-input SpecConv (it
    decides whether the input spectrum is streamed) and for a "relu" one (its chunk of output channels). Why a port and not a call: the planner must run
    from the ONNX file alone, without the native library (CI without a compiler, a laptop). Each op's
    ``workspace`` (``specdeploy.ops.<op>``) ports plugins/common/src/plan.cpp;
    tests/test_native_host.py checks it against ``sd_*_workspace_size`` of the host library over a
    grid of attributes and batches, tests/test_native_backend.py for every op of real exports.
    Standard ops declare 0.
    """
    return ops.declared_workspace(op, attrs, batch, out_channels)


def plan(model: Any, *, batch: int | None = None, activation_dtype: str = "fp32") -> MemoryPlan:
    """Plan the activation memory of an exported ONNX model (path or ModelProto); see the module doc.

    ``batch`` sets a dynamic batch (default 1; must not exceed the declared max) and must equal a
    static one. Raises ``specdeploy.runtime.ModelError`` for a file that cannot be run.
    """
    from specdeploy.runtime.graph import infer_tensors, read_model

    if activation_dtype not in ACTIVATION_DTYPES:
        raise ValueError(f"activation_dtype must be one of {ACTIVATION_DTYPES}, got {activation_dtype!r}")
    info = read_model(model)
    B = info.check_batch(batch if batch is not None else (info.batch or 1))
    tensors = infer_tensors(info.model, info.spec_nodes, info.weights, B)
    g = info.model.graph
    weights = info.weights
    spec_by_index = {n.index: n for n in info.spec_nodes}
    outputs = {o.name for o in g.output}
    # read_model put the nodes in topological order; the views, fusion and last uses: specdeploy.liveness
    live = liveness.analyse(list(g.node), weights, info.input_name, outputs)

    def size(name: str, as_declared: bool = False) -> tuple[int, str]:
        t = tensors.get(name)
        if t is None or not t.known:
            raise ValueError(f"{info.label}: cannot size tensor '{name}' (shape {None if t is None else t.shape})")
        if activation_dtype == "fp16" and t.dtype == "float32" and not as_declared:
            return t.nbytes(2), "float16"
        return t.nbytes(), t.dtype

    rows: dict[str, TensorRow] = {}
    nbytes, dtype = size(info.input_name, as_declared=True)  # the input binding stays as declared
    rows[info.input_name] = TensorRow(info.input_name, GRAPH_INPUT, "input", tensors[info.input_name].shape,  # type: ignore[arg-type]
                                      dtype, nbytes, 0, 0)
    workspace = [0] * len(live.steps)
    compute = "float16" if activation_dtype == "fp16" else "float32"
    conversions: set[str] = set()  # the converted copies (module doc, "Conversions"), live at one step
    for st in live.steps:
        s, idx, n = st.pos, st.index, st.node
        spec = spec_by_index.get(idx)
        if spec is not None:
            O = None
            if ops.REGISTRY[spec.op].weight_inputs:  # the output channels, for a workspace that needs them
                O = int(weights[spec.inputs[1]].shape[0])  # type: ignore[index]  (read_model: an initializer)
            workspace[s] = declared_workspace(spec.op, spec.attrs, B, O)
        elif st.alias_of is None:  # a standard op that computes: its float inputs in the compute dtype
            for x in dict.fromkeys(st.data_inputs):
                r = rows[x]
                if r.dtype.startswith("float") and r.dtype != compute:
                    name = f"{x} as {compute} (step {s})"
                    reads = st.data_inputs.count(x)  # the executor converts at each read
                    rows[name] = TensorRow(name, st.name, "Cast", r.shape, compute,
                                           reads * tensors[x].nbytes(np.dtype(compute).itemsize), s, s)
                    conversions.add(name)
        for o in n.output:
            if not o:
                continue
            shape = tensors[o].shape if o in tensors else ()
            owner = live.buffer_of[o]
            if owner != o:
                rows[o] = TensorRow(o, st.name, n.op_type, shape, rows[owner].dtype, 0, s, s, owner)  # type: ignore[arg-type]
            else:
                nbytes, dtype = size(o)
                rows[o] = TensorRow(o, st.name, n.op_type, shape, dtype, nbytes, s, s)  # type: ignore[arg-type]
    for name, row in rows.items():
        if name not in conversions:  # a conversion lives at its reader's step only
            row.last = live.last_use[name] if row.alias_of is not None else live.buffer_end[name]
    steps: list[StepRow] = []
    for st in live.steps:
        s, n = st.pos, st.node
        alive = [name for name, r in rows.items() if r.alias_of is None and r.first <= s <= r.last]
        live_bytes = sum(rows[name].bytes for name in alive)
        steps.append(StepRow(s, st.name, n.op_type, [o for o in n.output if o], live_bytes,
                             workspace[s], live_bytes + workspace[s], alive))
    peak = max(steps, key=lambda r: (r.total_bytes, -r.step))
    return MemoryPlan(
        model=info.label, batch=B, activation_dtype=activation_dtype, value_dtype=info.value_dtype,
        tensors=list(rows.values()), steps=steps, peak_bytes=peak.total_bytes, peak_step=peak.step,
        peak_node=peak.node, peak_op=peak.op, live_peak_bytes=max(r.live_bytes for r in steps),
        weights_bytes=sum(w.nbytes() for w in weights.values()),
        input_bytes=rows[info.input_name].bytes,
        output_bytes=sum(rows[live.buffer_of[o]].bytes for o in outputs if o in rows),
    )


def _cmd_memory(args: Any) -> int:
    from specdeploy import outputs

    p = plan(args.model, batch=args.batch, activation_dtype=args.activation_dtype)
    print(p.table())
    if p.activation_dtype == "fp32" and p.value_dtype == "fp16":
        print("note: standard-op activations counted as fp32; `specdeploy bench` counts both models in fp16 when "
              "the spectral values are fp16 (pass --activation-dtype fp16 to compare with it)")
    if args.json:
        outputs.write_text(args.json, json.dumps(p.to_dict(), indent=2))
        print(f"written: {args.json}")
    return 0


def register(subparsers: Any) -> None:
    """The ``specdeploy memory`` verb."""
    from specdeploy.argtypes import positive_int

    p = subparsers.add_parser("memory", help="planned inference memory of an ONNX model (DESIGN §5 figure 1)")
    p.add_argument("model", help="exported .onnx file")
    p.add_argument("--batch", type=positive_int, default=None, help="batch size (dynamic models; default 1)")
    p.add_argument("--activation-dtype", choices=ACTIVATION_DTYPES, default="fp32",
                   help="count float activations of standard ops as fp32 or fp16 (the twin's best precision)")
    p.add_argument("--json", default=None, help="write the full plan as JSON")
    p.add_argument("--force", action="store_true", help="replace an existing --json file (never the model)")
    p.set_defaults(func=_cmd_memory)

