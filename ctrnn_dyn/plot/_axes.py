"""Helpers of the plot functions: a new axes when none is given, checked arrays, a vector
field on a grid."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from ctrnn_dyn.plot.figure_style import COLUMN_WIDTH


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


def _vector_field_on(F: Callable, X: np.ndarray, u: Any, dt: float) -> np.ndarray:
    """``(F(x, u) - x)/dt`` for a batch ``X`` ``(M, n)``, in float64."""
    with jax.enable_x64(True):
        Xj = jnp.asarray(X, jnp.float64)
        uj = None if u is None else jnp.asarray(u, jnp.float64)
        V = jax.jit(jax.vmap(lambda x: (F(x, uj) - x) / dt))(Xj)
        return np.asarray(V, np.float64)
