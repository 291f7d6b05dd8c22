"""PyTorch SpecNet layers (training and export); see DESIGN.md §2 for the conventions."""

from specdeploy.nn.layers import (
    ACTIVATIONS,
    SpecConcat,
    SpecConv2d,
    SpecPool2d,
    SpecToSpatial,
    complex_tanh,
    fold_normalization,
    half_width,
    kept_fractions,
    kernel_spectrum,
    pool_rows,
    pool_scale,
    spec_convs,
    threshold,
)

__all__ = [
    "ACTIVATIONS",
    "SpecConcat",
    "SpecConv2d",
    "SpecPool2d",
    "SpecToSpatial",
    "complex_tanh",
    "fold_normalization",
    "half_width",
    "kept_fractions",
    "kernel_spectrum",
    "pool_rows",
    "pool_scale",
    "spec_convs",
    "threshold",
]
