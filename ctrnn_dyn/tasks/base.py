"""What every task shares: the :class:`Batch` of trials it samples and the checks of its
arguments and of the outputs it scores."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ctrnn_dyn._checks import check_int

__all__ = ["Batch"]


class Batch(NamedTuple):
    """One batch of trials.

    Attributes:
        inputs: ``(B, T, m)`` network inputs.
        targets: ``(B, T, p)`` desired outputs.
        mask: ``(B, T, p)`` loss weights (1 where the output is scored, 0 elsewhere).
    """

    inputs: jax.Array
    targets: jax.Array
    mask: jax.Array


def _check_batch_size(batch_size: Any) -> int:
    return check_int("batch_size", batch_size, 1)


def _check_outputs(task: Any, outputs: jax.Array, batch: Batch) -> None:
    if outputs.shape != batch.targets.shape:
        raise ValueError(
            f"outputs must have the targets' shape (B, T, p) = {batch.targets.shape}, "
            f"got {outputs.shape}"
        )


def _decision_accuracy(outputs: jax.Array, batch: Batch) -> jax.Array:
    """Fraction of trials whose mask-averaged output has the sign of the (±1) label."""
    m = batch.mask
    denom = jnp.maximum(m.sum(axis=(1, 2)), 1.0)
    y = (outputs * m).sum(axis=(1, 2)) / denom
    label = (batch.targets * m).sum(axis=(1, 2)) / denom
    return jnp.mean((jnp.sign(y) == jnp.sign(label)).astype(jnp.float32))
