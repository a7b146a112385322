"""``lyapunov_spectrum_batch``: many maps of one shape in one compiled program give the analytic
exponents of linear maps and what ``lyapunov_spectrum`` gives map by map; a second batch of other
networks compiles nothing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_compiles
from test_classify_batch import _maps

from ctrnn_dyn import _checks
from ctrnn_dyn.attractors import lyapunov_spectrum, lyapunov_spectrum_batch

OPTIONS = dict(n_steps=400, n_transient=100, n_blocks=4, n_exponents=3)


def _linear(A, x, u):
    return A @ x


def test_batch_exponents_are_the_log_moduli_of_linear_maps():
    """Independent truth: for F(x) = A x (A symmetric) the exponents per step are log |eig(A)|,
    descending."""
    rng = np.random.default_rng(3)
    spectra = np.array([[0.95, 0.6, 0.3], [1.2, 0.8, 0.1], [0.9, 0.5, 0.05], [1.1, 1.05, 0.2]])
    maps = []
    for lam in spectra:
        R, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        maps.append(jax.tree_util.Partial(_linear, jnp.asarray(R @ np.diag(lam) @ R.T)))
    got = lyapunov_spectrum_batch(maps, rng.normal(size=(4, 3)), n_steps=2000, n_transient=200,
                                  n_blocks=4, dt=0.5)
    for lam, spec in zip(spectra, got, strict=True):
        assert spec.exponents.shape == (3,)  # one start per map: unbatched results
        np.testing.assert_allclose(spec.exponents, np.log(lam) / 0.5, atol=4e-3)


def test_batch_equals_one_by_one():
    _, _, maps = _maps(5, 0)
    x0 = np.random.default_rng(0).normal(size=(5, 2, 6))
    u = np.array([0.3, -0.2])
    batch = lyapunov_spectrum_batch(maps, x0, u, **OPTIONS)
    for F, x, got in zip(maps, x0, batch, strict=True):
        want = lyapunov_spectrum(F, x, u, **OPTIONS)
        np.testing.assert_allclose(got.exponents, want.exponents, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.history, want.history, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.final_state, want.final_state, rtol=1e-9, atol=1e-12)
    assert np.ptp([b.exponents[:, 0].mean() for b in batch]) > 0.1  # the networks differ


def test_a_second_batch_of_other_networks_compiles_nothing():
    x0 = np.random.default_rng(1).normal(size=(4, 6))
    _, _, maps = _maps(4, 1)
    lyapunov_spectrum_batch(maps, x0, **OPTIONS)
    _, _, others = _maps(4, 2, gain=1.3)
    with count_compiles() as events:
        lyapunov_spectrum_batch(others, x0, **OPTIONS)
    assert events == []


def test_bad_arguments_are_named():
    _, _, maps = _maps(2, 4)
    x0 = np.ones((2, 6))
    with pytest.raises(ValueError, match="maps"):
        lyapunov_spectrum_batch([], x0, **OPTIONS)
    with pytest.raises(TypeError, match="n_steps"):
        lyapunov_spectrum_batch(maps, x0, n_transient=10)
    with pytest.raises(TypeError, match="n_step"):
        lyapunov_spectrum_batch(maps, x0, n_step=10)
    with pytest.raises(ValueError, match="x0"):
        lyapunov_spectrum_batch(maps, [x0[0]] * 3, **OPTIONS)
    with pytest.raises(ValueError, match="x0"):
        lyapunov_spectrum_batch(maps, [np.ones(6), np.ones((2, 6))], **OPTIONS)
    with pytest.raises(ValueError, match="n_exponents"):
        lyapunov_spectrum_batch(maps, x0, n_steps=10, n_exponents=7)


def test_gram_schmidt_is_the_thin_qr_of_lapack():
    from ctrnn_dyn.attractors.lyapunov import _orthonormalise

    a = np.random.default_rng(0).normal(size=(12, 4))
    a[:, 1] += 0.999 * a[:, 0]  # nearly parallel columns: what the second projection is for
    killed = a.copy()
    killed[:, 2] = 0.0  # a direction the map kills
    with _checks.precision_context(np.float64):
        Q, r = map(np.asarray, _orthonormalise(jnp.asarray(a.T)))
        Q0, r0 = map(np.asarray, _orthonormalise(jnp.asarray(killed.T)))
    Q, Q0 = Q.T, Q0.T  # rows -> columns
    Qn, Rn = np.linalg.qr(a)
    np.testing.assert_allclose(r, np.abs(np.diagonal(Rn)), rtol=1e-12)
    np.testing.assert_allclose(np.abs(Q), np.abs(Qn), atol=1e-12)
    np.testing.assert_allclose(Q.T @ Q, np.eye(4), atol=1e-15)
    # the killed column stays zero (|R_22| = 0: log -> -inf) and poisons nothing
    assert r0[2] == 0.0 and np.all(Q0[:, 2] == 0.0) and np.all(np.isfinite(Q0))
    np.testing.assert_allclose(Q0[:, [0, 1, 3]].T @ Q0[:, [0, 1, 3]], np.eye(3), atol=1e-15)


def test_leading_exponents_by_gram_schmidt_equal_those_by_householder():
    """k <= 8 exponents use Gram–Schmidt, more use LAPACK's QR: the leading columns of a QR
    depend only on the leading columns, so the runs' first 8 exponents must agree."""
    from ctrnn_dyn.attractors import lyapunov as L

    rng = np.random.default_rng(1)
    W = 3.0 / np.sqrt(10) * rng.normal(size=(10, 10))  # a chaotic tanh network

    def F(x, u=None):
        return jnp.tanh(x @ W)

    kw = dict(n_steps=2000, n_transient=200, n_blocks=10)
    assert L._GRAM_SCHMIDT_MAX_K == 8
    x0 = rng.normal(size=(3, 10))
    gs = lyapunov_spectrum(F, x0, n_exponents=8, **kw)
    hh = lyapunov_spectrum(F, x0, n_exponents=10, **kw)
    assert gs.exponents[:, 0].min() > 0.01  # chaotic: the basis is rotated hard every step
    np.testing.assert_allclose(gs.exponents, hh.exponents[:, :8], atol=1e-9)


@pytest.mark.parametrize(("n_transient", "n_steps", "n_blocks"), [(7, 33, 3), (10, 40, 4)])
def test_grouped_steps_give_the_exponents_of_one_qr_per_step(n_transient, n_steps, n_blocks):
    """The basis is re-orthonormalised every second step: a NumPy loop with one Householder QR
    per step (odd transients and blocks leave a single step at their ends) gives the same
    exponents and block sums."""
    rng = np.random.default_rng(5)
    W = 2.5 / np.sqrt(6) * rng.normal(size=(6, 6))
    x0 = rng.normal(size=6)

    def F(x, u=None):
        return jnp.tanh(x @ W)

    x, Q = x0.copy(), np.eye(6)[:, :3]
    block = n_steps // n_blocks
    sums = np.zeros((n_blocks, 3))
    for t in range(n_transient + block * n_blocks):
        J = (1.0 - np.tanh(x @ W) ** 2)[:, None] * W.T  # d tanh(x W) / dx
        Q, R = np.linalg.qr(J @ Q)
        x = np.tanh(x @ W)
        if t >= n_transient:
            sums[(t - n_transient) // block] += np.log(np.abs(np.diag(R)))
    expected = np.sort(sums.sum(0) / (block * n_blocks))[::-1]
    spec = lyapunov_spectrum(F, x0, n_steps=n_steps, n_transient=n_transient,
                             n_blocks=n_blocks, n_exponents=3)
    np.testing.assert_allclose(spec.exponents, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(spec.final_state, x, rtol=0, atol=1e-12)
