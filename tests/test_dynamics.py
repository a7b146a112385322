"""one_step_map / vector_field / simulate: parity with the cell, Jacobians, jit/vmap/grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from helpers import count_compiles, numpy_ctrnn_rollout

from ctrnn_dyn.dynamics import ctrnn_jacobian, one_step_map, simulate, vector_field
from ctrnn_dyn.model import CTRNNCell, RateCTRNNCell, rnn
from ctrnn_dyn.systems import CHAOS


def _net(key, n=5, m=2, p=1, alpha=0.2, **kw):
    cell = CTRNNCell(n, p, alpha=alpha, noise_const=0.5, **kw)
    params = rnn(cell).init(key, jnp.ones((1, 3, m)))
    return cell, params


def test_one_step_map_equals_one_cell_step_without_noise(key):
    cell, params = _net(key)
    F = one_step_map(cell, params)
    assert (F.state_size, F.input_size) == (5, 2)
    x = jax.random.normal(key, (5,))
    u = jnp.array([0.3, -1.0])
    quiet = cell.clone(noise_const=0.0)
    x_next, _ = quiet.apply({"params": params["params"]["cell"]}, x, u)
    np.testing.assert_array_equal(F(x, u), x_next)
    # Zero input is the default.
    np.testing.assert_array_equal(F(x), F(x, jnp.zeros(2)))


def test_one_step_map_rollout_equals_numpy(key):
    cell, params = _net(key, n=4, m=3, alpha=(0.1, 0.3, 0.5, 1.0))
    F = one_step_map(cell, params)
    inputs = jax.random.normal(key, (9, 3))
    states = simulate(F, jnp.ones(4), inputs)
    p = params["params"]["cell"]
    ref, _, _ = numpy_ctrnn_rollout(
        p["recurrent_kernel"]["kernel"],
        p["recurrent_kernel"]["bias"],
        p["input_kernel"]["kernel"],
        p["output_kernel"]["kernel"],
        p["output_kernel"]["bias"],
        np.array([0.1, 0.3, 0.5, 1.0]),
        np.ones(4),
        inputs[None],
    )
    np.testing.assert_allclose(states, ref[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw", [{}, {"excitatory_fraction": 0.8}, {"activation_fn": nn.sigmoid}])
def test_jacobian_analytic_equals_jacfwd_in_float64(key, kw):
    cell, params = _net(key, n=6, m=2, alpha=tuple(np.linspace(0.1, 0.9, 6)), **kw)
    with jax.enable_x64(True):
        F = one_step_map(cell, params)
        x = jax.random.normal(key, (6,), dtype=jnp.float64)
        u = jnp.array([0.5, -0.2], dtype=jnp.float64)
        J_auto = jax.jacfwd(F)(x, u)
        J_fast = F.jacobian(x, u)
        assert J_auto.dtype == jnp.float64
        np.testing.assert_allclose(J_fast, J_auto, rtol=0, atol=1e-12)
        # The SCIENCE.md §1 formula written out in NumPy.
        K = np.asarray(cell.recurrent_weights(params["params"]["cell"]), np.float64)
        a = np.linspace(0.1, 0.9, 6)
        fprime = np.asarray(jax.vmap(jax.grad(cell.activation_fn))(x))
        J_np = np.diag(1 - a) + a[:, None] * K.T * fprime[None, :]
        np.testing.assert_allclose(J_fast, J_np, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kw", [{}, {"excitatory_fraction": 0.8}, {"activation_fn": nn.sigmoid},
                                {"train_alpha": True}])
def test_gauss_newton_matrix_equals_the_product_of_jacfwd_jacobians(key, kw):
    """``gauss_newton`` (O(n²) per state from K A² Kᵀ) is (J − I)ᵀ(J − I) with J from jacfwd, at
    states and inputs it was not built for; other cells have none."""
    cell, params = _net(key, n=7, m=2, alpha=tuple(np.linspace(0.1, 0.9, 7)), **kw)
    with jax.enable_x64(True):
        F = one_step_map(cell, params)
        G = F.gauss_newton(jnp.float64)
        for i in range(3):
            x = 2.0 * jax.random.normal(jax.random.fold_in(key, i), (7,), dtype=jnp.float64)
            u = jnp.array([0.5 * i, -0.2], dtype=jnp.float64)
            R = np.asarray(jax.jacfwd(F)(x, u)) - np.eye(7)
            assert G(x, u).dtype == jnp.float64
            np.testing.assert_allclose(G(x, u), R.T @ R, rtol=0, atol=1e-12)
        gru = nn.GRUCell(features=3)
        gru_params = gru.init(key, jnp.zeros(3), jnp.zeros(2))
        assert one_step_map(gru, gru_params).gauss_newton(jnp.float64) is None
        assert CHAOS.map(jnp.float64).gauss_newton(jnp.float64) is None


def test_rate_cell_jacobian_and_vector_field():
    with jax.enable_x64(True):
        F = CHAOS.map(jnp.float64)
        x = jnp.array([0.2, 0.5, 0.9])
        np.testing.assert_allclose(F.jacobian(x), jax.jacfwd(F)(x), rtol=0, atol=1e-12)
        f = vector_field(CHAOS.cell(), CHAOS.params(jnp.float64))
        K, b, tau = (np.asarray(v, np.float64) for v in (CHAOS.K, CHAOS.b, CHAOS.tau))
        # tau_i dh_i/dt = -h + sigmoid(hK + b) + u  (units of each neuron's time constant)
        expected = -np.asarray(x) + 1 / (1 + np.exp(-(np.asarray(x) @ K + b)))
        np.testing.assert_allclose(f(x), expected, rtol=1e-12)
        assert tau[1] == 2.5


def test_vector_field_ctrnn_is_the_ode_right_hand_side(key):
    cell, params = _net(key, n=3, m=2, alpha=0.25)
    with jax.enable_x64(True):
        f = vector_field(cell, params)
        x = jnp.array([0.1, -0.4, 0.7])
        u = jnp.array([1.0, -1.0])
        p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params["params"]["cell"])
        expected = (
            -np.asarray(x)
            + np.tanh(x) @ p["recurrent_kernel"]["kernel"]
            + p["recurrent_kernel"]["bias"]
            + np.asarray(u) @ p["input_kernel"]["kernel"]
        )
        np.testing.assert_allclose(f(x, u), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("make", [lambda: nn.GRUCell(4), lambda: nn.LSTMCell(4)])
def test_gru_and_lstm_maps(key, make):
    cell = make()
    carry = cell.initialize_carry(key, (3,))
    params = cell.init(key, carry, jnp.ones(3))
    F = one_step_map(cell, params)
    flat_carry = jnp.concatenate([jnp.ravel(c) for c in jax.tree_util.tree_leaves(carry)])
    assert F.state_size == flat_carry.shape[0] and F.input_size == 3
    x = jax.random.normal(key, (F.state_size,))
    u = jnp.array([0.1, 0.2, 0.3])
    unflat = (x[:4], x[4:]) if isinstance(cell, nn.LSTMCell) else x
    new_carry, _ = cell.apply(params, unflat, u)
    np.testing.assert_allclose(
        F(x, u),
        jnp.concatenate([jnp.ravel(c) for c in jax.tree_util.tree_leaves(new_carry)]),
        rtol=1e-6,
    )
    assert F.jacobian(x, u).shape == (F.state_size, F.state_size)
    # nn.RNN-wrapped params are accepted too.
    wrapped = {"params": {"cell": params["params"]}}
    np.testing.assert_array_equal(one_step_map(cell, wrapped)(x, u), F(x, u))


def test_jit_vmap_over_parameter_sets_and_no_recompile(key):
    cell = CTRNNCell(4, 1, alpha=0.3, noise_const=0.0)
    keys = jax.random.split(key, 3)
    params = jax.vmap(lambda k: rnn(cell).init(k, jnp.ones((1, 2, 2))))(keys)

    @jax.jit
    def final_states(params, x0, inputs):
        return jax.vmap(lambda p: simulate(one_step_map(cell, p), x0, inputs)[-1])(params)

    x0, inputs = jnp.ones(4), jnp.ones((6, 2))
    batched = final_states(params, x0, inputs)
    for i in range(3):
        p_i = jax.tree_util.tree_map(lambda a, i=i: a[i], params)
        np.testing.assert_allclose(
            batched[i], simulate(one_step_map(cell, p_i), x0, inputs)[-1], rtol=1e-6
        )
    x0_new, inputs_new = x0 + 1.0, inputs * 2.0
    with count_compiles() as compiles:
        final_states(params, x0_new, inputs_new)
    assert compiles == []


def test_grad_through_rollout_matches_finite_differences(key):
    cell, params = _net(key, n=3, m=2)
    inputs = jax.random.normal(key, (8, 2))
    with jax.enable_x64(True):
        params64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)

        def loss(p):
            return jnp.sum(
                simulate(one_step_map(cell, p), jnp.ones(3, jnp.float64), inputs)[-1] ** 2
            )

        g = jax.grad(loss)(params64)["params"]["cell"]["recurrent_kernel"]["kernel"]
        eps = 1e-6
        for i, j in [(0, 0), (1, 2), (2, 1)]:

            def bump(p, s, i=i, j=j):
                k = p["params"]["cell"]["recurrent_kernel"]["kernel"]
                q = jax.tree_util.tree_map(lambda a: a, p)
                q["params"]["cell"]["recurrent_kernel"]["kernel"] = k.at[i, j].add(s)
                return q

            fd = (loss(bump(params64, eps)) - loss(bump(params64, -eps))) / (2 * eps)
            np.testing.assert_allclose(g[i, j], fd, rtol=1e-6, atol=1e-9)


def test_ctrnn_jacobian_linear_activation_is_the_linear_map():
    K = np.array([[0.5, 1.0], [-2.0, 0.3]])
    J = ctrnn_jacobian(jnp.asarray(K), 0.1, jnp.zeros(2), lambda v: v)
    np.testing.assert_allclose(J, 0.9 * np.eye(2) + 0.1 * K.T, rtol=1e-6)


def test_bad_inputs_to_maps(key):
    cell, params = _net(key)
    F = one_step_map(cell, params)
    with pytest.raises(ValueError, match="x must have shape"):
        F(jnp.ones((2, 5)))
    with pytest.raises(ValueError, match="u must have shape"):
        F(jnp.ones(5), jnp.ones(3))
    with pytest.raises(ValueError, match="x0"):
        simulate(F, jnp.ones((2, 5)), jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="n_steps"):
        simulate(F, jnp.ones(5), jnp.ones(2))
    with pytest.raises(ValueError, match="inputs"):
        simulate(F, jnp.ones(5), jnp.ones((1, 3, 2)))
    with pytest.raises(TypeError, match="params"):
        one_step_map(cell, [1, 2])
    with pytest.raises(TypeError, match="cell"):
        one_step_map(lambda x: x, params)
    rate = RateCTRNNCell(2, dt=0.1)
    assert one_step_map(rate, rnn(rate).init(key, jnp.ones((1, 2, 2)))).input_size == 2
