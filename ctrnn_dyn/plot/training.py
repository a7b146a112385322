"""Training curves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from ctrnn_dyn.plot._axes import _new_ax
from ctrnn_dyn.plot.annotate import legend_outside
from ctrnn_dyn.plot.figure_style import _CYCLE, _styled

__all__ = ["loss_curve"]


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
