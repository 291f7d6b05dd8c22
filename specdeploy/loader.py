"""torch ``DataLoader`` over an ``ArrayDataset``: normalized float32 NCHW batches, batch-vectorized augmentation.

Why not torchvision transforms: they work image by image in Python, which on the 2-core CI and
Jetson-class hosts costs more than the SpecNet forward pass of a small model. Here each batch is
gathered from the uint8 array with one fancy index, augmented with a handful of tensor ops on the
whole batch, and normalized by ``specdeploy.data.normalize`` (the same numpy function the torch-free
benchmarks use, so training and deployment inputs match bit for bit).

Determinism: the loader yields whole batches from a sampler that derives both the shuffle order and
each batch's augmentation seed from ``(seed, epoch, batch index)`` with ``numpy.random.SeedSequence``.
Nothing depends on global RNG state or on which worker process builds a batch, so the same ``seed``
gives the same batches for any ``num_workers``, and epoch ``e`` of a resumed run equals epoch ``e`` of
an uninterrupted one if ``sampler.epoch`` is set.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from specdeploy.data import ArrayDataset, normalize

__all__ = ["make_loader", "augment_batch", "BatchPlan", "BatchDataset", "FLIP_OK", "PAD"]

PAD = 4
"""Random-crop padding in pixels (the standard CIFAR recipe: pad 4 with zeros, crop back)."""

FLIP_OK: dict[str, bool] = {
    "cifar10": True,
    "cifar10-samples": True,
    "fashion-mnist": True,  # garments are left/right symmetric classes
    "mnist": False,  # a mirrored digit is not the same digit (2, 3, 4, 5, 7, 9)
    "svhn": False,
}
"""Whether horizontal flips preserve the label, per dataset; unknown names get no flip (safe default)."""


def augment_batch(images: torch.Tensor, generator: torch.Generator, flip: bool, pad: int = PAD) -> torch.Tensor:
    """Random crop after ``pad``-pixel zero padding, and optional random horizontal flip, of a whole batch.

    ``images`` is uint8 ``[B, H, W, C]``; the result has the same shape and dtype. Zero padding is
    applied to the raw uint8 pixels (black), as torchvision's ``RandomCrop(padding=4)`` does before
    normalization; for the MNIST-like sets it equals their background. The per-sample crop is one
    gather with broadcast row/column index grids instead of a Python loop over samples.
    """
    b, h, w, _ = images.shape
    padded = torch.nn.functional.pad(images, (0, 0, pad, pad, pad, pad))  # pads W then H (dims from the end)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = oy[:, None] + torch.arange(h)[None, :]  # [B, H]
    cols = ox[:, None] + torch.arange(w)[None, :]  # [B, W]
    if flip:
        mirror = torch.rand(b, generator=generator) < 0.5
        cols = torch.where(mirror[:, None], cols.flip(1), cols)  # reading columns backwards = flipping
    bidx = torch.arange(b)[:, None, None]
    return padded[bidx, rows[:, :, None], cols[:, None, :]]


class BatchPlan(Sampler[tuple[int, np.ndarray]]):
    """Yields ``(augmentation_seed, sample_indices)`` per batch, one epoch per ``iter()``.

    The epoch counter advances on every ``iter()`` so successive epochs shuffle differently yet
    reproducibly; set ``.epoch`` to resume. Training drops a last partial batch (a batch of 1
    breaks BatchNorm statistics) unless the dataset is smaller than one batch.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int, drop_last: bool) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.drop_last = drop_last and n >= batch_size
        self.epoch = 0

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        epoch = self.epoch
        self.epoch += 1
        ss = np.random.SeedSequence([self.seed & 0xFFFFFFFF, epoch])
        shuffle_ss, aug_ss = ss.spawn(2)
        order = np.random.default_rng(shuffle_ss).permutation(self.n) if self.shuffle else np.arange(self.n)
        seeds = aug_ss.generate_state(len(self), dtype=np.uint64)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield int(seeds[i] & 0x7FFF_FFFF_FFFF_FFFF), idx


class BatchDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Maps a ``BatchPlan`` item to a ready batch ``(x float32 [B, C, H, W], y int64 [B])``."""

    def __init__(self, ds: ArrayDataset, augment: bool) -> None:
        self.ds = ds
        self.augment = augment
        self.flip = FLIP_OK.get(ds.name, False)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: tuple[int, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        aug_seed, idx = key
        images = self.ds.images[idx]
        if self.augment:
            g = torch.Generator().manual_seed(aug_seed)
            images = augment_batch(torch.from_numpy(images), g, self.flip).numpy()
        x = torch.from_numpy(normalize(images, self.ds.name))
        y = torch.from_numpy(self.ds.labels[idx])
        return x, y


def make_loader(
    ds: ArrayDataset,
    batch_size: int,
    train: bool,
    augment: bool,
    seed: int,
    num_workers: int = 0,
) -> DataLoader:
    """A ``DataLoader`` of ``(float32 [B, C, H, W] normalized, int64 [B])`` batches.

    ``train`` shuffles (reproducibly from ``seed``) and drops a last partial batch; evaluation keeps
    file order and every sample. ``augment`` (meant for training) applies ``augment_batch``: random
    4-pixel crop always, horizontal flip only where ``FLIP_OK`` says it preserves labels.
    ``num_workers > 0`` builds batches in worker processes without changing their content.
    """
    plan = BatchPlan(len(ds), batch_size, shuffle=train, seed=seed, drop_last=train)
    return DataLoader(
        BatchDataset(ds, augment),
        batch_size=None,  # the sampler already yields whole batches
        sampler=plan,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
