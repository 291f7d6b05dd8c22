"""Optional dependencies, checked before the work: ``require({"matplotlib": "plot"}, "the demo")``.

Why: a verb that trains for minutes and then dies on ``No module named 'matplotlib'`` loses the
user's time. Each verb that needs an extra asks for it up front; the error names every missing
module and the pip extra that brings it. No torch, no numpy.
"""

from __future__ import annotations

import importlib.util
from typing import Mapping

__all__ = ["MissingDependencyError", "missing", "require"]


class MissingDependencyError(ImportError, ValueError):
    """An optional dependency is not installed. A ValueError too, so the CLI reports it on one line."""


def missing(modules: Mapping[str, str]) -> list[tuple[str, str]]:
    """(module, extra) for every module of ``modules`` (import name -> pip extra) that is not importable."""
    return [(m, extra) for m, extra in modules.items() if importlib.util.find_spec(m) is None]


def require(modules: Mapping[str, str], what: str) -> None:
    """MissingDependencyError naming each missing module and the extras to install."""
    gone = missing(modules)
    if gone:
        extras = ",".join(sorted({e for _, e in gone}))
        raise MissingDependencyError(f"{what} needs {', '.join(m for m, _ in gone)}, not installed here: "
                                     f"pip install -e '.[{extras}]' (or run scripts/setup.sh)")
