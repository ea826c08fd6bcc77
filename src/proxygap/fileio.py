"""Atomic writes: a partial result never replaces a good one.

Files and directories are written under a hidden temporary sibling (same filesystem, so a
rename is atomic) and renamed into place only once complete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary sibling and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def temp_sibling(path: Path) -> Path:
    """A fresh hidden directory next to ``path`` (same filesystem, so rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()  # unlike tempfile.mkdtemp, keeps the usual permissions (umask), not 0700
    return tmp


def replace_dir(new: Path, path: Path) -> None:
    """Move the finished directory ``new`` to ``path``, so ``path`` is never half-written.

    An old ``path`` is moved aside first and deleted last, so a crash leaves either the old or
    the new directory complete (or, between the two renames, the old one under a hidden
    ``.name.old-*`` sibling).
    """
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(path, old)
    os.rename(new, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
