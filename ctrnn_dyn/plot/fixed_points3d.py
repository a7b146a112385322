"""Fixed and slow points in the first three principal components of the trajectories."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes

from ctrnn_dyn.pca import TrajectoryPCA
from ctrnn_dyn.plot._axes import _new_ax, _traj_batch
from ctrnn_dyn.plot.annotate import legend_outside
from ctrnn_dyn.plot.figure_style import OKABE_ITO, _styled
from ctrnn_dyn.plot.points import _fixed_point_parts, mark_points

__all__ = ["fixed_points_3d"]


def _project3(pca: TrajectoryPCA | None, d: int):
    if pca is None:
        if d > 3:
            raise ValueError("d > 3 needs a fitted pca")

        def pts(a):
            a = np.asarray(a)
            return np.concatenate([a, np.zeros(a.shape[:-1] + (3 - d,))], -1)

        return pts, pts, [f"$x_{i + 1}$" for i in range(3)]
    if pca.n_components_ < 3:
        raise ValueError(f"pca must have >= 3 components, got {pca.n_components_}")
    ev = pca.explained_variance_ratio_
    return (lambda a: pca.transform(a)[..., :3],
            lambda v: pca.transform_directions(v)[..., :3],
            [f"PC{i + 1} ({100 * ev[i]:.0f}%)" for i in range(3)])


@_styled
def fixed_points_3d(
    fixed_points: Any,
    *,
    pca: TrajectoryPCA | None = None,
    trajectories: Any = None,
    mode_length: float | None = None,
    slow_points: bool = False,
    modes: bool = True,
    fit: str = "all",
    trajectory_alpha: float = 1.0,
    trajectory_width: float = 0.6,
    marker_size: float = 30,
    ax: Axes | None = None,
) -> Axes:
    """Fixed points in 3-D PCA space, as in Sussillo & Barak (2013), Fig. 2–3.

    Stable points filled, unstable ones open (marker code of :data:`POINT_STYLE`); each
    unstable mode (``|μ| > 1``) drawn as a line segment ``x ± mode_length · v/‖v‖`` along its
    eigenvector ``v = eigvecs[i][:, j]`` of ``eigvals[i][j]`` (real part; for a complex pair
    the real part and the imaginary part, which span the unstable plane); trajectories
    as thin grey lines.

    Args:
        fixed_points: ``FixedPoints``-like (``x`` ``(N, d)``, ``stability``, ``eigvals``,
            ``eigvecs``, ``converged``) or an array ``(N, d)``.
        pca: fitted :class:`TrajectoryPCA` (>= 3 components); default: fitted on the
            trajectories (or the points) when ``d > 3``, raw coordinates when ``d <= 3``.
        trajectories: ``(T, d)`` or ``(B, T, d)``.
        mode_length: half-length of unstable-mode segments in state units (default 10 %
            of the extent of the data).
        slow_points: also mark the entries that did not converge (slow points).
        modes: draw the unstable-mode segments.
        fit: ``"all"``: the axes span points and trajectories; ``"points"``: they span the
            points (plus 15 %), and trajectories are clipped to them.
        trajectory_alpha: opacity of the trajectories.
        trajectory_width: their line width (points).
        marker_size: marker area (points²).
        ax: a 3-D axes.

    Returns:
        The 3-D axes.
    """
    if fit not in ("all", "points"):
        raise ValueError(f"fit must be 'all' or 'points', got {fit!r}")
    x, labels, eigvals, eigvecs = _fixed_point_parts(fixed_points, slow_points)
    d = x.shape[1]
    trajs = None if trajectories is None else _traj_batch(trajectories)
    if trajs is not None and trajs.shape[-1] != d:
        raise ValueError(f"trajectories must have state width d = {d}, got {trajs.shape}")
    if pca is None and d > 3:
        data = trajs if trajs is not None else x
        pca = TrajectoryPCA(3).fit(data if data.reshape(-1, d).shape[0] >= 3 else x)
    proj, proj_dir, axlabels = _project3(pca, d)
    ax = _new_ax(ax, "3d")
    allx = x if trajs is None else np.concatenate([x, trajs.reshape(-1, d)])
    if mode_length is None:
        mode_length = 0.1 * float(np.max(np.ptp(allx, axis=0)) or 1.0)
    clip = fit == "points" and x.shape[0] > 0
    if trajs is not None:
        for traj in proj(trajs):
            ax.plot(*traj.T, color="0.6", lw=trajectory_width, alpha=trajectory_alpha,
                    zorder=1, axlim_clip=clip)
    if modes and eigvals is not None and eigvecs is not None:
        first = True
        for xi, mu, V in zip(x, eigvals, eigvecs, strict=True):
            for j in np.nonzero(np.abs(mu) > 1.0)[0]:
                # a complex pair spans a plane: Re v for Im μ > 0, Im v for its conjugate
                v = np.imag(V[:, j]) if np.imag(mu[j]) < 0 else np.real(V[:, j])
                if np.linalg.norm(v) == 0:
                    v = np.abs(V[:, j])
                v = v / np.linalg.norm(v)
                seg = proj(np.stack([xi - mode_length * v, xi + mode_length * v]))
                ax.plot(*seg.T, color=OKABE_ITO["vermillion"], lw=1.0, zorder=4,
                        label="unstable mode" if first else None)
                first = False
    if x.shape[0]:
        z = proj(x)
        mark_points(ax, z, labels, size=marker_size)
        if clip:
            lo, hi = z.min(0), z.max(0)
            pad = 0.15 * np.maximum(hi - lo, 1e-6)
            ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
            ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
            ax.set_zlim(lo[2] - pad[2], hi[2] + pad[2])
    ax.set_xlabel(axlabels[0])
    ax.set_ylabel(axlabels[1])
    ax.set_zlabel(axlabels[2], labelpad=5)
    legend_outside(ax)
    return ax
