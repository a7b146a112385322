"""Phase portraits of a two-dimensional map: the vector field, nullclines, fixed points and
trajectories."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from ctrnn_dyn._checks import check_int, renamed
from ctrnn_dyn.pca import TrajectoryPCA
from ctrnn_dyn.plot._axes import _finite_array, _new_ax, _traj_batch, _vector_field_on
from ctrnn_dyn.plot.annotate import legend_outside
from ctrnn_dyn.plot.figure_style import _CYCLE, OKABE_ITO, _styled
from ctrnn_dyn.plot.points import _fixed_point_parts, mark_points

__all__ = ["phase_portrait"]


@_styled
@renamed(u="inputs")
def phase_portrait(
    F: Callable,
    *,
    inputs: Any = None,
    dt: float = 1.0,
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    density: int = 25,
    fixed_points: Any = None,
    trajectories: Any = None,
    nullclines: bool = True,
    pca: TrajectoryPCA | None = None,
    plane_offset: Any = None,
    kind: str = "stream",
    time_unit: str = "time unit",
    state_symbol: str = "x",
    ax: Axes | None = None,
) -> Axes:
    r"""Phase portrait of a map ``F`` through its velocity :math:`v(x) = (F(x,u) - x)/dt`.

    *2-D systems*: streamlines (``kind="stream"``) or arrows (``kind="quiver"``) of ``v`` on a
    ``density × density`` grid, the nullclines :math:`v_1 = 0` (solid) and :math:`v_2 = 0`
    (dashed), fixed points marked by stability class, and trajectories.

    *High-dimensional systems* (``n > 2``): the flow on the plane spanned by the first two
    principal axes :math:`c_1, c_2` of ``pca`` (fitted on ``trajectories`` when not given),
    through the mean state (plus ``plane_offset``, ``(n,)``). At each grid point
    :math:`x = \bar x + z_1 c_1 + z_2 c_2` the arrow is :math:`(v\cdot c_1, v\cdot c_2)`.
    **Approximation**: the state off the plane is set to the mean, and the velocity
    component off the plane is dropped, so arrows are the flow *as if the state sat on the
    plane*; real trajectories (drawn projected) need not follow them where they leave it.
    Nullclines are not drawn in this case.

    Args:
        F: one-step map ``F(x, u)`` (``n = 2`` or any ``n`` with ``pca``/``trajectories``).
        inputs: constant input ``(m,)`` or ``None``.
        dt: time per step; arrows are per ``time_unit``.
        xlim: horizontal plot window (default: the data's extent plus 10 %).
        ylim: vertical plot window (default: the data's extent plus 10 %).
        density: grid points per axis.
        fixed_points: ``FixedPoints``-like (``x``, ``stability``, ``converged``) or ``(N, n)``.
        trajectories: ``(T, n)`` or ``(B, T, n)``.
        nullclines: draw nullclines (2-D only).
        pca: a fitted :class:`TrajectoryPCA` with ``>= 2`` components (``n > 2``).
        plane_offset: ``(n,)`` shift of the plane from the mean state.
        kind: ``"stream"`` or ``"quiver"``.
        time_unit: unit name for the colour bar label.
        state_symbol: the state's symbol in axis labels and nullcline names (2-D), e.g.
            ``"h"`` for rates.
        ax: axes to draw on.

    Returns:
        The axes.
    """
    if not callable(F):
        raise TypeError(f"F must be a callable one-step map, got {type(F).__name__}")
    if kind not in ("stream", "quiver"):
        raise ValueError(f"kind must be 'stream' or 'quiver', got {kind!r}")
    density = check_int("density", density, 2)
    if not dt > 0:
        raise ValueError(f"dt must be positive, got {dt!r}")
    trajs = None if trajectories is None else _traj_batch(trajectories)
    fp = None if fixed_points is None else _fixed_point_parts(fixed_points)
    n = None
    for arr in (trajs, None if fp is None else fp[0]):
        if arr is not None:
            if n is not None and arr.shape[-1] != n:
                raise ValueError("trajectories and fixed_points must have the same state width")
            n = arr.shape[-1]
    if n is None:
        n = getattr(F, "state_size", None) or (pca.n_features_ if pca is not None else 2)

    if n == 2:
        def to_plane(a):
            return a
        lift = None
        xlabel, ylabel = rf"${state_symbol}_1$", rf"${state_symbol}_2$"
    else:
        if pca is None:
            if trajs is None:
                raise ValueError("phase_portrait of an n > 2 system needs pca or trajectories")
            pca = TrajectoryPCA(2).fit(trajs)
        if pca.n_components_ < 2 or pca.n_features_ != n:
            raise ValueError(f"pca must have >= 2 components over n = {n} features")
        C = pca.components_[:2]
        base = pca.mean_ + (0.0 if plane_offset is None else
                            _finite_array(plane_offset, "plane_offset", (1,)))

        def to_plane(a):
            return pca.transform(a)[..., :2]

        def lift(Z):
            return base + Z @ C

        ev = pca.explained_variance_ratio_
        xlabel, ylabel = f"PC1 ({100 * ev[0]:.0f}% var.)", f"PC2 ({100 * ev[1]:.0f}% var.)"

    pts_2d = [to_plane(a).reshape(-1, 2) for a in
              ([] if trajs is None else [trajs]) + ([] if fp is None else [fp[0]])]
    if xlim is None or ylim is None:
        if not pts_2d:
            raise ValueError("xlim and ylim are required when neither trajectories nor "
                             "fixed_points is given")
        allp = np.concatenate(pts_2d)
        lo, hi = allp.min(0), allp.max(0)
        pad = 0.1 * np.maximum(hi - lo, 1e-3)
        xlim = xlim or (lo[0] - pad[0], hi[0] + pad[0])
        ylim = ylim or (lo[1] - pad[1], hi[1] + pad[1])

    ax = _new_ax(ax)
    gx = np.linspace(*xlim, density)
    gy = np.linspace(*ylim, density)
    GX, GY = np.meshgrid(gx, gy)
    Z = np.stack([GX.ravel(), GY.ravel()], axis=1)
    if lift is None:
        V = _vector_field_on(F, Z, inputs, dt)
    else:
        V = _vector_field_on(F, lift(Z), inputs, dt) @ C.T
    VX, VY = V[:, 0].reshape(GX.shape), V[:, 1].reshape(GX.shape)
    speed = np.hypot(VX, VY)
    if kind == "stream":
        ax.streamplot(gx, gy, VX, VY, color="0.72", density=1.0,
                      linewidth=0.7, arrowsize=0.8, zorder=1)
    else:
        norm = np.where(speed > 0, speed, 1.0)
        ax.quiver(GX, GY, VX / norm, VY / norm, speed, cmap="cividis", zorder=1,
                  pivot="mid", scale=density * 1.2)

    if nullclines and lift is None:
        m = max(4 * density, 150)
        fx, fy = np.linspace(*xlim, m), np.linspace(*ylim, m)
        FX, FY = np.meshgrid(fx, fy)
        W = _vector_field_on(F, np.stack([FX.ravel(), FY.ravel()], 1), inputs, dt)
        for i, style in ((0, "solid"), (1, "dashed")):
            Wi = W[:, i].reshape(FX.shape)
            if Wi.min() < 0 < Wi.max():
                ax.contour(FX, FY, Wi, levels=[0.0], colors=OKABE_ITO["black"],
                           linestyles=style, linewidths=0.9, zorder=2)
                ax.plot([], [], color=OKABE_ITO["black"], lw=0.9, linestyle=style,
                        label=rf"$\dot {state_symbol}_{i + 1} = 0$")

    if trajs is not None:
        for b, traj in enumerate(to_plane(trajs)):
            ax.plot(traj[:, 0], traj[:, 1], color=_CYCLE[b % len(_CYCLE)], lw=1.0, zorder=3,
                    label="trajectory" if b == 0 else None)
            ax.plot(traj[0, 0], traj[0, 1], marker=".", color=_CYCLE[b % len(_CYCLE)],
                    zorder=3, ms=5)
    if fp is not None and fp[0].shape[0]:
        mark_points(ax, to_plane(fp[0]), fp[1])
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    legend_outside(ax)
    return ax
