"""TensorRT deployment: engine builds with the specdeploy plugin library, a runner, memory probes.

Nothing here imports ``tensorrt`` (or ``cuda``) at import time: ``import specdeploy.trt`` works on any
machine, and the first call that needs TensorRT raises :class:`TensorRTUnavailableError` with
"TensorRT Python package not found: install specdeploy[trt] on a machine with TensorRT".
Never imports torch (runs on a Jetson).

Modules:
    compat   the one place for TensorRT 10 vs 11 differences (engine attributes, builder flags,
             plugin library loading, creator lookup, parser errors)
    cudart   cuda-python runtime calls (cuda.bindings.runtime or the older cuda.cudart)
    sidecar  the JSON written next to every engine and checked before deserializing it
    builder  build_engine(): ONNX + libspecdeploy_trt.so -> engine + sidecar
    runner   TrtRunner: run an engine from numpy, memory figures
    probes   memory probes: /proc/meminfo, NvMap, tegrastats, jtop (Jetson); NVML (x86)
    cli      the ``specdeploy build`` verb
    session  the ``tensorrt`` backend of ``specdeploy.runtime.load`` (runtime_session below)
"""

from specdeploy.trt.compat import TensorRTUnavailableError

__all__ = ["TensorRTUnavailableError", "runtime_session"]


def runtime_session(info, **opts):  # type: ignore[no-untyped-def]
    """The ``tensorrt`` backend of ``specdeploy.runtime.load`` (see :mod:`specdeploy.trt.session`)."""
    from specdeploy.trt.session import runtime_session as _make

    return _make(info, **opts)
