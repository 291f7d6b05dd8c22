"""The ``specdeploy`` command line: one verb per job.

train   train a zoo model (spectral or twin) on a real data set, write a checkpoint
eval    accuracy (and kept fractions) of a checkpoint on a test split
info    what a checkpoint or model file is
demo    the README's end-to-end job
build-plugins   build the native kernel library (host or CUDA)
build   build a TensorRT engine (on a machine with TensorRT)

Errors a user can cause (bad paths, corrupt files, bad attributes) print one line naming the
problem and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

EXIT_USER_ERROR = 2


# Bad input a user can cause: every such error of specdeploy (CheckpointError, DataError,
# OpAttributeError, PackedFormatError, ...) is a ValueError or an OSError with a message naming it.
USER_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from specdeploy import zoo

    p.add_argument("--model", required=True, choices=zoo.MODELS)
    p.add_argument("--domain", default="spectral", choices=zoo.DOMAINS)
    p.add_argument("--beta", type=float, default=1.0, help="threshold of the spectral model (>= 0)")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    p.add_argument("--block", default="hybrid", choices=zoo.BLOCKS,
                   help="spectral block (DESIGN §2b): hybrid (ReLU on the spatial map, the twin's pools; the "
                        "native kernels and TensorRT plugins cannot run it yet) or paper (tanh per coefficient)")
    p.add_argument("--activation", default="tanh", choices=("tanh", "none"),
                   help="paper block only (the hybrid block uses relu)")
    p.add_argument("--no-norm", action="store_true", help="disable the spectral channel normalization")
    p.add_argument("--depth", type=int, default=40, help="DenseNet depth (6n+4)")
    p.add_argument("--growth", type=int, default=12, help="DenseNet growth rate")


def _add_data_args(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--data", default=default, required=default is None,
                   help="fashion-mnist | mnist | cifar10 | svhn | cifar10-samples")
    p.add_argument("--data-dir", default=None, help="directory holding the data set's official files")
    p.add_argument("--samples", type=int, default=None, help="use a deterministic subset of this many samples")


def cmd_train(args: argparse.Namespace) -> int:
    from specdeploy import checkpoint, zoo
    from specdeploy.train import TrainConfig, load_teacher, loaders_for, pick_device, train

    device = pick_device(args.device)
    in_channels = args.in_channels or (1 if args.data in ("fashion-mnist", "mnist") else 3)
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
    out = checkpoint.save(
        model.cpu(), args.out, data=data_meta, classes=data_meta["classes"], training=cfg.to_dict(),
        history=history,
        metrics={"test_accuracy": last.get("test_accuracy"), "train_loss": last["train_loss"],
                 "kept": last.get("test_kept", last["kept"])},
    )
    print(f"checkpoint written to {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from specdeploy import checkpoint
    from specdeploy.train import evaluate, pick_device, eval_loader_for

    ck = checkpoint.load(args.checkpoint)
    loader, meta = eval_loader_for(ck.config, args.data, args.data_dir, args.samples, args.batch_size)
    res = evaluate(ck.model, loader, pick_device(args.device))
    res.update(checkpoint=str(args.checkpoint), data=meta)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    print(f"{ck.config.model} ({ck.config.domain}) on {args.data}: accuracy {res['accuracy']:.4f} "
          f"over {res['samples']} samples")
    for name, frac in res["kept"].items():
        print(f"  kept {frac:.3f}  {name}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.is_dir():
        from specdeploy import checkpoint

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
            raise ValueError(f"recipe {recipe.name} input_shape {list(recipe.input_shape)} != checkpoint input {list(shape)}")
    ex = recipe.export if recipe else None
    cal = recipe.calibration if recipe else None
    dynamic = args.dynamic_batch or (ex.dynamic_batch if ex else False)
    batch = args.batch if args.batch is not None else (ex.batch if ex else 1)
    max_batch = args.max_batch if args.max_batch is not None else (ex.max_batch if ex else None)
    metadata = {"specdeploy.recipe": recipe.to_dict()} if recipe else None
    res = export_checkpoint(
        args.checkpoint, args.output,
        batch=None if dynamic else batch, max_batch=max_batch,
        value_dtype=args.value_dtype or (ex.value_dtype if ex else "fp32"),
        beta=args.beta if args.beta is not None else (ex.beta if ex else None),
        calib_data=args.calib_data or (cal.data if cal else None),
        calib_samples=args.calib_samples or (cal.samples if cal else 256),
        margin=args.margin or (cal.margin if cal else 1.1),
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

    run_demo(Path(args.out), steps=args.steps, beta=args.beta)
    return 0


def cmd_build_plugins(args: argparse.Namespace) -> int:
    from specdeploy import native

    path = native.build(args.kind, Path(args.build_dir))
    print(f"built {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from specdeploy import __version__

    parser = argparse.ArgumentParser(prog="specdeploy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"specdeploy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a zoo model and write a checkpoint")
    _add_model_args(p)
    _add_data_args(p)
    p.add_argument("--in-channels", type=int, default=None, help="default: 1 for (fashion-)mnist, else 3")
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--momentum", type=float, default=0.95)
    p.add_argument("--lr-halve-every", type=int, default=50, help="step schedule: epochs per lr halving")
    p.add_argument("--schedule", default="step", choices=("step", "cosine"),
                   help="step: the paper's halving; cosine: warmup then cosine decay per step (docs/models.md)")
    p.add_argument("--warmup", type=float, default=0.05, help="cosine: fraction of the steps that warm up")
    p.add_argument("--beta-anneal", type=float, default=0.0,
                   help="raise beta from 0 to its target over this fraction of the steps (0: off)")
    p.add_argument("--teacher", default=None, help="distil from this checkpoint (normally the trained twin)")
    p.add_argument("--kd-alpha", type=float, default=0.5, help="weight of the distillation loss")
    p.add_argument("--kd-temperature", type=float, default=4.0, help="distillation temperature")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--test-samples", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--progress", action="store_true", help="tqdm progress bars")
    p.add_argument("--out", required=True, help="checkpoint directory, e.g. runs/NAME")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="accuracy of a checkpoint on a test split")
    p.add_argument("checkpoint")
    _add_data_args(p)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("info", help="describe a checkpoint directory or an exported .onnx file")
    p.add_argument("path")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("export", help="checkpoint -> ONNX with the specdeploy op set, capacities calibrated")
    p.add_argument("checkpoint")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--recipe", default=None, help="recipe name (export/NAME.toml) or path; flags override it")
    p.add_argument("--batch", type=int, default=None, help="static batch size (default 1)")
    p.add_argument("--dynamic-batch", action="store_true", help="dynamic batch up to --max-batch")
    p.add_argument("--max-batch", type=int, default=None)
    p.add_argument("--value-dtype", choices=("fp32", "fp16"), default=None)
    p.add_argument("--beta", type=float, default=None, help="override the threshold of every SpecConv")
    p.add_argument("--calib-data", default=None, help="data set for capacity calibration (default: the training set)")
    p.add_argument("--calib-samples", type=int, default=None)
    p.add_argument("--margin", type=float, default=None, help="capacity = max nnz seen x margin (default 1.1)")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="the README's end-to-end job on real shipped data")
    p.add_argument("--out", default="results/demo")
    p.add_argument("--steps", type=int, default=1500, help="training steps per model")
    p.add_argument("--beta", type=float, default=1.0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("build-plugins", help="build the native kernel library")
    p.add_argument("--kind", choices=("host", "cuda"), default="host")
    p.add_argument("--build-dir", default="build/plugins")
    p.set_defaults(func=cmd_build_plugins)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[Any], None]]:
    """Verbs defined next to their subsystems (each module imports its heavy deps lazily)."""
    regs: list[Callable[[Any], None]] = []
    for mod in ("specdeploy.trt.cli", "specdeploy.memory", "specdeploy.bench", "specdeploy.sweep"):
        try:
            regs.append(__import__(mod, fromlist=["register"]).register)
        except ImportError:
            continue
    return regs


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        print(f"specdeploy {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
