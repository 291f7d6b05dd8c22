"""Is this Python environment already set up for specdeploy? Exit 0 if yes, 1 listing what is missing.

Why: ``scripts/setup.sh`` promises that a second run only checks. pip cannot answer "is everything
satisfied?" without going to the index, so this script does it from the installed metadata alone:
every requirement of ``pyproject.toml``'s dependencies and the given extras (version specifiers and
environment markers honoured), the pinned torch, and specdeploy itself installed from this checkout.
Uses only the standard library and pip's vendored ``packaging``/``tomli`` (a fresh venv has pip).

    python scripts/check_env.py --extras export,ort,data,plot,dev --pin torch==2.13.0
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

try:
    from packaging.requirements import Requirement
except ImportError:  # a fresh venv: pip's vendored copy
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]

if sys.version_info >= (3, 11):
    import tomllib
else:
    try:
        import tomli as tomllib
    except ImportError:
        from pip._vendor import tomli as tomllib  # type: ignore[no-redef]


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    """The dependency strings of the project and the named extras (unknown extra: ValueError)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    opt = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in opt]
    if unknown:
        raise ValueError(f"unknown extra(s) {unknown}; pyproject.toml defines {sorted(opt)}")
    return list(project.get("dependencies", [])) + [r for e in extras for r in opt[e]]


def missing(reqs: list[str]) -> list[str]:
    """The requirements not satisfied by what is installed, each with what was found."""
    out = []
    for text in reqs:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            have = md.version(req.name)
        except md.PackageNotFoundError:
            out.append(f"{text} (not installed)")
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            out.append(f"{text} (found {have})")
    return out


def installed_from_here() -> str | None:
    """None if ``import specdeploy`` resolves to this checkout, else what it resolves to."""
    try:
        dist = md.distribution("specdeploy")
    except md.PackageNotFoundError:
        return "specdeploy is not installed"
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        direct = {}
    if direct.get("url") == REPO.as_uri() and direct.get("dir_info", {}).get("editable"):
        return None
    return f"specdeploy is installed, but not editable from {REPO} ({direct.get('url', 'a wheel')})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extras", default="", help="comma-separated extras of pyproject.toml")
    ap.add_argument("--pin", action="append", default=[], help="an extra exact requirement, e.g. torch==2.13.0")
    ap.add_argument("--pyproject", type=Path, default=REPO / "pyproject.toml", help=argparse.SUPPRESS)
    ap.add_argument("--no-self", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    problems = missing(requirements(args.pyproject, extras) + args.pin)
    if not args.no_self:
        own = installed_from_here()
        if own:
            problems.append(own)
    for p in problems:
        print(f"check_env: missing {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
