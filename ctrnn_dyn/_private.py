"""Private cache directories: created with mode ``0700`` and trusted only when this user owns
them and nobody else can write to them.

Anything this package loads from disk that it did not just write (the compiled kernels of
:mod:`ctrnn_dyn.native`, XLA's persistent compilation cache for the ``ctrnn-dyn`` command)
lives under :func:`cache_root` and is read only after :func:`private_dirs` and
:func:`check_private` have vouched for every directory from the root down and for the file.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

__all__ = ["CACHE_ENV", "Untrusted", "cache_root", "check_private", "private_dirs"]

#: Environment variable: the cache directory (default ``~/.cache/ctrnn_dyn``).
CACHE_ENV = "CTRNN_DYN_CACHE"


class Untrusted(Exception):
    """A cache path cannot be trusted (owner, permissions or kind)."""


def cache_root() -> Path:
    """``$CTRNN_DYN_CACHE``, or ``~/.cache/ctrnn_dyn``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ctrnn_dyn")


def check_private(path: Path, *, directory: bool) -> None:
    """Raise :class:`Untrusted` unless ``path`` is a plain directory (or file), this user's,
    and writable by nobody else."""
    st = os.lstat(path)
    kind_ok = stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)
    if not kind_ok:
        raise Untrusted(f"{path} is not a plain {'directory' if directory else 'file'}")
    if st.st_uid != os.geteuid():
        raise Untrusted(f"{path} is owned by uid {st.st_uid}, not by this user ({os.geteuid()})")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise Untrusted(f"{path} is writable by group or others (mode {st.st_mode & 0o777:o})")


def private_dirs(root: Path, *parts: str) -> Path:
    """Create ``root/parts...`` (mode ``0700``, whatever the umask), check every directory from
    ``root`` down, and return the deepest.

    Raises:
        Untrusted: a directory on the way is not this user's or is writable by others.
    """
    leaf = root.joinpath(*parts)
    for missing in reversed([p for p in (leaf, *leaf.parents) if not p.exists()]):
        with contextlib.suppress(FileExistsError):  # a concurrent process made it first
            missing.mkdir(mode=0o700)
            os.chmod(missing, 0o700)
    path = root.resolve()
    check_private(path, directory=True)
    for part in parts:
        path = path / part
        check_private(path, directory=True)
    return path
