"""Types shared by every dataset reader: the in-memory dataset and the one error type.

Kept in a private module so the format readers (``_formats``, ``_cifar``) and the public API in
``specdeploy.data`` can all import them without import cycles. numpy only: this is imported by
torch-free runtimes (ONNX Runtime / TensorRT benchmarks on a Jetson).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ArrayDataset", "DataError", "DataNotFoundError"]


class DataError(ValueError):
    """A dataset could not be loaded: unknown name or split, missing file, corrupt or inconsistent file.

    A ``ValueError`` so callers that already treat bad input as ``ValueError`` keep working; a
    dedicated class so the CLI can print the message (which always names the dataset and the file
    or directory involved) instead of a traceback.
    """


class DataNotFoundError(DataError):
    """The files of a dataset are not where we looked.

    Its message says every path that was tried and how to obtain the data; a separate class so
    tests and the CLI can tell "not installed" apart from "installed but corrupt".
    """


@dataclass(eq=False)
class ArrayDataset:
    """A whole labelled image dataset split held in memory as numpy arrays.

    Images are ``uint8 [N, H, W, C]`` (HWC, the layout every source format decodes to most cheaply
    and the one ``normalize`` expects); labels are ``int64 [N]`` in ``0 .. len(classes) - 1``.
    ``name`` is the registry name (it selects the normalization constants, and ``fit`` keeps it so a
    padded Fashion-MNIST still normalizes like Fashion-MNIST); ``source`` is the file or directory
    the data were read from, so results can say exactly which data produced them.

    ``__post_init__`` validates shapes and dtypes because everything downstream (normalization,
    augmentation, export calibration) silently misbehaves on e.g. float images or CHW layout.
    """

    images: np.ndarray
    labels: np.ndarray
    name: str
    classes: list[str] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.images, np.ndarray) or self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"ArrayDataset {self.name!r}: images must be a uint8 array [N, H, W, C], got "
                f"{getattr(self.images, 'dtype', type(self.images))} with shape {getattr(self.images, 'shape', None)}"
            )
        if self.images.shape[3] not in (1, 3):
            raise ValueError(
                f"ArrayDataset {self.name!r}: images must have 1 or 3 channels in the last axis (HWC), "
                f"got shape {self.images.shape}"
            )
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or labels.shape[0] != self.images.shape[0]:
            raise ValueError(
                f"ArrayDataset {self.name!r}: labels must be [N] with N = {self.images.shape[0]}, got shape {labels.shape}"
            )
        if labels.dtype != np.int64:
            if not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(f"ArrayDataset {self.name!r}: labels must be integers, got {labels.dtype}")
            labels = labels.astype(np.int64)
        self.labels = labels
        if labels.size and self.classes and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise ValueError(
                f"ArrayDataset {self.name!r}: labels must lie in 0..{len(self.classes) - 1}, "
                f"got {int(labels.min())}..{int(labels.max())}"
            )
        self.classes = list(self.classes)
        self.source = str(self.source) if isinstance(self.source, Path) else self.source

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes (the classifier's output width), from ``classes``."""
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image."""
        _, h, w, c = self.images.shape
        return int(h), int(w), int(c)

    def __repr__(self) -> str:
        return (
            f"ArrayDataset(name={self.name!r}, n={len(self)}, shape={self.shape}, "
            f"classes={self.num_classes}, source={self.source!r})"
        )
