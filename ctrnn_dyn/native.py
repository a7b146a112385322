r"""Compiled CPU kernels, built and loaded only from a private, verified cache: the two
recurrences of :mod:`ctrnn_dyn.fast_path`, Levenberg–Marquardt's exact step for the
fixed-point finder, and Benettin's iteration of Lyapunov spectra (its Gram–Schmidt step, and
for a CT-RNN the whole iteration).

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
With noise, a second forward kernel adds the step's :math:`\alpha s\,\xi_{t-1}` to
:math:`\alpha E_{t-1}` first, drawing :math:`\xi` from the stream of :mod:`ctrnn_dyn.noise`
in the step itself (vectorised Philox and libmvec's ``logf``), so that no noise array is
written or read.

``_native/ridge_solve.cc`` solves LM's step :math:`(J^\top J + \mu I)\,v = J^\top r` for a
whole batch of starts in one call, given :math:`J^\top J`, :math:`J` itself (then forming
:math:`J^\top J`) or, for a CT-RNN, the parts its Gauss–Newton matrix is made of
(:meth:`ctrnn_dyn.dynamics.OneStepMap.gauss_newton`; formed in the kernel, so that no matrix
per start passes through memory): Cholesky and two triangular solves, up to 256 units eight
systems at a time (sixteen in float32), each step of the algorithm one vector operation across
them, above it one system at a time in panels of four rows. Under ``vmap`` XLA makes one LAPACK
call per start, whose fixed cost dominates at 16 units, and its triangular solves cost nearly
as much as the factorisation at 100. The finder uses it where
:func:`ctrnn_dyn.fixed_points.solvers.linear_solve_path` says so, and each
:class:`~ctrnn_dyn.fixed_points.FixedPoints` records it (``solver_path``).

``_native/lm_tanh_rnn.cc`` runs the finder's whole Levenberg–Marquardt iteration for a one-layer
tanh RNN (``x' = tanh(W x + c)``), each start to its end on one core (a rejected step refactors
only :math:`J^\top J + \mu I`), with no XLA program per iteration:
:mod:`ctrnn_dyn.fixed_points.native_lm`.

``_native/gram_schmidt.cc`` re-orthonormalises Benettin's tangent basis (``k`` rows of ``n``)
for a whole batch of starts and networks in one call: Gram–Schmidt with every vector projected
twice, each basis finished while it sits in L1. XLA runs the same algorithm as dozens of small
loops per step, each a pass over the whole batch (several MB for a sharded ensemble): a fifth of
a classification's time on 100-unit networks. :func:`ctrnn_dyn.attractors.lyapunov.qr_path`
says where it runs; :class:`~ctrnn_dyn.attractors.LyapunovSpectrum` and
:class:`~ctrnn_dyn.attractors.DynamicsClassification` record it (``qr_path``).

``_native/benettin.cc`` runs the whole of Benettin's iteration for a CT-RNN map: a start's
state and its ``k`` tangent vectors are rows of one register-tiled product with ``W = K α``
(the tiles of ``recurrence.cc``, shared in ``tiles.h``),

.. math::

    x' = c\,x + f(x)\,W + d,\qquad q' = c\,q + (f'(x)\,q)\,W,

the basis re-orthonormalised in cache (``gram_schmidt.h``), then the orbit a classification
tests for an exact return. XLA steps the state and the basis as separate products of a few rows
each, at about a third of the kernel's rate.
:func:`ctrnn_dyn.attractors.lyapunov.tangent_path` says where it runs; the spectra and
classifications record it (``tangent_path``).

**When.** :func:`prepare` builds (once per machine) and loads the kernels. It is called by
:func:`ctrnn_dyn.train.train`, :func:`~ctrnn_dyn.train.make_train_step`, the ensembles, an
eager :func:`~ctrnn_dyn.fast_path.fast_forward` and the fixed-point finder, always before
tracing and only when JAX's default backend is the CPU. Tracing never builds anything: a program
traced before :func:`prepare` (or with ``CTRNN_DYN_NATIVE=0``, or where the build fails) runs
the same computations in XLA, and :func:`status`, the training result and the fixed points say
which path ran.

**Where, and how it is trusted.** The library lives under ``$CTRNN_DYN_CACHE`` (default
``~/.cache/ctrnn_dyn``) in ``native/<key>/``, where the key hashes everything that could change
the binary: the sources, the compiler's path and ``--version``, the flags, ``jax`` and ``jaxlib``
versions, the XLA FFI headers and the CPU's feature flags (``-march=native`` builds must not
travel). Before anything is loaded:

- every directory from the cache root down, and the library and its manifest, must be owned by
  this user and writable by nobody else (directories are created with mode ``0700``); otherwise
  the cache is not used, a warning says why, and the kernels are built in a fresh private
  temporary directory for this process instead;
- the library's SHA-256 must equal the one its manifest recorded when it was built, for the same
  key; a truncated, corrupt or swapped library is rebuilt, never loaded;
- the compiler runs with a timeout (:data:`BUILD_TIMEOUT_ENV`, default 300 s, for each source's
  compile and for the link); a failure or a timeout leaves the XLA loops in use, with a warning.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax

from ctrnn_dyn._private import CACHE_ENV, Untrusted, cache_root, check_private, private_dirs

__all__ = [
    "prepare", "available", "suspended", "status", "kernel_key", "ENV_SWITCH", "CACHE_ENV",
    "BUILD_TIMEOUT_ENV", "FORWARD_TARGET", "FORWARD_NOISE_TARGET", "BACKWARD_TARGET",
    "RIDGE_SOLVE_TARGET", "GAUSS_NEWTON_SOLVE_TARGET", "GRAM_SCHMIDT_TARGET", "BENETTIN_TARGET",
    "LM_TANH_RNN_TARGET",
    "TANH", "RELU",
]

#: Environment variable: ``0`` keeps the XLA loops.
ENV_SWITCH = "CTRNN_DYN_NATIVE"
#: Environment variable: seconds the compiler may run (default 300).
BUILD_TIMEOUT_ENV = "CTRNN_DYN_BUILD_TIMEOUT"
#: FFI target names registered by :func:`prepare` (CPU only).
FORWARD_TARGET = "ctrnn_dyn_forward"
#: The forward recurrence that also draws the noise of :mod:`ctrnn_dyn.noise` in each step.
FORWARD_NOISE_TARGET = "ctrnn_dyn_forward_noise"
BACKWARD_TARGET = "ctrnn_dyn_backward"
#: Levenberg–Marquardt's exact step ``(A + ridge I)⁻¹ b`` for a batch of small systems
#: (:func:`ctrnn_dyn.fixed_points.solvers._ridge_solve`).
RIDGE_SOLVE_TARGET = "ctrnn_dyn_ridge_solve"
#: The same step with a CT-RNN's Gauss–Newton matrix formed in the kernel from its parts
#: (:func:`ctrnn_dyn.fixed_points.solvers._gauss_newton_solve`).
GAUSS_NEWTON_SOLVE_TARGET = "ctrnn_dyn_gauss_newton_solve"
#: The thin QR (``Q``, ``|diag R|``) of a batch of small bases by Gram–Schmidt
#: (:func:`ctrnn_dyn.attractors.lyapunov._orthonormalise`).
GRAM_SCHMIDT_TARGET = "ctrnn_dyn_gram_schmidt"
#: Benettin's QR iteration of a CT-RNN map, the state and its tangent basis stepped together
#: (:mod:`ctrnn_dyn.attractors._benettin`).
BENETTIN_TARGET = "ctrnn_dyn_benettin"
#: Levenberg–Marquardt to the fixed points of a one-layer tanh RNN, every start's whole run
#: (:mod:`ctrnn_dyn.fixed_points.native_lm`).
LM_TANH_RNN_TARGET = "ctrnn_dyn_lm_tanh_rnn"
#: The kernels' activation codes (their ``activation`` attribute).
TANH, RELU = 0, 1

_NATIVE = Path(__file__).with_name("_native")
#: The kernels' sources, compiled into one library, and the headers they share.
SOURCES = (_NATIVE / "recurrence.cc", _NATIVE / "ridge_solve.cc", _NATIVE / "gram_schmidt.cc",
           _NATIVE / "benettin.cc", _NATIVE / "lm_tanh_rnn.cc")
HEADERS = (_NATIVE / "parallel.h", _NATIVE / "floats.h", _NATIVE / "tiles.h",
           _NATIVE / "gram_schmidt.h")
MANIFEST = "manifest.json"
_log = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict = {"loaded": False, "tried": False, "status": "not prepared", "key": None}
_suspended = threading.local()

#: Flags of every build, then the optional parts tried in order: libmvec's vector tanh and log
#: (glibc on x86-64), then ``-march=native``, then neither. Each source compiles to an object
#: on its own (``-l`` flags go to the link only), on as many cores as there are: 22 s -> 11 s
#: for the first four sources on 2 cores; the five take about 20 s there.
_FLAGS = ["-O3", "-std=c++20", "-fPIC", "-w"]
_ATTEMPTS = [["-march=native", "-DCTRNN_DYN_LIBMVEC", "-lmvec"], ["-march=native"], []]


def _timeout() -> float:
    try:
        return float(os.environ.get(BUILD_TIMEOUT_ENV, "300"))
    except ValueError:
        return 300.0


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


def _headers_digest() -> bytes:
    """SHA-256 over the XLA FFI headers the kernels are compiled against."""
    digest = hashlib.sha256()
    root = Path(jax.ffi.include_dir())
    for path in sorted(root.rglob("*.h")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.digest()


def _key(cxx: str) -> str:
    """Hex digest of everything that could change the built library."""
    import jaxlib

    version = subprocess.run([cxx, "--version"], capture_output=True, text=True,
                             timeout=min(_timeout(), 30.0)).stdout
    digest = hashlib.sha256()
    for part in (*(p.read_bytes() for p in SOURCES + HEADERS), version, cxx, jax.__version__,
                 jaxlib.__version__, _headers_digest(), _cpu_fingerprint(),
                 repr((_FLAGS, _ATTEMPTS))):
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verified(key_dir: Path, key: str) -> Path | None:
    """The library recorded in ``key_dir``'s manifest when its key and hash check out."""
    manifest = key_dir / MANIFEST
    if not manifest.exists():
        return None
    check_private(manifest, directory=False)
    try:
        record = json.loads(manifest.read_text())
        lib = key_dir / Path(record["library"]).name
        if record.get("key") != key or not lib.exists():
            return None
        check_private(lib, directory=False)
        if _sha256(lib) != record["sha256"]:
            _log.warning("ctrnn_dyn: %s does not match the hash recorded when it was built "
                         "(corrupt, truncated or replaced): rebuilding it", lib)
            return None
    except (ValueError, KeyError, TypeError):
        _log.warning("ctrnn_dyn: unreadable kernel manifest %s: rebuilding", manifest)
        return None
    return lib


def _run_compiler(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=_timeout())
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"{cmd[0]} ran longer than {err.timeout:g} s "
                           f"(set {BUILD_TIMEOUT_ENV})") from None


def _compile_and_link(cxx: str, tmp: Path, extra: list[str]) -> tuple[Path | None, str]:
    """Every source compiled to an object in ``tmp`` (at once, a process each, up to the
    cores), then linked into ``tmp/libkernels.so``; returns it, or ``None`` and the first
    error line."""
    compile_flags = [f for f in extra if not f.startswith("-l")]
    link_flags = [f for f in extra if f.startswith("-l")]
    objects = [tmp / f"{src.stem}.o" for src in SOURCES]
    commands = [[cxx, *_FLAGS, *compile_flags, "-I", jax.ffi.include_dir(), "-c", str(src),
                 "-o", str(obj)] for src, obj in zip(SOURCES, objects, strict=True)]
    with ThreadPoolExecutor(min(len(commands), os.cpu_count() or 1)) as pool:
        procs = list(pool.map(_run_compiler, commands))
    out = tmp / "libkernels.so"
    if all(p.returncode == 0 for p in procs):
        procs = [_run_compiler([cxx, *_FLAGS, "-shared", *map(str, objects), "-o", str(out),
                                *link_flags])]
    failed = [p for p in procs if p.returncode != 0]
    if failed:
        return None, (failed[0].stderr.strip().splitlines()[-1:] or ["(no message)"])[0]
    if not out.exists():
        return None, "(no library written)"
    return out, ""


def _build(cxx: str, key_dir: Path, key: str) -> Path:
    """Compile the kernels into ``key_dir`` (:func:`_compile_and_link`, each attempt of
    :data:`_ATTEMPTS` in turn) and record their hash; returns the library."""
    errors = []
    for extra in _ATTEMPTS:
        with tempfile.TemporaryDirectory(dir=key_dir) as tmp:
            out, error = _compile_and_link(cxx, Path(tmp), extra)
            if out is None:
                errors.append(error)
                continue
            sha = _sha256(out)
            lib = key_dir / f"libkernels-{sha[:16]}.so"  # content-addressed: races are benign
            os.chmod(out, 0o600)
            os.replace(out, lib)
            record = Path(tmp) / MANIFEST
            record.write_text(json.dumps({"key": key, "sha256": sha, "library": lib.name}))
            os.chmod(record, 0o600)
            os.replace(record, key_dir / MANIFEST)
            return lib
    raise RuntimeError(f"{cxx} failed: {errors}")


_TEMPORARY = "built in a temporary directory, removed once loaded (cache not private)"


def _resolve(cxx: str) -> tuple[Path, str, str]:
    """A verified library for this machine: ``(path, key, where)``, building it if needed."""
    key = _key(cxx)
    try:
        key_dir = private_dirs(cache_root(), "native", key[:16])
        lib = _verified(key_dir, key)
        if lib is not None:
            return lib, key, "cache"
        return _build(cxx, key_dir, key), key, "built"
    except Untrusted as why:
        _log.warning("ctrnn_dyn: the kernel cache is not private (%s): nothing is loaded from "
                     "it; building in a private temporary directory for this process", why)
    tmp = Path(tempfile.mkdtemp(prefix="ctrnn_dyn-kernels-"))  # mode 0700, this user's
    return _build(cxx, tmp, key), key, _TEMPORARY


def _register(lib_path: Path) -> None:
    lib = ctypes.cdll.LoadLibrary(str(lib_path))
    jax.ffi.register_ffi_target(FORWARD_TARGET, jax.ffi.pycapsule(lib.CtrnnDynForward),
                                platform="cpu")
    jax.ffi.register_ffi_target(FORWARD_NOISE_TARGET,
                                jax.ffi.pycapsule(lib.CtrnnDynForwardNoise), platform="cpu")
    jax.ffi.register_ffi_target(BACKWARD_TARGET, jax.ffi.pycapsule(lib.CtrnnDynBackward),
                                platform="cpu")
    jax.ffi.register_ffi_target(RIDGE_SOLVE_TARGET, jax.ffi.pycapsule(lib.CtrnnDynRidgeSolve),
                                platform="cpu")
    jax.ffi.register_ffi_target(GAUSS_NEWTON_SOLVE_TARGET,
                                jax.ffi.pycapsule(lib.CtrnnDynGaussNewtonSolve), platform="cpu")
    jax.ffi.register_ffi_target(GRAM_SCHMIDT_TARGET, jax.ffi.pycapsule(lib.CtrnnDynGramSchmidt),
                                platform="cpu")
    jax.ffi.register_ffi_target(BENETTIN_TARGET, jax.ffi.pycapsule(lib.CtrnnDynBenettin),
                                platform="cpu")
    jax.ffi.register_ffi_target(LM_TANH_RNN_TARGET, jax.ffi.pycapsule(lib.CtrnnDynLmTanhRnn),
                                platform="cpu")


def _off(why: str) -> bool:
    _state["status"] = why
    _log.warning("ctrnn_dyn's compiled kernels are off, XLA loops run instead: %s", why)
    return False


def _prepare() -> bool:
    if os.environ.get(ENV_SWITCH, "1").strip() == "0":
        _state["status"] = f"off ({ENV_SWITCH}=0)"
        return False
    if jax.default_backend() != "cpu":
        _state["status"] = f"not used: JAX's default backend is {jax.default_backend()}"
        return False
    if not hasattr(getattr(jax, "ffi", None), "include_dir"):
        return _off(f"jax {jax.__version__} lacks the jax.ffi this needs")
    cxx = _compiler()
    if cxx is None:
        return _off("no C++ compiler on PATH (set CXX)")
    try:
        lib_path, key, where = _resolve(cxx)
        try:
            _register(lib_path)
        finally:  # a loaded library stays mapped once unlinked: leave nothing behind in /tmp
            if where == _TEMPORARY:
                shutil.rmtree(lib_path.parent, ignore_errors=True)
    except (OSError, RuntimeError, AttributeError, subprocess.SubprocessError) as err:
        return _off(f"build or load failed: {err}")
    _state.update(loaded=True, key=key[:16], status=f"loaded from {lib_path} ({where})")
    return True


def prepare() -> bool:
    """Build (once per machine), verify and load the kernels; ``True`` when they are in use.

    Call it outside any traced function (the training entry points do): programs traced
    afterwards on the CPU use the kernels. Idempotent; thread-safe; never raises for a missing
    or failing compiler or an untrusted cache (:func:`status` says why the kernels are off).
    """
    with _lock:  # sweep workers may call from several threads: build once
        if not _state["tried"]:
            _state["tried"] = True
            _prepare()
        return _state["loaded"]


def available() -> bool:
    """Whether programs traced now use the kernels: loaded in this process (see
    :func:`prepare`; this never builds) and not inside :func:`suspended`."""
    return _state["loaded"] and not getattr(_suspended, "on", False)


@contextlib.contextmanager
def suspended():
    """Programs traced inside this block (in this thread) run the XLA loops, e.g. to compare
    the two paths in one process. ``jax.jit`` traces on the first call: make it inside."""
    before = getattr(_suspended, "on", False)
    _suspended.on = True
    try:
        yield
    finally:
        _suspended.on = before


def kernel_key() -> str | None:
    """The first 16 hex digits of the loaded library's key, or ``None`` when not loaded."""
    return _state["key"]


def status() -> str:
    """Why the kernels are, or are not, in use (``"not prepared"`` before :func:`prepare`)."""
    return _state["status"]
