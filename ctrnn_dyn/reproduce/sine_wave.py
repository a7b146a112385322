r"""The seed's sine-wave generator, reverse-engineered as in Sussillo & Barak (2013), Fig. 4.

A CT-RNN is trained on :class:`ctrnn_dyn.tasks.SineWave`: a static input level
:math:`u = 0.25 + (100\omega - 9)/51` selects the frequency :math:`\omega` (rad per step) of
the target :math:`\sin(\omega t)`. For each of several input levels we find the fixed point at
the centre of the network's oscillation (starts: that trial's states plus noise, the input held
at the level) and linearise there. Sussillo & Barak's check: the fixed point has an *unstable
complex pair* :math:`\mu, \bar\mu` whose rotation per step :math:`|\arg\mu|` is close to the
target frequency :math:`\omega` — the oscillation is the linear rotation around the fixed
point, bounded by the nonlinearity into a limit cycle.

Deviation from the seed's setting (recorded in the JSON): the seed trains on 50-step trials.
A 50-step trial is shorter than one period at the lowest frequencies (:math:`2\pi/0.1 \approx
63` steps), and networks trained that way produce the sine as a decaying transient from the
initial state — their fixed points are *stable* and do not rotate at :math:`\omega`. We train
on longer trials (``trial_steps``), which forces a self-sustained oscillation.
"""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import matplotlib as mpl
import numpy as np

from ctrnn_dyn import plot
from ctrnn_dyn.fixed_points import find_fixed_points
from ctrnn_dyn.pca import TrajectoryPCA
from ctrnn_dyn.reproduce._common import (
    ReproductionResult,
    Timer,
    check_run_args,
    new_figure,
    rollout,
    train_network,
    with_forward,
    write_reproduction,
)
from ctrnn_dyn.tasks import SineWave

__all__ = ["NAME", "run", "settings", "rotation_of"]

NAME = "sine_wave"
logger = logging.getLogger(__name__)


def settings(quick: bool) -> dict:
    """Sizes and hyper-parameters of the full (``quick=False``) or reduced run."""
    return {
        "hidden": 64 if quick else 100,
        "forward": "nn.RNN",  # the pass the committed figure was trained through
        "alpha": 0.2 if quick else 0.1,
        "noise": 0.1,
        "steps": 2000 if quick else 4000,
        "learning_rate": 0.005,
        "batch_size": 32,
        "trial_steps": 100 if quick else 150,
        "seed_trial_steps": 50,
        "n_levels": 15 if quick else 21,
        "starts_per_level": 32,
        "start_noise": 0.05,
        "max_solver_iters": 500,
        "rotation_tolerance": 0.15,
    }


def rotation_of(eigvals: np.ndarray) -> tuple[float, float]:
    """``(|arg μ|, |μ|)`` of the leading unstable complex multiplier, or ``(nan, nan)``.

    Args:
        eigvals: ``(n,)`` multipliers of one fixed point.
    """
    mu = np.asarray(eigvals)
    cand = mu[(np.abs(mu) > 1.0) & (np.abs(mu.imag) > 1e-9)]
    if cand.size == 0:
        return float("nan"), float("nan")
    lead = cand[np.argmax(np.abs(cand))]
    return float(abs(np.angle(lead))), float(abs(lead))


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0,
        forward: str | None = None) -> ReproductionResult:
    """Train the sine-wave generator and compare each fixed point's rotation with ``ω``.

    Args:
        out_dir: directory for ``sine_wave.png`` and ``sine_wave.json`` (created).
        quick: a smaller network, shorter trials and training (tests).
        seed: PRNG seed of training and fixed-point starts.

        forward: forward pass to train through, ``"nn.RNN"`` or ``"fast"``; ``None`` (default):
            the one the committed figure was made with (``settings(quick)["forward"]``).
    Returns:
        :class:`~ctrnn_dyn.reproduce._common.ReproductionResult`.
    """
    timer = Timer()
    out = check_run_args(out_dir, quick, seed, forward)
    cfg = with_forward(settings(quick), forward)
    k_train, k_starts = jax.random.split(jax.random.PRNGKey(seed))

    task = SineWave(n_steps=cfg["trial_steps"])
    net = train_network(task, hidden=cfg["hidden"], alpha=cfg["alpha"], noise=cfg["noise"],
                        steps=cfg["steps"], learning_rate=cfg["learning_rate"],
                        batch_size=cfg["batch_size"], key=k_train,
                        forward=cfg["forward"])
    full = task.full_batch()
    _, out_all = rollout(net, full.inputs)
    accuracy = float(task.accuracy(np.asarray(out_all, np.float32), full))
    seed_task = SineWave(n_steps=cfg["seed_trial_steps"])
    seed_full = seed_task.full_batch()
    _, out_seed = rollout(net, seed_full.inputs)
    accuracy_seed_len = float(seed_task.accuracy(np.asarray(out_seed, np.float32), seed_full))

    freqs = task.frequencies
    omegas = freqs[np.round(np.linspace(0, len(freqs) - 1, cfg["n_levels"])).astype(int)]
    batch = task.batch_for(omegas)
    states, outputs = rollout(net, batch.inputs)  # (L, T, n)
    levels = np.asarray(batch.inputs[:, 0, :], np.float64)  # (L, 1)

    # starts: each level's own trajectory (second half) plus noise, and its centre; the
    # input held at that level
    S = cfg["starts_per_level"]
    half = states[:, states.shape[1] // 2:]
    idx = np.asarray(jax.random.randint(k_starts, (len(omegas), S), 0, half.shape[1]))
    noise = np.asarray(jax.random.normal(jax.random.fold_in(k_starts, 1),
                                         (len(omegas), S, states.shape[-1])))
    starts = np.take_along_axis(half, idx[..., None], axis=1) + cfg["start_noise"] * noise
    starts[:, 0] = half.mean(axis=1)  # the centre of each oscillation is the natural start
    starts = starts.reshape(-1, states.shape[-1])
    inputs = np.repeat(levels, S, axis=0)
    logger.info("sine_wave: finding fixed points from %d starts", len(starts))
    fps = find_fixed_points(net.F, starts, inputs, tol_unique=None, outlier_distance_scale=None,
                            max_iters=cfg["max_solver_iters"])

    per_level, chosen, chosen_omega = [], [], []
    for i, w in enumerate(omegas):
        sel = np.flatnonzero(fps.converged[i * S:(i + 1) * S]) + i * S
        if sel.size == 0:
            per_level.append({"omega": w, "input": levels[i, 0], "found": False})
            continue
        centre = half[i].mean(0)
        best = sel[np.argmin(np.linalg.norm(fps.x[sel] - centre, axis=1))]
        chosen.append(best)
        chosen_omega.append(w)
        rot, mod = rotation_of(fps.eigvals[best])
        n_distinct = len(fps[sel].unique(1e-3))
        per_level.append({
            "omega": w, "input": levels[i, 0], "found": True, "q": fps.q[best],
            "n_distinct_fixed_points": n_distinct, "n_unstable": int(fps.n_unstable[best]),
            "stability": str(fps.stability[best]), "rotation_per_step": rot,
            "unstable_pair_modulus": mod, "rotation_over_omega": rot / float(w),
            "leading_multipliers": fps.eigvals[best][:4],
        })
    ratios = np.array([p.get("rotation_over_omega", np.nan) for p in per_level])
    within = np.abs(ratios - 1.0) <= cfg["rotation_tolerance"]  # nan -> False
    fraction = float(np.mean(within))

    claims = {
        "accuracy_1_minus_mse_over_var": accuracy,
        "accuracy_on_seed_50_step_trials": accuracy_seed_len,
        "train_seconds": net.train_seconds,
        "levels": per_level,
        "fraction_rotation_within_tolerance": fraction,
        "n_levels_within_tolerance": int(within.sum()),
        "n_levels": len(omegas),
        "median_abs_relative_error": (float(np.nanmedian(np.abs(ratios - 1.0)))
                                      if np.isfinite(ratios).any() else None),
    }
    checks = {
        "accuracy_at_least_0.9": accuracy >= 0.9,
        "fixed_point_found_at_every_level": all(p["found"] for p in per_level),
        "most_rotations_within_15pct_of_target": fraction > 0.5,
    }

    # ----------------------------------------------------------------------------- figure
    fig = new_figure(15.0, 9.0)
    grid = fig.add_gridspec(2, 3, width_ratios=[1.0, 1.7, 1.0])
    cmap = mpl.colormaps["viridis"]
    norm = mpl.colors.Normalize(vmin=float(omegas.min()), vmax=float(omegas.max()))
    ax = fig.add_subplot(grid[0, 0])
    show = np.round(np.linspace(0, len(omegas) - 1, 3)).astype(int)
    plot.trajectories(outputs[show], np.asarray(batch.targets)[show], ax=ax)
    ax.set_title(f"output vs target, ω = {', '.join(f'{omegas[i]:.2f}' for i in show)}"
                 f"\n(1 − MSE/Var = {accuracy:.3f} over all 400 ω)")
    ax = fig.add_subplot(grid[1, 0])
    plot.loss_curve(net.result.history.loss, steps=net.result.history.step, ax=ax)
    ax.set_title(f"training loss ({cfg['steps']} steps, {net.train_seconds:.0f} s)")
    ax = fig.add_subplot(grid[:, 1], projection="3d")
    pca = TrajectoryPCA(3).fit(half)
    Z = pca.transform(half)
    for i, w in enumerate(omegas):
        ax.plot(Z[i, :, 0], Z[i, :, 1], Z[i, :, 2], color=cmap(norm(w)), lw=0.8)
    if chosen:
        plot.fixed_points_3d(fps[np.asarray(chosen)], pca=pca, ax=ax)
    ax.set_title("PCA of states (second half of each trial) with each input's fixed point\n"
                 f"colour: ω from {omegas.min():.2f} (purple) to {omegas.max():.2f} (yellow)")
    ax = fig.add_subplot(grid[0, 2])
    pick = np.unique(np.round(np.linspace(0, len(chosen) - 1, 4)).astype(int))
    plot.eigenspectrum(fps.eigvals[np.asarray(chosen)[pick]],
                       labels=[f"ω = {chosen_omega[j]:.2f}" for j in pick], ax=ax)
    ax.set_xlim(0.4, 1.2)
    ax.set_ylim(-0.6, 0.6)
    ax.set_title("multipliers at the fixed points (discrete, zoomed)")
    ax = fig.add_subplot(grid[1, 2])
    rot = np.array([p.get("rotation_per_step", np.nan) for p in per_level])
    line = np.linspace(0.08, 0.52, 10)
    ax.fill_between(line, line * (1 - cfg["rotation_tolerance"]),
                    line * (1 + cfg["rotation_tolerance"]), color="0.9", label="±15 %")
    ax.plot(line, line, color="0.4", lw=0.8, label="arg μ = ω")
    ax.scatter(omegas, rot, c=[cmap(norm(w)) for w in omegas], edgecolors="k", zorder=3,
               label="fixed point")
    ax.set_xlabel("target frequency ω (rad/step)")
    ax.set_ylabel("|arg μ| of unstable pair (rad/step)")
    ax.set_title(f"rotation vs target: {int(within.sum())}/{len(omegas)} within 15 %")
    ax.legend(frameon=False, fontsize="small")
    fig.suptitle(f"Sine-wave generator CT-RNN (n = {cfg['hidden']}, α = {cfg['alpha']}, "
                 f"{cfg['trial_steps']}-step trials): oscillation = rotation around a fixed point")
    return write_reproduction(out, NAME, fig, claims=claims, checks=checks, settings=cfg,
                              quick=quick, seed=seed, timer=timer)
