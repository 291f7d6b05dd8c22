"""The one Session interface every backend implements, and what all of them share.

Why a common base: the bench and the demo treat backends interchangeably (same input checks, same
overflow counting from the packed header, same memory report shape), so a new backend (cuda,
tensorrt) only has to implement ``_run`` and, if it can measure more, ``memory``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from specdeploy import packed
from specdeploy.runtime.errors import InputError, NonFiniteError
from specdeploy.runtime.graph import ModelInfo
from specdeploy.runtime.procmem import ProcessMemory

__all__ = ["NONFINITE_POLICIES", "Session", "overflow_flags", "nonfinite_flags"]

#: what ``run`` does with samples that met a NaN/Inf: "raise" (NonFiniteError, the default) or "flag"
#: (return the logits, mark the samples in ``last_nonfinite`` for the caller to count).
NONFINITE_POLICIES = ("raise", "flag")


def overflow_flags(taps: Sequence[np.ndarray], batch: int) -> np.ndarray:
    """bool ``[B]``: any tap's sticky ``overflowed`` header word (word 1) is set for that sample."""
    flags = np.zeros(batch, dtype=bool)
    for t in taps:
        a = np.asarray(t)
        if a.ndim == 2 and a.shape[0] == batch and a.shape[1] > 1:
            flags |= a[:, 1] != 0
    return flags


def nonfinite_flags(taps: Sequence[np.ndarray], batch: int) -> np.ndarray:
    """bool ``[B]``: any tap's sticky NONFINITE bit (header word 3, bit 0) is set for that sample."""
    flags = np.zeros(batch, dtype=bool)
    for t in taps:
        a = np.asarray(t)
        if a.ndim == 2 and a.shape[0] == batch and a.shape[1] > 3:
            flags |= (a[:, 3].view(np.uint32) & np.uint32(packed.FLAG_NONFINITE)) != 0
    return flags


class Session:
    """A loaded model ready to run: ``run(x) -> logits``, ``last_overflowed``, ``memory()``.

    Attributes:
        name: the model's name (file stem).
        backend: "reference", "ort", ...
        info: the validated ``ModelInfo`` (metadata, specdeploy nodes, shapes).
        input_shape: ``(B, C, H, W)``, ``B`` None when the batch is dynamic.
        max_batch: the declared maximum batch (dynamic models), else None.
        last_overflowed: bool ``[B]`` of the last ``run``: samples for which some op raised its
            threshold because its capacity was too small (all False for a spatial model).
        last_nonfinite: bool ``[B]`` of the last ``run``: samples that met a NaN or Inf: in the input,
            in a packed op (its NONFINITE header flag, DESIGN §4) or in the logits. With the default
            ``nonfinite = "raise"`` such a run raises NonFiniteError instead of returning logits.
        nonfinite: "raise" or "flag" (``runtime.load(..., nonfinite="flag")``).
    """

    backend = "base"

    def __init__(self, info: ModelInfo) -> None:
        self.info = info
        self.name = info.name
        self.input_shape = info.input_shape
        self.max_batch = info.max_batch
        self.last_overflowed = np.zeros(0, dtype=bool)
        self.last_nonfinite = np.zeros(0, dtype=bool)
        self.nonfinite = "raise"
        self._procmem = ProcessMemory()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} backend={self.backend} input={list(self.input_shape)}>"

    def check_input(self, x: Any) -> np.ndarray:
        """float32 C-contiguous ``[B, C, H, W]`` that fits the model, or InputError saying why."""
        label = self.info.label
        if not isinstance(x, np.ndarray):
            try:
                x = np.asarray(x)
            except Exception as e:
                raise InputError(f"{label}: input is not an array ({type(x).__name__}): {e}") from None
        if x.dtype.kind != "f":
            hint = " (normalize images with specdeploy.data.normalize first)" if x.dtype == np.uint8 else ""
            raise InputError(f"{label}: input must be a float array [B, C, H, W], got dtype {x.dtype}{hint}")
        _, C, H, W = self.input_shape
        if x.ndim != 4 or tuple(x.shape[1:]) != (C, H, W):
            raise InputError(f"{label}: input has shape {list(x.shape)}, expected [B, {C}, {H}, {W}]")
        self.info.check_batch(x.shape[0])
        return np.ascontiguousarray(x, dtype=np.float32)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits float32 ``[B, classes]`` for a normalized float batch; sets ``last_overflowed`` and
        ``last_nonfinite``. NonFiniteError (naming the samples) when a sample met a NaN/Inf, unless
        ``nonfinite == "flag"``."""
        x = self.check_input(x)
        with self._procmem.measure_run():
            logits, taps = self._run(x)
        B = x.shape[0]
        self.last_overflowed = overflow_flags(taps, B)
        # the input (covers every backend and the spatial twin), the ops' sticky flag (non-finite values
        # arising inside the model), and the logits themselves (NaN logits are never returned silently)
        bad = packed.nonfinite_samples(x) | nonfinite_flags(taps, B)
        if np.ndim(logits) >= 1 and np.shape(logits)[0] == B:
            bad |= packed.nonfinite_samples(np.asarray(logits))
        self.last_nonfinite = bad
        if bad.any() and self.nonfinite == "raise":
            idx = [int(i) for i in np.flatnonzero(bad)]
            shown = ", ".join(map(str, idx[:10])) + (", ..." if len(idx) > 10 else "")
            raise NonFiniteError(
                f"{self.info.label}: {len(idx)} of {B} samples met a NaN or Inf (sample {shown}): in the input, "
                "inside the model, or in the logits; their logits mean nothing. Clean the input, or open the "
                "session with nonfinite='flag' (CLI: --allow-nonfinite) to get the logits and count them.",
                idx)
        return logits

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Backend work: logits and the overflow-tap tensors (``info.overflow_taps`` order)."""
        raise NotImplementedError

    def reset_memory(self) -> None:
        """Start the run-memory figures afresh (the bench does this per batch size)."""
        self._procmem.reset_runs()

    def memory(self) -> dict[str, Any]:
        """What this backend can measure, labelled (CPU backends: process RSS deltas, bytes)."""
        return self._procmem.report(self.backend)
