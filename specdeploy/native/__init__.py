"""The native op library (plugins/, C ABI ``specdeploy_c.h``) from Python: build, load, call, run graphs.

Layout (one concern per module; see docs/kernels.md):

* ``errors``        sd_status codes and the exception classes
* ``build``         the cmake driver (``build("host"|"cuda")``, ``library_path``); CLI ``build-plugins``
* ``abi``           ctypes mirrors of the params structs (checked against the library's
                    ``sd_abi_query`` at load), :class:`Library` (pointer- and array-level calls), ``load``
* ``executor``      :class:`NativeSession`: one graph executor over the C ABI for both backends, generic
                    over its buffers (numpy on the host, torch on the GPU); liveness from ``specdeploy.liveness``
* ``standard_ops``  the table of standard ONNX ops the executor runs, over a small array-kernel interface
* ``host``          backend "native-host": host library + numpy buffers and kernels (no torch)
* ``cuda``          backend "cuda": CUDA library + torch CUDA tensors (cuDNN/cuBLAS for standard ops)

Each op's params-struct fill and call (its "native adapter") lives with the op in ``specdeploy.ops``;
``conv_params`` & co. below are those functions. Typical use::

    from specdeploy import native
    native.build("host", "build/plugins")           # cmake + build; CLI: specdeploy build-plugins
    y = native.spec_conv(x, w, b, in_domain="spatial", C=3, Hs=34, Ws=34, k=3, beta=0.5,
                         activation="tanh", capacity=4000, value_dtype="fp16")

This package and everything it imports on load is torch-free (Jetson); only ``native.cuda`` imports torch.
"""

from __future__ import annotations

from specdeploy.native.abi import (
    ABI_VERSION,
    FLOAT_TYPE,
    MAX_CONCAT_INPUTS,
    VALUE_DTYPE,
    ConcatParams,
    ConvParams,
    Library,
    PoolParams,
    ToSpatialParams,
    load,
    mirrored_values,
    spec_concat,
    spec_conv,
    spec_pool,
    spec_to_spatial,
)
from specdeploy.native.build import BUILD_LOG, CPP_TESTS, KINDS, PLUGINS_DIR, build, default_build_dir, library_path
from specdeploy.native.errors import (
    SD_ERR_CUDA,
    SD_ERR_INTERNAL,
    SD_ERR_INVALID_ARGUMENT,
    SD_ERR_UNSUPPORTED,
    SD_ERR_WORKSPACE,
    SD_OK,
    STATUS_NAMES,
    NativeBuildError,
    NativeError,
    NativeInvalidArgument,
    NativeLibraryError,
)
from specdeploy.ops.spec_concat import native_params as concat_params
from specdeploy.ops.spec_conv import INPUT_SPECTRUM
from specdeploy.ops.spec_conv import native_params as conv_params
from specdeploy.ops.spec_pool import native_params as pool_params
from specdeploy.ops.spec_to_spatial import native_params as to_spatial_params

__all__ = [
    "ABI_VERSION", "BUILD_LOG", "CPP_TESTS", "FLOAT_TYPE", "INPUT_SPECTRUM", "KINDS", "MAX_CONCAT_INPUTS", "PLUGINS_DIR",
    "SD_ERR_CUDA", "SD_ERR_INTERNAL", "SD_ERR_INVALID_ARGUMENT", "SD_ERR_UNSUPPORTED", "SD_ERR_WORKSPACE", "SD_OK",
    "STATUS_NAMES", "VALUE_DTYPE",
    "ConcatParams", "ConvParams", "Library", "PoolParams", "ToSpatialParams",
    "NativeBuildError", "NativeError", "NativeInvalidArgument", "NativeLibraryError",
    "build", "default_build_dir", "library_path", "load", "mirrored_values",
    "conv_params", "pool_params", "to_spatial_params", "concat_params",
    "spec_conv", "spec_pool", "spec_to_spatial", "spec_concat",
]
