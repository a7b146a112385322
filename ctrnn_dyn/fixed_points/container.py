"""The :class:`FixedPoints` container: indexing, views (fixed, slow, stable, unique), summary,
and saving and loading (through :mod:`ctrnn_dyn.fixed_points.fileformat`)."""

from __future__ import annotations

import dataclasses
import logging
import os
import zipfile
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from ctrnn_dyn import _files, linear
from ctrnn_dyn.fixed_points.clustering import _cluster
from ctrnn_dyn.fixed_points.fileformat import (
    _ARRAY_FIELDS,
    _CAP,
    _CONVERGED,
    _FORMAT_VERSION,
    _NONFINITE,
    _REQUIRED,
    _SLOW,
    STOP_REASONS,
    _check_header_fields,
    _check_values,
    _invalid,
    _InvalidFile,
    _npz_headers,
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, eq=False)
class FixedPoints:
    r"""Fixed and slow points with their speeds, Jacobians and stability (host NumPy arrays).

    ``N`` entries of a ``d``-dimensional (flat) state with ``m`` inputs. Optional fields are
    ``None`` when not computed. Indexing (``fps[i]``, ``fps[2:5]``, ``fps[mask]``,
    ``fps[[0, 3]]``) returns a ``FixedPoints`` (an integer selects a length-1 container).
    Registered as a JAX pytree (array fields are leaves; ``stability``, ``alpha`` and
    ``solver_path`` are static).

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
        n_starts: ``(N,)`` number of starts whose run ended on the entry (``1`` per start;
            after deduplication the size of its cluster, slow entries merged into a fixed point
            included; ``0`` for a root that only :func:`find_fixed_points`' damped coverage
            run reached), or ``None`` (files written before the field existed).
        stop_reason: ``(N,)`` why the entry's start stopped, an index into
            :data:`STOP_REASONS` (``0`` converged, ``1`` slow point: a local minimum of ``q``
            at which Newton steps no longer reduce ``q``, ``2`` iteration cap: still moving when
            the budget ran out, ``3`` non-finite), or ``None``; :attr:`stop_labels` gives the
            strings.
        solver_path: which code ran the solver's linear solves: ``"kernels:<key>"`` (LM's
            exact steps on the compiled kernel of :mod:`ctrnn_dyn.native`, ``<key>`` its
            build), ``"xla"``, or ``None`` (not recorded: files written before the field
            existed, or points not found by :func:`~ctrnn_dyn.fixed_points.find_fixed_points`).
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
    solver_path: str | None = None

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

        An optional field is kept only if every item has it; ``alpha`` and ``solver_path``
        only if all agree.

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
        paths = {i.solver_path for i in items}
        return cls(**fields, alpha=alphas[0] if same else None,
                   solver_path=paths.pop() if len(paths) == 1 else None)

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
        if self.solver_path is not None:
            arrays["solver_path"] = np.asarray(self.solver_path, dtype=str)
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
        float ``()`` or ``(d,)``; ``solver_path`` a string), and that each array's declared size
        is the size of the data the file holds (a header cannot make the reader allocate more
        than the file backs).
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
        path_record = arrays.get("solver_path")
        return cls(**fields, alpha=arrays.get("alpha"),
                   solver_path=None if path_record is None else str(path_record))

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
            f"d={self.state_size}"
            + ("" if self.solver_path is None else f", solved by {self.solver_path}"),
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



# field -> (allowed dtype kinds, shape in symbols: N points, d state size, m any input width);
# alpha's shape is () or (d,) and is checked separately
def _flatten(fp: FixedPoints):
    children = tuple(getattr(fp, name) for name in _ARRAY_FIELDS)
    stability = None if fp.stability is None else tuple(np.asarray(fp.stability).tolist())
    alpha = None if fp.alpha is None else tuple(np.atleast_1d(fp.alpha).tolist())
    alpha_scalar = fp.alpha is not None and np.ndim(fp.alpha) == 0
    return children, (stability, alpha, alpha_scalar, fp.solver_path)


def _unflatten(aux, children) -> FixedPoints:
    stability, alpha, alpha_scalar, solver_path = aux
    fields = dict(zip(_ARRAY_FIELDS, children, strict=True))
    obj = object.__new__(FixedPoints)  # skip validation: leaves may be tracers or sentinels
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    object.__setattr__(obj, "stability", None if stability is None else np.asarray(stability))
    if alpha is not None:
        alpha = np.asarray(alpha[0] if alpha_scalar else alpha, dtype=float)
    object.__setattr__(obj, "alpha", alpha)
    object.__setattr__(obj, "solver_path", solver_path)
    return obj


jax.tree_util.register_pytree_node(FixedPoints, _flatten, _unflatten)


