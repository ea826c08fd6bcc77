"""Atomic writes: a partial result never replaces a good one.

Files and directories are written under a hidden temporary sibling (same filesystem, so a
rename is atomic) and renamed into place only once complete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from proxygap.errors import ProxygapError, WriteError

# errno values that mean "the user's disk or permissions", never a bug: one line, exit 2.
WRITE_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EFBIG", "EIO")
    if hasattr(errno, name))


def os_error_reason(e: BaseException) -> str:
    """The OS's words for ``e`` on one line: "No space left on device", not a traceback."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def looks_like_io_error(e: BaseException) -> bool:
    """An OSError, or a Rust extension's io error (safetensors, tokenizers: "... (os error 28)")."""
    if isinstance(e, OSError):
        return True
    text = str(e)
    return "(os error " in text or "No space left on device" in text or "Read-only file system" in text


def write_error(path: str | Path, e: BaseException) -> WriteError:
    """A one-line :class:`WriteError` naming ``path`` and the OS error."""
    err = WriteError(f"cannot write {path}: {os_error_reason(e)}")
    err.errno = getattr(e, "errno", None)
    return err


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an I/O error raised while writing ``path`` into a one-line :class:`WriteError`."""
    try:
        yield
    except ProxygapError:
        raise
    except Exception as e:
        if looks_like_io_error(e):
            raise write_error(path, e) from e
        raise


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (same suffix, so writers that infer a format from it
    still do) to write; it replaces ``path`` only when the block completes (WriteError if the disk refuses)."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        with writing(path):
            yield tmp
            _fsync(tmp)  # on disk before the rename: after a power loss, the old file or the whole new one
            tmp.replace(path)
            _fsync(path.parent)
    finally:
        with contextlib.suppress(OSError):  # a refused write must not be masked by a refused clean-up
            tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary sibling and a rename (WriteError if the disk refuses)."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _fsync(path: Path) -> None:
    """Flush a file's (or a directory's entries') writes to the disk; a file system that cannot
    fsync a directory (EINVAL) is left as it is."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def temp_sibling(path: Path) -> Path:
    """A fresh hidden directory next to ``path`` (same filesystem, so rename is atomic)."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()  # unlike tempfile.mkdtemp, keeps the usual permissions (umask), not 0700
    return tmp


def replace_dir(new: Path, path: Path) -> None:
    """Move the finished directory ``new`` to ``path``, so ``path`` is never half-written.

    An old ``path`` is moved aside first and deleted last, so a crash leaves either the old or
    the new directory complete (or, between the two renames, the old one under a hidden
    ``.name.old-*`` sibling).
    """
    old = None
    with writing(path):
        for f in sorted(new.rglob("*")):  # the new directory's files on disk before it takes the name
            if f.is_file():
                _fsync(f)
        _fsync(new)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(path, old)
        try:
            os.rename(new, path)
        except BaseException:
            if old is not None:
                os.rename(old, path)  # put the old directory back
            raise
        _fsync(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def leftover_siblings(path: Path, kinds: tuple[str, ...] = ("tmp", "old")) -> list[Path]:
    """The hidden siblings a killed writer of ``path`` leaves: ``.name.tmp-XXXXXXXX`` (temp_sibling,
    atomic_file, with the file's suffix) and ``.name.old-XXXXXXXX`` (replace_dir), matched by those
    exact names, so that another directory named like one is never taken for one."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    name = re.compile(rf"^\.{re.escape(path.name)}\.({'|'.join(kinds)})-[0-9a-f]{{8}}(\.\w+)?$")
    return [p for p in path.parent.iterdir() if name.match(p.name)]


def remove_leftovers(path: Path) -> None:
    """Delete ``leftover_siblings(path)``: only for a caller that holds ``path`` alone."""
    for p in leftover_siblings(path):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def restore_replaced(path: Path) -> Path | None:
    """Undo a ``replace_dir`` killed between its two renames: ``path`` is then missing and the old
    directory sits in a ``.name.old-*`` sibling. Renames the newest such sibling back and returns
    the name it had; None where there is nothing to restore (``path`` exists, or no sibling)."""
    path = Path(path)
    if path.exists():
        return None
    olds = [p for p in leftover_siblings(path, kinds=("old",)) if p.is_dir()]
    if not olds:
        return None
    newest = max(olds, key=lambda p: p.stat().st_mtime)
    with writing(path):
        os.rename(newest, path)
    return newest
