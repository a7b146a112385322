"""Line attractors: fixed or slow points on a 1-D manifold with one slow mode along it."""

from __future__ import annotations

import functools
import logging
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn._checks import renamed
from ctrnn_dyn.attractors._common import (
    Map,
    _as_u,
    _check_F,
    _jacobians,
)

logger = logging.getLogger(__name__)


class LineAttractor(NamedTuple):
    r"""Evidence for (or against) a line attractor formed by a set of fixed/slow points.

    Attributes:
        is_line: the verdict (all criteria below met).
        direction: ``(d,)`` unit vector, the points' first principal axis.
        length: extent of the points along ``direction``.
        center: ``(d,)`` mean of the points.
        n_points: points used (converged ones only, when a ``converged`` flag exists).
        variance_ratio: ``(min(N, d),)`` PCA explained-variance ratios of the points.
        slow_eigvals: ``(N,)`` at each point, the continuous-time eigenvalue
            :math:`\lambda = (\mu - 1)/\alpha` nearest 0 (i.e. the multiplier nearest 1).
        gap: ``(N,)`` the next eigenvalue's :math:`|\lambda|` (separation of time scales).
        alignment: ``(N,)`` :math:`|\cos|` between the slow eigenvector and the manifold's
            local tangent (secant across ``±max(1, N // 20)`` neighbours of the points sorted
            along ``direction``; central differences for ``N < 40``).
        order: ``(N,)`` indices that sort the points along the line.
        reason: ``"line attractor"`` or the first criterion that failed.
    """

    is_line: bool
    direction: np.ndarray
    length: float
    center: np.ndarray
    n_points: int
    variance_ratio: np.ndarray
    slow_eigvals: np.ndarray
    gap: np.ndarray
    alignment: np.ndarray
    order: np.ndarray
    reason: str


def _continuous_spectra(points, jacobians, eigvals, eigvecs, alpha):
    """Continuous-time eigenvalues ``(N, d)`` and right eigenvectors ``(N, d, d)``."""
    if jacobians is not None:
        J = np.asarray(jacobians)
        d = J.shape[-1]
        a = np.broadcast_to(np.asarray(alpha, np.float64), (d,))
        A = (J - np.eye(d)) / a[None, :, None]
        lam, vec = np.linalg.eig(A)
        return lam, vec
    a = np.asarray(alpha, np.float64)
    if a.ndim and not np.allclose(a, a.flat[0]):
        raise ValueError(
            "alpha is per-neuron: pass jacobians (or F) rather than eigvals so the "
            "continuous-time spectrum can be computed"
        )
    return (np.asarray(eigvals) - 1.0) / float(a.flat[0]), np.asarray(eigvecs)


def _old_argument_order(fn):
    """Accept the deprecated ``line_attractor(fixed_points, F=...)`` with a warning."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> LineAttractor:
        old_form = (len(args) == 1 and "fixed_points" not in kwargs and args[0] is not None
                    and not callable(args[0]))
        if old_form:
            warnings.warn("line_attractor(fixed_points, F=...) is deprecated: the map comes first, "
                          "line_attractor(F, fixed_points) (F may be None)",
                          DeprecationWarning, stacklevel=3)
            args = (kwargs.pop("F", None), args[0])
        return fn(*args, **kwargs)

    return wrapper


@renamed(u="inputs")
@_old_argument_order
def line_attractor(
    F: Map | None,
    fixed_points: Any,
    *,
    inputs: Any = None,
    alpha: Any = None,
    eig_tol: float = 0.05,
    min_gap_ratio: float = 5.0,
    min_variance_ratio: float = 0.9,
    min_alignment: float = 0.9,
    min_points: int = 3,
    min_length: float = 1e-6,
    converged_only: bool = True,
) -> LineAttractor:
    r"""Do these fixed (or slow) points form a line attractor?

    A line attractor is a 1-D manifold of fixed points, each with one eigenvalue
    :math:`\mu \approx 1` (continuous time :math:`\lambda = (\mu-1)/\alpha \approx 0`) whose
    eigenvector points *along* the manifold, and all other modes decaying. The test:

    * the points spread along one direction: first PCA variance ratio ``>= min_variance_ratio``
      and extent ``> min_length``, with at least ``min_points`` points;
    * at each point the eigenvalue nearest zero has median :math:`|\lambda| \le` ``eig_tol``
      (per unit of the time constant) and is separated from the next one by a factor
      ``>= min_gap_ratio``;
    * its eigenvector is aligned with the local tangent: median :math:`|\cos| \ge`
      ``min_alignment``.

    Isolated fixed points fail the eigenvalue test (their slowest mode decays or grows at a
    finite rate) even if three of them happen to be collinear.

    Args:
        F: the one-step map, or ``None``; used for Jacobians when ``fixed_points`` carries
            none, and for its ``alpha`` attribute.
        fixed_points: a ``FixedPoints``-like object with ``x`` ``(N, d)`` and any of
            ``jacobians`` ``(N, d, d)`` or ``eigvals``/``eigvecs`` (discrete multipliers,
            ``(N, d)``/``(N, d, d)``), optionally ``converged`` ``(N,)``; or an array
            ``(N, d)`` of points together with ``F``.
        inputs: input ``(m,)`` for ``F``.
        alpha: ``dt/τ`` (scalar or ``(d,)``) to turn multipliers into continuous eigenvalues;
            default ``F.alpha``, else ``fixed_points.alpha``, else 1 (per step).
        eig_tol: largest median :math:`|\lambda|` of the slow mode (criteria above).
        min_gap_ratio: smallest ratio of the next eigenvalue's modulus to the slow one's.
        min_variance_ratio: smallest first-PCA variance ratio of the points.
        min_alignment: smallest median :math:`|\cos|` of slow eigenvector and tangent.
        min_points: fewest points.
        min_length: smallest extent along the line.
        converged_only: use only points flagged ``converged``; ``False`` also uses slow points
            (an approximate line attractor is often a line of slow points).

    Returns:
        :class:`LineAttractor` with the verdict and the evidence.

    Raises:
        ValueError / TypeError: naming the bad argument.

    Example:
        >>> import numpy as np, jax.numpy as jnp
        >>> A = jnp.array([[1.0, 0.0], [0.0, 0.5]])  # integrates along x_1, forgets x_2
        >>> pts = np.stack([np.linspace(-1, 1, 5), np.zeros(5)], axis=1)
        >>> res = line_attractor(lambda x, u: A @ x, pts)
        >>> res.is_line, round(res.length, 6)
        (True, 2.0)
    """
    if isinstance(fixed_points, np.ndarray | jax.Array | list | tuple):
        points = np.asarray(fixed_points)
        jacobians = eigvals = eigvecs = converged = None
    else:
        if not hasattr(fixed_points, "x"):
            raise TypeError(
                "fixed_points must be a FixedPoints-like object with .x (N, d) or an array "
                f"(N, d), got {type(fixed_points).__name__}"
            )
        points = np.asarray(fixed_points.x)
        jacobians = getattr(fixed_points, "jacobians", None)
        eigvals = getattr(fixed_points, "eigvals", None)
        eigvecs = getattr(fixed_points, "eigvecs", None)
        converged = getattr(fixed_points, "converged", None)
    if points.ndim != 2:
        raise ValueError(f"fixed_points.x must have shape (N, d), got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("fixed_points.x contains non-finite values (nan or inf)")
    if F is not None:
        _check_F(F)
    keep = (np.ones(points.shape[0], bool) if converged is None or not converged_only
            else np.asarray(converged, bool))
    if keep.shape != (points.shape[0],):
        raise ValueError(f"fixed_points.converged must have shape (N,), got {keep.shape}")
    points = points[keep]
    N, d = points.shape
    if alpha is None:
        alpha = getattr(F, "alpha", None) if F is not None else None
        if alpha is None:
            alpha = getattr(fixed_points, "alpha", None)
        if alpha is None:
            alpha = 1.0
    alpha = np.asarray(alpha, np.float64)
    if np.any(~np.isfinite(alpha)) or np.any(alpha <= 0):
        raise ValueError(f"alpha must be positive, got {alpha}")

    if jacobians is not None:
        jacobians = np.asarray(jacobians)[keep]
    elif eigvals is not None and eigvecs is not None:
        eigvals, eigvecs = np.asarray(eigvals)[keep], np.asarray(eigvecs)[keep]
    elif F is not None:
        with jax.enable_x64(True):
            uj = _as_u(inputs, jnp.float64)
            jacobians = np.asarray(_jacobians(F, jnp.asarray(points, jnp.float64), uj))
    else:
        raise ValueError(
            "line_attractor needs Jacobians: fixed_points without jacobians/eigvals needs F"
        )

    empty = LineAttractor(
        False, np.full(d, np.nan), 0.0, points.mean(0) if N else np.full(d, np.nan), N,
        np.zeros(0), np.zeros(0, complex), np.zeros(0), np.zeros(0), np.zeros(0, int), "",
    )
    if N < max(min_points, 2):
        return empty._replace(reason=f"too few points ({N} < {max(min_points, 2)})")

    center = points.mean(0)
    _, svals, vt = np.linalg.svd(points - center, full_matrices=False)
    var = svals**2
    variance_ratio = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    direction = vt[0]
    proj = (points - center) @ direction
    order = np.argsort(proj)
    length = float(proj.max() - proj.min())

    # local tangent: secant across +-k neighbours of the points sorted along the line (k = 1:
    # central differences). k grows with N so that the secant spans about a tenth of the line:
    # with dense points, neighbours' off-line scatter (slow points sit within a tolerance of the
    # manifold) would otherwise swamp their spacing and the verdict would depend on how many
    # points the finder returned.
    sorted_pts = points[order]
    k = max(1, N // 20)
    pos = np.arange(N)
    tang = sorted_pts[np.minimum(pos + k, N - 1)] - sorted_pts[np.maximum(pos - k, 0)]
    norms = np.linalg.norm(tang, axis=1, keepdims=True)
    tang = np.where(norms > 0, tang / np.where(norms > 0, norms, 1.0), direction)
    tangents = np.empty_like(tang)
    tangents[order] = tang

    lam, vec = _continuous_spectra(points, jacobians, eigvals, eigvecs, alpha)
    ranks = np.argsort(np.abs(lam), axis=1)
    idx = np.arange(N)
    slow = lam[idx, ranks[:, 0]]
    gap = np.abs(lam[idx, ranks[:, 1]]) if d > 1 else np.full(N, np.inf)
    v_slow = vec[idx, :, ranks[:, 0]]
    alignment = np.abs(np.einsum("ni,ni->n", v_slow.conj(), tangents)) / np.linalg.norm(
        v_slow, axis=1
    )

    med_slow = float(np.median(np.abs(slow)))
    if variance_ratio[0] < min_variance_ratio:
        reason = f"points not 1-D (first variance ratio {variance_ratio[0]:.3g})"
    elif length <= min_length:
        reason = f"points do not extend (length {length:.3g})"
    elif med_slow > eig_tol:
        reason = f"no eigenvalue near zero (median |lambda| {med_slow:.3g} > {eig_tol})"
    elif float(np.median(gap)) < min_gap_ratio * max(med_slow, 1e-300):
        reason = f"no separation of time scales (gap {float(np.median(gap)):.3g})"
    elif float(np.median(alignment)) < min_alignment:
        reason = f"slow mode not along the line (alignment {float(np.median(alignment)):.3g})"
    else:
        reason = "line attractor"
    return LineAttractor(
        is_line=reason == "line attractor",
        direction=direction,
        length=length,
        center=center,
        n_points=N,
        variance_ratio=variance_ratio,
        slow_eigvals=slow,
        gap=gap,
        alignment=alignment,
        order=order,
        reason=reason,
    )


