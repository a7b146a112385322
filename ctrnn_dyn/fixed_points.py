r"""Fixed and slow points of a one-step map, found with JAXopt solvers batched over starts.

A fixed point of ``F(x, u)`` under constant input ``u`` is a root of the residual
:math:`r(x) = F(x, u) - x`. Following Sussillo & Barak (2013) and FixedPointFinder (Golub &
Sussillo 2018) we minimise the *speed*

.. math::

    q(x) = \tfrac12 \lVert F(x, u) - x \rVert^2
         \;=\; \tfrac12 \alpha^2 \lVert \tau \dot x \rVert^2 \quad\text{(CT-RNN)},

from many starts (usually states visited by the network plus noise,
:func:`sample_initial_states`). Local minima with :math:`q \le` ``tol_q`` are *fixed points*;
local minima with larger ``q`` are *slow points* (approximate fixed points, e.g. along an
approximate line attractor).

How results are reported (the contract other modules rely on):

- :func:`find_fixed_points` returns a :class:`FixedPoints` in which **every entry carries its
  own final** ``q`` **and a** ``converged`` **flag** (``q <= tol_q``, recomputed after the solve).
  Fixed points are ``fps.fixed`` (``converged``); slow points are ``fps.slow``: local minima
  of ``q`` bounded away from zero (see *Stopping* below); starts still moving when their budget
  ran out are ``fps.unfinished``. ``fps.stop_reason`` records why each entry's start stopped
  (:data:`STOP_REASONS`: converged, slow point, iteration cap, non-finite) and
  ``fps.summary()`` shows it. Slow points are kept and labelled, never mixed in:
  ``fps.stable`` and the stability classes of a slow point describe the linearisation *at
  that point* and are only meaningful for fixed points, so ``fps.stable`` contains converged
  points only.
- With ``tol_unique`` set (default ``1e-3``) the result holds one entry per distinct point:
  fixed points first, then the other finite entries, lowest ``q`` kept per cluster, ascending
  ``q`` within a group. A non-converged entry within ``tol_unique`` of a fixed point is the same
  point and is merged into it; ``fps.n_starts`` counts the starts behind each entry.
  With ``tol_unique=None`` it holds one entry per start, in start order (non-finite starts are
  included, ``converged=False``, ``q=nan``).
- Distance outliers (FixedPointFinder's rule: farther from the centroid of the starts than
  ``outlier_distance_scale`` times the starts' mean distance to it) are dropped unless
  ``outlier_distance_scale=None``.

Solvers (``method``), all from JAXopt and ``vmap``-ped over starts:

- ``"lm"`` (default): ``jaxopt.LevenbergMarquardt`` on the residual. By default matrix-free
  (``linear_solver="cg"``): each step solves :math:`(J_r^\top J_r + \mu I)\,\delta = -J_r^\top r`
  with up to ``cg_iters`` conjugate-gradient iterations (default 20, stopping at relative
  residual ``cg_tol = 1e-2``), each one ``jvp`` and one ``vjp`` of ``F``,
  which ``vmap`` turns into matrix-matrix products shared by all starts (the expensive part);
  truncating CG much earlier (``cg_iters=5, cg_tol=0``, about 2-3x faster on well-conditioned
  networks such as the benchmark's ``α = 0.2`` pattern network) gives poor steps where
  ``J − I`` is ill-conditioned (``α = 1`` networks, trained flip-flops): starts then crawl to the
  iteration cap or settle on slow points instead of the fixed points scipy's Newton reaches;
  with ``mixed_precision`` (default, float64 runs) those products run in float32 while residuals,
  gradients and accepted steps stay float64, so the attainable ``q`` is float64's.
  ``linear_solver="cholesky"`` materialises the Jacobian instead (analytic for CT-RNN
  ``OneStepMap`` s) and factorises :math:`J_r^\top J_r + \mu I` per start: exact steps, but
  :math:`O(d^3)` per start and iteration.
- ``"lbfgs"``: ``jaxopt.LBFGS`` on ``q``.
- ``"gd"``: ``jaxopt.GradientDescent`` (backtracking line search, Nesterov acceleration) on ``q``.

Starts run in rounds of ``chunk_iters`` solver iterations; after each round the starts that have
converged (or stopped) are retired and the rest are compacted into a smaller batch (at most three
sizes per call: all starts, about an eighth of them, and 32, so a first call compiles two or
three shapes and a second call with the same shapes compiles nothing), so the cost follows the
sum of iterations over starts rather than the slowest start.

Stopping. The solver stops a start when ``q <= tol_q`` (converged), when ``‖∇q‖ <= tol_grad``
or ``‖∇q‖ <= grad_rtol·‖r‖``, after ``max_iters`` iterations, or on a non-finite step (the last
finite ``x`` is kept). No start above ``tol_q`` is labelled from that alone: every one is then
*finished* with Newton steps :math:`x \leftarrow x - t\,(J - I)^{-1} r(x)`, ``t`` in ``1, ½, ¼``,
taken while they at least halve ``q`` (up to ``polish_steps``), so a start whose ``q`` is still
falling towards zero ends at a fixed point (at float64's rounding floor) whatever its iteration
budget. A *slow point* is what remains: a start at which the Newton step's predicted decrease
(to ``q = 0``) fails — ``J − I`` is (nearly) singular along the residual, as at any local minimum
of ``q`` above zero — and which the solver had stopped on a vanishing gradient or whose residual
is nearly orthogonal to the range of ``J − I`` (``‖(J−I)ᵀr‖ <= slow_rtol·‖J−I‖_F‖r‖``). A
start that fits neither is recorded as stopped at the iteration cap (``fps.unfinished``).
Everything runs in float64 by default, switched on locally with ``jax.enable_x64``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import zipfile
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import jaxopt
import numpy as np
from jaxopt.linear_solve import solve_cg

from ctrnn_dyn import _files, linear
from ctrnn_dyn._base import jit_map

__all__ = [
    "METHODS",
    "STOP_REASONS",
    "FixedPoints",
    "continue_fixed_points",
    "find_fixed_points",
    "sample_initial_states",
]

logger = logging.getLogger(__name__)

METHODS = ("lm", "lbfgs", "gd")
_DEFAULT_MAX_ITERS = {"lm": 100, "lbfgs": 2000, "gd": 5000}
_DEFAULT_CHUNK = {"lm": 5, "lbfgs": 32, "gd": 128}
_FORMAT_VERSION = 1

# ---------------------------------------------------------------------------------------------
# The container
# ---------------------------------------------------------------------------------------------

_ARRAY_FIELDS = (
    "x",
    "u",
    "q",
    "converged",
    "n_iters",
    "x_init",
    "jacobians",
    "eigvals",
    "eigvecs",
    "left_eigvecs",
    "n_unstable",
    "n_starts",
    "stop_reason",
)
_REQUIRED = ("x", "u", "q", "converged", "n_iters", "x_init")

#: Why a start stopped (``FixedPoints.stop_reason`` holds an index into this tuple).
STOP_REASONS = ("converged", "slow point", "iteration cap", "non-finite")
_CONVERGED, _SLOW, _CAP, _NONFINITE = range(len(STOP_REASONS))


@dataclasses.dataclass(frozen=True, eq=False)
class FixedPoints:
    r"""Fixed and slow points with their speeds, Jacobians and stability (host NumPy arrays).

    ``N`` entries of a ``d``-dimensional (flat) state with ``m`` inputs. Optional fields are
    ``None`` when not computed. Indexing (``fps[i]``, ``fps[2:5]``, ``fps[mask]``,
    ``fps[[0, 3]]``) returns a ``FixedPoints`` (an integer selects a length-1 container).
    Registered as a JAX pytree (array fields are leaves; ``stability`` and ``alpha`` are static).

    Attributes:
        x: ``(N, d)`` points.
        u: ``(N, m)`` the constant input of each point.
        q: ``(N,)`` speed :math:`\tfrac12\lVert F(x,u)-x\rVert^2` at ``x`` (``nan`` if non-finite).
        converged: ``(N,)`` ``q <= tol_q``: a fixed point; otherwise a slow point (finite ``q``)
            or a failed start (non-finite).
        n_iters: ``(N,)`` solver iterations used by the start that produced the entry.
        x_init: ``(N, d)`` that start.
        jacobians: ``(N, d, d)`` map Jacobians ``∂F/∂x`` at ``x``, or ``None``.
        eigvals: ``(N, d)`` complex map multipliers ``μ`` sorted by ``|μ|`` descending, or
            ``None``.
        eigvecs: ``(N, d, d)`` right eigenvectors (column ``k`` for ``μ_k``), or ``None``.
        left_eigvecs: ``(N, d, d)`` left eigenvectors (``L^H R = I``), or ``None``.
        n_unstable: ``(N,)`` number of multipliers with ``|μ| > 1 + marginal_tol``, or ``None``.
        stability: ``(N,)`` class strings from :func:`ctrnn_dyn.linear.classify` (discrete-time
            sense; ``""`` where the Jacobian is not finite), or ``None``.
        alpha: the map's Euler fraction ``dt/τ`` if known (scalar or ``(d,)``), for
            :attr:`continuous_eigvals`.
        n_starts: ``(N,)`` number of starts that ended on the entry (``1`` per start; after
            deduplication the size of its cluster, slow entries merged into a fixed point
            included), or ``None`` (files written before the field existed).
        stop_reason: ``(N,)`` why the entry's start stopped, an index into
            :data:`STOP_REASONS` (``0`` converged, ``1`` slow point: a local minimum of ``q``
            at which Newton steps no longer reduce ``q``, ``2`` iteration cap: still moving when
            the budget ran out, ``3`` non-finite), or ``None``; :attr:`stop_labels` gives the
            strings.
    """

    x: np.ndarray
    u: np.ndarray
    q: np.ndarray
    converged: np.ndarray
    n_iters: np.ndarray
    x_init: np.ndarray
    jacobians: np.ndarray | None = None
    eigvals: np.ndarray | None = None
    eigvecs: np.ndarray | None = None
    left_eigvecs: np.ndarray | None = None
    n_unstable: np.ndarray | None = None
    stability: np.ndarray | None = None
    alpha: Any = None
    n_starts: np.ndarray | None = None
    stop_reason: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in _ARRAY_FIELDS + ("stability",):
            value = getattr(self, name)
            if value is not None and not isinstance(value, jax.core.Tracer):
                object.__setattr__(self, name, np.asarray(value))
        if self.alpha is not None and not isinstance(self.alpha, jax.core.Tracer):
            object.__setattr__(self, "alpha", np.asarray(self.alpha, dtype=float))
        n = np.shape(self.x)[0] if np.ndim(self.x) >= 1 else None
        for name in _ARRAY_FIELDS + ("stability",):
            value = getattr(self, name)
            if value is not None and (np.ndim(value) < 1 or np.shape(value)[0] != n):
                raise ValueError(
                    f"FixedPoints.{name} must have leading length {n} (len(x)), "
                    f"got shape {np.shape(value)}"
                )

    # -- size and selection -------------------------------------------------------------------

    def __len__(self) -> int:
        return int(np.shape(self.x)[0])

    @property
    def state_size(self) -> int:
        """``d``."""
        return int(np.shape(self.x)[1])

    def __getitem__(self, index: Any) -> FixedPoints:
        if isinstance(index, int | np.integer):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"index {index} out of range for {n} points")
            index = slice(index, index + 1 if index != -1 else None)
        elif not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == bool and index.shape != (len(self),):
                raise IndexError(f"boolean mask must have shape ({len(self)},), got {index.shape}")
        fields = {
            name: (None if getattr(self, name) is None else getattr(self, name)[index])
            for name in _ARRAY_FIELDS + ("stability",)
        }
        return dataclasses.replace(self, **fields)

    @property
    def fixed(self) -> FixedPoints:
        """The converged entries (``q <= tol_q``): the fixed points."""
        return self[self.converged]

    @property
    def slow(self) -> FixedPoints:
        """Slow points: local minima of ``q`` above tolerance (not converged, finite ``q``, and,
        where :attr:`stop_reason` is recorded, stopped as a slow point rather than at the
        iteration cap)."""
        return self[self._kind_mask(_SLOW)]

    @property
    def unfinished(self) -> FixedPoints:
        """Entries whose start was still moving when its iteration budget ran out (neither a
        fixed point nor a slow point; empty where :attr:`stop_reason` is not recorded)."""
        return self[self._kind_mask(_CAP)]

    def _kind_mask(self, reason: int) -> np.ndarray:
        open_ = ~np.asarray(self.converged, bool) & np.isfinite(self.q)
        if self.stop_reason is None:
            return open_ if reason == _SLOW else np.zeros(len(self), bool)
        return open_ & (np.asarray(self.stop_reason) == reason)

    @property
    def stable(self) -> FixedPoints:
        """Converged points whose multipliers all satisfy ``|μ| < 1`` (stable node or focus)."""
        if self.stability is None:
            raise ValueError(
                "stability was not computed; call find_fixed_points(..., decompose=True)"
            )
        mask = self.converged & np.isin(self.stability, ("stable node", "stable focus"))
        return self[mask]

    @property
    def continuous_eigvals(self) -> np.ndarray:
        r"""``(N, d)`` continuous-time eigenvalues :math:`\lambda = (\mu - 1)/\alpha`."""
        if self.eigvals is None or self.alpha is None:
            raise ValueError("continuous_eigvals needs eigvals and alpha (a CT-RNN map)")
        return np.asarray(linear.continuous_eigvals(self.eigvals, self.alpha))

    @property
    def stop_labels(self) -> np.ndarray:
        """``(N,)`` :attr:`stop_reason` as strings from :data:`STOP_REASONS`."""
        if self.stop_reason is None:
            raise ValueError("stop_reason was not recorded (a container from an older file)")
        return np.asarray(STOP_REASONS)[np.asarray(self.stop_reason, dtype=np.int64)]

    # -- combining -------------------------------------------------------------------------------

    def unique(self, tol: float = 1e-3) -> FixedPoints:
        """One entry per cluster of points closer than ``tol`` (Euclidean), lowest ``q`` kept.

        Fixed points are clustered first (greedy: the lowest-``q`` unassigned entry absorbs
        every unassigned entry within ``tol``); a slow entry within ``tol`` of a kept fixed
        point is merged into the nearest one (it is the same point, not yet polished to
        tolerance); the remaining slow entries are clustered the same way among themselves.
        :attr:`n_starts` of a kept entry is the sum over its cluster. Entries with non-finite
        ``x`` or ``q`` are dropped. The result is ordered fixed points first, then slow, each by
        ascending ``q``. A k-d tree keeps this ``O(N log N)`` for ``N`` entries.

        Args:
            tol: distance below which two points are the same point (``> 0``).

        Returns:
            A new ``FixedPoints``.
        """
        if not tol > 0:
            raise ValueError(f"tol must be > 0, got {tol!r}")
        counts = np.ones(len(self), np.int64) if self.n_starts is None else self.n_starts
        keep, merged = _cluster(self.x, self.q, self.converged, counts, tol)
        return dataclasses.replace(self[keep], n_starts=merged)

    @classmethod
    def concatenate(cls, items: Sequence[FixedPoints]) -> FixedPoints:
        """Stack several containers (e.g. one per input condition) along the point axis.

        An optional field is kept only if every item has it; ``alpha`` only if all agree.

        Raises:
            ValueError: ``items`` is empty or the state sizes differ.
        """
        items = list(items)
        if not items or not all(isinstance(i, FixedPoints) for i in items):
            raise ValueError("items must be a non-empty sequence of FixedPoints")
        if len({i.state_size for i in items}) != 1:
            raise ValueError(
                f"cannot concatenate state sizes {sorted({i.state_size for i in items})}"
            )
        fields: dict[str, Any] = {}
        for name in _ARRAY_FIELDS + ("stability",):
            values = [getattr(i, name) for i in items]
            fields[name] = (
                None if any(v is None for v in values) else np.concatenate(values, axis=0)
            )
        alphas = [i.alpha for i in items]
        same = all(a is not None and np.array_equal(a, alphas[0]) for a in alphas)
        return cls(**fields, alpha=alphas[0] if same else None)

    # -- persistence -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write an uncompressed ``.npz`` (no pickle) at exactly ``path``, atomically and durably.

        The data goes to a temporary file next to ``path`` that is fsynced and renamed over
        ``path``, then the directory is fsynced: a crash leaves the old file or the new one, and
        a failed write (a full disk) leaves no temporary file behind.

        Raises:
            OSError: the write failed; an existing file at ``path`` is untouched.
        """
        arrays = {
            name: getattr(self, name)
            for name in _ARRAY_FIELDS + ("stability",)
            if getattr(self, name) is not None
        }
        if self.alpha is not None:
            arrays["alpha"] = np.asarray(self.alpha, dtype=float)
        arrays["format_version"] = np.asarray(_FORMAT_VERSION)
        _files.remove_stale_temporaries(path)
        _files.atomic_write(path, lambda fh: np.savez(fh, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike) -> FixedPoints:
        """Read a file written by :meth:`save`, validating every field before use.

        From the ``.npy`` headers, before any data is read: each field's dtype kind and shape
        (``x`` float ``(N, d)``; ``x_init`` float ``(N, d)``; ``u`` float ``(N, m)``; ``q``
        float, ``converged`` bool, ``n_iters`` integer ``(N,)``; ``jacobians`` float
        ``(N, d, d)``; ``eigvals`` ``(N, d)`` and ``eigvecs``, ``left_eigvecs`` ``(N, d, d)``
        float or complex; ``n_unstable`` integer and ``stability`` string ``(N,)``; ``alpha``
        float ``()`` or ``(d,)``), and that each array's declared size is the size of the data
        the file holds (a header cannot make the reader allocate more than the file backs).
        Then the values: ``q >= 0``, ``converged`` only where ``x`` and ``q`` are finite, finite
        ``u``, counts in range, known stability classes, ``alpha > 0``. Nothing is unpickled.

        Raises:
            FileNotFoundError: no such file.
            ValueError: the file is not a valid FixedPoints ``.npz`` (corrupt, truncated,
                missing fields, or a field of the wrong dtype, shape or values: the message
                names the field).
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no FixedPoints file at {path!r}")
        try:
            with zipfile.ZipFile(path) as zf:
                headers = _npz_headers(path, zf)
                missing = [k for k in _REQUIRED + ("format_version",) if k not in headers]
                if missing:
                    raise _invalid(path, None, f"missing fields {missing}")

                def read(name: str) -> np.ndarray:
                    with zf.open(f"{name}.npy") as fh:
                        return np.lib.format.read_array(fh, allow_pickle=False)

                if headers["format_version"][1].kind not in "iu" or headers["format_version"][0]:
                    raise _invalid(path, "format_version", "must be an integer scalar")
                version = int(read("format_version"))
                if version != _FORMAT_VERSION:
                    raise _InvalidFile(f"{path!r} has FixedPoints format version {version}, "
                                       f"this version reads {_FORMAT_VERSION}")
                _check_header_fields(path, headers)
                arrays = {name: read(name) for name in headers}
        except _InvalidFile as err:
            raise ValueError(str(err)) from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
            raise ValueError(
                f"{path!r} is not a valid FixedPoints .npz file (corrupt or truncated): {err}"
            ) from err
        try:
            _check_values(path, arrays)
        except _InvalidFile as err:
            raise ValueError(str(err)) from None
        fields = {k: arrays.get(k) for k in _ARRAY_FIELDS + ("stability",)}
        return cls(**fields, alpha=arrays.get("alpha"))

    # -- display -------------------------------------------------------------------------------

    def summary(self, n_eigvals: int = 3, max_rows: int = 50) -> str:
        """A plain-text table: index, kind (why its start stopped: ``fixed``, ``slow``, ``cap``
        for the iteration cap, ``fail`` for non-finite), number of starts merged into it, q,
        #unstable modes, class, leading multipliers."""
        head = (
            f"{'#':>4}  {'kind':<5}  {'starts':>6}  {'q':>9}  {'#unst':>5}  {'class':<14}  "
            "top |μ| (μ)"
        )
        n_cap = len(self.unfinished)
        n_fail = int(np.sum(~np.asarray(self.converged, bool) & ~np.isfinite(self.q)))
        extra = (f", {n_cap} at the iteration cap" if n_cap else "") + (
            f", {n_fail} failed" if n_fail else ""
        )
        starts = "" if self.n_starts is None else f" from {int(np.sum(self.n_starts))} starts"
        lines = [
            f"FixedPoints: {len(self)} points{starts} "
            f"({int(np.sum(self.converged))} fixed, {len(self.slow)} slow{extra}), "
            f"d={self.state_size}",
            head,
            "-" * len(head),
        ]
        kinds = {_CONVERGED: "fixed", _SLOW: "slow", _CAP: "cap", _NONFINITE: "fail"}
        for i in range(min(len(self), max_rows)):
            if self.stop_reason is not None:
                kind = kinds.get(int(self.stop_reason[i]), "?")
            else:
                kind = (
                    "fixed" if self.converged[i] else ("slow" if np.isfinite(self.q[i]) else "fail")
                )
            count = "-" if self.n_starts is None else str(int(self.n_starts[i]))
            n_u = "-" if self.n_unstable is None else str(int(self.n_unstable[i]))
            cls = "-" if self.stability is None else str(self.stability[i])
            if self.eigvals is None:
                top = "-"
            else:
                top = ", ".join(_fmt_complex(m) for m in self.eigvals[i, :n_eigvals])
            lines.append(
                f"{i:>4}  {kind:<5}  {count:>6}  {self.q[i]:9.2e}  {n_u:>5}  {cls:<14}  {top}"
            )
        if len(self) > max_rows:
            lines.append(f"... {len(self) - max_rows} more")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"FixedPoints(n={len(self)}, d={self.state_size}, fixed={int(np.sum(self.converged))},"
            f" slow={len(self.slow)}, unfinished={len(self.unfinished)})"
        )


def _fmt_complex(m: complex) -> str:
    m = complex(m)
    if abs(m.imag) < 1e-12:
        return f"{m.real:.4f}"
    return f"{abs(m):.4f} ({m.real:.3f}{m.imag:+.3f}j)"


# ---------------------------------------------------------------------------------------------
# The file format: every field checked from the .npy headers before any data is read
# ---------------------------------------------------------------------------------------------

# field -> (allowed dtype kinds, shape in symbols: N points, d state size, m any input width);
# alpha's shape is () or (d,) and is checked separately
_FILE_FIELDS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "x": ("f", ("N", "d")),
    "u": ("f", ("N", "m")),
    "q": ("f", ("N",)),
    "converged": ("b", ("N",)),
    "n_iters": ("iu", ("N",)),
    "x_init": ("f", ("N", "d")),
    "jacobians": ("f", ("N", "d", "d")),
    "eigvals": ("fc", ("N", "d")),
    "eigvecs": ("fc", ("N", "d", "d")),
    "left_eigvecs": ("fc", ("N", "d", "d")),
    "n_unstable": ("iu", ("N",)),
    "stability": ("U", ("N",)),
    "n_starts": ("iu", ("N",)),
    "stop_reason": ("iu", ("N",)),
    "alpha": ("f", None),
    "format_version": ("iu", ()),
}
_KIND_NAMES = {"f": "a float array", "b": "a bool array", "iu": "an integer array",
               "fc": "a float or complex array", "U": "a string array"}
_NPY_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
# deflate compresses at most ~1032:1; a member declaring more is not a genuine npz member
_MAX_DEFLATE_RATIO = 1100


class _InvalidFile(ValueError):
    """A FixedPoints file that failed validation (re-raised as a plain ``ValueError``)."""


def _invalid(path: str, field: str | None, message: str) -> _InvalidFile:
    where = "" if field is None else f"field {field!r} "
    return _InvalidFile(f"{path!r} is not a valid FixedPoints file: {where}{message}")


def _npz_headers(path: str, zf: zipfile.ZipFile) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{field: (shape, dtype)}`` of the known fields of an npz, read from the .npy headers.

    Each member's declared data size must equal the bytes it holds (and a compressed member may
    not inflate beyond what deflate can reach), so no array is ever allocated from a size that
    the file does not back.
    """
    size = os.path.getsize(path)
    headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    for info in zf.infolist():
        name = info.filename[:-4] if info.filename.endswith(".npy") else None
        if name not in _FILE_FIELDS:
            continue
        if name in headers:
            raise _invalid(path, name, "appears twice")
        stored = info.compress_type == zipfile.ZIP_STORED
        if not stored and info.compress_type != zipfile.ZIP_DEFLATED:
            raise _invalid(path, name, f"uses an unsupported compression ({info.compress_type})")
        if (info.compress_size > size or (stored and info.file_size != info.compress_size)
                or info.file_size > _MAX_DEFLATE_RATIO * max(info.compress_size, 1)):
            raise _invalid(path, name, f"declares {info.file_size} bytes ({info.compress_size} "
                                       f"stored) in a file of {size} bytes")
        try:
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version not in _NPY_HEADERS:
                    raise _invalid(path, name, f"has .npy format version {version}, "
                                               "expected (1, 0) or (2, 0)")
                shape, _, dtype = _NPY_HEADERS[version](fh)
                offset = fh.tell()
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as err:
            if isinstance(err, _InvalidFile):
                raise
            raise _invalid(path, name, f"has a corrupt .npy header: {err}") from err
        if dtype.hasobject:
            raise _invalid(path, name, f"has dtype {dtype} holding Python objects; "
                                       "FixedPoints files hold plain arrays (never unpickled)")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != info.file_size - offset:
            raise _invalid(path, name, f"declares shape {shape} dtype {dtype} ({nbytes} bytes) "
                                       f"but holds {info.file_size - offset} bytes of data")
        headers[name] = (shape, dtype)
    return headers


def _check_header_fields(path: str, headers: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """Dtype kind and shape of every field, and shapes consistent with ``x``'s ``(N, d)``."""
    for name, (_, dtype) in headers.items():
        kinds = _FILE_FIELDS[name][0]
        if dtype.kind not in kinds:
            raise _invalid(path, name, f"must be {_KIND_NAMES[kinds]}, got dtype {dtype}")
    x_shape = headers["x"][0]
    if len(x_shape) != 2 or x_shape[1] < 1:
        raise _invalid(path, "x", f"must have shape (N, d) with d >= 1, got {x_shape}")
    sizes = {"N": x_shape[0], "d": x_shape[1]}
    for name, (shape, _) in headers.items():
        symbols = _FILE_FIELDS[name][1]
        if symbols is None:  # alpha: a scalar or one value per state dimension
            if shape not in ((), (sizes["d"],)):
                raise _invalid(path, name, f"must have shape () or (d,) = ({sizes['d']},), "
                                           f"got {shape}")
            continue
        ok = len(shape) == len(symbols) and all(
            s not in sizes or n == sizes[s] for s, n in zip(symbols, shape, strict=False))
        if not ok:
            want = ", ".join(symbols) + ("," if len(symbols) == 1 else "")
            have = ", ".join(str(sizes.get(s, s)) for s in symbols)
            have += "," if len(symbols) == 1 else ""
            raise _invalid(path, name, f"must have shape ({want}) = ({have}) for x of shape "
                                       f"{x_shape}, got {shape}")


def _check_values(path: str, a: dict[str, np.ndarray]) -> None:
    """The values' own rules (read data): what :class:`FixedPoints`' methods rely on."""
    finite_q = np.isfinite(a["q"])
    if np.any(a["q"][finite_q] < 0):
        raise _invalid(path, "q", "must be >= 0 (q is half a squared norm)")
    bad = a["converged"] & ~(finite_q & np.all(np.isfinite(a["x"]), axis=1))
    if bad.any():
        raise _invalid(path, "converged", f"is true at entries {np.flatnonzero(bad)[:5].tolist()} "
                                          "whose x or q is not finite")
    if not np.all(np.isfinite(a["u"])):
        raise _invalid(path, "u", "must be finite")
    d = a["x"].shape[1]
    for name, low, high in (("n_iters", 0, None), ("n_starts", 0, None),
                            ("n_unstable", 0, d), ("stop_reason", 0, len(STOP_REASONS) - 1)):
        v = a.get(name)
        if v is not None and (np.any(v < low) or (high is not None and np.any(v > high))):
            span = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise _invalid(path, name, f"must be {span}, got values from {v.min()} to {v.max()}")
    if "stability" in a:
        unknown = sorted(set(a["stability"].tolist()) - set(linear.STABILITY_CLASSES) - {""})
        if unknown:
            raise _invalid(path, "stability", f"has unknown classes {unknown[:3]}; known: "
                                              f"{list(linear.STABILITY_CLASSES)} and ''")
    if "alpha" in a and not np.all(np.isfinite(a["alpha"]) & (a["alpha"] > 0)):
        raise _invalid(path, "alpha", f"must be finite and > 0, got {a['alpha']}")


def _flatten(fp: FixedPoints):
    children = tuple(getattr(fp, name) for name in _ARRAY_FIELDS)
    stability = None if fp.stability is None else tuple(np.asarray(fp.stability).tolist())
    alpha = None if fp.alpha is None else tuple(np.atleast_1d(fp.alpha).tolist())
    alpha_scalar = fp.alpha is not None and np.ndim(fp.alpha) == 0
    return children, (stability, alpha, alpha_scalar)


def _unflatten(aux, children) -> FixedPoints:
    stability, alpha, alpha_scalar = aux
    fields = dict(zip(_ARRAY_FIELDS, children, strict=True))
    obj = object.__new__(FixedPoints)  # skip validation: leaves may be tracers or sentinels
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    object.__setattr__(obj, "stability", None if stability is None else np.asarray(stability))
    if alpha is not None:
        alpha = np.asarray(alpha[0] if alpha_scalar else alpha, dtype=float)
    object.__setattr__(obj, "alpha", alpha)
    return obj


jax.tree_util.register_pytree_node(FixedPoints, _flatten, _unflatten)


def _greedy_leaders(pts: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy clustering of ``pts`` (already in priority order) with a k-d tree: returns the
    leader positions and, for every point, the position of its leader."""
    from scipy.spatial import cKDTree

    owner = np.full(pts.shape[0], -1, np.int64)
    leaders: list[int] = []
    if pts.shape[0] == 0:
        return np.zeros(0, np.int64), owner
    tree = cKDTree(pts)
    for j in range(pts.shape[0]):
        if owner[j] >= 0:
            continue
        leaders.append(j)
        near = np.asarray(tree.query_ball_point(pts[j], tol), dtype=np.int64)
        near = near[owner[near] < 0]
        owner[near] = j
    return np.asarray(leaders, np.int64), owner


def _cluster(
    x: np.ndarray, q: np.ndarray, converged: np.ndarray, counts: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Indices kept by :meth:`FixedPoints.unique` and the summed ``counts`` of their clusters."""
    from scipy.spatial import cKDTree

    x = np.asarray(x)
    q = np.asarray(q)
    counts = np.asarray(counts, np.int64)
    ok = np.isfinite(q) & np.all(np.isfinite(x), axis=1)
    keep: list[np.ndarray] = []
    sums: list[np.ndarray] = []
    fixed = np.flatnonzero(ok & converged)
    fixed = fixed[np.argsort(q[fixed], kind="stable")]
    lead, owner = _greedy_leaders(x[fixed], tol)
    fixed_sum = np.zeros(lead.size, np.int64)
    if fixed.size:
        slot = np.searchsorted(lead, owner)  # owners are leaders; leaders are ascending
        np.add.at(fixed_sum, slot, counts[fixed])
    slow = np.flatnonzero(ok & ~converged)
    slow = slow[np.argsort(q[slow], kind="stable")]
    if slow.size and lead.size:
        dist, nearest = cKDTree(x[fixed[lead]]).query(x[slow], distance_upper_bound=tol)
        onto = np.isfinite(dist) & (dist <= tol)
        np.add.at(fixed_sum, nearest[onto], counts[slow[onto]])
        slow = slow[~onto]
    keep.append(fixed[lead])
    sums.append(fixed_sum)
    lead_s, owner_s = _greedy_leaders(x[slow], tol)
    slow_sum = np.zeros(lead_s.size, np.int64)
    if slow.size:
        np.add.at(slow_sum, np.searchsorted(lead_s, owner_s), counts[slow])
    keep.append(slow[lead_s])
    sums.append(slow_sum)
    return np.concatenate(keep).astype(np.int64), np.concatenate(sums)


def _outlier_mask(x: np.ndarray, x_init: np.ndarray, scale: float) -> np.ndarray:
    """FixedPointFinder's rule: keep ``‖x − c‖ <= scale · mean_i ‖x_init_i − c‖``, ``c`` the
    centroid of the (finite) starts."""
    starts = x_init[np.all(np.isfinite(x_init), axis=1)]
    if starts.shape[0] == 0:
        return np.zeros(x.shape[0], bool)
    centroid = starts.mean(axis=0)
    mean_dist = np.linalg.norm(starts - centroid, axis=1).mean()
    dist = np.linalg.norm(x - centroid, axis=1)
    if mean_dist <= 1e-12 * (1.0 + np.linalg.norm(centroid)):  # all starts (nearly) equal
        return np.isfinite(dist)
    return dist <= scale * mean_dist


# ---------------------------------------------------------------------------------------------
# Sampling starts
# ---------------------------------------------------------------------------------------------


def sample_initial_states(states: Any, n: int, *, noise_scale: float, key: jax.Array) -> jax.Array:
    r"""Draw ``n`` starts from visited states plus isotropic noise (FixedPointFinder's recipe).

    :math:`x^{(i)}_0 = s_{b_i t_i} + \sigma\,\xi_i`, with ``(b_i, t_i)`` uniform with replacement
    over the trajectories and time steps, :math:`\xi_i \sim N(0, I)`.

    Args:
        states: ``(B, T, d)`` trajectories or ``(S, d)`` states.
        n: number of starts (``>= 1``).
        noise_scale: ``σ >= 0``.
        key: PRNG key.

    Returns:
        ``(n, d)`` starts, in ``states``' float dtype.

    Raises:
        ValueError: wrong rank, empty ``states``, ``n < 1`` or ``noise_scale < 0``.
    """
    states = jnp.asarray(states)
    if states.ndim not in (2, 3):
        raise ValueError(f"states must have shape (B, T, d) or (S, d), got {states.shape}")
    if not jnp.issubdtype(states.dtype, jnp.floating):
        states = states.astype(jnp.result_type(float))
    flat = states.reshape(-1, states.shape[-1])
    if flat.shape[0] == 0:
        raise ValueError("states must contain at least one state")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if not np.isfinite(noise_scale) or noise_scale < 0:
        raise ValueError(f"noise_scale must be finite and >= 0, got {noise_scale!r}")
    k_idx, k_noise = jax.random.split(key)
    idx = jax.random.randint(k_idx, (int(n),), 0, flat.shape[0])
    noise = jax.random.normal(k_noise, (int(n), flat.shape[1]), flat.dtype)
    return flat[idx] + jnp.asarray(noise_scale, flat.dtype) * noise


# ---------------------------------------------------------------------------------------------
# The solver core (jitted, F static)
# ---------------------------------------------------------------------------------------------


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class _RaveledMap:
    """``F`` on a pytree carry seen as a map on the flat vector (a pytree: ``F``'s arrays are
    traced by :func:`~ctrnn_dyn._base.jit_map`)."""

    F: Callable[..., Any]
    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[Any, ...]

    def tree_flatten(self) -> tuple[tuple, tuple]:
        return (self.F,), (self.treedef, self.shapes, self.dtypes)

    @classmethod
    def tree_unflatten(cls, aux: tuple, children: tuple) -> _RaveledMap:
        return cls(children[0], *aux)

    def _unravel(self, x: jax.Array) -> Any:
        leaves, start = [], 0
        for shape, dtype in zip(self.shapes, self.dtypes, strict=True):
            size = int(np.prod(shape))
            leaves.append(x[start : start + size].reshape(shape).astype(dtype))
            start += size
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def __call__(self, x: jax.Array, u: Any = None) -> jax.Array:
        out = self.F(self._unravel(x), u)
        leaves = jax.tree_util.tree_leaves(out)
        return jnp.concatenate([jnp.ravel(leaf).astype(x.dtype) for leaf in leaves])


class _LevenbergMarquardt(jaxopt.LevenbergMarquardt):
    """jaxopt's LM, with two fixes for this use.

    - With ``materialize_jac=True`` jaxopt ignores ``jac_fun``; we use it (the analytic CT-RNN
      Jacobian).
    - Matrix-free (``materialize_jac=False``), jaxopt sets the initial damping from the exact
      diagonal of ``JᵀJ``, which costs ``d`` Jacobian-vector products per start; we estimate
      it with one probe, ``|v ⊙ JᵀJ v|`` with ``v = 1`` (only its maximum scales the damping).
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.materialize_jac and self.jac_fun is not None:
            self._jac_fun = self.jac_fun

    def _jtj_diag_op(self, params, *args, **kwargs):
        v = jnp.ones_like(params)
        return jnp.abs(v * self._jtj_op(params, v, *args, **kwargs))


class _MixedPrecisionLM(_LevenbergMarquardt):
    """Matrix-free LM whose CG products ``JᵀJ v`` run in float32 (the truncated CG solve only
    needs a few digits); residuals, gradients and the accepted steps stay in float64, so the
    attainable ``q`` is float64's."""

    def _jtj_op(self, params, vec, *args, **kwargs):
        low = jnp.float32

        def cast(a):
            a = jnp.asarray(a)
            return a.astype(low) if jnp.issubdtype(a.dtype, jnp.floating) else a

        args, kwargs = jax.tree_util.tree_map(cast, (args, kwargs))

        def fun(p):
            return self._fun(p, *args, **kwargs).astype(low)

        p = params.astype(low)
        _, jv = jax.jvp(fun, (p,), (vec.astype(low),))
        _, vjp = jax.vjp(fun, p)
        return vjp(jv)[0].astype(params.dtype)


def _residual(F, x, u):
    return F(x, u) - x


def _speed(F, x, u):
    r = _residual(F, x, u)
    return 0.5 * jnp.sum(r * r)


LINEAR_SOLVERS = ("cg", "cholesky")


def _make_solver(
    F,
    method: str,
    max_iters: int,
    linear_solver: str = "cg",
    cg_iters: int = 5,
    mixed_precision: bool = False,
    cg_tol: float = 0.0,
):
    if method == "lm":
        if linear_solver == "cg":
            # Matrix-free: each CG iteration is one jvp and one vjp of F, which vmap turns into
            # matrix-matrix products shared by all starts.
            cls = _MixedPrecisionLM if mixed_precision else _LevenbergMarquardt
            return cls(
                residual_fun=partial(_residual, F),
                materialize_jac=False,
                solver=partial(solve_cg, maxiter=cg_iters, tol=cg_tol),
                maxiter=max_iters,
                implicit_diff=False,
            )

        def jac(x, u):
            return linear.jacobian(F, x, u) - jnp.eye(x.shape[0], dtype=x.dtype)

        return _LevenbergMarquardt(
            residual_fun=partial(_residual, F),
            jac_fun=jac,
            materialize_jac=True,
            solver="cholesky",
            maxiter=max_iters,
            implicit_diff=False,
        )
    if method == "lbfgs":
        return jaxopt.LBFGS(
            fun=partial(_speed, F),
            maxiter=max_iters,
            linesearch="hager-zhang",
            implicit_diff=False,
        )
    return jaxopt.GradientDescent(fun=partial(_speed, F), maxiter=max_iters, implicit_diff=False)


@jit_map(
    map_argname="F",
    static_argnames=("method", "max_iters", "linear_solver", "cg_iters", "mixed_precision",
                     "cg_tol"),
)
def _init_states(x, u, *, F, method, max_iters, linear_solver, cg_iters, mixed_precision, cg_tol):
    solver = _make_solver(F, method, max_iters, linear_solver, cg_iters, mixed_precision, cg_tol)
    return jax.vmap(solver.init_state)(x, u)


@jit_map(
    map_argname="F",
    static_argnames=(
        "method",
        "n_iter",
        "tol_q",
        "tol_grad",
        "grad_rtol",
        "max_iters",
        "linear_solver",
        "cg_iters",
        "mixed_precision",
        "cg_tol",
    ),
)
def _run_chunk(
    x,
    state,
    u,
    iters,
    *,
    F,
    method,
    n_iter,
    tol_q,
    tol_grad,
    grad_rtol,
    max_iters,
    linear_solver,
    cg_iters,
    mixed_precision,
    cg_tol,
):
    """Up to ``n_iter`` solver iterations per start (vmapped); returns the stop flags too."""
    solver = _make_solver(F, method, max_iters, linear_solver, cg_iters, mixed_precision, cg_tol)

    def stop_rule(x, st, u, it):
        q = st.value if method == "lm" else _speed(F, x, u)
        small_grad = (st.error <= tol_grad) | (st.error <= grad_rtol * jnp.sqrt(2.0 * q))
        return (q <= tol_q) | small_grad | (it >= max_iters) | ~jnp.isfinite(q)

    def one(x, st, u, it):
        def cond(carry):
            _, _, _, k, stop = carry
            return (k < n_iter) & ~stop

        def body(carry):
            x, st, it, k, _ = carry
            x_new, st_new = solver.update(x, st, u)
            it = it + 1
            bad = ~jnp.all(jnp.isfinite(x_new))  # a failed step: keep the last good x, stop
            x, st = jax.tree_util.tree_map(
                lambda a, b: jnp.where(bad, a, b), (x, st), (x_new, st_new)
            )
            return x, st, it, k + 1, stop_rule(x, st, u, it) | bad

        carry = (x, st, it, jnp.asarray(0, jnp.int32), stop_rule(x, st, u, it))
        x, st, it, _, stop = jax.lax.while_loop(cond, body, carry)
        return x, st, it, stop

    return jax.vmap(one)(x, state, u, iters)


@jit_map(map_argname="F")
def _speeds(x, u, *, F):
    return jax.vmap(partial(_speed, F))(x, u)


_BACKTRACK = (1.0, 0.5, 0.25)


@jit_map(map_argname="F", static_argnames=("max_steps", "tol_q"))
def _newton_finish(x, u, *, F, max_steps, tol_q):
    r"""Finish starts with Newton steps :math:`\delta = -(J - I)^{-1} r(x)` while ``q`` falls.

    A step ``x + t δ`` (``t = 1, 1/2, 1/4``, the largest that works) is taken when it at least
    halves ``q``: a start whose ``q`` still falls geometrically towards zero is carried on until
    it stops falling (a fixed point reaches ``q`` at float64's rounding floor in a few steps),
    whereas at a local minimum of ``q`` above zero ``J − I`` is (nearly) singular along the
    residual, the Newton step's predicted decrease (to ``q = 0``) does not materialise and the
    start stalls at once. Stops after ``max_steps`` steps, at ``q <= tol_q · 1e-10`` (far below the
    fixed-point tolerance), or when no step halves ``q``.

    Returns:
        ``x``, ``q``, ``steps`` taken, ``stalled`` (stopped because no step halved ``q``; ``False``
        where it ran out of steps while still falling) and ``g_rel`` :math:`= \lVert (J-I)^\top
        r\rVert / (\lVert J - I\rVert_F \lVert r\rVert)` at the final ``x`` (small at a local
        minimum of ``q``: the residual is nearly orthogonal to the range of ``J − I``).
    """
    ts = jnp.asarray(_BACKTRACK, x.dtype)
    floor = tol_q * 1e-10

    def one(x, u):
        def linearise(x):
            J = linear.jacobian(F, x, u) - jnp.eye(x.shape[0], dtype=x.dtype)
            return J, _residual(F, x, u)

        def cond(carry):
            _, q, k, stalled = carry
            return (k < max_steps) & ~stalled & (q > floor)

        def body(carry):
            x, q, k, _ = carry
            J, r = linearise(x)
            delta = -jnp.linalg.solve(J, r)
            trial = x[None, :] + ts[:, None] * delta[None, :]
            qs = jax.vmap(lambda xt: _speed(F, xt, u))(trial)
            good = jnp.isfinite(qs) & (qs <= 0.5 * q) & jnp.all(jnp.isfinite(trial), axis=1)
            pick = jnp.argmax(good)
            ok = good[pick]
            x_new = jnp.where(ok, trial[pick], x)
            q_new = jnp.where(ok, qs[pick], q)
            return x_new, q_new, k + ok.astype(k.dtype), ~ok

        q0 = _speed(F, x, u)
        x, q, k, stalled = jax.lax.while_loop(
            cond, body, (x, q0, jnp.asarray(0, jnp.int32), ~jnp.isfinite(q0))
        )
        J, r = linearise(x)
        g = jnp.linalg.norm(J.T @ r)
        g_rel = g / jnp.maximum(jnp.linalg.norm(J) * jnp.linalg.norm(r), jnp.finfo(x.dtype).tiny)
        return x, q, k, stalled | (q <= floor), g_rel

    return jax.vmap(one)(x, u)


@jit_map(map_argname="F", static_argnames=("max_steps", "tol_q"))
def _dogleg(x, u, *, F, max_steps, tol_q):
    r"""Powell's dogleg trust-region method on ``r(x) = F(x) − x`` (MINPACK hybrd's step, with
    the exact ``J − I`` instead of Broyden updates), from each ``x``; returns ``x`` and ``q``.

    Each iteration builds the Newton step :math:`p_N = -(J-I)^{-1} r` and the Cauchy step
    :math:`p_C = -\frac{\lVert g\rVert^2}{\lVert (J-I) g\rVert^2} g`,
    :math:`g = (J-I)^\top r`, takes the point where the path :math:`0 \to p_C \to p_N` leaves
    the trust radius ``Δ``, accepts it if ``q`` falls by at least ``1e-4`` of the model's
    predicted decrease, and widens (ratio > 0.75) or narrows (ratio < 0.25) ``Δ``. Where ``J −
    I`` is nearly singular the step turns towards steepest descent instead of stalling as a
    line search along the Newton direction does.
    """
    floor = tol_q * 1e-10
    tiny = jnp.finfo(x.dtype).tiny

    def one(x, u):
        def cond(c):
            _, q, k, radius = c
            return (k < max_steps) & (q > floor) & (radius > 1e-12 * (1.0 + jnp.linalg.norm(c[0])))

        def body(c):
            x, q, k, radius = c
            J = linear.jacobian(F, x, u) - jnp.eye(x.shape[0], dtype=x.dtype)
            r = _residual(F, x, u)
            p_n = -jnp.linalg.solve(J, r)
            p_n = jnp.where(jnp.all(jnp.isfinite(p_n)), p_n, jnp.zeros_like(p_n))
            g = J.T @ r
            Jg = J @ g
            p_c = -(g @ g) / jnp.maximum(Jg @ Jg, tiny) * g
            n_n, n_c = jnp.linalg.norm(p_n), jnp.linalg.norm(p_c)
            newton_ok = (n_n <= radius) & (n_n > 0)
            d = p_n - p_c
            a, b, cc = d @ d, 2.0 * (p_c @ d), p_c @ p_c - radius**2
            tau = (-b + jnp.sqrt(jnp.maximum(b * b - 4.0 * a * cc, 0.0))) / jnp.maximum(2 * a, tiny)
            p_dog = p_c + jnp.clip(tau, 0.0, 1.0) * d
            p_sd = -radius * g / jnp.maximum(jnp.linalg.norm(g), tiny)
            p = jnp.where(newton_ok, p_n, jnp.where(n_c >= radius, p_sd, p_dog))
            model = 0.5 * jnp.sum((r + J @ p) ** 2)
            x_new = x + p
            q_new = _speed(F, x_new, u)
            ratio = (q - q_new) / jnp.maximum(q - model, tiny)
            ok = jnp.isfinite(q_new) & (ratio > 1e-4)
            step = jnp.linalg.norm(p)
            radius = jnp.where(ratio < 0.25, 0.25 * step,
                               jnp.where((ratio > 0.75), jnp.maximum(radius, 2.0 * step), radius))
            return (jnp.where(ok, x_new, x), jnp.where(ok, q_new, q), k + 1, radius)

        q0 = _speed(F, x, u)
        radius0 = 100.0 * jnp.maximum(1.0, jnp.linalg.norm(x))  # MINPACK: factor 100
        x, q, _, _ = jax.lax.while_loop(cond, body, (x, q0, jnp.asarray(0, jnp.int32), radius0))
        return x, q

    return jax.vmap(one)(x, u)


@jit_map(map_argname="F")
def _jacobians(x, u, *, F):
    return jax.vmap(partial(linear.jacobian, F))(x, u)


def _eig_host(J: np.ndarray, left: bool) -> linear.EigenDecomposition:
    """:func:`ctrnn_dyn.linear.eig`'s conventions with NumPy's LAPACK on the host (no compile per
    number of points, no padding)."""
    mu, R = np.linalg.eig(J)
    mu, R = mu.astype(complex), R.astype(complex)
    order = np.argsort(-np.abs(mu), axis=-1, kind="stable")
    mu = np.take_along_axis(mu, order, axis=-1)
    R = np.take_along_axis(R, order[..., None, :], axis=-1)
    L = None
    if left:
        try:
            inv = np.linalg.inv(R)
        except np.linalg.LinAlgError:  # a defective matrix: eigenvectors not a basis
            inv = np.linalg.pinv(R)
        L = np.conj(np.swapaxes(inv, -1, -2))
    return linear.EigenDecomposition(mu, R, L)


def _bucket(n_active: int, n_total: int | None = None, factor: int = 4) -> int:
    """Batch size for ``n_active`` rows: ``8 · factor^k`` (capped at ``n_total``), few shapes."""
    size = 8
    while size < n_active:
        size *= factor
    return size if n_total is None else min(size, n_total)


def _batch_size(n_active: int, n_total: int) -> int:
    """Batch size for ``n_active`` of ``n_total`` starts: one of ``n_total``, about
    ``n_total / 8`` (a multiple of 8) and ``32``, so that a call compiles the solver for at most
    three shapes (a first call on new shapes pays two or three compiles, not one per rung of a
    fine ladder), at the price of up to 8x padding while many starts remain."""
    small = min(n_total, 32)
    if n_active <= small:
        return small
    mid = -(-n_total // 64) * 8
    if small < mid < n_total and n_active <= mid:
        return mid
    return n_total


def _take(tree: Any, idx: np.ndarray) -> Any:
    idx = jnp.asarray(idx)
    return jax.tree_util.tree_map(lambda a: jnp.take(a, idx, axis=0), tree)


@jax.jit
def _gather(tree: Any, idx: jax.Array) -> Any:
    return jax.tree_util.tree_map(lambda a: jnp.take(a, idx, axis=0), tree)


def _solve(
    F,
    x0,
    u,
    active0,
    *,
    method,
    tol_q,
    tol_grad,
    max_iters,
    chunk_iters,
    linear_solver,
    cg_iters,
    grad_rtol,
    mixed_precision,
    cg_tol=0.0,
):
    """Run the solver with retirement + compaction; returns final ``x`` and iteration counts."""
    n = x0.shape[0]
    x = x0
    iters = np.zeros(n, np.int32)
    active = np.flatnonzero(active0)
    if active.size == 0:
        return x, iters
    kw = dict(
        F=F,
        method=method,
        max_iters=max_iters,
        linear_solver=linear_solver,
        cg_iters=cg_iters,
        mixed_precision=mixed_precision,
        cg_tol=cg_tol,
    )
    state = (
        _init_states(*_take((x, u), active), **kw) if active.size < n else _init_states(x, u, **kw)
    )
    pos = np.arange(active.size)  # rows of `state` holding the active starts
    rounds = 0
    x_host = np.array(x0)
    u_host = None if u is None else np.asarray(u)
    while active.size:
        m = active.size
        size = _batch_size(m, n)
        rows = np.concatenate([pos, np.full(size - m, pos[0])])
        idx = np.concatenate([active, np.full(size - m, active[0])])
        if not (rows.size == _leading(state) and np.array_equal(rows, np.arange(rows.size))):
            state = _gather(state, jnp.asarray(rows))
        # longer rounds once few starts are left: fewer round trips for the slow tail
        n_iter = chunk_iters * int(np.clip(512 // size, 1, 8))
        xs, state, its, stop = _run_chunk(
            jnp.asarray(x_host[idx]),
            state,
            None if u_host is None else jnp.asarray(u_host[idx]),
            jnp.asarray(iters[idx]),
            n_iter=n_iter,
            tol_q=tol_q,
            tol_grad=tol_grad,
            grad_rtol=grad_rtol,
            **kw,
        )
        x_host[active] = np.asarray(xs)[:m]
        iters[active] = np.asarray(its)[:m]
        stop = np.asarray(stop)[:m]
        rounds += 1
        logger.debug("round %d: %d active (batch %d), %d stopped", rounds, m, size, stop.sum())
        pos = np.flatnonzero(~stop)
        active = active[pos]
    return jnp.asarray(x_host), iters


def _leading(tree: Any) -> int:
    return int(jax.tree_util.tree_leaves(tree)[0].shape[0])


# ---------------------------------------------------------------------------------------------
# The public finder
# ---------------------------------------------------------------------------------------------


def _float_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from err
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


def _prepare_map(F: Any, initial_states: Any) -> tuple[Any, np.ndarray]:
    """Flat map and ``(n, d)`` starts; a pytree of ``(n, ...)`` leaves is raveled per start."""
    if isinstance(initial_states, tuple | list | dict):
        leaves, treedef = jax.tree_util.tree_flatten(initial_states)
        if not leaves:
            raise ValueError("initial_states must not be an empty pytree")
        leaves = [np.asarray(leaf) for leaf in leaves]
        n = leaves[0].shape[0] if leaves[0].ndim else None
        if n is None or any(leaf.ndim < 1 or leaf.shape[0] != n for leaf in leaves):
            raise ValueError(
                "initial_states as a pytree must have leaves of shape (n, ...) with one n, got "
                f"{[leaf.shape for leaf in leaves]}"
            )
        shapes = tuple(leaf.shape[1:] for leaf in leaves)
        dtypes = tuple(
            leaf.dtype if np.issubdtype(leaf.dtype, np.floating) else np.dtype(float)
            for leaf in leaves
        )
        flat = np.concatenate([leaf.reshape(n, -1).astype(float) for leaf in leaves], axis=1)
        return _RaveledMap(F, treedef, shapes, dtypes), flat
    arr = np.asarray(initial_states)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"initial_states must be a float array (n, d), got dtype {arr.dtype}")
    return F, arr


def find_fixed_points(
    F: Callable[..., Any],
    initial_states: Any,
    inputs: Any = None,
    *,
    method: str = "lm",
    tol_q: float | None = None,
    tol_grad: float | None = None,
    max_iters: int | None = None,
    chunk_iters: int | None = None,
    linear_solver: str = "cg",
    cg_iters: int = 20,
    cg_tol: float = 1e-2,
    mixed_precision: bool = True,
    grad_rtol: float = 1e-8,
    polish_steps: int = 30,
    slow_rtol: float = 1e-3,
    newton_restarts: int = 10,
    tol_unique: float | None = 1e-3,
    outlier_distance_scale: float | None = 10.0,
    compute_jacobians: bool = True,
    decompose: bool | None = None,
    left_eigvecs: bool = False,
    marginal_tol: float = 1e-3,
    dtype: Any = np.float64,
) -> FixedPoints:
    r"""Find fixed points (and slow points) of ``F(x, u)`` from many starts.

    Minimises :math:`q(x) = \tfrac12\lVert F(x,u) - x\rVert^2` from every start with a JAXopt
    solver ``vmap``-ped over starts (see the module docstring for the solvers and for how slow
    points are reported), then drops distance outliers, deduplicates, and linearises.

    Args:
        F: one-step map on unbatched arrays, ``F(x: (d,), u: (m,)) -> (d,)`` (a ``OneStepMap``
            or any JAX-traceable function; if ``initial_states`` is a pytree, ``F`` acts on that
            pytree carry and the result is raveled). ``F`` is a static ``jit`` argument: pass the
            same object again to reuse the compiled solver.
        initial_states: ``(n, d)`` starts, or a pytree of ``(n, ...)`` leaves (a carry), or a
            :class:`FixedPoints` (its points ``x`` as starts, e.g. the previous input level's;
            see :func:`continue_fixed_points`).
        inputs: constant input, ``(m,)`` shared or ``(n, m)`` per start. ``None``: zero input of
            ``F.input_size`` if ``F`` has one, else ``F`` is called with ``u=None``.
        method: ``"lm"`` (Levenberg–Marquardt on the residual), ``"lbfgs"`` or ``"gd"`` (on q).
        tol_q: ``q`` at or below which a point is a fixed point. Default ``1e-20`` in float64,
            ``1e-12`` (FixedPointFinder's) in float32.
        tol_grad: stop a start when ``‖∇q‖`` (LM: ``‖(J−I)^T r‖``) falls to this (a slow point
            if ``q > tol_q``). Default ``1e-14`` in float64, ``1e-7`` in float32.
        max_iters: solver iterations per start (default lm 100, lbfgs 2000, gd 5000); the
            Newton finish (``polish_steps``) runs after it whatever is left of it.
        chunk_iters: iterations per round between retirements of finished starts (default lm 5,
            lbfgs 32, gd 128; rounds get up to 8x longer once fewer than 512 starts remain).
        linear_solver: ``"lm"`` only: ``"cg"`` (matrix-free, default) or ``"cholesky"``
            (materialised Jacobian).
        cg_iters: ``"lm"`` with ``"cg"``: at most this many CG iterations per LM step
            (default 20; see the module docstring for the cost of fewer).
        cg_tol: ``"lm"`` with ``"cg"``: CG stops at this relative residual (default ``1e-2``;
            ``0`` runs all ``cg_iters``).
        mixed_precision: ``"lm"`` with ``"cg"`` in float64: run the CG products in float32.
        grad_rtol: stop a start when ``‖∇q‖ <= grad_rtol · ‖F(x) − x‖`` (a local minimum of q).
        polish_steps: at most this many Newton steps (LU of ``J − I``, backtracking ``t = 1,
            ½, ¼``) finishing every start left above ``tol_q`` by the solver, each taken only
            if it at least halves ``q`` (default 30; a converging start needs a few). ``0``
            skips the finish (starts above ``tol_q`` are then slow points if the solver stopped
            on its gradient rule, else iteration caps).
        slow_rtol: a start the Newton finish cannot improve and that hit ``max_iters`` is a slow
            point if ``‖(J−I)ᵀr‖ <= slow_rtol · ‖J−I‖_F ‖r‖`` (near a local minimum of ``q``),
            otherwise it is recorded as stopped at the iteration cap.
        newton_restarts: starts that end above ``tol_q`` are restarted from their *start* with
            Powell's dogleg trust-region method on ``r`` (MINPACK hybrd's step, initial radius
            100 ``‖x‖``, the exact ``J − I``; at most this many iterations, one LU each), the
            route scipy's ``root`` takes; where that reaches a fixed point it replaces the
            solver's end point (default 10; ``0`` skips it). It recovers roots whose basin the
            solver's damped first steps left.
        tol_unique: deduplication distance (FixedPointFinder's ``1e-3``; non-converged entries
            within it of a fixed point are merged into it, :attr:`FixedPoints.n_starts`
            counting them); ``None`` returns one entry per start.
        outlier_distance_scale: drop points farther than this times the starts' mean distance
            from the starts' centroid (FixedPointFinder's ``10``); ``None`` keeps all.
        compute_jacobians: compute ``∂F/∂x`` at each returned point (after deduplication: one
            Jacobian per distinct point, not per start).
        decompose: eigen-decompose the Jacobians and classify stability (needs Jacobians;
            default: ``compute_jacobians``, so ``compute_jacobians=False`` alone skips both).
        left_eigvecs: also return left eigenvectors.
        marginal_tol: band ``| |μ| − 1 | <= marginal_tol`` classed as marginal.
        dtype: ``float64`` (default; enabled locally) or ``float32``.

    Returns:
        ``FixedPoints`` (host NumPy arrays).

    Raises:
        ValueError: ``initial_states`` not ``(n, d)`` with ``n >= 1`` or ``d`` not the map's state
            size; ``inputs`` of the wrong shape or width; unknown ``method``; bad tolerances.
        TypeError: non-float ``initial_states`` or an unsupported ``dtype``.

    Example:
        >>> from ctrnn_dyn.systems import SWITCH
        >>> import numpy as np
        >>> fps = find_fixed_points(SWITCH.map(), np.linspace(-0.5, 1.5, 21)[:, None])
        >>> len(fps.fixed)
        3
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if linear_solver not in LINEAR_SOLVERS:
        raise ValueError(f"linear_solver must be one of {LINEAR_SOLVERS}, got {linear_solver!r}")
    dt = _float_dtype(dtype)
    x64 = dt == np.dtype(np.float64)
    if tol_q is None:
        tol_q = 1e-20 if x64 else 1e-12
    if tol_grad is None:
        tol_grad = 1e-14 if x64 else 1e-7
    if max_iters is None:
        max_iters = _DEFAULT_MAX_ITERS[method]
    if chunk_iters is None:
        chunk_iters = _DEFAULT_CHUNK[method]
    for name, value in (("tol_q", tol_q), ("tol_grad", tol_grad), ("grad_rtol", grad_rtol)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    for name, value in (
        ("max_iters", max_iters),
        ("chunk_iters", chunk_iters),
        ("cg_iters", cg_iters),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    for name, value in (("polish_steps", polish_steps), ("newton_restarts", newton_restarts)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if tol_unique is not None and not tol_unique > 0:
        raise ValueError(f"tol_unique must be > 0 or None, got {tol_unique!r}")
    if outlier_distance_scale is not None and not outlier_distance_scale > 0:
        raise ValueError(
            f"outlier_distance_scale must be > 0 or None, got {outlier_distance_scale!r}"
        )
    if decompose is None:
        decompose = compute_jacobians
    if decompose and not compute_jacobians:
        raise ValueError("decompose=True needs compute_jacobians=True")
    if not (np.isfinite(slow_rtol) and slow_rtol >= 0):
        raise ValueError(f"slow_rtol must be finite and >= 0, got {slow_rtol!r}")

    if isinstance(initial_states, FixedPoints):  # continue from earlier points
        initial_states = initial_states.x
    Fm, x0 = _prepare_map(F, initial_states)
    if x0.ndim != 2:
        raise ValueError(f"initial_states must have shape (n, d), got {x0.shape}")
    n, d = x0.shape
    if n < 1 or d < 1:
        raise ValueError(f"initial_states must have shape (n, d) with n, d >= 1, got {x0.shape}")
    state_size = getattr(F, "state_size", None)
    if isinstance(state_size, int) and d != state_size:
        raise ValueError(
            f"initial_states has width {d} but F's state size is {state_size} "
            f"(expected shape (n, {state_size}))"
        )

    ctx = jax.enable_x64(True) if x64 else contextlib.nullcontext()
    with ctx:
        u = _prepare_inputs(F, inputs, n, dt)
        _check_map(Fm, d, u, dt)
        finite = np.all(np.isfinite(x0), axis=1)
        if not finite.all():
            logger.warning("%d of %d starts are not finite; they are skipped", (~finite).sum(), n)
        x_init = x0.astype(dt)
        x_start = jnp.asarray(np.where(finite[:, None], x_init, 0.0), dt)
        u_j = None if u is None else jnp.asarray(u)
        x_fin, iters = _solve(
            Fm,
            x_start,
            u_j,
            finite,
            method=method,
            tol_q=float(tol_q),
            tol_grad=float(tol_grad),
            max_iters=int(max_iters),
            chunk_iters=int(chunk_iters),
            linear_solver=linear_solver,
            cg_iters=int(cg_iters),
            cg_tol=float(cg_tol),
            grad_rtol=float(grad_rtol),
            mixed_precision=bool(mixed_precision and x64),
        )
        q = np.array(_speeds(x_fin, u_j, F=Fm))
        x_fin = np.array(x_fin)
        reason = np.where(q <= tol_q, _CONVERGED, _CAP).astype(np.int8)
        cand = np.flatnonzero(finite & np.isfinite(q) & (q > tol_q))
        if cand.size and polish_steps:
            # finish every start still above tolerance with Newton in the working precision
            size = _bucket(cand.size, n)
            idx = np.concatenate([cand, np.full(size - cand.size, cand[0])])
            xs, qs, _, finished, g_rel = _newton_finish(
                *_take((jnp.asarray(x_fin), u_j), idx),
                F=Fm,
                max_steps=int(polish_steps),
                tol_q=float(tol_q),
            )
            x_fin[cand] = np.asarray(xs[: cand.size])
            q[cand] = np.asarray(qs[: cand.size])
            finished = np.asarray(finished[: cand.size])
            g_rel = np.asarray(g_rel[: cand.size])
            # a slow point: Newton stalled (the step's predicted decrease to q = 0 failed) where
            # the solver had stopped on a vanishing gradient, or where the residual is nearly
            # orthogonal to the range of J − I; anything still moving is an iteration cap
            local_min = (iters[cand] < max_iters) | (g_rel <= slow_rtol)
            reason[cand] = np.where(finished & local_min, _SLOW, _CAP)
            left = cand[q[cand] > tol_q]
            if left.size and newton_restarts:
                # the solver took these starts to no root; a dogleg restart from the start
                # itself (scipy's route) reaches roots whose basin the solver's steps left
                size = _bucket(left.size, n)
                idx = np.concatenate([left, np.full(size - left.size, left[0])])
                xr, qr = _dogleg(
                    *_take((x_start, u_j), idx),
                    F=Fm,
                    max_steps=int(newton_restarts),
                    tol_q=float(tol_q),
                )
                xr, qr = np.asarray(xr[: left.size]), np.asarray(qr[: left.size])
                win = np.isfinite(qr) & (qr <= tol_q)
                x_fin[left[win]] = xr[win]
                q[left[win]] = qr[win]
                logger.debug("Newton restarts: %d of %d reached a root", win.sum(), left.size)
        elif cand.size:
            reason[cand] = np.where(iters[cand] < max_iters, _SLOW, _CAP)
        reason[q <= tol_q] = _CONVERGED
        reason[~(finite & np.isfinite(q))] = _NONFINITE
        x_fin = np.where(finite[:, None], x_fin, x_init)
        q = np.where(finite, q, np.nan)
        converged = finite & (q <= tol_q)
        u_np = np.zeros((n, 0), dt) if u is None else np.asarray(u)
        fps = FixedPoints(
            x=x_fin,
            u=u_np,
            q=q,
            converged=converged,
            n_iters=iters.astype(np.int64),
            x_init=x_init,
            alpha=_alpha_of(F),
            n_starts=np.ones(n, np.int64),
            stop_reason=reason,
        )
        logger.info(
            "find_fixed_points: starts stopped %s",
            ", ".join(
                f"{np.sum(reason == k)} {label}" for k, label in enumerate(STOP_REASONS)
            ),
        )
        if outlier_distance_scale is not None:
            fps = fps[_outlier_mask(fps.x, x_init, outlier_distance_scale) | ~finite]
        if tol_unique is not None:
            fps = fps.unique(tol_unique)
        if compute_jacobians and len(fps):
            fps = _add_linearisation(Fm, fps, u is None, decompose, left_eigvecs, marginal_tol)
    logger.info(
        "find_fixed_points: %d starts -> %d entries (%d fixed)",
        n,
        len(fps),
        int(np.sum(fps.converged)),
    )
    return fps


def continue_fixed_points(
    F: Callable[..., Any],
    fps: FixedPoints | Any,
    inputs_path: Any,
    *,
    extra_starts: Any = None,
    **options: Any,
) -> list[FixedPoints]:
    r"""Follow fixed points along a path of constant inputs (numerical continuation).

    At each input level :math:`u_k` of ``inputs_path`` the starts are the fixed points found at
    the previous level (at the first level: ``fps``), plus ``extra_starts`` if given; where the
    previous level has no fixed point its slow points are used instead. A fixed point that moves
    smoothly with the input is then one short Newton/LM solve away from its predecessor, even
    where starts from the network's states stall on slow points (e.g. the sine-wave generator's
    low-frequency levels).

    Args:
        F: one-step map on a flat state, as for :func:`find_fixed_points`.
        fps: the points to start from: a :class:`FixedPoints` (its fixed points, or its slow
            points if it has none) or an ``(n, d)`` array of states.
        inputs_path: ``(K, m)`` input levels, followed in order.
        extra_starts: ``(n', d)`` starts added at every level (e.g. states of the network), or
            ``None``.
        **options: passed to :func:`find_fixed_points` (``tol_unique`` keeps its default, so
            each level holds one entry per distinct point).

    Returns:
        ``K`` :class:`FixedPoints`, one per level (possibly empty of fixed points where the
        branch ends, e.g. at a saddle-node bifurcation; the next level then continues from the
        slow points there).

    Raises:
        ValueError: ``inputs_path`` not ``(K, m)`` with ``K >= 1``, or no finite start.
    """
    path = np.asarray(inputs_path, dtype=float)
    if path.ndim == 1:
        path = path[:, None]
    if path.ndim != 2 or path.shape[0] < 1:
        raise ValueError(f"inputs_path must have shape (K, m) with K >= 1, got {path.shape}")
    extra = None if extra_starts is None else np.asarray(extra_starts, dtype=float)
    prev = fps
    out: list[FixedPoints] = []
    for k, u in enumerate(path):
        if isinstance(prev, FixedPoints):
            pick = prev.fixed if len(prev.fixed) else prev[np.isfinite(prev.q)]
            starts = pick.x
        else:
            starts = np.asarray(prev, dtype=float)
        if extra is not None:
            starts = np.concatenate([starts.reshape(-1, extra.shape[-1]), extra], axis=0)
        starts = starts[np.all(np.isfinite(starts), axis=1)] if starts.ndim == 2 else starts
        if np.ndim(starts) != 2 or starts.shape[0] == 0:
            raise ValueError(f"no finite start to continue from at level {k} (input {u})")
        level = find_fixed_points(F, starts, u, **options)
        out.append(level)
        prev = level if len(level) else prev
    return out


def _alpha_of(F: Any) -> Any:
    alpha = getattr(F, "alpha", None)
    if alpha is None:
        return None
    try:
        return np.asarray(alpha, dtype=float)
    except (TypeError, ValueError):
        return None


def _prepare_inputs(F: Any, inputs: Any, n: int, dt: np.dtype) -> np.ndarray | None:
    width = getattr(F, "input_size", None)
    width = width if isinstance(width, int) else None
    if inputs is None:
        return None if width is None else np.zeros((n, width), dt)
    u = np.asarray(inputs)
    if not (np.issubdtype(u.dtype, np.floating) or np.issubdtype(u.dtype, np.integer)):
        raise TypeError(f"inputs must be a float array, got dtype {u.dtype}")
    if u.ndim == 1:
        u = np.broadcast_to(u, (n, u.shape[0]))
    elif u.ndim != 2 or u.shape[0] != n:
        raise ValueError(f"inputs must have shape (m,) or (n, m) = ({n}, m), got {u.shape}")
    if width is not None and u.shape[1] != width:
        raise ValueError(
            f"inputs has width {u.shape[1]} but F expects {width} (shape (m,) or (n, {width}))"
        )
    if not np.all(np.isfinite(u)):
        raise ValueError("inputs must be finite")
    return np.ascontiguousarray(u, dtype=dt)


def _check_map(F: Any, d: int, u: np.ndarray | None, dt: np.dtype) -> None:
    x = jax.ShapeDtypeStruct((d,), dt)
    uu = None if u is None else jax.ShapeDtypeStruct(u.shape[1:], dt)
    try:
        out = jax.eval_shape(F, x, uu)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"F failed on a state of shape ({d},) (from initial_states) and an input of shape "
            f"{None if u is None else u.shape[1:]} (from inputs): {err}"
        ) from err
    shape = getattr(out, "shape", None)
    if shape != (d,):
        raise ValueError(
            f"F must map a state of shape ({d},) to shape ({d},), got {shape}; check the width "
            "of initial_states"
        )


def _add_linearisation(F, fps, no_input, decompose, left, marginal_tol) -> FixedPoints:
    ok = np.all(np.isfinite(fps.x), axis=1)
    n, d = fps.x.shape
    jac = np.full((n, d, d), np.nan, fps.x.dtype)
    fields: dict[str, Any] = {}
    if ok.any():
        idx = np.flatnonzero(ok)
        size = _bucket(idx.size, factor=2)
        pad = np.concatenate([idx, np.full(size - idx.size, idx[0])])
        x = jnp.asarray(fps.x[pad])
        u = None if no_input else jnp.asarray(fps.u[pad])
        jac[idx] = np.asarray(_jacobians(x, u, F=F))[: idx.size]
        if decompose:
            eigvals = np.full((n, d), np.nan + 0j)
            eigvecs = np.full((n, d, d), np.nan + 0j)
            lv = np.full((n, d, d), np.nan + 0j)
            good = idx[np.all(np.isfinite(jac[idx]), axis=(1, 2))]
            if good.size:
                dec = _eig_host(jac[good], left)
                eigvals[good], eigvecs[good] = dec.eigvals, dec.eigvecs
                if left:
                    lv[good] = dec.left_eigvecs
            fields.update(eigvals=eigvals, eigvecs=eigvecs)
            if left:
                fields["left_eigvecs"] = lv
    fields["jacobians"] = jac
    if decompose:
        if "eigvals" not in fields:
            fields.update(
                eigvals=np.full((n, d), np.nan + 0j), eigvecs=np.full((n, d, d), np.nan + 0j)
            )
        stab = linear.classify(fields["eigvals"], marginal_tol=marginal_tol)
        fields.update(stability=stab.label, n_unstable=stab.n_unstable)
    return dataclasses.replace(fps, **fields)
