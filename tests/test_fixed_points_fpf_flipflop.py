"""FixedPointFinder's own 3-bit flip-flop example, trained by its script (a 16-unit tanh
``torch.nn.RNN``, two of the four seeds tried), from the 1024 starts its ``sample_states`` drew:
the default finder finds all 27 fixed points the real FixedPointFinder finds there.

``tests/data/fpf_flipflop16.npz`` holds the trained weights (``W_hh``, ``W_ih``, ``b`` =
``b_ih + b_hh``) and the starts (made by ``benchmarks/fpf_real.py``). The map is written here
in JAX, ``F(h, u) = tanh(W_hh h + W_ih u + b)``; ground truth is a float64 NumPy Newton on the
same equation from every point either finder reports, and scipy's hybrd from every start.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from helpers import newton_root

from ctrnn_dyn import native
from ctrnn_dyn.fixed_points import find_fixed_points
from ctrnn_dyn.fixed_points.native_lm import PATH_SUFFIX
from ctrnn_dyn.interop import TorchMap

DATA = Path(__file__).with_name("data") / "fpf_flipflop16.npz"


def _network(seed: int, torch_map: bool = False):
    """``torch_map``: the map as ``from_torch`` gives it for the ``nn.RNN`` (a
    :class:`~ctrnn_dyn.interop.TorchMap`, whose solver runs on the compiled kernel of
    :mod:`ctrnn_dyn.fixed_points.native_lm` where the kernels are built), else written in JAX."""
    data = np.load(DATA)
    W, W_in, b = (data[f"s{seed}/{k}"].astype(np.float64) for k in ("W_hh", "W_ih", "b"))

    def F(h, u):
        return jnp.tanh(h @ jnp.asarray(W.T) + u @ jnp.asarray(W_in.T) + jnp.asarray(b))

    if torch_map:
        F = TorchMap("rnn_tanh", ((W_in, W, b, np.zeros_like(b)),), W.shape[0], W_in.shape[1], 1)

    def F_np(h):
        return np.tanh(W @ h + b)

    def J_np(h):
        return (1.0 - np.tanh(W @ h + b) ** 2)[:, None] * W - np.eye(h.size)

    return F, F_np, J_np, data[f"s{seed}/starts"]


@pytest.mark.parametrize(("seed", "linear_solver", "torch_map"),
                         [(1, "auto", False), (3, "auto", False), (3, "cg", False),
                          (1, "auto", True), (3, "auto", True)])
def test_default_finds_all_27_fixed_points(seed, linear_solver, torch_map):
    """The default (``"auto"``: exact LM steps at 16 units) and the matrix-free CG steps; the
    map written in JAX, and as ``from_torch`` gives it (the whole run on the compiled kernel)."""
    F, F_np, J_np, starts = _network(seed, torch_map)
    fps = find_fixed_points(F, starts, np.zeros(3), linear_solver=linear_solver)
    if torch_map and native.prepare():
        assert fps.solver_path.endswith(PATH_SUFFIX)
    fixed = fps.fixed
    for x in fixed.x:  # each is a root of the independent NumPy map, to float64 rounding
        assert newton_root(F_np, J_np, x) is not None
    # the 3-bit flip-flop's full set: 8 memories, 12 + 6 saddles, 1 centre (FixedPointFinder
    # finds exactly these 27 from these starts)
    assert len(fixed) == 27
    np.testing.assert_array_equal(np.bincount(fixed.n_unstable, minlength=4)[:4], [8, 12, 6, 1])
    for x0 in starts[::8]:  # every root scipy's hybrd reaches from (an eighth of) the starts
        sol = scipy.optimize.root(lambda x: F_np(x) - x, x0, jac=J_np, method="hybr", tol=1e-14)
        if np.linalg.norm(F_np(sol.x) - sol.x) < 1e-10:
            assert np.min(np.linalg.norm(fixed.x - sol.x, axis=1)) < 1e-8


def test_undamped_first_steps_miss_saddles_that_damped_ones_find():
    """The cause the coverage run addresses: from these starts Levenberg–Marquardt's nearly
    undamped first steps (the default first run) leave the small basins of saddles (they
    converge to other roots); damped first steps (``1e-2``, the coverage run's) find all 27."""
    F, _, _, starts = _network(3)
    undamped = find_fixed_points(F, starts, np.zeros(3), coverage_damping=None)
    assert len(undamped.fixed) < 27
    damped = find_fixed_points(F, starts, np.zeros(3), damping=1e-2, coverage_damping=None)
    assert len(damped.fixed) == 27


def test_retiring_into_smaller_batches_changes_no_answer(monkeypatch):
    """Above a problem size finished starts are retired into smaller batches (the solver state
    gathered into 1024 -> 32 rows, a shape smaller than the solver's 128-row blocks; forced
    here): every start still ends where it ends in one batch, at a root of the NumPy map."""
    from ctrnn_dyn.fixed_points import rounds

    F, F_np, J_np, starts = _network(3)
    kw = dict(tol_unique=None, coverage_damping=None)
    one = find_fixed_points(F, starts, np.zeros(3), **kw)
    gathers = []
    gather = rounds._gather
    monkeypatch.setattr(rounds, "_ONE_SHAPE_WORK", 0)
    monkeypatch.setattr(rounds, "_gather", lambda tree, rows:
                        gathers.append(rows.shape[1]) or gather(tree, rows))
    ladder = find_fixed_points(F, starts, np.zeros(3), **kw)
    assert gathers and set(gathers) == {32}  # the smaller shape was used
    np.testing.assert_array_equal(ladder.converged, one.converged)
    np.testing.assert_array_equal(ladder.n_iters, one.n_iters)
    np.testing.assert_allclose(ladder.x, one.x, rtol=0, atol=1e-9)
    for x in ladder.x[ladder.converged][::32]:
        assert newton_root(F_np, J_np, x) is not None


def test_rows_in_blocks_give_the_answers_of_one_vmapped_loop(monkeypatch):
    """The solver runs a network's rows in blocks (the running rows sorted first; a block's
    loop stops with its rows): every start ends exactly where one vmapped loop over all rows
    takes it, after as many iterations."""
    from ctrnn_dyn.fixed_points import solvers

    F, F_np, J_np, starts = _network(1)
    kw = dict(tol_unique=None, coverage_damping=None)
    blocks = find_fixed_points(F, starts, np.zeros(3), **kw)
    assert solvers.row_block(len(starts)) < len(starts)  # the blocks were used
    monkeypatch.setattr(solvers, "row_block", lambda k: k)
    one = find_fixed_points(F, starts, np.zeros(3), **kw)
    np.testing.assert_array_equal(blocks.n_iters, one.n_iters)
    np.testing.assert_array_equal(blocks.converged, one.converged)
    np.testing.assert_allclose(blocks.x, one.x, rtol=0, atol=1e-12)
    for x in blocks.x[blocks.converged][::64]:
        assert newton_root(F_np, J_np, x) is not None


def test_the_coverage_run_solves_only_starts_that_ended_away_from_their_nearest_root(
        monkeypatch):
    """The second solve takes the starts whose first run converged to a root other than the
    nearest one found (a NumPy distance check here); every root is still found."""
    from ctrnn_dyn.fixed_points import find as find_module

    F, _, _, starts = _network(3)
    seen = {}
    solve = find_module._solve

    def spy(F, x0, u, active, **kw):
        if kw.get("damping") == 1e-2:  # the coverage run's (the first run's is 1e-6)
            seen["active"] = np.asarray(active)[0].copy()
        return solve(F, x0, u, active, **kw)

    monkeypatch.setattr(find_module, "_solve", spy)
    fps = find_fixed_points(F, starts, np.zeros(3))
    assert len(fps.fixed) == 27
    first = find_fixed_points(F, starts, np.zeros(3), coverage_damping=None, tol_unique=None,
                              outlier_distance_scale=None, compute_jacobians=False)
    roots = first[first.converged].unique(1e-3).x
    dist_start = np.linalg.norm(starts[:, None] - roots[None], axis=2)
    dist_end = np.linalg.norm(first.x[:, None] - roots[None], axis=2)
    elsewhere = first.converged & (dist_start.argmin(1) != dist_end.argmin(1))
    np.testing.assert_array_equal(seen["active"], elsewhere)
    assert 0 < elsewhere.sum() < len(starts) // 2


def test_the_damping_falls_with_the_residual(monkeypatch):
    """After an accepted step LM's damping is capped at ``max(‖r‖², μ q'/q)`` (jaxopt alone
    divides it by at most 3 per step): from a damped start (``damping=1e-2``, the coverage
    run's) the starts converge in fewer iterations, to the same roots (of the NumPy map), and
    each accepted step of a start obeys the cap."""
    import jax
    import jaxopt

    from ctrnn_dyn.fixed_points import solvers

    F, F_np, J_np, starts = _network(1)
    kw = dict(damping=1e-2, tol_unique=None, coverage_damping=None, compute_jacobians=False)
    capped = find_fixed_points(F, starts, np.zeros(3), **kw)
    with jax.enable_x64(True):  # the cap, step by step, on a few starts
        solver = solvers._make_solver(F, "lm", 100, "dense", dtype=jnp.float64)
        x = jnp.asarray(starts[:64])
        u = jnp.zeros((64, 3))
        state = jax.vmap(solver.init_state)(x, u)
        state = state._replace(damping_factor=state.damping_factor * 1e4)  # 1e-6 -> 1e-2
        accepted = 0
        for _ in range(8):
            x, new = jax.vmap(solver.update)(x, state, u)
            ratio = np.asarray(new.value) / np.asarray(state.value)
            cap = np.maximum(2.0 * np.asarray(new.value),
                             np.asarray(state.damping_factor) * ratio)
            ok = ratio < 1.0
            assert np.all(np.asarray(new.damping_factor)[ok] <= cap[ok] * (1 + 1e-12))
            accepted += ok.sum()
            state = new
        assert accepted > 64
    monkeypatch.setattr(solvers._LevenbergMarquardt, "update", jaxopt.LevenbergMarquardt.update)
    jax.clear_caches()  # the solver's programs were compiled with the cap
    try:
        plain = find_fixed_points(F, starts, np.zeros(3), **kw)
    finally:  # later tests must not reuse programs compiled without it
        monkeypatch.undo()
        jax.clear_caches()
    assert capped.converged.all() and plain.converged.all()
    assert np.sum(capped.n_iters) < 0.9 * np.sum(plain.n_iters)
    same = np.linalg.norm(capped.x - plain.x, axis=1) < 1e-8
    assert same.mean() > 0.95  # the cap changes the last steps, not (nearly ever) the root
    for x in capped.x[::64]:
        assert newton_root(F_np, J_np, x) is not None
