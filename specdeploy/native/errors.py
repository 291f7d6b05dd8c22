"""Errors and status codes of the native library (C ABI ``sd_status``), shared by the bindings and
the build driver. The codes are checked against the library's ``sd_abi_query`` at load (abi.py)."""

from __future__ import annotations

# sd_status
SD_OK = 0
SD_ERR_INVALID_ARGUMENT = 1
SD_ERR_WORKSPACE = 2
SD_ERR_CUDA = 3
SD_ERR_UNSUPPORTED = 4
SD_ERR_INTERNAL = 5
STATUS_NAMES = {
    SD_OK: "SD_OK",
    SD_ERR_INVALID_ARGUMENT: "SD_ERR_INVALID_ARGUMENT",
    SD_ERR_WORKSPACE: "SD_ERR_WORKSPACE",
    SD_ERR_CUDA: "SD_ERR_CUDA",
    SD_ERR_UNSUPPORTED: "SD_ERR_UNSUPPORTED",
    SD_ERR_INTERNAL: "SD_ERR_INTERNAL",
}


class NativeError(RuntimeError):
    """A call into the native library failed; ``status`` is the sd_status code (or None)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class NativeInvalidArgument(NativeError, ValueError):
    """SD_ERR_INVALID_ARGUMENT (or a Python-side check of the same kind): names the attribute."""


class NativeBuildError(NativeError):
    """cmake configure/build failed; the message carries the command and the tail of its output."""


class NativeLibraryError(NativeError):
    """The library could not be found, loaded, or is incompatible (ABI version, GPU architecture)."""
