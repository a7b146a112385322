"""Where the finder starts: states sampled from a network's trajectories
(:func:`sample_initial_states`), or the fixed points of a neighbouring input level
(:func:`continue_fixed_points`, numerical continuation along a path of inputs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn import _checks
from ctrnn_dyn.fixed_points.container import FixedPoints
from ctrnn_dyn.fixed_points.find import find_fixed_points

__all__ = ["sample_initial_states", "continue_fixed_points"]


def sample_initial_states(states: Any, n: int, *, noise_scale: float, key: jax.Array) -> jax.Array:
    r"""Draw ``n`` starts from visited states plus isotropic noise (FixedPointFinder's recipe).

    :math:`x^{(i)}_0 = s_{b_i t_i} + \sigma\,\xi_i`, with ``(b_i, t_i)`` uniform with replacement
    over the trajectories and time steps, :math:`\xi_i \sim N(0, I)`.

    Args:
        states: ``(B, T, d)`` trajectories or ``(S, d)`` states.
        n: number of starts (``>= 1``).
        noise_scale: ``σ >= 0``.
        key: PRNG key.

    Returns:
        ``(n, d)`` starts, in ``states``' float dtype.

    Raises:
        TypeError: ``n`` not an int.
        ValueError: wrong rank, empty ``states``, ``n < 1`` or ``noise_scale < 0``.
    """
    states = jnp.asarray(states)
    if states.ndim not in (2, 3):
        raise ValueError(f"states must have shape (B, T, d) or (S, d), got {states.shape}")
    if not jnp.issubdtype(states.dtype, jnp.floating):
        states = states.astype(jnp.result_type(float))
    flat = states.reshape(-1, states.shape[-1])
    if flat.shape[0] == 0:
        raise ValueError("states must contain at least one state")
    n = _checks.check_int("n", n, 1)
    if not np.isfinite(noise_scale) or noise_scale < 0:
        raise ValueError(f"noise_scale must be finite and >= 0, got {noise_scale!r}")
    k_idx, k_noise = jax.random.split(key)
    idx = jax.random.randint(k_idx, (int(n),), 0, flat.shape[0])
    noise = jax.random.normal(k_noise, (int(n), flat.shape[1]), flat.dtype)
    return flat[idx] + jnp.asarray(noise_scale, flat.dtype) * noise


@_checks.renamed(extra_starts="extra_initial_states")
def continue_fixed_points(
    F: Callable[..., Any],
    fps: FixedPoints | Any,
    inputs_path: Any,
    *,
    extra_initial_states: Any = None,
    **options: Any,
) -> list[FixedPoints]:
    r"""Follow fixed points along a path of constant inputs (numerical continuation).

    At each input level :math:`u_k` of ``inputs_path`` the starts are the fixed points found at
    the previous level (at the first level: ``fps``), plus ``extra_initial_states`` if given;
    where the previous level has no fixed point its slow points are used instead. A fixed point
    that moves smoothly with the input is then one short Newton/LM solve away from its
    predecessor, even where starts from the network's states stall on slow points (e.g. the
    sine-wave generator's low-frequency levels).

    Args:
        F: one-step map on a flat state, as for :func:`find_fixed_points`.
        fps: the points to start from: a :class:`FixedPoints` (its fixed points, or its slow
            points if it has none) or an ``(n, d)`` array of states.
        inputs_path: ``(K, m)`` input levels, followed in order.
        extra_initial_states: ``(n', d)`` starts added at every level (e.g. states of the
            network), or ``None``.
        **options: passed to :func:`find_fixed_points` (``tol_unique`` keeps its default, so
            each level holds one entry per distinct point).

    Returns:
        ``K`` :class:`FixedPoints`, one per level (possibly empty of fixed points where the
        branch ends, e.g. at a saddle-node bifurcation; the next level then continues from the
        slow points there).

    Raises:
        ValueError: ``inputs_path`` not ``(K, m)`` with ``K >= 1``, or no finite start.
    """
    path = np.asarray(inputs_path, dtype=float)
    if path.ndim == 1:
        path = path[:, None]
    if path.ndim != 2 or path.shape[0] < 1:
        raise ValueError(f"inputs_path must have shape (K, m) with K >= 1, got {path.shape}")
    extra = (None if extra_initial_states is None
             else np.asarray(extra_initial_states, dtype=float))
    prev = fps
    out: list[FixedPoints] = []
    for k, u in enumerate(path):
        if isinstance(prev, FixedPoints):
            pick = prev.fixed if len(prev.fixed) else prev[np.isfinite(prev.q)]
            starts = pick.x
        else:
            starts = np.asarray(prev, dtype=float)
        if extra is not None:
            starts = np.concatenate([starts.reshape(-1, extra.shape[-1]), extra], axis=0)
        starts = starts[np.all(np.isfinite(starts), axis=1)] if starts.ndim == 2 else starts
        if np.ndim(starts) != 2 or starts.shape[0] == 0:
            raise ValueError(f"no finite start to continue from at level {k} (input {u})")
        level = find_fixed_points(F, starts, u, **options)
        out.append(level)
        prev = level if len(level) else prev
    return out
