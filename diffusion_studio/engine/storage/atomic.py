"""One atomic writer for every file the app writes.

A file is written to a temporary file in the same folder, flushed and fsynced,
then renamed over the target (``os.replace``, atomic on POSIX and Windows). A
crash, a kill or a full disk part-way leaves the previous file intact and the
temporary file removed (a kill -9 can leave a ``.NAME.*.tmp`` behind; it never
replaces the target).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import shutil
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed over
    ``path``, on any exception it is removed. For writers that want a file name
    (PIL, numpy): ``with atomic_path(p) as tmp: image.save(tmp, format="PNG")``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would
        # (the old file's mode, or 0666 minus the umask)
        with contextlib.suppress(OSError):
            os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's umask, read without changing it (Linux: /proc), else 0o022."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(f)`` on a binary file that replaces ``path`` only when it returns."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """``data`` written atomically; a full disk raises DiskFullError (one line: the
    folder, the space free and the space needed), with the previous file intact."""
    try:
        return write_atomic(path, lambda f: f.write(data))
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError.for_write(Path(path), len(data)) from None
        raise


class DiskFullError(OSError):
    """The disk (or quota) filled up while writing; nothing was replaced."""

    @classmethod
    def for_write(cls, path: Path, size: int) -> "DiskFullError":
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = 0
        mb = lambda b: f"{b / 1e6:,.1f} MB"  # noqa: E731
        return cls(errno.ENOSPC, f"the disk holding {path.parent} is full ({mb(free)} free, {path.name} needs "
                                 f"{mb(size)}); free some space and try again (earlier files are intact)")

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_serialized_atomic(path: str | os.PathLike, save: Callable[[BinaryIO], Any]) -> Path:
    """Serialise to memory with ``save(buffer)`` first (checkpoints are a few MB), then
    write the bytes atomically: so a full disk is reported with the size needed."""
    buffer = io.BytesIO()
    save(buffer)
    return write_bytes_atomic(path, buffer.getvalue())


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """JSON (indented, no NaN or infinity: they are not JSON) written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=1, allow_nan=False))


class NotWritableError(OSError):
    """An output location that cannot be written (checked before any work)."""


def check_writable(path: str | os.PathLike, *, is_dir: bool = False) -> None:
    """Make sure ``path`` (a file, or a folder when ``is_dir``) can be written, before
    spending minutes on what will go there, and leave nothing behind: in the nearest
    folder that exists, a temporary file is created and removed (the folders that
    do not exist yet would be created there). Raises NotWritableError with one line."""
    path = Path(path).absolute()
    if not is_dir and path.is_dir():
        raise NotWritableError(f"{path} is a folder; name a file to write")
    if is_dir and path.exists() and not path.is_dir():
        raise NotWritableError(f"{path} is a file; name a folder")
    folder = path if is_dir else path.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "a file stands where a folder is needed")
        fd, tmp = tempfile.mkstemp(dir=existing, prefix=".write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise NotWritableError(f"cannot write to {folder} ({reason}); choose another output location") from None
