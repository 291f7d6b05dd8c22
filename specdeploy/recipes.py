"""Export recipes: one TOML file per model x target under ``export/`` (e.g. ``vgg16-jetson-orin-fp16``).

A recipe fixes everything that must agree between the PC that exports and the device that builds:
input shape and batch, value precision, beta, calibration, and the TensorRT builder options.
``load`` validates it completely and names the file, section and key of any problem. No torch.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from specdeploy import packed

if sys.version_info >= (3, 11):
    import tomllib
else:  # JetPack 6 ships Python 3.10
    import tomli as tomllib
from specdeploy.catalog import MODELS

RECIPE_DIR = Path(__file__).resolve().parent.parent / "export"
TRT_PRECISIONS = ("fp32", "fp16")
TACTIC_SOURCES = ("CUBLAS", "CUBLAS_LT", "CUDNN", "EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS")


class RecipeError(ValueError):
    """A recipe file is missing or invalid."""


@dataclass(frozen=True)
class ExportOptions:
    batch: int = 1
    dynamic_batch: bool = False
    max_batch: int | None = None
    value_dtype: str = "fp32"
    beta: float | None = None


@dataclass(frozen=True)
class CalibrationOptions:
    data: str | None = None
    samples: int = 256
    margin: float = 1.1


@dataclass(frozen=True)
class TensorRTOptions:
    precision: str = "fp32"
    workspace_mib: int = 256
    tactic_sources: tuple[str, ...] = ()
    builder_optimization_level: int = 3


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str
    target: str
    input_shape: tuple[int, int, int]
    export: ExportOptions = field(default_factory=ExportOptions)
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)
    tensorrt: TensorRTOptions = field(default_factory=TensorRTOptions)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Section:
    """Typed access to one TOML table that remembers where it came from for error messages."""

    def __init__(self, where: str, table: Any, allowed: set[str]) -> None:
        if not isinstance(table, dict):
            raise RecipeError(f"{where}: must be a table")
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise RecipeError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
        self.where, self.t = where, table

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        if key not in self.t:
            if required:
                raise RecipeError(f"{self.where}: missing required key '{key}'")
            return default
        v = self.t[key]
        if isinstance(v, bool) and kind is not bool:
            raise RecipeError(f"{self.where}.{key}: expected {getattr(kind, '__name__', kind)}, got a boolean")
        if not isinstance(v, kind):
            raise RecipeError(f"{self.where}.{key}: expected {getattr(kind, '__name__', kind)}, got {v!r}")
        return v

    def choice(self, key: str, allowed: tuple[str, ...], default: str) -> str:
        v = self.get(key, str, default)
        if v not in allowed:
            raise RecipeError(f"{self.where}.{key}: {v!r} is not one of {', '.join(allowed)}")
        return v

    def int_at_least(self, key: str, lo: int, default: int | None, required: bool = False) -> int | None:
        v = self.get(key, int, default, required)
        if v is not None and v < lo:
            raise RecipeError(f"{self.where}.{key}: must be >= {lo}, got {v}")
        return v


def parse(doc: dict[str, Any], where: str) -> Recipe:
    """Validate a parsed TOML document into a Recipe."""
    top = _Section(where, doc, {"name", "model", "target", "description", "input_shape", "export", "calibration",
                                "tensorrt"})
    model = top.get("model", str, required=True)
    if model not in MODELS:
        raise RecipeError(f"{where}.model: unknown model {model!r}; known: {', '.join(MODELS)}")
    shape = top.get("input_shape", list, required=True)
    if len(shape) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape):
        raise RecipeError(f"{where}.input_shape: expected [C, H, W] positive integers, got {shape!r}")

    ex = _Section(f"{where}.export", doc.get("export", {}), {"batch", "dynamic_batch", "max_batch", "value_dtype", "beta"})
    dynamic = ex.get("dynamic_batch", bool, False)
    max_batch = ex.int_at_least("max_batch", 1, None, required=dynamic)
    beta = ex.get("beta", (int, float), None)
    if beta is not None and (not math.isfinite(beta) or beta < 0):
        raise RecipeError(f"{where}.export.beta: must be a finite number >= 0, got {beta}")
    export = ExportOptions(batch=ex.int_at_least("batch", 1, 1) or 1, dynamic_batch=dynamic, max_batch=max_batch,
                           value_dtype=ex.choice("value_dtype", packed.VALUE_DTYPES, "fp32"),
                           beta=None if beta is None else float(beta))
    if export.max_batch is not None and not dynamic and export.batch > export.max_batch:
        raise RecipeError(f"{where}.export.batch: {export.batch} exceeds max_batch {export.max_batch}")

    ca = _Section(f"{where}.calibration", doc.get("calibration", {}), {"data", "samples", "margin"})
    margin = ca.get("margin", (int, float), 1.1)
    if margin < 1.0:
        raise RecipeError(f"{where}.calibration.margin: must be >= 1.0, got {margin}")
    calibration = CalibrationOptions(data=ca.get("data", str, None), samples=ca.int_at_least("samples", 1, 256) or 256,
                                     margin=float(margin))

    tr = _Section(f"{where}.tensorrt", doc.get("tensorrt", {}),
                  {"precision", "workspace_mib", "tactic_sources", "builder_optimization_level"})
    sources = tr.get("tactic_sources", list, [])
    bad = [s for s in sources if s not in TACTIC_SOURCES]
    if bad:
        raise RecipeError(f"{where}.tensorrt.tactic_sources: unknown {bad}; allowed: {', '.join(TACTIC_SOURCES)}")
    level = tr.int_at_least("builder_optimization_level", 0, 3)
    if level is not None and level > 5:
        raise RecipeError(f"{where}.tensorrt.builder_optimization_level: must be in 0..5, got {level}")
    tensorrt = TensorRTOptions(precision=tr.choice("precision", TRT_PRECISIONS, "fp32"),
                               workspace_mib=tr.int_at_least("workspace_mib", 1, 256) or 256,
                               tactic_sources=tuple(sources), builder_optimization_level=level or 0)
    return Recipe(name=top.get("name", str, required=True), model=model, target=top.get("target", str, required=True),
                  input_shape=tuple(shape), export=export, calibration=calibration, tensorrt=tensorrt,
                  description=top.get("description", str, ""))


def resolve(name_or_path: str | Path) -> Path:
    """A recipe file: an existing path, or the name of a file in the repository's export/ folder."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    candidate = RECIPE_DIR / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    known = sorted(f.stem for f in RECIPE_DIR.glob("*.toml")) if RECIPE_DIR.is_dir() else []
    raise RecipeError(f"recipe {str(name_or_path)!r} not found (looked for {p} and {candidate}); "
                      f"known recipes: {', '.join(known) or 'none'}")


def load(name_or_path: str | Path) -> Recipe:
    """Load and validate a recipe by path or by name."""
    path = resolve(name_or_path)
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RecipeError(f"{path}: not valid TOML ({e})") from None
    return parse(doc, str(path))


def all_recipes() -> list[Recipe]:
    """Every recipe shipped in export/ (validated)."""
    return [load(p) for p in sorted(RECIPE_DIR.glob("*.toml"))]
