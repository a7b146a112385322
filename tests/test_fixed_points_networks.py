"""The finder's default answer on networks nobody designed for it, against a float64 scipy Newton.

Every case compares ``find_fixed_points`` (default options) with an independent multistart:
``scipy.optimize.root`` (MINPACK hybrd) on a NumPy implementation of the same map, from the same
starts. Each scipy root inside FixedPointFinder's outlier radius must be a fixed point of the
result, and no slow entry may sit on a fixed point. The cases are the ones on which the
finder used to stop converging starts at its iteration cap and list them as slow points, or to
converge elsewhere (truncated 5-iteration CG steps on ill-conditioned ``J − I``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from flax import linen as nn

from ctrnn_dyn.dynamics import one_step_map
from ctrnn_dyn.fixed_points import (
    STOP_REASONS,
    FixedPoints,
    continue_fixed_points,
    find_fixed_points,
    sample_initial_states,
)
from ctrnn_dyn.model import CTRNNCell
from ctrnn_dyn.systems import SWITCH

# --------------------------------------------------------------------------------------------
# ground truth: scipy hybrd on a NumPy map, from the same starts
# --------------------------------------------------------------------------------------------


def _scipy_roots(F_np, starts: np.ndarray, u: np.ndarray, scale: float = 10.0,
                 use_jac: bool = True) -> np.ndarray:
    """Distinct roots (``q < 1e-20``) of ``F_np(x, u) − x`` from every start, inside the outlier
    radius ``scale ·`` (the starts' mean distance to their centroid). ``F_np.jac(x, u)``, where
    present and ``use_jac``, is the NumPy Jacobian of ``F_np − I`` (else hybrd differences)."""
    jac = getattr(F_np, "jac", None) if use_jac else None
    centroid = starts.mean(0)
    radius = scale * np.linalg.norm(starts - centroid, axis=1).mean()
    roots: list[np.ndarray] = []
    for x0 in starts:
        sol = scipy.optimize.root(lambda x: F_np(x, u) - x, x0, method="hybr", tol=1e-14,
                                  jac=None if jac is None else (lambda x: jac(x, u)))
        r = F_np(sol.x, u) - sol.x
        if 0.5 * r @ r < 1e-20 and np.linalg.norm(sol.x - centroid) <= radius:
            if not any(np.linalg.norm(sol.x - y) < 1e-6 for y in roots):
                roots.append(sol.x)
    return np.asarray(roots).reshape(-1, starts.shape[1])


def _check_against_scipy(fps: FixedPoints, F_np, starts: np.ndarray, u: np.ndarray,
                         use_jac: bool = True) -> int:
    roots = _scipy_roots(F_np, starts, u, use_jac=use_jac)
    assert len(roots), "scipy found nothing: a broken test setup"
    fixed = fps.fixed
    for x in fixed.x:  # every fixed point is one for the independent NumPy map
        r = F_np(x, u) - x
        assert 0.5 * r @ r <= 1e-20
    for root in roots:
        assert len(fixed) and np.min(np.linalg.norm(fixed.x - root, axis=1)) < 1e-8, (
            "a fixed point scipy reaches from these starts is missing"
        )
    others = fps[~fps.converged]
    for x in others.x:  # no slow (or unfinished) entry on top of a fixed point
        assert np.min(np.linalg.norm(fixed.x - x, axis=1)) > 1e-3
    assert fps.stop_reason is not None and fps.n_starts is not None
    np.testing.assert_array_equal(fps.converged, fps.stop_reason == STOP_REASONS.index("converged"))
    return len(roots)


def _f32(a) -> np.ndarray:
    return np.asarray(a, np.float32).astype(np.float64)


def _ctrnn_pair(K, K_in, b, alpha):
    """A CT-RNN ``OneStepMap`` and an independent NumPy F (SCIENCE.md §1) of the same weights."""
    n = K.shape[0]
    cell = CTRNNCell(hidden_features=n, output_features=1, alpha=alpha, noise_const=0.0)
    params = {
        "params": {
            "recurrent_kernel": {"kernel": jnp.asarray(K), "bias": jnp.asarray(b)},
            "input_kernel": {"kernel": jnp.asarray(K_in)},
            "output_kernel": {"kernel": jnp.zeros((n, 1)), "bias": jnp.zeros(1)},
        }
    }

    return one_step_map(cell, params), _np_ctrnn(K, K_in, b, alpha)


def _np_ctrnn(K, K_in, b, alpha):
    """``F(x) = (1 − α) x + α (tanh(x) K + b + u K_in)`` and its ``J − I`` in NumPy."""
    K, K_in, b = (np.asarray(a, np.float64) for a in (K, K_in, b))

    def F_np(x, u):
        return (1.0 - alpha) * x + alpha * (np.tanh(x) @ K + b + u @ K_in)

    def jac(x, u):
        return -alpha * np.eye(x.size) + alpha * K.T * (1.0 - np.tanh(x) ** 2)[None, :]

    F_np.jac = jac
    return F_np


# --------------------------------------------------------------------------------------------
# the cases
# --------------------------------------------------------------------------------------------


def test_alpha_one_random_network_every_root_found():
    """α = 1, strong recurrence (gain 2), starts 2·N(0, 1) as the seed's sine-wave script draws
    them: with 5-iteration CG steps and no Newton finish the finder used to reach none of the
    five roots hybrd reaches. (Which root a start ends on depends on the method's path; on
    other draws of this recipe a start can end on a different root than hybrd's from it.)"""
    H = 32
    rng = np.random.default_rng(3)
    K = _f32(rng.normal(0.0, 2.0 / np.sqrt(H), (H, H)))
    b = _f32(rng.normal(0.0, 0.3, H))
    K_in = _f32(rng.normal(size=(1, H)))
    F, F_np = _ctrnn_pair(K, K_in, b, 1.0)
    starts = 2.0 * rng.normal(size=(64, H))
    u = np.array([0.2])
    fps = find_fixed_points(F, starts, u)
    n_roots = _check_against_scipy(fps, F_np, starts, u)
    assert _check_against_scipy(fps, F_np, starts, u, use_jac=False) == n_roots
    assert n_roots >= 5 and len(fps.fixed) >= n_roots
    assert int(fps.n_starts.sum()) <= len(starts)


def _np_gru(params):
    """Flax ``GRUCell`` in NumPy: r, z gates, candidate n with the reset applied to ``W_hn h``."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params["params"])

    def sig(v):
        return 1.0 / (1.0 + np.exp(-v))

    def F(h, u):
        r = sig(u @ p["ir"]["kernel"] + p["ir"]["bias"] + h @ p["hr"]["kernel"])
        z = sig(u @ p["iz"]["kernel"] + p["iz"]["bias"] + h @ p["hz"]["kernel"])
        n = np.tanh(u @ p["in"]["kernel"] + p["in"]["bias"]
                    + r * (h @ p["hn"]["kernel"] + p["hn"]["bias"]))
        return (1.0 - z) * n + z * h

    return F


def test_flax_gru_with_strong_recurrence():
    """GRUCell(16), recurrent kernels ×3, biases N(0, 0.5²): starts used to hit the iteration
    cap next to the fixed point and be listed as slow points on top of it."""
    d = 16
    cell = nn.GRUCell(features=d)
    carry = cell.initialize_carry(jax.random.PRNGKey(0), (1,))
    params = cell.init(jax.random.PRNGKey(0), carry, jnp.ones(1))
    rng = np.random.default_rng(0)

    def scale(path, a):
        name = jax.tree_util.keystr(path)
        a = np.asarray(a)
        if "bias" in name:
            return rng.normal(0.0, 0.5, a.shape).astype(a.dtype)
        return 3.0 * a if "'h" in name else a

    params = jax.tree_util.tree_map_with_path(scale, params)
    F, F_np = one_step_map(cell, params), _np_gru(params)
    starts = rng.normal(0.0, 0.5, (128, d))
    u = np.zeros(1)
    fps = find_fixed_points(F, starts, u)
    _check_against_scipy(fps, F_np, starts, u)
    # the independent map agrees with Flax's at a fixed point (the NumPy GRU is the same cell)
    with jax.enable_x64(True):
        x = fps.fixed.x[0]
        np.testing.assert_allclose(np.asarray(F(jnp.asarray(x), jnp.asarray(u))), F_np(x, u),
                                   rtol=1e-12, atol=1e-13)
    # starts drifting into the saturated-gate region are still moving: not slow points
    assert set(np.unique(fps.stop_reason)) <= {0, 1, 2}
    assert len(fps.slow) + len(fps.unfinished) + len(fps.fixed) == len(fps)


@pytest.fixture(scope="module")
def trained_flipflop():
    """A 32-unit CT-RNN trained briefly on the 3-bit flip-flop (α = 0.5, the CLI's defaults)."""
    from ctrnn_dyn.tasks import FlipFlop
    from ctrnn_dyn.train import train

    H = 32
    cell = CTRNNCell(hidden_features=H, output_features=3, alpha=0.5, noise_const=0.0)
    task = FlipFlop(n_bits=3, n_steps=100)
    res = train(cell, task, key=jax.random.PRNGKey(0), steps=300, batch_size=64,
                learning_rate=1e-2, progress=False)
    F = one_step_map(cell, res.params)
    batch = task.sample(jax.random.PRNGKey(1), 32)

    def roll(x0, us):
        return jax.lax.scan(lambda x, v: (F(x, v), F(x, v)), x0, us)[1]

    states = jax.jit(jax.vmap(roll))(jnp.zeros((32, H)), batch.inputs)
    starts = sample_initial_states(states, 256, noise_scale=0.5, key=jax.random.PRNGKey(2))
    return F, np.asarray(starts, np.float64)


def test_trained_flipflop_every_root_found(trained_flipflop):
    F, starts = trained_flipflop
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), F.params["params"])
    p = p.get("cell", p)
    K, b = p["recurrent_kernel"]["kernel"], p["recurrent_kernel"]["bias"]
    F_np = _np_ctrnn(K, p["input_kernel"]["kernel"], b, 0.5)
    u = np.zeros(3)
    fps = find_fixed_points(F, starts, u)
    n_roots = _check_against_scipy(fps, F_np, starts, u)
    assert len(fps.fixed) >= n_roots >= 3


# --------------------------------------------------------------------------------------------
# deduplication, stop reasons, options
# --------------------------------------------------------------------------------------------


def _greedy_reference(x, q, tol):
    """FixedPointFinder's greedy rule in plain NumPy (O(N²)): lowest q absorbs its tol-ball."""
    order = np.argsort(q, kind="stable")
    free = np.ones(len(x), bool)
    kept, sizes = [], []
    for j in order:
        if not free[j]:
            continue
        near = free & (np.linalg.norm(x - x[j], axis=1) <= tol)
        kept.append(j)
        sizes.append(int(near.sum()))
        free &= ~near
    return kept, sizes


def test_unique_merges_slow_entries_into_fixed_points_and_counts_starts():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(6, 3)) * 10.0
    n = 600
    which = rng.integers(0, 6, n)
    x = centres[which] + rng.normal(0.0, 1e-5, (n, 3))
    converged = which < 3  # centres 0-2 are fixed points ...
    converged[rng.random(n) < 0.2] = False  # ... reached by most starts; others stopped nearby
    q = np.where(converged, rng.uniform(0, 1e-21, n), rng.uniform(1e-12, 1e-6, n))
    fps = FixedPoints(x=x, u=np.zeros((n, 0)), q=q, converged=converged,
                      n_iters=np.zeros(n, int), x_init=x)
    u = fps.unique(1e-3)
    assert list(u.converged) == [True] * 3 + [False] * 3
    assert np.all(np.diff(u.q[:3]) >= 0) and np.all(np.diff(u.q[3:]) >= 0)
    for k in range(6):  # one entry per centre; a fixed point's count includes its slow entries
        i = np.flatnonzero(np.linalg.norm(u.x - centres[k], axis=1) < 1e-3)
        assert i.size == 1 and u.n_starts[i[0]] == np.sum(which == k)
    # the fixed group is FixedPointFinder's greedy rule
    kept, sizes = _greedy_reference(x[converged], q[converged], 1e-3)
    np.testing.assert_array_equal(u.x[:3], x[converged][kept])
    np.testing.assert_array_equal(np.sort(u.n_starts[:3] > 0), [True] * 3)
    assert sum(sizes) == converged.sum()
    assert "slow" not in u.summary().splitlines()[3 + 2]  # slow entries next to fixed: merged


def test_stop_reasons_recorded_and_shown():
    def F(x, u):  # no root: q has a local minimum 5e-7 at x = 0 (a slow point)
        return x - 0.1 * (x**2 + 0.01)

    fps = find_fixed_points(F, np.array([[0.3], [np.nan]]), tol_unique=None)
    assert list(fps.stop_labels) == ["slow point", "non-finite"]
    sw = find_fixed_points(SWITCH.map(), np.linspace(-0.5, 1.5, 21)[:, None], max_iters=1)
    # one LM iteration is not enough; the Newton finish completes every start
    assert len(sw) == 3 and sw.converged.all() and set(sw.stop_labels) == {"converged"}
    assert sw.n_starts.sum() == 21
    text = sw.summary()
    assert "from 21 starts" in text and "starts" in text.splitlines()[1]
    assert len(text.splitlines()) == 3 + 3


def test_compute_jacobians_false_alone_is_accepted():
    fps = find_fixed_points(SWITCH.map(), np.linspace(-0.5, 1.5, 5)[:, None],
                            compute_jacobians=False)
    assert fps.jacobians is None and fps.stability is None and len(fps.fixed) >= 2
    with pytest.raises(ValueError, match="decompose=True needs"):
        find_fixed_points(SWITCH.map(), np.ones((2, 1)), compute_jacobians=False, decompose=True)


def test_new_fields_round_trip_through_save_and_load(tmp_path):
    fps = find_fixed_points(SWITCH.map(), np.linspace(-0.5, 1.5, 21)[:, None])
    fps.save(tmp_path / "fps.npz")
    back = FixedPoints.load(tmp_path / "fps.npz")
    np.testing.assert_array_equal(back.n_starts, fps.n_starts)
    np.testing.assert_array_equal(back.stop_reason, fps.stop_reason)


# --------------------------------------------------------------------------------------------
# continuation
# --------------------------------------------------------------------------------------------


def _cubic(x, u):
    """F(x) = x + 0.1 (x − x³ + u): fixed points are the real roots of x³ − x − u."""
    return x + 0.1 * (x - x**3 + u)


def test_continuation_follows_a_branch_to_its_fold():
    path = np.linspace(0.0, 0.5, 11)[:, None]  # the fold of the lower branch is at u = 0.385
    start = find_fixed_points(_cubic, np.array([[-1.2]]), np.zeros(1))
    levels = continue_fixed_points(_cubic, start, path[1:])
    prev = start.fixed.x[0, 0]
    for u, level in zip(path[1:, 0], levels, strict=True):
        roots = np.roots([1.0, 0.0, -1.0, -u])
        real = np.sort(roots[np.abs(roots.imag) < 1e-9].real)
        if u < 2.0 / (3.0 * np.sqrt(3.0)):
            expect = real[np.argmin(np.abs(real - prev))]
            assert len(level.fixed) == 1
            np.testing.assert_allclose(level.fixed.x[0, 0], expect, atol=1e-10)
            prev = expect
        else:  # past the fold the branch is gone: a slow point or a jump to the other branch
            assert not np.any(np.abs(level.fixed.x[:, 0] - prev) < 0.05)
    with pytest.raises(ValueError, match="inputs_path"):
        continue_fixed_points(_cubic, start, np.zeros((0, 1)))


# --------------------------------------------------------------------------------------------
# larger reproductions
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_alpha_one_sine_wave_network_every_root_found():
    """A 64-unit α = 1 CT-RNN trained on the sine task (the seed's setting, shortened), 100
    starts 2·N(0, 1), at two input levels: every scipy root found."""
    from ctrnn_dyn.reproduce._common import train_network
    from ctrnn_dyn.tasks import SineWave

    H = 64
    task = SineWave(n_steps=50)
    net = train_network(task, hidden=H, alpha=1.0, noise=0.1, steps=300, learning_rate=0.005,
                        batch_size=32, key=jax.random.PRNGKey(0))
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), net.F.params["params"])
    p = p.get("cell", p)
    K, b = p["recurrent_kernel"]["kernel"], p["recurrent_kernel"]["bias"]
    F_np = _np_ctrnn(K, p["input_kernel"]["kernel"], b, 1.0)
    starts = 2.0 * np.random.default_rng(0).normal(size=(100, H))
    for omega in (0.3, 0.1):
        u = np.asarray(task.batch_for(jnp.asarray([omega])).inputs[0, 0], np.float64)
        fps = find_fixed_points(net.F, starts, u)
        _check_against_scipy(fps, F_np, starts, u)


def test_a_first_call_compiles_the_solver_once():
    """jaxopt's LM state changes dtype in its first update; the initial state is given the
    updated dtypes, so the solver's chunk program compiles once for a new shape, not once for
    the first round and again for the later ones (a small problem keeps one batch shape)."""
    from ctrnn_dyn.fixed_points import find as find_module
    from ctrnn_dyn.fixed_points.solvers import _run_chunk

    H = 7  # a width no other test uses: the programs are new
    rng = np.random.default_rng(11)
    K = _f32(rng.normal(0.0, 2.0 / np.sqrt(H), (H, H)))
    F, _ = _ctrnn_pair(K, _f32(rng.normal(size=(1, H))), _f32(rng.normal(0.0, 0.3, H)), 1.0)
    starts = 2.0 * rng.normal(size=(512, H))  # 512 starts: rounds of 5 iterations
    before = _run_chunk.compiled._cache_size()
    fps = find_module.find_fixed_points(F, starts, np.array([0.2]))
    assert int(np.max(fps.n_iters)) > 5  # more than one round ran through the program
    assert _run_chunk.compiled._cache_size() - before == 1


def test_the_coverage_run_is_skipped_where_every_start_reached_one_root(monkeypatch):
    from ctrnn_dyn.fixed_points import find as find_module

    calls = []  # the starts to solve again are chosen only where the first runs found roots
    real = find_module._ended_nearest
    monkeypatch.setattr(find_module, "_ended_nearest",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    starts = np.linspace(-0.5, 1.5, 21)[:, None]
    fps = find_module.find_fixed_points(SWITCH.map(), starts)  # three roots: it runs
    assert len(fps.fixed) == 3 and calls == [1]

    def contraction(x, u):  # one root, x* = 0.25
        return 0.5 * x + 0.125

    fps = find_module.find_fixed_points(contraction, starts)
    assert len(fps.fixed) == 1 and calls == [1]
    np.testing.assert_allclose(fps.fixed.x, [[0.25]], atol=1e-12)


def test_the_newton_finish_compiles_few_shapes_for_any_number_of_starts():
    """The Newton finish runs in blocks of 32 rows, or all rows at once where that is no more
    work: finishing 3 starts of 100 and then 45 (two blocks) compiles one program, 99 (one
    call of all 100 rows instead of four blocks) one more, and each start gets its own
    answer."""
    from ctrnn_dyn._checks import precision_context
    from ctrnn_dyn.fixed_points import find as find_module
    from ctrnn_dyn.fixed_points.newton import _newton_finish

    def F(x, u):  # roots at x = ±1 (per coordinate) and 0
        return x + 0.5 * (x - x**3)

    rng = np.random.default_rng(0)
    x = rng.uniform(0.8, 1.2, (100, 2))
    before = _newton_finish.compiled._cache_size()
    for k, compiled in ((3, 1), (45, 1), (99, 2)):
        xs, q = x.copy(), np.full(100, 1.0)
        cand = np.arange(k)
        with precision_context(np.float64):
            find_module._finish(F, xs, q, None, cand, 30, 1e-20)
        np.testing.assert_allclose(xs[:k], 1.0, atol=1e-12)
        np.testing.assert_array_equal(xs[k:], x[k:])  # rows not asked for are untouched
        assert _newton_finish.compiled._cache_size() - before == compiled
