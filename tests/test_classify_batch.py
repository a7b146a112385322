"""``classify_dynamics_batch``: many maps of one shape in one compiled program give what
``classify_dynamics`` gives map by map, and a second batch of other networks compiles nothing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_compiles

from ctrnn_dyn.attractors import classify_dynamics, classify_dynamics_batch
from ctrnn_dyn.ensemble_analysis import classify_dynamics_ensemble, network_maps
from ctrnn_dyn.model import CTRNNCell, rnn

OPTIONS = dict(n_transient=100, n_steps=400, n_blocks=4, n_recur=50)


def _maps(E: int, seed: int, gain: float = 1.0, alpha: float = 0.5):
    cell = CTRNNCell(hidden_features=6, output_features=1, alpha=alpha, noise_const=0.0)
    keys = jax.random.split(jax.random.PRNGKey(seed), E)
    params = jax.vmap(lambda k: rnn(cell).init(k, jnp.ones((1, 2, 2))))(keys)
    # gains from contracting to chaotic, so the verdicts differ across networks
    scale = jnp.linspace(0.5, 4.0, E) * gain
    params = jax.tree_util.tree_map_with_path(
        lambda path, a: a * scale.reshape((E,) + (1,) * (a.ndim - 1))
        if "rec" in jax.tree_util.keystr(path) and a.ndim == 3 else a, params)
    return cell, params, network_maps(cell, params)


def _starts(E: int, seed: int):
    return np.random.default_rng(seed).normal(size=(E, 3, 6))


@pytest.mark.parametrize("chunks", [False, True])
def test_batch_equals_one_by_one(chunks, monkeypatch):
    """In one program, or in chunks of two networks (the third padded with a copy), the verdicts
    are the ones of the networks one by one."""
    _, _, maps = _maps(5, 0)
    if chunks:
        from ctrnn_dyn import _batch

        numbers = sum(np.size(a) for a in jax.tree_util.tree_leaves(maps[0]))
        monkeypatch.setattr(_batch, "_CHUNK_NUMBERS", 2 * numbers)
        assert [len(c[1]) for c in _batch.stacked_groups(maps, None)] == [2, 2, 2]
    starts = _starts(5, 0)
    u = np.array([0.3, -0.2])
    batch = classify_dynamics_batch(maps, starts, u, **OPTIONS)
    assert len(batch) == 5
    for F, x, got in zip(maps, starts, batch, strict=True):
        want = classify_dynamics(F, x, u, **OPTIONS)
        assert got.labels == want.labels
        np.testing.assert_allclose(got.lyapunov, want.lyapunov, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.final_state, want.final_state, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(got.period, want.period)
    assert len({r.labels for r in batch}) > 1  # the networks were not all alike


def test_second_batch_of_other_networks_compiles_nothing():
    _, _, maps = _maps(4, 1)
    classify_dynamics_batch(maps, _starts(4, 1), **OPTIONS)
    _, _, others = _maps(4, 2, gain=1.3)
    with count_compiles() as events:
        classify_dynamics_batch(others, _starts(4, 2), **OPTIONS)
    assert events == []


def test_maps_with_different_static_parts_form_groups():
    _, _, a = _maps(2, 3, alpha=0.5)
    _, _, b = _maps(2, 4, alpha=0.2)
    maps = [a[0], b[0], a[1], b[1]]
    starts = _starts(4, 3)
    batch = classify_dynamics_batch(maps, starts, **OPTIONS)
    for F, x, got in zip(maps, starts, batch, strict=True):
        want = classify_dynamics(F, x, **OPTIONS)
        np.testing.assert_allclose(got.lyapunov, want.lyapunov, rtol=1e-9, atol=1e-12)


def test_ensemble_wrapper_uses_the_batch():
    cell, params, maps = _maps(3, 5)
    starts = _starts(3, 5)
    got = classify_dynamics_ensemble(cell, params, list(starts), **OPTIONS)
    want = classify_dynamics_batch(maps, starts, np.zeros(2), **OPTIONS)
    for g, w in zip(got, want, strict=True):
        assert g.labels == w.labels
        np.testing.assert_allclose(g.lyapunov, w.lyapunov, rtol=1e-12)


def test_bad_arguments_are_named():
    _, _, maps = _maps(2, 6)
    with pytest.raises(ValueError, match="initial_states"):
        classify_dynamics_batch(maps, np.zeros((3, 2, 6)), **OPTIONS)
    with pytest.raises(ValueError, match="initial_states"):
        classify_dynamics_batch(maps, [np.zeros((2, 6)), np.zeros((3, 6))], **OPTIONS)
    with pytest.raises(TypeError, match="unknown option"):
        classify_dynamics_batch(maps, np.zeros((2, 6)), n_step=10)
    with pytest.raises(ValueError, match="maps"):
        classify_dynamics_batch([], np.zeros((2, 6)))
    with pytest.raises(TypeError, match="F must be"):
        classify_dynamics_batch([maps[0], 3], np.zeros((2, 6)))


def _linear(A, x, u):
    return A @ x


def test_batch_exponents_are_the_log_moduli_of_linear_maps():
    """Independent truth: for F(x) = A x the Lyapunov exponents per step are log |eig(A)|."""
    rng = np.random.default_rng(7)
    spectra = np.array([[0.95, 0.6, 0.3], [1.2, 0.8, 0.1], [0.7, 0.7 * 0.9, 0.05]])
    maps = []
    for lam in spectra:
        R, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        maps.append(jax.tree_util.Partial(_linear, jnp.asarray(R @ np.diag(lam) @ R.T)))
    starts = rng.normal(size=(3, 2, 3))
    batch = classify_dynamics_batch(maps, starts, n_transient=200, n_steps=2000, n_blocks=4,
                                    n_recur=20, divergence_bound=1e300)
    for lam, got in zip(spectra, batch, strict=True):
        np.testing.assert_allclose(got.lyapunov, np.tile(np.log(lam), (2, 1)), atol=2e-3)


def _affine(A, b, x, u):
    return A @ x + b.reshape(-1)


def test_maps_that_cannot_be_stacked_are_named():
    """One structure, but a parameter of another shape: no network axis to stack them on."""
    maps = [jax.tree_util.Partial(_affine, jnp.eye(2), jnp.zeros(2)),
            jax.tree_util.Partial(_affine, jnp.eye(2), jnp.zeros((1, 2)))]
    with pytest.raises(ValueError, match=r"maps \[0, 1\] .* cannot be stacked"):
        classify_dynamics_batch(maps, np.ones((1, 2)), **OPTIONS)
