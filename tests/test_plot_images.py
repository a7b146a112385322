"""Image comparison of the plot functions on small fixed inputs, so that a plot changes only on
purpose.

Each test draws one figure in the package's style under matplotlib's test settings
(``matplotlib.testing.setup()``: default rcParams, DejaVu Sans with hinting off, Agg), saves it
at 100 dpi and compares it with the committed baseline in ``tests/baseline_images/
test_plot_images/`` by :func:`matplotlib.testing.compare.compare_images`: the RMS difference
of the pixel values (0-255) must be at most :data:`TOL`. A deliberate change to a plot
regenerates the baselines with ``CTRNN_DYN_UPDATE_BASELINES=1 pytest -n 0
tests/test_plot_images.py`` (then look at them and commit them with the change).
"""

from __future__ import annotations

import os
import shutil
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib as mpl
import matplotlib.pyplot as plt
import matplotlib.testing
import numpy as np
import pytest
from matplotlib.testing.compare import compare_images

from ctrnn_dyn import plot, systems

#: Largest RMS pixel difference (0-255 scale) accepted against a baseline. Renders are
#: bit-identical on one platform; 1.0 absorbs anti-aliasing noise of other CPUs while a moved
#: marker, a new line or a changed colour is well above it.
TOL = 1.0
BASELINES = Path(__file__).parent / "baseline_images" / "test_plot_images"
UPDATE = os.environ.get("CTRNN_DYN_UPDATE_BASELINES") == "1"


@pytest.fixture(autouse=True)
def _test_settings():
    with mpl.rc_context():
        matplotlib.testing.setup()
        yield
    plt.close("all")


def _check(fig, name: str, tmp_path: Path) -> None:
    actual = tmp_path / f"{name}.png"
    fig.savefig(actual, dpi=100, metadata={"Software": None})
    expected = BASELINES / f"{name}.png"
    if UPDATE:
        BASELINES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(actual, expected)
        return
    assert expected.exists(), (f"no baseline {expected}; create it with "
                               "CTRNN_DYN_UPDATE_BASELINES=1")
    err = compare_images(str(expected), str(actual), tol=TOL)
    assert err is None, err


def _f64_map(system):
    with jax.enable_x64(True):
        return system.map(jnp.float64)


def _orbit(system, n_steps, start):
    with jax.enable_x64(True):
        F = system.map(jnp.float64)
        x = jnp.asarray(start, jnp.float64)
        out = [np.asarray(x)]
        for _ in range(n_steps):
            x = F(x)
            out.append(np.asarray(x))
    return np.array(out)


def _all_classes():
    """One point of every marker class, on a circle, with one unstable direction each."""
    classes = [("stable node", 0, True), ("stable focus", 0, True), ("saddle", 1, True),
               ("saddle", 2, True), ("saddle", 3, True), ("unstable node", 4, True),
               ("unstable focus", 4, True), ("marginal", 0, True), ("", 0, False)]
    n = len(classes)
    ang = 2 * np.pi * np.arange(n) / n
    x = np.stack([np.cos(ang), np.sin(ang), 0.3 * np.cos(2 * ang), np.zeros(n)], 1)
    mu = np.tile(np.array([0.5, 0.4, 0.3, 0.2], complex), (n, 1))
    for i, (_, k, _) in enumerate(classes):
        mu[i, :k] = 1.5
    V = np.tile(np.eye(4, dtype=complex), (n, 1, 1))
    return types.SimpleNamespace(
        x=x, eigvals=mu, eigvecs=V, n_unstable=np.array([c[1] for c in classes]),
        stability=np.array([c[0] for c in classes]),
        converged=np.array([c[2] for c in classes]))


def test_image_phase_portrait(tmp_path):
    F = _f64_map(systems.OSCILLATOR)
    traj = _orbit(systems.OSCILLATOR, 300, [0.1, 0.1])
    fp = types.SimpleNamespace(x=np.array([[0.5, 0.5]]), stability=np.array(["unstable focus"]),
                               converged=np.array([True]))
    ax = plot.phase_portrait(F, dt=0.1, xlim=(0, 1), ylim=(0, 1), density=8, fixed_points=fp,
                             trajectories=traj, state_symbol="h")
    _check(ax.figure, "phase_portrait", tmp_path)


def test_image_fixed_points_3d_marker_code(tmp_path):
    ax = plot.fixed_points_3d(_all_classes(), slow_points=True, mode_length=0.2)
    _check(ax.figure, "fixed_points_3d", tmp_path)


def test_image_eigenspectrum(tmp_path):
    mu = np.array([[0.9 + 0.3j, 0.9 - 0.3j, 1.1, -0.4], [0.5, 0.2 + 0.1j, 0.2 - 0.1j, 0.0]])
    ax = plot.eigenspectrum(mu, labels=["point A", "point B"])
    _check(ax.figure, "eigenspectrum", tmp_path)


def test_image_attractor_3d(tmp_path):
    X = _orbit(systems.CHAOS, 1500, [0.5, 0.5, 0.5])[None, 300:]
    ax = plot.attractor_3d(X)
    _check(ax.figure, "attractor_3d", tmp_path)


def test_image_trajectories_and_loss_curve(tmp_path):
    with plot.style():
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(plot.PAGE_WIDTH / 1.5, 2.0),
                                     layout="constrained")
    t = np.linspace(0, 6, 60)
    y = np.stack([np.sin(t), np.cos(t)], -1)
    plot.trajectories(y, 0.8 * y, dt=0.1, time_unit="τ", ax=a1)
    steps = np.arange(50)
    plot.loss_curve({"train": np.exp(-steps / 10) + 0.01, "held out": np.exp(-steps / 12)
                     + 0.02}, ax=a2)
    _check(fig, "trajectories_loss_curve", tmp_path)


def test_image_colorbar_and_legend_outside(tmp_path):
    with plot.style():
        fig, ax = plt.subplots(figsize=(plot.COLUMN_WIDTH, 2.4), layout="constrained")
        omega = np.linspace(0.1, 0.6, 6)
        colours, mappable = plot.value_colors(omega)
        t = np.linspace(0, 20, 100)
        for w, c in zip(omega, colours, strict=True):
            ax.plot(t, np.sin(w * t), color=c)
        plot.colorbar(ax, mappable, r"input frequency $\omega$ (rad/step)")
        ax.plot([], [], color="black", ls="--", label="target")
        ax.plot([], [], color="black", label="network")
        plot.legend_outside(ax, "below", ncol=2)
        ax.set_xlabel("time step")
        ax.set_title("outputs by input level")
        plot.panel_label(ax, "a")
    _check(fig, "colorbar_legend", tmp_path)


def test_point_class_and_save_figure(tmp_path):
    assert plot.point_class("saddle", 1) == "saddle, 1 unstable mode"
    assert plot.point_class("saddle", 2) == "saddle, 2 unstable modes"
    assert plot.point_class("saddle", 5) == "saddle, ≥ 3 unstable modes"
    assert plot.point_class("saddle") == "saddle"
    assert plot.point_class("stable focus", 0, converged=False) == "slow point"
    assert plot.point_class("", 0) == "fixed point"
    markers = {plot.POINT_STYLE[k]["marker"] for k in (
        "stable node", "saddle, 1 unstable mode", "saddle, 2 unstable modes",
        "saddle, ≥ 3 unstable modes", "unstable node", "slow point")}
    assert len(markers) == 6  # stable / saddles by mode count / unstable / slow all differ
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    png, pdf = plot.save_figure(fig, tmp_path / "fig.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and pdf.read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ValueError, match="dpi"):
        plot.save_figure(fig, tmp_path / "low", dpi=100)
    with pytest.raises(ValueError, match="where"):
        plot.legend_outside(ax, "inside")
