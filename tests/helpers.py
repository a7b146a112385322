"""Shared test utilities: tree comparison, compile counting, NumPy reference models, a NumPy
Newton solve."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import jax
import jax.monitoring
import numpy as np

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def assert_trees_allclose(actual, desired, *, rtol: float, atol: float = 0.0) -> None:
    """Assert two pytrees have the same structure and allclose leaves (tolerances stated)."""
    a_leaves, a_def = jax.tree_util.tree_flatten(actual)
    d_leaves, d_def = jax.tree_util.tree_flatten(desired)
    assert a_def == d_def, f"tree structures differ: {a_def} vs {d_def}"
    for a, d in zip(a_leaves, d_leaves, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(d), rtol=rtol, atol=atol)


@contextlib.contextmanager
def count_compiles() -> Iterator[list[str]]:
    """Record every XLA backend compilation that happens inside the block."""
    events: list[str] = []

    def listener(name: str, _duration: float, **_kwargs) -> None:
        if name == _COMPILE_EVENT:
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


NP_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": lambda v: np.maximum(v, 0.0),
    "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)),
}


def numpy_ctrnn_rollout(K_rec, b_rec, K_in, K_out, b_out, alpha, x0, inputs, f=np.tanh):
    """SCIENCE.md §1 by a plain loop (float64): returns states, outputs, rates ``(B, T, ·)``."""
    K_rec, b_rec, K_in, K_out, b_out = (
        np.asarray(a, np.float64) for a in (K_rec, b_rec, K_in, K_out, b_out)
    )
    alpha = np.asarray(alpha, np.float64)
    inputs = np.asarray(inputs, np.float64)
    batch, steps, _ = inputs.shape
    x = np.broadcast_to(np.asarray(x0, np.float64), (batch, K_rec.shape[0])).copy()
    states, outputs, rates = [], [], []
    for t in range(steps):
        for i in range(batch):
            drive = f(x[i]) @ K_rec + b_rec + inputs[i, t] @ K_in
            x[i] = (1.0 - alpha) * x[i] + alpha * drive
        r = f(x)
        states.append(x.copy())
        rates.append(r)
        outputs.append(r @ K_out + b_out)
    return tuple(np.stack(s, axis=1) for s in (states, outputs, rates))


def numpy_rate_rollout(K, b, tau, dt, h0, inputs):
    """SCIENCE.md §2 rate form by a plain loop (float64): states ``(B, T, n)``."""
    K, b = np.asarray(K, np.float64), np.asarray(b, np.float64)
    a = dt / np.asarray(tau, np.float64)
    inputs = np.asarray(inputs, np.float64)
    batch, steps, _ = inputs.shape
    h = np.broadcast_to(np.asarray(h0, np.float64), (batch, K.shape[0])).copy()
    out = np.zeros((batch, steps, K.shape[0]))
    for t in range(steps):
        for i in range(batch):
            z = h[i] @ K + b
            h[i] = (1.0 - a) * h[i] + a * (1.0 / (1.0 + np.exp(-z)) + inputs[i, t])
        out[:, t] = h
    return out


def noisy_train_grad_hlo() -> str:
    """StableHLO of the jitted gradient of the default loss for a small noisy ``CTRNNCell``
    (8 units, ``σ = 0.1``) on a 2-bit flip-flop batch: what the train step compiles."""
    from ctrnn_dyn.model import CTRNNCell
    from ctrnn_dyn.tasks import FlipFlop
    from ctrnn_dyn.train import init_params, loss_fn

    cell = CTRNNCell(hidden_features=8, output_features=2, alpha=0.2, noise_const=0.1)
    task = FlipFlop(n_bits=2, n_steps=5)
    params = init_params(cell, task, key=jax.random.key(0))
    batch = task.sample(jax.random.key(1), 3)
    grad = jax.jit(jax.grad(lambda p: loss_fn(p, cell, batch, key=jax.random.key(2))[0]))
    return grad.lower(params).as_text()


def newton_root(F_np: Callable[[np.ndarray], np.ndarray], J_np: Callable[[np.ndarray], np.ndarray],
                x: np.ndarray, near: float = 1e-6) -> np.ndarray | None:
    """Float64 Newton on ``r(x) = F_np(x) − x`` (``J_np``: the Jacobian of ``r``, ``∂F/∂x − I``)
    from ``x``: the root if it converges (``‖r‖ < 1e-13`` within 30 steps) within ``near`` of
    ``x``, else ``None`` (also where a step is singular or leaves the finite numbers)."""
    y = np.array(x, np.float64)
    for _ in range(30):
        r = F_np(y) - y
        if np.linalg.norm(r) < 1e-13:
            return y if np.linalg.norm(y - x) < near else None
        try:
            y = y - np.linalg.solve(J_np(y), r)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(y)):
            return None
    return None
