"""Run a TensorRT engine built by ``specdeploy build`` from numpy, and report its memory.

    with TrtRunner("model.engine", plugins="build/plugins/lib/libspecdeploy_trt.so") as r:
        out = r.run({"input": x})                 # dict name -> np.ndarray
        figures = r.memory_figures()

The sidecar is checked before the plan is deserialized (TensorRT release, GPU, plugin library).
Device buffers and the stream come from cuda-python (``cuda.bindings.runtime`` or ``cuda.cudart``).
No torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from specdeploy.trt import compat
from specdeploy.trt import sidecar as _sidecar


class InputShapeError(ValueError):
    """A feed's shape or dtype does not fit the engine (outside its optimization profile)."""


def check_shape_in_profile(name: str, shape: tuple[int, ...], lo: tuple[int, ...], hi: tuple[int, ...]) -> None:
    """Raise InputShapeError unless lo <= shape <= hi elementwise (same rank)."""
    if len(shape) != len(lo):
        raise InputShapeError(f"input '{name}' has shape {list(shape)} (rank {len(shape)}), the engine expects "
                              f"rank {len(lo)}: min {list(lo)}, max {list(hi)}")
    bad = [i for i, (s, a, b) in enumerate(zip(shape, lo, hi)) if not a <= s <= b]
    if bad:
        hint = ""
        if bad == [0]:
            hint = (f"; the batch must be in {lo[0]}..{hi[0]} (rebuild with --max-batch {shape[0]} for a larger "
                    "one)" if shape[0] > hi[0] else f"; the batch must be in {lo[0]}..{hi[0]}")
        raise InputShapeError(f"input '{name}' has shape {list(shape)}, outside the engine's optimization profile "
                              f"(min {list(lo)}, max {list(hi)}; dimension(s) {bad}){hint}")


class TrtRunner:
    """Deserialize an engine (after the sidecar check), run it on numpy feeds, report memory."""

    def __init__(self, engine_path: Path | str, plugins: Path | str | None, *, check_sidecar: bool = True,
                 allow_other_device: bool = False, verbose: bool = False, cuda: Any = None) -> None:
        self.engine_path = Path(engine_path)
        self.plugins = Path(plugins) if plugins is not None else None
        trt = compat.import_tensorrt()
        if cuda is None:
            from specdeploy.trt.cudart import Cuda

            cuda = Cuda()
        self.trt, self.cuda = trt, cuda
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (ptr, capacity bytes)
        self._stream = None
        self._context = None
        self._engine = None
        self._runtime = None
        self._ran = False
        self.overflowed: dict[str, int] = {}
        self.device = cuda.device_info()
        self._deltas: dict[str, int | None] = {"engine_load": None, "context_creation": None,
                                               "first_inference": None}
        if not self.engine_path.is_file():
            raise FileNotFoundError(f"engine {self.engine_path} does not exist")
        self.sidecar = (_sidecar.check_sidecar(self.engine_path, tensorrt_version=compat.trt_version(trt),
                                               device=self.device, plugin_path=self.plugins,
                                               allow_other_device=allow_other_device)
                        if check_sidecar else None)
        if self.plugins is not None:
            compat.load_plugin_library(trt, self.plugins)

        plan = self.engine_path.read_bytes()
        self.plan_bytes = len(plan)
        self._logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
        free0, _ = cuda.mem_get_info()
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        del plan
        if self._engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {self.engine_path} (see the TensorRT log above)")
        free1, _ = cuda.mem_get_info()
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise RuntimeError(f"TensorRT could not create an execution context for {self.engine_path} "
                               "(out of device memory?)")
        free2, _ = cuda.mem_get_info()
        self._deltas["engine_load"] = free0 - free1
        self._deltas["context_creation"] = free1 - free2
        self._stream = cuda.stream_create()

        self.names = compat.io_tensor_names(self._engine)
        self.inputs = [n for n in self.names if compat.is_input(trt, self._engine, n)]
        self.outputs = [n for n in self.names if n not in self.inputs]
        self.dtypes = {n: compat.nptype(trt, self._engine.get_tensor_dtype(n)) for n in self.names}

    # --- context manager ---
    def __enter__(self) -> "TrtRunner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            try:
                self.cuda.free(ptr)
            except Exception as e:  # noqa: BLE001 - closing must go on
                print(f"specdeploy: cudaFree failed while closing: {e}", file=sys.stderr)
        self._buffers.clear()
        if self._stream is not None:
            try:
                self.cuda.stream_destroy(self._stream)
            except Exception:  # noqa: BLE001
                pass
            self._stream = None
        self._context = None
        self._engine = None
        self._runtime = None

    # --- shapes ---
    def profile_shapes(self, name: str, profile: int = 0) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) of an input: the profile's for a dynamic input, the fixed shape otherwise."""
        shape = tuple(int(d) for d in self._engine.get_tensor_shape(name))
        if all(d >= 0 for d in shape):
            return shape, shape, shape
        lo, opt, hi = self._engine.get_tensor_profile_shape(name, profile)
        return tuple(int(d) for d in lo), tuple(int(d) for d in opt), tuple(int(d) for d in hi)

    def _prepare(self, name: str, x: Any) -> np.ndarray:
        want = self.dtypes[name]
        a = np.asarray(x)
        if a.dtype != want:
            if a.dtype.kind != want.kind and not (a.dtype.kind in "iu" and want.kind == "f"):
                raise InputShapeError(f"input '{name}' has dtype {a.dtype}, the engine takes {want}")
            a = a.astype(want)
        lo, _, hi = self.profile_shapes(name)
        check_shape_in_profile(name, tuple(a.shape), lo, hi)
        return np.ascontiguousarray(a)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, cap = self._buffers.get(name, (0, 0))
        if cap >= nbytes and ptr:
            return ptr
        if ptr:
            self.cuda.free(ptr)
        ptr = self.cuda.malloc(nbytes)
        self._buffers[name] = (ptr, nbytes)
        return ptr

    # --- inference ---
    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run one inference; returns every output as a host array. Packed int32 [B, S] outputs also
        update ``self.overflowed`` (number of rows with the overflow flag set)."""
        from specdeploy.trt.cudart import handle_int

        missing = [n for n in self.inputs if n not in feeds]
        extra = [n for n in feeds if n not in self.inputs]
        if missing or extra:
            raise InputShapeError(f"feeds must be exactly the engine inputs {self.inputs}; missing {missing}, "
                                  f"unknown {extra}")
        arrays = {n: self._prepare(n, feeds[n]) for n in self.inputs}
        for n, a in arrays.items():
            if not self._context.set_input_shape(n, tuple(a.shape)):
                raise InputShapeError(f"TensorRT refused shape {list(a.shape)} for input '{n}'")
        first = not self._ran
        free0 = self.cuda.mem_get_info()[0] if first else 0
        stream = self._stream
        for n, a in arrays.items():
            ptr = self._buffer(n, a.nbytes)
            self.cuda.memcpy_htod_async(ptr, a.ctypes.data, a.nbytes, stream)
            self._context.set_tensor_address(n, ptr)
        outs: dict[str, np.ndarray] = {}
        for n in self.outputs:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(n))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"output '{n}' has an unresolved shape {list(shape)}")
            host = np.empty(shape, dtype=self.dtypes[n])
            ptr = self._buffer(n, host.nbytes)
            self._context.set_tensor_address(n, ptr)
            outs[n] = host
        if not self._context.execute_async_v3(handle_int(stream)):
            raise RuntimeError(f"TensorRT failed to run {self.engine_path} (see the TensorRT log above)")
        for n, host in outs.items():
            self.cuda.memcpy_dtoh_async(host.ctypes.data, self._buffers[n][0], host.nbytes, stream)
        self.cuda.stream_synchronize(stream)
        if first:
            self._deltas["first_inference"] = free0 - self.cuda.mem_get_info()[0]
            self._ran = True
        self.overflowed = {n: int(np.count_nonzero(a[:, 1])) for n, a in outs.items()
                           if a.dtype == np.int32 and a.ndim == 2 and a.shape[1] >= 4}
        return outs

    # --- memory ---
    def memory_figures(self) -> dict[str, Any]:
        """DESIGN.md §5 figures 2 and 3 for this engine.

        device_memory_size: activations + scratch of one context (``device_memory_size_v2``; the v1
        attribute on TensorRT < 10.1), plan_bytes: serialized engine (weights + kernels),
        cuda_mem_get_info_delta: drop of cudaMemGetInfo's free memory around engine deserialization,
        context creation and the first inference (None before the first run). On Jetson (integrated
        GPU) cudaMemGetInfo is the whole system's memory, so other processes move it too: use the
        probes (NvMap, tegrastats) alongside.
        """
        size, attr = compat.device_memory_size(self._engine)
        return {
            "device_memory_size": size,
            "device_memory_size_attribute": attr,
            "plan_bytes": self.plan_bytes,
            "io_buffer_bytes": sum(cap for _, cap in self._buffers.values()),
            "cuda_mem_get_info_delta": dict(self._deltas),
            "device": dict(self.device),
            "tensorrt_version": compat.trt_version(self.trt),
        }
