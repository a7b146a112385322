"""ctrnn_dyn.linear: Jacobians vs jacfwd / analytic / finite differences, eig vs NumPy, classes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctrnn_dyn import linear
from ctrnn_dyn.dynamics import one_step_map
from ctrnn_dyn.model import CTRNNCell, rnn


@pytest.fixture(scope="module")
def ctrnn():
    cell = CTRNNCell(hidden_features=5, output_features=2, alpha=0.3, noise_const=0.0)
    params = rnn(cell).init(jax.random.PRNGKey(3), jnp.ones((1, 2, 3)))
    return cell, params, one_step_map(cell, params)


def _np_params(params):
    tree = params["params"]["cell"] if "cell" in params["params"] else params["params"]
    K = np.asarray(tree["recurrent_kernel"]["kernel"], np.float64)
    K_in = np.asarray(tree["input_kernel"]["kernel"], np.float64)
    return K, K_in


def test_jacobian_matches_jacfwd_and_analytic_formula(ctrnn):
    _, params, F = ctrnn
    K, _ = _np_params(params)
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=5))
        u = jnp.asarray(rng.normal(size=3))
        J = linear.jacobian(F, x, u)
        J_fwd = jax.jacfwd(lambda v: F(v, u))(x)
        # SCIENCE.md §1: J = (1 − α) I + α K^T diag f'(x), by hand in NumPy.
        fprime = 1.0 - np.tanh(np.asarray(x)) ** 2
        J_np = 0.7 * np.eye(5) + 0.3 * K.T * fprime[None, :]
        np.testing.assert_allclose(np.asarray(J), np.asarray(J_fwd), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.asarray(J), J_np, rtol=1e-12, atol=1e-14)


def test_jacobian_of_plain_function_uses_autodiff_and_matches_finite_differences():
    A = np.array([[0.2, -1.0, 0.3], [0.5, 0.1, 0.0], [0.0, 0.4, -0.2]])

    def F(x, u):
        return jnp.sin(jnp.asarray(A) @ x) + u

    with jax.enable_x64(True):
        x = jnp.array([0.3, -0.2, 0.7])
        u = jnp.zeros(3)
        J = np.asarray(linear.jacobian(F, x, u))
        eps = 1e-6
        fd = np.stack(
            [
                (np.asarray(F(x + eps * e, u)) - np.asarray(F(x - eps * e, u))) / (2 * eps)
                for e in np.eye(3)
            ],
            axis=1,
        )
        np.testing.assert_allclose(J, fd, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(J, np.cos(A @ np.asarray(x))[:, None] * A, rtol=1e-12)


def test_jacobian_jit_and_vmap(ctrnn):
    _, _, F = ctrnn
    xs = jax.random.normal(jax.random.PRNGKey(0), (4, 5))
    us = jnp.zeros((4, 3))
    J = jax.jit(jax.vmap(lambda x, u: linear.jacobian(F, x, u)))(xs, us)
    J_fwd = jax.vmap(lambda x, u: jax.jacfwd(lambda v: F(v, u))(x))(xs, us)
    np.testing.assert_allclose(np.asarray(J), np.asarray(J_fwd), rtol=1e-5, atol=1e-6)


def test_input_jacobian_is_alpha_K_in_transposed(ctrnn):
    _, params, F = ctrnn
    _, K_in = _np_params(params)
    with jax.enable_x64(True):
        B = linear.input_jacobian(F, jnp.ones(5), jnp.array([0.1, -0.3, 2.0]))
        np.testing.assert_allclose(np.asarray(B), 0.3 * K_in.T, rtol=1e-12, atol=1e-15)


def test_eig_matches_numpy_sorted_with_left_and_right_vectors():
    rng = np.random.default_rng(1)
    J = rng.normal(size=(6, 6))
    with jax.enable_x64(True):
        dec = linear.eig(jnp.asarray(J))
        mu, R, L = (np.asarray(a) for a in dec)
    ref = np.linalg.eigvals(J)
    ref = ref[np.argsort(-np.abs(ref), kind="stable")]
    np.testing.assert_allclose(np.abs(mu), np.abs(ref), rtol=1e-12)
    assert np.all(np.diff(np.abs(mu)) <= 1e-12)
    # every NumPy eigenvalue appears (conjugate pairs share a modulus)
    for m in ref:
        assert np.min(np.abs(mu - m)) < 1e-10
    np.testing.assert_allclose(J @ R, R * mu[None, :], atol=1e-10)
    np.testing.assert_allclose(L.conj().T @ J, mu[:, None] * L.conj().T, atol=1e-10)
    np.testing.assert_allclose(L.conj().T @ R, np.eye(6), atol=1e-10)


def test_eig_batched_and_validation():
    J = np.stack([np.diag([0.5, 2.0]), np.array([[0.0, -1.0], [1.0, 0.0]])])
    dec = linear.eig(jnp.asarray(J), left=False)
    assert dec.eigvals.shape == (2, 2) and dec.left_eigvecs is None
    np.testing.assert_allclose(np.asarray(dec.eigvals[0]), [2.0, 0.5], rtol=1e-6)
    with pytest.raises(ValueError, match="J must have shape"):
        linear.eig(jnp.ones((2, 3)))


def test_continuous_eigvals():
    mu = np.array([0.9, 1.1 + 0.2j])
    np.testing.assert_allclose(
        np.asarray(linear.continuous_eigvals(mu, 0.2)), (mu - 1) / 0.2, rtol=1e-6
    )
    with pytest.raises(ValueError, match="alpha must be a scalar"):
        linear.continuous_eigvals(mu, np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="alpha must be > 0"):
        linear.continuous_eigvals(mu, 0.0)


def _rot(r: float, theta: float) -> np.ndarray:
    return r * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


CLASS_MATRICES = {
    "stable node": (np.diag([0.5, 0.8]), 0),
    "stable focus": (_rot(0.9, 0.4), 0),
    "saddle": (np.array([[1.3, 0.2], [0.0, 0.6]]), 1),
    "unstable node": (np.diag([1.2, 1.5]), 2),
    "unstable focus": (_rot(1.1, 0.3), 2),
    "marginal": (np.diag([1.0, 0.5]), 0),
}


@pytest.mark.parametrize("label", list(CLASS_MATRICES))
def test_classify_hand_made_2d_linearisations(label):
    A, n_unstable = CLASS_MATRICES[label]
    result = linear.classify(np.linalg.eigvals(A))
    assert result.label == label
    assert result.n_unstable == n_unstable


def test_classify_batched_and_validation():
    mus = np.stack([np.linalg.eigvals(A) for A, _ in CLASS_MATRICES.values()])
    result = linear.classify(mus)
    assert list(result.label) == list(CLASS_MATRICES)
    np.testing.assert_array_equal(result.n_unstable, [k for _, k in CLASS_MATRICES.values()])
    # a multiplier just outside the marginal band is no longer marginal
    assert linear.classify(np.array([1.002, 0.5]), marginal_tol=1e-3).label == "saddle"
    assert linear.classify(np.array([1.0005, 0.5]), marginal_tol=1e-3).label == "marginal"
    # a flip (negative real multiplier) is a node, not a focus
    assert linear.classify(np.array([-0.9, 0.1])).label == "stable node"
    assert set(linear.STABILITY_CLASSES) >= set(result.label)
    with pytest.raises(ValueError, match="eigvals must have shape"):
        linear.classify(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="marginal_tol"):
        linear.classify(np.ones(2), marginal_tol=-1.0)


def test_jacobian_rejects_batched_x(ctrnn):
    _, _, F = ctrnn
    with pytest.raises(ValueError, match="x must have shape"):
        linear.jacobian(F, jnp.ones((2, 5)))
