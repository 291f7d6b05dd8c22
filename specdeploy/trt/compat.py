"""The one place for differences between TensorRT Python APIs (10.3 on JetPack 6.1+, 10.x on x86, 11.x).

Checked against the bindings' sources (NVIDIA/TensorRT python/src, tags v10.3.0, v10.13.0, v11.1):

=====================================  ======================  ==============================
what                                   TensorRT 10.x           TensorRT 11.x
=====================================  ======================  ==============================
engine activation + scratch memory     ``device_memory_size_v2`` (10.1+; ``device_memory_size``
                                       before, deprecated after)  ``device_memory_size_v2`` only
fp16 precision                         ``BuilderFlag.FP16`` on a   no ``FP16`` flag: networks are
                                       weakly typed network        always strongly typed; precision
                                                                   is the ONNX graph's types
strongly typed networks                ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``  always
plugin creator lookup                  ``get_creator`` (V1 + V3), ``get_creator`` only
                                       ``get_plugin_creator`` (V1)
loading a plugin library (V3 entry     ``get_plugin_registry().load_library(path)``, both
points getCreators/setLoggerFinder)
=====================================  ======================  ==============================

Functions take the ``tensorrt`` module (or objects from it) as arguments, so they are testable with
stand-in objects and never import TensorRT themselves, except :func:`import_tensorrt`.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Any, Iterable

from specdeploy import ops

#: environment variable naming libspecdeploy_trt.so (CLI `build` default, backend "tensorrt")
PLUGINS_ENV = "SPECDEPLOY_TRT_PLUGINS"

TRT_MISSING_MESSAGE = "TensorRT Python package not found: install specdeploy[trt] on a machine with TensorRT"

#: plugin name -> version of the creators libspecdeploy_trt.so registers (namespace ""): one per op
#: of the op set (``specdeploy.ops``, each op's ``trt_version``).
SPECDEPLOY_PLUGINS = {name: op.trt_version for name, op in ops.REGISTRY.items()}


class TensorRTUnavailableError(ImportError, ValueError):
    """TensorRT (or the plugin library it needs) cannot be used on this machine.

    An ImportError for code that expects one, and a ValueError so the ``specdeploy`` CLI reports it as
    a one-line user error.
    """


class PluginLibraryError(ValueError):
    """The specdeploy plugin library could not be loaded or lacks a creator."""


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or :class:`TensorRTUnavailableError` with the install hint."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as e:
        raise TensorRTUnavailableError(f"{TRT_MISSING_MESSAGE} ({e})") from e


# --- versions ----------------------------------------------------------------------------------

def version_tuple(version: str) -> tuple[int, ...]:
    """'10.3.0.30' -> (10, 3, 0, 30); non-numeric tails are dropped ('11.0.0b1' -> (11, 0, 0))."""
    out: list[int] = []
    for part in str(version).split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        out.append(int(digits))
        if len(digits) != len(part):
            break
    return tuple(out)


def trt_version(trt: Any) -> str:
    return str(getattr(trt, "__version__", "unknown"))


def trt_major(trt: Any) -> int:
    v = version_tuple(trt_version(trt))
    return v[0] if v else 0


def same_engine_version(a: str, b: str) -> bool:
    """Whether engines built with TensorRT ``a`` load with ``b``: same major.minor.patch.

    (Plans are not portable across TensorRT releases unless built version-compatible, which
    specdeploy does not do; build numbers of one release differ between x86 wheels and JetPack debs.)
    """
    return version_tuple(a)[:3] == version_tuple(b)[:3]


# --- engine attributes -----------------------------------------------------------------------

def device_memory_size(engine: Any) -> tuple[int, str]:
    """Activation + scratch memory TensorRT needs for an execution context, and which attribute gave it.

    ``device_memory_size_v2`` (TensorRT >= 10.1; the only one in 11.x), else the older
    ``device_memory_size``.
    """
    for attr in ("device_memory_size_v2", "device_memory_size"):
        try:
            value = getattr(engine, attr)
        except AttributeError:
            continue
        if value is None:
            continue
        return int(value), attr
    raise AttributeError("this engine object has neither device_memory_size_v2 nor device_memory_size")


def io_tensor_names(engine: Any) -> list[str]:
    return [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]


def is_input(trt: Any, engine: Any, name: str) -> bool:
    return engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT


def nptype(trt: Any, dtype: Any) -> Any:
    """numpy dtype of a TensorRT DataType (trt.nptype where it knows the type)."""
    import numpy as np

    try:
        return np.dtype(trt.nptype(dtype))
    except (TypeError, KeyError, AttributeError):
        pass
    name = str(dtype).rsplit(".", 1)[-1].upper()
    table = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64, "INT8": np.int8,
             "UINT8": np.uint8, "BOOL": np.bool_}
    if name not in table:
        raise TypeError(f"TensorRT data type {dtype} has no numpy equivalent")
    return np.dtype(table[name])


# --- builder ---------------------------------------------------------------------------------

def network_flags(trt: Any, *, strongly_typed: bool) -> int:
    """Creation flags for ``builder.create_network``: explicit batch is the only mode since 10.0;
    STRONGLY_TYPED on request (10.x) — 11.x networks are always strongly typed and the flag is a no-op."""
    if not strongly_typed or trt_major(trt) >= 11:
        return 0
    flag = getattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED", None)
    if flag is None:
        raise TensorRTUnavailableError(f"TensorRT {trt_version(trt)} has no strongly typed networks")
    return 1 << int(flag)


def set_fp16(trt: Any, config: Any, fp16: bool) -> list[str]:
    """Enable fp16 kernels where this TensorRT has the builder flag; returns notes for the user.

    TensorRT 11 removed ``BuilderFlag.FP16`` (and weakly typed networks): an fp16 engine needs an
    fp16 ONNX graph there, and asking for fp16 on an fp32 graph only yields a note.
    """
    if not fp16:
        return []
    flag = getattr(getattr(trt, "BuilderFlag", None), "FP16", None)
    if flag is not None:
        config.set_flag(flag)
        return []
    return [f"TensorRT {trt_version(trt)} builds strongly typed networks only: precision follows the ONNX "
            "graph's types, so --fp16 has no effect here (export an fp16 graph instead)"]


def set_tactic_sources(trt: Any, config: Any, names: Iterable[str]) -> list[str]:
    """Enable exactly the named tactic sources (an empty list keeps TensorRT's default); returns notes.

    TensorRT 11 removed CUBLAS, CUBLAS_LT and CUDNN; names this TensorRT lacks are skipped with a note.
    """
    names = list(names)
    if not names:
        return []
    enum = getattr(trt, "TacticSource", None)
    mask, notes = 0, []
    for n in names:
        v = getattr(enum, n, None) if enum is not None else None
        if v is None:
            notes.append(f"tactic source {n} does not exist in TensorRT {trt_version(trt)}: ignored")
            continue
        mask |= 1 << int(v)
    config.set_tactic_sources(mask)
    return notes


def set_workspace(trt: Any, config: Any, workspace_mib: int) -> None:
    if workspace_mib <= 0:
        raise ValueError(f"workspace must be > 0 MiB, got {workspace_mib}")
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)


def plan_bytes(plan: Any) -> bytes:
    """bytes of an IHostMemory (buffer protocol in every 10.x/11.x binding)."""
    if plan is None:
        raise ValueError("TensorRT returned no serialized engine")
    return bytes(memoryview(plan))


def parser_errors(parser: Any) -> list[dict[str, Any]]:
    """The ONNX parser's errors as dicts: node index, node name, operator, description, code.

    Accessors differ slightly between parser versions (node_name/node_operator are newer), so each is
    read if present.
    """
    out = []
    for i in range(int(getattr(parser, "num_errors", 0))):
        e = parser.get_error(i)

        def call(attr: str, default: Any = None, e: Any = e) -> Any:
            f = getattr(e, attr, None)
            try:
                return f() if callable(f) else default
            except Exception:  # noqa: BLE001 - a broken accessor must not hide the error itself
                return default

        out.append({"node": call("node", -1), "node_name": call("node_name", "") or "",
                    "operator": call("node_operator", "") or "", "desc": str(call("desc", "") or e),
                    "code": str(call("code", ""))})
    return out


#: the ONNX parser's words when no creator matches (onnx-tensorrt's plugin importer) ...
_NOT_FOUND = ("plugin not found", "no importer registered", "could not find plugin creator")
#: ... and when a creator exists but its createPlugin returned null (the plugin refused the fields)
_REFUSED = ("could not create the plugin", "could not create plugin", "createplugin")


def _plugin_lines(log_errors: Iterable[str], op: str, node_name: str) -> list[str]:
    """The plugin's own messages about a node from the TensorRT log ("SpecConv node 'x': ...")."""
    lines = [m for m in log_errors if node_name and f"'{node_name}'" in m]
    return lines or [m for m in log_errors if op and m.startswith(op)]


def format_parser_errors(errors: Iterable[dict[str, Any]], plugins: Path | None = None,
                         log_errors: Iterable[str] = ()) -> str:
    """One line per error. A plugin that was not found gets the fix spelled out (--plugins); a plugin
    that was found but refused the node's fields gets its own message from the TensorRT log
    (``log_errors``), because the parser only says "Could not create the plugin."."""
    log_errors = list(log_errors)
    lines = []
    for e in errors:
        where = f"node {e['node']}" if e.get("node", -1) not in (-1, None) else "graph"
        if e.get("node_name"):
            where += f" '{e['node_name']}'"
        if e.get("operator"):
            where += f" ({e['operator']})"
        desc = e.get("desc", "")
        low = desc.lower()
        op = e.get("operator") or ""
        if any(k in low for k in _REFUSED):
            own = _plugin_lines(log_errors, op, e.get("node_name", ""))
            reason = "; ".join(own) if own else "the plugin logged no reason (run with --verbose)"
            lines.append(f"{where}: the {op or 'specdeploy'} plugin was found but refused this node: {reason} [{desc}]")
        elif any(k in low for k in _NOT_FOUND):
            hint = (f"plugin not found for {where}: TensorRT has no creator for {op or 'a specdeploy op'} version 1 "
                    "namespace ''; pass the plugin library with --plugins" + (f" (given: {plugins})" if plugins else ""))
            lines.append(f"{hint} [{desc}]")
        else:
            lines.append(f"{where}: {desc}")
    return "\n".join(lines)


# --- plugin registry -------------------------------------------------------------------------

_loaded_lock = threading.Lock()
_loaded: dict[str, Any] = {}  # resolved path -> handle, so one process loads a library once


def find_creator(registry: Any, name: str, version: str = "1", namespace: str = "") -> Any:
    """The registry's creator for (name, version, namespace), IPluginCreatorV3One included, or None.

    ``get_creator`` (TensorRT 10.0+, the only lookup in 11.x) sees V1 and V3 creators;
    ``get_plugin_creator`` (V1 only, removed in 11.x) is the fallback for older bindings.
    """
    for attr in ("get_creator", "get_plugin_creator"):
        f = getattr(registry, attr, None)
        if f is None:
            continue
        try:
            c = f(name, version, namespace)
        except Exception:  # noqa: BLE001 - bindings raise on unknown names in some versions
            c = None
        if c is not None:
            return c
    return None


def missing_creators(registry: Any) -> list[str]:
    return [name for name, ver in SPECDEPLOY_PLUGINS.items() if find_creator(registry, name, ver, "") is None]


def registered_specdeploy_creators(registry: Any) -> set[str] | None:
    """Names of the specdeploy creators already in the registry, read from its creator list, or None
    where the binding offers no list we can read.

    Why not ``find_creator``: TensorRT logs an error for every lookup of a creator it does not have,
    so asking for our four creators before the library is loaded printed up to 8 errors on every
    first load. Listing the registry (``all_creators``, 10.x/11.x; ``plugin_creator_list``, V1
    creators only) asks for nothing that may be absent.
    """
    for attr in ("all_creators", "plugin_creator_list"):
        try:
            creators = getattr(registry, attr, None)
            if creators is None:
                continue
            found = {(str(c.name), str(c.plugin_version), str(c.plugin_namespace)) for c in creators}
        except Exception:  # noqa: BLE001 - a binding whose list items lack these attributes
            continue
        return {name for name, ver in SPECDEPLOY_PLUGINS.items() if (name, ver, "") in found}
    return None


def load_plugin_library(trt: Any, path: Path | str) -> Any:
    """Load libspecdeploy_trt.so into TensorRT's plugin registry (once per process) and check that it
    registered every specdeploy creator. Returns the registry's library handle.

    The library exports getCreators/setLoggerFinder (no static registration), so ctypes.CDLL alone
    would register nothing: ``IPluginRegistry.load_library`` is the way in 10.x and 11.x.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise PluginLibraryError(f"plugin library {p} does not exist: build it with "
                                 "`cmake -S plugins -B build/plugins -DSPECDEPLOY_BUILD_TRT=ON && cmake --build "
                                 "build/plugins -j` (it is build/plugins/lib/libspecdeploy_trt.so)")
    key = str(p.resolve())
    registry = trt.get_plugin_registry()
    with _loaded_lock:
        if key in _loaded:
            return _loaded[key]
        if registered_specdeploy_creators(registry) == set(SPECDEPLOY_PLUGINS):
            # Creators of these names are registered already (another copy of the library, or a static
            # registration): loading this one too would register duplicates, which TensorRT refuses.
            _loaded[key] = None
            return None
        load = getattr(registry, "load_library", None)
        if load is None:
            raise TensorRTUnavailableError(f"TensorRT {trt_version(trt)} cannot load plugin libraries "
                                           "(IPluginRegistry.load_library missing)")
        try:
            handle = load(key)
        except Exception as e:  # noqa: BLE001 - the binding raises a bare RuntimeError
            raise PluginLibraryError(f"TensorRT could not load plugin library {p}: {e}") from e
        if handle is None:
            raise PluginLibraryError(
                f"TensorRT could not load plugin library {p} (see the TensorRT log above): it must export "
                "getCreators and setLoggerFinder, and its kernel library libspecdeploy_kernels.so must be "
                "loadable (same directory, or on LD_LIBRARY_PATH)")
        missing = missing_creators(registry)
        if missing:
            raise PluginLibraryError(f"plugin library {p} loaded but registered no creator for "
                                     f"{', '.join(missing)} (version 1, namespace ''): is it a specdeploy "
                                     "plugin library built for this TensorRT version?")
        _loaded[key] = handle
        return handle
