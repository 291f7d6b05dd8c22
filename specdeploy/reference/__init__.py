"""Reference (numpy, CPU) implementations of the specdeploy op set: the ground truth. No torch."""

from specdeploy.reference.ops import spec_concat, spec_conv, spec_pool, spec_to_spatial

__all__ = ["spec_concat", "spec_conv", "spec_pool", "spec_to_spatial"]
