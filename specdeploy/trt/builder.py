"""Build a TensorRT engine from an exported ONNX model and the specdeploy plugin library.

    build_engine("model.onnx", "model.engine", plugins=Path("libspecdeploy_trt.so"), fp16=True,
                 workspace_mib=1024, max_batch=32, recipe=None)

writes ``model.engine`` and its sidecar ``model.engine.json`` (see :mod:`specdeploy.trt.sidecar`).

Recipes (``export/NAME.toml``, :mod:`specdeploy.recipes`): ``recipe`` is a dict (a parsed TOML
document or ``Recipe.to_dict()``), a Recipe, or a recipe name/path (loaded and validated by
``specdeploy.recipes.load``; a ``.json`` path is read as JSON). The builder reads:

    [tensorrt]
    precision = "fp16"                      # BuilderFlag.FP16 on TensorRT 10; on 11 the graph's types rule
    workspace_mib = 256                     # workspace memory pool limit
    tactic_sources = ["CUBLAS", "CUDNN"]    # enable exactly these ([] = TensorRT's default)
    builder_optimization_level = 3          # 0..5
    [export]
    dynamic_batch = true                    # then max_batch is the optimization profile's max (and opt)
    max_batch = 8

Explicit arguments (the CLI's --fp16/--workspace/--max-batch) win over the recipe. Without a max batch
from either, the ONNX metadata ``specdeploy.max_batch`` (written by ``specdeploy export`` for a dynamic
batch) is used, else 1. Only the batch dimension (dim 0) of an input may be dynamic.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from specdeploy import recipes
from specdeploy.metadata import META_MAX_BATCH
from specdeploy.trt import compat
from specdeploy.trt.sidecar import file_sha256, make_sidecar, write_sidecar


class EngineBuildError(ValueError):
    """The engine could not be built (parser errors, unsupported shapes, TensorRT build failure)."""


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    fp16: bool = False
    workspace_mib: int = recipes.TRT_WORKSPACE_MIB
    max_batch: int | None = None
    opt_batch: int | None = None
    min_batch: int = 1
    strongly_typed: bool = False
    builder_optimization_level: int | None = None
    tactic_sources: tuple[str, ...] = ()

    def validate(self) -> "BuildOptions":
        if self.workspace_mib <= 0:
            raise ValueError(f"workspace_mib must be > 0, got {self.workspace_mib}")
        if self.min_batch < 1:
            raise ValueError(f"min_batch must be >= 1, got {self.min_batch}")
        if self.max_batch is not None and self.max_batch < self.min_batch:
            raise ValueError(f"max_batch ({self.max_batch}) must be >= min_batch ({self.min_batch})")
        if self.opt_batch is not None:
            hi = self.max_batch if self.max_batch is not None else self.opt_batch
            if not (self.min_batch <= self.opt_batch <= hi):
                raise ValueError(f"opt_batch ({self.opt_batch}) must be in min_batch..max_batch "
                                 f"({self.min_batch}..{hi})")
        if self.builder_optimization_level is not None and not 0 <= self.builder_optimization_level <= 5:
            raise ValueError(f"builder_optimization_level must be in 0..5, got {self.builder_optimization_level}")
        return self

    def profile(self) -> tuple[int, int, int]:
        """(min, opt, max) batch of the optimization profile for a dynamic batch dimension."""
        mx = self.max_batch if self.max_batch is not None else max(self.min_batch, self.opt_batch or 1)
        opt = self.opt_batch if self.opt_batch is not None else mx
        return self.min_batch, opt, mx


def load_recipe(recipe: Any) -> dict[str, Any] | None:
    """The recipe as a dict: from a dict, a Recipe (``to_dict``), a ``.json`` path, or a recipe name/path
    loaded and validated by :func:`specdeploy.recipes.load`."""
    if recipe is None:
        return None
    if isinstance(recipe, Mapping):
        return dict(recipe)
    if hasattr(recipe, "to_dict"):
        return dict(recipe.to_dict())
    p = Path(recipe)
    if p.suffix.lower() == ".json":
        if not p.is_file():
            raise FileNotFoundError(f"recipe {p} does not exist")
        try:
            data = json.loads(p.read_text())
        except ValueError as e:
            raise ValueError(f"recipe {p} is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise ValueError(f"recipe {p} must be an object at the top level")
        return data
    return recipes.load(recipe).to_dict()


def _as_bool(where: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ValueError(f"recipe {where} must be true or false, got {v!r}")


def _as_int(where: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"recipe {where} must be an integer, got {v!r}")
    return int(v)


def options_from_recipe(
    recipe: Mapping[str, Any] | None, *, fp16: bool | None = None, workspace_mib: int | None = None,
    max_batch: int | None = None,
) -> BuildOptions:
    """Build options from a recipe dict ([tensorrt] and [export]), explicit (non-None) arguments winning."""
    kw: dict[str, Any] = {}
    recipe = recipe or {}
    tr = recipe.get("tensorrt") or {}
    t = recipes.tensorrt_options(tr)  # the one validator of TensorRT options (specdeploy.recipes)
    if "precision" in tr:
        kw["fp16"] = t.precision == "fp16"
    for key in ("workspace_mib", "builder_optimization_level"):
        if tr.get(key) is not None:
            kw[key] = getattr(t, key)
    if t.tactic_sources:
        kw["tactic_sources"] = t.tactic_sources
    ex = recipe.get("export") or {}
    if not isinstance(ex, Mapping):
        raise ValueError("recipe [export] must be a table")
    if ex.get("dynamic_batch") is not None and _as_bool("export.dynamic_batch", ex["dynamic_batch"]):
        if ex.get("max_batch") is not None:
            kw["max_batch"] = _as_int("export.max_batch", ex["max_batch"])
    if fp16 is not None:
        kw["fp16"] = bool(fp16)
    if workspace_mib is not None:
        kw["workspace_mib"] = int(workspace_mib)
    if max_batch is not None:
        kw["max_batch"] = int(max_batch)
    return BuildOptions(**kw).validate()


def mark_network_outputs(network: Any, names: Sequence[str]) -> None:
    """Mark the named tensors as network outputs (after parsing); EngineBuildError naming any not found."""
    outputs = {network.get_output(i).name for i in range(network.num_outputs)}
    want = [n for n in names if n not in outputs]
    found: dict[str, Any] = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            t = layer.get_output(j)
            if t is not None and t.name in want:
                found[t.name] = t
    missing = [n for n in want if n not in found]
    if missing:
        raise EngineBuildError(f"cannot mark {missing} as engine outputs: no such tensors in the parsed network")
    for n in want:
        network.mark_output(found[n])


def onnx_max_batch(onnx_path: Path) -> int | None:
    """The ``specdeploy.max_batch`` metadata `specdeploy export` writes for a dynamic batch (None if absent
    or if the onnx package is missing: it is only a default)."""
    try:
        import onnx
    except ImportError:
        return None
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception:  # noqa: BLE001 - the TensorRT parser reports broken files properly
        return None
    for prop in model.metadata_props:
        if prop.key == META_MAX_BATCH:
            try:
                return int(prop.value)
            except ValueError:
                return None
    return None


def input_profile(name: str, shape: tuple[int, ...], opts: BuildOptions) -> tuple[tuple[int, ...], ...] | None:
    """(min, opt, max) shapes of a network input, or None when it is static (no profile needed).

    Only dim 0 (batch) may be dynamic; a static batch with a different --max-batch is an error.
    """
    dyn = [i for i, d in enumerate(shape) if d < 0]
    if not dyn:
        if opts.max_batch is not None and len(shape) > 0 and shape[0] != opts.max_batch:
            raise EngineBuildError(f"input '{name}' has a fixed batch of {shape[0]} (shape {list(shape)}), but "
                                   f"max_batch = {opts.max_batch}: export the model with a dynamic batch, or "
                                   "leave --max-batch out")
        return None
    if dyn != [0]:
        raise EngineBuildError(f"input '{name}' has dynamic dimensions {dyn} (shape {list(shape)}): only the "
                               "batch dimension (0) may be dynamic, the spectral ops need static spatial sizes")
    lo, opt, hi = opts.profile()
    rest = tuple(shape[1:])
    return (lo, *rest), (opt, *rest), (hi, *rest)


class _Logger:
    """A tensorrt.ILogger that keeps errors for the exception and prints warnings (factory: needs trt)."""

    @staticmethod
    def make(trt: Any, verbose: bool = False) -> Any:
        class Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity: Any, msg: str) -> None:
                if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                    self.errors.append(msg)
                    print(f"[TensorRT] ERROR: {msg}", file=sys.stderr)
                elif severity == trt.ILogger.Severity.WARNING:
                    print(f"[TensorRT] WARNING: {msg}", file=sys.stderr)
                elif verbose:
                    print(f"[TensorRT] {msg}", file=sys.stderr)

        return Logger()


def refuse_unsupported_nodes(onnx_path: Path) -> None:
    """EngineBuildError naming the node and attribute when the plugins (the native kernels) cannot run a
    specdeploy node, e.g. SpecConv activation "relu" before they implement the hybrid block; checked
    before TensorRT is touched, so the message does not depend on a plugin's validation."""
    import onnx

    from specdeploy import ops

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not parseable here: TensorRT's parser reports it with its own message
        return
    for i, n in enumerate(model.graph.node):
        d = ops.REGISTRY.get(n.op_type) if n.domain == ops.DOMAIN else None
        if d is None:
            continue
        attrs = d.with_defaults({a.name: onnx.helper.get_attribute_value(a) for a in n.attribute})
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        why = d.native_unsupported(attrs)
        if why is not None:
            raise EngineBuildError(f"{onnx_path}: node '{n.name or f'#{i}'}' ({n.op_type}): {why} "
                                   "(the TensorRT plugins run the native kernels)")


def build_engine(
    onnx_path: Path | str, out_path: Path | str, plugins: Path | str | None, fp16: bool | None = None,
    workspace_mib: int | None = None, max_batch: int | None = None, recipe: Any = None,
    *, verbose: bool = False, device_info: Mapping[str, Any] | None = None, mark_outputs: Sequence[str] = (),
) -> Path:
    """Parse ``onnx_path`` with the specdeploy plugins, build, write ``out_path`` and its sidecar.

    ``fp16``/``workspace_mib``/``max_batch`` override the recipe's values (None: recipe or default:
    fp32, 1024 MiB, batch 1). Returns ``out_path``. Raises EngineBuildError with every parser error
    (one line per node; "plugin not found for node ..." when the library lacks an op, the plugin's own
    message when it refused a node's fields) or TensorRT's
    build errors. ``mark_outputs`` makes more tensors engine outputs (the runtime session uses it for
    the packed tensors whose overflow flags it reports).
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    plugins = Path(plugins) if plugins is not None else None  # None: a model without specdeploy ops
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model {onnx_path} does not exist")
    refuse_unsupported_nodes(onnx_path)
    from specdeploy import outputs
    from specdeploy.trt.sidecar import sidecar_path

    for out in (out_path, sidecar_path(out_path)):  # never over an input, before the (long) build
        outputs.check_output(out, [onnx_path, plugins], force=True, flag="engine output")
    recipe_dict = load_recipe(recipe)
    opts = options_from_recipe(recipe_dict, fp16=fp16, workspace_mib=workspace_mib, max_batch=max_batch)
    if opts.max_batch is None:
        declared = onnx_max_batch(onnx_path)  # the exporter's declared maximum of a dynamic batch
        if declared is not None and declared >= opts.min_batch:
            opts = dataclasses.replace(opts, max_batch=declared).validate()

    trt = compat.import_tensorrt()
    logger = _Logger.make(trt, verbose)
    if plugins is not None:
        compat.load_plugin_library(trt, plugins)
    if device_info is None:
        from specdeploy.trt.cudart import Cuda

        device_info = Cuda().device_info()

    t0 = time.perf_counter()
    builder = trt.Builder(logger)
    network = builder.create_network(compat.network_flags(trt, strongly_typed=opts.strongly_typed))
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse_from_file(str(onnx_path))
    if not ok:
        errors = compat.parser_errors(parser)
        detail = compat.format_parser_errors(errors, plugins, logger.errors) or "\n".join(logger.errors) or "no details"
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path}:\n{detail}")

    if mark_outputs:
        mark_network_outputs(network, mark_outputs)

    config = builder.create_builder_config()
    compat.set_workspace(trt, config, opts.workspace_mib)
    notes = compat.set_fp16(trt, config, opts.fp16)
    notes += compat.set_tactic_sources(trt, config, opts.tactic_sources)
    for n in notes:
        print(f"specdeploy build: note: {n}", file=sys.stderr)
    if opts.builder_optimization_level is not None:
        config.builder_optimization_level = opts.builder_optimization_level

    profile = None
    inputs = {}
    for i in range(network.num_inputs):
        t = network.get_input(i)
        shape = tuple(int(d) for d in t.shape)
        inputs[t.name] = list(shape)
        prof = input_profile(t.name, shape, opts)
        if prof is not None:
            if profile is None:
                profile = builder.create_optimization_profile()
            profile.set_shape(t.name, *prof)
    if profile is not None:
        config.add_optimization_profile(profile)
        if opts.max_batch is None:
            print("specdeploy build: note: dynamic batch and no --max-batch: the engine accepts batch "
                  f"{opts.profile()[0]}..{opts.profile()[2]}", file=sys.stderr)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT could not build an engine from {onnx_path}:\n"
                               + ("\n".join(logger.errors) or "see the TensorRT messages above"))
    data = compat.plan_bytes(plan)
    build_s = time.perf_counter() - t0

    from specdeploy import outputs

    outputs.write_bytes(out_path, data)

    build_info = dataclasses.asdict(opts)
    lo, opt, hi = opts.profile()
    build_info.update({"profile_batch": [lo, opt, hi] if profile is not None else None, "inputs": inputs,
                       "extra_outputs": list(mark_outputs),
                       "notes": notes, "build_seconds": round(build_s, 3), "plan_bytes": len(data)})
    write_sidecar(out_path, make_sidecar(
        engine_path=out_path, tensorrt_version=compat.trt_version(trt), device=device_info, plugin_path=plugins,
        onnx_path=onnx_path, recipe=recipe_dict, build=build_info, onnx_sha256=file_sha256(onnx_path)))
    return out_path
