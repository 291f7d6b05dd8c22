#!/usr/bin/env python3
"""Kernel micro-benchmark: SpecConv (C ABI, CUDA) vs the twin's conv (cuDNN) per VGG16 layer.

Why: the cuda backend is only worth having if its SpecConv is in the same league as the dense
convolution it replaces, layer by layer (goal: SpecConv <= 2x cuDNN per layer, docs/kernels.md),
and if the packed kernels stream their bytes near the device's bandwidth. End-to-end numbers (the
bench) mix every op; this isolates the one that matters.

What it measures, per VGG16 SpecConv layer (CIFAR 32x32, width 1 by default, spectral sizes exactly
as ``specdeploy.zoo.create("vgg16")`` builds them) and per batch (default 1, 8, 32):
* SpecConv through ``libspecdeploy_kernels.so`` (pointer-level C ABI, torch buffers, torch's stream),
  fp32 and fp16 values. Input: the layer's real input (spatial images for layer 0, else a packed map
  of C channels at kept fraction ``--kept-in``). Threshold: beta set to the quantile of |Y| that keeps
  ``--kept`` of the output coefficients (or the calibrated fraction of ``--kept-from MODEL.onnx``),
  capacity = that fraction x 1.3 (margin), so the fast path (no overflow) is timed; samples that
  overflowed anyway are counted in the results.
* the twin's conv of that layer: ``torch.nn.functional.conv2d`` (cuDNN, ``cudnn.benchmark=True``),
  same C -> O channels, 3x3, padding 1, the twin's spatial size, same batch; fp32 (TF32 off: true
  fp32) and fp16.
* CUDA-event timing: ``--inner`` back-to-back calls per event pair, the median of ``--repeats`` pairs
  after ``--warmup`` untimed calls (launch overhead included, as the backend sees it).
* achieved bandwidth of SpecConv: compulsory bytes (input: the packed rows' header, index and kept
  values, or the spatial input; the weights; the whole output row, which is always written) per
  second, and that as a fraction of the device's peak DRAM bandwidth (``--peak-gbps`` overrides;
  else 2 x memory clock x bus width from torch's device properties or the CUDA driver API). It is
  a lower bound of the real traffic (the count and write passes both read the input).
* the hybrid block (``--blocks``, DESIGN §2b): SpecConv with activation "relu" and, where the twin pools
  after that conv, pool "max2" (GEMM over a dense input tile on tensor cores for fp16 values, direct
  DFTs, ReLU, pool, forward DFT, threshold), vs the twin's conv + ReLU (+ max pool) through torch
  (cuDNN), the same block of work.
* pack/unpack bandwidth (``--packed-bandwidth``): SpecPool with out size = in size (decode every kept
  coefficient, re-encode it through the count/scan/write pipeline) and a two-input SpecConcat, per
  spectral layer size, at the layer's kept fraction: compulsory bytes (used part of the input rows +
  whole output rows) per second and the fraction of peak DRAM bandwidth (goal: >= 30%).
* first layer's spectrum: the library's direct separable DFT (a spatial SpecConv with O = 1 and
  capacity 1, input spectrum "dense": the DFT plus a minimal pipeline), and the whole first layer
  with its input spectrum "dense" (workspace) vs "streamed" (recomputed per tile, no workspace), vs
  ``torch.fft.rfft2`` (cuFFT) vs a direct DFT as two
  complex GEMMs in torch, same input and spectral size.
* ``--profile``: after each SpecConv timing (paper and hybrid, fp32 and fp16), ONE more call of the
  same callable under ``torch.profiler`` (CUDA + CPU activity), its ``"profile"``: device kernels
  launched (memcpy/memset apart), their summed time, the call's wall time in the profile, busy
  fractions (kernel time / the timed median, and / the profiled wall), microseconds per launch
  (median / kernels) and the top kernels by time (``summarize_kernel_events``). Why: the hybrid
  block's time on the H200 grew with the launches its chunked pipeline enqueues (an estimate from the
  code); this counts them and says how much of a call the GPU actually computes. A failed profile
  is recorded as ``{"error": ...}`` and the row kept; ``--host``: no CUDA activity, kernels 0 and a note.

Output: ``results/kernels/<device>.json`` and ``.csv`` (``--out``) plus a short table on stdout. Both
files are rewritten (atomically) after every row, layer by layer, so a run stopped by a time cap keeps
every row it measured: on SIGINT (``timeout --signal=INT`` in scripts/gpu_session.sh) or SIGTERM it marks the JSON
``"interrupted": true`` with the step it was in, writes, and exits with status 130; a finished run has
``"complete": true``. ``--timing-budget-s`` bounds the time of one measurement (slow calls get fewer
repeats; see ``Timer``).
Optional ``--models SPEC.onnx TWIN.onnx``: also the cuda backend's measured peak memory ratio (spec /
twin) vs the planned ratio at each batch (goal: within 10%).

Needs an NVIDIA GPU, a CUDA build of torch and the kernel library (``specdeploy build-plugins --kind
cuda``); without them it exits with status 2 and says which is missing. ``--list`` prints the layer
table without a GPU. ``--host`` runs everything on the host library with CPU tensors and wall-clock
timing: a smoke test of this script only, its numbers mean nothing.

    python scripts/bench_kernels.py                       # all layers, batches 1,8,32
    python scripts/bench_kernels.py --batches 8 --layers features.0,features.7 --kept 0.1
    python scripts/bench_kernels.py --kept-from results/vgg16_fp16.onnx --models spec.onnx twin.onnx
    python scripts/bench_kernels.py --blocks hybrid --packed-bandwidth --batches 8
    python scripts/bench_kernels.py --blocks hybrid --profile --layers features.7 --batches 1,32
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import datetime as _dt
import io
import json
import math
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from specdeploy import outputs  # noqa: E402  (after the sys.path line: this checkout first)

EXIT_UNAVAILABLE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT: stopped by its time cap, the rows so far written
CAPACITY_MARGIN = 1.3


class Unavailable(RuntimeError):
    """Something the benchmark needs is missing on this machine (message says what)."""


# ------------------------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class Layer:
    """One SpecConv of the zoo's VGG16 and the twin's conv at the same position."""

    name: str
    in_domain: str
    C: int
    O: int
    k: int
    Hs: int
    Ws: int
    H_in: int  # spatial input size of the first layer (spectral layers: 0)
    H_twin: int  # the twin's conv input size (= output size, padding k//2)
    pool_after: bool = False  # the twin max-pools right after this conv (+ ReLU): the hybrid block's pool

    @property
    def F(self) -> int:
        return self.Hs * (self.Ws // 2 + 1)


def vgg16_layers(width: float = 1.0, input_size: int = 32, num_classes: int = 10) -> tuple[list[Layer], Any]:
    """The SpecConv layers of zoo VGG16 (CIFAR size) with the twin's spatial size per layer, and the model."""
    import torch
    from torch import nn

    from specdeploy import zoo
    from specdeploy.nn import SpecConv2d

    # the paper block's layer list (its spectral sizes 34, 17, 9, 8; --kept-from reads a paper model's
    # layer names): both blocks are timed on these shapes, as in the committed H200 results
    spec = zoo.create("vgg16", domain="spectral", width=width, input_size=input_size, num_classes=num_classes,
                      block="paper")
    twin = zoo.create("vgg16", domain="spatial", width=width, input_size=input_size, num_classes=num_classes)
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(int(i[0].shape[-1])))
             for m in twin.modules() if isinstance(m, nn.Conv2d)]
    # which convs the twin max-pools after (the next conv or pool in module order decides)
    pooled: list[bool] = []
    for m in twin.modules():
        if isinstance(m, nn.Conv2d):
            pooled.append(False)
        elif isinstance(m, nn.MaxPool2d) and pooled:
            pooled[-1] = True
    with torch.no_grad():
        twin.eval()(torch.zeros(1, 3, input_size, input_size))
    for h in hooks:
        h.remove()
    convs = [(n, m) for n, m in spec.named_modules() if isinstance(m, SpecConv2d)]
    if len(convs) != len(sizes):
        raise RuntimeError(f"spectral VGG16 has {len(convs)} SpecConv layers, the twin {len(sizes)} convs")
    layers = [
        Layer(n, m.in_domain, m.in_channels, m.out_channels, m.kernel_size, m.Hs, m.Ws,
              m.Hs - m.kernel_size + 1 if m.in_domain == "spatial" else 0, h, pool_after=pl)
        for (n, m), h, pl in zip(convs, sizes, pooled)
    ]
    return layers, spec


def kept_from_model(path: str) -> dict[str, float]:
    """Per SpecConv node: mean calibrated kept fraction (metadata specdeploy.calibration: mean / dense)."""
    from specdeploy import runtime

    info = runtime.read_model(path)
    calib = info.metadata.get("calibration") or {}
    out = {n.name: float(calib[n.name]["mean"]) / float(calib[n.name]["dense"])
           for n in info.spec_nodes if n.op == "SpecConv" and n.name in calib}
    if not out:
        raise SystemExit(f"{path}: no calibration statistics in its metadata (export it with calibration images)")
    return out


# ------------------------------------------------------------------------------------------- device


def device_info(torch: Any) -> dict[str, Any]:
    """Name, compute capability, memory, and the peak DRAM bandwidth with where it came from."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    info: dict[str, Any] = {
        "name": props.name, "compute_capability": f"{props.major}.{props.minor}",
        "total_memory_bytes": int(props.total_memory), "multiprocessors": int(props.multi_processor_count),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }
    clock_khz = getattr(props, "memory_clock_rate", None)
    bus_bits = getattr(props, "memory_bus_width", None)
    source = "torch.cuda.get_device_properties"
    if not clock_khz or not bus_bits:
        clock_khz, bus_bits = _driver_memory_attrs(torch.cuda.current_device())
        source = "CUDA driver API (cuDeviceGetAttribute)"
    if clock_khz and bus_bits:
        info["memory_clock_khz"] = int(clock_khz)
        info["memory_bus_width_bits"] = int(bus_bits)
        info["peak_bandwidth_gbps"] = 2.0 * clock_khz * 1e3 * bus_bits / 8 / 1e9  # double data rate
        info["peak_bandwidth_source"] = f"{source}: 2 x memory clock x bus width"
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.memory,power.limit",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        if smi.returncode == 0:
            info["nvidia_smi"] = smi.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _driver_memory_attrs(ordinal: int) -> tuple[int | None, int | None]:
    """Memory clock (kHz) and bus width (bits) through libcuda (attributes 36 and 37)."""
    try:
        cu = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None, None
    dev = ctypes.c_int(0)
    if cu.cuInit(0) != 0 or cu.cuDeviceGet(ctypes.byref(dev), ordinal) != 0:
        return None, None
    vals = []
    for attr in (36, 37):  # CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, _GLOBAL_MEMORY_BUS_WIDTH
        v = ctypes.c_int(0)
        if cu.cuDeviceGetAttribute(ctypes.byref(v), attr, dev) != 0:
            return None, None
        vals.append(v.value)
    return vals[0], vals[1]


# ------------------------------------------------------------------------------------------- timing


class Timer:
    """Median time of one call: CUDA events around ``inner`` calls (GPU) or perf_counter (``--host``).

    ``budget_s`` (``--timing-budget-s``) bounds one measurement's time: the second untimed call is
    clocked and the timed calls are cut to about ``budget_s`` of work, but never below
    ``MIN_REPEATS`` event pairs of one call. Why: a fixed 5 + 30 x 10 calls per measurement spends
    10 s on one 33 ms hybrid call, and a lent GPU session cannot afford that for 13 layers x 3
    batches (docs/kernels.md, "Time per measurement"). Fast calls keep the full counts.
    """

    MIN_REPEATS = 5

    def __init__(self, torch: Any, cuda: bool, warmup: int, repeats: int, inner: int,
                 budget_s: float | None = None) -> None:
        self.torch, self.cuda = torch, cuda
        self.warmup, self.repeats, self.inner = warmup, repeats, inner
        self.budget_s = budget_s

    def _sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def _counts(self, call_s: float) -> tuple[int, int, int]:
        """(further warmup calls, repeats, inner) for a call that took ``call_s`` seconds untimed."""
        calls = self.budget_s / max(call_s, 1e-7)
        inner = max(1, min(self.inner, int(calls // self.repeats)))
        repeats = max(min(self.MIN_REPEATS, self.repeats), min(self.repeats, int(calls // inner)))
        warmup = min(max(0, self.warmup - 2), int(0.2 * calls))  # warm-up at most a fifth of the budget
        return warmup, repeats, inner

    def __call__(self, fn: Callable[[], Any]) -> dict[str, float]:
        torch = self.torch
        fn()  # first call: lazy initialisation, cuDNN autotuning (counts as warm-up)
        self._sync()
        warmup, repeats, inner = max(0, self.warmup - 1), self.repeats, self.inner
        if self.budget_s:
            t0 = time.perf_counter()
            fn()
            self._sync()
            warmup, repeats, inner = self._counts(time.perf_counter() - t0)
        for _ in range(warmup):
            fn()
        self._sync()
        times = []
        for _ in range(repeats):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(inner):
                    fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / inner)
            else:
                t0 = time.perf_counter()
                for _ in range(inner):
                    fn()
                times.append((time.perf_counter() - t0) * 1e3 / inner)
        times.sort()
        return {"median_ms": statistics.median(times), "min_ms": times[0],
                "p90_ms": times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))],
                "repeats": repeats, "inner": inner}


# ------------------------------------------------------------------------------------------- profile

# the record_function range around the profiled call: its CPU range is the enqueue time, and its end or
# the last device event's end, whichever is later, ends the call's wall time
PROFILE_ANNOTATION = "bench_kernels.profiled_call"
TOP_KERNELS = 5
_DEVICE_KINDS = {"kernel": "kernel", "gpu_memcpy": "memcpy", "gpu_memset": "memset"}


class Span(NamedTuple):
    """Start and end in microseconds: the part of torch's ``Interval`` (``time_range``) that is read."""

    start: float
    end: float


class ProfEvent(NamedTuple):
    """One raw kineto event with the attributes of torch's ``FunctionEvent`` that
    ``summarize_kernel_events`` reads. Why: ``prof.events()`` builds a Python ``FunctionEvent`` tree,
    about 80 us per event on this project's 2-core CPU machine; reading the raw events into these costs
    5-10 us each there, and a hybrid call at batch 32 has thousands of kernels, each with its launch call.
    (NamedTuples: a frozen dataclass doubles the cost.)"""

    name: str
    device_type: Any
    time_range: Span
    activity_type: str | None = None


def short_kernel_name(name: str, limit: int = 60) -> str:
    """A device kernel's C++ name made readable: no return type, no parameter list, template arguments
    collapsed to ``<...>`` when the name is longer than ``limit`` (then cut to it)."""
    s = name.strip().replace("(anonymous namespace)::", "")
    s = s[5:] if s.startswith("void ") else s
    depth = 0
    for i, ch in enumerate(s):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "(" and depth == 0 and i > 0:
            s = s[:i]
            break
    if len(s) > limit:
        out, depth = [], 0
        for ch in s:
            if ch == "<":
                if depth == 0:
                    out.append("<...>")
                depth += 1
            elif ch == ">":
                depth = max(0, depth - 1)
            elif depth == 0:
                out.append(ch)
        s = "".join(out)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _is_cuda(device_type: Any) -> bool:
    """``DeviceType.CUDA`` of torch's profiler (read by its name, so no torch import is needed)."""
    return str(getattr(device_type, "name", device_type)).rsplit(".", 1)[-1].upper() == "CUDA"


def event_kind(ev: Any, annotation: str = PROFILE_ANNOTATION) -> str:
    """kernel, memcpy, memset, other_device (GPU mirror of the annotation, syncs), annotation, launch_api
    (a CPU-side kernel launch call) or other. ``activity_type`` (on torch 2.13's events; older torch
    may lack it) decides where present, else the name: kineto names copies "Memcpy ..." and fills
    "Memset ..."; any other device event of an older torch counts as a kernel."""
    act = getattr(ev, "activity_type", None)
    name = str(ev.name)
    if _is_cuda(ev.device_type):
        if name == annotation or act == "gpu_user_annotation":
            return "other_device"
        if act:
            return _DEVICE_KINDS.get(act, "other_device")
        return "memcpy" if name.startswith("Memcpy") else "memset" if name.startswith("Memset") else "kernel"
    if name == annotation:
        return "annotation"
    # cudaLaunchKernel, cudaLaunchKernelExC, cuLaunchKernel, cuLaunchKernelEx (runtime or driver API)
    return "launch_api" if "LaunchKernel" in name else "other"


def summarize_kernel_events(events: Any, call_us: float | None = None,
                            annotation: str = PROFILE_ANNOTATION) -> dict[str, Any]:
    """What one profiled call ran on the GPU, from its profiler events (torch ``FunctionEvent`` or
    ``ProfEvent``; read: ``name``, ``device_type``, ``time_range.start/.end`` in us, ``activity_type``
    where present).

    kernels / kernel_us: device kernels and their summed durations (memcpy and memset counted apart);
    wall_us: from the start of the ``annotation`` range to the later of its end and the last device
    event's end (else the device events' span); busy_fraction_of_wall: kernel_us / wall_us. With
    ``call_us`` (the timed median of the same call, unperturbed by the profiler):
    busy_fraction = kernel_us / call_us and us_per_launch = call_us / kernels. No device event at all
    (a host run, or CUPTI not tracing): kernels 0, the busy fractions None and a "note".
    """
    n = {"kernel": 0, "memcpy": 0, "memset": 0, "other_device": 0, "launch_api": 0}
    us = {"kernel": 0.0, "memcpy": 0.0, "memset": 0.0}
    per_name: dict[str, list[float]] = {}
    dev_start = dev_end = ann = None
    for ev in events:
        kind = event_kind(ev, annotation)
        t0, t1 = float(ev.time_range.start), float(ev.time_range.end)
        if kind == "annotation":
            ann = (t0, t1) if ann is None else (min(ann[0], t0), max(ann[1], t1))
            continue
        if kind in n:
            n[kind] += 1
        if kind in us:
            us[kind] += t1 - t0
            dev_start = t0 if dev_start is None else min(dev_start, t0)
            dev_end = t1 if dev_end is None else max(dev_end, t1)
        if kind == "kernel":
            acc = per_name.setdefault(short_kernel_name(str(ev.name)), [0, 0.0])
            acc[0] += 1
            acc[1] += t1 - t0
    span = None if dev_start is None else dev_end - dev_start
    if ann is not None:
        wall = max(ann[1], ann[1] if dev_end is None else dev_end) - ann[0]
        source = "annotation start to the later of its end and the last device event's end"
    else:
        wall, source = span, None if span is None else "device events' span (no annotation recorded)"
    r3 = lambda v: None if v is None else round(v, 3)  # noqa: E731
    out: dict[str, Any] = {
        "kernels": n["kernel"], "kernel_us": r3(us["kernel"]), "memcpys": n["memcpy"], "memcpy_us": r3(us["memcpy"]),
        "memsets": n["memset"], "memset_us": r3(us["memset"]), "other_device_events": n["other_device"],
        "launch_api_calls": n["launch_api"], "device_span_us": r3(span),
        "enqueue_us": r3(None if ann is None else ann[1] - ann[0]), "wall_us": r3(wall), "wall_source": source,
        "busy_fraction_of_wall": r3(us["kernel"] / wall) if wall and span is not None else None,
        "top_kernels": [{"name": k, "count": int(c), "total_us": round(t, 3)}
                        for k, (c, t) in sorted(per_name.items(), key=lambda kv: -kv[1][1])[:TOP_KERNELS]],
    }
    if call_us:
        out["call_us"] = r3(call_us)
        out["busy_fraction"] = None if span is None else r3(us["kernel"] / call_us)
        out["us_per_launch"] = r3(call_us / n["kernel"]) if n["kernel"] else None
    if dev_start is None:
        out["note"] = "no CUDA activity recorded"
    return out


def _profiled_events(prof: Any) -> list[Any]:
    """The profile's raw kineto events as ``ProfEvent`` (cheap), else ``prof.events()`` (torch's
    ``FunctionEvent`` list, slow but the documented API) where the raw ones are not readable."""
    try:
        raw = prof.profiler.kineto_results.events()
        if not raw:
            return []
        has_act, has_hidden = hasattr(raw[0], "activity_type"), hasattr(raw[0], "is_hidden_event")
        out = []
        for e in raw:
            if has_hidden and e.is_hidden_event():
                continue
            t0 = e.start_ns() / 1e3
            out.append(ProfEvent(e.name(), e.device_type(), Span(t0, t0 + e.duration_ns() / 1e3),
                                 e.activity_type() if has_act else None))
        return out
    except AttributeError:
        return list(prof.events())


def profile_call(torch: Any, fn: Callable[[], Any], cuda: bool, call_ms: float | None) -> dict[str, Any]:
    """One more call of ``fn`` under ``torch.profiler`` (CUDA and CPU activity), summarized
    (``summarize_kernel_events``; ``call_ms``: the timed median). Never raises an ``Exception``: a
    failure is returned as ``{"error": "Type: message"}`` so the measurement keeps its row."""
    t0 = time.perf_counter()
    try:
        from torch.profiler import ProfilerActivity, profile, record_function

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        if cuda:
            torch.cuda.synchronize()  # nothing of the timing calls in the trace
        with profile(activities=acts) as prof:
            with record_function(PROFILE_ANNOTATION):
                fn()
            if cuda:
                torch.cuda.synchronize()
        out = summarize_kernel_events(_profiled_events(prof), None if call_ms is None else call_ms * 1e3)
        out["activities"] = [a.name for a in acts]
        if not cuda:
            out["note"] = "host run (CPU tensors): no CUDA activity to record"
        elif "note" in out:
            out["note"] += " (CUPTI unavailable or not permitted?)"
    except Exception as e:  # noqa: BLE001  (a failed profile must not cost the measurement)
        out = {"error": f"{type(e).__name__}: {e}"}
    out["profile_s"] = round(time.perf_counter() - t0, 4)
    return out


# ------------------------------------------------------------------------------------------- SpecConv


def _spectrum_of_packed(torch: Any, blob: np.ndarray, C: int, Hs: int, Ws: int, value_dtype: str, dev: Any) -> Any:
    from specdeploy import packed

    d = packed.decode(blob, C, packed.num_coeffs(Hs, Ws), value_dtype, validate=False)
    return torch.from_numpy(d.values).to(dev)  # complex64 [B, C, F]


def calibrate_beta(torch: Any, X: Any, w: Any, L: Layer, kept: float) -> float:
    """beta such that about ``kept`` of the pre-activation coefficients |Y| of this batch pass."""
    K = torch.fft.rfft2(w, s=(L.Hs, L.Ws)).reshape(L.O, L.C, -1)  # plain DFT (norm="backward")
    mags = []
    for b in range(X.shape[0]):  # per sample keeps the einsum small at batch 32, layer 1
        Y = torch.einsum("cf,ocf->of", X[b], K)
        mags.append(Y.abs().reshape(-1).float())
    m = torch.cat(mags)
    if m.numel() > 4_000_000:
        m = m[torch.randperm(m.numel(), device=m.device)[:4_000_000]]
    q = min(max(1.0 - kept, 0.0), 1.0)
    return float(torch.quantile(m, q))


def hybrid_out_size(L: Layer, pool: str) -> tuple[int, int, int]:
    """(Hs', Ws', F') of the hybrid block's output: ceil halves with a pool."""
    oHs, oWs = ((L.Hs + 1) // 2, (L.Ws + 1) // 2) if pool != "none" else (L.Hs, L.Ws)
    return oHs, oWs, oHs * (oWs // 2 + 1)


def calibrate_beta_hybrid(torch: Any, X: Any, w: Any, bias: Any, L: Layer, pool: str, kept: float) -> float:
    """beta keeping about ``kept`` of the hybrid block's output |Z| (DESIGN §2b, torch.fft): centred kernel
    for a spectral input, zero-padded full convolution for a spatial one."""
    import torch.nn.functional as TF

    c0 = L.k // 2 if L.in_domain == "spectral" else 0
    wp = torch.zeros(L.O, L.C, L.Hs, L.Ws, device=w.device)
    wp[:, :, :L.k, :L.k] = w
    wp = torch.roll(wp, shifts=(-c0, -c0), dims=(2, 3))
    K = torch.fft.rfft2(wp).reshape(L.O, L.C, -1)
    mags = []
    for b in range(X.shape[0]):
        Y = torch.einsum("cf,ocf->of", X[b], K).reshape(L.O, L.Hs, L.Ws // 2 + 1)
        y = torch.relu(torch.fft.irfft2(Y, s=(L.Hs, L.Ws), norm="ortho") + bias.reshape(-1, 1, 1))
        if pool == "max2":
            y = TF.max_pool2d(y[None], 2, 2, ceil_mode=True)[0]
        mags.append(torch.fft.rfft2(y, norm="ortho").abs().reshape(-1).float())
    m = torch.cat(mags)
    if m.numel() > 4_000_000:
        m = m[torch.randperm(m.numel(), device=m.device)[:4_000_000]]
    return float(torch.quantile(m, min(max(1.0 - kept, 0.0), 1.0)))


def make_spectral_input(L: Layer, B: int, kept_in: float, value_dtype: str, seed: int) -> tuple[np.ndarray, int]:
    """A packed input of C channels (Hs x Ws) at kept fraction ``kept_in``: tanh-range values."""
    from specdeploy import packed

    rng = np.random.default_rng(seed)
    F = L.F
    keep = rng.random((B, L.C, F)) < kept_in
    vals = (np.tanh(rng.standard_normal((B, L.C, F))) + 1j * np.tanh(rng.standard_normal((B, L.C, F))))
    cap = int(min(L.C * F, max(1, keep.reshape(B, -1).sum(axis=1).max())))
    return packed.encode(vals.astype(np.complex64), keep, cap, value_dtype, 0.0, False), cap


def bench_spec_conv(torch: Any, lib: Any, timer: Timer, L: Layer, B: int, value_dtype: str, kept: float,
                    kept_in: float, w: Any, bias: Any, dev: Any, seed: int, block: str = "paper",
                    profile: bool = False) -> dict[str, Any]:
    """One SpecConv call timed: the paper block (activation tanh) or the hybrid block (relu, and the
    twin's pool "max2" where it pools after this layer). ``profile``: then one more call under
    torch.profiler (``profile_call``), its summary under "profile"."""
    from specdeploy import native

    pool = "max2" if block == "hybrid" and L.pool_after else "none"
    oF = hybrid_out_size(L, pool)[2] if block == "hybrid" else L.F
    stream = (lambda: torch.cuda.current_stream().cuda_stream) if dev.type == "cuda" else (lambda: 0)
    if L.in_domain == "spatial":
        gen = torch.Generator(device="cpu").manual_seed(seed)
        x = torch.randn(B, L.C, L.H_in, L.H_in, generator=gen).to(dev)
        X = torch.fft.rfft2(x, s=(L.Hs, L.Ws), norm="ortho").reshape(B, L.C, -1)
        in_bytes = x.numel() * 4
        extra = dict(H=L.H_in, W=L.H_in, x_dtype=np.float32)
    else:
        blob, _ = make_spectral_input(L, B, kept_in, value_dtype, seed)
        X = _spectrum_of_packed(torch, blob, L.C, L.Hs, L.Ws, value_dtype, dev)
        x = torch.from_numpy(blob).to(dev)
        vw = 2 if value_dtype == "fp32" else 1
        index_words = 4 + 5 * math.ceil(L.F / 128) * L.C + 1
        nnz = blob[:, 0].astype(np.int64)
        in_bytes = int((index_words + nnz * vw).sum()) * 4
        extra = dict(in_row_words=blob.shape[1])
    if block == "hybrid":
        beta = calibrate_beta_hybrid(torch, X, w, bias, L, pool, kept)
        extra["pool"] = pool
    else:
        beta = calibrate_beta(torch, X, w, L, kept)
    del X
    capacity = int(min(L.O * oF, math.ceil(kept * L.O * oF * CAPACITY_MARGIN)))
    p = native.conv_params(in_domain=L.in_domain, C=L.C, O=L.O, Hs=L.Hs, Ws=L.Ws, k=L.k, beta=beta,
                           activation="relu" if block == "hybrid" else "tanh", capacity=capacity,
                           value_dtype=value_dtype, has_bias=True, **extra)
    S = lib.out_row_words(p)
    y = torch.empty((B, S), dtype=torch.int32, device=dev)
    ws_bytes = lib.spec_conv_workspace_size(p, B)
    ws = torch.empty(max(1, ws_bytes), dtype=torch.uint8, device=dev)

    def call() -> None:
        lib.spec_conv_forward_ptr(p, B, x.data_ptr(), w.data_ptr(), bias.data_ptr(), y.data_ptr(), ws.data_ptr(),
                                  ws_bytes, stream())

    t = timer(call)
    prof = profile_call(torch, call, dev.type == "cuda", t["median_ms"]) if profile else None
    head = y[:, :2].cpu().numpy()
    out_bytes = B * S * 4
    w_bytes = w.numel() * 4 + bias.numel() * 4
    moved = in_bytes + w_bytes + out_bytes
    return {
        **t, "block": block, "pool": pool, "value_dtype": value_dtype, "beta": beta, "capacity": capacity,
        "row_words": S, "workspace_bytes": ws_bytes, "kept_out": float(head[:, 0].mean() / (L.O * oF)),
        "overflowed_samples": int(head[:, 1].sum()), "bytes_compulsory": moved,
        "achieved_gbps": moved / (t["median_ms"] * 1e-3) / 1e9, **({"profile": prof} if profile else {}),
    }


def bench_twin_conv(torch: Any, timer: Timer, L: Layer, B: int, dtype: Any, dev: Any, seed: int) -> dict[str, Any]:
    import torch.nn.functional as TF

    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(B, L.C, L.H_twin, L.H_twin, generator=gen).to(dev, dtype)
    w = (torch.randn(L.O, L.C, L.k, L.k, generator=gen) * math.sqrt(2.0 / (L.C * L.k * L.k))).to(dev, dtype)
    b = torch.zeros(L.O, device=dev, dtype=dtype)
    pad = L.k // 2
    t = timer(lambda: TF.conv2d(x, w, b, 1, pad))
    size = 2 if dtype == torch.float16 else 4
    moved = (x.numel() + w.numel() + B * L.O * L.H_twin * L.H_twin) * size
    out = {**t, "bytes_compulsory": moved, "achieved_gbps": moved / (t["median_ms"] * 1e-3) / 1e9}
    # the twin's whole block (what the hybrid SpecConv replaces): conv, in-place ReLU, max pool where it pools
    if L.pool_after:
        out["block"] = timer(lambda: TF.max_pool2d(torch.relu_(TF.conv2d(x, w, b, 1, pad)), 2, 2))
    else:
        out["block"] = timer(lambda: torch.relu_(TF.conv2d(x, w, b, 1, pad)))
    return out


def bench_packed_bandwidth(torch: Any, lib: Any, timer: Timer, L: Layer, B: int, value_dtype: str, kept: float,
                           dev: Any, peak: float | None, seed: int) -> dict[str, Any]:
    """Pack/unpack throughput at this layer's input size: SpecPool out = in (decode + re-encode every kept
    coefficient through the pipeline) and SpecConcat of two such maps."""
    from specdeploy import native

    blob, cap = make_spectral_input(L, B, kept, value_dtype, seed)
    x = torch.from_numpy(blob).to(dev)
    nnz = blob[:, 0].astype(np.int64)
    vw = 2 if value_dtype == "fp32" else 1
    index_words = 4 + 5 * math.ceil(L.F / 128) * L.C + 1
    used_in = int((index_words + nnz * vw).sum()) * 4
    stream = (lambda: torch.cuda.current_stream().cuda_stream) if dev.type == "cuda" else (lambda: 0)
    out: dict[str, Any] = {"layer": L.name, "batch": B, "value_dtype": value_dtype, "C": L.C, "Hs": L.Hs,
                           "kept": float(nnz.mean() / (L.C * L.F))}
    pp = native.pool_params(C=L.C, Hs=L.Hs, Ws=L.Ws, out_Hs=L.Hs, out_Ws=L.Ws, capacity=cap, value_dtype=value_dtype,
                            in_row_words=blob.shape[1])
    S = lib.out_row_words(pp)
    y = torch.empty((B, S), dtype=torch.int32, device=dev)
    wsb = lib.spec_pool_workspace_size(pp, B)
    ws = torch.empty(max(1, wsb), dtype=torch.uint8, device=dev)
    t = timer(lambda: lib.spec_pool_forward_ptr(pp, B, x.data_ptr(), y.data_ptr(), ws.data_ptr(), wsb, stream()))
    moved = used_in + B * S * 4
    out["spec_pool_identity"] = {**t, "bytes_compulsory": moved, "achieved_gbps": moved / (t["median_ms"] * 1e-3) / 1e9}
    cp = native.concat_params(C=[L.C, L.C], Hs=L.Hs, Ws=L.Ws, capacity=min(2 * L.C * L.F, 2 * cap),
                              value_dtype=value_dtype, in_row_words=[blob.shape[1], blob.shape[1]])
    S2 = lib.out_row_words(cp)
    y2 = torch.empty((B, S2), dtype=torch.int32, device=dev)
    wsb2 = lib.spec_concat_workspace_size(cp, B)
    ws2 = torch.empty(max(1, wsb2), dtype=torch.uint8, device=dev)
    t2 = timer(lambda: lib.spec_concat_forward_ptr(cp, B, [x.data_ptr(), x.data_ptr()], y2.data_ptr(), ws2.data_ptr(),
                                                   wsb2, stream()))
    moved2 = 2 * used_in + B * S2 * 4
    out["spec_concat_2"] = {**t2, "bytes_compulsory": moved2, "achieved_gbps": moved2 / (t2["median_ms"] * 1e-3) / 1e9}
    if peak:
        for k in ("spec_pool_identity", "spec_concat_2"):
            out[k]["fraction_of_peak"] = out[k]["achieved_gbps"] / peak
            out[k]["goal_met"] = out[k]["fraction_of_peak"] >= 0.30
    return out


def bench_first_layer_dft(torch: Any, lib: Any, timer: Timer, L: Layer, B: int, dev: Any, seed: int) -> dict[str, Any]:
    """Spectrum of the first layer's spatial input: the library's direct DFT vs cuFFT vs GEMM DFT."""
    from specdeploy import native

    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(B, L.C, L.H_in, L.H_in, generator=gen).to(dev)
    H, Hs, Ws = L.H_in, L.Hs, L.Ws
    Wh = Ws // 2 + 1
    out: dict[str, Any] = {"batch": B, "C": L.C, "O": L.O, "H": H, "Hs": Hs, "Ws": Ws}
    # the library: a spatial SpecConv with one output channel and capacity 1 = its DFT + a minimal pipeline
    stream = (lambda: torch.cuda.current_stream().cuda_stream) if dev.type == "cuda" else (lambda: 0)

    def layer_call(O: int, mode: str) -> Callable[[], None]:
        # nothing passes beta = 1e30: the count pass still evaluates every coefficient once
        p = native.conv_params(in_domain="spatial", C=L.C, O=O, Hs=Hs, Ws=Ws, k=L.k, beta=1e30, activation="none",
                               capacity=1, value_dtype="fp32", H=H, W=H, x_dtype=np.float32, input_spectrum=mode)
        w = torch.zeros(O, L.C, L.k, L.k, device=dev)
        y = torch.empty((B, lib.out_row_words(p)), dtype=torch.int32, device=dev)
        ws_bytes = lib.spec_conv_workspace_size(p, B)
        ws = torch.empty(max(1, ws_bytes), dtype=torch.uint8, device=dev)
        return lambda: lib.spec_conv_forward_ptr(p, B, x.data_ptr(), w.data_ptr(), None, y.data_ptr(), ws.data_ptr(),
                                                 ws_bytes, stream())

    out["library_direct_dft_O1"] = timer(layer_call(1, "dense"))
    # the whole first layer with its input spectrum stored (workspace) or recomputed per tile (none)
    for mode in ("dense", "streamed"):
        out[f"library_first_layer_{mode}"] = timer(layer_call(L.O, mode))
    out["torch_fft_rfft2"] = timer(lambda: torch.fft.rfft2(x, s=(Hs, Ws), norm="ortho"))
    # direct DFT as two complex GEMMs: X = Fh[Hs, H] @ x @ Fw[Wh, W]^T, ortho scale folded in
    u = torch.arange(H, dtype=torch.float64)
    Fh = torch.exp(-2j * math.pi * torch.outer(torch.arange(Hs, dtype=torch.float64), u) / Hs)
    Fw = torch.exp(-2j * math.pi * torch.outer(torch.arange(Wh, dtype=torch.float64), u) / Ws)
    Fh = (Fh / math.sqrt(Hs * Ws)).to(torch.complex64).to(dev)
    FwT = Fw.t().contiguous().to(torch.complex64).to(dev)
    xc = x.to(torch.complex64)
    out["torch_gemm_dft"] = timer(lambda: Fh @ xc @ FwT)
    ref = torch.fft.rfft2(x, s=(Hs, Ws), norm="ortho")
    out["gemm_dft_max_abs_err"] = float((Fh @ xc @ FwT - ref).abs().max())
    return out


# ------------------------------------------------------------------------------------------- memory


def memory_ratios(spec: str, twin: str, batches: list[int], backend: str, opts: dict[str, Any]) -> list[dict[str, Any]]:
    """The backend's measured peak (spec / twin) vs the planner's ratio, per batch."""
    from specdeploy import memory, runtime

    rows = []
    infos = {k: runtime.read_model(p) for k, p in (("spec", spec), ("twin", twin))}
    act = "fp16" if infos["spec"].value_dtype == "fp16" else "fp32"
    # both models' standard ops at the precision the planner counts (fp16 values: the twin at fp16)
    opts = {**opts, "fp16": act == "fp16"}
    sessions = {k: runtime.load(p, backend, **opts) for k, p in (("spec", spec), ("twin", twin))}
    for B in batches:
        row: dict[str, Any] = {"batch": B, "activation_dtype": act}
        for k, p in (("spec", spec), ("twin", twin)):
            s = sessions[k]
            s.reset_memory()
            _, C, H, W = s.input_shape
            x = np.random.default_rng(0).standard_normal((B, C, H, W)).astype(np.float32)
            s.run(x)
            m = s.memory()
            # every figure the backend reports (activations and library/op scratch separately where it
            # splits them), next to the plan
            row[k] = {"planned_peak_bytes": memory.plan(p, batch=B, activation_dtype=act).peak_bytes,
                      **{key: v for key, v in m.items() if isinstance(v, (int, float, str)) or v is None}}
        key = "device_peak_bytes" if row["spec"]["device_peak_bytes"] is not None else "tracked_peak_bytes"
        row["measured_key"] = key
        row["planned_ratio"] = row["spec"]["planned_peak_bytes"] / row["twin"]["planned_peak_bytes"]
        row["measured_ratio"] = row["spec"][key] / row["twin"][key]
        row["ratio_error"] = row["measured_ratio"] / row["planned_ratio"] - 1.0
        row["goal_met"] = abs(row["ratio_error"]) <= 0.10
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------- main


CSV_FIELDS = [
    "layer", "in_domain", "C", "O", "Hs", "Ws", "H_twin", "batch", "kept_target",
    "spec_fp32_ms", "spec_fp16_ms", "cudnn_fp32_ms", "cudnn_fp16_ms", "ratio_fp32", "ratio_fp16",
    "spec_fp32_gbps", "spec_fp16_gbps", "spec_fp16_frac_peak", "spec_fp16_kept_out", "spec_fp16_overflowed",
    "spec_fp16_capacity",
    "pool_after", "hyb_fp32_ms", "hyb_fp16_ms", "cudnn_block_fp32_ms", "cudnn_block_fp16_ms", "ratio_hyb_fp32",
    "ratio_hyb_fp16", "hyb_fp16_kept_out", "hyb_fp16_overflowed", "hyb_fp16_workspace_bytes",
    # --profile (empty without it, or where the profile failed)
    "spec_fp16_launches", "spec_fp16_busy", "spec_fp16_us_per_launch",
    "hyb_fp16_launches", "hyb_fp16_busy", "hyb_fp16_us_per_launch",
]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--layers", default=None, help="comma-separated layer names (default: all SpecConv layers)")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--kept", type=float, default=0.2, help="output kept fraction per layer (default 0.2)")
    ap.add_argument("--kept-in", type=float, default=None, help="input kept fraction (default: --kept)")
    ap.add_argument("--kept-from", default=None, help="an exported VGG16 .onnx: its calibrated kept fractions")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--inner", type=int, default=10, help="calls per timed event pair")
    ap.add_argument("--timing-budget-s", type=float, default=None,
                    help="about this many seconds of timed calls per measurement: slow calls get fewer repeats "
                         "and inner calls (at least 5 event pairs of 1 call); default: the fixed counts")
    ap.add_argument("--library", default=None, help="libspecdeploy_kernels.so (default $SPECDEPLOY_KERNELS_LIB / build/plugins)")
    ap.add_argument("--peak-gbps", type=float, default=None, help="override the peak DRAM bandwidth (GB/s)")
    ap.add_argument("--models", nargs=2, metavar=("SPEC", "TWIN"), default=None,
                    help="also measure the cuda backend's peak memory ratio vs the planned ratio")
    ap.add_argument("--blocks", default="paper,hybrid",
                    help="SpecConv blocks to time: paper (tanh), hybrid (relu + the twin's pool), or both")
    ap.add_argument("--packed-bandwidth", action="store_true",
                    help="also time pack/unpack (SpecPool identity, SpecConcat of 2) per spectral layer size")
    ap.add_argument("--profile", action="store_true",
                    help="after each SpecConv timing, one more call under torch.profiler: kernels launched, "
                         "kernel busy time and fraction, us per launch, top kernels (the row's 'profile')")
    ap.add_argument("--out", default=str(ROOT / "results" / "kernels"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--list", action="store_true", help="print the layer table and exit (no GPU needed)")
    ap.add_argument("--host", action="store_true",
                    help="smoke-test this script on the host library with CPU tensors (numbers are meaningless)")
    return ap.parse_args(argv)


def _setup(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """torch, the native library and the device; Unavailable with the reason otherwise."""
    try:
        import torch
    except ImportError as e:
        raise Unavailable(f"torch is not installed ({e}); install a CUDA build of torch") from None
    from specdeploy import native

    if args.host:
        try:
            return torch, native.load("host", args.library), torch.device("cpu")
        except native.NativeLibraryError as e:
            raise Unavailable(str(e)) from None
    if torch.version.cuda is None:
        raise Unavailable(f"this torch ({torch.__version__}) is a CPU-only build; the kernel benchmark needs a "
                          f"CUDA build of torch and an NVIDIA GPU")
    if not torch.cuda.is_available():
        raise Unavailable("no CUDA device is visible to torch (no NVIDIA GPU, driver not loaded, or "
                          "CUDA_VISIBLE_DEVICES empty); this benchmark only runs on a GPU")
    torch.cuda.init()
    try:
        lib = native.load("cuda", args.library)
        lib.check_device()
    except native.NativeLibraryError as e:
        raise Unavailable(str(e)) from None
    return torch, lib, torch.device("cuda", torch.cuda.current_device())


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:8.3f}"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    blocks = {b.strip() for b in args.blocks.split(",") if b.strip()}
    if not blocks or blocks - {"paper", "hybrid"}:
        raise SystemExit(f"--blocks {args.blocks!r}: choose from paper, hybrid")
    if args.timing_budget_s is not None and args.timing_budget_s <= 0:
        raise SystemExit(f"--timing-budget-s {args.timing_budget_s}: must be > 0 (leave it out for fixed counts)")
    layers, spec_model = vgg16_layers(args.width, args.input_size)
    if args.layers:
        want = [s.strip() for s in args.layers.split(",")]
        unknown = sorted(set(want) - {L.name for L in layers})
        if unknown:
            raise SystemExit(f"unknown layers {unknown}; known: {', '.join(L.name for L in layers)}")
        layers = [L for L in layers if L.name in want]
    kept_map = kept_from_model(args.kept_from) if args.kept_from else {}
    if args.list:
        print(f"{'layer':<12} {'domain':<9} {'C':>4} {'O':>4} {'Hs':>3} {'Ws':>3} {'F':>5} {'twin HxW':>8}")
        for L in layers:
            print(f"{L.name:<12} {L.in_domain:<9} {L.C:>4} {L.O:>4} {L.Hs:>3} {L.Ws:>3} {L.F:>5} {L.H_twin:>8}")
        return 0
    try:
        torch, lib, dev = _setup(args)
    except Unavailable as e:
        print(f"bench_kernels: cannot run here: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    cuda = dev.type == "cuda"
    timer = Timer(torch, cuda, args.warmup, args.repeats, args.inner, args.timing_budget_s)
    if cuda:
        torch.backends.cudnn.benchmark = True
        dinfo = device_info(torch)
    else:
        dinfo = {"name": f"host-{platform.machine()}", "note": "--host smoke test: CPU tensors, wall clock"}
    peak = args.peak_gbps or dinfo.get("peak_bandwidth_gbps")
    if args.peak_gbps:
        dinfo["peak_bandwidth_gbps"] = args.peak_gbps
        dinfo["peak_bandwidth_source"] = "--peak-gbps"
    doc: dict[str, Any] = {
        "schema": "specdeploy-kernel-bench", "schema_version": 3,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": dinfo, "library": str(lib.path), "library_build": lib.build_info,
        "settings": {"batches": batches, "width": args.width, "input_size": args.input_size, "kept": args.kept,
                     "kept_in": args.kept_in, "kept_from": args.kept_from, "capacity_margin": CAPACITY_MARGIN,
                     "warmup": args.warmup, "repeats": args.repeats, "inner": args.inner,
                     "timing_budget_s": args.timing_budget_s, "min_repeats": Timer.MIN_REPEATS,
                     "cudnn_benchmark": cuda, "cudnn_fp32_tf32": False, "host_smoke_test": not cuda,
                     "blocks": sorted(blocks), "layers": [L.name for L in layers], "profile": args.profile},
        "goal": ("SpecConv <= 2x cuDNN per layer at batch 8 and 32, <= 3x at batch 1 (fp16 vs fp16, fp32 vs fp32; "
                 "the hybrid block vs the twin's conv + ReLU + pool); pack/unpack >= 30% of peak DRAM bandwidth; "
                 "memory ratio within 10% of planned"),
        # written after every row: "complete" turns true at the end; "interrupted" marks a run stopped
        # by SIGINT (gpu_session.sh's time cap) with the step it was in
        "complete": False, "interrupted": False, "interrupted_during": None,
        "layers": [], "first_layer_dft": [], "memory": [], "packed_bandwidth": [],
    }
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", dinfo["name"]).strip("_") or "device"
    jpath, cpath = Path(args.out) / f"{stem}.json", Path(args.out) / f"{stem}.csv"
    step = ["start"]  # what is being measured now, for "interrupted_during"
    # SIGINT (and SIGTERM, plain `timeout`'s signal) stop the measurements and keep the rows: installed
    # explicitly, because a shell starts background jobs with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        _measure(args, doc, step, torch, lib, timer, dev, layers, spec_model, batches, blocks, kept_map, peak,
                 lambda: write_outputs(doc, jpath, cpath))
    except KeyboardInterrupt:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the last write short
            signal.signal(sig, signal.SIG_IGN)
        doc["interrupted"], doc["interrupted_during"] = True, step[0]
        write_outputs(doc, jpath, cpath)
        _print_summary(doc)
        print(f"bench_kernels: INTERRUPTED during {step[0]}; {len(doc['layers'])} layer rows kept in\n"
              f"written: {jpath}\nwritten: {cpath}", file=sys.stderr)
        return EXIT_INTERRUPTED
    doc["complete"] = True
    write_outputs(doc, jpath, cpath)
    _print_summary(doc)
    print(f"written: {jpath}\nwritten: {cpath}")
    return 0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _measure(args: argparse.Namespace, doc: dict[str, Any], step: list[str], torch: Any, lib: Any, timer: Timer,
             dev: Any, layers: list[Layer], spec_model: Any, batches: list[int], blocks: set[str],
             kept_map: dict[str, float], peak: float | None, save: Callable[[], Any]) -> None:
    """Every measurement, layer by layer (a layer's batches, then its pack/unpack rows, then for the
    first spatial layer its spectrum timings), appended to ``doc`` and saved after each row, so that a
    time cap loses at most the row in progress."""
    cuda = dev.type == "cuda"
    modules = dict(spec_model.named_modules())
    for L in layers:
        m = modules[L.name]
        w = m.weight.detach().float().contiguous().to(dev)
        bias = (m.bias.detach().float() if getattr(m, "bias", None) is not None
                else torch.zeros(L.O)).contiguous().to(dev)
        kept = kept_map.get(L.name, args.kept)
        kept_in = args.kept_in if args.kept_in is not None else kept
        for B in batches:
            step[0] = f"{L.name} B={B}"
            rec = _layer_row(torch, lib, timer, L, B, dev, w, bias, kept, kept_in, blocks, peak, args.seed,
                             args.profile)
            doc["layers"].append(rec)
            save()
            _print_row(rec)
        if args.packed_bandwidth and L.in_domain == "spectral":
            for B in batches:
                for vd in ("fp32", "fp16"):
                    step[0] = f"pack/unpack {L.name} B={B} {vd}"
                    doc["packed_bandwidth"].append(
                        bench_packed_bandwidth(torch, lib, timer, L, B, vd, kept_in, dev, peak, args.seed))
                    save()
        if L.in_domain == "spatial" and not doc["first_layer_dft"]:
            for B in batches:
                step[0] = f"first-layer spectrum {L.name} B={B}"
                doc["first_layer_dft"].append(bench_first_layer_dft(torch, lib, timer, L, B, dev, args.seed))
                save()
    if args.models:
        step[0] = "memory ratios (--models)"
        doc["memory"] = memory_ratios(args.models[0], args.models[1], batches, "cuda" if cuda else "native-host",
                                      {"library": args.library} if args.library else {})
        save()


def _layer_row(torch: Any, lib: Any, timer: Timer, L: Layer, B: int, dev: Any, w: Any, bias: Any, kept: float,
               kept_in: float, blocks: set[str], peak: float | None, seed: int,
               profile: bool = False) -> dict[str, Any]:
    """One layer at one batch: the selected SpecConv blocks (fp32, fp16) vs cuDNN, ratios, goal
    (``profile``: each SpecConv measurement also profiled, see ``profile_call``)."""
    rec: dict[str, Any] = {"layer": asdict(L), "batch": B, "kept_target": kept, "kept_in": kept_in}
    for blk, pre in (("paper", "spec"), ("hybrid", "hyb")):
        if blk not in blocks:
            continue
        for vd in ("fp32", "fp16"):
            r = bench_spec_conv(torch, lib, timer, L, B, vd, kept, kept_in, w, bias, dev, seed, blk, profile)
            if peak:
                r["fraction_of_peak"] = r["achieved_gbps"] / peak
            rec[f"{pre}_{vd}"] = r
    old_tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        rec["cudnn_fp32"] = bench_twin_conv(torch, timer, L, B, torch.float32, dev, seed)
    finally:
        torch.backends.cudnn.allow_tf32 = old_tf32
    rec["cudnn_fp16"] = bench_twin_conv(torch, timer, L, B, torch.float16, dev, seed)
    # goals (docs/kernels.md): <= 2x cuDNN at batch 8 and 32, <= 3x at batch 1
    limit = 3.0 if B == 1 else 2.0
    met = []
    for pre, ref in (("spec", ""), ("hyb", "block")):
        if f"{pre}_fp16" not in rec:
            continue
        for p in ("fp32", "fp16"):
            base = rec[f"cudnn_{p}"]["block"] if ref else rec[f"cudnn_{p}"]
            rec[f"ratio_{'hyb_' if ref else ''}{p}"] = rec[f"{pre}_{p}"]["median_ms"] / base["median_ms"]
            met.append(rec[f"ratio_{'hyb_' if ref else ''}{p}"] <= limit)
    rec["goal_limit"] = limit
    rec["goal_met"] = all(met)
    return rec


def _print_row(rec: dict[str, Any]) -> None:
    """The one-line progress record of a layer row (scripts/gpu_report.py parses it from session logs)."""
    line = f"{rec['layer']['name']:<12} B={rec['batch']:<3}"
    if "spec_fp16" in rec:
        line += (f" paper fp16 {_fmt_ms(rec['spec_fp16']['median_ms'])} ms vs cuDNN "
                 f"{_fmt_ms(rec['cudnn_fp16']['median_ms'])} ms x{rec['ratio_fp16']:.2f} |")
    if "hyb_fp16" in rec:
        line += (f" hybrid fp16 {_fmt_ms(rec['hyb_fp16']['median_ms'])} ms vs cuDNN block "
                 f"{_fmt_ms(rec['cudnn_fp16']['block']['median_ms'])} ms x{rec['ratio_hyb_fp16']:.2f}")
    launches = [f"{name} {_fmt_launches(rec[key]['profile'])}"
                for key, name in (("spec_fp16", "paper"), ("hyb_fp16", "hybrid")) if "profile" in rec.get(key, {})]
    if launches:  # --profile: at the end, after what gpu_report.py's PAPER_RE/HYB_RE read
        line += " | launches: " + ", ".join(launches)
    print(line, flush=True)


def _fmt_launches(p: dict[str, Any]) -> str:
    """"336 (busy 12.3%)" of a profile; "error" for a failed one (its message is in the JSON)."""
    if "error" in p:
        return "error"
    busy = p.get("busy_fraction")
    return f"{p['kernels']}" + ("" if busy is None else f" (busy {100 * busy:.1f}%)")


def _csv_row(r: dict[str, Any]) -> dict[str, Any]:
    L = r["layer"]
    sp, hy = r.get("spec_fp16", {}), r.get("hyb_fp16", {})
    return {
        "layer": L["name"], "in_domain": L["in_domain"], "C": L["C"], "O": L["O"], "Hs": L["Hs"], "Ws": L["Ws"],
        "H_twin": L["H_twin"], "batch": r["batch"], "kept_target": r["kept_target"],
        "spec_fp32_ms": r.get("spec_fp32", {}).get("median_ms"), "spec_fp16_ms": sp.get("median_ms"),
        "cudnn_fp32_ms": r["cudnn_fp32"]["median_ms"], "cudnn_fp16_ms": r["cudnn_fp16"]["median_ms"],
        "ratio_fp32": r.get("ratio_fp32"), "ratio_fp16": r.get("ratio_fp16"),
        "spec_fp32_gbps": r.get("spec_fp32", {}).get("achieved_gbps"), "spec_fp16_gbps": sp.get("achieved_gbps"),
        "spec_fp16_frac_peak": sp.get("fraction_of_peak"),
        "spec_fp16_kept_out": sp.get("kept_out"),
        "spec_fp16_overflowed": sp.get("overflowed_samples"),
        "spec_fp16_capacity": sp.get("capacity"),
        "pool_after": L.get("pool_after"),
        "hyb_fp32_ms": r.get("hyb_fp32", {}).get("median_ms"), "hyb_fp16_ms": hy.get("median_ms"),
        "cudnn_block_fp32_ms": r["cudnn_fp32"]["block"]["median_ms"],
        "cudnn_block_fp16_ms": r["cudnn_fp16"]["block"]["median_ms"],
        "ratio_hyb_fp32": r.get("ratio_hyb_fp32"), "ratio_hyb_fp16": r.get("ratio_hyb_fp16"),
        "hyb_fp16_kept_out": hy.get("kept_out"), "hyb_fp16_overflowed": hy.get("overflowed_samples"),
        "hyb_fp16_workspace_bytes": hy.get("workspace_bytes"),
        **{f"{pre}_fp16_{k}": (m.get("profile") or {}).get(key)
           for pre, m in (("spec", sp), ("hyb", hy))
           for k, key in (("launches", "kernels"), ("busy", "busy_fraction"), ("us_per_launch", "us_per_launch"))},
    }


def write_outputs(doc: dict[str, Any], jpath: Path, cpath: Path) -> None:
    """The JSON document and the CSV (one row per layer row so far), each written atomically: a reader,
    or a run cut by its time cap, sees the previous complete file or the new one, never half of one."""
    outputs.write_text(jpath, json.dumps(doc, indent=2))
    buf = io.StringIO(newline="")
    wr = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    wr.writeheader()
    for r in doc["layers"]:
        wr.writerow(_csv_row(r))
    outputs.write_text(cpath, buf.getvalue())


def _print_summary(doc: dict[str, Any]) -> None:
    peak = doc["device"].get("peak_bandwidth_gbps")
    print(f"\n{doc['device']['name']}  (peak DRAM {peak:.0f} GB/s)" if peak else f"\n{doc['device']['name']}")
    print(f"{'layer':<12} {'B':>3} {'spec16':>9} {'cudnn16':>9} {'x16':>6} {'spec32':>9} {'cudnn32':>9} {'x32':>6} "
          f"{'GB/s16':>8} {'%peak':>6} {'ovf':>4}")
    for r in doc["layers"]:
        if "spec_fp16" not in r:
            continue
        s16, s32 = r["spec_fp16"], r["spec_fp32"]
        frac = s16.get("fraction_of_peak")
        print(f"{r['layer']['name']:<12} {r['batch']:>3} {s16['median_ms']:>9.4f} {r['cudnn_fp16']['median_ms']:>9.4f} "
              f"{r['ratio_fp16']:>6.2f} {s32['median_ms']:>9.4f} {r['cudnn_fp32']['median_ms']:>9.4f} "
              f"{r['ratio_fp32']:>6.2f} {s16['achieved_gbps']:>8.1f} {'-' if frac is None else f'{100 * frac:.1f}':>6} "
              f"{s16['overflowed_samples']:>4}")
    hyb = [r for r in doc["layers"] if "hyb_fp16" in r]
    if hyb:
        print(f"hybrid block (relu + the twin's pool) vs the twin's conv + ReLU (+ max pool):")
        print(f"{'layer':<12} {'B':>3} {'pool':>4} {'hyb16':>9} {'block16':>9} {'x16':>6} {'hyb32':>9} {'block32':>9} "
              f"{'x32':>6} {'ovf':>4}")
        for r in hyb:
            h16, h32 = r["hyb_fp16"], r["hyb_fp32"]
            print(f"{r['layer']['name']:<12} {r['batch']:>3} {h16['pool']:>4} {h16['median_ms']:>9.4f} "
                  f"{r['cudnn_fp16']['block']['median_ms']:>9.4f} {r['ratio_hyb_fp16']:>6.2f} {h32['median_ms']:>9.4f} "
                  f"{r['cudnn_fp32']['block']['median_ms']:>9.4f} {r['ratio_hyb_fp32']:>6.2f} "
                  f"{h16['overflowed_samples']:>4}")
    for d in doc.get("packed_bandwidth", []):
        for k in ("spec_pool_identity", "spec_concat_2"):
            e = d[k]
            frac = e.get("fraction_of_peak")
            print(f"pack/unpack {k:<18} {d['layer']:<12} B={d['batch']:<3} {d['value_dtype']} "
                  f"{e['median_ms']:.4f} ms {e['achieved_gbps']:.1f} GB/s"
                  + ("" if frac is None else f" ({100 * frac:.1f}% of peak)"))
    for d in doc["first_layer_dft"]:
        print(f"first-layer spectrum B={d['batch']}: library direct DFT (O=1) {d['library_direct_dft_O1']['median_ms']:.4f} ms, "
              f"cuFFT rfft2 {d['torch_fft_rfft2']['median_ms']:.4f} ms, GEMM DFT {d['torch_gemm_dft']['median_ms']:.4f} ms; "
              f"first layer O={d.get('O')}: dense input spectrum {d['library_first_layer_dense']['median_ms']:.4f} ms, "
              f"streamed {d['library_first_layer_streamed']['median_ms']:.4f} ms")
    for m in doc["memory"]:
        print(f"memory B={m['batch']}: planned ratio {m['planned_ratio']:.3f}, measured ({m['measured_key']}) "
              f"{m['measured_ratio']:.3f}, error {100 * m['ratio_error']:+.1f}% {'(goal met)' if m['goal_met'] else ''}")


if __name__ == "__main__":
    sys.exit(main())
