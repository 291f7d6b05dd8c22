"""Backend "ort": ONNX Runtime (CPU) with the specdeploy ops as onnxruntime-extensions Python ops.

Three constraints of onnxruntime-extensions shape this module:

* Python ops only run in the domain ``ai.onnx.contrib``. The graph is rewritten **in memory** at load
  time (domain, and a per-variant op type); the file on disk keeps domain ``specdeploy``.
* A Python op has a fixed list of input types and scalar INT/FLOAT/STRING attributes only. So each
  (op, variant) gets its own registered type: SpecConv spatial/spectral with/without bias,
  SpecConcat per input count (each op's ``ort_variant``); an INTS attribute (SpecConcat's ``C``) travels as the string "c0,c1,...".
* An exception escaping a Python op aborts the process (``std::terminate``). The graph is therefore
  fully validated (``graph.read_model``) before the session exists, and each op additionally catches
  everything, records it for its session (routed by a hidden ``sd_session`` attribute), returns zeros
  of the right shape (a valid empty packed row), and ``run`` raises ``OpExecutionError`` afterwards.

Ops are registered once per process (the registry of onnxruntime-extensions is global).
"""

from __future__ import annotations

import itertools
import sys
import threading
from typing import Any, Callable

import numpy as np



def _import_extensions() -> Any:
    """Import onnxruntime_extensions without letting it import torch.

    Its optional Whisper converter (``onnxruntime_extensions.cvt``) tries ``import torch``; on a
    machine with torch that costs seconds and hundreds of MB of RSS, which would also pollute the
    process-memory figures. ``torch`` is hidden (``sys.modules["torch"] = None`` makes that import
    fail, which the package tolerates) only for the duration of the import, and only if nobody has
    imported torch yet; a later ``import torch`` works as usual.
    """
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        import onnxruntime_extensions

        return onnxruntime_extensions
    finally:
        if hide and "torch" in sys.modules and sys.modules["torch"] is None:
            del sys.modules["torch"]


try:
    import onnxruntime as ort
    from onnx import helper

    _ox = _import_extensions()
    PyCustomOpDef, get_library_path, onnx_op = _ox.PyCustomOpDef, _ox.get_library_path, _ox.onnx_op
except ImportError as _e:  # pragma: no cover - only without the optional deps
    from specdeploy.runtime.errors import BackendUnavailableError

    raise BackendUnavailableError(
        f"backend 'ort' needs onnxruntime and onnxruntime-extensions ({_e}): pip install 'specdeploy[ort]'"
    ) from _e

from specdeploy import ops
from specdeploy.runtime.errors import OpExecutionError
from specdeploy.runtime.graph import ModelInfo, SpecNode
from specdeploy.runtime.session import Session

__all__ = ["OrtSession", "CONTRIB_DOMAIN", "ort_op_type"]

CONTRIB_DOMAIN = "ai.onnx.contrib"
_HIDDEN = ("sd_session", "sd_node", "sd_shape")  # attributes added in memory, stripped before the op runs
_ATTR_DT = {"INT": PyCustomOpDef.dt_int64, "FLOAT": PyCustomOpDef.dt_float, "STRING": PyCustomOpDef.dt_string,
            "INTS": PyCustomOpDef.dt_string}

_registered: set[str] = set()
_register_lock = threading.Lock()
_errors: dict[str, list[tuple[str, BaseException]]] = {}
_errors_lock = threading.Lock()
_session_ids = itertools.count()


def ort_op_type(node: SpecNode) -> str:
    """The in-memory op type of a node's variant, e.g. 'Specdeploy_SpecConv_spatial_bias'."""
    return f"Specdeploy_{node.op}{ops.REGISTRY[node.op].ort_variant(node)}"


def _signature(node: SpecNode) -> tuple[list[int], list[int]]:
    dt = {"float": PyCustomOpDef.dt_float, "float32": PyCustomOpDef.dt_float, "int32": PyCustomOpDef.dt_int32}
    d = ops.REGISTRY[node.op]
    return [dt[t] for t in d.ort_inputs(node)], [dt[_out_dtype(node)]]


def _out_dtype(node: SpecNode) -> str:
    return "float32" if not ops.REGISTRY[node.op].packed_output else "int32"


def _compute(op: str, inputs: tuple[np.ndarray, ...], attrs: dict[str, Any]) -> np.ndarray:
    d = ops.REGISTRY[op]
    for name, t in d.attributes.items():  # INTS travel as the string "c0,c1,..."
        if t == "INTS":
            attrs[name] = [int(c) for c in str(attrs[name]).split(",")]
    return d.reference(list(inputs), attrs)


def _record(session: str, node: str, exc: BaseException) -> None:
    with _errors_lock:
        _errors.setdefault(session, []).append((node, exc))


def _make_kernel(op: str, out_dtype: type) -> Callable[..., np.ndarray]:
    """The Python body ORT calls: never raises (see the module docstring)."""

    def kernel(*inputs: np.ndarray, **attrs: Any) -> np.ndarray:
        session = str(attrs.pop("sd_session", ""))
        node = str(attrs.pop("sd_node", "?"))
        shape = str(attrs.pop("sd_shape", "1"))
        try:
            out = _compute(op, inputs, attrs)
            return np.ascontiguousarray(out, dtype=out_dtype)
        except BaseException as e:  # noqa: BLE001 - must not escape into ORT (it would abort)
            _record(session, node, e)
            try:
                batch = int(inputs[0].shape[0])
                dims = tuple(int(d) for d in shape.split(","))
                return np.zeros((batch, *dims), dtype=out_dtype)
            except BaseException:  # noqa: BLE001
                return np.zeros((1, 1), dtype=out_dtype)

    kernel.__name__ = f"specdeploy_{op}"
    return kernel


def _register(node: SpecNode) -> str:
    """Register the node's variant with onnxruntime-extensions once per process; return its op type."""
    op_type = ort_op_type(node)
    with _register_lock:
        if op_type not in _registered:
            ins, outs = _signature(node)
            attrs = {name: _ATTR_DT[t] for name, t in ops.REGISTRY[node.op].attributes.items()}
            attrs.update({h: PyCustomOpDef.dt_string for h in _HIDDEN})
            out_dtype = np.dtype(_out_dtype(node)).type
            onnx_op(op_type=op_type, inputs=ins, outputs=outs, attrs=attrs)(_make_kernel(node.op, out_dtype))
            _registered.add(op_type)
    return op_type


def _rewrite(info: ModelInfo, session_id: str, out_dims: dict[str, tuple[int, ...]]) -> bytes:
    """The in-memory ORT graph: contrib domain and variant op types, hidden attributes, tap outputs."""
    proto = info.model
    by_index = {n.index: n for n in info.spec_nodes}
    for i, pnode in enumerate(proto.graph.node):
        n = by_index.get(i)
        if n is None:
            continue
        pnode.domain = CONTRIB_DOMAIN
        pnode.op_type = _register(n)
        if len(pnode.input) == 3 and not pnode.input[2]:
            del pnode.input[2]
        for name, t in ops.REGISTRY[n.op].attributes.items():  # a Python op takes no INTS: send a string
            if t == "INTS":
                for a in pnode.attribute:
                    if a.name == name:
                        pnode.attribute.remove(a)
                        break
                pnode.attribute.append(helper.make_attribute(name, ",".join(str(c) for c in n.attrs[name])))
        pnode.attribute.extend([
            helper.make_attribute("sd_session", session_id),
            helper.make_attribute("sd_node", n.name),
            helper.make_attribute("sd_shape", ",".join(str(d) for d in out_dims[n.output])),
        ])
    imports = [d for d in proto.opset_import if d.domain != ops.DOMAIN]
    del proto.opset_import[:]
    proto.opset_import.extend(imports + [helper.make_opsetid(CONTRIB_DOMAIN, 1)])
    outputs = {o.name for o in proto.graph.output}
    for tap in info.overflow_taps:
        if tap not in outputs:
            proto.graph.output.append(helper.make_tensor_value_info(tap, 6, [None, *out_dims[tap]]))  # 6 = INT32
    return proto.SerializeToString()


class OrtSession(Session):
    """ONNX Runtime CPU session over the rewritten graph.

    Options: ``threads`` (intra-op threads, default ORT's choice), ``optimization`` ("all", "basic",
    "disable"; default "all").
    """

    backend = "ort"

    def __init__(self, info: ModelInfo, *, threads: int | None = None, optimization: str = "all") -> None:
        super().__init__(info)
        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
        if optimization not in levels:
            raise ValueError(f"ort backend: optimization must be one of {sorted(levels)}, got {optimization!r}")
        self._sid = f"s{next(_session_ids)}"
        from specdeploy.runtime.graph import spec_output

        out_dims = {n.output: tuple(int(d) for d in spec_output(n, info.weights, 1).shape[1:]) for n in info.spec_nodes}
        with self._procmem.measure_load():
            blob = _rewrite(info, self._sid, out_dims)
            so = ort.SessionOptions()
            so.register_custom_ops_library(get_library_path())
            so.log_severity_level = 3
            so.graph_optimization_level = levels[optimization]
            if threads:
                so.intra_op_num_threads = int(threads)
            self._sess = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
        self._fetch = [info.output_name, *info.overflow_taps]

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        with _errors_lock:
            _errors.pop(self._sid, None)
        try:
            res = self._sess.run(self._fetch, {self.info.input_name: x})
        except Exception as e:
            self._raise_recorded(e)
            raise
        self._raise_recorded(None)
        return np.asarray(res[0], dtype=np.float32), list(res[1:])

    def _raise_recorded(self, cause: BaseException | None) -> None:
        with _errors_lock:
            errs = _errors.pop(self._sid, None)
        if not errs:
            return
        node, exc = errs[0]
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise exc
        raise OpExecutionError(
            f"{self.info.label}: node '{node}' failed inside ONNX Runtime: {type(exc).__name__}: {exc}"
        ) from exc

    def __del__(self) -> None:
        with _errors_lock:
            _errors.pop(getattr(self, "_sid", ""), None)
