"""Backend "cuda": the CUDA kernel library (libspecdeploy_kernels.so) with torch CUDA tensors.

    sess = runtime.load("vgg16.onnx", "cuda")
    logits = sess.run(x); sess.last_overflowed; sess.memory()

The only module of ``specdeploy.native`` that imports torch: its CUDA tensors are the device buffers
(``data_ptr()``), its current stream orders the native kernels with cuDNN/cuBLAS (the standard ops,
:class:`TorchKernels`), and its stream-ordered caching allocator may reuse a block as soon as its
last reader has been enqueued. The executor is ``specdeploy.native.executor``.

Memory, figure 4 (DESIGN §5): ``device_peak_bytes`` = ``torch.cuda.max_memory_allocated`` minus the
allocated bytes before the run (peak stats reset per run; weights and the session's shared workspace
are outside that delta), plus the shared workspace the run used; max over runs since load or
``reset_memory()``. ``activation_peak_bytes`` is the allocator delta alone. The first run at a new
batch size is preceded by one unmeasured run, so one-time allocations that torch keeps for the
process (cuBLAS/cuDNN handles and workspaces) are not charged to the graph.

Options (``runtime.load(path, "cuda", **opts)``):
    library          the .so (or a build dir); default $SPECDEPLOY_KERNELS_LIB, else build/plugins
                     (``specdeploy build-plugins --kind cuda``)
    fp16             run the standard ops in float16 (the twin at its best precision, DESIGN §5);
                     default: $SPECDEPLOY_CUDA_FP16 in {1,true,yes,on}, else False (`specdeploy bench`
                     passes it: fp16 when the plan counts fp16). SpecToSpatial then emits float16 directly;
                     specdeploy ops keep float32 weights; logits are returned as float32.
    workspace        "per_op" (default) | "shared" (``specdeploy.native.executor``)
    measure_memory   read the allocator stats around each run (default True)
    device           the torch device (default "cuda", the current device)
"""

from __future__ import annotations

import os
from typing import Any, Callable, ContextManager, Sequence

import numpy as np

from specdeploy.native import abi
from specdeploy.native.errors import NativeLibraryError
from specdeploy.native.executor import NativeSession, flag_option
from specdeploy.runtime.errors import BackendUnavailableError
from specdeploy.runtime.graph import ModelInfo

try:
    import torch
    import torch.nn.functional as TF
except ImportError as _e:  # pragma: no cover - exercised only without torch
    raise ImportError("backend 'cuda' uses torch CUDA tensors as device buffers: pip install a CUDA build of torch") from _e

__all__ = ["FP16_ENV", "TorchDevice", "cuda_session", "runtime_session"]

FP16_ENV = "SPECDEPLOY_CUDA_FP16"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int32": torch.int32, "uint8": torch.uint8}


def _sym(pads: tuple[int, int, int, int]) -> tuple[int, int] | None:
    """ONNX [t, l, b, r] -> symmetric (ph, pw) for torch, or None when F.pad is needed."""
    t, l, b, r = pads
    return (t, l) if (t == b and l == r) else None


class TorchKernels:
    """The standard ops' primitives in torch (cuDNN / cuBLAS on the GPU; ``standard_ops.Kernels``)."""

    def conv2d(self, x: "torch.Tensor", w: "torch.Tensor", b: "torch.Tensor | None", stride: tuple[int, int],
               pads: tuple[int, int, int, int], dilation: tuple[int, int], groups: int) -> "torch.Tensor":
        sym = _sym(pads)
        if sym is None:
            t, l, bo, r = pads
            x = TF.pad(x, (l, r, t, bo))
        return TF.conv2d(x, w, b, stride, sym or 0, dilation, groups)

    def max_pool2d(self, x: "torch.Tensor", kernel: tuple[int, int], stride: tuple[int, int],
                   pads: tuple[int, int, int, int], dilation: tuple[int, int], ceil_mode: bool) -> "torch.Tensor":
        sym = _sym(pads)
        if sym is None:
            t, l, bo, r = pads
            x = TF.pad(x, (l, r, t, bo), value=float("-inf"))
        return TF.max_pool2d(x, kernel, stride, sym or 0, dilation, ceil_mode)

    def mean_spatial(self, x: "torch.Tensor") -> "torch.Tensor":
        return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)

    def gemm(self, a: "torch.Tensor", b: "torch.Tensor", c: "torch.Tensor | None", alpha: float,
             beta: float) -> "torch.Tensor":
        if c is not None and alpha == 1.0 and beta == 1.0:
            return torch.addmm(c, a, b)
        y = torch.mm(a, b)
        if alpha != 1.0:
            y.mul_(alpha)
        if c is not None and beta != 0.0:
            y.add_(c, alpha=beta)
        return y

    def matmul(self, a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":
        return torch.matmul(a, b)

    def transpose(self, a: "torch.Tensor") -> "torch.Tensor":
        return a.t()

    def relu(self, x: "torch.Tensor", inplace: bool) -> "torch.Tensor":
        return x.relu_() if inplace else torch.relu(x)

    def leaky_relu(self, x: "torch.Tensor", slope: float, inplace: bool) -> "torch.Tensor":
        return TF.leaky_relu_(x, slope) if inplace else TF.leaky_relu(x, slope)

    def clamp(self, x: "torch.Tensor", lo: float | None, hi: float | None, inplace: bool) -> "torch.Tensor":
        return x.clamp_(lo, hi) if inplace else torch.clamp(x, lo, hi)

    def clone(self, x: "torch.Tensor") -> "torch.Tensor":
        return x.clone()

    def add(self, a: "torch.Tensor", b: "torch.Tensor", inplace: bool) -> "torch.Tensor":
        return a.add_(b) if inplace else a + b

    def cat(self, xs: Sequence["torch.Tensor"], axis: int) -> "torch.Tensor":
        return torch.cat(list(xs), dim=axis)

    def reshape(self, x: "torch.Tensor", shape: Sequence[int]) -> "torch.Tensor":
        return x.reshape(list(shape))


class TorchDevice(TorchKernels):
    """torch tensors on ``device`` (CUDA for backend "cuda"; a CPU device works for tests of this class)."""

    def __init__(self, device: "torch.device", float_dtype: str = "float32", measure_memory: bool = True) -> None:
        self.device = device
        self.is_cuda = device.type == "cuda"
        self.float_dtype = float_dtype
        self.measure = self.is_cuda and measure_memory
        self._warm: set[int] = set()
        self._base = 0

    def context(self) -> ContextManager[Any]:
        import contextlib

        return torch.cuda.device(self.device) if self.is_cuda else contextlib.nullcontext()

    def empty(self, shape: Sequence[int], dtype: str) -> "torch.Tensor":
        return torch.empty(tuple(shape), dtype=_DTYPES[dtype], device=self.device)

    def from_host(self, a: np.ndarray) -> "torch.Tensor":
        t = torch.from_numpy(a)
        return t.to(self.device) if self.is_cuda else t

    def to_host(self, a: "torch.Tensor") -> np.ndarray:
        return a.cpu().numpy()

    def ptr(self, a: "torch.Tensor") -> int:
        return int(a.data_ptr())

    def storage(self, a: "torch.Tensor") -> int:
        return int(a.untyped_storage().data_ptr())

    def nbytes(self, a: "torch.Tensor") -> int:
        return a.numel() * a.element_size()

    def dtype(self, a: "torch.Tensor") -> str:
        return str(a.dtype).removeprefix("torch.")

    def contiguous(self, a: "torch.Tensor") -> "torch.Tensor":
        return a.contiguous()

    def cast(self, a: "torch.Tensor", dtype: str) -> "torch.Tensor":
        return a.to(_DTYPES[dtype])

    def header_copy(self, y: "torch.Tensor") -> "torch.Tensor":
        return y[:, :4].clone()

    def stream(self) -> int:
        return torch.cuda.current_stream(self.device).cuda_stream if self.is_cuda else 0

    def warm_up(self, batch: int, run: Callable[[], Any]) -> None:
        if self.measure and batch not in self._warm:
            run()
            self._warm.add(batch)

    def measure_begin(self) -> None:
        if self.measure:
            self._base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def measure_end(self) -> int | None:
        return torch.cuda.max_memory_allocated(self.device) - self._base if self.measure else None

    def memory_fields(self, peak: int | None, last: int | None, activation_peak: int | None) -> dict[str, Any]:
        if not self.is_cuda:
            return {}
        return {
            "device_name": torch.cuda.get_device_name(self.device),
            "device_peak_bytes": peak,
            "last_run_device_peak_bytes": last,
            "activation_peak_bytes": activation_peak,
            "device_scope": (
                "DESIGN §5 figure 4: torch.cuda.max_memory_allocated minus memory_allocated before the run "
                "(peak stats reset per run: input copy, activations, outputs, per-op workspaces and "
                "cuDNN/cuBLAS scratch) plus the shared workspace in 'shared' mode; weights excluded; max over "
                "runs since load or reset_memory(). activation_peak_bytes: the allocator delta alone."
                if self.measure else "not measured (measure_memory=False)"
            ),
        }


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def cuda_session(info: ModelInfo, *, library: Any = None, fp16: bool | None = None, workspace: str = "per_op",
                 measure_memory: bool = True, device: str | int | None = None) -> NativeSession:
    """Backend "cuda": the CUDA kernel library with torch CUDA tensors.

    Raises BackendUnavailableError when torch has no CUDA, no GPU is visible, the library is not built
    (with the build command) or was built for other GPU architectures (sd_check_device's text).
    """
    if torch.version.cuda is None:
        raise BackendUnavailableError(
            f"backend 'cuda' is not available: this torch ({torch.__version__}) is a CPU-only build; install a "
            f"CUDA build of torch (its tensors are the device buffers). On a CPU machine use backend 'native-host'."
        )
    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            "backend 'cuda' is not available: torch sees no CUDA device (torch.cuda.is_available() is False: no "
            "NVIDIA GPU, driver not loaded, or CUDA_VISIBLE_DEVICES empty)"
        )
    dev = torch.device(device if device is not None else "cuda")
    if dev.type != "cuda":
        raise ValueError(f"backend 'cuda': device must be a CUDA device, got {dev}")
    if dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    with torch.cuda.device(dev):
        torch.cuda.init()
        try:
            lib = abi.load("cuda", library)
            lib.check_device()  # again on this device: load() checked the device current at that time
        except NativeLibraryError as e:
            name = torch.cuda.get_device_name(dev)
            major, minor = torch.cuda.get_device_capability(dev)
            hint = ""
            if e.status is not None:  # the library loaded but cannot run here (sd_check_device's text)
                hint = (f"; rebuild the kernels for this GPU: `specdeploy build-plugins --kind cuda` (default "
                        f"architectures) or native.build('cuda', cuda_architectures='{major}{minor}')")
            raise BackendUnavailableError(
                f"backend 'cuda' is not available on {dev} ({name}, compute capability {major}.{minor}): {e}{hint}"
            ) from e
    fp16 = _env_flag(FP16_ENV) if fp16 is None else flag_option("cuda", "fp16", fp16)
    return NativeSession(info, lib, TorchDevice(dev, "float16" if fp16 else "float32", measure_memory),
                         backend="cuda", workspace=workspace)


def runtime_session(info: ModelInfo, **opts: Any) -> NativeSession:
    """Factory of backend "cuda" (``runtime.load(path, "cuda", **opts)``)."""
    return cuda_session(info, **opts)
