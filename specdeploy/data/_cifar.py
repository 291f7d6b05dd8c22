"""CIFAR-10 from the user's own copy of an official archive, binary or python version, packed or extracted.

Supported layouts (https://www.cs.toronto.edu/~kriz/cifar.html), looked for in this order, because
an extracted directory is the fastest to read and the binary format needs no unpickling at all:

1. ``cifar-10-batches-bin/`` (or ``data_dir`` itself) with ``data_batch_1.bin .. data_batch_5.bin``,
   ``test_batch.bin``, ``batches.meta.txt``: records of 1 label byte + 3072 pixel bytes (R, G, B
   planes of 32x32, row-major).
2. ``cifar-10-binary.tar.gz``, the same files read straight from the archive with ``tarfile``.
3. ``cifar-10-batches-py/`` with ``data_batch_1 .. 5``, ``test_batch``, ``batches.meta``: pickled
   dicts ``{b"data": uint8 ndarray [N, 3072], b"labels": list[int], ...}``.
4. ``cifar-10-python.tar.gz``, read straight from the archive.

Archives are never extracted to disk: the data dir may be read-only and a half-extracted tree is a
worse failure mode than reading 160 MB of gzip once.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._common import ArrayDataset, DataError, DataNotFoundError

__all__ = ["CIFAR10_CLASSES", "load_cifar10", "restricted_loads", "RestrictedUnpickler"]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

_RECORD = 1 + 3 * 32 * 32
_BIN_FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
_PY_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_BIN_META = "batches.meta.txt"
_PY_META = "batches.meta"


# ------------------------------------------------------------------------------ restricted pickle

def _numpy_callables() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR-10 python batch may reference, keyed by (module, name) as pickled.

    What the files actually contain (checked with ``pickletools.genops``):
    * the official archive (Python 2 cPickle, protocol 2, numpy 1.x):
      ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``;
    * a re-pickle under Python 3 / numpy 2 (protocols 0-3 use ``_reconstruct`` from
      ``numpy._core.multiarray``; protocol 5 uses ``numpy._core.numeric._frombuffer``), and
      protocols 0-2 encode ``bytes`` as ``_codecs.encode(str, "latin1")``.
    Both ``numpy.core`` and ``numpy._core`` spellings map to the same objects, resolved here from
    numpy itself, never by importing the module name found in the file.
    """
    try:
        from numpy._core import multiarray as _ma, numeric as _num  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as _ma, numeric as _num  # type: ignore[no-redef]
    table: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core", "numpy._core"):
        table[(f"{mod}.multiarray", "_reconstruct")] = _ma._reconstruct
        if hasattr(_num, "_frombuffer"):
            table[(f"{mod}.numeric", "_frombuffer")] = _num._frombuffer
    table[("_codecs", "encode")] = _latin1_encode
    return table


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode`` as Python 3 pickles ``bytes`` (protocols 0-2): latin-1 only.

    The real ``codecs.encode`` accepts any codec name (zlib, bz2, ...); allowing only the one
    encoding pickle itself uses keeps the allow-list a list of pure, bounded functions.
    """
    if encoding.replace("_", "-").lower() not in ("latin1", "latin-1", "iso-8859-1") or not isinstance(obj, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return obj.encode("latin-1", errors)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild plain containers and numpy arrays and nothing else.

    Why: ``pickle.load`` on a file from the internet executes arbitrary code (any pickled
    ``__reduce__`` may name ``os.system``). The CIFAR-10 python batches are dicts of bytes, lists of
    ints and one uint8 array; dicts, lists, tuples, str, bytes and ints are built by pickle opcodes
    without any global lookup, and every global lookup (GLOBAL, STACK_GLOBAL, INST, extension
    codes) goes through ``find_class``. So overriding ``find_class`` to resolve only the numpy
    array-reconstruction functions listed in ``_numpy_callables`` (each a pure constructor: it
    builds an array or dtype from a shape, a dtype spec and bytes) closes the door on code
    execution. Anything else raises ``pickle.UnpicklingError`` before it is called.
    ``persistent_load`` is refused too (the default already is; made explicit).
    """

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if RestrictedUnpickler._allowed is None:
            RestrictedUnpickler._allowed = _numpy_callables()
        try:
            return RestrictedUnpickler._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name}: a CIFAR-10 batch only needs numpy arrays"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def restricted_loads(raw: bytes) -> Any:
    """Unpickle ``raw`` with ``RestrictedUnpickler``; ``encoding="bytes"`` as the official
    CIFAR-10 page prescribes, so Python 2 ``str`` (keys and array payloads) arrive as ``bytes``."""
    return RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()


# ---------------------------------------------------------------------------------- batch parsers

def _parse_bin_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Binary batch -> (uint8 [N, 32, 32, 3], int64 [N]); ``where`` names the file in errors."""
    if len(raw) == 0 or len(raw) % _RECORD:
        raise DataError(
            f"{where}: size {len(raw)} bytes is not a positive multiple of the {_RECORD}-byte CIFAR-10 record "
            "(1 label byte + 3072 pixel bytes); the file is truncated or not a CIFAR-10 binary batch"
        )
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{where}: label byte {int(labels.max())} out of range 0..9 (not a CIFAR-10 batch)")
    images = rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _key(d: dict[Any, Any], name: str) -> Any:
    """``d[b"name"]`` or ``d["name"]``: official files have bytes keys, Python 3 re-pickles str keys."""
    if name.encode() in d:
        return d[name.encode()]
    if name in d:
        return d[name]
    raise KeyError(name)


def _parse_py_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Pickled python batch -> (uint8 [N, 32, 32, 3], int64 [N]), via ``restricted_loads``."""
    try:
        obj = restricted_loads(raw)
    except pickle.UnpicklingError as e:
        raise DataError(f"{where}: rejected pickle ({e})") from e
    except Exception as e:  # truncated/garbled pickles raise EOFError, ValueError, TypeError, ...
        raise DataError(f"{where}: corrupt pickle ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a dict batch, got {type(obj).__name__}")
    try:
        data, labels = _key(obj, "data"), _key(obj, "labels")
    except KeyError as e:
        raise DataError(f"{where}: batch dict lacks the {e} entry") from e
    if isinstance(data, (bytes, bytearray)):
        data = np.frombuffer(data, dtype=np.uint8)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.size % 3072:
        raise DataError(f"{where}: 'data' must be a uint8 array of 3072-byte rows, got {getattr(data, 'dtype', type(data))}")
    data = data.reshape(-1, 3072)
    if not isinstance(labels, (list, tuple, np.ndarray)) or len(labels) != data.shape[0]:
        raise DataError(f"{where}: 'labels' must be a list of {data.shape[0]} ints")
    try:
        lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: 'labels' are not integers ({e})") from e
    if lab.size and (lab.min() < 0 or lab.max() > 9):
        raise DataError(f"{where}: labels out of range 0..9")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), lab


def _parse_bin_meta(raw: bytes, where: str) -> list[str]:
    names = [ln.strip() for ln in raw.decode("ascii", "replace").splitlines() if ln.strip()]
    if len(names) != 10:
        raise DataError(f"{where}: expected 10 class names, got {len(names)}")
    return names


def _parse_py_meta(raw: bytes, where: str) -> list[str]:
    try:
        obj = restricted_loads(raw)
        names = _key(obj, "label_names")
        out = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    except pickle.UnpicklingError as e:
        raise DataError(f"{where}: rejected pickle ({e})") from e
    except Exception as e:
        raise DataError(f"{where}: corrupt meta file ({type(e).__name__}: {e})") from e
    if len(out) != 10:
        raise DataError(f"{where}: expected 10 label_names, got {len(out)}")
    return out


# ---------------------------------------------------------------------------------------- sources

def _read_dir(d: Path, files: list[str], meta: str) -> tuple[dict[str, bytes], bytes | None]:
    missing = [f for f in files if not (d / f).is_file()]
    if missing:
        raise DataNotFoundError(f"CIFAR-10 directory {d} is incomplete: missing {', '.join(missing)}")
    out: dict[str, bytes] = {}
    for f in files:
        try:
            out[f] = (d / f).read_bytes()
        except OSError as e:
            raise DataError(f"{d / f}: cannot read ({e})") from e
    try:
        meta_raw = (d / meta).read_bytes() if (d / meta).is_file() else None
    except OSError as e:
        raise DataError(f"{d / meta}: cannot read ({e})") from e
    return out, meta_raw


def _read_tar(path: Path, files: list[str], meta: str) -> tuple[dict[str, bytes], bytes | None]:
    """Read the wanted members of a CIFAR tarball in one pass, matching by base name."""
    wanted = set(files) | {meta}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted and base not in found:
                    fh = tar.extractfile(member)
                    if fh is not None:
                        found[base] = fh.read()
                        if len(found) == len(wanted):
                            break
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(f"{path}: corrupt or truncated archive ({type(e).__name__}: {e}); re-download it") from e
    missing = [f for f in files if f not in found]
    if missing:
        raise DataError(f"{path}: archive lacks {', '.join(missing)}; is this the official CIFAR-10 archive?")
    return {f: found[f] for f in files}, found.get(meta)


def _candidates(data_dir: Path) -> list[tuple[str, Path]]:
    """(format, path) pairs to try in order; ``data_dir`` may itself be an archive or batches dir."""
    if data_dir.is_file():
        fmt = "py-tar" if "python" in data_dir.name else "bin-tar"
        return [(fmt, data_dir)]
    return [
        ("bin-dir", data_dir),
        ("bin-dir", data_dir / "cifar-10-batches-bin"),
        ("bin-tar", data_dir / "cifar-10-binary.tar.gz"),
        ("py-dir", data_dir),
        ("py-dir", data_dir / "cifar-10-batches-py"),
        ("py-tar", data_dir / "cifar-10-python.tar.gz"),
    ]


def _present(fmt: str, path: Path) -> bool:
    if fmt == "bin-dir":
        return (path / "data_batch_1.bin").is_file() or (path / "test_batch.bin").is_file()
    if fmt == "py-dir":
        return (path / "data_batch_1").is_file() or (path / "test_batch").is_file()
    return path.is_file()


def load_cifar10(split: str, data_dir: Path) -> ArrayDataset:
    """Load the CIFAR-10 ``split`` ("train": 5 batches, "test": 1) from the first layout found in ``data_dir``."""
    tried = _candidates(data_dir)
    for fmt, path in tried:
        if not _present(fmt, path):
            continue
        binary = fmt.startswith("bin")
        files = (_BIN_FILES if binary else _PY_FILES)[split]
        meta = _BIN_META if binary else _PY_META
        if fmt.endswith("dir"):
            blobs, meta_raw = _read_dir(path, files, meta)
            where: Callable[[str], str] = lambda f, p=path: str(p / f)  # noqa: E731
        else:
            blobs, meta_raw = _read_tar(path, files, meta)
            where = lambda f, p=path: f"{p}:{f}"  # noqa: E731
        parse = _parse_bin_batch if binary else _parse_py_batch
        parts = [parse(blobs[f], where(f)) for f in files]
        classes = CIFAR10_CLASSES
        if meta_raw is not None:
            classes = (_parse_bin_meta if binary else _parse_py_meta)(meta_raw, where(meta))
        images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        return ArrayDataset(images, labels, "cifar10", classes, str(path))
    looked = "\n  ".join(str(p) for p in dict.fromkeys(p for _, p in tried))
    raise DataNotFoundError(
        f"CIFAR-10 not found in {data_dir}. Looked for:\n  {looked}\n"
        "Download cifar-10-binary.tar.gz (or cifar-10-python.tar.gz) yourself from "
        "https://www.cs.toronto.edu/~kriz/cifar.html and pass its directory with --data-dir "
        "(data_dir=...); specdeploy never downloads data."
    )
