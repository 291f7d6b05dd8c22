"""The one liveness rule: steps, views, in-place fusion and last uses of an ONNX graph's activations.

Why one module: "planned equals measured" (DESIGN §5, figures 1 and 4) rests on the planner
(``specdeploy.memory.plan``) and the native executor (``specdeploy.native.executor``) agreeing on
which tensors exist and when they die. Both call :func:`analyse`; neither has its own copy.

The rule (docs/bench.md):

* Steps are the nodes in the given (topological) order; standard-domain Constant nodes are weights,
  not steps.
* Views: Flatten, Reshape, Squeeze, Unsqueeze, Identity, Dropout alias their first data input.
* Fused elementwise (be fair to the twin, as TensorRT fuses): Relu, Clip, LeakyRelu, and Add of a
  constant, with exactly one data input, directly after Conv/Gemm/MatMul (or after such a fused op),
  write in place when the producer's output has no other reader and is not a graph output.
* A tensor is last used by its last reader's step; one nobody reads, at its own step; graph outputs
  live to the end. A buffer lives until the last use of any tensor sharing it.

Never imports torch nor onnx (it only reads ``op_type``, ``domain``, ``input``, ``output`` of nodes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Container, Sequence

__all__ = ["VIEW_OPS", "FUSED_ELEMENTWISE", "FUSE_INTO", "STANDARD_DOMAINS", "Step", "Liveness", "analyse"]

VIEW_OPS = ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout")
FUSED_ELEMENTWISE = ("Relu", "Clip", "LeakyRelu", "Add")
FUSE_INTO = ("Conv", "Gemm", "MatMul")
STANDARD_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Step:
    """One node that runs: its position among steps, its index in the node list, and how it writes."""

    pos: int
    index: int
    node: Any  # onnx.NodeProto
    data_inputs: tuple[str, ...]  # inputs that are activations (not weights, not omitted)
    alias_of: str | None  # the data input whose buffer the output shares (view or in place)
    in_place: bool  # fused elementwise: the op must write into its input's buffer

    @property
    def name(self) -> str:
        return self.node.name or f"#{self.index}"


@dataclass(frozen=True)
class Liveness:
    """The analysed graph: steps, which buffer every tensor lives in, and when each tensor dies."""

    steps: list[Step]
    outputs: frozenset[str]
    #: tensor -> the tensor owning its buffer (itself unless a view or in-place result)
    buffer_of: dict[str, str]
    #: tensor -> the step of its last use (graph outputs: the last step)
    last_use: dict[str, int]
    #: buffer owner -> the last step at which its buffer is live (max over the tensors sharing it)
    buffer_end: dict[str, int]

    def drop_after(self) -> list[list[str]]:
        """Per step, the tensors (graph outputs never) whose last use it is: an executor frees them."""
        out: list[list[str]] = [[] for _ in self.steps]
        for t, pos in self.last_use.items():
            if t not in self.outputs:
                out[pos].append(t)
        return out


def analyse(nodes: Sequence[Any], weights: Container[str], input_name: str, outputs: Container[str]) -> Liveness:
    """Apply the module's rule to ``nodes`` (topological order); ``weights``: initializer/Constant names."""
    steps: list[Step] = []
    for idx, n in enumerate(nodes):
        if n.op_type == "Constant" and n.domain in STANDARD_DOMAINS:
            continue
        steps.append(Step(len(steps), idx, n, tuple(x for x in n.input if x and x not in weights), None, False))
    readers: dict[str, list[int]] = {}
    for s in steps:
        for x in s.data_inputs:
            readers.setdefault(x, []).append(s.pos)
    first = {input_name: 0}  # every tensor the steps produce (and the input) -> the step producing it
    for s in steps:
        for o in s.node.output:
            if o:
                first[o] = s.pos
    outs = frozenset(t for t in first if t in outputs)
    buffer_of = {input_name: input_name}
    fused_ok: set[str] = set()  # tensors an elementwise op may be fused into
    for i, s in enumerate(steps):
        n = s.node
        std = n.domain in STANDARD_DOMAINS
        alias, in_place = None, False
        if std and n.op_type in VIEW_OPS and s.data_inputs:
            alias = s.data_inputs[0]
        elif (std and n.op_type in FUSED_ELEMENTWISE and len(s.data_inputs) == 1 and s.data_inputs[0] in fused_ok
              and len(readers.get(s.data_inputs[0], [])) == 1 and s.data_inputs[0] not in outs):
            alias, in_place = s.data_inputs[0], True
        if alias is not None:
            steps[i] = s = Step(s.pos, s.index, n, s.data_inputs, alias, in_place)
        for o in n.output:
            if not o:
                continue
            buffer_of[o] = buffer_of[alias] if alias is not None else o
            if std and (n.op_type in FUSE_INTO or in_place):
                fused_ok.add(o)
    last_step = len(steps) - 1
    last_use = {}
    for t, f in first.items():
        last_use[t] = last_step if t in outs else max(readers.get(t, [f]))
    buffer_end: dict[str, int] = {}
    for t, owner in buffer_of.items():
        buffer_end[owner] = max(buffer_end.get(owner, 0), last_use[t])
    return Liveness(steps, outs, buffer_of, last_use, buffer_end)
