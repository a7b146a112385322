r"""Figures of dynamics: phase portraits, fixed points in PCA space, spectra, attractors, curves.

Every function takes an optional ``ax`` (a new figure is made when it is ``None``), draws on
it, and returns it; none calls ``plt.show()``. Every function draws inside the package's one
figure style, :func:`style` (the rcParams of :func:`paper_style`): 7-pt DejaVu Sans text, which
stays readable when a figure :data:`PAGE_WIDTH` (7.2 in) wide is printed across a journal page
or one :data:`COLUMN_WIDTH` (3.5 in) wide in a column; thin lines; the colour-blind-safe
Okabe & Ito (2008) cycle; legends outside the axes (:func:`legend_outside`); colour bars for
continuous variables (:func:`value_colors`, :func:`colorbar`); figures saved as a PNG at
:data:`SAVE_DPI` plus a vector PDF (:func:`save_figure`). Build multi-panel figures inside
``with plot.style(): ...`` so that their titles and labels share it.

One marker code for fixed and slow points runs through all figures (:data:`POINT_STYLE`,
chosen by :func:`point_class` from a point's class and number of unstable modes; filled
markers are stable, open ones unstable in some direction):

=========================== =================== ==========================
class                       marker              colour
=========================== =================== ==========================
stable node                 filled circle       black
stable focus                filled circle       blue
saddle, 1 unstable mode     open triangle       vermillion
saddle, 2 unstable modes    open diamond        reddish purple
saddle, ≥ 3 unstable modes  open pentagon       sky blue
unstable node               open square         orange
unstable focus              open hexagon        orange
marginal                    filled plus         bluish green
slow point                  cross               grey
=========================== =================== ==========================
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib as mpl
import matplotlib.pyplot as plt
import matplotlib.transforms as mtransforms
import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colorbar import Colorbar
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ctrnn_dyn.pca import TrajectoryPCA

__all__ = [
    "COLUMN_WIDTH",
    "PAGE_WIDTH",
    "label_panels",
    "SAVE_DPI",
    "OKABE_ITO",
    "POINT_STYLE",
    "STABILITY_STYLE",
    "paper_style",
    "style",
    "point_class",
    "point_classes",
    "mark_points",
    "legend_outside",
    "panel_label",
    "value_colors",
    "colorbar",
    "save_figure",
    "phase_portrait",
    "fixed_points_3d",
    "eigenspectrum",
    "attractor_3d",
    "trajectories",
    "loss_curve",
]

#: Print width (inches) of a journal's single column.
COLUMN_WIDTH = 3.5
#: Print width (inches) of a full journal page (two columns).
PAGE_WIDTH = 7.2
#: Resolution of saved PNGs (dots per inch at print size).
SAVE_DPI = 300

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

#: Marker code per point class (keys are what :func:`point_class` returns; ``"saddle"`` is a
#: saddle whose number of unstable modes is unknown, ``"fixed point"`` a point of unknown class).
POINT_STYLE: dict[str, dict[str, Any]] = {
    "stable node": {"marker": "o", "color": OKABE_ITO["black"], "filled": True},
    "stable focus": {"marker": "o", "color": OKABE_ITO["blue"], "filled": True},
    "saddle, 1 unstable mode": {"marker": "^", "color": OKABE_ITO["vermillion"],
                                "filled": False},
    "saddle, 2 unstable modes": {"marker": "D", "color": OKABE_ITO["reddish purple"],
                                 "filled": False},
    "saddle, ≥ 3 unstable modes": {"marker": "p", "color": OKABE_ITO["sky blue"],
                                   "filled": False},
    "saddle": {"marker": "^", "color": OKABE_ITO["vermillion"], "filled": False},
    "unstable node": {"marker": "s", "color": OKABE_ITO["orange"], "filled": False},
    "unstable focus": {"marker": "h", "color": OKABE_ITO["orange"], "filled": False},
    "marginal": {"marker": "P", "color": OKABE_ITO["bluish green"], "filled": True},
    "slow point": {"marker": "x", "color": "0.45", "filled": True},
    "fixed point": {"marker": "o", "color": "0.35", "filled": True},
}
#: The same table under its earlier name.
STABILITY_STYLE = POINT_STYLE


def paper_style() -> dict[str, Any]:
    """rcParams of the package's figure style.

    7-pt DejaVu Sans text (titles 7.5 pt, legends and ticks 6.5 pt), mathtext in DejaVu Sans,
    0.6-pt axes, no top/right spines, no legend frames, the Okabe–Ito colour cycle, ``viridis``
    for continuous variables, :data:`SAVE_DPI` for saved PNGs, TrueType fonts in PDFs.
    """
    from cycler import cycler

    return {
        "figure.figsize": (COLUMN_WIDTH, 2.6),
        "figure.dpi": 100,
        "figure.facecolor": "white",
        "savefig.dpi": SAVE_DPI,
        "savefig.facecolor": "white",
        "font.family": "DejaVu Sans",
        "mathtext.fontset": "dejavusans",
        "font.size": 7.0,
        "axes.labelsize": 7.0,
        "axes.titlesize": 7.5,
        "figure.titlesize": 8.5,
        "legend.fontsize": 6.5,
        "xtick.labelsize": 6.5,
        "ytick.labelsize": 6.5,
        "axes.titlepad": 4.0,
        "axes.titlelocation": "left",
        "axes.labelpad": 2.5,
        "axes.linewidth": 0.6,
        "xtick.major.width": 0.6,
        "ytick.major.width": 0.6,
        "xtick.minor.width": 0.4,
        "ytick.minor.width": 0.4,
        "xtick.major.size": 2.5,
        "ytick.major.size": 2.5,
        "xtick.minor.size": 1.5,
        "ytick.minor.size": 1.5,
        "lines.linewidth": 1.0,
        "lines.markersize": 4.0,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
        "legend.handlelength": 1.6,
        "legend.borderaxespad": 0.3,
        "axes.prop_cycle": cycler(color=_CYCLE),
        "image.cmap": "viridis",
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
    }


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Context manager: the package's figure style (:func:`paper_style`) for what is drawn
    inside it (``with plot.style(): fig = ...``)."""
    with mpl.rc_context(paper_style()):
        yield


def _styled(fn: Callable) -> Callable:
    """Run a plot function inside :func:`style`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with style():
            return fn(*args, **kwargs)

    return wrapper


def point_class(stability: Any, n_unstable: Any = None, converged: Any = True) -> str:
    """The :data:`POINT_STYLE` key of one point.

    Args:
        stability: class string of :func:`ctrnn_dyn.linear.classify` (``""`` or ``None``:
            unknown).
        n_unstable: number of unstable modes (``|μ| > 1``), splits saddles into 1, 2 and ≥ 3
            modes; ``None``: unknown.
        converged: ``False`` marks a slow point (not a fixed point).

    Returns:
        A key of :data:`POINT_STYLE`.
    """
    if not bool(converged):
        return "slow point"
    cls = "" if stability is None else str(stability)
    if cls == "saddle":
        if n_unstable is None or int(n_unstable) < 1:
            return "saddle"
        k = int(n_unstable)
        return ("saddle, 1 unstable mode" if k == 1 else "saddle, 2 unstable modes" if k == 2
                else "saddle, ≥ 3 unstable modes")
    return cls if cls in POINT_STYLE else "fixed point"


def point_classes(fixed_points: Any) -> np.ndarray:
    """:func:`point_class` of every entry of a ``FixedPoints``-like object (``stability``,
    ``n_unstable``, ``converged``; missing attributes are unknown): ``(N,)`` strings."""
    x = np.asarray(fixed_points.x)
    N = x.shape[0]
    stab = getattr(fixed_points, "stability", None)
    n_unst = getattr(fixed_points, "n_unstable", None)
    conv = getattr(fixed_points, "converged", None)
    return np.array([
        point_class(None if stab is None else stab[i],
                    None if n_unst is None else n_unst[i],
                    True if conv is None else conv[i])
        for i in range(N)
    ], dtype=str).reshape(N)


def mark_points(ax: Axes, coords: Any, classes: Sequence[str], *, size: float = 30,
                zorder: int = 5, label: bool = True) -> None:
    """Scatter points in the marker code of :data:`POINT_STYLE`, one artist per class present
    (so a legend has one entry per class).

    Args:
        ax: 2-D or 3-D axes.
        coords: ``(N, 2)`` or ``(N, 3)`` positions.
        classes: ``N`` keys of :data:`POINT_STYLE` (unknown keys draw as ``"fixed point"``).
        size: marker area (points²).
        zorder: drawing order.
        label: give each artist its class as legend label.
    """
    pts = np.asarray(coords, float)
    labels = np.asarray(classes).astype(str)
    for cls in dict.fromkeys(labels):
        s = POINT_STYLE.get(cls, POINT_STYLE["fixed point"])
        sel = labels == cls
        face = s["color"] if s["filled"] else "white"
        extra = {"depthshade": False} if pts.shape[1] == 3 else {}
        kw = ({"color": s["color"]} if s["marker"] in ("x", "+")
              else {"facecolors": face, "edgecolors": s["color"]})
        ax.scatter(*[pts[sel, i] for i in range(pts.shape[1])], s=size, marker=s["marker"],
                   linewidths=1.1, label=cls if label else None, zorder=zorder, **kw, **extra)


def legend_outside(ax: Axes, where: str = "right", *, ncol: int = 1, handles: Any = None,
                   labels: Any = None, **kwargs: Any) -> Any:
    """A legend outside the axes, so it never hides data (duplicate labels merged).

    Args:
        ax: axes.
        where: ``"right"`` (beside the axes, top-aligned), ``"below"`` or ``"above"``.
        ncol: legend columns.
        handles: artists (default: the axes' labelled artists).
        labels: their labels.
        **kwargs: passed on to ``ax.legend``.

    Returns:
        The legend, or ``None`` when nothing is labelled.
    """
    if where not in ("right", "below", "above"):
        raise ValueError(f"where must be 'right', 'below' or 'above', got {where!r}")
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    if not uniq:
        return None
    place = {"right": {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0)},
             "below": {"loc": "upper center", "bbox_to_anchor": (0.5, 0.0)},
             "above": {"loc": "lower center", "bbox_to_anchor": (0.5, 1.0)}}[where]
    if where == "right" and getattr(ax, "name", "") == "3d":  # clear the z-axis labels
        place["bbox_to_anchor"] = (1.22, 1.0)
    if where != "right" and getattr(ax, "name", "") != "3d":
        # clear the tick labels and axis label (below) or the title (above), in points
        rc = mpl.rcParams
        if where == "below":
            pad = (rc["xtick.major.size"] + rc["xtick.major.pad"] + rc["axes.labelpad"]
                   + 1.25 * (_points(rc["xtick.labelsize"]) + _points(rc["axes.labelsize"])))
        else:
            pad = rc["axes.titlepad"] + 1.3 * _points(rc["axes.titlesize"]) * (
                1 + ax.get_title().count("\n")) if ax.get_title() else 2.0
        place["bbox_transform"] = mtransforms.offset_copy(
            ax.transAxes, fig=ax.figure, y=-pad if where == "below" else pad, units="points")
    opts = {"frameon": False, "borderaxespad": 0.0, "ncol": ncol, **place, **kwargs}
    return ax.legend(list(uniq.values()), list(uniq.keys()), **opts)


def panel_label(ax: Axes, letter: str) -> None:
    """A bold panel letter (``"a"``, ``"b"``, ...) left of the axes' (left-aligned) title, above
    the tick labels, so that it never runs into the title."""
    put = ax.text2D if getattr(ax, "name", "") == "3d" else ax.text
    where = mtransforms.offset_copy(ax.transAxes, fig=ax.figure, x=-30,
                                    y=mpl.rcParams["axes.titlepad"], units="points")
    put(0.0, 1.0, letter, transform=where, fontsize=9, fontweight="bold", ha="left",
        va="baseline")


def _points(size: Any) -> float:
    """A font size (number or name such as ``"small"``) in points."""
    from matplotlib.font_manager import FontProperties

    return float(FontProperties(size=size).get_size_in_points())


def value_colors(values: Any, *, cmap: str = "viridis", vmin: float | None = None,
                 vmax: float | None = None) -> tuple[np.ndarray, ScalarMappable]:
    """Colours for a continuous variable and the mappable for its colour bar.

    Args:
        values: ``(N,)`` numbers.
        cmap: a perceptually uniform, colour-blind-safe map (``viridis``, ``cividis``).
        vmin: lower end of the scale (default: ``min(values)``).
        vmax: upper end of the scale (default: ``max(values)``).

    Returns:
        ``(colors (N, 4) RGBA, mappable)``; pass the mappable to :func:`colorbar`.
    """
    v = _finite_array(values, "values", (1,)).astype(float)
    lo = float(v.min()) if vmin is None else float(vmin)
    hi = float(v.max()) if vmax is None else float(vmax)
    if hi == lo:
        hi = lo + 1.0
    sm = ScalarMappable(Normalize(lo, hi), mpl.colormaps[cmap])
    sm.set_array(v)
    return sm.to_rgba(v), sm


def colorbar(ax: Axes | Sequence[Axes], mappable: ScalarMappable, label: str,
             **kwargs: Any) -> Colorbar:
    """A labelled colour bar beside ``ax`` (an axes or several that share it).

    Args:
        ax: the axes the bar belongs to (space is taken from them).
        mappable: from :func:`value_colors`, ``scatter``, ``imshow``, ...
        label: what the colour shows, with its unit.
        **kwargs: passed on to ``Figure.colorbar`` (default ``shrink=0.9``, ``pad=0.02``).

    Returns:
        The colour bar.
    """
    first = ax if isinstance(ax, Axes) else ax[0]
    opts = {"shrink": 0.9, "pad": 0.02, "aspect": 25, **kwargs}
    cb = first.figure.colorbar(mappable, ax=ax, label=label, **opts)
    cb.outline.set_linewidth(0.5)
    return cb


def save_figure(fig: Figure, path: str | Path, *, dpi: int = SAVE_DPI) -> tuple[Path, Path]:
    """Write ``fig`` as ``PATH.png`` (``dpi`` dots per inch, at least 200) and ``PATH.pdf``
    (vector); ``path``'s suffix, if any, is replaced.

    Returns:
        ``(png, pdf)`` paths.

    Raises:
        ValueError: ``dpi < 200``.
    """
    if not (isinstance(dpi, int | np.integer) and dpi >= 200):
        raise ValueError(f"dpi must be an int >= 200, got {dpi!r}")
    stem = Path(path).with_suffix("")
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    meta_png = {"Software": None}
    meta_pdf = {"Creator": None, "Producer": None, "CreationDate": None}
    fig.savefig(png, dpi=int(dpi), metadata=meta_png)
    fig.savefig(pdf, metadata=meta_pdf)
    return png, pdf


# --------------------------------------------------------------------------------- helpers
def _new_ax(ax: Axes | None, projection: str | None = None) -> Axes:
    if ax is not None:
        if projection == "3d" and getattr(ax, "name", "") != "3d":
            raise ValueError("ax must be a 3-D axes (projection='3d') for this plot")
        return ax
    fig = plt.figure(figsize=(COLUMN_WIDTH, 3.0) if projection == "3d" else (COLUMN_WIDTH, 2.6),
                     layout="constrained")
    ax = fig.add_subplot(111, projection=projection)
    if projection == "3d":  # room inside the axes for the tick and axis labels
        ax.set_box_aspect(None, zoom=0.85)
    return ax


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


def _fixed_point_parts(fixed_points: Any, slow_points: bool = False
                       ) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """``(x (N, d), classes (N,), eigvals or None, eigvecs or None)``: the converged points
    (and the slow ones when ``slow_points``), classes as :func:`point_class` names them (the
    number of unstable modes from ``n_unstable``, else from ``|eigvals| > 1``)."""
    if isinstance(fixed_points, np.ndarray | jax.Array | list | tuple):
        x = _finite_array(fixed_points, "fixed_points", (2,))
        return x, np.full(x.shape[0], "fixed point"), None, None
    if not hasattr(fixed_points, "x"):
        raise TypeError("fixed_points must be a FixedPoints-like object with .x (N, d) or an "
                        f"array (N, d), got {type(fixed_points).__name__}")
    x = np.asarray(fixed_points.x)
    conv = getattr(fixed_points, "converged", None)
    conv = np.ones(x.shape[0], bool) if conv is None else np.asarray(conv, bool)
    keep = (conv | slow_points) & np.all(np.isfinite(x), axis=-1) if x.ndim == 2 else conv
    x = _finite_array(x[keep] if x.ndim == 2 else x, "fixed_points.x", (2,))
    eigvals = getattr(fixed_points, "eigvals", None)
    eigvecs = getattr(fixed_points, "eigvecs", None)
    n_unst = getattr(fixed_points, "n_unstable", None)
    if n_unst is None and eigvals is not None:
        n_unst = np.sum(np.abs(np.asarray(eigvals)) > 1.0, axis=-1)
    stab = getattr(fixed_points, "stability", None)
    view = {"x": x,
            "stability": None if stab is None else np.asarray(stab).astype(str)[keep],
            "n_unstable": None if n_unst is None else np.asarray(n_unst)[keep],
            "converged": conv[keep]}
    classes = point_classes(type("Points", (), view))
    eigvals = None if eigvals is None else np.asarray(eigvals)[keep]
    eigvecs = None if eigvecs is None else np.asarray(eigvecs)[keep]
    if eigvals is not None:  # slow points carry no unstable-mode segments
        eigvals = np.where(conv[keep][:, None], eigvals, 0.0)
    return x, classes, eigvals, eigvecs


def _vector_field_on(F: Callable, X: np.ndarray, u: Any, dt: float) -> np.ndarray:
    """``(F(x, u) - x)/dt`` for a batch ``X`` ``(M, n)``, in float64."""
    with jax.enable_x64(True):
        Xj = jnp.asarray(X, jnp.float64)
        uj = None if u is None else jnp.asarray(u, jnp.float64)
        V = jax.jit(jax.vmap(lambda x: (F(x, uj) - x) / dt))(Xj)
        return np.asarray(V, np.float64)


# --------------------------------------------------------------------------- phase portrait
@_styled
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


# ----------------------------------------------------------------------------- spectra
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


# ----------------------------------------------------------------------------- attractors
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


@_styled
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
        legend_outside(ax)
    return ax


def label_panels(fig) -> None:
    """Panel letters a, b, ... on the figure's data axes in reading order (by the grid cell
    each starts in: row, then column; colour bars and switched-off axes skipped)."""
    panels = [ax for ax in fig.axes
              if not hasattr(ax, "_colorbar") and (ax.axison or ax.name == "3d")]
    panels.sort(key=lambda ax: (ax.get_subplotspec().rowspan.start,
                                ax.get_subplotspec().colspan.start))
    for letter, ax in zip("abcdefghijklmnop", panels, strict=False):
        panel_label(ax, letter)
