r"""Compiled CPU kernels for the two recurrences of :mod:`ctrnn_dyn.fast_path`.

XLA runs the forward and adjoint loops of a CT-RNN as one small matmul plus a few elementwise
kernels per time step, each kernel paying a fixed launch cost, and every matmul on one core: at
H = 128, B = 64 the matmuls are too small for XLA to split. The batch rows of a CT-RNN are
independent through time, though, so ``_native/recurrence.cc`` runs whole sequences for blocks
of rows on the workers of XLA's own thread pool, with no synchronisation per step, and fuses
each step's update into a register-tiled matmul:

.. math::

    \text{forward:}\quad x_t = c\,x_{t-1} + f(x_{t-1})\,W + \alpha E_{t-1},\qquad
    \text{adjoint:}\quad \mu_{t-1} \mathrel{+}= c\,\mu_t + a\,f'(x_t)\,(\mu_t W)

(``W = K α`` forward, ``Kᵀ`` in the adjoint; ``f'`` from the rates, so ``f`` is tanh or relu).

The source is compiled once per machine, on first use, with the C++ compiler on ``PATH``
(``$CXX``, else ``c++``) against the XLA FFI headers that ship with ``jaxlib``, and cached under
``$CTRNN_DYN_CACHE`` (default ``~/.cache/ctrnn_dyn``) by a hash of the source, the compiler,
the flags, ``jax`` and the CPU. When there is no compiler, or the build fails,
:func:`available` returns ``False`` and :mod:`ctrnn_dyn.fast_path` runs the same loops in XLA
(:func:`status` says why). ``CTRNN_DYN_NATIVE=0`` turns the kernels off.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import inspect
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import jax

__all__ = [
    "available", "status", "ENV_SWITCH", "FORWARD_TARGET", "BACKWARD_TARGET", "TANH", "RELU",
]

#: Environment variable: ``0`` keeps the XLA loops.
ENV_SWITCH = "CTRNN_DYN_NATIVE"
#: FFI target names registered by :func:`load` (CPU only).
FORWARD_TARGET = "ctrnn_dyn_forward"
BACKWARD_TARGET = "ctrnn_dyn_backward"
#: The kernels' activation codes (their ``activation`` attribute).
TANH, RELU = 0, 1

SOURCE = Path(__file__).with_name("_native") / "recurrence.cc"
_log = logging.getLogger(__name__)
_status = "not loaded yet"
_lock = threading.Lock()


def _cache_root() -> Path:
    return Path(os.environ.get("CTRNN_DYN_CACHE") or Path.home() / ".cache" / "ctrnn_dyn")


def _cpu_fingerprint() -> str:
    """The CPU's feature flags: ``-march=native`` builds must not travel between CPUs."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "c++"))


#: Flags of every build, then the optional parts tried in order: libmvec's vector tanh (glibc on
#: x86-64), then ``-march=native``, then neither.
_FLAGS = ["-O3", "-std=c++20", "-shared", "-fPIC", "-w"]
_ATTEMPTS = [["-march=native", "-DCTRNN_DYN_LIBMVEC", "-lmvec"], ["-march=native"], []]


def _build(cxx: str, out: Path) -> None:
    """Compile the kernels into ``out`` with the first of :data:`_ATTEMPTS` that succeeds."""
    base = [cxx, *_FLAGS, "-I", jax.ffi.include_dir(), str(SOURCE)]
    errors = []
    for extra in _ATTEMPTS:
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            lib = Path(tmp) / out.name
            proc = subprocess.run(base + ["-o", str(lib)] + extra, capture_output=True, text=True)
            if proc.returncode == 0:
                os.replace(lib, out)  # atomic: concurrent builders race harmlessly
                return
            errors.append(proc.stderr.strip().splitlines()[-1:] or ["(no message)"])
    raise RuntimeError(f"{cxx} failed: {errors}")


def _library_path(cxx: str) -> Path:
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), version, cxx, jax.__version__, _cpu_fingerprint(),
                 repr((_FLAGS, _ATTEMPTS))):
        digest.update(part if isinstance(part, bytes) else part.encode())
    return _cache_root() / "native" / digest.hexdigest()[:16] / "librecurrence.so"


def _ffi_supported() -> bool:
    """``jax.ffi`` with ``ffi_call(..., vmap_method=..., input_output_aliases=...)``."""
    ffi = getattr(jax, "ffi", None)
    if ffi is None or not hasattr(ffi, "include_dir"):
        return False
    params = inspect.signature(ffi.ffi_call).parameters
    return "vmap_method" in params and "input_output_aliases" in params


def available() -> bool:
    """Build (once per machine) and register the kernels; ``True`` when they can be used."""
    with _lock:  # traced from several threads at once (sweep workers), it builds once
        return _load()


@functools.cache
def _load() -> bool:
    global _status
    if os.environ.get(ENV_SWITCH, "1") == "0":
        _status = f"off ({ENV_SWITCH}=0)"
        return False
    if not _ffi_supported():
        _status = f"jax {jax.__version__} lacks the jax.ffi this needs"
        _log.warning("ctrnn_dyn's compiled kernels are off, XLA loops run instead: %s", _status)
        return False
    cxx = _compiler()
    if cxx is None:
        _status = "no C++ compiler on PATH (set CXX)"
        _log.warning("ctrnn_dyn's compiled kernels are off, XLA loops run instead: %s", _status)
        return False
    try:
        lib_path = _library_path(cxx)
        if not lib_path.exists():
            lib_path.parent.mkdir(parents=True, exist_ok=True)
            _build(cxx, lib_path)
        lib = ctypes.cdll.LoadLibrary(str(lib_path))
        jax.ffi.register_ffi_target(FORWARD_TARGET, jax.ffi.pycapsule(lib.CtrnnDynForward),
                                    platform="cpu")
        jax.ffi.register_ffi_target(BACKWARD_TARGET, jax.ffi.pycapsule(lib.CtrnnDynBackward),
                                    platform="cpu")
    except (OSError, RuntimeError, AttributeError) as err:
        _status = f"build or load failed: {err}"
        _log.warning("ctrnn_dyn's compiled kernels are off, XLA loops run instead: %s", _status)
        return False
    _status = f"loaded from {lib_path}"
    return True


def status() -> str:
    """Why the kernels are, or are not, in use."""
    available()
    return _status
