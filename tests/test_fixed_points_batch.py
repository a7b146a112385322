"""``find_fixed_points_batch``: the solver over many networks in one compiled program gives what
``find_fixed_points`` gives network by network, every root an independent scipy multistart
reaches, and a second batch of other networks compiles nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_compiles
from test_fixed_points_networks import _check_against_scipy, _ctrnn_pair

from ctrnn_dyn.ensemble_analysis import find_fixed_points_ensemble
from ctrnn_dyn.fixed_points import find, find_fixed_points, find_fixed_points_batch, rounds, solvers
from ctrnn_dyn.model import CTRNNCell

H, U = 6, np.array([0.1])


def _networks(seed: int, gains=(1.2, 2.0, 2.6, 3.2), alpha: float = 0.5):
    """CT-RNNs of growing recurrent gain (from one fixed point to several), each with its
    independent NumPy map."""
    rng = np.random.default_rng(seed)
    out = []
    for g in gains:
        K = (g / np.sqrt(H) * rng.normal(size=(H, H))).astype(np.float32)
        K_in = rng.normal(size=(1, H)).astype(np.float32)
        b = (0.2 * rng.normal(size=H)).astype(np.float32)
        out.append(_ctrnn_pair(K, K_in, b, alpha))
    return out


def _starts(seed: int, E: int, n: int = 64) -> np.ndarray:
    return 1.5 * np.random.default_rng(seed).normal(size=(E, n, H))


def _same_points(a, b) -> None:
    """Same entries (the order of entries with equal q may differ by rounding)."""
    assert len(a) == len(b) and len(a.fixed) == len(b.fixed)
    for x in a.fixed.x:
        assert np.min(np.linalg.norm(b.fixed.x - x, axis=1)) < 1e-8
    np.testing.assert_array_equal(np.sort(a.n_starts), np.sort(b.n_starts))
    np.testing.assert_array_equal(np.bincount(a.stop_reason, minlength=4),
                                  np.bincount(b.stop_reason, minlength=4))


@pytest.mark.parametrize("ladder", [False, True], ids=["one-shape", "ladder"])
def test_batch_equals_one_by_one_and_finds_every_scipy_root(monkeypatch, ladder):
    if ladder:  # retire finished starts into smaller batches (the large-problem path)
        monkeypatch.setattr(rounds, "_ONE_SHAPE_WORK", 0)
    nets = _networks(0)
    maps, numpy_maps = [F for F, _ in nets], [f for _, f in nets]
    starts = _starts(0, len(maps))
    batch = find_fixed_points_batch(maps, starts, U)
    counts = []
    for F, F_np, x0, got in zip(maps, numpy_maps, starts, batch, strict=True):
        _same_points(got, find_fixed_points(F, x0, U))
        counts.append(_check_against_scipy(got, F_np, x0, U))
    assert len(set(counts)) > 1 and max(counts) >= 3  # the networks differ, some have several


def test_the_networks_are_linearised_on_threads_and_blas_is_given_back(monkeypatch):
    """The results (unique points, Jacobians, eigenvectors) are those of one thread, and BLAS's
    thread count is back where it was, also when two callers' limits overlap."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from ctrnn_dyn.fixed_points.linearise import one_blas_thread

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    maps = [F for F, _ in _networks(2)]
    starts = _starts(2, len(maps))
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        threaded = find_fixed_points_batch(maps, starts, U)
        assert blas_threads() == before
        first, second = one_blas_thread(), one_blas_thread()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)  # the first caller out: the second still holds one
        assert set(blas_threads()) == {1}
        second.__exit__(None, None, None)
        assert blas_threads() == before
    monkeypatch.setattr(find.os, "sched_getaffinity", lambda pid: {0})  # one core: no threads
    alone = find_fixed_points_batch(maps, starts, U)
    for a, b in zip(threaded, alone, strict=True):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.eigvals, b.eigvals)
        np.testing.assert_array_equal(a.eigvecs, b.eigvecs)
        np.testing.assert_array_equal(a.n_starts, b.n_starts)


def test_eigendecompositions_split_over_threads_are_the_same_bits():
    from ctrnn_dyn.fixed_points.linearise import _EIG_THREADS_MIN_D, _eig_host

    J = np.random.default_rng(0).normal(size=(7, _EIG_THREADS_MIN_D, _EIG_THREADS_MIN_D))
    alone = _eig_host(J, left=True)
    for workers in (2, 3, 8):
        split = _eig_host(J, left=True, workers=workers)
        for a, b in zip(alone, split, strict=True):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(J @ alone.eigvecs, alone.eigvecs * alone.eigvals[:, None, :],
                               atol=1e-12)


def test_the_solver_runs_the_networks_together(monkeypatch):
    """One call of the solver for the whole batch (stacked maps, starts (E, n, d))."""
    calls = []
    real = find._solve
    monkeypatch.setattr(find, "_solve", lambda F, x0, *a, **k: calls.append(x0.shape)
                        or real(F, x0, *a, **k))
    maps = [F for F, _ in _networks(1)]
    find_fixed_points_batch(maps, _starts(1, len(maps)), U, coverage_damping=None)
    assert calls == [(len(maps), 64, H)]


def test_the_coverage_runs_of_the_networks_are_one_solve(monkeypatch):
    """With the coverage run on (the default), the networks' second solves are one call too, on
    the same stacked shapes as the first (no program of its own), with the coverage damping."""
    calls = []
    real = find._solve
    monkeypatch.setattr(find, "_solve", lambda F, x0, *a, **k: calls.append(
        (x0.shape, k.get("damping"))) or real(F, x0, *a, **k))
    maps = [F for F, _ in _networks(1)]
    find_fixed_points_batch(maps, _starts(1, len(maps)), U)
    shape = (len(maps), 64, H)
    assert calls == [(shape, 1e-6), (shape, 1e-2)]


def test_a_second_batch_of_other_networks_compiles_no_solver_program():
    """The solver's programs (initial states, rounds, compaction) are traced over the maps'
    parameters: other networks of the same shapes compile none of them, and a second call on
    the same batch compiles nothing at all. (The Newton finish and restarts run on a bucket of
    the starts a network leaves above ``tol_q``, 8, 32, 128, ... rows: a network that leaves
    more of them than any before compiles that bucket once.)"""
    maps = [F for F, _ in _networks(2)]
    find_fixed_points_batch(maps, _starts(2, len(maps)), U)
    programs = [solvers._init_states.compiled, solvers._run_chunk.compiled, rounds._gather]
    sizes = [p._cache_size() for p in programs]
    others = [F for F, _ in _networks(3)]
    find_fixed_points_batch(others, _starts(3, len(others)), U)
    assert [p._cache_size() for p in programs] == sizes
    with count_compiles() as events:
        find_fixed_points_batch(others, _starts(3, len(others)), U)
    assert events == []


def test_maps_of_different_structures_and_plain_functions_are_grouped():
    a = [F for F, _ in _networks(4, gains=(2.0, 2.6), alpha=0.5)]
    b = [F for F, _ in _networks(5, gains=(2.0, 2.6), alpha=0.2)]  # another static part
    F0 = a[0]

    def plain(x, u):  # a plain function: a group of its own
        return F0(x, u)

    maps = [a[0], b[0], plain, a[1], b[1]]
    starts = list(_starts(4, len(maps), n=32))
    starts[3] = starts[3][:20]  # another number of starts: another group
    batch = find_fixed_points_batch(maps, starts, U)
    for F, x0, got in zip(maps, starts, batch, strict=True):
        _same_points(got, find_fixed_points(F, x0, U))
    _same_points(batch[2], batch[0])  # the plain function is map a[0]


def test_the_ensemble_wrapper_solves_its_networks_together(monkeypatch):
    import jax

    from ctrnn_dyn.model import rnn

    cell = CTRNNCell(hidden_features=H, output_features=1, alpha=0.5, noise_const=0.0)
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    params = jax.vmap(lambda k: rnn(cell).init(k, jnp.ones((1, 2, 1))))(keys)
    params = jax.tree_util.tree_map_with_path(  # stronger recurrence: several fixed points
        lambda path, a: 3.0 * a if "recurrent" in jax.tree_util.keystr(path) else a, params)
    calls = []
    real = find._solve
    monkeypatch.setattr(find, "_solve", lambda F, x0, *a, **k: calls.append(x0.shape[0])
                        or real(F, x0, *a, **k))
    starts = _starts(7, 3, n=32)
    got = find_fixed_points_ensemble(cell, params, starts, U)
    assert calls[0] == 3
    from ctrnn_dyn.ensemble_analysis import network_maps

    for F, x0, g in zip(network_maps(cell, params), starts, got, strict=True):
        _same_points(g, find_fixed_points(F, x0, U))


def test_bad_arguments_are_named():
    maps = [F for F, _ in _networks(6, gains=(1.0, 2.0))]
    starts = _starts(6, 2, n=8)
    with pytest.raises(ValueError, match="maps"):
        find_fixed_points_batch([], starts, U)
    with pytest.raises(TypeError, match="tol_qq"):
        find_fixed_points_batch(maps, starts, U, tol_qq=1e-20)
    with pytest.raises(ValueError, match="initial_states"):
        find_fixed_points_batch(maps, [starts[0]] * 3, U)
    with pytest.raises(ValueError, match="initial_states"):
        find_fixed_points_batch(maps, _starts(6, 3, n=8), U)
    with pytest.raises(ValueError, match="inputs"):
        find_fixed_points_batch(maps, starts, [U] * 3)
    with pytest.raises(ValueError, match="width"):
        find_fixed_points_batch(maps, starts[..., :4], U)
    with pytest.raises(ValueError, match="tol_q"):
        find_fixed_points_batch(maps, starts, U, tol_q=-1.0)


_SHARDED = textwrap.dedent("""
    import sys
    import jax, numpy as np
    assert len(jax.devices()) == 2, jax.devices()
    sys.path.insert(0, {tests!r})
    from test_fixed_points_networks import _ctrnn_pair
    from ctrnn_dyn.attractors import (classify_dynamics_batch, find_limit_cycle_batch,
                                      lyapunov_spectrum_batch)
    from ctrnn_dyn.fixed_points import find_fixed_points_batch
    # 40 units, 64 starts: big enough that jaxlib's CPU LAPACK kernels spread each batch of
    # matrices over the thread pool, which deadlocked with both devices running (2 or 3 times
    # in 3 before the split programs called them one matrix at a time)
    H, rng, u = 40, np.random.default_rng(0), np.array([0.1])
    maps = [_ctrnn_pair((g / np.sqrt(H) * rng.normal(size=(H, H))).astype(np.float32),
                        rng.normal(size=(1, H)).astype(np.float32),
                        (0.2 * rng.normal(size=H)).astype(np.float32), 0.5)[0]
            for g in (1.5, 2.5)]
    starts = 1.5 * rng.normal(size=(2, 64, H))
    cls = dict(n_transient=100, n_steps=400, n_blocks=4, n_recur=50, n_exponents=H)
    for _ in range(2):
        sharded = find_fixed_points_batch(maps, starts, u)  # devices="auto": both
        plain = find_fixed_points_batch(maps, starts, u, devices=None)
        for a, b in zip(sharded, plain):
            assert len(a) == len(b) and len(a.fixed) == len(b.fixed)
            np.testing.assert_allclose(np.sort(a.fixed.x, 0), np.sort(b.fixed.x, 0), atol=1e-8)
        c_sharded = classify_dynamics_batch(maps, starts[:, :8], u, **cls)
        c_plain = classify_dynamics_batch(maps, starts[:, :8], u, devices=None, **cls)
        for a, b in zip(c_sharded, c_plain):
            assert a.labels == b.labels
            np.testing.assert_allclose(a.lyapunov, b.lyapunov, rtol=1e-9, atol=1e-12)
    lyap = dict(n_steps=200, n_transient=50, n_blocks=4, n_exponents=H)
    l_sharded = lyapunov_spectrum_batch(maps, starts[:, 0], u, **lyap)
    l_plain = lyapunov_spectrum_batch(maps, starts[:, 0], u, devices=None, **lyap)
    for a, b in zip(l_sharded, l_plain):
        np.testing.assert_allclose(a.exponents, b.exponents, rtol=1e-9, atol=1e-12)
    cyc = dict(n_transient=100, n_search=100)
    y_sharded = find_limit_cycle_batch(maps, starts[:, 0], u, **cyc)
    y_plain = find_limit_cycle_batch(maps, starts[:, 0], u, devices=None, **cyc)
    for a, b in zip(y_sharded, y_plain):
        assert a.kind == b.kind
        np.testing.assert_allclose(a.x, b.x, rtol=1e-9, atol=1e-12)
    # an odd number of networks is padded to a multiple of the devices
    odd = classify_dynamics_batch(maps + maps[:1], starts[[0, 1, 0], :8], u, **cls)
    np.testing.assert_allclose(odd[2].lyapunov, c_plain[0].lyapunov, rtol=1e-9, atol=1e-12)
    print("SHARDED-OK")
""")



def test_networks_split_over_two_devices_give_the_one_device_answers():
    """The solver's rounds, the classification, the Lyapunov spectra and the limit
    cycles' settling, split over 2 forced host devices (subprocess: the flag must be set
    before jax is imported), equal one device; twice over, since jaxlib's CPU LAPACK kernels,
    batched on two devices at once, can deadlock (the split programs call them one matrix at
    a time; without that this test hangs and fails)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        " --xla_force_host_platform_device_count=2").strip()
    env["JAX_PLATFORMS"] = "cpu"
    code = _SHARDED.format(tests=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "SHARDED-OK" in out.stdout
