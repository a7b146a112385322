"""The trajectories of a run's network on its own task and the analysis' starts sampled
from them (steps 1 and 2 of :func:`~ctrnn_dyn.report.analyze_run`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn._checks import check_int
from ctrnn_dyn.dynamics import simulate
from ctrnn_dyn.fixed_points import sample_initial_states
from ctrnn_dyn.runs import Run

__all__ = ["task_trajectories", "analysis_starts"]


def task_trajectories(run: Run, n_trials: int, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free trajectories of the trained network on ``n_trials`` trials of its task.

    Args:
        run: a loaded run.
        n_trials: trials to draw (``task.sample(key, n_trials)``).
        key: PRNG key of the trials.

    Returns:
        ``(inputs (B, T, m), states (B, T, n))``: the trials' inputs and the states
        :math:`x_1 \\dots x_T` reached from the cell's initial state (``carry_init``).
    """
    check_int("n_trials", n_trials, 1)
    F = run.map()
    batch = run.task.sample(key, n_trials)
    inputs = jnp.asarray(batch.inputs, jnp.float32)
    if F.input_size is not None and inputs.shape[-1] != F.input_size:
        raise ValueError(
            f"the task's inputs have width {inputs.shape[-1]} but the network takes "
            f"{F.input_size}"
        )
    x0 = run.cell.initialize_carry(jax.random.PRNGKey(0), (inputs.shape[-1],))
    states = jax.jit(jax.vmap(lambda u: simulate(F, x0, u)))(inputs)
    return np.asarray(inputs), np.asarray(states)


def analysis_starts(
    run: Run, *, n_starts: int, n_trials: int, noise_scale: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The trajectories and the fixed-point starts :func:`analyze_run` uses for ``seed``.

    Returns:
        ``(states (n_trials, T, n), starts (n_starts, n))`` with
        ``k_trials, k_starts = jax.random.split(jax.random.PRNGKey(seed))``.
    """
    check_int("n_starts", n_starts, 1)
    check_int("seed", seed, 0)
    if isinstance(noise_scale, bool) or not isinstance(noise_scale, int | float | np.floating):
        raise TypeError(f"noise_scale must be a float >= 0, got {type(noise_scale).__name__}")
    if not (np.isfinite(noise_scale) and noise_scale >= 0):
        raise ValueError(f"noise_scale must be finite and >= 0, got {noise_scale!r}")
    k_trials, k_starts = jax.random.split(jax.random.PRNGKey(seed))
    _, states = task_trajectories(run, n_trials, k_trials)
    starts = sample_initial_states(states, n_starts, noise_scale=float(noise_scale), key=k_starts)
    return states, np.asarray(starts)
