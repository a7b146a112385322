"""Analysis of many networks at once: the maps of an ensemble, and the fixed-point finder and the
dynamics classifier run over all of them.

Every map of an ensemble is a pytree of the same shapes (:class:`~ctrnn_dyn.dynamics.OneStepMap`),
so the analyses compile once for all networks (:func:`ctrnn_dyn._base.jit_map`) and the networks
differ only in the traced parameters; stacked on a network axis, they run in one program, split
over the devices when there are several (``devices="auto"``, as in :func:`train_ensemble`).
:mod:`ctrnn_dyn.sweep` analyses its chunks through these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import linen as nn

from ctrnn_dyn._checks import per_item, renamed
from ctrnn_dyn.ensemble import network_params

__all__ = ["network_maps", "find_fixed_points_ensemble", "classify_dynamics_ensemble"]


def network_maps(cell: nn.Module, params: Any,
                 hparams: Mapping[str, Any] | None = None) -> list[Any]:
    """One-step maps ``F_i(x, u)`` (noise off) of every network of stacked ``params``.

    ``hparams`` may hold per-network ``alpha``/``noise_const`` (as given to
    :func:`train_ensemble`); ``noise_const`` is irrelevant to the noise-free map.
    """
    from ctrnn_dyn.dynamics import one_step_map

    n = _n_networks(params)
    # sliced on the host: an eager device slice compiles a program per leaf shape and
    # dispatches one per leaf and network (the batch analyses stack the maps on the host)
    params = jax.tree_util.tree_map(np.asarray, params)
    alphas = None if not hparams or "alpha" not in hparams else np.asarray(hparams["alpha"])
    maps = []
    for i in range(n):
        c = cell if alphas is None else cell.clone(alpha=_as_scalar_or_array(alphas[i]))
        maps.append(one_step_map(c, network_params(params, i)))
    return maps


def _as_scalar_or_array(a: np.ndarray) -> Any:
    return float(a) if np.ndim(a) == 0 else a


def _n_networks(params: Any) -> int:
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves or any(np.ndim(x) == 0 for x in leaves):
        raise ValueError("params must be stacked ensemble params (leaves with shape (E, ...))")
    n = {int(np.shape(x)[0]) for x in leaves}
    if len(n) != 1:
        raise ValueError(f"params leaves disagree on the network axis: sizes {sorted(n)}")
    return n.pop()


def find_fixed_points_ensemble(
    cell: nn.Module,
    params: Any,
    initial_states: Any,
    inputs: Any = None,
    *,
    hparams: Mapping[str, Any] | None = None,
    **options: Any,
) -> list[Any]:
    """``find_fixed_points`` for every network of an ensemble in one call.

    Args:
        cell: the ensemble's cell.
        params: stacked params (leaves ``(E, ...)``), e.g. ``EnsembleResult.params``.
        initial_states: starts ``(K, n)`` shared by all networks, or ``(E, K, n)`` / a list of
            ``E`` arrays, one per network.
        inputs: constant input(s) as accepted by ``find_fixed_points`` (shared or a list).
        hparams: per-network ``alpha`` (as given to :func:`train_ensemble`).
        **options: passed to :func:`ctrnn_dyn.fixed_points.find_fixed_points_batch` (its
            ``devices``, and every option of ``find_fixed_points``).

    Returns:
        A list of ``E`` :class:`~ctrnn_dyn.fixed_points.FixedPoints`, one per network, from
        :func:`~ctrnn_dyn.fixed_points.find_fixed_points_batch`: the solver runs over the
        networks (in chunks) and their starts in one compiled program.
    """
    from ctrnn_dyn.fixed_points import find_fixed_points_batch

    maps = network_maps(cell, params, hparams)
    starts = per_item(initial_states, len(maps), "initial_states", ndim=2)
    us = per_item(inputs, len(maps), "inputs")  # an array may be per start: shared
    return find_fixed_points_batch(maps, starts, us, **options)


@renamed(starts="initial_states", u="inputs")
def classify_dynamics_ensemble(
    cell: nn.Module,
    params: Any,
    initial_states: Any,
    inputs: Any = None,
    *,
    hparams: Mapping[str, Any] | None = None,
    **options: Any,
) -> list[Any]:
    """``classify_dynamics`` for every network of an ensemble in one call and one compiled
    program (:func:`~ctrnn_dyn.attractors.classify_dynamics_batch`: the networks' parameters
    stacked, the measurement ``vmap`` -ped over them).

    Args:
        cell: as in :func:`find_fixed_points_ensemble`.
        params: as in :func:`find_fixed_points_ensemble`.
        hparams: as in :func:`find_fixed_points_ensemble`.
        initial_states: ``(B, n)`` starts shared by all networks, or ``(E, B, n)`` / a list of
            ``E`` arrays, one per network.
        inputs: constant input ``(m,)`` shared by all networks, or ``(E, m)`` / a list of ``E``;
            ``None`` = zero input.
        **options: passed to :func:`ctrnn_dyn.attractors.classify_dynamics_batch` (its
            ``devices``, and every option of ``classify_dynamics``).

    Returns:
        A list of ``E`` :class:`~ctrnn_dyn.attractors.DynamicsClassification`.
    """
    from ctrnn_dyn.attractors import classify_dynamics_batch

    maps = network_maps(cell, params, hparams)
    ss = per_item(initial_states, len(maps), "initial_states", ndim=2)
    us = per_item(inputs, len(maps), "inputs", ndim=1)
    if all(v is None for v in us):
        m = _input_width(params)
        us = [np.zeros(m, np.float32)] * len(maps)
    return classify_dynamics_batch(maps, ss, us, **options)


def _input_width(params: Any) -> int:
    tree = params["params"]
    tree = tree.get("cell", tree)
    return int(np.shape(tree["input_kernel"]["kernel"])[-2])
