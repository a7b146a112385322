"""The fast path's hand-written VJP against JAX's derivative of a plain loop of the equation."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from ctrnn_dyn import fast_path, native
from ctrnn_dyn.fast_path import SMALL_WIDTH, _layer, fast_forward, supports_fast_path
from ctrnn_dyn.model import CTRNNCell, RateCTRNNCell
from ctrnn_dyn.tasks import FlipFlop
from ctrnn_dyn.train import init_params, loss_fn


def _reference_layer(K, K_in, b, K_out, b_out, x0, u, E0, alpha, act):
    """``(Y, R)`` with rows t = 0..T, by a plain ``lax.scan`` of the equation (JAX autodiff)."""
    E = jnp.einsum("tbm,mn->tbn", u, K_in) + b + (0.0 if E0 is None else E0)

    def step(x, e):
        x = (1.0 - alpha) * x + alpha * (act(x) @ K + e)
        return x, x

    _, xs = jax.lax.scan(step, x0, E)
    R = act(jnp.concatenate([x0[None], xs], axis=0))
    return R @ K_out + b_out, R


def _draw(T, B, m, n, p, per_neuron, noise):
    ks = iter(jax.random.split(jax.random.key(7), 12))
    nrm = lambda *s: jax.random.normal(next(ks), s, jnp.float64)  # noqa: E731
    alpha = jnp.linspace(0.1, 0.9, n) if per_neuron else jnp.asarray(0.35)
    return dict(
        K=nrm(n, n) / np.sqrt(n) * 1.5, K_in=nrm(m, n), b=0.1 * nrm(n), K_out=nrm(n, p),
        b_out=nrm(p), x0=nrm(B, n), u=nrm(T, B, m), E0=0.3 * nrm(T, B, n) if noise else None,
        alpha=alpha.astype(jnp.float64),
    ), (nrm(T + 1, B, p), nrm(T + 1, B, n))


@pytest.mark.parametrize(
    "act,loops",
    [(jnp.tanh, "native"), (nn.relu, "native"), (jnp.tanh, "xla"), (nn.relu, "xla"),
     (nn.softplus, "xla")],
    ids=["tanh-native", "relu-native", "tanh-xla", "relu-xla", "softplus-xla"],
)
@pytest.mark.parametrize(
    "T,m,per_neuron,noise",
    [(1, 2, False, False), (2, 3, True, True), (9, 3, False, True),
     (9, SMALL_WIDTH + 3, True, False)],
    ids=["T1", "T2_per_neuron_noise", "T9_noise", "T9_wide_inputs_per_neuron"],
)
def test_vjp_equals_autodiff_of_a_plain_loop(act, T, m, per_neuron, noise, loops, monkeypatch):
    """Every cotangent (weights, biases, x0, inputs, noise) for random cotangents of both the
    outputs and the rates, in float64, with the recurrences run by the compiled kernels
    (tanh and relu only) and by XLA loops."""
    if loops == "native" and not native.prepare():
        pytest.skip(f"native kernels unavailable: {native.status()}")
    if loops == "xla":
        monkeypatch.setattr(fast_path, "_use_native", lambda code: False)
    with jax.enable_x64(True):
        args, (gY, gR) = _draw(T, 4, m, 6, 2, per_neuron, noise)
        names = [k for k in args if k != "alpha" and args[k] is not None]

        def run(fn):
            def f(*diff):
                kw = dict(args, **dict(zip(names, diff, strict=True)))
                return fn(**kw, act=act)

            out, vjp = jax.vjp(f, *[args[k] for k in names])
            return out, vjp((gY, gR))

        (Y, R), grads = run(_layer)
        (Y_ref, R_ref), grads_ref = run(_reference_layer)
        np.testing.assert_allclose(Y, Y_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(R, R_ref, rtol=1e-12, atol=1e-12)
        for name, g, g_ref in zip(names, grads, grads_ref, strict=True):
            np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-10, err_msg=name)


def test_default_forward_pass_is_the_fast_path_where_supported(monkeypatch):
    import ctrnn_dyn.train.loss as loss_module

    calls = []

    def spy(*args, **kwargs):
        calls.append(args[0])
        return fast_forward(*args, **kwargs)

    monkeypatch.setattr(loss_module, "fast_forward", spy)
    task = FlipFlop(n_bits=2, n_steps=8, p_pulse=0.3)
    batch = task.sample(jax.random.key(1), 3)
    fixed = CTRNNCell(hidden_features=5, output_features=2, alpha=0.3, noise_const=0.0)
    trained = CTRNNCell(hidden_features=5, output_features=2, alpha=0.3, noise_const=0.0,
                        train_alpha=True)
    rate = RateCTRNNCell(hidden_features=5, dt=0.1, tau=1.0)
    assert supports_fast_path(fixed) and not supports_fast_path(trained)
    assert not supports_fast_path(rate)
    for cell, used in [(fixed, [fixed]), (trained, [])]:
        calls.clear()
        loss_fn(init_params(cell, task, key=jax.random.key(0)), cell, batch, key=None)
        assert calls == used
    with pytest.raises(ValueError, match="fast=True needs a CTRNNCell"):
        loss_fn(init_params(trained, task, key=jax.random.key(0)), trained, batch, key=None,
                fast=True)


def test_fast_forward_rejects_bad_shapes():
    cell = CTRNNCell(hidden_features=5, output_features=2, alpha=0.3, noise_const=0.1)
    task = FlipFlop(n_bits=2, n_steps=8, p_pulse=0.3)
    params = init_params(cell, task, key=jax.random.key(0))
    u = jnp.zeros((3, 8, 2))
    with pytest.raises(ValueError, match=r"noise must have shape \(T, B, n\) = \(8, 3, 5\)"):
        fast_forward(cell, params, u, noise=jnp.zeros((3, 8, 5)))
    with pytest.raises(ValueError, match=r"inputs must have shape \(B, T, m\)"):
        fast_forward(cell, params, u[0])
    with pytest.raises(ValueError, match="inputs have width 4 but the params expect 2"):
        fast_forward(cell, params, jnp.zeros((3, 8, 4)))


SAMPLER_IN_STEP = """
import jax
from ctrnn_dyn.model import CTRNNCell
from ctrnn_dyn.tasks import PerceptualDecision
from ctrnn_dyn.train import train
cell = CTRNNCell(hidden_features=16, output_features=1, alpha=0.5, noise_const=0.0)
task = PerceptualDecision(n_steps=20, stim_start=2, stim_steps=10, response_steps=4,
                          coherences=(0.3, 0.6), noise_std=0.3)
train(cell, task, key=jax.random.key(0), steps=3, batch_size=32, loss="cross_entropy",
      progress=False)
"""


@pytest.mark.parametrize("kernels", ["1", "0"], ids=["native", "xla"])
def test_a_step_that_samples_its_batch_compiles_in_bounded_time(kernels):
    """A regression: with x_0 concatenated onto the fused batch sampler's output, LLVM's
    vectoriser never finished compiling this step (a subprocess, so a hang fails, not stalls)."""
    env = {**os.environ, native.ENV_SWITCH: kernels}
    out = subprocess.run([sys.executable, "-c", SAMPLER_IN_STEP], env=env, capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr
