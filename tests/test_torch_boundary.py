"""The torch boundary, enforced: what runs on a Jetson imports without torch.

Why a subprocess with an import hook rather than a convention: torch is installed in CI, so a stray
``import torch`` in a deployment module would pass every other test and only fail on the device.
Here a meta-path finder makes ``import torch`` raise ``ImportError`` in a fresh interpreter, and every
module of the torch-free part of the package is imported in it (a module may still *try* torch and
fall back, as onnxruntime-extensions does). The module list is computed from the source tree, so a
new module is covered without editing this file; the only torch modules allowed inside those
packages are listed in ``TORCH_SIDE`` with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "specdeploy"

#: packages and modules that must never import torch (CLAUDE/COMMON rules: what runs on a Jetson)
TORCH_FREE_PACKAGES = ("ops", "reference", "data", "runtime", "native", "trt")
TORCH_FREE_MODULES = ("packed", "liveness", "metadata", "memory", "bench", "sweep", "recipes", "catalog")
#: modules inside those packages that need torch, and why
TORCH_SIDE = {
    "specdeploy.native.cuda": "backend 'cuda' uses torch CUDA tensors as device buffers and cuDNN/cuBLAS",
}

_BLOCK = """
import importlib, importlib.abc, json, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this process (tests/test_torch_boundary.py)")
        return None

sys.meta_path.insert(0, NoTorch())
"""


def torch_free_modules() -> list[str]:
    mods = [f"specdeploy.{m}" for m in TORCH_FREE_MODULES]
    for pkg in TORCH_FREE_PACKAGES:
        for f in sorted((PKG / pkg).rglob("*.py")):
            rel = f.relative_to(REPO).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            if name not in TORCH_SIDE:
                mods.append(name)
    return mods


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", _BLOCK + code], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)


def test_every_torch_free_module_imports_without_torch() -> None:
    mods = torch_free_modules()
    assert "specdeploy.native.host" in mods and "specdeploy.runtime.graph" in mods and "specdeploy.ops.spec_conv" in mods
    code = f"""
failed = {{}}
for m in {mods!r}:
    try:
        importlib.import_module(m)
    except Exception as e:
        failed[m] = f"{{type(e).__name__}}: {{e}}"
print(json.dumps({{"failed": failed, "torch_loaded": "torch" in sys.modules and sys.modules["torch"] is not None}}))
"""
    r = _run(code)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["failed"] == {}, "modules that need torch on the torch-free side:\n" + "\n".join(
        f"  {m}: {e}" for m, e in out["failed"].items())
    assert not out["torch_loaded"]


def test_the_hook_does_block_torch() -> None:
    """The check above could pass vacuously if the hook did not work: a torch module must fail here."""
    r = _run("import specdeploy.native.cuda")
    assert r.returncode != 0 and "torch is blocked" in r.stderr


def test_cpu_runtimes_run_a_model_without_torch(tmp_path: Path) -> None:
    """reference, ort and the planner run a spectral model end to end with torch blocked."""
    code = """
import numpy as np
from specdeploy import memory, runtime
from specdeploy.runtime import toy
m = toy.toy_spectral()
x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
a = runtime.load(m, "reference").run(x)
b = runtime.load(m, "ort").run(x)
assert np.allclose(a, b, rtol=1e-4, atol=1e-4), (a, b)
assert memory.plan(m, batch=2).peak_bytes > 0
print("ok", "torch" in sys.modules and sys.modules["torch"] is not None)
"""
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "ok False"


def test_native_host_runs_without_torch(host_lib_path: Path) -> None:
    """Backend "native-host" is torch-free (numpy buffers and kernels): a model with every specdeploy op
    runs with torch blocked and matches the reference backend."""
    code = f"""
import numpy as np
from specdeploy import runtime
from specdeploy.runtime import toy
m = toy.toy_spectral(concat=True)
x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
nh = runtime.load(m, "native-host", library={str(host_lib_path)!r})
got, want = nh.run(x), runtime.load(m, "reference").run(x)
assert np.allclose(got, want, rtol=1e-3, atol=1e-3), (got, want)
assert nh.memory()["tracked_peak_bytes"] > 0
print("ok", "torch" in sys.modules and sys.modules["torch"] is not None)
"""
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "ok False"
