"""The seed's sine-wave generator (Sussillo & Barak 2013)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn._checks import check_int
from ctrnn_dyn.tasks.base import Batch, _check_batch_size, _check_outputs

__all__ = ["SineWave"]


@dataclasses.dataclass(frozen=True)
class SineWave:
    r"""The seed's sine-wave generator (Sussillo & Barak 2013).

    A static input level :math:`u = 0.25 + (100\omega - 9)/51` selects the frequency
    :math:`\omega` (radians per step); the target is :math:`\sin(\omega t)`, ``t = 0 … T−1``.
    The frequencies are ``np.arange(omega_min, omega_max, omega_step)`` (seed: 0.1 … 0.5 in
    steps of 0.001, 400 frequencies, ``T = 50``). ``sample`` draws frequencies uniformly with
    replacement; :meth:`full_batch` gives every frequency once.

    ``accuracy`` is the seed's score ``clip(1 − MSE/Var(targets), 0, 1)`` over the batch.
    """

    n_steps: int = 50
    omega_min: float = 0.1
    omega_max: float = 0.5
    omega_step: float = 0.001

    input_size: ClassVar[int] = 1
    output_size: ClassVar[int] = 1

    def __post_init__(self) -> None:
        check_int("n_steps", self.n_steps, 1)
        if not (0 < self.omega_step and self.omega_min < self.omega_max):
            raise ValueError(
                "need omega_step > 0 and omega_min < omega_max, got "
                f"{self.omega_min}, {self.omega_max}, {self.omega_step}"
            )

    @property
    def frequencies(self) -> np.ndarray:
        """All frequencies ``ω`` (rad/step), as the seed builds them (float32)."""
        return np.arange(self.omega_min, self.omega_max, self.omega_step, dtype=np.float32)

    @staticmethod
    def input_level(omega: jax.Array) -> jax.Array:
        """The static input ``0.25 + (100 ω − 9) / 51`` for frequency ``ω``."""
        return 0.25 + (100.0 * omega - 9.0) / 51.0

    def batch_for(self, omegas: jax.Array) -> Batch:
        """Trials for the given frequencies ``omegas`` ``(B,)``."""
        omegas = jnp.asarray(omegas, jnp.float32)
        t = jnp.arange(self.n_steps, dtype=jnp.float32)
        u = jnp.broadcast_to(self.input_level(omegas)[:, None, None], (omegas.shape[0],
                                                                        self.n_steps, 1))
        y = jnp.sin(omegas[:, None] * t[None, :])[..., None]
        return Batch(u, y, jnp.ones_like(y))

    def full_batch(self) -> Batch:
        """Every frequency once, in order: ``B = len(frequencies)``."""
        return self.batch_for(jnp.asarray(self.frequencies))

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        """``batch_size`` trials with frequencies drawn uniformly from :attr:`frequencies`."""
        batch_size = _check_batch_size(batch_size)
        freqs = jnp.asarray(self.frequencies)
        idx = jax.random.randint(key, (batch_size,), 0, freqs.shape[0])
        return self.batch_for(freqs[idx])

    def accuracy(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        """``clip(1 − MSE/Var(targets), 0, 1)`` (masked), the seed's score."""
        _check_outputs(self, outputs, batch)
        m = batch.mask
        n = jnp.maximum(m.sum(), 1.0)
        mse = jnp.sum(m * (outputs - batch.targets) ** 2) / n
        mean = jnp.sum(m * batch.targets) / n
        var = jnp.sum(m * (batch.targets - mean) ** 2) / n
        return jnp.clip(1.0 - mse / var, 0.0, 1.0)
