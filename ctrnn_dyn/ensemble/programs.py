"""The compiled programs that train one chunk of networks (init, a block of steps, the
evaluation), cached per process so that chunk after chunk compiles once per shape."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax.sharding import PartitionSpec

from ctrnn_dyn import train as _train
from ctrnn_dyn._batch import NETWORK_AXIS as _AXIS

_CPU_VECTORISE_BELOW = 5e6


def _auto_vmap_size(cell: nn.Module, task: Any, batch_size: int) -> int | None:
    """``1`` (no vectorisation) for large per-network steps on a CPU, else ``None`` (vmap)."""
    if jax.default_backend() != "cpu":
        return None
    n = getattr(cell, "hidden_features", None)
    m = getattr(task, "input_size", None)
    T = getattr(task, "n_steps", None)
    if n is None or m is None or T is None:
        return None
    work = batch_size * T * n * (n + m)
    return 1 if work >= _CPU_VECTORISE_BELOW else None


def _optimizer(optimizer, learning_rate, opt_hp):
    if optimizer is not None:
        return optimizer
    if not opt_hp:
        return _train.default_optimizer(learning_rate)
    return optax.inject_hyperparams(_train.default_optimizer)(learning_rate=learning_rate)


class _Programs(NamedTuple):
    init: Callable
    block: Callable
    eval: Callable


_PROGRAMS: dict[Any, _Programs] = {}
_PROGRAMS_MAX = 16


def _signature(cell: nn.Module, task: Any) -> str:
    from ctrnn_dyn.checkpoint import cell_config

    return repr((type(cell).__name__, cell_config(cell), type(task).__name__, repr(task)))


def _programs(cell, task, opt, *, batch_size, rate_l2, weight_l2, loss, fast, eval_batches,
              eval_batch_size, vmap_size, mesh, cache_key) -> _Programs:
    """The three jitted, vectorised programs of a chunk (init, block of steps, evaluation).

    Cached per process on (cell, task, settings) when the optimiser is built here from plain
    numbers (``cache_key``), so that training chunk after chunk — or call after call, as a sweep
    worker does — compiles once per shape.
    """
    key = None
    if cache_key is not None:
        key = (_signature(cell, task), batch_size, rate_l2, weight_l2, loss, fast, eval_batches,
               eval_batch_size, vmap_size, mesh, cache_key)
        if key in _PROGRAMS:
            return _PROGRAMS[key]

    def cell_for(chp: dict[str, jax.Array]) -> nn.Module:
        return cell.clone(**chp) if chp else cell

    def init_one(key, ohp):
        k_init, k_data, k_eval = jax.random.split(key, 3)
        state = _train.init_state(cell, task, opt, key=k_init)
        if ohp:
            hyper = dict(state.opt_state.hyperparams)
            hyper.update({k: v.astype(hyper[k].dtype) for k, v in ohp.items()})
            state = state._replace(opt_state=state.opt_state._replace(hyperparams=hyper))
        return state, k_data, k_eval

    def step_one(state, k_data, chp):
        step = _train.make_train_step(cell_for(chp), task, opt, batch_size=batch_size,
                                      rate_l2=rate_l2, weight_l2=weight_l2, loss=loss, fast=fast)
        return step(state, k_data)

    def eval_one(params, k_eval, chp):
        ev = _train.make_eval_fn(cell_for(chp), task, batch_size=eval_batch_size,
                                 n_batches=eval_batches, loss=loss, fast=fast)
        return ev(params, k_eval)

    if vmap_size is None:
        step = jax.vmap(step_one)
    else:  # a loop inside the program over groups of vmap_size vectorised networks
        def step(s, k, c):
            return jax.lax.map(lambda a: step_one(*a), (s, k, c), batch_size=vmap_size)

    def local_block(states, k_data, chp, n, size):
        """``n <= size`` steps of the networks at hand; metrics in a ``(size, E)`` buffer."""
        m0 = jax.eval_shape(step, states, k_data, chp)[1]
        buf = jax.tree_util.tree_map(lambda a: jnp.zeros((size, *a.shape), a.dtype), m0)

        def body(i, carry):
            s, b = carry
            s, m = step(s, k_data, chp)
            b = jax.tree_util.tree_map(lambda bb, mm: bb.at[i].set(mm), b, m)
            return s, b

        return jax.lax.fori_loop(0, n, body, (states, buf))

    @functools.partial(jax.jit, static_argnames="size")
    def block(states, k_data, chp, n, *, size):
        """``n <= size`` steps (``n`` traced: one program serves every block length); metrics
        land in a ``(size, E)`` buffer of which the first ``n`` rows are filled."""
        if mesh is None:
            return local_block(states, k_data, chp, n, size)
        # Each device runs its own networks: written per device with shard_map, because the
        # SPMD partitioner cannot split a lax.map over the sharded network axis (it replicates
        # the loop, so every device would train every network).
        net = PartitionSpec(_AXIS)
        return jax.shard_map(
            functools.partial(local_block, size=size), mesh=mesh,
            in_specs=(net, net, net, PartitionSpec()),
            out_specs=(net, PartitionSpec(None, _AXIS)),
            # every output is per network (nothing replicated to check); flax's scan carries
            # would otherwise fail the varying-axes type check
            check_vma=False,
        )(states, k_data, chp, n)

    out = _Programs(jax.jit(jax.vmap(init_one)), block, jax.jit(jax.vmap(eval_one)))
    if key is not None:
        if len(_PROGRAMS) >= _PROGRAMS_MAX:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
        _PROGRAMS[key] = out
    return out
