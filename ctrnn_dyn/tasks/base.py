"""What every task shares: the :class:`Batch` of trials it samples and the checks of its
arguments and of the outputs it scores."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

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
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise TypeError(f"batch_size must be an int >= 1, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return int(batch_size)


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int >= {low}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


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
