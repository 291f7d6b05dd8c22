"""Backend "reference": ``onnx.reference.ReferenceEvaluator`` with the numpy reference ops.

The ground truth: standard ops run in onnx's own numpy implementation, specdeploy ops in
``specdeploy.reference`` (the ops every other runtime is tested against). Slow, exact, dependency-light.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from specdeploy import ops
from specdeploy.runtime.errors import OpExecutionError
from specdeploy.runtime.graph import ModelInfo
from specdeploy.runtime.session import Session

__all__ = ["ReferenceSession", "REFERENCE_OPS"]


class _SpecOp(OpRun):
    """Common part: name the node when the reference op fails (it should not on a validated graph)."""

    op_domain = ops.DOMAIN

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> tuple[np.ndarray]:
        try:
            return (fn(*args, **kwargs),)
        except Exception as e:
            raise OpExecutionError(f"node '{self.onnx_node.name}' ({self.onnx_node.op_type}): {e}") from e


def _op_class(d: ops.OpDef) -> type[_SpecOp]:
    """An OpRun named like the op that runs its reference function (``specdeploy.ops.<op>``)."""

    def _run(self: _SpecOp, *inputs: np.ndarray | None, **attrs: Any) -> tuple[np.ndarray]:
        return self._call(d.reference, list(inputs), attrs)

    return type(d.name, (_SpecOp,), {"_run": _run, "__doc__": d.doc})


REFERENCE_OPS = [_op_class(d) for d in ops.REGISTRY.values()]


class ReferenceSession(Session):
    """ReferenceEvaluator over the validated graph; overflow taps are fetched as extra results."""

    backend = "reference"

    def __init__(self, info: ModelInfo) -> None:
        super().__init__(info)
        with self._procmem.measure_load():
            self._evaluator = ReferenceEvaluator(info.model, new_ops=REFERENCE_OPS)
        self._fetch = [info.output_name, *info.overflow_taps]

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        res = self._evaluator.run(self._fetch, {self.info.input_name: x})
        return np.asarray(res[0], dtype=np.float32), list(res[1:])
