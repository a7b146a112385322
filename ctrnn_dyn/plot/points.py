"""The marker code of fixed and slow points: :data:`POINT_STYLE`, chosen by
:func:`point_class` from a point's class and number of unstable modes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from matplotlib.axes import Axes

from ctrnn_dyn.plot._axes import _finite_array
from ctrnn_dyn.plot.figure_style import OKABE_ITO

__all__ = ["POINT_STYLE", "STABILITY_STYLE", "point_class", "point_classes", "mark_points"]


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
