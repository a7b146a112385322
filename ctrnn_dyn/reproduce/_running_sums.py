"""The modulo-3 trials' running sums and what the state does after each stimulus: where it
relaxes to, and how well a read-out tells the running sums apart."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn.dynamics import simulate

__all__ = ["coding_accuracy"]


def _sequence_of(codes: np.ndarray, stimulus_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Colours ``(B, 3)`` and onsets ``(B, 3)`` read back from ``(B, T, 3)`` colour codes."""
    on = codes.sum(-1) > 0
    start = on & ~np.concatenate([np.zeros((len(on), 1), bool), on[:, :-1]], axis=1)
    onsets = np.array([np.flatnonzero(r)[:3] for r in start])
    colours = np.take_along_axis(codes.argmax(-1), onsets, axis=1)
    return colours, onsets


def _after_each_stimulus(net, task, states, onsets, relax_steps):
    """The state just after stimulus ``k`` (``k = 1, 2, 3``) of every trial, then held at zero
    input for ``relax_steps`` steps: ``(relaxed (B, 3, n), absolute time (B, 3))``."""
    t_end = onsets + task.stimulus_steps - 1  # index of the state after the last stimulus step
    x = np.take_along_axis(states, t_end[..., None], axis=1)  # (B, 3, n)
    u0 = np.zeros(task.input_size, np.float32)
    run = jax.jit(jax.vmap(lambda s: simulate(net.F, s, u0, n_steps=relax_steps)[-1]))
    relaxed = np.asarray(run(jnp.asarray(x.reshape(-1, x.shape[-1]), jnp.float32)))
    return relaxed.reshape(x.shape).astype(np.float64), t_end + relax_steps


def coding_accuracy(values: np.ndarray, sums: np.ndarray, *, circular: bool) -> float:
    """Nearest-centroid accuracy of ``values`` ``(B,)`` (phases when ``circular``) at telling
    apart the running sums ``sums`` ``(B,)`` in {0, 1, 2} (centroids: each sum's mean, circular
    mean for phases). 1/3 is chance."""
    cents = []
    for s in range(3):
        v = values[sums == s]
        if v.size == 0:
            return 0.0
        cents.append(np.angle(np.mean(np.exp(1j * v))) if circular else np.mean(v))
    cents = np.asarray(cents)
    d = values[:, None] - cents[None, :]
    if circular:
        d = np.angle(np.exp(1j * d))
    return float(np.mean(np.argmin(np.abs(d), axis=1) == sums))


def _landing(relaxed: np.ndarray, stable_x: np.ndarray, sums: np.ndarray, radius: float):
    """Attractor each relaxed state sits on (``-1``: none within ``radius``) and, per stimulus
    ``k``, the fraction of trials whose attractor is the one its running sum lands on most
    (each attractor counted for one running sum; misses count against)."""
    B, K, n = relaxed.shape
    if len(stable_x) == 0:
        return np.full((B, K), -1), np.zeros(K)
    d = np.linalg.norm(relaxed[:, :, None, :] - stable_x[None, None], axis=-1)
    idx = np.where(d.min(-1) <= radius, d.argmin(-1), -1)
    purity = []
    for k in range(K):
        hit = 0
        for a in range(len(stable_x)):
            sel = idx[:, k] == a
            if sel.any():
                hit += np.bincount(sums[sel, k], minlength=3).max()
        purity.append(hit / B)
    return idx, np.asarray(purity)
