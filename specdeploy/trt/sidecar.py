"""The engine sidecar: ``model.engine.json`` next to ``model.engine``.

A TensorRT plan only works with the TensorRT release, GPU and plugin library it was built with, and
deserializing a mismatched one fails late and cryptically (or, for a changed plugin library, not at
all). ``specdeploy build`` writes what the engine needs; :func:`check_sidecar` compares it with this
machine before any deserialization and says what differs and what to do.

Fields (format 1):
    format, specdeploy_version, created_utc
    engine            {"file": name, "sha256", "bytes"}
    tensorrt_version  e.g. "10.3.0.30"
    device            {"name", "compute_capability": "8.7", "integrated": bool}
    plugin_library    {"path", "sha256"}, or null for a model built without the plugin library
    onnx              {"path", "sha256"}
    recipe            the recipe dict (or null), as given
    build             the resolved build options (fp16, workspace_mib, max_batch, ...), notes
No torch, no TensorRT import.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from specdeploy.trt.compat import same_engine_version

FORMAT = 1
SUFFIX = ".json"


class SidecarError(ValueError):
    """The engine's sidecar is missing, unreadable, or describes another TensorRT/device/plugin library."""


def sidecar_path(engine_path: Path | str) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + SUFFIX)


def file_sha256(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def make_sidecar(
    *, engine_path: Path | str, tensorrt_version: str, device: Mapping[str, Any], plugin_path: Path | str | None,
    onnx_path: Path | str | None, recipe: Mapping[str, Any] | None, build: Mapping[str, Any],
    engine_sha256: str | None = None, plugin_sha256: str | None = None, onnx_sha256: str | None = None,
) -> dict[str, Any]:
    """The sidecar dict for an engine file that exists (hashes computed unless given)."""
    from specdeploy import __version__

    engine_path = Path(engine_path)
    return {
        "format": FORMAT,
        "specdeploy_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "engine": {"file": engine_path.name, "bytes": engine_path.stat().st_size,
                   "sha256": engine_sha256 or file_sha256(engine_path)},
        "tensorrt_version": str(tensorrt_version),
        "device": {"name": str(device.get("name", "")),
                   "compute_capability": str(device.get("compute_capability", "")),
                   "integrated": bool(device.get("integrated", False))},
        "plugin_library": ({"path": str(Path(plugin_path).resolve()),
                            "sha256": plugin_sha256 or file_sha256(plugin_path)}
                           if plugin_path is not None else None),
        "onnx": ({"path": str(Path(onnx_path).resolve()), "sha256": onnx_sha256 or file_sha256(onnx_path)}
                 if onnx_path is not None else None),
        "recipe": dict(recipe) if recipe is not None else None,
        "build": dict(build),
    }


def write_sidecar(engine_path: Path | str, data: Mapping[str, Any]) -> Path:
    from specdeploy import outputs

    return outputs.write_text(sidecar_path(engine_path), json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_sidecar(engine_path: Path | str) -> dict[str, Any]:
    engine_path = Path(engine_path)
    p = sidecar_path(engine_path)
    if not p.is_file():
        raise SidecarError(
            f"no sidecar {p.name} next to engine {engine_path}: build engines with `specdeploy build` (it "
            "records the TensorRT version, device and plugin library the engine needs), or pass "
            "check_sidecar=False to TrtRunner if you know they match")
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise SidecarError(f"sidecar {p} is unreadable: {e}") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SidecarError(f"sidecar {p} has format {data.get('format') if isinstance(data, dict) else '?'}, "
                           f"this specdeploy reads format {FORMAT}: rebuild the engine with `specdeploy build`")
    for key in ("engine", "tensorrt_version", "device", "plugin_library"):
        if key not in data:
            raise SidecarError(f"sidecar {p} lacks '{key}': rebuild the engine with `specdeploy build`")
    return data


def check_sidecar(
    engine_path: Path | str, *, tensorrt_version: str, device: Mapping[str, Any], plugin_path: Path | str | None,
    check_engine_hash: bool = True, allow_other_device: bool = False,
) -> dict[str, Any]:
    """Compare the engine's sidecar with this machine; return the sidecar or raise SidecarError.

    Checks, in order: the sidecar belongs to this engine file (size, sha256), the TensorRT release
    (major.minor.patch), the GPU (compute capability always; the device name unless
    ``allow_other_device``), and the plugin library (sha256; skipped when ``plugin_path`` is None or
    the engine was built without one).
    """
    engine_path = Path(engine_path)
    data = read_sidecar(engine_path)
    rebuild = f"rebuild it on this machine: specdeploy build MODEL.onnx -o {engine_path} --plugins LIB"

    eng = data["engine"]
    if not engine_path.is_file():
        raise SidecarError(f"engine {engine_path} does not exist")
    if check_engine_hash:
        size = engine_path.stat().st_size
        if eng.get("bytes") not in (None, size) or eng.get("sha256") not in (None, file_sha256(engine_path)):
            raise SidecarError(f"sidecar {sidecar_path(engine_path).name} describes another engine file than "
                               f"{engine_path} (size/sha256 differ): the engine was replaced without its sidecar; "
                               f"{rebuild}")

    built = str(data["tensorrt_version"])
    if not same_engine_version(built, tensorrt_version):
        raise SidecarError(f"engine {engine_path} was built with TensorRT {built}, this machine has TensorRT "
                           f"{tensorrt_version}: plans do not load across TensorRT releases; {rebuild}")

    dev = data["device"]
    want_cc, have_cc = str(dev.get("compute_capability", "")), str(device.get("compute_capability", ""))
    want_name, have_name = str(dev.get("name", "")), str(device.get("name", ""))
    if want_cc != have_cc:
        raise SidecarError(f"engine {engine_path} was built for {want_name or '?'} (compute capability "
                           f"{want_cc}), this GPU is {have_name or '?'} (compute capability {have_cc}): "
                           f"plans are specific to the GPU architecture; {rebuild}")
    if want_name != have_name and not allow_other_device:
        raise SidecarError(f"engine {engine_path} was built on '{want_name}', this GPU is '{have_name}' (same "
                           f"compute capability {have_cc}): TensorRT tunes plans per GPU model; {rebuild} "
                           "(or pass allow_other_device=True to accept it)")

    lib = data["plugin_library"]
    if plugin_path is not None and lib is not None:
        p = Path(plugin_path)
        if not p.is_file():
            raise SidecarError(f"plugin library {p} does not exist (engine {engine_path} was built with "
                               f"{lib.get('path')})")
        have = file_sha256(p)
        if lib.get("sha256") != have:
            raise SidecarError(
                f"plugin library {p} (sha256 {have[:12]}…) is not the one engine {engine_path} was built with "
                f"({lib.get('path')}, sha256 {str(lib.get('sha256'))[:12]}…): plugin fields and kernels must "
                f"match the engine; use that library or {rebuild}")
    return data
