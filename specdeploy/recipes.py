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
#: the keys of a recipe's [tensorrt] table
TRT_KEYS = ("precision", "workspace_mib", "tactic_sources", "builder_optimization_level")
#: TensorRT workspace pool limit when neither a recipe nor the caller sets one (the one default: the
#: builder, the CLI and recipes without the key all use it)
TRT_WORKSPACE_MIB = 1024
TRT_OPT_LEVEL = 3  # TensorRT's own default builder optimization level, 0..5
#: the calibration capacity margin: capacity = ceil(max nnz seen * margin), never above C*F
CALIBRATION_MARGIN = 1.1


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
    margin: float = CALIBRATION_MARGIN


@dataclass(frozen=True)
class TensorRTOptions:
    precision: str = "fp32"
    workspace_mib: int = TRT_WORKSPACE_MIB
    tactic_sources: tuple[str, ...] = ()
    builder_optimization_level: int = TRT_OPT_LEVEL


def tensorrt_options(table: Any, where: str = "recipe tensorrt") -> TensorRTOptions:
    """Validate a [tensorrt] table (from TOML, JSON or ``Recipe.to_dict()``): the one rule for TensorRT
    options, used by :func:`parse` and by ``specdeploy.trt.builder.options_from_recipe``.
    Missing keys take the defaults of :class:`TensorRTOptions`; errors name ``where`` and the key."""
    if not isinstance(table, dict):
        raise RecipeError(f"{where}: must be a table")
    unknown = sorted(set(table) - set(TRT_KEYS))
    if unknown:
        raise RecipeError(f"{where} has unknown keys {unknown}; known: {sorted(TRT_KEYS)}")
    d = TensorRTOptions()
    precision = str(table.get("precision", d.precision)).lower()
    if precision not in TRT_PRECISIONS:
        raise RecipeError(f"{where}.precision must be 'fp16' or 'fp32', got {table['precision']!r}")

    def integer(key: str, default: int, lo: int, hi: int | None) -> int:
        v = table.get(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            raise RecipeError(f"{where}.{key} must be an integer, got {v!r}")
        if v < lo or (hi is not None and v > hi):
            raise RecipeError(f"{where}.{key} must be " + (f"in {lo}..{hi}" if hi is not None else f"> {lo - 1}")
                              + f", got {v}")
        return int(v)

    sources = table.get("tactic_sources") or []
    if isinstance(sources, str) or not isinstance(sources, (list, tuple)) or not all(isinstance(x, str) for x in sources):
        raise RecipeError(f"{where}.tactic_sources must be a list of names, got {sources!r}")
    bad = [x for x in sources if x not in TACTIC_SOURCES]
    if bad:
        raise RecipeError(f"{where}.tactic_sources: unknown {bad}; allowed: {', '.join(TACTIC_SOURCES)}")
    return TensorRTOptions(precision=precision, workspace_mib=integer("workspace_mib", d.workspace_mib, 1, None),
                           tactic_sources=tuple(sources),
                           builder_optimization_level=integer("builder_optimization_level",
                                                              d.builder_optimization_level, 0, 5))


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
    margin = ca.get("margin", (int, float), CALIBRATION_MARGIN)
    if margin < 1.0:
        raise RecipeError(f"{where}.calibration.margin: must be >= 1.0, got {margin}")
    calibration = CalibrationOptions(data=ca.get("data", str, None), samples=ca.int_at_least("samples", 1, 256) or 256,
                                     margin=float(margin))

    tensorrt = tensorrt_options(doc.get("tensorrt", {}), f"{where}.tensorrt")
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
