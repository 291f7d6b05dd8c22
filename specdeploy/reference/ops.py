"""Reference implementations of the specdeploy op set in numpy: the ground truth for every runtime.

Straight from DESIGN.md §2 and docs/ops.md, with no cleverness: decode the packed inputs to dense
spectra, compute in float64, round the pre-threshold spectrum to fp32 (what every runtime
thresholds), then select (threshold + overflow policy) and encode with ``specdeploy.packed``.
Dense buffers are fine here; the memory-lean streaming belongs to the kernels.

The functions live with the rest of their op's facts in ``specdeploy.ops.<op>`` (``reference``);
this module is their public, stable name. Never imports torch: this runs on a Jetson.
"""

from __future__ import annotations

from specdeploy.ops.spec_concat import reference as spec_concat
from specdeploy.ops.spec_conv import kernel_spectrum, spatial_spectrum
from specdeploy.ops.spec_conv import reference as spec_conv
from specdeploy.ops.spec_pool import reference as spec_pool
from specdeploy.ops.spec_to_spatial import reference as spec_to_spatial

__all__ = ["spec_conv", "spec_pool", "spec_to_spatial", "spec_concat", "spatial_spectrum", "kernel_spectrum"]
