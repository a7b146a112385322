r"""The seed's classic small rate-form CT-RNNs (after Beer 1995), with their published parameters.

Each circuit is the rate cell of :class:`ctrnn_dyn.model.RateCTRNNCell`,

.. math::

    h_{t+1} = (1 - \Delta t/\tau)\,h_t + (\Delta t/\tau)\,(\sigma(h_t K + b) + u_t),

run with zero input from starts where every neuron has the same value.

- switch (bistable): K = [[8]], b = [-4], tau = [1], dt = 0.01, 500 steps,
  starts 0, .25, .5, .75, 1.
- oscillator (limit cycle): K = [[4.5, -1], [1, 4.5]], b = [-2.75, -1.75], tau = [1, 1],
  dt = 0.1, 500 steps, starts 0, .4, .5, .6, 1.
- chaos (3-neuron chaotic circuit): K = [[5.422, -0.24, 0.535], [-0.018, 4.59, -2.25],
  [2.750, 1.210, 3.885]], b = [-4.108, -2.787, -1.114], tau = [1, 2.5, 1], dt = 0.1,
  5000 steps, starts .45, .5, .55.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn.dynamics import OneStepMap, one_step_map, simulate
from ctrnn_dyn.model import RateCTRNNCell

__all__ = ["CircuitSystem", "SWITCH", "OSCILLATOR", "CHAOS", "SYSTEMS", "get_system"]


@dataclasses.dataclass(frozen=True)
class CircuitSystem:
    """A small rate CT-RNN with fixed parameters, its step size, run length and starts.

    Attributes:
        name: short name (``"switch"``, ``"oscillator"``, ``"chaos"``).
        K: recurrent kernel ``(n, n)``, rows presynaptic.
        b: bias ``(n,)``.
        tau: time constants ``(n,)``.
        dt: Euler step.
        n_steps: the seed's run length.
        starts: initial values; each start sets every neuron to that value.
    """

    name: str
    K: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    tau: tuple[float, ...]
    dt: float
    n_steps: int
    starts: tuple[float, ...]

    @property
    def n(self) -> int:
        """Number of neurons."""
        return len(self.b)

    def cell(self) -> RateCTRNNCell:
        """The rate cell with this system's ``dt`` and ``tau``."""
        return RateCTRNNCell(hidden_features=self.n, dt=self.dt, tau=self.tau)

    def params(self, dtype: jnp.dtype | None = None) -> dict:
        """Cell variables ``{"params": {"recurrent_kernel": {"kernel", "bias"}}}``."""
        return {
            "params": {
                "recurrent_kernel": {
                    "kernel": jnp.asarray(self.K, dtype),
                    "bias": jnp.asarray(self.b, dtype),
                }
            }
        }

    def map(self, dtype: jnp.dtype | None = None) -> OneStepMap:
        """The one-step map ``F(h, u)``; ``u`` defaults to zero (width ``n``)."""
        return one_step_map(self.cell(), self.params(dtype))

    def initial_states(self, dtype: jnp.dtype | None = None) -> jax.Array:
        """``(len(starts), n)``: each start value broadcast to every neuron."""
        return jnp.asarray(np.repeat(np.asarray(self.starts)[:, None], self.n, axis=1), dtype)

    def simulate(self, n_steps: int | None = None, dtype: jnp.dtype | None = None) -> jax.Array:
        """Trajectories from every start under zero input: ``(len(starts), T, n)``."""
        n_steps = self.n_steps if n_steps is None else n_steps
        F = self.map(dtype)
        x0 = self.initial_states(dtype)
        u = jnp.zeros((self.n,), x0.dtype)
        return jax.jit(jax.vmap(lambda x: simulate(F, x, u, n_steps=n_steps)))(x0)

    @property
    def times(self) -> np.ndarray:
        """Times ``dt · (1 … n_steps)`` of the simulated states."""
        return self.dt * np.arange(1, self.n_steps + 1)


SWITCH = CircuitSystem(
    name="switch",
    K=((8.0,),),
    b=(-4.0,),
    tau=(1.0,),
    dt=0.01,
    n_steps=500,
    starts=(0.0, 0.25, 0.5, 0.75, 1.0),
)
OSCILLATOR = CircuitSystem(
    name="oscillator",
    K=((4.5, -1.0), (1.0, 4.5)),
    b=(-2.75, -1.75),
    tau=(1.0, 1.0),
    dt=0.1,
    n_steps=500,
    starts=(0.0, 0.4, 0.5, 0.6, 1.0),
)
CHAOS = CircuitSystem(
    name="chaos",
    K=((5.422, -0.24, 0.535), (-0.018, 4.59, -2.25), (2.750, 1.210, 3.885)),
    b=(-4.108, -2.787, -1.114),
    tau=(1.0, 2.5, 1.0),
    dt=0.1,
    n_steps=5000,
    starts=(0.45, 0.5, 0.55),
)
SYSTEMS: dict[str, CircuitSystem] = {s.name: s for s in (SWITCH, OSCILLATOR, CHAOS)}


def get_system(name: str) -> CircuitSystem:
    """Look up a circuit by name (``switch``, ``oscillator``, ``chaos``)."""
    try:
        return SYSTEMS[name]
    except KeyError:
        raise ValueError(f"name must be one of {sorted(SYSTEMS)}, got {name!r}") from None
