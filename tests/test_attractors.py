"""Limit cycles, Lyapunov spectra, line attractors and verdicts against independent references.

References: NumPy loops of the rate equation (SCIENCE.md §2), analytic fixed points and
multipliers (scipy's brentq), the logistic map's closed-form 2-cycle, linear maps' spectra.
"""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

from ctrnn_dyn import systems
from ctrnn_dyn.attractors import (
    LABELS,
    circle_rotation,
    classify_dynamics,
    find_limit_cycle,
    line_attractor,
    lyapunov_spectrum,
)


# ----------------------------------------------------------------------------- references
def np_rate_map(system):
    """NumPy F and its Jacobian for a rate circuit: h' = (1-a)h + a σ(hK + b)."""
    K, b = np.asarray(system.K), np.asarray(system.b)
    a = system.dt / np.asarray(system.tau)

    def sig(z):
        return 1.0 / (1.0 + np.exp(-z))

    def F(h):
        return (1 - a) * h + a * sig(h @ K + b)

    def J(h):
        s = sig(h @ K + b)
        return np.diag(1 - a) + (a * s * (1 - s))[:, None] * K.T

    return F, J


def np_settle(F, h, n):
    for _ in range(n):
        h = F(h)
    return h


def np_benettin(F, J, h, n_steps, dt, n_transient=0):
    """QR method; the tangent basis is evolved (not accumulated) during the transient."""
    Q, S = np.eye(h.size), np.zeros(h.size)
    for t in range(n_transient + n_steps):
        Q, R = np.linalg.qr(J(h) @ Q)
        if t >= n_transient:
            S += np.log(np.abs(np.diag(R)))
        h = F(h)
    return np.sort(S / (n_steps * dt))[::-1]


def f64_map(system):
    with jax.enable_x64(True):
        return system.map(jnp.float64)


# ----------------------------------------------------------------------------- limit cycles
@pytest.fixture(scope="module")
def oscillator_cycle():
    F = f64_map(systems.OSCILLATOR)
    return find_limit_cycle(F, np.zeros(2), dt=systems.OSCILLATOR.dt)


def test_oscillator_period_matches_numpy_poincare_average(oscillator_cycle):
    lc = oscillator_cycle
    assert lc.converged and lc.kind == "invariant circle"
    F, _ = np_rate_map(systems.OSCILLATOR)
    h = np_settle(F, np.array([0.0, 0.0]), 3000)
    H = np.empty((30000, 2))
    for t in range(H.shape[0]):
        H[t] = h
        h = F(h)
    s = H[:, 0] - 0.5  # section h0 = 0.5 (through the focus), upward crossings
    i = np.nonzero((s[:-1] < 0) & (s[1:] >= 0))[0]
    times = i + (-s[i]) / (s[i + 1] - s[i])
    period_np = (times[-1] - times[0]) / (times.size - 1)
    np.testing.assert_allclose(lc.period, period_np, rtol=1e-6)
    np.testing.assert_allclose(lc.period_time, period_np * systems.OSCILLATOR.dt, rtol=1e-6)
    assert 200 < lc.period < 400  # not an integer-period artefact
    # orbit closes: states after floor/ceil(period) straddle the start point
    assert lc.orbit.shape == (int(np.ceil(lc.period)) + 1, 2)
    gap = np.linalg.norm(lc.orbit[-1] - lc.orbit[0])
    assert gap < 2 * np.linalg.norm(lc.orbit[1] - lc.orbit[0])


def test_oscillator_floquet_multipliers_match_numpy(oscillator_cycle):
    lc = oscillator_cycle
    mu = lc.floquet_multipliers
    assert mu.shape == (2,)
    # one multiplier along the flow, = 1 up to the interpolation error
    assert abs(lc.trivial_multiplier - 1.0) < 1e-5
    assert abs(mu[0] - 1.0) < 1e-5
    assert abs(mu[1]) < 0.1 and lc.stable
    # Liouville: mu1 * mu2 = det(monodromy) = exp(period * <log|det DF|>) along the cycle
    F, J = np_rate_map(systems.OSCILLATOR)
    h = np_settle(F, np.array([0.0, 0.0]), 3000)
    logdet = 0.0
    n_avg = 20000
    for _ in range(n_avg):
        logdet += np.log(abs(np.linalg.det(J(h))))
        h = F(h)
    np.testing.assert_allclose(
        np.prod(mu).real, np.exp(lc.period * logdet / n_avg), rtol=1e-3
    )
    # transverse multiplier vs the NumPy QR Lyapunov exponent: mu2 = exp(lambda2 * T)
    lam = np_benettin(F, J, h, 10000, systems.OSCILLATOR.dt)
    np.testing.assert_allclose(abs(mu[1]), np.exp(lam[1] * lc.period_time), rtol=0.15)


def test_euler_hopf_invariant_circle_analytic():
    """Euler map of a Hopf normal form (+ a decaying third axis): everything is closed form.

    z' = z (1 + dt(mu - |z|^2) + i dt omega), w' = (1 - dt) w. The invariant circle has
    |c(r*)| = 1, rotation theta = arg c(r*) per step, so the period is 2 pi / theta steps
    (not an integer); radial perturbations shrink by g = 1 - 2 dt r*^2 (1 + dt(mu - r*^2))
    per step, so the Floquet multipliers are 1, g^P and (1 - dt)^P.
    """
    mu, om, dt = 1.0, 1.0, 0.05

    def F(x, u):
        fr, fi = 1 + dt * (mu - x[0] ** 2 - x[1] ** 2), dt * om
        return jnp.stack([fr * x[0] - fi * x[1], fi * x[0] + fr * x[1], (1 - dt) * x[2]])

    lc = find_limit_cycle(F, np.array([0.1, 0.0, 1.0]), dt=dt)
    r2 = mu + (1 - np.sqrt(1 - (dt * om) ** 2)) / dt
    c = 1 + dt * (mu - r2) + 1j * dt * om
    np.testing.assert_allclose(abs(c), 1.0, rtol=1e-14)
    period = 2 * np.pi / np.angle(c)
    g = 1 - 2 * dt * r2 * (1 + dt * (mu - r2))
    assert lc.converged and lc.kind == "invariant circle"
    np.testing.assert_allclose(lc.period, period, rtol=1e-7)
    np.testing.assert_allclose(lc.period_time, period * dt, rtol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(lc.x[:2]) ** 2, r2, rtol=1e-5)
    expected = np.sort([1.0, g**period, (1 - dt) ** period])[::-1]
    np.testing.assert_allclose(np.abs(lc.floquet_multipliers), expected, rtol=1e-4)
    assert lc.stable


def test_ctrnn_cell_oscillator_matches_numpy():
    """A tanh CTRNNCell (through one_step_map) with an unstable focus at 0 and a cycle."""
    from ctrnn_dyn.dynamics import one_step_map
    from ctrnn_dyn.model import CTRNNCell, rnn

    K = np.array([[1.5, 1.0], [-1.0, 1.5]])
    a = 0.1
    cell = CTRNNCell(hidden_features=2, output_features=1, alpha=a, noise_const=0.0)
    params = rnn(cell).init(jax.random.PRNGKey(0), jnp.ones((1, 4, 1)))
    params["params"]["cell"]["recurrent_kernel"]["kernel"] = jnp.asarray(K)
    with jax.enable_x64(True):
        F = one_step_map(cell, params)
    lc = find_limit_cycle(F, np.array([0.1, 0.0]), dt=a)

    h = np.array([0.1, 0.0])
    H = np.empty((20000, 2))
    for t in range(3000 + H.shape[0]):
        if t >= 3000:
            H[t - 3000] = h
        h = (1 - a) * h + a * (np.tanh(h) @ K)
    s = H[:, 0]
    i = np.nonzero((s[:-1] < 0) & (s[1:] >= 0))[0]
    times = i + (-s[i]) / (s[i + 1] - s[i])
    np.testing.assert_allclose(lc.period, (times[-1] - times[0]) / (times.size - 1), rtol=1e-6)
    assert abs(lc.trivial_multiplier - 1) < 1e-4 and lc.stable
    assert abs(lc.floquet_multipliers[1]) < 0.01


def test_discrete_periodic_orbit_logistic_two_cycle():
    r = 3.2

    def F(x, u):
        return r * x * (1 - x)

    lc = find_limit_cycle(F, np.array([0.3]), n_transient=500, n_search=50)
    assert lc.converged and lc.kind == "periodic orbit"
    assert lc.period == 2.0
    roots = np.sort((r + 1 + np.array([-1, 1]) * np.sqrt((r - 3) * (r + 1))) / (2 * r))
    np.testing.assert_allclose(np.sort(lc.orbit[:2, 0]), roots, rtol=1e-10)
    np.testing.assert_allclose(lc.floquet_multipliers[0].real, 4 + 2 * r - r**2, rtol=1e-8)
    assert lc.stable and np.isnan(lc.trivial_multiplier)


def test_limit_cycle_reports_fixed_point_and_divergence():
    F = f64_map(systems.SWITCH)
    lc = find_limit_cycle(F, np.array([0.2]), dt=0.01)
    assert not lc.converged and lc.kind == "fixed point" and np.isnan(lc.period)
    lc = find_limit_cycle(lambda x, u: 1.5 * x, np.ones(2), n_transient=2000, n_search=10)
    assert not lc.converged and lc.kind == "divergent"


# ----------------------------------------------------------------------------- Lyapunov
CHAOS_STARTS = np.asarray(systems.CHAOS.initial_states())


def test_chaos_exponents_match_numpy_benettin():
    """Same start, same steps: the JAX QR method equals a NumPy loop of the equation."""
    F = f64_map(systems.CHAOS)
    Fn, Jn = np_rate_map(systems.CHAOS)
    ly = lyapunov_spectrum(F, CHAOS_STARTS[1], n_steps=5000, n_transient=500, dt=0.1)
    ref = np_benettin(Fn, Jn, CHAOS_STARTS[1].copy(), 5000, 0.1, n_transient=500)
    np.testing.assert_allclose(ly.exponents, ref, rtol=1e-6, atol=1e-9)
    assert ly.history.shape == (20, 3) and ly.stderr.shape == (3,)
    np.testing.assert_allclose(ly.history[-1], ly.exponents)
    # sum of exponents = mean log|det DF| along the same orbit
    h = np_settle(Fn, CHAOS_STARTS[1].copy(), 500)
    logdet = 0.0
    for _ in range(5000):
        logdet += np.log(abs(np.linalg.det(Jn(h))))
        h = Fn(h)
    np.testing.assert_allclose(ly.total, logdet / (5000 * 0.1), rtol=1e-8)


def test_chaos_lyapunov_signature_stable_over_starts_and_lengths():
    F = f64_map(systems.CHAOS)
    largest, totals = [], []
    for n_steps in (50_000, 100_000):
        ly = lyapunov_spectrum(F, CHAOS_STARTS, n_steps=n_steps, dt=0.1, n_transient=2000)
        assert ly.exponents.shape == (3, 3)
        lam1, lam2, lam3 = ly.exponents.T
        assert np.all(lam1 > 3 * ly.stderr[:, 0]) and np.all(lam1 > 0.003)
        assert np.all(np.abs(lam2) < 0.2 * lam1)  # the zero exponent along the flow
        assert np.all(ly.total < -0.4)
        largest.extend(lam1)
        totals.extend(ly.total)
    largest, totals = np.asarray(largest), np.asarray(totals)
    np.testing.assert_allclose(totals, totals.mean(), rtol=0.02)
    # finite-time lambda_1 over 5e3-1e4 time units fluctuates by ~15% (measured at 1e6 steps)
    assert np.ptp(largest) < 0.6 * largest.mean()


@pytest.mark.slow
def test_chaos_lyapunov_long_runs_converge():
    F = f64_map(systems.CHAOS)
    ly = lyapunov_spectrum(F, CHAOS_STARTS, n_steps=1_000_000, dt=0.1, n_transient=5000)
    lam1 = ly.exponents[:, 0]
    assert np.all(lam1 > 10 * ly.stderr[:, 0])
    assert np.all(np.abs(ly.exponents[:, 1]) < 1e-4)
    assert np.ptp(lam1) < 0.3 * lam1.mean()


def test_switch_exponent_matches_analytic_fixed_point():
    sys_ = systems.SWITCH
    F = f64_map(sys_)
    ly = lyapunov_spectrum(
        F, np.array([[0.25], [0.75]]), n_steps=2000, n_transient=5000, dt=sys_.dt
    )
    assert np.all(ly.exponents < 0)

    def sig(z):
        return 1 / (1 + np.exp(-z))

    h_lo = brentq(lambda h: -h + sig(8 * h - 4), 0.0, 0.4)
    s = sig(8 * h_lo - 4)
    mu = 1 - sys_.dt + sys_.dt * 8 * s * (1 - s)
    np.testing.assert_allclose(ly.exponents[:, 0], np.log(mu) / sys_.dt, rtol=1e-6)


def test_stable_linear_map_exponents_are_log_moduli():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(4, 4))
    A *= 0.9 / np.max(np.abs(np.linalg.eigvals(A)))

    def F(x, u):
        return jnp.asarray(A, x.dtype) @ x

    ly = lyapunov_spectrum(F, np.ones(4), n_steps=4000, n_transient=0, dt=0.5)
    ref = np.sort(np.log(np.abs(np.linalg.eigvals(A))))[::-1] / 0.5
    assert np.all(ly.exponents < 0)
    np.testing.assert_allclose(ly.exponents, ref, atol=2e-3)
    assert ly.kaplan_yorke_dimension == 0.0


def test_float32_precision_option():
    A = np.array([[0.5, 0.2], [0.0, 0.8]])

    def F(x, u):
        return jnp.asarray(A, x.dtype) @ x

    ly32 = lyapunov_spectrum(F, np.ones(2), n_steps=500, n_transient=0, dtype=np.float32)
    ly64 = lyapunov_spectrum(F, np.ones(2), n_steps=500, n_transient=0)
    np.testing.assert_allclose(ly32.exponents, np.log([0.8, 0.5]), rtol=1e-4)
    np.testing.assert_allclose(ly64.exponents, np.log([0.8, 0.5]), rtol=1e-10)
    assert ly32.final_state.dtype == np.float32 and ly64.final_state.dtype == np.float64


# ----------------------------------------------------------------------------- line attractors
def _integrator(d=3, seed=0):
    rng = np.random.default_rng(seed)
    P = rng.normal(size=(d, d))
    A = P @ np.diag([1.0, 0.5, 0.2][:d]) @ np.linalg.inv(P)
    return A, P[:, 0] / np.linalg.norm(P[:, 0])


def test_linear_integrator_is_a_line_attractor():
    A, v = _integrator()
    s = np.linspace(-1.0, 1.0, 9)
    pts = s[:, None] * v[None]
    np.testing.assert_allclose(pts @ A.T, pts, atol=1e-12)  # every point is fixed

    def F(x, u):
        return jnp.asarray(A, x.dtype) @ x

    res = line_attractor(F, pts)
    assert res.is_line, res.reason
    assert abs(res.direction @ v) > 1 - 1e-12
    np.testing.assert_allclose(res.length, 2.0, rtol=1e-12)
    np.testing.assert_allclose(res.slow_eigvals, 0.0, atol=1e-10)
    np.testing.assert_allclose(res.alignment, 1.0, atol=1e-10)
    np.testing.assert_allclose(res.gap, 0.5, rtol=1e-8)  # next mode: mu = 0.5
    np.testing.assert_allclose(res.variance_ratio[0], 1.0)

    # the FixedPoints-like route (discrete eigvals/eigvecs) gives the same verdict
    mu, V = np.linalg.eig(A)
    fp = types.SimpleNamespace(
        x=pts, eigvals=np.repeat(mu[None], 9, 0), eigvecs=np.repeat(V[None], 9, 0),
        converged=np.ones(9, bool),
    )
    res2 = line_attractor(None, fp)
    assert res2.is_line and np.isclose(res2.length, 2.0)


def test_line_verdict_does_not_depend_on_point_density():
    """An exact line attractor (mu = 1 along e_1, 0.5 across) sampled by points that scatter
    1e-3 off the line (0.05% of its length), as slow points found to a tolerance do: the slow
    eigenvector is e_1 at every point, so the alignment is ~1 however densely it is sampled
    (with central differences of 2000 points the spacing, 1e-3, is below the scatter)."""
    d = 10
    J = np.diag([1.0] + [0.5] * (d - 1))

    def F(x, u):
        return jnp.asarray(J, x.dtype) @ x

    rng = np.random.default_rng(0)
    for n in (20, 200, 2000):
        pts = np.zeros((n, d))
        pts[:, 0] = np.linspace(-1.0, 1.0, n)
        pts[:, 1:] = 1e-3 * rng.standard_normal((n, d - 1))
        res = line_attractor(F, pts, alpha=1.0)
        assert res.is_line, (n, res.reason)
        assert np.median(res.alignment) > 0.95, n
        np.testing.assert_allclose(res.slow_eigvals, 0.0, atol=1e-12)


def test_isolated_fixed_points_are_not_a_line():
    sys_ = systems.SWITCH
    F = f64_map(sys_)

    def sig(z):
        return 1 / (1 + np.exp(-z))

    roots = [brentq(lambda h: -h + sig(8 * h - 4), a, b) for a, b in [(0, 0.4), (0.4, 0.6),
                                                                        (0.6, 1)]]
    res = line_attractor(F, np.asarray(roots)[:, None])  # alpha read from F: 0.01
    assert not res.is_line and "eigenvalue" in res.reason
    s = sig(8 * np.asarray(roots) - 4)
    np.testing.assert_allclose(res.slow_eigvals.real, -1 + 8 * s * (1 - s), rtol=1e-8)

    # three collinear isolated points of a 2-D map: collinear, but no slow mode
    def G(x, u):
        return x + 0.1 * jnp.stack([x[0] - x[0] ** 3, -x[1]])

    pts = np.array([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    res = line_attractor(G, pts, alpha=0.1)
    assert not res.is_line and res.variance_ratio[0] == pytest.approx(1.0)
    np.testing.assert_allclose(np.sort(np.abs(res.slow_eigvals)), [1.0, 1.0, 1.0], rtol=1e-10)


def test_line_attractor_skips_unconverged_and_validates():
    A, v = _integrator()
    pts = np.linspace(-1, 1, 5)[:, None] * v
    fp = types.SimpleNamespace(x=pts, jacobians=np.repeat(A[None], 5, 0),
                               converged=np.array([1, 1, 0, 1, 1], bool))
    assert line_attractor(None, fp).n_points == 4
    with pytest.raises(ValueError, match="fixed_points.x"):
        line_attractor(lambda x, u: x, np.ones(3))
    with pytest.raises(ValueError, match="needs Jacobians"):
        line_attractor(None, pts)
    with pytest.raises(TypeError, match="fixed_points"):
        line_attractor(None, object())


# ----------------------------------------------------------------------------- verdicts
def test_classify_switch_oscillator_chaos():
    sw = classify_dynamics(f64_map(systems.SWITCH), systems.SWITCH.initial_states(),
                           dt=systems.SWITCH.dt, n_steps=5000)
    assert sw.labels == ("fixed point",) * 5
    assert sw.lyapunov[2, 0] > 0.5  # start 0.5 sits on the unstable middle point
    assert np.all(sw.lyapunov[[0, 1, 3, 4], 0] < 0)

    osc = classify_dynamics(f64_map(systems.OSCILLATOR), systems.OSCILLATOR.initial_states(),
                            dt=systems.OSCILLATOR.dt, n_steps=20000)
    # start 0.5 is exactly the unstable focus (0.5, 0.5); every other start finds the cycle
    assert osc.labels == ("limit cycle", "limit cycle", "fixed point", "limit cycle",
                          "limit cycle")
    assert np.all(osc.lyapunov[2] > 0)  # the focus is unstable
    assert np.all(osc.n_zero[[0, 1, 3, 4]] == 1)

    ch = classify_dynamics(f64_map(systems.CHAOS), systems.CHAOS.initial_states(),
                           dt=systems.CHAOS.dt, n_steps=100_000)
    assert ch.labels == ("chaotic",) * 3
    assert np.all(ch.lyapunov[:, 0] > ch.zero_tol)
    assert [LABELS[c] for c in ch.codes] == list(ch.labels)


def test_classify_quasi_periodic_discrete_cycle_and_divergent():
    w1, w2 = 2 * np.pi * 0.1, 2 * np.pi * np.sqrt(2) / 10

    def torus(x, u):  # two attracting circles rotating at incommensurate rates
        def ring(p, w):
            r2 = p @ p
            c, s = jnp.cos(w), jnp.sin(w)
            p = p * (1 + 0.2 * (1 - r2))
            return jnp.stack([c * p[0] - s * p[1], s * p[0] + c * p[1]])

        return jnp.concatenate([ring(x[:2], w1), ring(x[2:], w2)])

    res = classify_dynamics(torus, np.array([[0.5, 0.0, 0.3, 0.1]]), n_steps=20000)
    assert res.labels == ("quasi-periodic",) and res.n_zero[0] == 2

    res = classify_dynamics(lambda x, u: 3.2 * x * (1 - x), np.array([[0.3]]), n_steps=2000)
    assert res.labels == ("limit cycle",) and res.period[0] == 2

    res = classify_dynamics(lambda x, u: 1.1 * x, np.ones((2, 2)), n_steps=2000)
    assert res.labels == ("divergent", "divergent")


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_name_the_argument():
    F = f64_map(systems.OSCILLATOR)
    with pytest.raises(ValueError, match="x0"):
        find_limit_cycle(F, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="x0.*non-finite"):
        find_limit_cycle(F, np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="dt"):
        find_limit_cycle(F, np.zeros(2), dt=0.0)
    with pytest.raises(TypeError, match="F must be a callable"):
        lyapunov_spectrum(None, np.zeros(2), n_steps=10)
    with pytest.raises(ValueError, match="n_steps"):
        lyapunov_spectrum(F, np.zeros(2), n_steps=0)
    with pytest.raises(ValueError, match="n_exponents"):
        lyapunov_spectrum(F, np.zeros(2), n_steps=10, n_exponents=3)
    with pytest.raises(ValueError, match="x0"):
        lyapunov_spectrum(F, np.zeros((1, 1, 2)), n_steps=10)
    with pytest.raises(ValueError, match="initial_states.*non-finite"):
        classify_dynamics(F, np.array([[np.inf, 0.0]]))
    with pytest.raises(ValueError, match="inputs must have shape"):
        classify_dynamics(F, np.zeros((1, 2)), inputs=np.zeros((2, 2)))
    with pytest.raises(TypeError, match="dtype"):
        lyapunov_spectrum(F, np.zeros(2), n_steps=10, dtype="float16")


def test_line_attractor_from_find_fixed_points(key):
    """End to end with the project's finder: a linear integrator's fixed points form a line."""
    fixed_points = pytest.importorskip("ctrnn_dyn.fixed_points")
    A, v = _integrator()

    def F(x, u):
        return jnp.asarray(A, x.dtype) @ x

    with jax.enable_x64(True):
        starts = jax.random.normal(key, (40, 3), jnp.float64)
    fps = fixed_points.find_fixed_points(F, starts, tol_unique=1e-2)
    assert len(fps) >= 3
    res = line_attractor(None, fps)
    assert res.is_line, res.reason
    assert abs(res.direction @ v) > 1 - 1e-8
    # the switch's three isolated fixed points, found by the same finder, are not a line
    Fs = f64_map(systems.SWITCH)
    sw = fixed_points.find_fixed_points(Fs, np.linspace(0, 1, 11)[:, None])
    assert len(sw.fixed) == 3
    assert not line_attractor(None, sw).is_line


def test_second_call_compiles_nothing():
    from helpers import count_compiles

    F = f64_map(systems.CHAOS)
    x0 = CHAOS_STARTS[:2]
    lyapunov_spectrum(F, x0, n_steps=200, n_transient=10, dt=0.1)
    with count_compiles() as events:
        lyapunov_spectrum(F, x0 + 0.01, n_steps=200, n_transient=10, dt=0.1)
    assert events == []


def test_docstring_examples_run():
    import doctest

    import ctrnn_dyn.attractors.classify
    import ctrnn_dyn.attractors.cycles
    import ctrnn_dyn.attractors.lines
    import ctrnn_dyn.attractors.lyapunov
    import ctrnn_dyn.pca

    for mod in (ctrnn_dyn.attractors.classify, ctrnn_dyn.attractors.cycles,
                ctrnn_dyn.attractors.lines, ctrnn_dyn.attractors.lyapunov, ctrnn_dyn.pca):
        result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0


def test_coarsely_sampled_circle_is_flagged_not_reported():
    """A discrete map rotating non-uniformly (~8 steps a turn): cubic interpolation between
    samples cannot represent its time-T map, so the multiplier along the flow misses 1 (by ~3%
    here) and the cycle must not be reported as converged or stable."""

    def F(x, u=None):
        r = jnp.sqrt(x[0] ** 2 + x[1] ** 2)
        a = jnp.arctan2(x[1], x[0])
        r2, a2 = r + 0.5 * (1.0 - r), a + 1.0 + 0.6 * jnp.sin(a)
        return jnp.stack([r2 * jnp.cos(a2), r2 * jnp.sin(a2)])

    lc = find_limit_cycle(F, jnp.array([0.3, 0.1]), jnp.zeros(0))
    assert lc.kind == "inaccurate circle" and not lc.converged and not lc.stable
    loose = find_limit_cycle(F, jnp.array([0.3, 0.1]), jnp.zeros(0), trivial_tol=1.0)
    assert loose.converged and abs(loose.trivial_multiplier - 1.0) > 1e-3


def test_circle_rotation_of_an_analytic_invariant_circle():
    """A map with an attracting unit circle turning 0.7 rad per step (radius relaxing as
    r <- r + 0.5 (1 - r)), embedded in 5-D by an orthogonal matrix: rotation 0.7, period
    2 pi / 0.7, whatever the embedding."""
    Q = np.linalg.qr(np.random.default_rng(0).standard_normal((5, 5)))[0]

    def F(x, u):
        z = jnp.asarray(Q).T @ x
        r, th = jnp.hypot(z[0], z[1]), jnp.arctan2(z[1], z[0])
        r, th = r + 0.5 * (1.0 - r), th + 0.7
        z = jnp.concatenate([jnp.stack([r * jnp.cos(th), r * jnp.sin(th)]), 0.3 * z[2:]])
        return jnp.asarray(Q) @ z

    x0 = Q @ np.array([1.0, 0.0, 0.0, 0.0, 0.0])
    rot = circle_rotation(F, x0, np.zeros(1), n_steps=2000)
    # first return: 9 steps turn 6.3 rad; the V-vertex refinement is exact for |sin| ~ linear
    assert rot.period_steps == pytest.approx(2 * np.pi / 0.7, rel=1e-3)
    assert rot.rotation_per_step == pytest.approx(0.7, rel=1e-3)
    assert rot.projected_turns == pytest.approx(1.0, rel=1e-3)
    assert rot.return_distance_ratio < 0.05

    # a fixed point has no return
    none = circle_rotation(lambda x, u: 0.5 * x, x0, np.zeros(1), n_steps=200)
    assert none.period_steps is None
    with pytest.raises(ValueError, match=r"x0 must have shape \(n,\)"):
        circle_rotation(F, np.zeros((2, 5)), np.zeros(1))
    with pytest.raises(ValueError, match="n_steps"):
        circle_rotation(F, x0, np.zeros(1), n_steps=0)
