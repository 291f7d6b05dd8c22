"""The specdeploy op set (domain "specdeploy", version 1): one module per op, and the registry.

Each op module (``spec_conv``, ``spec_pool``, ``spec_to_spatial``, ``spec_concat``) holds every fact
of its op that is not a kernel: attributes and their rules, output shape, dense coefficients, the
native library's workspace, the numpy reference, the ONNX schema, the ORT and native adapters and
the TensorRT plugin version, as one :class:`OpDef` named ``OP``. Everything else (runtime graph
validation, schemas, exporter, planner, backends, TensorRT checks) iterates over :data:`REGISTRY`.
How to add an op or an attribute: docs/adding-an-op.md.

The C ABI validates the same rules for the CUDA kernels and TensorRT plugins (plugins/common).
Numpy only: never imports torch (Jetson) nor onnx.
"""

from __future__ import annotations

from typing import Any

from specdeploy.ops import spec_concat, spec_conv, spec_pool, spec_to_spatial
from specdeploy.ops._base import DOMAIN, VERSION, NativeCall, OpAttributeError, OpDef, SchemaParam

__all__ = [
    "DOMAIN",
    "VERSION",
    "REGISTRY",
    "OPS",
    "ATTRIBUTES",
    "OpAttributeError",
    "OpDef",
    "NativeCall",
    "SchemaParam",
    "get",
    "check_required",
    "declared_workspace",
    "spec_conv",
    "spec_pool",
    "spec_to_spatial",
    "spec_concat",
]

#: op type -> descriptor, in the op set's order
REGISTRY: dict[str, OpDef] = {m.OP.name: m.OP for m in (spec_conv, spec_pool, spec_to_spatial, spec_concat)}
OPS = tuple(REGISTRY)
#: op type -> {attribute name -> ONNX type name}
ATTRIBUTES: dict[str, dict[str, str]] = {name: op.attributes for name, op in REGISTRY.items()}


def get(op: str, node: str | None = None) -> OpDef:
    """The descriptor of ``op``; OpAttributeError naming the node for an unknown op type."""
    d = REGISTRY.get(op)
    if d is None:
        raise OpAttributeError(f"{node or op}: unknown op type '{op}' in domain '{DOMAIN}'; known: {', '.join(OPS)}")
    return d


def check_required(op: str, attrs: dict[str, Any], node: str) -> None:
    """Every attribute of the op is present and none is unknown (used when reading ONNX nodes)."""
    get(op, node).check_required(attrs, node)


def declared_workspace(op: str, attrs: dict[str, Any], batch: int, out_channels: int | None = None) -> int:
    """Workspace bytes a specdeploy op declares at ``batch``; standard ops (any other type) declare 0.

    See ``specdeploy.memory.declared_workspace`` (the planner's rule) and each op's ``workspace``.
    """
    if batch < 0:
        raise ValueError(f"batch must be >= 0, got {batch}")
    d = REGISTRY.get(op)
    return 0 if d is None else d.workspace(attrs, batch, out_channels)
