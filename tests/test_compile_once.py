"""Maps are pytrees: a second network of the same shapes, or a second call, compiles nothing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_compiles

from ctrnn_dyn import classify_dynamics, find_limit_cycle, lyapunov_spectrum
from ctrnn_dyn.dynamics import one_step_map, simulate
from ctrnn_dyn.model import CTRNNCell, rnn


def _networks(n_networks: int, hidden: int = 6):
    # alpha as a JAX scalar, as the seed writes it: the cell is then unhashable
    cell = CTRNNCell(hidden_features=hidden, output_features=1, alpha=jnp.float32(0.5),
                     noise_const=0.1)
    return [one_step_map(cell, rnn(cell).init(jax.random.PRNGKey(i), jnp.ones((1, 3, 2))))
            for i in range(n_networks)]


def _numpy_map(F, x, u):
    tree = F.params["params"]
    K = np.asarray(tree["recurrent_kernel"]["kernel"], np.float64)
    b = np.asarray(tree["recurrent_kernel"]["bias"], np.float64)
    K_in = np.asarray(tree["input_kernel"]["kernel"], np.float64)
    a = float(F.alpha)
    return (1 - a) * x + a * (np.tanh(x) @ K + b + u @ K_in)


def test_a_map_is_a_pytree_of_its_parameters_and_vmaps_over_stacked_networks():
    Fs = _networks(3)
    leaves = jax.tree_util.tree_leaves(Fs[0])
    assert len(leaves) == len(jax.tree_util.tree_leaves(Fs[0].params)) + 1  # + alpha
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *Fs)
    x0, u = np.full(6, 0.3), np.ones(2)
    with jax.enable_x64(True):
        batched = jax.vmap(lambda F: simulate(F, jnp.asarray(x0), jnp.asarray(u), n_steps=5))(
            stacked)
    for F, states in zip(Fs, np.asarray(batched), strict=True):
        x = x0
        for t in range(5):
            x = _numpy_map(F, x, u)
            np.testing.assert_allclose(states[t], x, rtol=1e-12, atol=1e-12)


def _rotation(theta, x, u):
    """A stable circle of radius 1 turned by ``theta`` per step (period ``2π/theta``)."""
    c, s = jnp.cos(theta), jnp.sin(theta)
    y = jnp.stack([c * x[0] - s * x[1], s * x[0] + c * x[1]])
    return y * (1.0 + 0.1 * (1.0 - jnp.sum(x * x)))


@pytest.mark.parametrize("analysis", ["classify_dynamics", "lyapunov_spectrum",
                                      "find_limit_cycle"])
def test_a_second_network_of_the_same_shapes_compiles_nothing(analysis):
    if analysis == "find_limit_cycle":  # cycles of periods 20.3, 23.7, 26.1 steps
        maps = [jax.tree_util.Partial(_rotation, jnp.asarray(2 * np.pi / T)) for T in
                (20.3, 23.7, 26.1)]
        x0 = jnp.asarray([0.5, 0.0])
    else:
        maps = _networks(3)
        x0 = jnp.full(6, 0.2)
    run = {
        "classify_dynamics": lambda F: classify_dynamics(F, jnp.stack([x0] * 3), inputs=jnp.ones(2),
                                                         n_transient=50, n_steps=100),
        "lyapunov_spectrum": lambda F: lyapunov_spectrum(F, x0, inputs=jnp.ones(2), n_transient=50,
                                                         n_steps=100),
        "find_limit_cycle": lambda F: find_limit_cycle(F, x0, inputs=jnp.zeros(1), n_transient=500,
                                                       n_search=200),
    }[analysis]
    first, second, third = maps
    with jax.enable_x64(True):
        with count_compiles() as compiles:
            result = run(first)
        assert compiles, "the first network compiles (the counter works)"
        with count_compiles() as compiles:
            results = [run(second), run(third), run(second)]
        assert compiles == []
    if analysis == "find_limit_cycle":
        periods = [r.period for r in (result, *results[:2])]
        # exact on the circle: 2π/θ; the period between steps comes from a cubic interpolation
        # of the orbit, good to about 1e-6 at 20 steps per turn
        np.testing.assert_allclose(periods, [20.3, 23.7, 26.1], rtol=1e-5)


def test_a_user_pytree_map_compiles_once_and_a_plain_function_still_works():
    """``jax.tree_util.Partial`` makes a user's map a pytree of its arrays."""

    def rnn_map(W, x, u):
        return jnp.tanh(x @ W + u[0])

    Ws = [0.9 * np.linalg.qr(np.random.default_rng(i).normal(size=(4, 4)))[0]
          for i in range(2)]
    with jax.enable_x64(True):
        results = []
        with count_compiles() as compiles:
            results.append(classify_dynamics(jax.tree_util.Partial(rnn_map, Ws[0]),
                                             jnp.full((2, 4), 0.1), inputs=jnp.zeros(1)))
        assert compiles
        with count_compiles() as compiles:
            results.append(classify_dynamics(jax.tree_util.Partial(rnn_map, Ws[1]),
                                             jnp.full((2, 4), 0.1), inputs=jnp.zeros(1)))
        assert compiles == []

        def plain(x, u):
            return rnn_map(Ws[0], x, u)

        results.append(classify_dynamics(plain, jnp.full((2, 4), 0.1), inputs=jnp.zeros(1)))
    # a contraction (spectral norm 0.9 < 1): every start settles on a fixed point
    assert all(set(r.labels) == {"fixed point"} for r in results)


def test_find_fixed_points_on_a_second_network_compiles_nothing():
    from ctrnn_dyn import find_fixed_points

    first, second, third = _networks(3, hidden=8)
    starts = np.random.default_rng(0).normal(size=(64, 8))
    with jax.enable_x64(True):
        with count_compiles() as compiles:
            found = [find_fixed_points(first, starts, np.ones(2))]
        assert compiles
        with count_compiles() as compiles:
            found += [find_fixed_points(F, starts, np.ones(2)) for F in (second, third, second)]
        assert compiles == []
    # each network's points are its own: F(x*) = x* under that network's NumPy map
    for F, fps in zip((first, second, third), found, strict=False):
        fixed = fps.fixed
        assert len(fixed) >= 1
        for x in np.asarray(fixed.x):
            np.testing.assert_allclose(_numpy_map(F, x, np.ones(2)), x, atol=1e-9)
