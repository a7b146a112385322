"""Plots draw what they should: counts of points, lines and artists (Agg backend)."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.contour import ContourSet
from matplotlib.quiver import Quiver
from scipy.optimize import fsolve

from ctrnn_dyn import plot, systems
from ctrnn_dyn.pca import TrajectoryPCA

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def f64_map(system):
    with jax.enable_x64(True):
        return system.map(jnp.float64)


def sim(system, n_steps):
    with jax.enable_x64(True):
        return np.asarray(system.simulate(n_steps=n_steps, dtype=jnp.float64))


def rate_field(system):
    K, b, tau = np.asarray(system.K), np.asarray(system.b), np.asarray(system.tau)
    return lambda h: (-h + 1 / (1 + np.exp(-(h @ K + b)))) / tau


def scatter_offsets(ax):
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def test_phase_portrait_2d_content():
    F = f64_map(systems.OSCILLATOR)
    X = sim(systems.OSCILLATOR, 300)
    fp = types.SimpleNamespace(x=np.array([[0.5, 0.5]]), stability=np.array(["unstable focus"]),
                               converged=np.array([True]))
    ax = plot.phase_portrait(F, dt=0.1, xlim=(0, 1), ylim=(0, 1), fixed_points=fp,
                             trajectories=X[[0, 1, 3]], density=15)
    # 3 trajectories + 3 start dots + 2 legend proxies for the nullclines
    data_lines = [ln for ln in ax.lines if len(ln.get_xdata()) > 1]
    assert len(data_lines) == 3
    np.testing.assert_allclose(data_lines[0].get_xydata(), X[0])
    contours = [c for c in ax.collections if isinstance(c, ContourSet)]
    assert len(contours) == 2  # the two nullclines
    # the nullclines cross at the fixed point: both contour paths pass near (0.5, 0.5)
    for c in contours:
        verts = np.concatenate([p.vertices for p in c.get_paths()])
        assert np.min(np.linalg.norm(verts - 0.5, axis=1)) < 0.01
    # nullcline x1: along its vertices the first velocity component vanishes
    f = rate_field(systems.OSCILLATOR)
    verts = np.concatenate([p.vertices for p in contours[0].get_paths()])
    assert np.max(np.abs(f(verts)[:, 0])) < 0.05
    assert any(isinstance(c, LineCollection) for c in ax.collections)  # streamplot
    (fps,) = scatter_offsets(ax)
    np.testing.assert_allclose(fps.get_offsets(), [[0.5, 0.5]])
    assert fps.get_label() == "unstable focus"
    assert ax.get_xlabel() and ax.get_ylabel()


def test_phase_portrait_quiver_and_projection_for_high_dim():
    F = f64_map(systems.CHAOS)
    X = sim(systems.CHAOS, 600)[:, 100:]
    pca = TrajectoryPCA(2).fit(X)
    ax = plot.phase_portrait(F, dt=0.1, trajectories=X, pca=pca, kind="quiver", density=10)
    (q,) = [c for c in ax.collections if isinstance(c, Quiver)]
    assert q.N == 100
    # arrows are the velocity projected on the plane through the mean state
    Z = q.get_offsets()
    lifted = pca.mean_ + Z @ pca.components_
    V = rate_field(systems.CHAOS)(lifted) @ pca.components_.T
    # F's per-step velocity is the Euler field, so it equals the rate field here exactly
    norm = np.linalg.norm(V, axis=1)
    np.testing.assert_allclose(q.U, V[:, 0] / norm, atol=1e-8)
    np.testing.assert_allclose(q.V, V[:, 1] / norm, atol=1e-8)
    assert len([ln for ln in ax.lines if len(ln.get_xdata()) > 1]) == 3
    assert "PC1" in ax.get_xlabel()
    assert not [c for c in ax.collections if isinstance(c, ContourSet)]  # no nullclines


def _chaos_fixed_points():
    f = rate_field(systems.CHAOS)
    roots = []
    for s in np.linspace(0.0, 1.0, 11):
        r, _, ok, _ = fsolve(f, np.full(3, s), full_output=True)
        if ok == 1 and not any(np.allclose(r, q, atol=1e-6) for q in roots):
            roots.append(r)
    K, b = np.asarray(systems.CHAOS.K), np.asarray(systems.CHAOS.b)
    a = systems.CHAOS.dt / np.asarray(systems.CHAOS.tau)
    J = []
    for r in roots:
        s = 1 / (1 + np.exp(-(r @ K + b)))
        J.append(np.diag(1 - a) + (a * s * (1 - s))[:, None] * K.T)
    mu, V = np.linalg.eig(np.asarray(J))
    n_unst = (np.abs(mu) > 1).sum(1)
    stab = np.where(n_unst == 0, "stable node", np.where(n_unst == 3, "unstable node", "saddle"))
    fields = dict(x=np.asarray(roots), eigvals=mu, eigvecs=V, stability=stab,
                  converged=np.ones(len(roots), bool))
    try:  # the project's container when present (the plots only duck-type it)
        from ctrnn_dyn.fixed_points import FixedPoints
    except ImportError:
        return types.SimpleNamespace(**fields), n_unst
    N = len(roots)
    return FixedPoints(u=np.zeros((N, 3)), q=np.zeros(N), n_iters=np.zeros(N, int),
                       x_init=np.asarray(roots), jacobians=np.asarray(J), **fields), n_unst


def test_fixed_points_3d_markers_and_unstable_modes():
    fp, n_unst = _chaos_fixed_points()
    X = sim(systems.CHAOS, 800)
    ax = plot.fixed_points_3d(fp, trajectories=X)
    assert ax.name == "3d"
    n_traj = sum(1 for ln in ax.lines if ln.get_color() == "0.6")
    assert n_traj == 3
    modes = [ln for ln in ax.lines if ln.get_color() == plot.OKABE_ITO["vermillion"]]
    assert len(modes) == n_unst.sum() > 0
    sc = scatter_offsets(ax)
    assert sum(len(c.get_offsets()) for c in sc) == len(fp.x)
    for c in sc:  # stable filled, unstable open (white face)
        face = c.get_facecolor()[0][:3]
        is_open = np.allclose(face, 1.0)
        assert is_open == (c.get_label() != "stable node")


def test_fixed_points_3d_pca_for_wide_states():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 6))
    mu = np.tile([1.5, 0.5, 0.2, 0.1, 0.1, 0.1], (5, 1)).astype(complex)
    V = np.tile(np.eye(6), (5, 1, 1)).astype(complex)
    fp = types.SimpleNamespace(x=x, eigvals=mu, eigvecs=V,
                               stability=np.array(["saddle"] * 5), converged=np.ones(5, bool))
    ax = plot.fixed_points_3d(fp, mode_length=0.5)
    modes = [ln for ln in ax.lines if ln.get_color() == plot.OKABE_ITO["vermillion"]]
    assert len(modes) == 5
    assert "PC1" in ax.get_xlabel()


def test_eigenspectrum_discrete_and_continuous():
    mu = np.array([[0.9 + 0.1j, 0.9 - 0.1j, 1.05], [0.5, 0.2, -0.3]])
    ax = plot.eigenspectrum(mu)
    circle = ax.lines[0]
    np.testing.assert_allclose(np.hypot(circle.get_xdata(), circle.get_ydata()), 1.0)
    sc = scatter_offsets(ax)
    assert len(sc) == 2 and all(len(c.get_offsets()) == 3 for c in sc)
    np.testing.assert_allclose(sc[0].get_offsets()[:, 0], mu[0].real)
    ax = plot.eigenspectrum(mu[0], kind="continuous", alpha=0.1)
    (sc,) = scatter_offsets(ax)
    np.testing.assert_allclose(sc.get_offsets()[:, 0], (mu[0].real - 1) / 0.1)
    np.testing.assert_allclose(sc.get_offsets()[:, 1], mu[0].imag / 0.1)
    assert "1/\\tau" in ax.get_xlabel()
    fp = types.SimpleNamespace(eigvals=mu, converged=np.array([True, False]))
    ax = plot.eigenspectrum(fp)
    assert len(scatter_offsets(ax)) == 1


def test_attractor_3d_trajectories_loss_curve():
    X = sim(systems.CHAOS, 300)
    ax = plot.attractor_3d(X)
    assert len(ax.lines) == 3 and len(scatter_offsets(ax)) == 3
    ax = plot.attractor_3d(np.random.default_rng(0).normal(size=(2, 50, 7)))
    assert len(ax.lines) == 2 and "PC1" in ax.get_xlabel()

    y = np.sin(np.linspace(0, 6, 40))[None, :, None] * np.ones((3, 1, 2))
    ax = plot.trajectories(y, 0.9 * y, dt=0.5, time_unit="τ")
    solid = [ln for ln in ax.lines if ln.get_linestyle() == "-"]
    dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(solid) == 6 and len(dashed) == 6
    np.testing.assert_allclose(solid[0].get_xdata(), 0.5 * np.arange(1, 41))
    assert ax.get_xlabel() == "time (τ)"
    ax = plot.trajectories(y[0, :, 0])
    assert len(ax.lines) == 1

    loss = np.array([1.0, 0.5, np.nan, 0.2])
    ax = plot.loss_curve({"train": loss, "val": loss * 2})
    assert len(ax.lines) == 2 and ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1.0, 0.5, 0.2])


def test_plots_use_given_axes_and_never_show(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("plt.show called"))
    fig, ax = plt.subplots()
    assert plot.loss_curve(np.ones(3), ax=ax) is ax
    assert plot.eigenspectrum(np.ones(2), ax=ax) is ax
    with pytest.raises(ValueError, match="ax must be a 3-D axes"):
        plot.attractor_3d(np.ones((10, 3)), ax=ax)


def test_plot_bad_inputs_name_the_argument():
    F = f64_map(systems.OSCILLATOR)
    with pytest.raises(ValueError, match="trajectories contains non-finite"):
        plot.phase_portrait(F, trajectories=np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="xlim and ylim"):
        plot.phase_portrait(F)
    with pytest.raises(ValueError, match="kind"):
        plot.phase_portrait(F, xlim=(0, 1), ylim=(0, 1), kind="arrows")
    with pytest.raises(ValueError, match="eigvals"):
        plot.eigenspectrum(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="alpha"):
        plot.eigenspectrum(np.ones(2), alpha=0.1)
    with pytest.raises(ValueError, match="states must have n >= 3"):
        plot.attractor_3d(np.ones((10, 2)))
    with pytest.raises(ValueError, match="targets must have the shape"):
        plot.trajectories(np.ones((5, 2)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="steps must have shape"):
        plot.loss_curve(np.ones(3), steps=np.arange(4))
    with pytest.raises(TypeError, match="fixed_points"):
        plot.fixed_points_3d(object())
