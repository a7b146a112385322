"""Crash-safe file writes shared by checkpoints, fixed-point files and sweep tables.

:func:`atomic_write` writes ``path`` through a temporary file next to it,
``.<name>.tmp-<pid>-<token>``: the data is written and fsynced, the temporary replaces ``path``
with :func:`os.replace` and the directory is fsynced, so a crash at any moment leaves either the
old file or the new one, and the rename itself survives a power loss. While it writes, the
writer holds an exclusive ``flock`` on its temporary file; the kernel drops that lock when the
process exits, however it exits. A temporary file whose lock can be taken therefore belongs to
no running writer: it is what a killed process left behind, and
:func:`remove_stale_temporaries` deletes it (a full disk would otherwise stay full of them).
A failed write (e.g. ``ENOSPC``) removes its own temporary file before the error propagates.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

try:  # POSIX only; elsewhere a temporary is known stale only if this process wrote it
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_write", "fsync_directory", "remove_stale_temporaries", "temporary_prefix"]

logger = logging.getLogger(__name__)


def temporary_prefix(path: str | os.PathLike) -> str:
    """File-name prefix of the temporaries of ``path``: ``.<name>.tmp-``."""
    return f".{Path(path).name}.tmp-"


def fsync_directory(directory: str | os.PathLike) -> None:
    """Flush a directory's entries (a rename or unlink in it) to disk.

    A no-op where directories cannot be opened or fsynced (Windows, some network file systems).
    """
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platform without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file system without directory fsync
        pass
    finally:
        os.close(fd)


def _lock(fd: int, *, blocking: bool) -> bool:
    if fcntl is None:  # pragma: no cover - Windows
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` atomically and durably: ``write(fh)`` fills a locked temporary file.

    Args:
        path: the file to (re)place.
        write: called once with a binary file object open for writing; it must not close it.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: the write, fsync or rename failed (the temporary file has been removed; an
            existing ``path`` is untouched). Errors raised by ``write`` propagate the same way.
    """
    path = Path(path)
    tmp = path.with_name(f"{temporary_prefix(path)}{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        _lock(fd, blocking=True)
        with os.fdopen(fd, "wb", closefd=False) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)  # releases the lock
    fsync_directory(path.parent)
    return path


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of ``path`` that no running writer holds.

    A temporary ``.<name>.tmp-*`` next to ``path`` is stale when its ``flock`` can be taken (its
    writer has exited). Without ``flock`` (Windows) only temporaries named with this process's
    id are removed. Files that cannot be opened or removed are left alone.

    Args:
        path: the file whose temporaries to look for (it need not exist).

    Returns:
        The files removed.
    """
    path = Path(path)
    prefix = temporary_prefix(path)
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix)]
    except OSError:
        return []
    removed = []
    for name in names:
        cand = path.parent / name
        if fcntl is None:  # pragma: no cover - Windows
            if not name[len(prefix):].startswith(f"{os.getpid()}-"):
                continue
            with contextlib.suppress(OSError):
                cand.unlink()
                removed.append(cand)
            continue
        try:
            fd = os.open(cand, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if _lock(fd, blocking=False):
                with contextlib.suppress(OSError):
                    cand.unlink()
                    removed.append(cand)
        finally:
            os.close(fd)
    if removed:
        fsync_directory(path.parent)
        logger.warning(
            "removed %d stale temporary file(s) left by an interrupted write of %s: %s",
            len(removed), path, ", ".join(p.name for p in removed),
        )
    return removed
