"""Backend "reference": ``onnx.reference.ReferenceEvaluator`` with the numpy reference ops.

The ground truth: standard ops run in onnx's own numpy implementation, specdeploy ops in
``specdeploy.reference`` (the ops every other runtime is tested against). Slow, exact, dependency-light.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from specdeploy import reference
from specdeploy.runtime.errors import OpExecutionError
from specdeploy.runtime.graph import ModelInfo
from specdeploy.runtime.session import Session

__all__ = ["ReferenceSession", "REFERENCE_OPS"]


class _SpecOp(OpRun):
    """Common part: name the node when the reference op fails (it should not on a validated graph)."""

    op_domain = "specdeploy"

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> tuple[np.ndarray]:
        try:
            return (fn(*args, **kwargs),)
        except Exception as e:
            raise OpExecutionError(f"node '{self.onnx_node.name}' ({self.onnx_node.op_type}): {e}") from e


class SpecConv(_SpecOp):
    def _run(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, **attrs: Any) -> tuple[np.ndarray]:
        return self._call(reference.spec_conv, x, w, b, **attrs)


class SpecPool(_SpecOp):
    def _run(self, x: np.ndarray, **attrs: Any) -> tuple[np.ndarray]:
        return self._call(reference.spec_pool, x, **attrs)


class SpecToSpatial(_SpecOp):
    def _run(self, x: np.ndarray, **attrs: Any) -> tuple[np.ndarray]:
        return self._call(reference.spec_to_spatial, x, **attrs)


class SpecConcat(_SpecOp):
    def _run(self, *xs: np.ndarray, **attrs: Any) -> tuple[np.ndarray]:
        attrs["C"] = [int(c) for c in attrs["C"]]
        return self._call(reference.spec_concat, list(xs), **attrs)


REFERENCE_OPS = [SpecConv, SpecPool, SpecToSpatial, SpecConcat]


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
