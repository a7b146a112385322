"""The compiled Benettin kernel (a CT-RNN's state and tangent basis stepped as rows of one
product) against a NumPy loop of the equations with NumPy's Householder QR, and against the XLA
iteration; which path each result records."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctrnn_dyn import _checks, native
from ctrnn_dyn.attractors import (
    classify_dynamics,
    classify_dynamics_batch,
    lyapunov_spectrum,
    lyapunov_spectrum_batch,
)
from ctrnn_dyn.attractors._benettin import benettin
from ctrnn_dyn.attractors.lyapunov import _GRAM_SCHMIDT_MAX_K, tangent_path
from ctrnn_dyn.dynamics import one_step_map
from ctrnn_dyn.model import CTRNNCell, RateCTRNNCell

pytestmark = pytest.mark.usefixtures("native_kernels")

N, M = 13, 2  # 13 units: rows of one whole vector register and a partial one


def _network(seed: int, gain: float, act=jnp.tanh, alpha=None):
    """A CT-RNN map with per-neuron ``alpha`` (default) and a nonzero bias and input kernel."""
    rng = np.random.default_rng(seed)
    alpha = rng.uniform(0.2, 0.9, N) if alpha is None else alpha
    cell = CTRNNCell(hidden_features=N, output_features=1, alpha=alpha, noise_const=0.0,
                     activation_fn=act)
    params = cell.init(jax.random.key(seed), jnp.zeros(N), jnp.zeros(M))
    tree = params["params"]
    tree["recurrent_kernel"]["kernel"] = jnp.asarray(gain * rng.normal(size=(N, N)) / np.sqrt(N))
    tree["recurrent_kernel"]["bias"] = jnp.asarray(0.3 * rng.normal(size=N))
    tree["input_kernel"]["kernel"] = jnp.asarray(rng.normal(size=(M, N)))
    return one_step_map(cell, params), alpha


def _numpy_benettin(F, alpha, relu, x0, u, k, n_transient, n_blocks, block, per_qr, n_recur):
    """The iteration written out: ``x' = (1-α)x + α(f(x)K + b + uK_in)``, tangent columns
    ``V' = J V`` with ``J = diag(1-α) + diag(α) Kᵀ diag f'(x)``, NumPy's QR every ``per_qr``
    steps."""
    tree = jax.tree_util.tree_map(np.asarray, F.params)["params"]
    K, b = tree["recurrent_kernel"]["kernel"], tree["recurrent_kernel"]["bias"]
    drive = b + u @ tree["input_kernel"]["kernel"]
    f = (lambda z: np.maximum(z, 0.0)) if relu else np.tanh
    df = (lambda z: (z > 0).astype(float)) if relu else (lambda z: 1.0 - np.tanh(z) ** 2)
    x, V = x0.copy(), np.eye(N)[:, :k]
    sums, maxabs = np.zeros((n_blocks, k)), np.zeros(n_blocks)

    def run(steps, blk):
        nonlocal x, V
        left = steps
        while left:
            for _ in range(min(per_qr, left)):
                J = np.diag(1.0 - alpha) + alpha[:, None] * (K.T * df(x)[None, :])
                x, V = (1.0 - alpha) * x + alpha * (f(x) @ K + drive), J @ V
            V, R = np.linalg.qr(V)
            if blk >= 0:
                sums[blk] += np.log(np.abs(np.diag(R)))
            left -= min(per_qr, left)

    run(n_transient, -1)
    for blk in range(n_blocks):
        run(block, blk)
        maxabs[blk] = np.abs(x).max()
    orbit, y = [], x.copy()
    for _ in range(n_recur):
        y = (1.0 - alpha) * y + alpha * (f(y) @ K + drive)
        orbit.append(np.linalg.norm(y - x))
    return x, sums, maxabs, np.array(orbit)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("per_qr", [1, 3])
def test_the_kernel_runs_the_equations_of_a_numpy_loop(relu, per_qr):
    # contracting and oscillating gains (no chaos: the runs must not part by rounding)
    gain = 0.6 if relu else 1.6
    F, alpha = _network(int(relu), gain, act=jax.nn.relu if relu else jnp.tanh)
    x0 = np.random.default_rng(1).normal(size=(5, N))
    u = np.array([0.4, -0.3])
    kw = dict(n_transient=7, n_blocks=4, block=10, k=4)  # 10 steps: groups of 3 and a rest
    with _checks.precision_context(np.float64):
        out = jax.jit(lambda x, v: benettin(F, x, v, **kw, steps_per_qr=per_qr, serial=False,
                                            n_recur=6))(jnp.asarray(x0), jnp.asarray(u))
    out = [np.asarray(a) for a in out]
    for b in range(len(x0)):
        ref = _numpy_benettin(F, alpha, relu, x0[b], u, **kw, per_qr=per_qr, n_recur=6)
        np.testing.assert_allclose(out[0][b], ref[0], rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(out[1][b], ref[1], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(out[2][b], ref[2], rtol=1e-12)
        np.testing.assert_allclose(out[3][b], ref[3], rtol=1e-10, atol=1e-13)
    assert np.all(out[1][:, :, 0] != 0)  # the sums were written


def test_float32_runs_too():
    F, alpha = _network(2, 1.2)
    x0 = np.random.default_rng(2).normal(size=(3, N))
    kw = dict(n_transient=5, n_blocks=2, block=8, k=3)
    with _checks.precision_context(np.float32):
        out = benettin(F, jnp.asarray(x0, jnp.float32), None, **kw, steps_per_qr=2,
                       serial=False)
    assert all(a.dtype == jnp.float32 for a in out)
    ref = _numpy_benettin(F, alpha, False, x0[0], np.zeros(M), **kw, per_qr=2, n_recur=0)
    np.testing.assert_allclose(np.asarray(out[1])[0], ref[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("setting, message", [
    (dict(k=N + 1), "k must be in 1 .. n"),
    (dict(block=0), "n_blocks, block and steps_per_qr must be >= 1"),
    (dict(steps_per_qr=0), "n_blocks, block and steps_per_qr must be >= 1"),
    (dict(n_transient=-1), "n_transient and n_recur must be >= 0"),
])
def test_the_kernel_names_a_bad_setting(setting, message):
    F, _ = _network(0, 1.0)
    kw = {**dict(n_transient=2, n_blocks=2, block=3, k=2, steps_per_qr=1), **setting}
    with _checks.precision_context(np.float64), pytest.raises(Exception, match=message):
        jax.block_until_ready(benettin(F, jnp.zeros((2, N)), None, serial=False, **kw))


def test_the_calling_thread_and_the_pool_give_the_same_bits():
    maps = [_network(s, 1.4)[0] for s in range(3)]
    params = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[F.params for F in maps])
    cell = maps[0].cell
    x0 = jnp.asarray(np.random.default_rng(3).normal(size=(3, 4, N)))
    kw = dict(n_transient=5, n_blocks=3, block=6, k=2, steps_per_qr=2, n_recur=4)

    def run(serial):
        with _checks.precision_context(np.float64):
            return jax.jit(jax.vmap(lambda p, x: benettin(one_step_map(cell, p), x, None, **kw,
                                                          serial=serial)))(params, x0)

    for a, b in zip(run(True), run(False), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_path_needs_a_ct_rnn_map_few_exponents_and_the_kernels():
    F, _ = _network(0, 1.0)
    assert tangent_path(F, 4) == f"kernels:{native.kernel_key()}"
    assert tangent_path(F, _GRAM_SCHMIDT_MAX_K + 1) == "xla"
    assert tangent_path(lambda x, u: F(x, u), 4) == "xla"  # a plain function: XLA's steps
    rate = RateCTRNNCell(hidden_features=N, tau=2.0, dt=1.0)
    G = one_step_map(rate, rate.init(jax.random.key(0), jnp.zeros(N), jnp.zeros(N)))
    assert tangent_path(G, 4) == "xla"
    soft = one_step_map(F.cell.clone(activation_fn=jax.nn.softplus, parent=None), F.params)
    assert tangent_path(soft, 4) == "xla"
    with native.suspended():
        assert tangent_path(F, 4) == "xla"


def test_spectra_and_classifications_on_the_kernel_equal_xla_and_say_which_path_ran():
    maps = [_network(s, g)[0] for s, g in enumerate((0.5, 1.5, 2.5))]
    starts = np.random.default_rng(4).normal(size=(3, 2, N))
    u = np.array([0.2, 0.1])
    key = f"kernels:{native.kernel_key()}"
    on = lyapunov_spectrum(maps[1], starts[1], u, n_steps=300, n_transient=40, n_exponents=4)
    # a plain function is stepped by XLA, its basis re-orthonormalised by the Gram-Schmidt kernel
    plain = lyapunov_spectrum(lambda x, v: maps[1](x, v), starts[1], u, n_steps=300,
                              n_transient=40, n_exponents=4)
    with native.suspended():
        off = lyapunov_spectrum(maps[1], starts[1], u, n_steps=300, n_transient=40,
                                n_exponents=4)
    assert (on.tangent_path, on.qr_path) == (key, key)
    assert (plain.tangent_path, plain.qr_path) == ("xla", key)
    assert (off.tangent_path, off.qr_path) == ("xla", "xla")
    for other in (plain, off):
        np.testing.assert_allclose(on.exponents, other.exponents, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(on.final_state, other.final_state, atol=1e-12)
    batch = lyapunov_spectrum_batch(maps, starts, u, n_steps=300, n_transient=40,
                                    n_exponents=4, devices=None)
    assert batch[1].tangent_path == key
    np.testing.assert_allclose(batch[1].exponents, on.exponents, rtol=1e-9, atol=1e-12)

    kw = dict(n_transient=100, n_steps=800, n_exponents=3, n_recur=50)
    got = classify_dynamics_batch(maps, starts, u, devices=None, **kw)
    with native.suspended():
        ref = [classify_dynamics(F, s, u, **kw) for F, s in zip(maps, starts, strict=True)]
    for a, b in zip(got, ref, strict=True):
        assert (a.tangent_path, b.tangent_path) == (key, "xla")
        assert a.labels == b.labels
        np.testing.assert_allclose(a.lyapunov, b.lyapunov, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(a.speed, b.speed, rtol=1e-8, atol=1e-14)
        np.testing.assert_array_equal(a.period, b.period)
