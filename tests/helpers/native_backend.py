"""Exported test models, test images and comparison rules of the native backends.

Shared by tests/test_native_backend.py (backend "native-host", CI) and
tests/test_native_backend_gpu.py (backend "cuda", marked ``gpu``): same models, same images, same rules.
The ``test_images`` fixture built on ``images`` is in tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers.models import SMALL as _ALL_SMALL
from helpers.models import trained_like
from specdeploy import memory, runtime, zoo

#: the models the native-backend tests export (zoo name -> small configuration)
SMALL: dict[str, dict[str, Any]] = {k: _ALL_SMALL[k] for k in ("lenet5", "vgg16", "densenet")}
VALUE_DTYPES = ("fp32", "fp16")
DATA = "fashion-mnist"
CALIB = 16
RTOL = {"fp32": 1e-4, "fp16": 1e-3}


def images(config: "zoo.ModelConfig", n: int, *, split: str = "train", seed: int = 0) -> tuple[np.ndarray, bool]:
    """``n`` normalized images fitted to the model (real Fashion-MNIST if installed, else Gaussian)."""
    from specdeploy import data as datasets
    from specdeploy.export import calibration_images

    try:
        if split == "train":
            return calibration_images(config, DATA, n, seed=seed), True
        ds = datasets.prepare(DATA, "test", config.input_size, config.in_channels, samples=n, seed=seed)
        return datasets.normalize(ds.images, DATA), True
    except datasets.DataNotFoundError:
        rng = np.random.default_rng(seed + (0 if split == "train" else 1000))
        x = rng.standard_normal((n, config.in_channels, config.input_size, config.input_size)).astype(np.float32)
        return x, False


def have_data() -> bool:
    from specdeploy import data as datasets

    try:
        datasets.load(DATA, "test")
        return True
    except datasets.DataNotFoundError:
        return False


def export_suite(out: Path, *, max_batch: int = 8) -> dict[tuple[str, str], Path]:
    """Export every test model once: keys (name, "fp32"|"fp16") spectral, (name, "twin") spatial.

    Dynamic batch up to ``max_batch``; capacities calibrated on real training images (margin 1.1);
    metadata names the data set so the bench can evaluate them.
    """
    from specdeploy.export import export_model

    meta = {"specdeploy.data": {"name": DATA}}
    files: dict[tuple[str, str], Path] = {}
    for name in SMALL:
        spec = trained_like(name, "spectral")
        calib, _ = images(spec.config, CALIB)
        for vd in VALUE_DTYPES:
            files[(name, vd)] = export_model(spec, out / f"{name}_{vd}.onnx", batch=None, max_batch=max_batch,
                                             value_dtype=vd, calib_images=calib, metadata=meta).path
        twin = trained_like(name, "spatial")
        files[(name, "twin")] = export_model(twin, out / f"{name}_twin.onnx", batch=None, max_batch=max_batch,
                                             metadata=meta).path
    return files


def export_overflowing(out: Path, name: str, value_dtype: str, *, scale: float, calib_n: int = 4) -> Path:
    """A spectral export whose capacities are too small for real inputs: calibrated on ``calib_n``
    images scaled by ``scale`` with margin 1.0 (scale < 1 -> fewer coefficients pass beta)."""
    from specdeploy.export import export_model

    spec = trained_like(name, "spectral")
    calib, _ = images(spec.config, calib_n, split="test")
    return export_model(spec, out / f"{name}_{value_dtype}_small_cap.onnx", batch=None, max_batch=8,
                        value_dtype=value_dtype, calib_images=calib * np.float32(scale), margin=1.0).path


def assert_logits_close(got: np.ndarray, ref: np.ndarray, rtol: float, what: str) -> None:
    assert got.shape == ref.shape and got.dtype == np.float32, f"{what}: {got.dtype} {got.shape} vs {ref.shape}"
    scale = float(np.abs(ref).max()) or 1.0
    err = float(np.abs(got - ref).max()) / scale
    assert err <= rtol, f"{what}: logits differ by {err:.3g} of the largest logit (> {rtol})"


def reference_tensors(path: Path, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Intermediate tensors from the reference backend's evaluator (full packed rows)."""
    sess = runtime.load(path, "reference")
    res = sess._evaluator.run(names, {sess.info.input_name: x})
    return dict(zip(names, res))


def assert_same_headers(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    """nnz, overflowed, beta_used of every sample, word for word."""
    g, r = got[:, :3].view(np.uint32), ref[:, :3].view(np.uint32)
    if not np.array_equal(g, r):
        n = int(np.flatnonzero((g != r).any(axis=1))[0])
        pytest.fail(f"{what}: header of sample {n} differs: got nnz={g[n, 0]} overflowed={g[n, 1]} "
                    f"beta_used={got[n, 2:3].view(np.float32)[0]!r}, reference nnz={r[n, 0]} overflowed={r[n, 1]} "
                    f"beta_used={ref[n, 2:3].view(np.float32)[0]!r}")


def assert_steps_follow_plan(sess: Any, plan: "memory.MemoryPlan", what: str) -> None:
    """The last run's account equals the planner's live bytes at every step (the plan made with the
    session's standard-op precision: ``activation_dtype="fp16"`` for fp16 ops); the executor also
    keeps each overflow tap's 16-byte header per sample; each op's workspace is the library's real
    size and equals the planner's declared one."""
    steps = sess.last_steps
    assert [n for n, _, _ in steps] == [r.node for r in plan.steps], what
    headers = 0
    for (node, live, ws), r in zip(steps, plan.steps):
        headers += 16 * plan.batch * sum(o in sess.info.overflow_taps for o in r.outputs)
        assert live - headers == r.live_bytes, f"{what} step {node}: {live - headers} bytes live, planned {r.live_bytes}"
        assert ws == r.workspace_bytes, f"{what} step {node}: workspace {ws} != declared {r.workspace_bytes}"


def _x(models: dict, test_images: dict, name: str) -> np.ndarray:
    return test_images[runtime.read_model(models[(name, "twin")]).input_shape[1]]
