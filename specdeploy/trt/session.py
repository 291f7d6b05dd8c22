"""The ``tensorrt`` backend of :func:`specdeploy.runtime.load`.

    sess = runtime.load("lenet5.onnx", "tensorrt", plugins="build/plugins/lib/libspecdeploy_trt.so")
    logits = sess.run(x); sess.last_overflowed; sess.memory()

Options (all optional):
    plugins         libspecdeploy_trt.so (default: $SPECDEPLOY_TRT_PLUGINS; not needed for a spatial twin)
    engine          a prebuilt engine (``specdeploy build``); its sidecar is checked. Without it, an engine
                    is built next to the ONNX file (or in ``build_dir``) as
                    ``NAME.trt<version>.sm<cc>[.fp16].engine`` and reused while its sidecar still matches
                    (same TensorRT, GPU, plugin library and ONNX file); that engine also outputs the
                    packed tensors whose sticky overflow flags give ``last_overflowed``.
    fp16, workspace_mib, max_batch, recipe     build options (see specdeploy.trt.builder); fp16
                    defaults to $SPECDEPLOY_TRT_FP16=1 (how `specdeploy bench --backend tensorrt` gets it)
    build_dir, rebuild, allow_other_device, verbose
A prebuilt engine without those packed outputs reports ``last_overflowed`` all False and says so in
``overflow_flags_available``. Never imports torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from specdeploy.runtime.graph import ModelInfo
from specdeploy.runtime.session import Session
from specdeploy.trt import compat
from specdeploy.trt.compat import PLUGINS_ENV

FP16_ENV = "SPECDEPLOY_TRT_FP16"


def default_engine_path(info: ModelInfo, trt_version: str, device: dict[str, Any], fp16: bool,
                        build_dir: Path | None = None) -> Path:
    if info.path is None:
        raise ValueError("an in-memory ONNX model needs engine=PATH (a prebuilt engine) for the tensorrt backend")
    ver = ".".join(str(v) for v in compat.version_tuple(trt_version)[:3])
    cc = str(device.get("compute_capability", "")).replace(".", "")
    name = f"{info.path.stem}.trt{ver}.sm{cc}{'.fp16' if fp16 else ''}.engine"
    return (Path(build_dir) if build_dir is not None else info.path.parent) / name


class TrtSession(Session):
    """A TensorRT engine (with the specdeploy plugins) behind the common Session interface."""

    backend = "tensorrt"

    def __init__(self, info: ModelInfo, *, plugins: str | Path | None = None, engine: str | Path | None = None,
                 fp16: bool | None = None, workspace_mib: int | None = None, max_batch: int | None = None,
                 recipe: Any = None, build_dir: str | Path | None = None, rebuild: bool = False,
                 allow_other_device: bool = False, verbose: bool = False) -> None:
        super().__init__(info)
        from specdeploy.trt import builder, sidecar
        from specdeploy.trt.cudart import Cuda
        from specdeploy.trt.runner import TrtRunner

        trt = compat.import_tensorrt()
        plugins = plugins or os.environ.get(PLUGINS_ENV)
        if fp16 is None and os.environ.get(FP16_ENV, "").lower() in ("1", "true", "yes"):
            fp16 = True
        if plugins is None and info.is_spectral:
            raise ValueError(f"{info.label}: the tensorrt backend needs the plugin library: pass "
                             f"plugins=PATH/libspecdeploy_trt.so or set ${PLUGINS_ENV}")
        plugins_path = Path(plugins) if plugins is not None else None
        cuda = Cuda()
        device = cuda.device_info()
        if engine is None:
            opts = builder.options_from_recipe(builder.load_recipe(recipe), fp16=fp16, workspace_mib=workspace_mib,
                                               max_batch=max_batch)
            engine_path = default_engine_path(info, compat.trt_version(trt), device, opts.fp16,
                                              Path(build_dir) if build_dir is not None else None)
            if rebuild or not self._reusable(engine_path, trt, device, plugins_path, allow_other_device, sidecar):
                builder.build_engine(info.path, engine_path, plugins_path, fp16=fp16, workspace_mib=workspace_mib,
                                     max_batch=max_batch if max_batch is not None else info.max_batch,
                                     recipe=recipe, verbose=verbose, device_info=device,
                                     mark_outputs=list(info.overflow_taps))
        else:
            engine_path = Path(engine)
        self.engine_path = engine_path
        with self._procmem.measure_load():
            self.runner = TrtRunner(engine_path, plugins_path, allow_other_device=allow_other_device,
                                    verbose=verbose, cuda=cuda)
        missing = [t for t in info.overflow_taps if t not in self.runner.outputs]
        if info.output_name not in self.runner.outputs:
            raise ValueError(f"engine {engine_path} has outputs {self.runner.outputs}, not the model's "
                             f"'{info.output_name}': it was built from another model")
        self._taps = [t for t in info.overflow_taps if t in self.runner.outputs]
        self.overflow_flags_available = not missing

    @staticmethod
    def _reusable(engine_path: Path, trt: Any, device: dict[str, Any], plugins: Path | None,
                  allow_other_device: bool, sidecar: Any) -> bool:
        if not engine_path.is_file():
            return False
        try:
            data = sidecar.check_sidecar(engine_path, tensorrt_version=compat.trt_version(trt), device=device,
                                         plugin_path=plugins, allow_other_device=allow_other_device)
        except sidecar.SidecarError:
            return False
        onnx = data.get("onnx") or {}
        src = onnx.get("path")
        return bool(src) and Path(src).is_file() and sidecar.file_sha256(src) == onnx.get("sha256")

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        outs = self.runner.run({self.info.input_name: x})
        return np.asarray(outs[self.info.output_name], dtype=np.float32), [outs[t] for t in self._taps]

    def memory(self) -> dict[str, Any]:
        out = dict(super().memory())
        out["tensorrt"] = self.runner.memory_figures()
        out["overflow_flags_available"] = self.overflow_flags_available
        return out

    def close(self) -> None:
        self.runner.close()


def runtime_session(info: ModelInfo, **opts: Any) -> TrtSession:
    """Factory called by ``specdeploy.runtime.load(path, "tensorrt", **opts)``."""
    return TrtSession(info, **opts)
