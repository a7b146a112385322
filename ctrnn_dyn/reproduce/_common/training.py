"""Training and rollouts shared by the trained-network reproductions (public API only)."""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import numpy as np

from ctrnn_dyn.reproduce._common.run import FORWARD_PASSES, Timer

__all__ = ["TrainedNetwork", "train_network", "rollout", "readout"]

logger = logging.getLogger(__name__)


class TrainedNetwork(NamedTuple):
    """A trained CT-RNN and what the analyses need from it.

    Attributes:
        cell: the (noise-carrying) training cell.
        params: ``nn.RNN`` params ``{"params": {"cell": ...}}``.
        F: the deterministic one-step map ``F(x, u)`` (noise off).
        result: the :class:`~ctrnn_dyn.train.TrainResult`.
        train_seconds: wall time of training.
    """

    cell: Any
    params: Any
    F: Any
    result: Any
    train_seconds: float


def train_network(
    task: Any,
    *,
    hidden: int,
    alpha: float,
    noise: float,
    steps: int,
    learning_rate: float,
    batch_size: int,
    key: Any,
    loss: str = "mse",
    weight_l2: float = 0.0,
    rate_l2: float = 0.0,
    zero_carry: bool = False,
    orthogonal_init: bool = False,
    forward: str = "nn.RNN",
) -> TrainedNetwork:
    """Train a tanh ``CTRNNCell`` on ``task`` with AdamW and a warm-up + cosine schedule.

    The schedule rises from ``lr/10`` to ``learning_rate`` over the first 5% of the steps and
    decays to ``lr/20`` (``optax.warmup_cosine_decay_schedule``), inside
    :func:`ctrnn_dyn.train.default_optimizer` (global-norm clipping at 1). ``zero_carry``
    starts every trial from ``x = 0`` instead of the seed's ``x = 1``; ``orthogonal_init``
    initialises the kernels orthogonally instead of the seed's Glorot-normal (gradients then
    survive many steps of an ``α = 1`` network). ``forward`` is the forward pass trained
    through: ``"nn.RNN"``, the one the committed figures were made with, or ``"fast"``
    (:mod:`ctrnn_dyn.fast_path`, ``train``'s default). The two are the same model to float
    rounding, but thousands of optimiser steps amplify rounding into a different network, so
    only the recorded pass reproduces a figure's numbers.
    """
    if forward not in FORWARD_PASSES:
        raise ValueError(f"forward must be one of {FORWARD_PASSES}, got {forward!r}")
    import optax
    from flax.linen import initializers

    from ctrnn_dyn.dynamics import one_step_map
    from ctrnn_dyn.model import CTRNNCell
    from ctrnn_dyn.train import default_optimizer, train

    extra = {"carry_init": initializers.zeros_init()} if zero_carry else {}
    if orthogonal_init:
        extra["kernel_init"] = initializers.orthogonal()
    cell = CTRNNCell(hidden_features=hidden, output_features=task.output_size, alpha=alpha,
                     noise_const=noise, **extra)
    schedule = optax.warmup_cosine_decay_schedule(
        learning_rate / 10, learning_rate, max(steps // 20, 1), steps, learning_rate / 20
    )
    timer = Timer()
    logger.info("training a %d-unit network (alpha=%g) on %s for %d steps", hidden, alpha,
                type(task).__name__, steps)
    result = train(cell, task, key=key, steps=steps, batch_size=batch_size,
                   optimizer=default_optimizer(schedule), loss=loss, weight_l2=weight_l2,
                   rate_l2=rate_l2, sync_every=min(100, steps), progress=None,
                   fast=forward == "fast")
    return TrainedNetwork(cell, result.params, one_step_map(cell, result.params), result,
                          timer.elapsed)


def rollout(net: TrainedNetwork, inputs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free states and outputs of ``net`` on ``inputs`` ``(B, T, m)``.

    Returns:
        ``(states (B, T, n), outputs (B, T, p))``: the voltages ``x_1 … x_T`` after each step
        (from the cell's initial carry) and the readout ``f(x_t) K_out + b_out``.
    """
    import jax
    import jax.numpy as jnp

    from ctrnn_dyn.dynamics import simulate

    inputs = jnp.asarray(inputs, jnp.float32)
    x0 = net.cell.initialize_carry(jax.random.PRNGKey(0), (inputs.shape[-1],))
    states = jax.jit(jax.vmap(lambda u: simulate(net.F, x0, u)))(inputs)
    return np.asarray(states), readout(net, states)


def readout(net: TrainedNetwork, states: Any) -> np.ndarray:
    """The network's output ``y = f(x) K_out + b_out`` for states ``(..., n)``."""
    tree = net.params["params"].get("cell", net.params["params"])
    K_out = np.asarray(tree["output_kernel"]["kernel"], np.float64)
    b_out = np.asarray(tree["output_kernel"]["bias"], np.float64)
    import jax

    with jax.enable_x64(True):
        rates = np.asarray(net.cell.activation_fn(np.asarray(states, np.float64)))
    return rates @ K_out + b_out
