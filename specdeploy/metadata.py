"""Keys of the ONNX ``metadata_props`` that ``specdeploy export`` writes and every runtime reads.

One place for the spelling (exporter, runtimes, TensorRT builder, sweep, toy models); the meaning
of each value is in docs/format.md. Imports nothing (no onnx, no torch).
"""

from __future__ import annotations

__all__ = ["META_MODEL", "META_VALUE_DTYPE", "META_CALIBRATION", "META_DATA", "META_MAX_BATCH"]

META_MODEL = "specdeploy.model"  # JSON: the zoo config the model was built from
META_VALUE_DTYPE = "specdeploy.value_dtype"  # "fp32" | "fp16": the packed values' precision
META_CALIBRATION = "specdeploy.calibration"  # JSON: per-node calibration statistics (capacities)
META_DATA = "specdeploy.data"  # JSON: {"name": data set whose normalization the model expects}
META_MAX_BATCH = "specdeploy.max_batch"  # int: the largest batch of a dynamic-batch export
