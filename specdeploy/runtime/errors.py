"""Errors of the runtimes. All are ``ValueError`` subclasses so the CLI reports them in one line.

Why a hierarchy: callers (the bench, the CLI, tests) want to tell "this file cannot be run" (fix the
export) from "this input does not fit the model" (fix the caller) from "this backend is not on this
machine" (use another one), without parsing messages.
"""

from __future__ import annotations


class SpecRuntimeError(ValueError):
    """Base class of every error the runtimes raise for bad files, inputs or missing backends."""


class ModelError(SpecRuntimeError):
    """The model file cannot be run: not ONNX, wrong op-set version, a node or attribute is invalid.

    The message names the file and, where one is at fault, the node and the attribute.
    """


class InputError(SpecRuntimeError):
    """An input does not fit the model (rank, channels, size, dtype, or a batch over the declared max)."""


class NonFiniteError(InputError):
    """Some samples met a NaN or Inf (in the input, or arising inside the model): their logits mean nothing.

    ``samples`` are their indices in the batch. Raised by ``Session.run`` unless the session was opened
    with ``nonfinite="flag"``, which returns the logits and marks the samples in ``last_nonfinite``.
    """

    def __init__(self, message: str, samples: list[int]) -> None:
        super().__init__(message)
        self.samples = samples


class BackendUnavailableError(SpecRuntimeError):
    """The backend exists but cannot run here (no GPU, library not built, TensorRT not installed)."""


class UnsupportedByBackendError(ModelError, BackendUnavailableError):
    """A valid file this backend cannot run: a node uses an attribute value its kernels lack (e.g. the
    hybrid block's activation "relu" before the native kernels implement it). Both a ModelError (the
    message names the node and attribute) and a BackendUnavailableError (another backend may run it)."""


class OpExecutionError(RuntimeError):
    """A specdeploy op failed while running a validated graph: a bug, never bad user input.

    ONNX Runtime's Python custom ops abort the process on an exception, so the ORT backend catches it
    inside the op, returns zeros, and raises this after ``run`` returns, naming the node.
    """
