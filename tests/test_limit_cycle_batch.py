"""``find_limit_cycle_batch``: the limit cycles of many maps of one shape, settled in one program
and refined together, against analytic cycles and ``find_limit_cycle`` map by map."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_compiles

from ctrnn_dyn.attractors import find_limit_cycle, find_limit_cycle_batch


def _turn(params, x, u):
    """``x`` turned by ``theta`` and scaled radially by ``1 + g (1 − |x|²)``: for ``g > 0`` an
    attracting circle of radius 1 turned by ``theta`` per step (period ``2π/θ``, radial
    multiplier ``1 − 2g`` per step); for ``g < 0`` the origin attracts."""
    theta, g = params[0], params[1]
    c, s = jnp.cos(theta), jnp.sin(theta)
    y = jnp.stack([c * x[0] - s * x[1], s * x[0] + c * x[1]])
    return y * (1.0 + g * (1.0 - jnp.sum(x * x))) + 0.0 * u[0]


_CASES = [  # (theta, g, kind, period)
    (2 * np.pi / 20.37, 0.1, "invariant circle", 20.37),
    (2 * np.pi / 37.61, 0.05, "invariant circle", 37.61),
    (2 * np.pi / 5, 0.1, "periodic orbit", 5.0),  # every point of the circle returns exactly
    (2 * np.pi / 23.71, 0.1, "invariant circle", 23.71),
    (0.3, -0.1, "fixed point", np.nan),
]


def _maps():
    return [jax.tree_util.Partial(_turn, np.array([theta, g])) for theta, g, *_ in _CASES]


def test_batch_gives_the_analytic_cycles_and_the_one_by_one_answers():
    maps, x0, u = _maps(), np.array([0.5, 0.1]), np.zeros(1)
    with jax.enable_x64(True):
        batch = find_limit_cycle_batch(maps, x0, u, n_transient=600, n_search=300)
        single = [find_limit_cycle(F, x0, u, n_transient=600, n_search=300) for F in maps]
    for (_theta, g, kind, period), b, s in zip(_CASES, batch, single, strict=True):
        assert b.kind == s.kind == kind
        if kind == "fixed point":
            assert not b.converged
            continue
        assert b.converged and b.n_newton == s.n_newton
        np.testing.assert_allclose(b.x, s.x, rtol=0, atol=1e-12)
        np.testing.assert_allclose(b.floquet_multipliers, s.floquet_multipliers, atol=1e-10)
        # analytic: on the unit circle, period 2π/θ (an invariant circle is a closed orbit of
        # the cubic interpolation between steps: its point is off the circle by O(h⁴), 2e-4 at
        # 20 steps a turn, and its period good to ~1e-6; a periodic orbit is exact)
        exact = kind == "periodic orbit"
        np.testing.assert_allclose(np.linalg.norm(b.x), 1.0, atol=1e-12 if exact else 5e-4)
        np.testing.assert_allclose(b.period, period, rtol=1e-5)
        mu = np.sort(np.abs(b.floquet_multipliers))
        # radial multiplier (1 − 2g)^period; the other is 1 (along the circle); to the same
        # interpolation error for an invariant circle
        np.testing.assert_allclose(mu, sorted([(1 - 2 * g) ** period, 1.0]), rtol=0,
                                   atol=1e-12 if exact else 1e-4)
        assert b.orbit.shape == (int(np.ceil(b.period)) + 1, 2)


def test_a_second_batch_of_other_networks_compiles_nothing():
    maps, u = _maps(), np.zeros(1)
    x0 = np.array([[0.5, 0.1]] * len(maps))
    with jax.enable_x64(True):
        find_limit_cycle_batch(maps, x0, u, n_transient=600, n_search=300)
        others = [jax.tree_util.Partial(_turn, np.array([theta, g * 1.2]))
                  for theta, g, *_ in _CASES]
        with count_compiles() as compiles:
            again = find_limit_cycle_batch(others, x0 * 0.9, u, n_transient=600, n_search=300)
    assert compiles == []
    assert [c.kind for c in again] == [kind for *_, kind, _ in _CASES]


def test_bad_arguments_are_errors_that_name_them():
    maps, u = _maps()[:2], np.zeros(1)
    with pytest.raises(TypeError, match="unknown option"):
        find_limit_cycle_batch(maps, np.ones(2), u, n_steps=10)
    with pytest.raises(ValueError, match="x0"):
        find_limit_cycle_batch(maps, np.ones((3, 2)), u)
    with pytest.raises(ValueError, match=r"x0\[1\]"):
        find_limit_cycle_batch(maps, [np.ones(2), np.array([np.nan, 1.0])], u)
    with pytest.raises(ValueError, match="n_search"):
        find_limit_cycle_batch(maps, np.ones(2), u, n_search=2)
    with pytest.raises(ValueError, match="maps"):
        find_limit_cycle_batch([], np.ones(2), u)


def test_newton_stops_each_system_on_its_own_rule():
    """The shared Newton iteration on three linear systems ``r(z) = z − t`` (one step reaches
    ``t``): a regular one converges, a singular one steps by least squares (the minimum-norm
    step) and converges, and one whose step takes the period (``z[-1]``) past its own
    ``period_max`` stops there with an infinite residual."""
    from ctrnn_dyn.attractors._cycle_newton import newton

    t = np.array([[1.0, 3.0], [2.0, 2.0], [0.0, 9.0]])
    jac = np.stack([np.eye(2), np.diag([1.0, 0.0]), np.eye(2)])

    def system(z):
        return z - t, jac, np.zeros((3, 1, 1))

    z0 = np.array([[0.0, 2.0], [0.0, 2.0], [0.0, 2.0]])
    out = newton(system, z0, np.full(3, 1e-12), 10, period_max=np.array([4.0, 3.0, 8.0]))
    np.testing.assert_array_equal(out[0].z, [1.0, 3.0])
    np.testing.assert_array_equal(out[1].z, [2.0, 2.0])
    assert (out[0].n_newton, out[1].n_newton) == (2, 2)
    assert out[0].residual == out[1].residual == 0.0
    np.testing.assert_array_equal(out[2].z, [0.0, 9.0])
    assert out[2].residual == np.inf and out[2].n_newton == 1
