"""Host process memory for the CPU backends: resident-set deltas around load and around each run.

Why this and not the planner's figure: the planned peak (``specdeploy.memory``) is what an engine
with a perfect allocator needs; a CPU backend in Python also holds interpreter objects, numpy
temporaries and ONNX Runtime's arena. The process figures say what the CPU run really cost, and are
labelled so nobody confuses them with device memory.

Method (Linux): the kernel's peak RSS (``VmHWM``) can be reset to the current RSS by writing ``5`` to
``/proc/self/clear_refs``; reset, run, read ``VmHWM``: the difference to the RSS before the run is the
run's peak growth. Where the reset is not allowed (or off Linux) the fallback is the growth of
``ru_maxrss``, which is only a lower bound (0 if an earlier peak was higher) and labelled so.
"""

from __future__ import annotations

import os
import resource
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

_STATUS = Path("/proc/self/status")
try:
    _PAGE = int(os.sysconf("SC_PAGE_SIZE"))
except (AttributeError, ValueError, OSError):
    _PAGE = 4096
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes() -> int | None:
    """Current resident set size of this process, bytes (None where /proc is absent)."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024


def _maxrss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def _reset_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


class ProcessMemory:
    """Tracks a session's RSS growth at load and the peak RSS growth of its runs."""

    def __init__(self) -> None:
        self.exact = _reset_peak() and _status_kb("VmHWM") is not None
        self.method = (
            "VmHWM - VmRSS around the call, peak reset via /proc/self/clear_refs"
            if self.exact else "growth of ru_maxrss (lower bound: 0 when an earlier peak was higher)"
        )
        self.load_delta: int | None = None
        self.peak_run_delta: int | None = None
        self.last_run_delta: int | None = None
        self.runs = 0

    def _before(self) -> int:
        if self.exact:
            _reset_peak()
            return rss_bytes() or 0
        return _maxrss_bytes()

    def _after(self, before: int) -> int:
        if self.exact:
            hwm = _status_kb("VmHWM")
            return max(0, (hwm or 0) * 1024 - before)
        return max(0, _maxrss_bytes() - before)

    @contextmanager
    def measure_load(self) -> Iterator[None]:
        before = self._before()
        yield
        self.load_delta = self._after(before)

    @contextmanager
    def measure_run(self) -> Iterator[None]:
        before = self._before()
        yield
        d = self._after(before)
        self.last_run_delta = d
        self.peak_run_delta = d if self.peak_run_delta is None else max(self.peak_run_delta, d)
        self.runs += 1

    def reset_runs(self) -> None:
        """Forget the run figures (the load figure stays): per-batch peaks in the bench."""
        self.peak_run_delta = None
        self.last_run_delta = None
        self.runs = 0

    def report(self, backend: str) -> dict[str, Any]:
        """The figures as a labelled dict (bytes): what ``Session.memory()`` returns for CPU backends."""
        return {
            "backend": backend,
            "scope": "host process (CPU backend): Python, numpy and runtime allocations; not device memory",
            "method": self.method,
            # whether the peak could be reset (the method above), not that the figure is exact: RSS moves in
            # pages, so deltas of a few pages are allocator noise (the bench reports no ratio below 1 MiB)
            "peak_reset": self.exact,
            "resolution_bytes": _PAGE,
            "load_peak_rss_delta_bytes": self.load_delta,
            "run_peak_rss_delta_bytes": self.peak_run_delta,
            "last_run_peak_rss_delta_bytes": self.last_run_delta,
            "runs": self.runs,
            "rss_bytes": rss_bytes(),
        }
