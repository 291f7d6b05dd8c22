"""The cmake driver of the native libraries (plugins/): configure, build, and where the result lies.

Kept apart from the ABI bindings (``specdeploy.native.abi``): building needs cmake and a compiler,
loading needs neither. CLI: ``specdeploy build-plugins``. Never imports torch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from specdeploy.native.errors import NativeBuildError

__all__ = ["KINDS", "PLUGINS_DIR", "BUILD_LOG", "LIB_NAMES", "build", "library_path", "default_build_dir",
           "build_command_hint", "check_kind"]

KINDS = ("host", "cuda")
_REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGINS_DIR = _REPO_ROOT / "plugins"
LIB_NAMES = {"host": "libspecdeploy_host.so", "cuda": "libspecdeploy_kernels.so"}
_TARGETS = {"host": "specdeploy_host", "cuda": "specdeploy_kernels"}
_ENV_BUILD_DIR = "SPECDEPLOY_PLUGINS_BUILD_DIR"
BUILD_LOG = "specdeploy_build.log"




def default_build_dir() -> Path:
    """$SPECDEPLOY_PLUGINS_BUILD_DIR, else <repo>/build/plugins."""
    env = os.environ.get(_ENV_BUILD_DIR)
    return Path(env) if env else _REPO_ROOT / "build" / "plugins"


def library_path(kind: str, build_dir: str | os.PathLike | None = None) -> Path:
    """Where build() puts the library of `kind` (``<build_dir>/lib/<name>``)."""
    check_kind(kind)
    return Path(build_dir or default_build_dir()) / "lib" / LIB_NAMES[kind]


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def build_command_hint(kind: str, build_dir: Path) -> str:
    return (
        f"build it with `specdeploy build-plugins --kind {kind} --build-dir {build_dir}` or "
        f"`cmake -S {PLUGINS_DIR} -B {build_dir} -DSPECDEPLOY_BUILD_CUDA={'ON' if kind == 'cuda' else 'OFF'} && "
        f"cmake --build {build_dir} --target {_TARGETS[kind]} -j`"
    )


#: the C++ test executables of plugins/tests (CMake targets), built with ``sanitize=True``
CPP_TESTS = ("specdeploy_packed_test", "specdeploy_hybrid_test")


def build(
    kind: str = "host",
    build_dir: str | os.PathLike | None = None,
    sanitize: bool = False,
    *,
    jobs: int | None = None,
    cuda_architectures: str | None = None,
    build_type: str | None = None,
    targets: Sequence[str] | None = None,
) -> Path:
    """Configure and build the native library of `kind` with cmake; returns the library's path.

    kind "host": libspecdeploy_host.so (g++ only; SPECDEPLOY_BUILD_CUDA=OFF). kind "cuda":
    libspecdeploy_kernels.so (needs nvcc; the CUDA architectures default to 87;90 plus 110/101 where
    the toolkit has them; ``cuda_architectures`` overrides, e.g. "90"). ``sanitize``: ASan+UBSan
    for the host library and the C++ tests (such a library cannot be loaded into a plain Python
    process; run ctest in the build dir). The full cmake output is kept in <build_dir>/specdeploy_build.log.
    Raises NativeBuildError with the failing command and the tail of its output.
    """
    check_kind(kind)
    bdir = Path(build_dir or default_build_dir()).resolve()
    bdir.mkdir(parents=True, exist_ok=True)
    cmake = shutil.which("cmake")
    if cmake is None:
        raise NativeBuildError("cmake not found on PATH; install cmake >= 3.24 to build the native library")
    cfg = [
        cmake,
        "-S",
        str(PLUGINS_DIR),
        "-B",
        str(bdir),
        f"-DCMAKE_BUILD_TYPE={build_type or ('RelWithDebInfo' if sanitize else 'Release')}",
        "-DSPECDEPLOY_BUILD_HOST=ON",
        f"-DSPECDEPLOY_BUILD_CUDA={'ON' if kind == 'cuda' else 'OFF'}",
        f"-DSPECDEPLOY_SANITIZE={'ON' if sanitize else 'OFF'}",
    ]
    if kind == "cuda":
        nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
        if nvcc is None:
            raise NativeBuildError(
                "kind 'cuda' needs the CUDA compiler nvcc, which is not on PATH (nor /usr/local/cuda/bin); "
                "install the CUDA toolkit or build kind 'host'"
            )
        cfg.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
        if cuda_architectures:
            cfg.append(f"-DCMAKE_CUDA_ARCHITECTURES={cuda_architectures}")
    jobs = jobs or os.cpu_count() or 2
    tgts = list(targets) if targets else [_TARGETS[kind]]
    if sanitize:  # the C++ tests of plugins/tests, run under the sanitizers by the test suite
        tgts += [t for t in CPP_TESTS if t not in tgts]
    bld = [cmake, "--build", str(bdir), "-j", str(jobs), "-v", "--target", *tgts]
    log_path = bdir / BUILD_LOG
    with open(log_path, "w") as log:
        for cmd in (cfg, bld):
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            log.write(r.stdout)
            if r.returncode != 0:
                tail = "\n".join(r.stdout.splitlines()[-60:])
                raise NativeBuildError(
                    f"building the {kind} library failed (exit {r.returncode}):\n$ {' '.join(cmd)}\n{tail}\n"
                    f"(full log: {log_path})"
                )
    lib = library_path(kind, bdir)
    if not lib.exists():
        raise NativeBuildError(f"the build succeeded but {lib} does not exist (full log: {log_path})")
    return lib
