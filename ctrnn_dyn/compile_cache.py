"""XLA's persistent compilation cache for the ``ctrnn-dyn`` command, in a private directory.

A first call of an analysis on new shapes compiles its programs (seconds); within one process
they are reused, but every new process compiles them again. The ``ctrnn-dyn`` command turns on
JAX's persistent compilation cache (``jax_compilation_cache_dir``) so that a second process
loads the compiled programs from disk instead. Importing the package never does this: it is a
process-wide JAX setting, made only by :func:`enable`, which the command calls and a user may
call in their own program.

Compiled programs are native code, so the cache is trusted as :mod:`ctrnn_dyn.native`'s
kernels are: it lives in ``$CTRNN_DYN_CACHE/xla/`` (default ``~/.cache/ctrnn_dyn/xla``),
created with mode ``0700``, and is used only if every directory from the cache root down is
this user's and writable by nobody else, and every entry already in it is a plain file of this
user's; otherwise the command runs without it, with a warning. ``CTRNN_DYN_COMPILE_CACHE=0``
turns it off.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from ctrnn_dyn._private import Untrusted, cache_root, check_private, private_dirs

__all__ = ["ENV_SWITCH", "enable"]

#: Environment variable: ``0`` leaves JAX's persistent compilation cache off.
ENV_SWITCH = "CTRNN_DYN_COMPILE_CACHE"

_log = logging.getLogger(__name__)


def _check_entries(directory: Path) -> None:
    """Raise :class:`Untrusted` unless everything under ``directory`` is this user's.

    JAX writes its entries with the process's umask; inside the ``0700`` directory nobody else
    can reach them, and any group or world write bit (a permissive umask) is cleared here.
    """
    for root, dirs, files in os.walk(directory, followlinks=False):
        for name in dirs:
            check_private(Path(root) / name, directory=True)
        for name in files:
            path = Path(root) / name
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                check_private(path, directory=False)  # raises, naming what is wrong
            if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                os.chmod(path, st.st_mode & 0o755)


def enable() -> Path | None:
    """Point JAX's persistent compilation cache at the private directory; returns it, or
    ``None`` when the cache stays off (switched off, or the directory is not private).

    Every compiled program is cached, however short its compilation (the finder's are each
    well under JAX's default threshold of one second), so a second process compiles nothing
    that the first compiled. This changes JAX's configuration for the whole process.
    """
    if os.environ.get(ENV_SWITCH, "1").strip() == "0":
        return None
    try:
        directory = private_dirs(cache_root(), "xla")
        _check_entries(directory)
    except Untrusted as why:
        _log.warning("ctrnn_dyn: the compilation cache is not private (%s): running without "
                     "it", why)
        return None
    except OSError as err:
        _log.warning("ctrnn_dyn: cannot use the compilation cache (%s): running without it", err)
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
