r"""Figures of dynamics: phase portraits, fixed points in PCA space, spectra, attractors, curves.

Every function takes an optional ``ax`` (a new figure is made when it is ``None``), draws on
it, and returns it; none calls ``plt.show()``. One colour-blind-safe palette (Okabe & Ito
2008) and one marker code for stability classes run through all of them:

============== ======================= ==========================
class          marker                  colour
============== ======================= ==========================
stable node    filled circle           black
stable focus   filled circle           blue
saddle         open circle             vermillion
unstable node  open square             orange
unstable focus open square             reddish purple
marginal       filled diamond          bluish green
============== ======================= ==========================

Use :func:`paper_style` (``with plt.rc_context(paper_style()): ...``) for paper-sized figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from ctrnn_dyn.pca import TrajectoryPCA

__all__ = [
    "OKABE_ITO",
    "STABILITY_STYLE",
    "paper_style",
    "phase_portrait",
    "fixed_points_3d",
    "eigenspectrum",
    "attractor_3d",
    "trajectories",
    "loss_curve",
]

#: Okabe–Ito colour-blind-safe palette.
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}
_CYCLE = [OKABE_ITO[c] for c in ("blue", "orange", "bluish green", "vermillion",
                                  "reddish purple", "sky blue", "black", "yellow")]

#: Marker code per stability class (see :mod:`ctrnn_dyn.linear`).
STABILITY_STYLE: dict[str, dict[str, Any]] = {
    "stable node": {"marker": "o", "color": OKABE_ITO["black"], "filled": True},
    "stable focus": {"marker": "o", "color": OKABE_ITO["blue"], "filled": True},
    "saddle": {"marker": "o", "color": OKABE_ITO["vermillion"], "filled": False},
    "unstable node": {"marker": "s", "color": OKABE_ITO["orange"], "filled": False},
    "unstable focus": {"marker": "s", "color": OKABE_ITO["reddish purple"], "filled": False},
    "marginal": {"marker": "D", "color": OKABE_ITO["bluish green"], "filled": True},
    "fixed point": {"marker": "o", "color": OKABE_ITO["black"], "filled": True},
}


def paper_style() -> dict[str, Any]:
    """rcParams for paper-sized figures (8-9 pt text, thin lines, the Okabe–Ito cycle)."""
    from cycler import cycler

    return {
        "figure.figsize": (3.4, 2.8),
        "figure.dpi": 150,
        "savefig.dpi": 300,
        "font.size": 8,
        "axes.labelsize": 8,
        "axes.titlesize": 9,
        "legend.fontsize": 7,
        "xtick.labelsize": 7,
        "ytick.labelsize": 7,
        "lines.linewidth": 1.0,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.prop_cycle": cycler(color=_CYCLE),
    }


# --------------------------------------------------------------------------------- helpers
def _new_ax(ax: Axes | None, projection: str | None = None) -> Axes:
    if ax is not None:
        if projection == "3d" and getattr(ax, "name", "") != "3d":
            raise ValueError("ax must be a 3-D axes (projection='3d') for this plot")
        return ax
    fig = plt.figure(figsize=(5.0, 4.0) if projection == "3d" else (5.0, 3.6),
                     layout="constrained")
    return fig.add_subplot(111, projection=projection)


def _finite_array(x: Any, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim not in ndims:
        raise ValueError(f"{name} must have {' or '.join(f'{d} axes' for d in ndims)}, "
                         f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return arr


def _traj_batch(trajectories: Any, name: str = "trajectories") -> np.ndarray:
    """``(T, n)`` or ``(B, T, n)`` → ``(B, T, n)``."""
    arr = _finite_array(trajectories, name, (2, 3))
    return arr[None] if arr.ndim == 2 else arr


def _fixed_point_parts(fixed_points: Any) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """``(x (N, d), labels (N,), eigvals or None, eigvecs or None)``, converged points only."""
    if isinstance(fixed_points, np.ndarray | jax.Array | list | tuple):
        x = _finite_array(fixed_points, "fixed_points", (2,))
        return x, np.full(x.shape[0], "fixed point"), None, None
    if not hasattr(fixed_points, "x"):
        raise TypeError("fixed_points must be a FixedPoints-like object with .x (N, d) or an "
                        f"array (N, d), got {type(fixed_points).__name__}")
    x = _finite_array(fixed_points.x, "fixed_points.x", (2,))
    keep = getattr(fixed_points, "converged", None)
    keep = np.ones(x.shape[0], bool) if keep is None else np.asarray(keep, bool)
    labels = getattr(fixed_points, "stability", None)
    labels = (np.full(x.shape[0], "fixed point") if labels is None
              else np.asarray(labels).astype(str))
    eigvals = getattr(fixed_points, "eigvals", None)
    eigvecs = getattr(fixed_points, "eigvecs", None)
    eigvals = None if eigvals is None else np.asarray(eigvals)[keep]
    eigvecs = None if eigvecs is None else np.asarray(eigvecs)[keep]
    return x[keep], labels[keep], eigvals, eigvecs


def _scatter_by_class(ax: Axes, pts: np.ndarray, labels: np.ndarray, size: float = 40,
                      zorder: int = 5) -> None:
    """One scatter per stability class present (so the legend has one entry per class)."""
    for cls in dict.fromkeys(labels):
        style = STABILITY_STYLE.get(cls, STABILITY_STYLE["fixed point"])
        sel = labels == cls
        face = style["color"] if style["filled"] else "white"
        coords = [pts[sel, i] for i in range(pts.shape[1])]
        extra = {"depthshade": False} if pts.shape[1] == 3 else {}
        ax.scatter(*coords, s=size, marker=style["marker"], facecolors=face,
                   edgecolors=style["color"], linewidths=1.2, label=cls, zorder=zorder,
                   **extra)


def _outside_legend(ax: Axes) -> None:
    """Legend to the right of the axes, so it never hides data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize="small",
              borderaxespad=0.0)


def _vector_field_on(F: Callable, X: np.ndarray, u: Any, dt: float) -> np.ndarray:
    """``(F(x, u) - x)/dt`` for a batch ``X`` ``(M, n)``, in float64."""
    with jax.enable_x64(True):
        Xj = jnp.asarray(X, jnp.float64)
        uj = None if u is None else jnp.asarray(u, jnp.float64)
        V = jax.jit(jax.vmap(lambda x: (F(x, uj) - x) / dt))(Xj)
        return np.asarray(V, np.float64)


# --------------------------------------------------------------------------- phase portrait
def phase_portrait(
    F: Callable,
    *,
    u: Any = None,
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
        u: constant input ``(m,)`` or ``None``.
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
        ax: axes to draw on.

    Returns:
        The axes.
    """
    if not callable(F):
        raise TypeError(f"F must be a callable one-step map, got {type(F).__name__}")
    if kind not in ("stream", "quiver"):
        raise ValueError(f"kind must be 'stream' or 'quiver', got {kind!r}")
    if not (isinstance(density, int) and density >= 2):
        raise ValueError(f"density must be an int >= 2, got {density!r}")
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
        xlabel, ylabel = r"$x_1$ (state)", r"$x_2$ (state)"
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
        V = _vector_field_on(F, Z, u, dt)
    else:
        V = _vector_field_on(F, lift(Z), u, dt) @ C.T
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
        W = _vector_field_on(F, np.stack([FX.ravel(), FY.ravel()], 1), u, dt)
        for i, style in ((0, "solid"), (1, "dashed")):
            Wi = W[:, i].reshape(FX.shape)
            if Wi.min() < 0 < Wi.max():
                ax.contour(FX, FY, Wi, levels=[0.0], colors=OKABE_ITO["black"],
                           linestyles=style, linewidths=0.9, zorder=2)
                ax.plot([], [], color=OKABE_ITO["black"], lw=0.9, linestyle=style,
                        label=rf"$\dot x_{i + 1} = 0$")

    if trajs is not None:
        for b, traj in enumerate(to_plane(trajs)):
            ax.plot(traj[:, 0], traj[:, 1], color=_CYCLE[b % len(_CYCLE)], lw=1.0, zorder=3,
                    label="trajectory" if b == 0 else None)
            ax.plot(traj[0, 0], traj[0, 1], marker=".", color=_CYCLE[b % len(_CYCLE)],
                    zorder=3, ms=5)
    if fp is not None and fp[0].shape[0]:
        _scatter_by_class(ax, to_plane(fp[0]), fp[1])
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _outside_legend(ax)
    return ax


# ----------------------------------------------------------------------- fixed points in 3-D
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


def fixed_points_3d(
    fixed_points: Any,
    *,
    pca: TrajectoryPCA | None = None,
    trajectories: Any = None,
    mode_length: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Fixed points in 3-D PCA space, as in Sussillo & Barak (2013), Fig. 2–3.

    Stable points filled, unstable ones open (marker code of :data:`STABILITY_STYLE`); each
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
        ax: a 3-D axes.

    Returns:
        The 3-D axes.
    """
    x, labels, eigvals, eigvecs = _fixed_point_parts(fixed_points)
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
    if trajs is not None:
        for traj in proj(trajs):
            ax.plot(*traj.T, color="0.6", lw=0.6, zorder=1)
    if eigvals is not None and eigvecs is not None:
        first = True
        for xi, mu, V in zip(x, eigvals, eigvecs, strict=True):
            for j in np.nonzero(np.abs(mu) > 1.0)[0]:
                # a complex pair spans a plane: Re v for Im μ > 0, Im v for its conjugate
                v = np.imag(V[:, j]) if np.imag(mu[j]) < 0 else np.real(V[:, j])
                if np.linalg.norm(v) == 0:
                    v = np.abs(V[:, j])
                v = v / np.linalg.norm(v)
                seg = proj(np.stack([xi - mode_length * v, xi + mode_length * v]))
                ax.plot(*seg.T, color=OKABE_ITO["vermillion"], lw=1.5, zorder=4,
                        label="unstable mode" if first else None)
                first = False
    if x.shape[0]:
        _scatter_by_class(ax, proj(x), labels)
    ax.set_xlabel(axlabels[0])
    ax.set_ylabel(axlabels[1])
    ax.set_zlabel(axlabels[2])
    _outside_legend(ax)
    return ax


# ----------------------------------------------------------------------------- spectra
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
    _outside_legend(ax)
    return ax


# ----------------------------------------------------------------------------- attractors
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
    ax.set_zlabel(axlabels[2])
    return ax


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
        ax.legend(loc="best", frameon=False, fontsize="small")
    return ax


def loss_curve(
    loss: Any,
    *,
    steps: Any = None,
    logy: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Training loss against step; several curves from a mapping ``{name: (S,)}``.

    Non-finite entries (a diverged step) are dropped from the line, not plotted as gaps.

    Args:
        loss: ``(S,)`` array, or ``{name: (S_i,)}``.
        steps: ``(S,)`` step numbers (default ``0 … S-1``; single curve only).
        logy: logarithmic loss axis.
        ax: axes.

    Returns:
        The axes (one line per curve).
    """
    curves = dict(loss) if isinstance(loss, Mapping) else {"loss": loss}
    if not curves:
        raise ValueError("loss must be a non-empty array or mapping")
    ax = _new_ax(ax)
    for i, (name, vals) in enumerate(curves.items()):
        y = np.asarray(vals, float)
        if y.ndim != 1 or y.size == 0:
            raise ValueError(f"loss[{name!r}] must have shape (S,) with S >= 1, got {y.shape}")
        x = np.arange(y.size) if steps is None else np.asarray(steps)
        if x.shape != y.shape:
            raise ValueError(f"steps must have shape {y.shape}, got {x.shape}")
        ok = np.isfinite(y)
        ax.plot(x[ok], y[ok], color=_CYCLE[i % len(_CYCLE)], lw=1.0, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    if len(curves) > 1:
        ax.legend(loc="best", frameon=False, fontsize="small")
    return ax
