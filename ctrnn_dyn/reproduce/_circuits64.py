"""The seed's circuits run in float64, as the seed-dynamics analyses run them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn.dynamics import OneStepMap, simulate
from ctrnn_dyn.systems import CircuitSystem


def _map64(system: CircuitSystem) -> OneStepMap:
    """The circuit's map with float64 parameters (analysis runs in float64)."""
    with jax.enable_x64(True):
        return system.map(jnp.float64)


def _simulate64(system: CircuitSystem, n_steps: int | None = None) -> np.ndarray:
    with jax.enable_x64(True):
        return np.asarray(system.simulate(n_steps=n_steps, dtype=jnp.float64))


def _run_from(system: CircuitSystem, x0: np.ndarray, n_steps: int) -> np.ndarray:
    """States ``(B, n_steps + 1, n)`` from starts ``x0`` ``(B, n)`` under zero input (float64,
    the start included)."""
    F = _map64(system)
    with jax.enable_x64(True):
        x = jnp.asarray(x0, jnp.float64)
        u = jnp.zeros((system.n,), jnp.float64)
        traj = jax.jit(jax.vmap(lambda s: simulate(F, s, u, n_steps=n_steps)))(x)
        return np.concatenate([np.asarray(x0, np.float64)[:, None], np.asarray(traj)], 1)
