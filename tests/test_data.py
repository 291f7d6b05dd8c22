"""Tests for specdeploy.data: real local datasets, format parsers on fixtures written here, safety, loader.

The CIFAR-10 and SVHN fixtures below are a handful of random images written in the official file
layouts; they only check parsing (pixels and labels round-trip exactly). Never train on them or
report an accuracy from them.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import specdeploy.data as data
from specdeploy.data import ArrayDataset, DataError, DataNotFoundError
from specdeploy.data._formats import decode_png

HAVE_FMNIST = (data.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file()
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="apt-get install dataset-fashion-mnist")


# ------------------------------------------------------------------------------------ real datasets

@pytest.fixture(scope="module")
def fmnist_train() -> ArrayDataset:
    return data.load("fashion-mnist", "train")


@needs_fmnist
def test_fashion_mnist_splits(fmnist_train: ArrayDataset) -> None:
    test = data.load("fashion-mnist", "test")
    for ds, n in ((fmnist_train, 60000), (test, 10000)):
        assert ds.images.shape == (n, 28, 28, 1) and ds.images.dtype == np.uint8
        assert ds.labels.shape == (n,) and ds.labels.dtype == np.int64
        assert set(np.unique(ds.labels)) == set(range(10))
        assert ds.name == "fashion-mnist" and len(ds.classes) == 10
        assert ds.source == str(data.FASHION_MNIST_DIR)
        assert ds.images.flags.writeable  # torch.from_numpy warns on read-only arrays
    # the packaged normalization constants are the statistics of this very training set
    mean, std = data.compute_stats(fmnist_train)
    np.testing.assert_allclose(mean, data.NORM_STATS["fashion-mnist"][0], atol=1e-7)
    np.testing.assert_allclose(std, data.NORM_STATS["fashion-mnist"][1], atol=1e-7)


@needs_fmnist
def test_fit_pads_centred_with_zeros(fmnist_train: ArrayDataset) -> None:
    small = ArrayDataset(fmnist_train.images[:50], fmnist_train.labels[:50], "fashion-mnist", fmnist_train.classes)
    big = data.fit(small, 32, None)
    assert big.images.shape == (50, 32, 32, 1) and big.name == "fashion-mnist"
    np.testing.assert_array_equal(big.images[:, 2:30, 2:30], small.images)
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert not big.images[:, border].any()
    # cropping back is the exact inverse; channel conversion round-trips for gray images
    np.testing.assert_array_equal(data.fit(big, 28, None).images, small.images)
    rgb = data.fit(small, 32, 3)
    assert rgb.images.shape == (50, 32, 32, 3)
    np.testing.assert_array_equal(rgb.images[..., 0], rgb.images[..., 2])
    np.testing.assert_array_equal(data.fit(rgb, 28, 1).images, small.images)
    assert data.fit(small, None, None) is small


def test_fit_luma_and_odd_sizes() -> None:
    img = np.zeros((1, 5, 5, 3), np.uint8)
    img[0, :, :] = (255, 0, 0)
    ds = ArrayDataset(img, np.zeros(1, np.int64), "cifar10", ["a"])
    assert int(data.fit(ds, None, 1).images[0, 0, 0, 0]) == round(0.299 * 255)
    grown = data.fit(ds, 8, None).images  # 5 -> 8: one pixel before, two after
    assert grown[0, 1:6, 1:6, 0].all() and not grown[0, 0].any() and not grown[0, 6:].any()
    assert data.fit(ds, 3, None).images.shape == (1, 3, 3, 3)
    with pytest.raises(ValueError):
        data.fit(ds, None, 2)


def test_mnist_5k() -> None:
    train, test = data.load("mnist", "train"), data.load("mnist", "test")
    assert train.images.shape == (4000, 28, 28, 1) and test.images.shape == (1000, 28, 28, 1)
    assert np.bincount(train.labels).tolist() == [400] * 10
    assert np.bincount(test.labels).tolist() == [100] * 10
    assert train.source.endswith("mnist_5k.csv.gz") and train.classes == [str(i) for i in range(10)]
    assert train.images.max() == 255 and train.images.std() > 0
    mean, std = data.compute_stats(train)
    np.testing.assert_allclose(mean, data.NORM_STATS["mnist"][0], atol=1e-7)
    np.testing.assert_allclose(std, data.NORM_STATS["mnist"][1], atol=1e-7)


def test_cifar10_samples() -> None:
    ds = data.load("cifar10-samples", "test")
    assert ds.images.shape == (20, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.labels.min() >= 0 and ds.labels.max() <= 9
    # they are the first 20 images of the official CIFAR-10 test set (cat, ship, ship, airplane, ...)
    assert ds.labels.tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
    assert all(ds.images[i].std() > 0 for i in range(20))
    assert ds.classes[3] == "cat"
    with pytest.raises(DataError, match="no split 'train'"):
        data.load("cifar10-samples", "train")
    try:
        from PIL import Image
    except ImportError:
        return
    for i, p in enumerate(sorted(Path(ds.source).glob("cifar10_*.png"))):
        np.testing.assert_array_equal(ds.images[i], np.asarray(Image.open(p).convert("RGB")))


def _png(img: np.ndarray, ftype: int) -> bytes:
    """Minimal PNG encoder using one filter type for every row (to exercise each unfilter path)."""
    h, w, c = img.shape
    bpp = c
    rows = img.reshape(h, w * c).astype(np.int64)
    out = bytearray()
    prev = np.zeros(w * c, np.int64)
    for y in range(h):
        cur = rows[y]
        left = np.concatenate([np.zeros(bpp, np.int64), cur[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
        if ftype == 0:
            f = cur
        elif ftype == 1:
            f = cur - left
        elif ftype == 2:
            f = cur - prev
        elif ftype == 3:
            f = cur - (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            f = cur - np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        out += bytes([ftype]) + (f % 256).astype(np.uint8).tobytes()
        prev = cur

    def chunk(t: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + t + body + struct.pack(">I", zlib.crc32(t + body) & 0xFFFFFFFF)

    ctype = {1: 0, 3: 2, 4: 6}[c]
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(bytes(out)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("ftype", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 3])
def test_png_decoder_filters(ftype: int, channels: int) -> None:
    img = np.random.default_rng(ftype).integers(0, 256, (7, 9, channels), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(_png(img, ftype)), img)
    raw = bytearray(_png(img, ftype))
    raw[40] ^= 0xFF  # inside IDAT: CRC must catch it
    with pytest.raises(ValueError):
        decode_png(bytes(raw))


# ---------------------------------------------------------------------------------- CIFAR-10 fixtures

def _cifar_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


def _planes(img: np.ndarray) -> bytes:
    """The official 3072-byte row: the R plane, then G, then B, each 32x32 row-major."""
    return img[:, :, 0].tobytes() + img[:, :, 1].tobytes() + img[:, :, 2].tobytes()


def _py2_pickle(rows: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled the way the official archive is: Python 2 cPickle protocol 2, numpy 1.x.

    Python 2 ``str`` values are SHORT_BINSTRING/BINSTRING opcodes (bytes under encoding="bytes") and
    the array is rebuilt by ``numpy.core.multiarray._reconstruct`` (the pre-numpy-2 module path).
    """
    def s(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b

    def i(v: int) -> bytes:
        return b"J" + struct.pack("<i", v)

    n = rows.shape[0]
    arr = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + i(0) + b"\x85" + s(b"b") + b"\x87R"
        + b"(" + i(1) + i(n) + i(3072) + b"\x86"
        + b"cnumpy\ndtype\n" + s(b"u1") + i(0) + i(1) + b"\x87R"
        + b"(" + i(3) + s(b"|") + b"NNN" + i(-1) + i(-1) + i(0) + b"tb"
        + b"\x89" + s(rows.tobytes()) + b"tb"
    )
    labs = b"](" + b"".join(i(v) for v in labels) + b"e"
    return (
        b"\x80\x02}(" + s(b"batch_label") + s(b"testing batch 1 of 1") + s(b"data") + arr
        + s(b"labels") + labs + s(b"filenames") + b"]u."
    )


def _write_cifar(root: Path, fmt: str, splits: dict[str, tuple[np.ndarray, np.ndarray]], protocol: int = 5) -> None:
    """Write a tiny CIFAR-10 under ``root`` as batches dir + tar.gz (in ``root/tar``).

    ``fmt``: "bin" (official binary), "py2" (python version as the official Python 2 pickles) or
    "py" (python version re-pickled by Python 3 with ``protocol``).
    """
    files: dict[str, bytes] = {}
    names = data._cifar.CIFAR10_CLASSES
    tr_x, tr_y = splits["train"]
    chunks = np.array_split(np.arange(len(tr_y)), 5)
    batches = {f"data_batch_{k + 1}": (tr_x[c], tr_y[c]) for k, c in enumerate(chunks)}
    batches["test_batch"] = splits["test"]
    for bname, (x, y) in batches.items():
        if fmt == "bin":
            files[bname + ".bin"] = b"".join(bytes([int(lab)]) + _planes(img) for img, lab in zip(x, y))
        else:
            rows = np.frombuffer(b"".join(_planes(img) for img in x), np.uint8).reshape(-1, 3072)
            if fmt == "py2":
                files[bname] = _py2_pickle(rows, y.tolist())
            else:
                files[bname] = pickle.dumps(
                    {b"batch_label": b"x", b"labels": y.tolist(), b"data": rows, b"filenames": [b"a.png"] * len(y)},
                    protocol=protocol,
                )
    if fmt == "bin":
        files["batches.meta.txt"] = ("\n".join(names) + "\n\n").encode()
    else:
        files["batches.meta"] = pickle.dumps({b"label_names": [n.encode() for n in names], b"num_vis": 3072}, protocol=2)
    sub = "cifar-10-batches-bin" if fmt == "bin" else "cifar-10-batches-py"
    (root / sub).mkdir(parents=True)
    for fname, raw in files.items():
        (root / sub / fname).write_bytes(raw)
    tar_name = "cifar-10-binary.tar.gz" if fmt == "bin" else "cifar-10-python.tar.gz"
    (root / "tar").mkdir()
    with tarfile.open(root / "tar" / tar_name, "w:gz") as tar:
        tar.add(root / sub, arcname=sub)


@pytest.fixture(scope="module")
def cifar_splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {"train": _cifar_split(11, 1), "test": _cifar_split(3, 2)}


@pytest.mark.parametrize("fmt,protocol", [("bin", 5), ("py2", 2), ("py", 0), ("py", 2), ("py", 4), ("py", 5)])
@pytest.mark.parametrize("packed", [False, True])
def test_cifar10_formats_round_trip(tmp_path: Path, cifar_splits, fmt: str, protocol: int, packed: bool) -> None:
    _write_cifar(tmp_path, fmt, cifar_splits, protocol)
    data_dir = tmp_path / "tar" if packed else tmp_path
    for split in ("train", "test"):
        ds = data.load("cifar10", split, data_dir)
        np.testing.assert_array_equal(ds.images, cifar_splits[split][0])
        np.testing.assert_array_equal(ds.labels, cifar_splits[split][1])
        assert ds.labels.dtype == np.int64 and ds.classes == data._cifar.CIFAR10_CLASSES
        assert ds.source.endswith(".tar.gz") == packed
    # the archive itself and the batches directory itself are accepted as data_dir too
    sub = "cifar-10-batches-bin" if fmt == "bin" else "cifar-10-batches-py"
    direct = next((tmp_path / "tar").iterdir()) if packed else tmp_path / sub
    np.testing.assert_array_equal(data.load("cifar10", "test", direct).images, cifar_splits["test"][0])


class _Evil:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (self.cmd,))


class _EvalEvil:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (eval, (self.code,))


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("kind", ["system", "eval", "meta"])
def test_malicious_pickle_rejected_without_running(tmp_path: Path, cifar_splits, packed: bool, kind: str) -> None:
    _write_cifar(tmp_path, "py", cifar_splits)
    marker = tmp_path / "pwned"
    if kind == "eval":
        payload: object = _EvalEvil(f"open({str(marker)!r}, 'w').close()")
    else:
        payload = _Evil(f"touch {marker}")
    target = "batches.meta" if kind == "meta" else "test_batch"
    evil = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": payload}
    if kind == "meta":
        evil = {b"label_names": payload}
    (tmp_path / "cifar-10-batches-py" / target).write_bytes(pickle.dumps(evil))
    if packed:
        (tmp_path / "tar" / "cifar-10-python.tar.gz").unlink()
        with tarfile.open(tmp_path / "tar" / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(tmp_path / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    with pytest.raises(DataError, match=rf"{target}.*(refusing|rejected)"):
        data.load("cifar10", "test", tmp_path / "tar" if packed else tmp_path)
    assert not marker.exists()


def test_restricted_unpickler_allow_list() -> None:
    from specdeploy.data._cifar import restricted_loads

    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for proto in range(6):
        np.testing.assert_array_equal(restricted_loads(pickle.dumps(arr, protocol=proto)), arr)
    for bad in (pickle.dumps(os.getcwd), pickle.dumps(np.load), pickle.dumps(subprocess.Popen)):
        with pytest.raises(pickle.UnpicklingError):
            restricted_loads(bad)
    # _codecs.encode is allowed only as the latin-1 helper pickle itself emits
    sneaky = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R."
    with pytest.raises(pickle.UnpicklingError):
        restricted_loads(sneaky)


def test_cifar10_corrupt_and_missing(tmp_path: Path, cifar_splits) -> None:
    _write_cifar(tmp_path, "bin", cifar_splits)
    tgz = tmp_path / "tar" / "cifar-10-binary.tar.gz"
    raw = tgz.read_bytes()
    tgz.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cifar-10-binary.tar.gz"):
        data.load("cifar10", "train", tmp_path / "tar")
    batch = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    batch.write_bytes(batch.read_bytes()[:-5])
    with pytest.raises(DataError, match="test_batch.bin.*multiple"):
        data.load("cifar10", "test", tmp_path)
    (tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin").unlink()
    with pytest.raises(DataNotFoundError, match="data_batch_3.bin"):
        data.load("cifar10", "train", tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError, match=r"cifar-10-binary\.tar\.gz.*--data-dir") as e:
        data.load("cifar10", "train", empty)
    assert str(empty) in str(e.value)


# --------------------------------------------------------------------------------------------- SVHN

def test_svhn_mat(tmp_path: Path) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (32, 32, 3, 6), dtype=np.uint8)
    y = np.array([[10], [1], [2], [9], [10], [5]], dtype=np.uint8)
    scipy_io.savemat(tmp_path / "test_32x32.mat", {"X": x, "y": y})
    ds = data.load("svhn", "test", tmp_path)
    assert ds.images.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(ds.images[2], x[:, :, :, 2])
    assert ds.labels.tolist() == [0, 1, 2, 9, 0, 5]
    with pytest.raises(DataNotFoundError, match="train_32x32.mat"):
        data.load("svhn", "train", tmp_path)
    (tmp_path / "extra_32x32.mat").write_bytes(b"garbage" * 50)
    with pytest.raises(DataError, match="extra_32x32.mat"):
        data.load("svhn", "extra", tmp_path)


# ---------------------------------------------------------------------------- errors on IDX / names

def _idx(magic: int, arr: np.ndarray) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()


@pytest.fixture()
def tiny_fmnist(tmp_path: Path) -> Path:
    rng = np.random.default_rng(4)
    for prefix, n in (("train", 12), ("t10k", 5)):
        img = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (tmp_path / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(2051, img)))
        (tmp_path / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(2049, np.arange(n) % 10)))
    return tmp_path


def test_idx_data_dir_and_corruption(tiny_fmnist: Path) -> None:
    ds = data.load("fashion-mnist", "test", tiny_fmnist)
    assert ds.images.shape == (5, 28, 28, 1) and ds.labels.tolist() == [0, 1, 2, 3, 4]
    img = tiny_fmnist / "train-images-idx3-ubyte.gz"
    lab = tiny_fmnist / "train-labels-idx1-ubyte.gz"
    good_img, good_lab = img.read_bytes(), lab.read_bytes()
    img.write_bytes(good_img[: len(good_img) - 20])
    with pytest.raises(DataError, match=f"{img}.*truncated gzip"):
        data.load("fashion-mnist", "train", tiny_fmnist)
    img.write_bytes(good_lab)  # labels where images belong: magic 2049 != 2051
    with pytest.raises(DataError, match=f"{img}.*bad IDX magic number 2049"):
        data.load("fashion-mnist", "train", tiny_fmnist)
    raw = gzip.decompress(good_img)
    img.write_bytes(gzip.compress(raw[:-28]))  # header says 12 images, 11.96 present
    with pytest.raises(DataError, match=f"{img}.*truncated or corrupt"):
        data.load("fashion-mnist", "train", tiny_fmnist)
    img.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=f"{img}.*not a valid gzip"):
        data.load("fashion-mnist", "train", tiny_fmnist)
    img.write_bytes(good_img)
    lab.write_bytes(gzip.compress(_idx(2049, np.arange(11) % 10)))
    with pytest.raises(DataError, match="12 images but .* 11 labels"):
        data.load("fashion-mnist", "train", tiny_fmnist)


def test_unknown_and_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'imagenet'.*fashion-mnist.*cifar10-samples"):
        data.load("imagenet")
    with pytest.raises(DataError, match="no split 'val'"):
        data.load("mnist", "val")
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(DataNotFoundError) as e:
        data.load("fashion-mnist", "train", missing)
    assert str(missing / "train-images-idx3-ubyte.gz") in str(e.value)
    for name in ("cifar10", "svhn"):
        with pytest.raises(DataNotFoundError, match="does not exist") as e:
            data.load(name, "train", missing)
        assert str(missing) in str(e.value)
    with pytest.raises(DataError):
        data.normalize(np.zeros((1, 2, 2, 1), np.uint8), "imagenet")


def test_import_is_torch_free() -> None:
    code = "import sys, specdeploy.data as d; d.normalize; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# ------------------------------------------------------------------------------------ subset/normalize

def test_subset_stratified_deterministic() -> None:
    labels = np.repeat(np.arange(4), [50, 30, 15, 5]).astype(np.int64)
    ds = ArrayDataset(np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1), labels, "mnist", list("abcd"))
    a, b, c = data.subset(ds, 20, 0), data.subset(ds, 20, 0), data.subset(ds, 20, 1)
    assert len(a) == 20 and np.bincount(a.labels).tolist() == [10, 6, 3, 1]
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    assert np.all(np.diff(a.images.ravel().astype(int)) > 0)  # original order kept
    assert len(data.subset(ds, 7, 0)) == 7 and data.subset(ds, 1000, 0) is ds


def test_prepare_is_load_subset_fit(tiny_fmnist: Path) -> None:
    """The one path to model-ready images: subsetting before or after fitting picks the same samples."""
    full = data.load("fashion-mnist", "train", tiny_fmnist)
    got = data.prepare("fashion-mnist", "train", 32, 3, samples=5, seed=3, data_dir=tiny_fmnist)
    want = data.subset(data.fit(full, 32, 3), 5, 3)
    assert got.images.shape[1:] == (32, 32, 3) and len(got) == 5 < len(full)
    np.testing.assert_array_equal(got.images, want.images)
    np.testing.assert_array_equal(got.labels, want.labels)
    assert len(data.prepare("fashion-mnist", "train", None, None, data_dir=tiny_fmnist)) == len(full)
    with pytest.raises(ValueError, match="n must be positive"):
        data.prepare("fashion-mnist", "test", 32, 1, samples=0, data_dir=tiny_fmnist)


def test_normalize_layout_and_channels() -> None:
    img = np.random.default_rng(5).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    out = data.normalize(img, "cifar10")
    assert out.shape == (2, 3, 4, 5) and out.dtype == np.float32 and out.flags.c_contiguous
    mean, std = data.NORM_STATS["cifar10"]
    np.testing.assert_allclose(out[1, 2], (img[1, :, :, 2] / 255 - mean[2]) / std[2], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(data.normalize(img[0], "cifar10"), out[0])
    gray = np.repeat(img[..., :1], 3, axis=3)  # a 1-channel set fitted to 3 channels
    g = data.normalize(gray, "fashion-mnist")
    np.testing.assert_array_equal(g[:, 0], data.normalize(img[..., :1], "fashion-mnist")[:, 0])
    assert data.normalize(img[..., :1], "cifar10-samples").shape == (2, 1, 4, 5)


# ------------------------------------------------------------------------------------------- loader

def test_loader_batches_and_normalization(fmnist_train: ArrayDataset) -> None:
    torch = pytest.importorskip("torch")
    from specdeploy.loader import make_loader

    mn = data.load("mnist", "train")
    loader = make_loader(mn, 128, train=False, augment=False, seed=0)
    batches = list(loader)
    assert len(batches) == len(loader) == 32  # 4000 / 128 rounded up: evaluation keeps every sample
    x, y = batches[0]
    assert x.shape == (128, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    np.testing.assert_array_equal(x.numpy(), data.normalize(mn.images[:128], "mnist"))
    allx = torch.cat([b[0] for b in batches])
    assert allx.shape[0] == 4000 and abs(allx.mean().item()) < 1e-3 and abs(allx.std().item() - 1) < 1e-3
    if HAVE_FMNIST:
        sub = data.subset(fmnist_train, 5000, seed=0)
        xs = torch.cat([b[0] for b in make_loader(sub, 500, train=True, augment=False, seed=0)])
        assert abs(xs.mean().item()) < 0.03 and abs(xs.std().item() - 1) < 0.03
    train = make_loader(mn, 128, train=True, augment=False, seed=0)
    assert len(train) == 31  # the partial last batch is dropped when training
    ys = torch.cat([b[1] for b in train])
    assert not torch.equal(ys, torch.from_numpy(mn.labels[: ys.numel()]))  # shuffled


def _matches(out: np.ndarray, img: np.ndarray, pad: int) -> tuple[bool, bool]:
    """Whether ``out`` is a plain / mirrored pad-and-crop of ``img`` (all uint8 HWC)."""
    h, w, _ = img.shape
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)))
    crops = [padded[oy : oy + h, ox : ox + w] for oy in range(2 * pad + 1) for ox in range(2 * pad + 1)]
    return any(np.array_equal(out, c) for c in crops), any(np.array_equal(out, c[:, ::-1]) for c in crops)


@pytest.mark.parametrize("name,flips", [("cifar10", True), ("mnist", False)])
def test_loader_augmentation(name: str, flips: bool) -> None:
    torch = pytest.importorskip("torch")
    from specdeploy.loader import PAD, make_loader

    rng = np.random.default_rng(6)
    c = 3 if name == "cifar10" else 1
    imgs = rng.integers(1, 256, (64, 10, 12, c), dtype=np.uint8)
    ds = ArrayDataset(imgs, rng.integers(0, 10, 64), name, [str(i) for i in range(10)])
    plain = torch.from_numpy(data.normalize(imgs, name))
    aug = list(make_loader(ds, 16, train=False, augment=True, seed=7))
    again = list(make_loader(ds, 16, train=False, augment=True, seed=7))
    other = list(make_loader(ds, 16, train=False, augment=True, seed=8))
    xa = torch.cat([b[0] for b in aug])
    assert xa.shape == plain.shape and xa.dtype == torch.float32
    assert not torch.equal(xa, plain)
    assert torch.equal(xa, torch.cat([b[0] for b in again]))
    assert not torch.equal(xa, torch.cat([b[0] for b in other]))
    mean, std = data.norm_stats(name, c)
    pixels = np.rint((xa.numpy().transpose(0, 2, 3, 1) * std + mean) * 255).astype(np.uint8)
    kinds = [_matches(pixels[i], imgs[i], PAD) for i in range(64)]
    assert all(p or m for p, m in kinds)
    mirrored_only = sum(m and not p for p, m in kinds)
    assert (mirrored_only > 0) == flips


def test_loader_epochs_and_workers() -> None:
    torch = pytest.importorskip("torch")
    from specdeploy.loader import make_loader

    assert data.make_loader is make_loader  # lazily re-exported by the torch-free package
    ds = data.load("cifar10-samples", "test")
    loader = make_loader(ds, 4, train=True, augment=True, seed=3)
    e0 = torch.cat([b[0] for b in loader])
    e1 = torch.cat([b[0] for b in loader])
    assert not torch.equal(e0, e1)  # a new epoch reshuffles and re-augments
    fresh = make_loader(ds, 4, train=True, augment=True, seed=3)
    assert torch.equal(e0, torch.cat([b[0] for b in fresh]))
    workers = make_loader(ds, 4, train=True, augment=True, seed=3, num_workers=2)
    assert torch.equal(e0, torch.cat([b[0] for b in workers]))
