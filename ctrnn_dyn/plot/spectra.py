"""Eigenvalue spectra of the linearisations at fixed points, against the unit circle."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes

from ctrnn_dyn.plot._axes import _new_ax
from ctrnn_dyn.plot.annotate import legend_outside
from ctrnn_dyn.plot.figure_style import _CYCLE, _styled

__all__ = ["eigenspectrum"]


@_styled
def eigenspectrum(
    eigvals: Any,
    *,
    kind: str = "discrete",
    alpha: Any = None,
    labels: list[str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    r"""Eigenvalues in the complex plane, one colour per fixed point.

    ``kind="discrete"``: multipliers :math:`\mu` of the map with the unit circle (stable
    inside). ``kind="continuous"``: :math:`\lambda` with the imaginary axis (stable left); if
    ``alpha`` is given the input is taken as multipliers and converted,
    :math:`\lambda = (\mu - 1)/\alpha` (scalar ``alpha``), in units of :math:`1/\tau`.

    Args:
        eigvals: ``(d,)``, ``(N, d)``, or a ``FixedPoints``-like object (its ``eigvals``).
        kind: ``"discrete"`` or ``"continuous"``.
        alpha: scalar ``dt/τ`` for the conversion (continuous only).
        labels: ``N`` legend labels (default ``"point i"`` when ``N > 1``).
        ax: axes.

    Returns:
        The axes.
    """
    if kind not in ("discrete", "continuous"):
        raise ValueError(f"kind must be 'discrete' or 'continuous', got {kind!r}")
    if hasattr(eigvals, "eigvals"):
        mu = eigvals.eigvals
        if mu is None:
            raise ValueError("eigvals: the FixedPoints object carries no eigenvalues")
        conv = getattr(eigvals, "converged", None)
        mu = np.asarray(mu)
        if conv is not None:
            mu = mu[np.asarray(conv, bool)]
    else:
        mu = np.asarray(eigvals)
    if mu.ndim not in (1, 2) or not np.issubdtype(mu.dtype, np.number):
        raise ValueError(f"eigvals must have shape (d,) or (N, d), got {mu.shape}")
    if not np.all(np.isfinite(mu)):
        raise ValueError("eigvals contains non-finite values (nan or inf)")
    mu = np.atleast_2d(mu)
    if alpha is not None:
        if kind != "continuous":
            raise ValueError("alpha converts multipliers to continuous eigenvalues: "
                             "use it with kind='continuous'")
        a = np.asarray(alpha, float)
        if a.ndim or not a > 0:
            raise ValueError(f"alpha must be a positive scalar, got {alpha!r}")
        mu = (mu - 1.0) / float(a)
    if labels is not None and len(labels) != mu.shape[0]:
        raise ValueError(f"labels must have {mu.shape[0]} entries, got {len(labels)}")
    ax = _new_ax(ax)
    if kind == "discrete":
        th = np.linspace(0, 2 * np.pi, 400)
        ax.plot(np.cos(th), np.sin(th), color="0.5", lw=0.8, zorder=1, label="|μ| = 1")
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel(r"Re $\mu$")
        ax.set_ylabel(r"Im $\mu$")
    else:
        ax.axvline(0.0, color="0.5", lw=0.8, zorder=1, label="Re λ = 0")
        unit = r" ($1/\tau$)" if alpha is not None else ""
        ax.set_xlabel(r"Re $\lambda$" + unit)
        ax.set_ylabel(r"Im $\lambda$" + unit)
    ax.axhline(0.0, color="0.85", lw=0.6, zorder=0)
    for i, row in enumerate(mu):
        lab = labels[i] if labels is not None else (f"point {i}" if mu.shape[0] > 1 else None)
        ax.scatter(row.real, row.imag, s=16, color=_CYCLE[i % len(_CYCLE)], zorder=3,
                   label=lab, marker="o", linewidths=0)
    legend_outside(ax)
    return ax
