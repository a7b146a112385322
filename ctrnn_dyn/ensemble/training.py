"""Training an ensemble: :func:`train_ensemble`, chunk by chunk."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ctrnn_dyn import train as _train
from ctrnn_dyn._batch import NETWORK_AXIS as _AXIS
from ctrnn_dyn._batch import network_mesh
from ctrnn_dyn._checks import check_int
from ctrnn_dyn.ensemble.programs import _auto_vmap_size, _optimizer, _programs
from ctrnn_dyn.ensemble.result import EnsembleHistory, EnsembleResult
from ctrnn_dyn.ensemble.validation import (
    CELL_HPARAMS,
    OPTIMIZER_HPARAMS,
    _check_hparams,
    _check_keys,
)
from ctrnn_dyn.train.step import _check_widths

__all__ = ["train_ensemble"]

logger = logging.getLogger(__name__)


def train_ensemble(
    cell: nn.Module,
    task: Any,
    *,
    keys: jax.Array,
    steps: int,
    batch_size: int,
    hparams: Mapping[str, Any] | None = None,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 1e-3,
    rate_l2: float = 0.0,
    weight_l2: float = 0.0,
    loss: _train.LossKind = "mse",
    chunk_size: int | None = None,
    block_steps: int = 100,
    vmap_size: int | None | str = "auto",
    devices: Sequence[Any] | Mesh | str | None = "auto",
    eval_batches: int = 4,
    eval_batch_size: int | None = None,
    fast: bool | None = None,
    progress: bool = False,
) -> EnsembleResult:
    r"""Train ``E = len(keys)`` networks at once, each exactly as ``train(cell, task, key=k)``.

    Network ``i`` uses ``(k_init, k_data, k_eval) = split(keys[i], 3)``: params
    ``init_params(cell, task, key=k_init)``, step ``s`` the batch and noise of
    ``fold_in(k_data, s)``, and the held-out evaluation after the last step from ``k_eval`` —
    the conventions of :func:`ctrnn_dyn.train.train`. The per-network update is
    :func:`ctrnn_dyn.train.make_train_step`'s step, vectorised over (params, optimiser state,
    key, hyper-parameters) with :func:`jax.vmap`.

    Args:
        cell: the shared cell architecture (per-network ``alpha``/``noise_const`` via
            ``hparams``).
        task: a task from :mod:`ctrnn_dyn.tasks`.
        keys: ``(E,)`` typed keys or ``(E, 2)`` raw ``uint32`` keys, one per network.
        steps: optimiser steps per network.
        batch_size: trials per step.
        hparams: optional ``{name: (E,) values}`` (``alpha`` may be ``(E, n)``); names in
            :data:`CELL_HPARAMS` and, with the default optimiser, :data:`OPTIMIZER_HPARAMS`.
        optimizer: shared Optax transformation (default: ``default_optimizer(learning_rate)``).
        learning_rate: learning rate of the default optimiser when not in ``hparams``.
        rate_l2: L2 penalty on the rates; see :func:`ctrnn_dyn.train.loss_fn` (shared).
        weight_l2: L2 penalty on the kernels; see :func:`ctrnn_dyn.train.loss_fn` (shared).
        loss: loss kind; see :func:`ctrnn_dyn.train.loss_fn` (shared).
        chunk_size: networks vectorised in one program (default: all ``E``); the ensemble is
            trained chunk after chunk. With explicit ``devices`` it must be a multiple of their
            number (with ``"auto"`` it is rounded up; the padding networks are discarded).
        block_steps: steps per compiled block (one host sync per block).
        vmap_size: networks vectorised together inside a chunk's program; the program loops
            (``lax.map``) over the chunk's groups of ``vmap_size``. ``None`` = the whole chunk
            (plain ``vmap``); ``1`` = no vectorisation, one compiled loop over networks.
            ``"auto"`` (default): ``None`` on accelerators or for small networks; ``1`` on a
            CPU when one network's step is already large (``B·T·n·(n+m) >= 5e6``), where
            vectorising only multiplies the working set (see the module docstring). With
            several devices this applies to each device's share of the chunk.
        devices: shard the network axis over these devices (or a 1-axis ``Mesh`` named
            ``"networks"``); ``None`` = the default device; ``"auto"`` (default) = all of
            ``jax.devices()`` when there are several and ``E`` is at least their number. On a
            CPU, expose the cores as devices before JAX starts
            (``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>``): independent
            networks then run in parallel, which a single small network cannot.
        eval_batches: held-out batches after training (as in ``train``).
        eval_batch_size: their size (as in ``train``).
        fast: forward pass: ``None`` (default) the fast path where the cell supports it,
            ``True`` the fast path, ``False`` ``nn.RNN`` (see :func:`ctrnn_dyn.train.loss_fn`).
        progress: show a tqdm bar over steps.

    Returns:
        :class:`EnsembleResult` with the network axis first everywhere.

    Raises:
        ValueError / TypeError: bad ``keys`` shape, sizes < 1, unknown or mis-shaped
            ``hparams``, ``chunk_size`` not a multiple of the number of devices.
    """
    from tqdm.auto import tqdm

    keys = _check_keys(keys)
    n_net = int(keys.shape[0])
    steps = check_int("steps", steps, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    block_steps = check_int("block_steps", block_steps, 1)
    auto_devices = isinstance(devices, str)
    mesh = network_mesh(devices, n_net)
    if vmap_size == "auto":
        vmap_size = _auto_vmap_size(cell, task, batch_size)
    elif vmap_size is not None:
        vmap_size = check_int("vmap_size", vmap_size, 1)
    eval_batches = check_int("eval_batches", eval_batches, 1)
    chunk = n_net if chunk_size is None else check_int("chunk_size", chunk_size, 1)
    chunk = min(chunk, n_net)
    if mesh is not None and auto_devices:
        chunk = -(-chunk // mesh.size) * mesh.size
    if mesh is not None and chunk % mesh.size:
        raise ValueError(
            f"chunk_size ({chunk}) must be a multiple of the number of devices ({mesh.size})"
            " to shard the network axis"
        )
    hp = _check_hparams(hparams, n_net, cell, optimizer)
    cell_hp = {k: v for k, v in hp.items() if k in CELL_HPARAMS}
    opt_hp = {k: v for k, v in hp.items() if k in OPTIMIZER_HPARAMS}
    opt = _optimizer(optimizer, learning_rate, opt_hp)
    _check_widths(cell, task)
    # build (and so validate) one step eagerly: errors surface here, not inside a trace
    _train.make_train_step(cell, task, opt, batch_size=batch_size, rate_l2=rate_l2,
                           weight_l2=weight_l2, loss=loss, fast=fast)
    forward_path = _train.forward_path(cell, fast)

    init_chunk, block_chunk, eval_chunk = _programs(
        cell, task, opt, batch_size=batch_size, rate_l2=rate_l2, weight_l2=weight_l2,
        loss=loss, fast=fast, eval_batches=eval_batches,
        eval_batch_size=eval_batch_size or batch_size, vmap_size=vmap_size, mesh=mesh,
        cache_key=None if optimizer is not None else (learning_rate, tuple(sorted(opt_hp))),
    )

    sharding = None if mesh is None else NamedSharding(mesh, PartitionSpec(_AXIS))

    n_chunks = math.ceil(n_net / chunk)
    outs = []
    bar = tqdm(total=n_chunks * steps, disable=not progress, desc="ensemble", unit="step")
    try:
        for c in range(n_chunks):
            lo, hi = c * chunk, min((c + 1) * chunk, n_net)
            idx = np.minimum(np.arange(lo, lo + chunk), n_net - 1)  # pad the last chunk
            ck = keys[idx]
            chp = {k: jnp.asarray(v[idx]) for k, v in cell_hp.items()}
            ohp = {k: jnp.asarray(v[idx]) for k, v in opt_hp.items()}
            if sharding is not None:
                ck, chp, ohp = jax.device_put((ck, chp, ohp), sharding)
            t0 = time.perf_counter()
            states, k_data, k_eval = init_chunk(ck, ohp)
            metrics = []
            done = 0
            size = min(block_steps, steps)
            while done < steps:
                n = min(size, steps - done)
                states, m = block_chunk(states, k_data, chp, jnp.asarray(n, jnp.int32),
                                        size=size)
                metrics.append(jax.tree_util.tree_map(lambda a, n=n: a[:n], jax.device_get(m)))
                done += n
                bar.update(n)
            ev_loss, ev_acc = eval_chunk(states.params, k_eval, chp)
            ev_loss, ev_acc = jax.device_get((ev_loss, ev_acc))
            wall = time.perf_counter() - t0
            m = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0), *metrics)
            keep = hi - lo
            outs.append((
                jax.tree_util.tree_map(lambda a, k=keep: np.asarray(a)[:k],
                                       jax.device_get(states)),
                jax.tree_util.tree_map(lambda a, k=keep: np.asarray(a).T[:k], m),
                np.asarray(ev_loss)[:keep], np.asarray(ev_acc)[:keep],
                np.full(keep, wall / (hi - lo)),
            ))
            logger.info("ensemble chunk %d/%d (%d networks) trained in %.2fs", c + 1, n_chunks,
                        keep, wall)
    finally:
        bar.close()

    def cat(*xs):
        return np.concatenate(xs, axis=0)

    states = jax.tree_util.tree_map(cat, *[o[0] for o in outs])
    m = jax.tree_util.tree_map(cat, *[o[1] for o in outs])
    history = EnsembleHistory(
        loss=m.loss, mse=m.mse, grad_norm=m.grad_norm, accuracy=m.accuracy,
        eval_loss=cat(*[o[2] for o in outs]), eval_accuracy=cat(*[o[3] for o in outs]),
    )
    return EnsembleResult(
        params=states.params,
        opt_state=states.opt_state,
        history=history,
        nonfinite_step=np.asarray(states.nonfinite_step, np.int64),
        keys=keys,
        hparams=hp,
        wall_time=cat(*[o[4] for o in outs]),
        forward_path=forward_path,
    )
