"""A stand-in for the ``tensorrt`` module, its plugin registry, parser errors and the CUDA wrapper.

Why: TensorRT cannot be installed on CI machines, yet specdeploy.trt's own logic (plugin loading,
profiles, feeds, buffers, sidecars, error messages) must run there. ``make_fake_trt`` gives just
enough API for ``build_engine`` and ``TrtRunner``; its "engine" computes
``logits = input.sum over (C, H, W) * [1, 2, ..., 10]`` on host memory, and its plan is JSON
describing its IO tensors. Real engines: tests/test_trt_engine.py (marked ``tensorrt``).

Fixtures using it (``fake_trt``, ``fresh_loaded``, ``no_tensorrt``) are in tests/conftest.py.
"""

from __future__ import annotations

import ctypes
import json
import types
from pathlib import Path

import numpy as np
import pytest

from specdeploy.trt import compat

#: the device an engine is "built on" in these tests (an Orin Nano)
DEVICE = {"name": "Orin (nvgpu)", "compute_capability": "8.7", "integrated": True}


class Flags:
    """A builder config's flag setter that records the flags set."""

    def __init__(self):
        self.flags = []

    def set_flag(self, f):
        self.flags.append(f)


class FakeRegistry:
    """IPluginRegistry stand-in: load_library registers the creators of a 'library'."""

    def __init__(self, provides=tuple(compat.SPECDEPLOY_PLUGINS), v3_lookup=True, handle=object()):
        self.creators: dict[tuple[str, str, str], object] = {}
        self.provides = provides
        self.handle = handle
        self.loads: list[str] = []
        if not v3_lookup:  # older bindings: get_plugin_creator only
            self.get_creator = None  # type: ignore[assignment]

        self.missed_lookups = 0  # TensorRT logs an error for each lookup of an absent creator

    def _lookup(self, key):
        c = self.creators.get(key)
        self.missed_lookups += c is None
        return c

    def get_creator(self, name, version, namespace=""):
        return self._lookup((name, version, namespace))

    def get_plugin_creator(self, name, version, namespace=""):
        return self._lookup((name, version, namespace))

    @property
    def all_creators(self):
        return [types.SimpleNamespace(name=n, plugin_version=v, plugin_namespace=ns) for n, v, ns in self.creators]

    def load_library(self, path):
        self.loads.append(path)
        for n in self.provides:
            self.creators[(n, "1", "")] = f"creator:{n}"
        return self.handle


def fake_trt_with(registry):
    """A `tensorrt` namespace whose plugin registry is ``registry``."""
    return types.SimpleNamespace(__version__="10.3.0", get_plugin_registry=lambda: registry)


class ParserError:
    """An ONNX parser error as TensorRT 10 reports it (node, name, operator, description, code)."""

    def __init__(self, node, name, op, desc):
        self._v = (node, name, op, desc)

    def node(self):
        return self._v[0]

    def node_name(self):
        return self._v[1]

    def node_operator(self):
        return self._v[2]

    def desc(self):
        return self._v[3]

    def code(self):
        return "ErrorCode.UNSUPPORTED_NODE"


class _Enum:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


def make_fake_trt(version="10.3.0.30", *, parse_ok=True, parse_errors=()):
    """A minimal `tensorrt` module: enough API for build_engine and TrtRunner, no GPU.

    The 'engine' computes logits = input.sum over (C, H, W) * [1, 2, ..., 10] on host memory, and its
    plan is JSON describing its IO tensors.
    """
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.float32, trt.int32 = _Enum("DataType.FLOAT"), _Enum("DataType.INT32")
    trt.DataType = types.SimpleNamespace(FLOAT=trt.float32, INT32=trt.int32)
    trt.nptype = lambda dt: {trt.float32: np.float32, trt.int32: np.int32}[dt]
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16")
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)

    class ILogger:
        Severity = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self, *a):
            pass

    trt.ILogger = ILogger

    class Logger(ILogger):
        WARNING, VERBOSE = 2, 4

    trt.Logger = Logger
    registry = FakeRegistry()
    trt.get_plugin_registry = lambda: registry
    trt.registry = registry
    trt.built = {}

    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class Network:
        num_inputs = 1

        def __init__(self, flags):
            self.flags = flags
            self.inputs = [Tensor("input", (-1, 1, 8, 8))]

        def get_input(self, i):
            return self.inputs[i]

    class Parser:
        def __init__(self, network, logger):
            self.num_errors = 0 if parse_ok else len(parse_errors)

        def parse_from_file(self, path):
            trt.built["parsed"] = path
            return parse_ok

        def get_error(self, i):
            return parse_errors[i]

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = (lo, opt, hi)

    class Config(Flags):
        def set_memory_pool_limit(self, pool, size):
            trt.built["workspace"] = size

        def add_optimization_profile(self, p):
            trt.built["profile"] = p.shapes

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            return Network(flags)

        def create_builder_config(self):
            trt.built["config"] = Config()
            return trt.built["config"]

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            prof = trt.built.get("profile", {}).get("input")
            plan = {"min": list(prof[0]), "opt": list(prof[1]), "max": list(prof[2])}
            return json.dumps(plan).encode()

    trt.Builder, trt.OnnxParser = Builder, Parser

    class Engine:
        def __init__(self, plan):
            self.p = json.loads(plan)
            self.num_io_tensors = 2
            self.device_memory_size_v2 = 3 << 20

        def get_tensor_name(self, i):
            return ["input", "logits"][i]

        def get_tensor_mode(self, n):
            return "INPUT" if n == "input" else "OUTPUT"

        def get_tensor_dtype(self, n):
            return trt.float32

        def get_tensor_shape(self, n):
            return (-1, 1, 8, 8) if n == "input" else (-1, 10)

        def get_tensor_profile_shape(self, n, profile):
            return self.p["min"], self.p["opt"], self.p["max"]

        def create_execution_context(self):
            trt.cuda.used += 1 << 20
            return Context(self)

    class Context:
        def __init__(self, engine):
            self.shape, self.addr = None, {}

        def set_input_shape(self, n, shape):
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, n):
            return self.shape if n == "input" else (self.shape[0], 10)

        def set_tensor_address(self, n, ptr):
            self.addr[n] = ptr

        def execute_async_v3(self, stream):
            b = self.shape[0]
            x = np.ctypeslib.as_array((ctypes.c_float * int(np.prod(self.shape))).from_address(self.addr["input"]))
            y = np.ctypeslib.as_array((ctypes.c_float * (b * 10)).from_address(self.addr["logits"]))
            y[:] = (x.reshape(b, -1).sum(axis=1)[:, None] * np.arange(1, 11, dtype=np.float32)).ravel()
            trt.cuda.used += 4096  # lazily allocated scratch on the first run
            return True

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            trt.cuda.used += 2 << 20
            return Engine(plan)

    trt.Runtime = Runtime
    return trt


class FakeCuda:
    """Cuda stand-in: 'device' buffers are host numpy buffers, copies are memmove."""

    def __init__(self, device=None):
        self.used = 0
        self.bufs: dict[int, np.ndarray] = {}
        self.freed: list[int] = []
        self.device = device or dict(DEVICE)

    def device_info(self):
        return dict(self.device)

    def mem_get_info(self):
        return (8 << 30) - self.used, 8 << 30

    def malloc(self, n):
        b = np.zeros(max(int(n), 1), dtype=np.uint8)
        self.bufs[b.ctypes.data] = b
        self.used += b.nbytes
        return b.ctypes.data

    def free(self, ptr):
        self.freed.append(ptr)
        self.used -= self.bufs.pop(ptr).nbytes

    def memcpy_htod_async(self, dst, src, n, stream):
        ctypes.memmove(dst, src, n)

    def memcpy_dtoh_async(self, dst, src, n, stream):
        ctypes.memmove(dst, src, n)

    def stream_create(self):
        return 42

    def stream_synchronize(self, s):
        pass

    def stream_destroy(self, s):
        pass


def tiny_spatial_onnx(path: Path, max_batch: int = 4) -> Path:
    """A spatial ONNX model the stand-in engine can stand for: input [batch, 1, 8, 8] -> logits [batch, 10]."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((64, 10), np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], name="flatten"),
         helper.make_node("MatMul", ["flat", "w"], ["logits"], name="fc")], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], initializer=[w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    helper.set_model_props(m, {"specdeploy.max_batch": str(max_batch)})
    onnx.save(m, str(path))
    return path
