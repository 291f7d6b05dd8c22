"""Output files: checked before the work, never over an input, written atomically. The one way.

Why a module of its own: every verb that writes (train, eval, export, bench, memory, sweep, demo,
build) must follow the same three rules, and each is easy to get subtly wrong on its own:

1. Never overwrite an input. ``check_output`` compares the output with every input by resolved path
   *and* by inode (a hard link or a symlink to the input is still the input), and treats an input
   directory (a checkpoint) as all of the files inside it. ``--force`` does not lift this rule.
2. Refuse an existing output (an empty directory excepted) unless the user said ``--force``, and say
   so *before* the work: a
   training run must not be lost on "File exists" after it finished. Every verb calls
   ``check_outputs`` right after parsing, before it loads data or trains.
3. Write atomically: a temporary file next to the target, then ``os.replace``. An interrupted run
   leaves either the old file or the new one, never half a file. Directories (a checkpoint) are
   staged the same way: written into a temporary sibling, then renamed into place.

No torch, no numpy: the Jetson-side verbs use it too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

__all__ = ["OutputError", "check_output", "check_outputs", "atomic_path", "atomic_dir", "write_text",
           "write_bytes", "created_dirs"]

class OutputError(ValueError):
    """An output path would overwrite an input, already exists (without --force), or cannot be written."""


def _files_of(path: Path) -> list[Path]:
    """The path itself, and for a directory every file below it (a checkpoint is all of its files)."""
    if path.is_dir():
        return [path] + [p for p in path.rglob("*")]
    return [path]


def _same(a: Path, b: Path) -> bool:
    """Same file by resolved path, or by (device, inode) when both exist (hard links, bind mounts)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(child: Path, parent: Path) -> bool:
    c, p = child.resolve(), parent.resolve()
    return c == p or p in c.parents


def check_output(output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None] = (), *,
                 force: bool = False, kind: str = "file", flag: str = "output") -> Path:
    """Validate one output path before any work; returns it as a Path. Raises OutputError naming it.

    ``kind`` is "file" or "dir" (a directory the command creates, e.g. a checkpoint). An input
    directory counts as every file in it; an output directory may not contain an input either (it
    would be replaced as a whole).
    """
    out = Path(output)
    for raw in inputs:
        if raw is None:
            continue
        inp = Path(raw)
        if not inp.exists():
            continue
        clash = next((f for f in _files_of(inp) if _same(out, f)), None)
        if clash is None and kind == "dir" and out.exists() and _inside(inp, out):
            clash = inp  # replacing the directory would delete the input inside it
        if clash is not None:
            raise OutputError(f"{flag} {out} is the command's input {clash}: refusing to overwrite an input "
                              "(choose another path)")
    if out.exists() or out.is_symlink():
        if kind == "file" and out.is_dir():
            raise OutputError(f"{flag} {out} is a directory, expected a file path")
        if kind == "dir" and not out.is_dir():
            raise OutputError(f"{flag} {out} exists and is not a directory")
        if not force and not _empty_dir(out):  # an empty directory holds nothing to lose
            what = "directory" if out.is_dir() else "file"
            raise OutputError(f"{flag} {out} already exists ({what}); pass --force to replace it")
    parent = _existing_ancestor(out.parent)
    if not parent.is_dir():
        raise OutputError(f"{flag} {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {out}: directory {parent} is not writable")
    return out


def check_outputs(outputs: Sequence[tuple[str, str | os.PathLike[str] | None, str]],
                  inputs: Iterable[str | os.PathLike[str] | None] = (), *, force: bool = False) -> None:
    """``check_output`` for each (flag, path, kind) whose path is given; outputs may not repeat either."""
    inputs = list(inputs)
    seen: list[tuple[str, Path]] = []
    for flag, path, kind in outputs:
        if path is None:
            continue
        out = check_output(path, inputs, force=force, kind=kind, flag=flag)
        for other_flag, other in seen:
            if out.resolve() == other.resolve():
                raise OutputError(f"{flag} and {other_flag} are the same path {out}")
        seen.append((flag, out))


def _empty_dir(p: Path) -> bool:
    return p.is_dir() and not p.is_symlink() and next(p.iterdir(), None) is None


def _existing_ancestor(p: Path) -> Path:
    p = p if str(p) else Path(".")
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it is renamed onto ``target``.

    For writers that want a file name (onnx.save, savefig, csv): ``with atomic_path(p) as tmp:
    onnx.save(m, tmp)``. On an exception the temporary file is removed and ``target`` is untouched.
    The parent directories are created (and removed again on failure when they are left empty).
    """
    target = Path(target)
    with created_dirs(target.parent):
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()


def write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically (temporary file + rename)."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def save_figure(fig: Any, target: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically (format from the suffix, PNG without one) and close it,
    also when saving fails, so a failed plot leaves neither a partial file nor an open figure."""
    import matplotlib.pyplot as plt

    out = Path(target)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=dpi, format=out.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return out


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically (temporary file + rename)."""
    return write_bytes(target, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``target``; on success it becomes ``target``.

    An existing ``target`` is replaced only with ``force`` (it is moved aside first and deleted
    once the new one is in place, so a failure never leaves neither). On an exception the staged
    directory is deleted and ``target`` is untouched.
    """
    target = Path(target)
    with created_dirs(target.parent):
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            yield tmp
            os.chmod(tmp, 0o777 & ~_umask())
            if target.exists():
                if not force and not _empty_dir(target):
                    raise OutputError(f"{target} already exists; pass --force to replace it")
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
                os.replace(target, old / "x")
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def created_dirs(path: str | os.PathLike[str]) -> Iterator[Path]:
    """``mkdir -p path``; if the block fails, remove the directories this call created that are empty.

    So a failed command leaves no empty folders behind (a folder that received files stays).
    """
    path = Path(path)
    missing: list[Path] = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        for d in missing:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
