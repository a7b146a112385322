"""The N-bit flip-flop (Sussillo & Barak 2013)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ctrnn_dyn._checks import check_int
from ctrnn_dyn.tasks.base import Batch, _check_batch_size, _check_outputs

__all__ = ["FlipFlop"]


@dataclasses.dataclass(frozen=True)
class FlipFlop:
    r"""N-bit flip-flop (Sussillo & Barak 2013; FixedPointFinder's example).

    Each of the ``n_bits`` input channels carries sparse one-step pulses: at every step, with
    probability ``p_pulse``, a pulse of sign ±1 (equally likely). Output ``i`` must hold the sign
    of channel ``i``'s most recent pulse (including a pulse at the current step):

    .. math::

        y^*_{t,i} = u_{s,i},\quad s = \max\{s \le t : u_{s,i} \ne 0\}.

    Before a channel's first pulse the target is 0 and masked out; the ``settle_steps`` steps
    starting at each pulse are also masked (time for a leaky network to switch), so
    ``settle_steps=0`` scores every step from the pulse on.

    ``accuracy`` is the per-bit sign accuracy: the fraction of masked entries with
    ``sign(y) == target``.
    """

    n_bits: int = 3
    n_steps: int = 100
    p_pulse: float = 0.05
    settle_steps: int = 0

    def __post_init__(self) -> None:
        check_int("n_bits", self.n_bits, 1)
        check_int("n_steps", self.n_steps, 1)
        check_int("settle_steps", self.settle_steps, 0)
        if not 0.0 < self.p_pulse <= 1.0:
            raise ValueError(f"p_pulse must be in (0, 1], got {self.p_pulse}")

    @property
    def input_size(self) -> int:
        return self.n_bits

    @property
    def output_size(self) -> int:
        return self.n_bits

    def targets_from_inputs(self, inputs: jax.Array) -> Batch:
        """Targets and mask for given pulse ``inputs`` ``(B, T, n_bits)`` (values in {−1, 0, 1})."""
        T = inputs.shape[1]
        t = jnp.arange(T)[None, :, None]
        last = jax.lax.cummax(jnp.where(inputs != 0, t, -1), axis=1)  # last pulse index or -1
        seen = last >= 0
        held = jnp.take_along_axis(inputs, jnp.maximum(last, 0), axis=1)
        targets = jnp.where(seen, held, 0.0)
        mask = (seen & (t - last >= self.settle_steps)).astype(inputs.dtype)
        return Batch(inputs, targets, mask)

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        """``batch_size`` trials of random pulses; see the class docstring."""
        batch_size = _check_batch_size(batch_size)
        k_pulse, k_sign = jax.random.split(key)
        shape = (batch_size, self.n_steps, self.n_bits)
        pulse = jax.random.bernoulli(k_pulse, self.p_pulse, shape)
        sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, shape), 1.0, -1.0)
        inputs = jnp.where(pulse, sign, 0.0).astype(jnp.float32)
        return self.targets_from_inputs(inputs)

    def accuracy(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        """Per-bit sign accuracy on masked entries."""
        _check_outputs(self, outputs, batch)
        m = batch.mask
        hit = (jnp.sign(outputs) == batch.targets).astype(jnp.float32)
        return jnp.sum(hit * m) / jnp.maximum(m.sum(), 1.0)
