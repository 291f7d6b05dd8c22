"""TensorRT engines of exported models, on a machine with TensorRT and an NVIDIA GPU (Jetson or x86).

Marked ``tensorrt``; skipped with the reason where TensorRT, cuda-python or a GPU is missing. On the
device (docs/jetson.md):

    SPECDEPLOY_TRT_PLUGINS=build/plugins/lib/libspecdeploy_trt.so python -m pytest -m tensorrt -ra

Inputs:
    SPECDEPLOY_TRT_PLUGINS     the plugin library; when unset it is built here with cmake (needs nvcc)
                               for this GPU's architecture only
    SPECDEPLOY_TRT_TEST_MODELS a directory of exported pairs NAME.spectral.onnx / NAME.spatial.onnx
                               (`specdeploy export` on a PC); when unset, an untrained lenet5 pair is
                               made here (needs torch: checkpoint by the zoo, ONNX by `specdeploy export`)
What is checked: engines build through `specdeploy build` (CLI) with a sidecar; logits match the
reference runtime (`specdeploy.runtime`, backend "reference") in fp32 and, looser, fp16; the overflow
flags agree; the memory figures are present and positive; the spectral engine's device_memory_size is
below its twin's at the same batch and precision; mismatched plugin libraries and out-of-profile
shapes fail with the documented errors; the Jetson/x86 probes work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.tensorrt

trt = pytest.importorskip("tensorrt", reason="TensorRT Python package not installed (install specdeploy[trt] "
                                             "on a machine with TensorRT)")

from specdeploy.trt import compat, probes, sidecar  # noqa: E402
from specdeploy.trt.runner import InputShapeError, TrtRunner  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BATCH = 4
MAX_BATCH = 8


def _cli(*args: str, timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "specdeploy.cli", *args], capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    if r.returncode != 0:
        pytest.fail(f"specdeploy {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="session")
def device():
    from specdeploy.trt.cudart import Cuda, CudaError

    try:
        return Cuda().device_info()
    except (CudaError, compat.TensorRTUnavailableError) as e:
        pytest.skip(f"no usable CUDA device here: {e}")


@pytest.fixture(scope="session")
def plugins(device, tmp_path_factory) -> Path:
    env = os.environ.get("SPECDEPLOY_TRT_PLUGINS")
    if env:
        p = Path(env)
        assert p.is_file(), f"SPECDEPLOY_TRT_PLUGINS={env} does not exist"
        return p
    cmake = shutil.which("cmake")
    if cmake is None or (shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").exists()):
        pytest.skip("SPECDEPLOY_TRT_PLUGINS unset and no cmake/nvcc to build libspecdeploy_trt.so here")
    bdir = tmp_path_factory.mktemp("trt_plugins")
    arch = device["compute_capability"].replace(".", "")
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    for cmd in ([cmake, "-S", str(ROOT / "plugins"), "-B", str(bdir), "-DCMAKE_BUILD_TYPE=Release",
                 "-DSPECDEPLOY_BUILD_CUDA=ON", "-DSPECDEPLOY_BUILD_TRT=ON", f"-DCMAKE_CUDA_COMPILER={nvcc}",
                 f"-DCMAKE_CUDA_ARCHITECTURES={arch}"],
                [cmake, "--build", str(bdir), "-j", str(os.cpu_count() or 2), "--target", "specdeploy_trt"]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    lib = bdir / "lib" / "libspecdeploy_trt.so"
    assert lib.is_file(), f"the build did not produce {lib}"
    return lib


@pytest.fixture(scope="session")
def model_pairs(tmp_path_factory) -> list[tuple[str, Path, Path]]:
    """(name, spectral.onnx, spatial.onnx) pairs."""
    env = os.environ.get("SPECDEPLOY_TRT_TEST_MODELS")
    if env:
        d = Path(env)
        pairs = []
        for spec in sorted(d.glob("*.spectral.onnx")):
            name = spec.name[: -len(".spectral.onnx")]
            twin = d / f"{name}.spatial.onnx"
            assert twin.is_file(), f"{spec} has no twin {twin}"
            pairs.append((name, spec, twin))
        assert pairs, f"SPECDEPLOY_TRT_TEST_MODELS={env} holds no NAME.spectral.onnx / NAME.spatial.onnx pairs"
        return pairs
    pytest.importorskip("torch", reason="SPECDEPLOY_TRT_TEST_MODELS unset and no torch to make a model here")
    from specdeploy import checkpoint, zoo

    d = tmp_path_factory.mktemp("models")
    out = {}
    for domain in ("spectral", "spatial"):
        m = zoo.create("lenet5", domain=domain, in_channels=3, input_size=32, num_classes=10, width=0.5, beta=0.5)
        ck = checkpoint.save(m.eval(), d / f"ckpt_{domain}")
        onnx_path = d / f"lenet5.{domain}.onnx"
        args = ["export", str(ck), "-o", str(onnx_path), "--dynamic-batch", "--max-batch", str(MAX_BATCH)]
        if domain == "spectral":
            args += ["--value-dtype", "fp16"]
        _cli(*args)
        out[domain] = onnx_path
    return [("lenet5", out["spectral"], out["spatial"])]


def _build(onnx_path: Path, plugins: Path, out: Path, *extra: str) -> Path:
    _cli("build", str(onnx_path), "-o", str(out), "--plugins", str(plugins), "--max-batch", str(MAX_BATCH),
         "--workspace", "256", *extra)
    assert out.is_file() and sidecar.sidecar_path(out).is_file()
    return out


def _inputs(onnx_path: Path, batch: int = BATCH) -> tuple[str, np.ndarray]:
    from specdeploy import runtime

    info = runtime.read_model(onnx_path)
    _, C, H, W = info.input_shape
    x = np.random.default_rng(1234).standard_normal((batch, C, H, W)).astype(np.float32)
    return info.input_name, x


def _reference(onnx_path: Path, x: np.ndarray):
    from specdeploy import runtime

    sess = runtime.load(onnx_path, "reference")
    return sess.run(x), sess.last_overflowed


def _fp16_supported() -> bool:
    return getattr(getattr(trt, "BuilderFlag", None), "FP16", None) is not None


@pytest.fixture(scope="session")
def engines(model_pairs, plugins, tmp_path_factory):
    """name -> {"spectral"/"spatial": {"fp32": engine, "fp16": engine or None}}."""
    d = tmp_path_factory.mktemp("engines")
    out = {}
    for name, spec, twin in model_pairs:
        out[name] = {}
        for domain, onnx_path in (("spectral", spec), ("spatial", twin)):
            e = {"fp32": _build(onnx_path, plugins, d / f"{name}.{domain}.fp32.engine")}
            e["fp16"] = (_build(onnx_path, plugins, d / f"{name}.{domain}.fp16.engine", "--fp16")
                         if _fp16_supported() else None)
            out[name][domain] = e
    return out


def test_sidecar_describes_this_machine(engines, device, plugins):
    for name, domains in engines.items():
        for domain, e in domains.items():
            data = sidecar.check_sidecar(e["fp32"], tensorrt_version=compat.trt_version(trt), device=device,
                                         plugin_path=plugins)
            assert data["build"]["profile_batch"] == [1, MAX_BATCH, MAX_BATCH], (name, domain)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_parity_with_reference_runtime(engines, model_pairs, plugins, precision):
    if precision == "fp16" and not _fp16_supported():
        pytest.skip(f"TensorRT {compat.trt_version(trt)} has no BuilderFlag.FP16 (strongly typed only)")
    for name, spec, twin in model_pairs:
        for domain, onnx_path in (("spectral", spec), ("spatial", twin)):
            input_name, x = _inputs(onnx_path)
            ref, ref_overflow = _reference(onnx_path, x)
            with TrtRunner(engines[name][domain][precision], plugins) as r:
                out = r.run({input_name: x})
            logits = out[r.outputs[0]] if len(r.outputs) == 1 else out["logits"]
            scale = float(np.abs(ref).max()) or 1.0
            tol = 2e-3 if precision == "fp32" else 3e-2
            err = float(np.abs(logits - ref).max()) / scale
            assert err <= tol, f"{name} {domain} {precision}: max |trt - reference| / max|reference| = {err:.3g}"
            if precision == "fp32":
                assert (logits.argmax(1) == ref.argmax(1)).mean() >= 0.75, (name, domain)


def test_runtime_backend_overflow_flags_agree(model_pairs, plugins, tmp_path):
    from specdeploy import runtime

    for name, spec, _ in model_pairs:
        _, x = _inputs(spec)
        ref, ref_overflow = _reference(spec, x)
        sess = runtime.load(spec, "tensorrt", plugins=plugins, build_dir=tmp_path, max_batch=MAX_BATCH)
        try:
            logits = sess.run(x)
            assert sess.overflow_flags_available
            assert sess.last_overflowed.shape == ref_overflow.shape
            # a sample whose nnz sits at the capacity edge may flip with fp32 summation order: allow one
            assert int((sess.last_overflowed != ref_overflow).sum()) <= 1, name
            assert np.abs(logits - ref).max() <= 2e-3 * (np.abs(ref).max() or 1.0)
            mem = sess.memory()
            assert mem["backend"] == "tensorrt" and mem["tensorrt"]["device_memory_size"] > 0
        finally:
            sess.close()


def test_memory_figures_present_and_positive(engines, model_pairs, plugins):
    for name, spec, _ in model_pairs:
        input_name, x = _inputs(spec)
        with TrtRunner(engines[name]["spectral"]["fp32"], plugins) as r:
            before = r.memory_figures()
            assert before["cuda_mem_get_info_delta"]["first_inference"] is None
            r.run({input_name: x})
            m = r.memory_figures()
        assert m["device_memory_size"] > 0
        assert m["device_memory_size_attribute"] == ("device_memory_size_v2"
                                                     if compat.version_tuple(compat.trt_version(trt)) >= (10, 1)
                                                     else "device_memory_size")
        assert m["plan_bytes"] > 0 and m["io_buffer_bytes"] > 0
        d = m["cuda_mem_get_info_delta"]
        assert all(d[k] is not None for k in ("engine_load", "context_creation", "first_inference"))
        if not m["device"]["integrated"]:  # a discrete GPU's free memory only moves for this process here
            assert d["engine_load"] >= 0 and d["context_creation"] >= 0


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_spectral_device_memory_below_twin(engines, plugins, precision):
    """DESIGN §5 figure 2: the same batch profile and precision for both (fp16: the twin's best)."""
    if precision == "fp16" and not _fp16_supported():
        pytest.skip(f"TensorRT {compat.trt_version(trt)} has no BuilderFlag.FP16")
    for name, domains in engines.items():
        sizes = {}
        for domain in ("spectral", "spatial"):
            with TrtRunner(domains[domain][precision], plugins if domain == "spectral" else None) as r:
                sizes[domain] = r.memory_figures()["device_memory_size"]
        assert sizes["spectral"] < sizes["spatial"], f"{name} {precision}: {sizes}"


def test_other_plugin_library_is_refused(engines, plugins, tmp_path):
    name = next(iter(engines))
    other = tmp_path / "libspecdeploy_trt.so"
    other.write_bytes(plugins.read_bytes() + b"\0")
    with pytest.raises(sidecar.SidecarError, match="plugin fields and kernels must match"):
        TrtRunner(engines[name]["spectral"]["fp32"], other)


def test_batch_outside_profile_is_a_clear_error(engines, model_pairs, plugins):
    name, spec, _ = model_pairs[0]
    input_name, x = _inputs(spec, batch=MAX_BATCH + 1)
    with TrtRunner(engines[name]["spectral"]["fp32"], plugins) as r:
        with pytest.raises(InputShapeError, match=f"batch must be in 1..{MAX_BATCH}"):
            r.run({input_name: x})


def test_device_probes(engines, model_pairs, plugins):
    name, spec, _ = model_pairs[0]
    input_name, x = _inputs(spec)
    if probes.is_jetson():
        mem = probes.meminfo_probe()
        assert mem["available"] and mem["mem_used"] > 0
        with probes.TegrastatsSampler(interval_ms=50) as ts, TrtRunner(engines[name]["spectral"]["fp32"],
                                                                       plugins) as r:
            for _ in range(20):
                r.run({input_name: x})
        t = ts.result()
        assert t["available"] or "tegrastats" in t["reason"], t
        if t["available"]:
            assert t["ram_used_mb_peak"] > 0
        nv = probes.nvmap_probe()
        assert nv["available"] or nv["reason"]
    else:
        nvml = probes.nvml_probe()
        assert nvml["available"], nvml["reason"]
        assert nvml["used_bytes"] > 0 and nvml["total_bytes"] >= nvml["used_bytes"]
