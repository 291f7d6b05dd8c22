"""Memory probes around a TensorRT run (DESIGN.md §5 figure 3, "device").

On Jetson (Orin, JetPack 6) the GPU shares DRAM with the CPU and NVML reports no memory, so the
figures come from:
    meminfo    /proc/meminfo: MemTotal, MemAvailable (used = total - available), and on L4T kernels
               NvMapMemUsed / NvMapMemFree (memory mapped through NvMap, i.e. what the GPU holds)
    nvmap      /sys/kernel/debug/nvmap/iovmm/clients: per-process NvMap sizes and their total
               (debugfs: root only)
    tegrastats a background sampler of `tegrastats --interval N` (RAM x/yMB, SWAP, GR3D_FREQ, EMC_FREQ,
               power rails), peak RAM during the run
    jtop       jetson-stats' Python API, if installed and its service runs
On x86: nvml (nvidia-ml-py) device memory used/total and this process's usage.

Every probe returns ``{"available": bool, "reason": str, ...}``: when unavailable, ``reason`` says why
(not a Jetson, needs root, package missing) instead of raising. Parsers are separate functions and
work on recorded text (tests/data/). No torch, no TensorRT.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

MEMINFO = Path("/proc/meminfo")
NVMAP_CLIENTS = (Path("/sys/kernel/debug/nvmap/iovmm/clients"),)
JETSON_MARKERS = (Path("/etc/nv_tegra_release"), Path("/sys/module/tegra_fuse"))
MIB = 1 << 20


def _unavailable(reason: str, **extra: Any) -> dict[str, Any]:
    return {"available": False, "reason": reason, **extra}


def is_jetson() -> bool:
    if any(p.exists() for p in JETSON_MARKERS):
        return True
    try:
        model = Path("/proc/device-tree/model").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "jetson" in model.lower() or "nvidia" in model.lower()


# --- /proc/meminfo -------------------------------------------------------------------------------

_MEMINFO_LINE = re.compile(r"^\s*([^:\s]+):\s+(\d+)(?:\s+(kB))?\s*$")


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo -> {key: value}; "kB" values in bytes, unitless ones (HugePages_*) as counts."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = _MEMINFO_LINE.match(line)
        if m:
            key, value, unit = m.groups()
            out[key] = int(value) * (1024 if unit else 1)
    return out


def meminfo_summary(info: dict[str, int]) -> dict[str, Any]:
    total = info.get("MemTotal")
    avail = info.get("MemAvailable")
    out: dict[str, Any] = {"mem_total": total, "mem_available": avail,
                           "mem_used": (total - avail) if total is not None and avail is not None else None,
                           "swap_used": (info["SwapTotal"] - info["SwapFree"])
                           if "SwapTotal" in info and "SwapFree" in info else None,
                           "nvmap_mem_used": info.get("NvMapMemUsed"), "nvmap_mem_free": info.get("NvMapMemFree"),
                           "cma_total": info.get("CmaTotal"), "cma_free": info.get("CmaFree")}
    return out


def meminfo_probe(path: Path = MEMINFO) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        return _unavailable(f"cannot read {path}: {e.strerror or e} (not Linux?)")
    info = parse_meminfo(text)
    if "MemTotal" not in info:
        return _unavailable(f"{path} has no MemTotal line")
    out = {"available": True, "reason": "", **meminfo_summary(info)}
    if out["nvmap_mem_used"] is None:
        out["nvmap_note"] = "no NvMapMemUsed line (not an L4T kernel, or this L4T release omits it)"
    return out


# --- NvMap debugfs -------------------------------------------------------------------------------

_SIZE = re.compile(r"^(\d+)([KMG]?)B?$", re.IGNORECASE)
_SIZE_MULT = {"": 1, "K": 1024, "M": MIB, "G": 1 << 30}


def _size_bytes(token: str) -> int | None:
    m = _SIZE.match(token.strip())
    if not m:
        return None
    return int(m.group(1)) * _SIZE_MULT[m.group(2).upper()]


def parse_nvmap_clients(text: str) -> dict[str, Any]:
    """/sys/kernel/debug/nvmap/iovmm/clients -> clients and total.

    Format (L4T): a header ``CLIENT PROCESS PID SIZE``, one line per client
    ``user  python3  4242  123456K`` and a last line ``total  987654K``.
    """
    clients = []
    total = None
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0].upper() == "CLIENT":
            continue
        size = _size_bytes(parts[-1])
        if size is None:
            continue
        if parts[0].lower() == "total":
            total = size
            continue
        pid = None
        for tok in reversed(parts[:-1]):
            if tok.isdigit():
                pid = int(tok)
                break
        clients.append({"client": parts[0], "process": parts[1] if len(parts) > 3 else "", "pid": pid,
                        "bytes": size})
    if total is None and clients:
        total = sum(c["bytes"] for c in clients)
    return {"clients": clients, "total_bytes": total}


def nvmap_probe(paths: Sequence[Path] = NVMAP_CLIENTS, pid: int | None = None) -> dict[str, Any]:
    pid = os.getpid() if pid is None else pid
    for p in paths:
        p = Path(p)
        try:
            text = p.read_text()
        except PermissionError:
            return _unavailable(f"{p} needs root (debugfs): run as root, or read NvMapMemUsed from the "
                                "meminfo probe instead")
        except FileNotFoundError:
            continue
        except OSError as e:
            return _unavailable(f"cannot read {p}: {e.strerror or e}")
        parsed = parse_nvmap_clients(text)
        mine = sum(c["bytes"] for c in parsed["clients"] if c["pid"] == pid)
        return {"available": True, "reason": "", "path": str(p), "total_bytes": parsed["total_bytes"],
                "this_process_bytes": mine, "clients": parsed["clients"]}
    why = "not a Jetson" if not is_jetson() else "debugfs not mounted or no nvmap/iovmm there"
    return _unavailable(f"no NvMap client table ({', '.join(str(p) for p in paths)}): {why}")


# --- tegrastats ----------------------------------------------------------------------------------

_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB(?: \(lfb (\d+)x(\d+)MB\))?")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB(?: \(cached (\d+)MB\))?")
_GR3D = re.compile(r"\bGR3D_FREQ (\d+)%(?:@\[?([\d,]+)\]?)?")
_EMC = re.compile(r"\bEMC_FREQ (\d+)%(?:@(\d+))?")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)mW/(\d+)mW")
_TEMP = re.compile(r"\b([A-Za-z][\w]*)@(-?[\d.]+)C\b")
_STAMP = re.compile(r"^(\d\d-\d\d-\d{4} \d\d:\d\d:\d\d)\s")


def parse_tegrastats_line(line: str) -> dict[str, Any]:
    """One tegrastats line -> figures (MB as printed; None where the line lacks the field).

    Handles JetPack 5/6 Orin lines, e.g.
    ``06-02-2026 10:15:01 RAM 2272/7620MB (lfb 4x4MB) SWAP 0/3810MB (cached 0MB) CPU [...]
    EMC_FREQ 3%@2133 GR3D_FREQ 45%@[611,611] cpu@48.5C gpu@47.9C VDD_IN 5263mW/5263mW ...``
    (GR3D_FREQ with one frequency, a per-GPC list, or none; EMC_FREQ only when run as root).
    """
    out: dict[str, Any] = {"timestamp": None, "ram_used_mb": None, "ram_total_mb": None, "lfb_blocks": None,
                           "lfb_block_mb": None, "swap_used_mb": None, "swap_total_mb": None,
                           "swap_cached_mb": None, "gr3d_percent": None, "gr3d_mhz": None, "emc_percent": None,
                           "emc_mhz": None, "rails_mw": {}, "temps_c": {}}
    m = _STAMP.match(line)
    if m:
        out["timestamp"] = m.group(1)
    m = _RAM.search(line)
    if m:
        out["ram_used_mb"], out["ram_total_mb"] = int(m.group(1)), int(m.group(2))
        if m.group(3):
            out["lfb_blocks"], out["lfb_block_mb"] = int(m.group(3)), int(m.group(4))
    m = _SWAP.search(line)
    if m:
        out["swap_used_mb"], out["swap_total_mb"] = int(m.group(1)), int(m.group(2))
        out["swap_cached_mb"] = int(m.group(3)) if m.group(3) else None
    m = _GR3D.search(line)
    if m:
        out["gr3d_percent"] = int(m.group(1))
        if m.group(2):
            freqs = [int(f) for f in m.group(2).split(",") if f]
            out["gr3d_mhz"] = freqs if len(freqs) > 1 else freqs[0]
    m = _EMC.search(line)
    if m:
        out["emc_percent"] = int(m.group(1))
        out["emc_mhz"] = int(m.group(2)) if m.group(2) else None
    out["rails_mw"] = {name: {"cur": int(cur), "avg": int(avg)} for name, cur, avg in _RAIL.findall(line)}
    out["temps_c"] = {name: float(v) for name, v in _TEMP.findall(line)}
    return out


def summarize_tegrastats(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ram = [s["ram_used_mb"] for s in samples if s.get("ram_used_mb") is not None]
    gr3d = [s["gr3d_percent"] for s in samples if s.get("gr3d_percent") is not None]
    return {"samples": len(samples),
            "ram_used_mb_first": ram[0] if ram else None, "ram_used_mb_last": ram[-1] if ram else None,
            "ram_used_mb_min": min(ram) if ram else None, "ram_used_mb_peak": max(ram) if ram else None,
            "ram_total_mb": next((s["ram_total_mb"] for s in samples if s.get("ram_total_mb")), None),
            "gr3d_percent_max": max(gr3d) if gr3d else None,
            "gr3d_percent_mean": round(sum(gr3d) / len(gr3d), 1) if gr3d else None}


class TegrastatsSampler:
    """Runs ``tegrastats --interval MS`` in the background while a block runs; parses every line.

        with TegrastatsSampler(interval_ms=100) as ts:
            runner.run(feeds)
        figures = ts.result()     # {"available": ..., "peak ram", "samples": [...]}

    Only the tegrastats process this object started is stopped (Popen.terminate on its pid).
    ``command`` replaces the tegrastats command line (tests feed recorded output through it).
    """

    def __init__(self, interval_ms: int = 100, command: Sequence[str] | None = None,
                 parse: Callable[[str], dict[str, Any]] = parse_tegrastats_line) -> None:
        self.interval_ms = int(interval_ms)
        self.command = list(command) if command is not None else None
        self.parse = parse
        self.samples: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.reason = ""
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> "TegrastatsSampler":
        cmd = self.command
        if cmd is None:
            exe = shutil.which("tegrastats") or ("/usr/bin/tegrastats" if Path("/usr/bin/tegrastats").exists()
                                                 else None)
            if exe is None:
                self.reason = "tegrastats not found (not a Jetson, or run outside the JetPack image)"
                return self
            cmd = [exe, "--interval", str(self.interval_ms)]
            # tegrastats uses stdio: into a pipe it would write in 4 KiB blocks, i.e. seconds late.
            stdbuf = shutil.which("stdbuf")
            if stdbuf is not None:
                cmd = [stdbuf, "-oL", *cmd]
        try:
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                          bufsize=1)
        except OSError as e:
            self.reason = f"cannot start {cmd[0]}: {e.strerror or e}"
            return self
        self._thread = threading.Thread(target=self._read, name="tegrastats-sampler", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            sample = self.parse(line)
            sample["t"] = time.monotonic()
            with self._lock:
                self.lines.append(line)
                self.samples.append(sample)

    def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "TegrastatsSampler":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def result(self) -> dict[str, Any]:
        with self._lock:
            samples = list(self.samples)
        if self._proc is None:
            return _unavailable(self.reason or "not started")
        if not samples:
            return _unavailable("tegrastats printed nothing during the run (interval longer than the run?)",
                                samples=[])
        return {"available": True, "reason": "", **summarize_tegrastats(samples), "interval_ms": self.interval_ms,
                "samples": samples}


# --- jtop (jetson-stats) ---------------------------------------------------------------------------

def jtop_probe(timeout_s: float = 5.0) -> dict[str, Any]:
    try:
        from jtop import jtop  # type: ignore[import-not-found]
    except ImportError:
        return _unavailable("jetson-stats (jtop) is not installed: pip install jetson-stats (Jetson only)")
    try:
        with jtop() as j:
            t0 = time.monotonic()
            while not j.ok():
                if time.monotonic() - t0 > timeout_s:
                    return _unavailable("jtop service did not answer (is jtop.service running?)")
            mem = dict(j.memory) if j.memory is not None else {}
            return {"available": True, "reason": "", "memory": {k: v for k, v in mem.items()
                                                                if isinstance(v, (int, float, str, dict))}}
    except Exception as e:  # noqa: BLE001 - jtop raises its own JtopException and others
        return _unavailable(f"jtop failed: {e}")


# --- NVML (x86, discrete GPUs) ----------------------------------------------------------------------

def nvml_probe(device_index: int = 0, pid: int | None = None) -> dict[str, Any]:
    pid = os.getpid() if pid is None else pid
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return _unavailable("nvidia-ml-py is not installed (pip install nvidia-ml-py)")
    try:
        pynvml.nvmlInit()
    except Exception as e:  # noqa: BLE001 - NVMLError subclasses
        return _unavailable(f"NVML is not usable here ({e}): no NVIDIA driver, or a Jetson (use nvmap/tegrastats)")
    try:
        return _nvml_read(pynvml, device_index, pid)
    except pynvml.NVMLError as e:
        return _unavailable(f"NVML query failed: {e}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def _nvml_read(pynvml: Any, device_index: int, pid: int) -> dict[str, Any]:
    h = pynvml.nvmlDeviceGetHandleByIndex(device_index)
    name = pynvml.nvmlDeviceGetName(h)
    name = name.decode() if isinstance(name, bytes) else str(name)
    try:
        info = pynvml.nvmlDeviceGetMemoryInfo(h)
    except pynvml.NVMLError as e:
        return _unavailable(f"NVML does not report memory on {name} ({e}); on Jetson Orin use the NvMap and "
                            "tegrastats probes", device=name)
    mine = None
    try:
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
            if int(proc.pid) == pid and proc.usedGpuMemory is not None:
                mine = (mine or 0) + int(proc.usedGpuMemory)
    except pynvml.NVMLError:
        mine = None
    return {"available": True, "reason": "", "device": name, "used_bytes": int(info.used),
            "total_bytes": int(info.total), "free_bytes": int(info.free), "this_process_bytes": mine}


def snapshot() -> dict[str, Any]:
    """Every point-in-time probe at once (tegrastats is a sampler: see TegrastatsSampler)."""
    return {"jetson": is_jetson(), "meminfo": meminfo_probe(), "nvmap": nvmap_probe(), "nvml": nvml_probe()}
