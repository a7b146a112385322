"""Legends outside the axes, panel letters and colour bars for continuous variables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.transforms as mtransforms
import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colorbar import Colorbar
from matplotlib.colors import Normalize

from ctrnn_dyn.plot._axes import _finite_array

__all__ = ["legend_outside", "panel_label", "label_panels", "value_colors", "colorbar"]


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


def label_panels(fig) -> None:
    """Panel letters a, b, ... on the figure's data axes in reading order (by the grid cell
    each starts in: row, then column; colour bars and switched-off axes skipped)."""
    panels = [ax for ax in fig.axes
              if not hasattr(ax, "_colorbar") and (ax.axison or ax.name == "3d")]
    panels.sort(key=lambda ax: (ax.get_subplotspec().rowspan.start,
                                ax.get_subplotspec().colspan.start))
    for letter, ax in zip("abcdefghijklmnop", panels, strict=False):
        panel_label(ax, letter)
