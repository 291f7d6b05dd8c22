#!/usr/bin/env python3
"""Kernel launches per hybrid-block SpecConv call, counted from the launchers' code, per VGG16 layer.

Why: on the H200 run of 2026-11-28 the hybrid block took 36-756x cuDNN, and its time per call grew
with the number of small kernels its launcher enqueues (a fixed few per chunk of samples x channels
and per pipeline pass), not with its arithmetic. This script states that relation from the launchers'
code so it can be read next to the measured times: for the launcher that ran there (commit 4735a38)
and for the current one, with the H200's hybrid fp16 time per launch when a GPU session folder is
given. ``bench_kernels.py --profile`` MEASURES the launches of a call (CUPTI); this only counts them
from the code, so it can also say what the current launcher should enqueue before a GPU has run it.

Counts per call (4 pipeline passes: count, refine, recount, write; every pass launches for every
chunk, since the host cannot know which samples overflowed without a sync):
* fixed: 2 twiddle tables (+2 with a pool), 2 for a spatial input's dense spectrum, the pipeline's
  flags, decide, decide-fine and scan kernels and its histogram memset;
* 4735a38 (the H200 run): chunks of min(B, 4) samples x min(O, 16) channels; per chunk and pass a
  weight tile, per 128-frequency tile an input tile + GEMM + combine, four DFT-stage kernels and the
  pipeline's tile kernel: 3 * ceil(F / 128) + 6;
* current: the chunk of ``specdeploy.ops.spec_conv.hybrid_chunk``; per chunk and pass one GEMM over
  every frequency (input read in place), one spatial-step kernel and the tile kernel: 3.

    python scripts/launch_count.py                                  # counts only
    python scripts/launch_count.py docs/results/gpu/h200-2026-11-28 # + the H200's us per launch
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from specdeploy.ops import spec_conv  # noqa: E402  (after the sys.path line: this checkout first)

PASSES = 4
BATCHES = (1, 8, 32)
# bench_kernels.py's printed row: layer, batch, the hybrid fp16 median
ROW_RE = re.compile(r"^(?P<layer>features\.\d+)\s+B=(?P<batch>\d+)\s.*hybrid fp16\s+(?P<ms>[\d.]+) ms")


def vgg16_layers() -> list[Any]:
    """The layers bench_kernels.py times both blocks on (its ``Layer``: name, in_domain, C, O, Hs, F,
    pool_after), from the zoo's VGG16 at full width (needs torch, as bench_kernels does)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_kernels

    return bench_kernels.vgg16_layers()[0]


def fixed_launches(L: Any) -> int:
    return 2 + 2 * L.pool_after + 2 * (L.in_domain == "spatial") + 5


def launches_4735a38(L: Any, B: int) -> int:
    chunks = math.ceil(B / min(B, 4)) * math.ceil(L.O / min(L.O, 16))
    return fixed_launches(L) + PASSES * chunks * (3 * math.ceil(L.F / 128) + 6)


def launches_current(L: Any, B: int) -> tuple[int, tuple[int, int]]:
    sb, ot = spec_conv.hybrid_chunk(B, L.C, L.O, L.Hs, L.Hs)
    chunks = math.ceil(B / sb) * math.ceil(L.O / ot)
    return fixed_launches(L) + PASSES * chunks * 3, (sb, ot)


def measured(folder: Path) -> dict[tuple[str, int], float]:
    """Hybrid fp16 medians (ms) from a GPU session folder's session.log."""
    log = folder / "session.log"
    if not log.is_file():
        raise SystemExit(f"launch_count: {log} not found (a scripts/gpu_session.sh folder has it)")
    out = {}
    for line in log.read_text(errors="replace").splitlines():
        m = ROW_RE.match(line)
        if m:
            out[(m["layer"], int(m["batch"]))] = float(m["ms"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", type=Path, help="a GPU session folder (session.log): adds us per launch")
    args = ap.parse_args(argv)
    times = measured(args.folder) if args.folder else {}
    print("| layer | batch | launches, 4735a38 | H200 hybrid fp16 ms | us per launch | chunk now | launches now |")
    print("|---|---|---|---|---|---|---|")
    per_launch = []
    for L in vgg16_layers():
        for B in BATCHES:
            old = launches_4735a38(L, B)
            now, (sb, ot) = launches_current(L, B)
            ms = times.get((L.name, B))
            us = f"{ms * 1e3 / old:.2f}" if ms is not None else "-"
            if ms is not None:
                per_launch.append(ms * 1e3 / old)
            print(f"| {L.name} | {B} | {old} | {ms if ms is not None else '-'} | {us} | {sb}x{ot} | {now} |")
    if per_launch:
        print(f"\n{len(per_launch)} measured rows: {min(per_launch):.2f}-{max(per_launch):.2f} us per launch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
