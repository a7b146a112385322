"""One network's training state and the pure functions that step it: the optimiser, the
initial params and state, the jitted train step and the held-out evaluation."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from ctrnn_dyn import _checks
from ctrnn_dyn.history import StepMetrics
from ctrnn_dyn.model import CTRNNCell, rnn
from ctrnn_dyn.train.loss import LossKind, _sampler, loss_fn, use_fast_path

__all__ = [
    "TrainState",
    "default_optimizer",
    "init_params",
    "init_state",
    "make_train_step",
    "make_eval_fn",
]


class TrainState(NamedTuple):
    """Per-network training state (a pytree; ``vmap`` it for an ensemble).

    Attributes:
        step: number of optimiser steps taken so far (int32 scalar).
        params: network variables in the ``nn.RNN`` layout ``{"params": {"cell": ...}}``.
        opt_state: the optimiser's state.
        finite: False once a non-finite loss or gradient was met; from then on the step leaves
            ``params`` and ``opt_state`` unchanged (the NaN guard).
        nonfinite_step: index of the first step with a non-finite loss, or −1.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    finite: jax.Array
    nonfinite_step: jax.Array


def default_optimizer(
    learning_rate: float | optax.Schedule = 1e-3,
    *,
    clip_norm: float = 1.0,
    weight_decay: float = 1e-4,
    b1: float = 0.9,
    b2: float = 0.999,
) -> optax.GradientTransformation:
    """``optax.chain(optax.clip_by_global_norm(clip_norm), optax.adamw(learning_rate, ...))``.

    Raises:
        TypeError: a hyper-parameter is not a number (a string, a bool, ``None``).
        ValueError: ``learning_rate <= 0``, ``clip_norm <= 0``, ``weight_decay < 0``, ``b1`` or
            ``b2`` outside ``[0, 1)``, or a value that is not finite. Arrays (the per-network
            values of ``optax.inject_hyperparams``, tracers) and schedules are not checked.
    """
    _checks.check_hparams({"learning_rate": learning_rate, "clip_norm": clip_norm,
                           "weight_decay": weight_decay, "b1": b1, "b2": b2}, skip_arrays=True)
    return optax.chain(
        optax.clip_by_global_norm(clip_norm),
        optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay),
    )


def _check_widths(cell: nn.Module, task: Any) -> None:
    out = getattr(cell, "output_features", None)
    if out is None:
        out = getattr(cell, "hidden_features", None)
    if out is not None and out != task.output_size:
        raise ValueError(
            f"cell.output_features = {out} does not match the task's output_size = "
            f"{task.output_size}"
        )
    features = getattr(cell, "features", None)  # Flax's GRUCell, LSTMCell, SimpleCell, ...
    if out is None and isinstance(features, int) and features != task.output_size:
        name = type(cell).__name__
        raise ValueError(
            f"{name} has no readout: its outputs are its {features} hidden units "
            f"({name}.features = {features}), but the task's targets have "
            f"task.output_size = {task.output_size}; train a cell whose outputs have the "
            f"task's size, e.g. CTRNNCell(hidden_features={features}, "
            f"output_features={task.output_size}), or a cell of your own that ends in a "
            f"linear readout nn.Dense({task.output_size})"
        )


def init_params(cell: nn.Module, task: Any, *, key: jax.Array) -> Any:
    """Initial params ``rnn(cell).init(...)`` for ``task``'s input width (``nn.RNN`` layout)."""
    _check_widths(cell, task)
    k_p, k_n = jax.random.split(key)
    dummy = jnp.zeros((1, task.n_steps, task.input_size), jnp.float32)
    return rnn(cell).init({"params": k_p, "noise_stream": k_n}, dummy)


def _check_params(cell: nn.Module, task: Any, params: Any) -> None:
    try:
        tree = params["params"]["cell"]
    except (TypeError, KeyError):
        raise ValueError(
            "params must have the nn.RNN layout {'params': {'cell': ...}}"
        ) from None
    if isinstance(cell, CTRNNCell):
        m = tree["input_kernel"]["kernel"].shape[0]
        if m != task.input_size:
            raise ValueError(
                f"params' input kernel has width {m} but the task's input_size is "
                f"{task.input_size}"
            )


def init_state(
    cell: nn.Module,
    task: Any,
    optimizer: optax.GradientTransformation,
    *,
    key: jax.Array | None = None,
    params: Any = None,
) -> TrainState:
    """Initial :class:`TrainState` (params from ``key`` unless ``params`` is given)."""
    if params is None:
        if key is None:
            raise ValueError("init_state needs key= or params=")
        params = init_params(cell, task, key=key)
    _check_widths(cell, task)
    _check_params(cell, task, params)
    return TrainState(
        step=jnp.asarray(0, jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        finite=jnp.asarray(True),
        nonfinite_step=jnp.asarray(-1, jnp.int32),
    )


def make_train_step(
    cell: nn.Module,
    task: Any,
    optimizer: optax.GradientTransformation,
    *,
    batch_size: int,
    rate_l2: float = 0.0,
    weight_l2: float = 0.0,
    loss: LossKind = "mse",
    fast: bool | None = None,
) -> Callable[[TrainState, jax.Array], tuple[TrainState, StepMetrics]]:
    """A pure, un-jitted per-network train step ``step(state, key) -> (state, StepMetrics)``.

    The step draws its batch and noise from ``fold_in(key, state.step)`` (split in two), so the
    same ``key`` gives the same run whatever the chunking; ``key`` is the run's data key and stays
    fixed across steps. It takes the loss gradient, applies ``optimizer``, and leaves params and
    optimiser state unchanged once a non-finite loss, gradient or update has been met
    (``state.finite``).
    No Python side effects or host callbacks: ``jax.jit`` it, ``jax.vmap`` it over networks.

    Raises:
        ValueError: ``batch_size < 1`` or a task/cell width mismatch.
    """
    _checks.check_int("batch_size", batch_size, 1)
    _check_widths(cell, task)
    fast = use_fast_path(cell, fast)
    sample, basis = _sampler(cell, task)
    grad_fn = jax.value_and_grad(
        functools.partial(loss_fn, cell=cell, rate_l2=rate_l2, weight_l2=weight_l2, loss=loss,
                          fast=fast, input_basis=basis),
        has_aux=True,
    )

    def step(state: TrainState, key: jax.Array) -> tuple[TrainState, StepMetrics]:
        k_batch, k_noise = jax.random.split(jax.random.fold_in(key, state.step))
        batch = sample(k_batch, batch_size)
        (total, aux), grads = grad_fn(state.params, batch=batch, key=k_noise)
        gnorm = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ok = (state.finite & jnp.isfinite(total) & jnp.isfinite(gnorm)
              & jnp.isfinite(optax.tree.norm(updates)))
        keep = functools.partial(jax.tree_util.tree_map, lambda new, old: jnp.where(ok, new, old))
        new_state = TrainState(
            step=state.step + 1,
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            finite=ok,
            nonfinite_step=jnp.where(state.finite & ~ok, state.step, state.nonfinite_step),
        )
        metrics = StepMetrics(total, aux.mse, gnorm, task.accuracy(aux.outputs, batch))
        return new_state, metrics

    return step


def make_eval_fn(
    cell: nn.Module,
    task: Any,
    *,
    batch_size: int,
    n_batches: int = 4,
    loss: LossKind = "mse",
    fast: bool | None = None,
) -> Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]:
    """``eval(params, key) -> (mean data loss, mean accuracy)`` over ``n_batches`` held-out
    batches drawn from ``fold_in(key, i)`` (the same batches every call with the same key)."""
    fast = use_fast_path(cell, fast)
    sample, basis = _sampler(cell, task)

    def one(params, k):
        k_batch, k_noise = jax.random.split(k)
        batch = sample(k_batch, batch_size)
        _, aux = loss_fn(params, cell, batch, key=k_noise, loss=loss, fast=fast,
                         input_basis=basis)
        return aux.mse, task.accuracy(aux.outputs, batch)

    def evaluate(params, key):
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n_batches))
        losses, accs = jax.lax.map(lambda k: one(params, k), keys)
        return losses.mean(), accs.mean()

    return evaluate
