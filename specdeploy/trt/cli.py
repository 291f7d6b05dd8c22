"""The ``specdeploy build`` verb (wired into specdeploy/cli.py through ``register``).

    specdeploy build MODEL.onnx -o model.engine --plugins libspecdeploy_trt.so \\
        [--recipe FILE] [--fp16] [--workspace MiB] [--max-batch N]

Prints one summary line per artifact; user errors (missing files, parser errors, TensorRT missing,
bad recipe) are ValueError/OSError, which the main CLI reports on one line with exit status 2.
Importing this module does not import TensorRT.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from specdeploy.recipes import TRT_WORKSPACE_MIB
from specdeploy.trt.compat import PLUGINS_ENV


def register(subparsers: Any) -> None:
    from specdeploy.argtypes import positive_int

    p = subparsers.add_parser(
        "build", help="build a TensorRT engine from an exported ONNX model (needs TensorRT)",
        description="Parse MODEL.onnx with the specdeploy TensorRT plugins, build an engine, write it and its "
                    "sidecar MODEL.engine.json (TensorRT version, GPU, plugin library hash).")
    p.add_argument("model", type=Path, help="ONNX model exported by `specdeploy export`")
    p.add_argument("-o", "--output", type=Path, required=True, help="engine file to write")
    p.add_argument("--plugins", type=Path, default=os.environ.get(PLUGINS_ENV),
                   help=f"libspecdeploy_trt.so (default: ${PLUGINS_ENV}; not needed for a spatial twin)")
    p.add_argument("--recipe", default=None,
                   help="recipe name (export/NAME.toml) or path; its [tensorrt] and [export] tables set the defaults")
    p.add_argument("--fp16", action="store_true", default=None,
                   help="allow fp16 kernels (TensorRT 10; on 11 precision follows the graph)")
    p.add_argument("--workspace", type=positive_int, default=None, metavar="MiB",
                   help=f"workspace pool limit in MiB (>= 1, default {TRT_WORKSPACE_MIB})")
    p.add_argument("--max-batch", type=positive_int, default=None, metavar="N",
                   help="largest batch of the optimization profile (dynamic-batch models)")
    p.add_argument("--json", action="store_true", help="print the sidecar as JSON instead of a summary")
    p.add_argument("--verbose", action="store_true", help="print TensorRT's info messages")
    p.add_argument("--force", action="store_true", help="replace an existing engine and sidecar (never the inputs)")
    p.set_defaults(func=cmd_build)


def _has_specdeploy_ops(model: Path) -> bool:
    """Whether the ONNX file uses the specdeploy op set (True when it cannot be told: ask for --plugins)."""
    try:
        import onnx

        m = onnx.load(str(model), load_external_data=False)
    except Exception:  # noqa: BLE001 - missing onnx or an unreadable file: the builder reports the latter
        return True
    return any(n.domain == "specdeploy" for n in m.graph.node) or any(
        o.domain == "specdeploy" for o in m.opset_import)


def cmd_build(args: argparse.Namespace) -> int:
    from specdeploy.trt.builder import build_engine
    from specdeploy.trt.sidecar import read_sidecar, sidecar_path

    if args.plugins is None and _has_specdeploy_ops(args.model):
        raise ValueError(f"--plugins is required (path to libspecdeploy_trt.so) for a model with specdeploy ops, "
                         f"or set ${PLUGINS_ENV}")
    out = build_engine(args.model, args.output, Path(args.plugins) if args.plugins else None, fp16=args.fp16,
                       workspace_mib=args.workspace,
                       max_batch=args.max_batch, recipe=args.recipe, verbose=args.verbose)
    side = read_sidecar(out)
    if args.json:
        print(json.dumps(side, indent=2, sort_keys=True))
        return 0
    b: dict[str, Any] = side["build"]
    prof = b.get("profile_batch")
    batch = f"batch {prof[0]}..{prof[2]} (opt {prof[1]})" if prof else "static shapes"
    print(f"engine  {out}  {b['plan_bytes']} bytes  built in {b['build_seconds']:.1f} s")
    print(f"        TensorRT {side['tensorrt_version']} on {side['device']['name']} "
          f"(sm_{side['device']['compute_capability'].replace('.', '')}), "
          f"{'fp16' if b['fp16'] else 'fp32'}, workspace {b['workspace_mib']} MiB, {batch}")
    lib = side.get("plugin_library")
    print(f"        plugins {lib['path'] if lib else 'none (no specdeploy ops)'}")
    print(f"sidecar {sidecar_path(out)}")
    return 0
