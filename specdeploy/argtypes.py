"""argparse ``type=`` functions: numeric flags are validated when parsed, with a message naming the rule.

Why here and not in each command: "0 means default" and "nan is a float" were silent bugs in several
verbs at once. A flag that takes a count is ``positive_int`` (0 is an error, not "the default"), a
learning rate or width is ``positive_float`` (finite), a threshold ``nonneg_float``, a capacity margin
``float_at_least(1.0)``. argparse turns the ``ArgumentTypeError`` into ``specdeploy VERB: error:
argument --flag: ...`` and exit status 2. No torch, no numpy.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

__all__ = ["positive_int", "nonneg_int", "finite_float", "positive_float", "nonneg_float", "float_at_least",
           "float_in", "fraction"]


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1 (a count, a size, a number of steps)."""
    v = _int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (>= 1), got {v}")
    return v


def nonneg_int(text: str) -> int:
    """An integer >= 0 (a seed, a number of warmup runs)."""
    v = _int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {v}")
    return v


def finite_float(text: str) -> float:
    """Any finite number (no nan, no inf)."""
    return _float(text)


def positive_float(text: str) -> float:
    """A finite number > 0 (a learning rate, a width multiplier)."""
    v = _float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return v


def float_at_least(lo: float) -> Callable[[str], float]:
    """A finite number >= ``lo`` (a capacity margin >= 1)."""

    def parse(text: str) -> float:
        v = _float(text)
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be a finite number >= {lo:g}, got {text}")
        return v

    parse.__name__ = f"float_at_least_{lo:g}"
    return parse


#: A finite number >= 0 (a threshold beta).
nonneg_float = float_at_least(0.0)


def float_in(lo: float, hi: float, *, hi_open: bool = False) -> Callable[[str], float]:
    """A finite number in [lo, hi] (or [lo, hi) with ``hi_open``), e.g. a momentum."""

    def parse(text: str) -> float:
        v = _float(text)
        if v < lo or v > hi or (hi_open and v == hi):
            rng = f"[{lo:g}, {hi:g}{')' if hi_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be in {rng}, got {text}")
        return v

    parse.__name__ = f"float_in_{lo:g}_{hi:g}"
    return parse


fraction = float_in(0.0, 1.0)
