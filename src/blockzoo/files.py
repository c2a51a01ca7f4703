"""Atomic file writes, the one way blockzoo writes a file that must never be seen half-written (checkpoints, results,
reports, exports, caches, downloads).

``atomic_write(path, write)`` calls ``write(tmp)`` on a temporary file ``.<name>.<random>.tmp`` next to ``path``,
fsyncs it and moves it over ``path`` with ``os.replace``; on any error the temporary file is removed and nothing at
``path`` changes. A killed process can leave the temporary file behind:
:func:`blockzoo.train.checkpoint.remove_stale_temp_files` removes exactly that pattern.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

__all__ = ["atomic_write", "atomic_write_text"]


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], *, mode: int = 0o644) -> None:
    """``write(tmp)`` writes the content to the path it is given; then it replaces ``path`` in one step (the folder
    is created if needed; the file gets permissions ``mode``)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write` of UTF-8 ``text``."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    atomic_write(path, write)
