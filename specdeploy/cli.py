"""The ``specdeploy`` command line: one verb per job, every verb registered one way (``VERBS``).

Errors a user can cause (bad paths, corrupt files, bad attributes, an output that exists or is an
input) print one line naming the problem and exit with status 2; anything else is a bug and keeps
its traceback. Every output path is checked before the work starts (``OUTPUTS`` and
:mod:`specdeploy.outputs`); numeric flags are checked when parsed (:mod:`specdeploy.argtypes`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from specdeploy import outputs
from specdeploy.argtypes import (float_at_least, float_in, nonneg_float, nonneg_int, positive_float,
                                 positive_int)

EXIT_USER_ERROR = 2

DESCRIPTION = "Train spectral CNNs (SpecNet), export them to ONNX, run and bench them against their spatial twin."
EPILOG = "Run 'specdeploy VERB --help' for a verb's options. Documentation: README.md and docs/."

# Bad input a user can cause: every such error of specdeploy (CheckpointError, DataError,
# OpAttributeError, PackedFormatError, OutputError, ...) is a ValueError or an OSError with a message naming it.
USER_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError)

FORCE_HELP = "replace existing outputs (an input is never overwritten, with or without --force)"


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from specdeploy import zoo

    p.add_argument("--model", required=True, choices=zoo.MODELS, help="zoo architecture")
    p.add_argument("--domain", default="spectral", choices=zoo.DOMAINS,
                   help="spectral (SpecNet) or spatial (its twin) (default spectral)")
    p.add_argument("--beta", type=nonneg_float, default=1.0, help="threshold of the spectral model (>= 0, default 1.0)")
    p.add_argument("--width", type=positive_float, default=1.0, help="channel width multiplier (> 0, default 1.0)")
    p.add_argument("--block", default=zoo.DEFAULT_BLOCK, choices=zoo.BLOCKS,
                   help="spectral block (DESIGN §2b): hybrid (ReLU on the spatial map, the twin's pools) or "
                        "paper (tanh per coefficient) (default hybrid)")
    p.add_argument("--activation", default="tanh", choices=("tanh", "none"),
                   help="paper block only: activation on the spectrum (default tanh; the hybrid block uses relu)")
    p.add_argument("--no-norm", action="store_true", help="disable the spectral channel normalization")
    p.add_argument("--depth", type=positive_int, default=40, help="DenseNet depth (6n+4, default 40)")
    p.add_argument("--growth", type=positive_int, default=12, help="DenseNet growth rate (default 12)")


def _add_data_args(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--data", default=default, required=default is None,
                   help="fashion-mnist | mnist | cifar10 | svhn | cifar10-samples")
    p.add_argument("--data-dir", default=None, help="directory holding the data set's official files")
    p.add_argument("--samples", type=positive_int, default=None,
                   help="use a deterministic subset of this many samples (default: all)")


def _add_force(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help=FORCE_HELP)


# ------------------------------------------------------------------------------------------ verbs


def cmd_train(args: argparse.Namespace) -> int:
    from specdeploy import checkpoint, zoo
    from specdeploy.train import TrainConfig, load_teacher, loaders_for, pick_device, train

    device = pick_device(args.device)
    in_channels = args.in_channels if args.in_channels is not None else (
        1 if args.data in ("fashion-mnist", "mnist") else 3)
    config = zoo.ModelConfig(
        model=args.model, domain=args.domain, num_classes=10, in_channels=in_channels,
        input_size=args.input_size, width=args.width, beta=args.beta, activation=args.activation,
        norm=not args.no_norm, depth=args.depth, growth=args.growth, block=args.block,
    )
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                      lr_halve_every=args.lr_halve_every, max_steps=args.max_steps, augment=not args.no_augment,
                      seed=args.seed, schedule=args.schedule, warmup=args.warmup, beta_anneal=args.beta_anneal,
                      teacher=args.teacher, kd_alpha=args.kd_alpha, kd_temperature=args.kd_temperature)
    train_loader, test_loader, data_meta = loaders_for(config, args.data, args.data_dir, cfg, args.samples,
                                                       args.test_samples)
    model = zoo.build(config)
    teacher = load_teacher(args.teacher, config, device) if args.teacher else None
    print(f"training {config.model} ({config.domain}, beta={config.beta}) on {args.data} "
          f"[{data_meta['train_samples']} train / {data_meta['test_samples']} test] on {device}")
    history = train(model, train_loader, test_loader, cfg, device, progress=args.progress, teacher=teacher)
    last = history[-1]
    with outputs.atomic_dir(args.out, force=args.force) as staged:
        checkpoint.save(
            model.cpu(), staged, data=data_meta, classes=data_meta["classes"], training=cfg.to_dict(),
            history=history,
            metrics={"test_accuracy": last.get("test_accuracy"), "train_loss": last["train_loss"],
                     "kept": last.get("test_kept", last["kept"])},
        )
    print(f"checkpoint written to {args.out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from specdeploy import checkpoint
    from specdeploy.train import evaluate, pick_device, eval_loader_for

    ck = checkpoint.load(args.checkpoint)
    loader, meta = eval_loader_for(ck.config, args.data, args.data_dir, args.samples, args.batch_size)
    res = evaluate(ck.model, loader, pick_device(args.device))
    res.update(checkpoint=str(args.checkpoint), data=meta)
    if args.json:
        outputs.write_text(args.json, json.dumps(res, indent=2))
    print(f"{ck.config.model} ({ck.config.domain}) on {args.data}: accuracy {res['accuracy']:.4f} "
          f"over {res['samples']} samples")
    for name, frac in res["kept"].items():
        print(f"  kept {frac:.3f}  {name}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.is_dir():
        from specdeploy import checkpoint

        checkpoint.load(path)  # the weights too: a truncated or mismatched checkpoint is an error, not "info"
        doc = checkpoint.read_config(path)
        print(json.dumps({k: doc[k] for k in doc if k != "history"}, indent=2))
        return 0
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint directory or model file")
    from specdeploy import runtime

    info = runtime.read_model(path)  # validates the whole graph; errors name node and attribute
    batch = info.input_shape[0] if info.input_shape[0] is not None else f"dynamic (max {info.max_batch})"
    print(f"{path}: {'spectral' if info.is_spectral else 'spatial'} model, input {info.input_name} "
          f"{list(info.input_shape[1:])}, batch {batch}, value_dtype {info.value_dtype or '-'}")
    model_meta = info.metadata.get("model")
    if model_meta:
        print(f"  model: {model_meta if isinstance(model_meta, str) else json.dumps(model_meta)}")
    for n in info.spec_nodes:
        cap = n.attrs.get("capacity")
        block = ""
        if n.op == "SpecConv":  # which block (DESIGN §2b): the activation, and the pool of a hybrid layer
            a = n.attrs
            block = f"  {a['activation']}" + (f" + {a['pool']}" if a.get("pool", "none") != "none" else "")
            block += f"  {a['Hs']}x{a['Ws']}"
        print(f"  {n.op:<14} {n.name:<28} " + (f"capacity {cap}" if cap is not None else "") + block)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from specdeploy import checkpoint, recipes
    from specdeploy.export import export_checkpoint

    recipe = recipes.load(args.recipe) if args.recipe else None
    config = checkpoint.read_config(args.checkpoint)["model"]
    if recipe is not None:
        if recipe.model != config.get("model"):
            raise ValueError(f"recipe {recipe.name} is for model {recipe.model}, checkpoint {args.checkpoint} is "
                             f"{config.get('model')}")
        shape = (config.get("in_channels"), config.get("input_size"), config.get("input_size"))
        if tuple(recipe.input_shape) != shape:
            raise ValueError(f"recipe {recipe.name} input_shape {list(recipe.input_shape)} != checkpoint input "
                             f"{list(shape)}")
    # without a recipe the options' own defaults (one source: specdeploy.recipes)
    ex = recipe.export if recipe else recipes.ExportOptions()
    cal = recipe.calibration if recipe else recipes.CalibrationOptions()

    def pick(flag: Any, from_recipe: Any) -> Any:
        """The flag when given, else the recipe's (or default) value (0 is a value, not 'unset')."""
        return flag if flag is not None else from_recipe

    dynamic = args.dynamic_batch or ex.dynamic_batch
    metadata = {"specdeploy.recipe": recipe.to_dict()} if recipe else None
    res = export_checkpoint(
        args.checkpoint, args.output,
        batch=None if dynamic else pick(args.batch, ex.batch),
        max_batch=pick(args.max_batch, ex.max_batch),
        value_dtype=pick(args.value_dtype, ex.value_dtype),
        beta=pick(args.beta, ex.beta),
        calib_data=pick(args.calib_data, cal.data),
        calib_samples=pick(args.calib_samples, cal.samples),
        margin=pick(args.margin, cal.margin),
        data_dir=args.data_dir, metadata=metadata,
    )
    print(f"wrote {res.path}")
    for name, cap in res.capacities.items():
        s = res.calibration.get(name)
        extra = f"  (max nnz {s['max']}, mean {s['mean']:.0f} of {s['dense']} over {s['samples']} samples)" if s else ""
        print(f"  capacity {cap:>8d}  {name}{extra}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from specdeploy.demo import run_demo

    run_demo(Path(args.out), steps=args.steps, beta=args.beta, force=args.force)
    return 0


def cmd_build_plugins(args: argparse.Namespace) -> int:
    from specdeploy import native

    default = native.default_build_dir()
    build_dir = Path(args.build_dir) if args.build_dir is not None else default
    path = native.build(args.kind, build_dir)
    print(f"built {path}")
    if build_dir.resolve() != Path(default).resolve():
        env = "SPECDEPLOY_KERNELS_LIB" if args.kind == "cuda" else "SPECDEPLOY_HOST_LIB"
        print(f"note: the backends look in {default}; to use this build run them with {env}={path}")
    return 0


# ------------------------------------------------------------------------------------ registration


def register_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train a zoo model and write a checkpoint",
                       description="Train a zoo model (spectral or its spatial twin) on a real data set and write "
                                   "a checkpoint directory (model.safetensors + config.json).")
    _add_model_args(p)
    _add_data_args(p)
    p.add_argument("--in-channels", type=positive_int, default=None,
                   help="input channels (default: 1 for fashion-mnist/mnist, else 3)")
    p.add_argument("--input-size", type=positive_int, default=32, help="input height = width in pixels (default 32)")
    p.add_argument("--epochs", type=positive_int, default=1, help="training epochs (>= 1, default 1)")
    p.add_argument("--max-steps", type=positive_int, default=None,
                   help="stop after this many optimizer steps (>= 1; default: no limit)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="training batch size (default 128)")
    p.add_argument("--lr", type=positive_float, default=0.02, help="SGD learning rate (finite, > 0, default 0.02)")
    p.add_argument("--momentum", type=float_in(0.0, 1.0, hi_open=True), default=0.95,
                   help="SGD momentum in [0, 1) (default 0.95)")
    p.add_argument("--lr-halve-every", type=positive_int, default=50,
                   help="halve the learning rate every this many epochs (default 50)")
    p.add_argument("--schedule", default="step", choices=("step", "cosine"),
                   help="step: the paper's halving; cosine: warmup then cosine decay per step (default step; "
                        "docs/models.md)")
    p.add_argument("--warmup", type=float_in(0.0, 1.0, hi_open=True), default=0.05,
                   help="cosine: fraction of the steps that warm up, in [0, 1) (default 0.05)")
    p.add_argument("--beta-anneal", type=float_in(0.0, 1.0), default=0.0,
                   help="raise beta from 0 to its target over this fraction of the steps, in [0, 1] (default 0: off)")
    p.add_argument("--teacher", default=None, help="distil from this checkpoint (normally the trained twin)")
    p.add_argument("--kd-alpha", type=float_in(0.0, 1.0), default=0.5,
                   help="weight of the distillation loss in [0, 1] (default 0.5)")
    p.add_argument("--kd-temperature", type=positive_float, default=4.0, help="distillation temperature (default 4)")
    p.add_argument("--no-augment", action="store_true", help="no random crops/flips on the training images")
    p.add_argument("--test-samples", type=positive_int, default=None,
                   help="test samples evaluated after each epoch (default: the whole test split)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N")
    p.add_argument("--progress", action="store_true", help="tqdm progress bars")
    p.add_argument("--out", required=True, help="checkpoint directory to create, e.g. runs/NAME")
    _add_force(p)
    p.set_defaults(func=cmd_train)


def register_eval(sub: Any) -> None:
    p = sub.add_parser("eval", help="accuracy of a checkpoint on a test split")
    p.add_argument("checkpoint", help="checkpoint directory")
    _add_data_args(p)
    p.add_argument("--batch-size", type=positive_int, default=256, help="evaluation batch size (default 256)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N")
    p.add_argument("--json", default=None, help="also write the result as JSON to this file")
    _add_force(p)
    p.set_defaults(func=cmd_eval)


def register_info(sub: Any) -> None:
    p = sub.add_parser("info", help="describe a checkpoint directory or an exported .onnx file")
    p.add_argument("path", help="checkpoint directory or .onnx file (fully validated)")
    p.set_defaults(func=cmd_info)


def register_export(sub: Any) -> None:
    p = sub.add_parser("export", help="checkpoint -> ONNX with the specdeploy op set, capacities calibrated")
    p.add_argument("checkpoint", help="checkpoint directory")
    p.add_argument("-o", "--output", required=True, help=".onnx file to write")
    p.add_argument("--recipe", default=None, help="recipe name (export/NAME.toml) or path; flags override it")
    p.add_argument("--batch", type=positive_int, default=None, help="static batch size (default 1)")
    p.add_argument("--dynamic-batch", action="store_true", help="dynamic batch up to --max-batch")
    p.add_argument("--max-batch", type=positive_int, default=None, help="largest batch of a dynamic-batch model")
    p.add_argument("--value-dtype", choices=("fp32", "fp16"), default=None,
                   help="precision of the packed spectral values (default fp32)")
    p.add_argument("--beta", type=nonneg_float, default=None, help="override the threshold of every SpecConv (>= 0)")
    p.add_argument("--calib-data", default=None, help="data set for capacity calibration (default: the training set)")
    p.add_argument("--calib-samples", type=positive_int, default=None,
                   help="training samples for capacity calibration (default 256)")
    p.add_argument("--margin", type=float_at_least(1.0), default=None,
                   help="capacity = max nnz seen x margin (>= 1, default 1.1)")
    p.add_argument("--data-dir", default=None, help="directory holding the calibration data set's files")
    _add_force(p)
    p.set_defaults(func=cmd_export)


def register_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="the README's end-to-end job on real shipped data")
    p.add_argument("--out", default="results/demo", help="output directory (default results/demo)")
    p.add_argument("--steps", type=positive_int, default=1500, help="training steps per model (default 1500)")
    p.add_argument("--beta", type=nonneg_float, default=1.0, help="threshold of the spectral model (default 1.0)")
    _add_force(p)
    p.set_defaults(func=cmd_demo)


def register_build_plugins(sub: Any) -> None:
    p = sub.add_parser("build-plugins", help="build the native kernel library")
    p.add_argument("--kind", choices=("host", "cuda"), default="host",
                   help="host: C++ library for the native-host backend (g++); cuda: CUDA kernels (nvcc)")
    p.add_argument("--build-dir", default=None,
                   help="CMake build directory (default: where the backends look, $SPECDEPLOY_PLUGINS_BUILD_DIR "
                        "or <repo>/build/plugins)")
    p.set_defaults(func=cmd_build_plugins)


#: Every verb, in help order: (name, "module:register function"). A module whose import fails (a
#: missing optional dependency) still gets its verb, which says why it is unavailable.
VERBS: tuple[tuple[str, str], ...] = (
    ("train", "specdeploy.cli:register_train"),
    ("eval", "specdeploy.cli:register_eval"),
    ("info", "specdeploy.cli:register_info"),
    ("export", "specdeploy.cli:register_export"),
    ("memory", "specdeploy.memory:register"),
    ("bench", "specdeploy.bench:register"),
    ("sweep", "specdeploy.sweep:register"),
    ("demo", "specdeploy.cli:register_demo"),
    ("build-plugins", "specdeploy.cli:register_build_plugins"),
    ("build", "specdeploy.trt.cli:register"),
)


@dataclass(frozen=True)
class Outputs:
    """What a verb writes and reads: checked before the verb runs (``outputs.check_outputs``)."""

    files: tuple[tuple[str, str, str], ...]  # (flag as the user types it, args attribute, "file"/"dir")
    inputs: tuple[str, ...] = ()  # args attributes holding input paths
    extra: Callable[[argparse.Namespace], list[tuple[str, str | None, str]]] | None = None


def _sidecar(args: argparse.Namespace) -> list[tuple[str, str | None, str]]:
    from specdeploy.trt.sidecar import sidecar_path

    return [("sidecar of -o", str(sidecar_path(Path(args.output))), "file")]


OUTPUTS: dict[str, Outputs] = {
    "train": Outputs((("--out", "out", "dir"),), ("data_dir",)),
    "eval": Outputs((("--json", "json", "file"),), ("checkpoint", "data_dir")),
    "export": Outputs((("-o", "output", "file"),), ("checkpoint", "recipe", "data_dir")),
    "memory": Outputs((("--json", "json", "file"),), ("model",)),
    "bench": Outputs((("--json", "json", "file"), ("--csv", "csv", "file"), ("--plot", "plot", "file")),
                     ("spec", "twin", "data_dir")),
    "sweep": Outputs((("--out", "out", "dir"),), ("checkpoint", "twin", "data_dir")),
    "demo": Outputs((("--out", "out", "dir"),)),
    "build": Outputs((("-o", "output", "file"),), ("model", "plugins", "recipe"), _sidecar),
}


class VerbUnavailableError(ValueError):
    """A verb whose module could not be imported here (a missing optional dependency)."""


def _unavailable(verb: str, module: str, error: BaseException) -> Callable[[argparse.Namespace], int]:
    def run(_args: argparse.Namespace) -> int:
        raise VerbUnavailableError(f"'{verb}' is unavailable here: importing {module} failed ({error}); "
                                   "install the extra it needs (see README: pip install -e '.[...]')")
    return run


def _register(sub: Any, verb: str, target: str) -> None:
    module, _, func = target.partition(":")
    try:
        register = getattr(importlib.import_module(module), func)
    except ImportError as e:
        p = sub.add_parser(verb, help=f"(unavailable here: {e})", description=f"unavailable: {module}: {e}")
        p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=_unavailable(verb, module, e))
        return
    register(sub)
    if verb not in sub.choices:
        raise RuntimeError(f"{target} did not register the verb {verb!r}")


def build_parser() -> argparse.ArgumentParser:
    from specdeploy import __version__

    parser = argparse.ArgumentParser(prog="specdeploy", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"specdeploy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    for verb, target in VERBS:
        _register(sub, verb, target)
    return parser


def check_outputs(args: argparse.Namespace) -> None:
    """Every output of the verb: not an input, not existing (unless --force), writable. Before any work."""
    spec = OUTPUTS.get(args.command)
    if spec is None:
        return
    files = [(flag, getattr(args, attr, None), kind) for flag, attr, kind in spec.files]
    if spec.extra is not None and all(getattr(args, a, None) is not None for _, a, _ in spec.files):
        files += spec.extra(args)
    inputs = [getattr(args, a, None) for a in spec.inputs]
    outputs.check_outputs(files, inputs, force=bool(getattr(args, "force", False)))


def _silence_stdout() -> None:
    """After a broken pipe (``specdeploy ... | head``): send further output to /dev/null, no traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        try:
            check_outputs(args)
            rc = int(args.func(args) or 0)
        except USER_ERRORS as e:
            if isinstance(e, BrokenPipeError):
                raise
            print(f"specdeploy {args.command}: error: {e}", file=sys.stderr)
            return EXIT_USER_ERROR
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        _silence_stdout()
        return 1


if __name__ == "__main__":
    sys.exit(main())
