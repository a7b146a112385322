"""Attractors and trajectories in state space."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes

from ctrnn_dyn.pca import TrajectoryPCA
from ctrnn_dyn.plot._axes import _finite_array, _new_ax, _traj_batch
from ctrnn_dyn.plot.annotate import legend_outside
from ctrnn_dyn.plot.figure_style import _CYCLE, _styled
from ctrnn_dyn.plot.fixed_points3d import _project3

__all__ = ["attractor_3d", "trajectories"]


@_styled
def attractor_3d(
    states: Any,
    *,
    pca: TrajectoryPCA | None = None,
    mark_start: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Trajectories ``(T, n)`` or ``(B, T, n)`` as 3-D curves (PCA when ``n > 3``).

    Args:
        states: ``(T, n)`` or ``(B, T, n)`` with ``n >= 3``.
        pca: fitted :class:`TrajectoryPCA` (>= 3 components); fitted on ``states`` when
            ``n > 3`` and not given.
        mark_start: a dot at each start.
        ax: a 3-D axes.

    Returns:
        The 3-D axes (one line per trajectory).
    """
    trajs = _traj_batch(states, "states")
    n = trajs.shape[-1]
    if n < 3:
        raise ValueError(f"states must have n >= 3 (use phase_portrait for 2-D), got n = {n}")
    if pca is None and n > 3:
        pca = TrajectoryPCA(3).fit(trajs)
    proj, _, axlabels = _project3(pca, n)
    ax = _new_ax(ax, "3d")
    for b, traj in enumerate(proj(trajs)):
        color = _CYCLE[b % len(_CYCLE)]
        ax.plot(*traj.T, color=color, lw=0.6)
        if mark_start:
            ax.scatter(*traj[0][:, None], color=color, s=12, depthshade=False)
    ax.set_xlabel(axlabels[0])
    ax.set_ylabel(axlabels[1])
    ax.set_zlabel(axlabels[2], labelpad=5)
    return ax


@_styled
def trajectories(
    values: Any,
    targets: Any = None,
    *,
    times: Any = None,
    dt: float = 1.0,
    time_unit: str = "steps",
    ylabel: str = "output",
    max_traces: int = 8,
    ax: Axes | None = None,
) -> Axes:
    """States or outputs over time (solid), against targets (dashed, same colour).

    Args:
        values: ``(T,)``, ``(T, p)`` or ``(B, T, p)``.
        targets: same shape as ``values`` or ``None``.
        times: ``(T,)`` (default ``dt · (1 … T)``).
        dt: time per step when ``times`` is not given.
        time_unit: label of the time axis unit.
        ylabel: label of the value axis.
        max_traces: at most this many batch elements are drawn.
        ax: axes.

    Returns:
        The axes (``min(B, max_traces) · p`` solid lines, as many dashed ones for targets).
    """
    v = np.asarray(values)
    v = v[:, None] if v.ndim == 1 else v
    v = _traj_batch(v, "values")
    t_arr = None
    if targets is not None:
        t_arr = np.asarray(targets)
        t_arr = t_arr[:, None] if t_arr.ndim == 1 else t_arr
        t_arr = _traj_batch(t_arr, "targets")
        if t_arr.shape != v.shape:
            raise ValueError(f"targets must have the shape of values {v.shape}, got "
                             f"{t_arr.shape}")
    T = v.shape[1]
    if times is None:
        times = dt * np.arange(1, T + 1)
    times = _finite_array(times, "times", (1,))
    if times.shape[0] != T:
        raise ValueError(f"times must have length T = {T}, got {times.shape[0]}")
    ax = _new_ax(ax)
    k = 0
    for b in range(min(v.shape[0], max_traces)):
        for c in range(v.shape[2]):
            color = _CYCLE[k % len(_CYCLE)]
            k += 1
            ax.plot(times, v[b, :, c], color=color, lw=1.0,
                    label="network" if (b, c) == (0, 0) else None)
            if t_arr is not None:
                ax.plot(times, t_arr[b, :, c], color=color, lw=1.0, ls="--",
                        label="target" if (b, c) == (0, 0) else None)
    ax.set_xlabel(f"time ({time_unit})")
    ax.set_ylabel(ylabel)
    if t_arr is not None:
        legend_outside(ax)
    return ax
