"""Run exported specdeploy ONNX files: one interface over every backend.

    from specdeploy import runtime
    sess = runtime.load("lenet5.onnx", "ort")         # or "reference", "cuda", "tensorrt"
    logits = sess.run(x)                              # float32 [B, C, H, W] -> [B, classes]
    sess.last_overflowed                              # bool [B]: some op hit its capacity
    sess.last_nonfinite                               # bool [B]: NaN/Inf met (run raises unless nonfinite="flag")
    sess.memory()                                     # what this backend can measure, labelled

Backends:
    reference  onnx.reference.ReferenceEvaluator + specdeploy.reference ops (ground truth, CPU)
    ort        ONNX Runtime CPU + onnxruntime-extensions Python ops (the ecosystem check)
    cuda       the CUDA kernels via the C ABI, torch CUDA tensors as buffers (specdeploy.native.cuda)
    native-host  the same executor on the host build of the kernels, numpy buffers (specdeploy.native.host)
    tensorrt   a TensorRT engine with the plugins  (provided by specdeploy.trt.runtime_session)

Every file is validated once, before any backend sees it (``graph.read_model``): a file that is not
ONNX, a wrong specdeploy op-set version, an unknown op, a node lacking an attribute or with one out of
range, a packed input whose row size does not fit -> one ``ModelError`` (a ValueError) naming the file,
node and attribute. A batch over the declared maximum -> ``InputError``.

The GPU backends are filled in by their owners: ``load`` imports the providing module lazily and calls
``runtime_session(info: ModelInfo, **opts) -> Session``; if the module, that function, or the hardware
is missing the caller gets ``BackendUnavailableError`` saying which. ``register_backend`` adds others.
No module of this package imports torch (runs on a Jetson; tests/test_torch_boundary.py). Backend
"cuda" (``specdeploy.native.cuda``) imports torch when it is loaded; every other backend is torch-free.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

from specdeploy.runtime.errors import (
    BackendUnavailableError,
    UnsupportedByBackendError,
    InputError,
    ModelError,
    NonFiniteError,
    OpExecutionError,
    SpecRuntimeError,
)
from specdeploy.runtime.graph import ModelInfo, read_model
from specdeploy.runtime.session import Session

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "UnsupportedByBackendError",
    "InputError",
    "ModelError",
    "ModelInfo",
    "NonFiniteError",
    "OpExecutionError",
    "Session",
    "SpecRuntimeError",
    "load",
    "read_model",
    "register_backend",
]

SessionFactory = Callable[..., Session]


def _reference(info: ModelInfo, **opts: Any) -> Session:
    from specdeploy.runtime.reference_backend import ReferenceSession

    if opts:
        raise ValueError(f"backend 'reference' takes no options, got {sorted(opts)}")
    return ReferenceSession(info)


def _ort(info: ModelInfo, **opts: Any) -> Session:
    from specdeploy.runtime.ort_backend import OrtSession

    return OrtSession(info, **opts)


def _lazy(backend: str, module: str, hint: str) -> SessionFactory:
    """A factory that imports ``module`` on first use and calls its ``runtime_session``."""

    def factory(info: ModelInfo, **opts: Any) -> Session:
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            raise BackendUnavailableError(f"backend '{backend}' is not available: cannot import {module} ({e}); {hint}") from e
        fn = getattr(mod, "runtime_session", None)
        if fn is None:
            raise BackendUnavailableError(
                f"backend '{backend}' is not available: {module} does not provide runtime_session() yet; {hint}"
            )
        try:
            return fn(info, **opts)
        except (ImportError, OSError) as e:
            raise BackendUnavailableError(f"backend '{backend}' is not available here: {e}; {hint}") from e

    return factory


BACKENDS: dict[str, SessionFactory] = {
    "reference": _reference,
    "ort": _ort,
    "cuda": _lazy("cuda", "specdeploy.native.cuda",
                  "it needs an NVIDIA GPU, a CUDA build of torch and the kernel library "
                  "(specdeploy build-plugins --kind cuda)"),
    "native-host": _lazy("native-host", "specdeploy.native.host",
                         "it needs the host library (specdeploy build-plugins --kind host)"),
    "tensorrt": _lazy("tensorrt", "specdeploy.trt",
                      "it needs TensorRT and the plugin library (see docs/jetson.md)"),
}


def register_backend(name: str, factory: SessionFactory) -> None:
    """Add or replace a backend: ``factory(info: ModelInfo, **opts) -> Session``."""
    BACKENDS[name] = factory


def load(model_path: str | Path | Any, backend: str = "reference", *, nonfinite: str = "raise",
         **opts: Any) -> Session:
    """Validate ``model_path`` (an .onnx file, or an ``onnx.ModelProto``) and open it on ``backend``.

    ``nonfinite``: "raise" (default: ``run`` raises NonFiniteError for a batch in which a sample met a
    NaN/Inf) or "flag" (``run`` returns the logits; ``last_nonfinite`` marks those samples).
    Raises ModelError for a file that cannot be run (naming file, node, attribute), ValueError for an
    unknown backend or policy, BackendUnavailableError when the backend cannot run on this machine.
    """
    from specdeploy.runtime.session import NONFINITE_POLICIES

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
    info = read_model(model_path)
    sess = BACKENDS[backend](info, **opts)
    sess.nonfinite = nonfinite
    return sess
