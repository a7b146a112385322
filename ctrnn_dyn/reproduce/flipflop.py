r"""Sussillo & Barak (2013), Fig. 2–3: the 3-bit flip-flop's fixed points in 3-D PCA space.

Trains a CT-RNN on the 3-bit flip-flop (:class:`ctrnn_dyn.tasks.FlipFlop`), finds its fixed
points under zero input from states visited in noise-free trials (plus noise), and shows

* one **stable** fixed point per stored bit pattern — the readout
  :math:`y^* = f(x^*)K_\mathrm{out} + b_\mathrm{out}` at each has the pattern's signs — and
* **saddles** between neighbouring memories with one unstable mode (the separatrix crossed when
  one bit flips), and higher-index saddles in between,

with trajectories, in 3-D PCA space. The JSON lists the number of stable points, the readout of
each against the 8 bit patterns, and the number of saddles with their unstable modes.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import jax
import numpy as np

from ctrnn_dyn import plot
from ctrnn_dyn.fixed_points import find_fixed_points, sample_initial_states
from ctrnn_dyn.pca import TrajectoryPCA
from ctrnn_dyn.reproduce._common import (
    ReproductionResult,
    Timer,
    check_run_args,
    new_figure,
    readout,
    rollout,
    train_network,
    with_forward,
    write_reproduction,
)
from ctrnn_dyn.tasks import FlipFlop

__all__ = ["NAME", "run", "settings"]

NAME = "flipflop"
logger = logging.getLogger(__name__)


def settings(quick: bool) -> dict:
    """Sizes and hyper-parameters of the full (``quick=False``) or reduced run."""
    return {
        "n_bits": 3,
        "hidden": 32 if quick else 64,
        "forward": "nn.RNN",  # the pass the committed figure was trained through
        "alpha": 0.5,
        "noise": 0.0,
        "steps": 400 if quick else 1500,
        "learning_rate": 0.01,
        "batch_size": 64,
        "trial_steps": 64,
        "p_pulse": 0.05,
        "analysis_trials": 32 if quick else 64,
        "analysis_trial_steps": 200,
        "fixed_point_starts": 512 if quick else 2048,
        "start_noise": 0.5,
    }


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0,
        forward: str | None = None) -> ReproductionResult:
    """Train, reverse-engineer and draw the 3-bit flip-flop.

    Args:
        out_dir: directory for ``flipflop.png`` and ``flipflop.json`` (created).
        quick: a smaller network and shorter training (tests).
        seed: PRNG seed of training, analysis trials and fixed-point starts.

        forward: forward pass to train through, ``"nn.RNN"`` or ``"fast"``; ``None`` (default):
            the one the committed figure was made with (``settings(quick)["forward"]``).
    Returns:
        :class:`~ctrnn_dyn.reproduce._common.ReproductionResult`.
    """
    timer = Timer()
    out = check_run_args(out_dir, quick, seed, forward)
    cfg = with_forward(settings(quick), forward)
    k_train, k_trials, k_starts = jax.random.split(jax.random.PRNGKey(seed), 3)

    task = FlipFlop(n_bits=cfg["n_bits"], n_steps=cfg["trial_steps"], p_pulse=cfg["p_pulse"])
    net = train_network(task, hidden=cfg["hidden"], alpha=cfg["alpha"], noise=cfg["noise"],
                        steps=cfg["steps"], learning_rate=cfg["learning_rate"],
                        batch_size=cfg["batch_size"], key=k_train,
                        forward=cfg["forward"])

    test_task = FlipFlop(n_bits=cfg["n_bits"], n_steps=cfg["analysis_trial_steps"],
                         p_pulse=cfg["p_pulse"])
    batch = test_task.sample(k_trials, cfg["analysis_trials"])
    states, outputs = rollout(net, batch.inputs)
    accuracy = float(test_task.accuracy(np.asarray(outputs, np.float32), batch))

    starts = sample_initial_states(states, cfg["fixed_point_starts"],
                                   noise_scale=cfg["start_noise"], key=k_starts)
    logger.info("flipflop: finding fixed points from %d starts", len(starts))
    fps = find_fixed_points(net.F, np.asarray(starts)).fixed
    stable = fps.stable
    y_stable = readout(net, stable.x)
    patterns = np.array(list(itertools.product((-1.0, 1.0), repeat=cfg["n_bits"])))
    # which pattern each stable point's readout signs match
    match = [next((i for i, p in enumerate(patterns) if np.array_equal(np.sign(y), p)), None)
             for y in y_stable]
    matched = sorted({m for m in match if m is not None})
    saddle = fps[fps.stability == "saddle"]
    n_unstable_saddle = np.asarray(saddle.n_unstable, int)
    one_mode = saddle[n_unstable_saddle == 1]
    y_one_mode = readout(net, one_mode.x)
    # a 1-mode saddle between two neighbouring memories: two bits at +-1, one bit in between
    between = int(np.sum(np.sum(np.abs(y_one_mode) > 0.5, axis=1) == cfg["n_bits"] - 1))

    claims = {
        "test_accuracy": accuracy,
        "final_train_loss": float(net.result.history.loss[-1]),
        "train_seconds": net.train_seconds,
        "n_fixed_points": len(fps),
        "n_stable": len(stable),
        "stable_readouts": y_stable,
        "stable_matches_pattern": [None if m is None else patterns[m] for m in match],
        "patterns_matched": [patterns[m] for m in matched],
        "n_patterns_matched": len(matched),
        "n_saddles": len(saddle),
        "saddle_unstable_modes": n_unstable_saddle,
        "n_saddles_by_unstable_modes": {int(k): int(v) for k, v in zip(
            *np.unique(n_unstable_saddle, return_counts=True), strict=True)},
        "n_one_mode_saddles_between_two_memories": between,
        "one_mode_saddle_readouts": y_one_mode,
        "stability_counts": {str(k): int(v) for k, v in zip(
            *np.unique(fps.stability, return_counts=True), strict=True)},
        "max_q": float(np.max(fps.q)) if len(fps) else None,
    }
    n_patterns = 2 ** cfg["n_bits"]
    checks = {
        "eight_stable_fixed_points": len(stable) == n_patterns,
        "stable_readouts_match_the_eight_patterns": (
            len(matched) == n_patterns and all(m is not None for m in match)
            and len(match) == n_patterns
        ),
        "saddles_with_one_unstable_mode": len(one_mode) >= 1,
        "one_mode_saddles_lie_between_memories": len(one_mode) >= 1 and between >= 1,
        "task_accuracy_above_0.95": accuracy > 0.95,
    }

    # ----------------------------------------------------------------------------- figure
    fig = new_figure(13.0, 8.0)
    grid = fig.add_gridspec(2, 3, width_ratios=[1.0, 1.0, 1.15])
    ax = fig.add_subplot(grid[0, 0])
    plot.loss_curve(net.result.history.loss, steps=net.result.history.step, ax=ax)
    ax.set_title(f"training loss ({cfg['steps']} steps, {net.train_seconds:.0f} s)")
    ax = fig.add_subplot(grid[1, 0])
    T = 120
    t = np.arange(1, T + 1)
    for i in range(cfg["n_bits"]):
        off = 3.0 * (cfg["n_bits"] - 1 - i)
        col = plot.OKABE_ITO[("blue", "orange", "bluish green")[i % 3]]
        pulses = np.asarray(batch.inputs[0, :T, i])
        ax.vlines(t[pulses != 0], off, off + pulses[pulses != 0], color="0.5", lw=1.5)
        ax.plot(t, off + np.asarray(batch.targets[0, :T, i]), color=col, ls="--", lw=1)
        ax.plot(t, off + np.asarray(outputs[0, :T, i]), color=col, lw=1.2,
                label=f"bit {i + 1}")
    ax.set_yticks([3.0 * k for k in range(cfg["n_bits"])],
                  [f"bit {cfg['n_bits'] - k}" for k in range(cfg["n_bits"])])
    ax.set_xlabel("time step")
    ax.set_title("pulses (grey), output (solid), target (dashed)")
    ax = fig.add_subplot(grid[:, 1:], projection="3d")
    pca = TrajectoryPCA(3).fit(states)
    plot.fixed_points_3d(fps, pca=pca, trajectories=states[:8], ax=ax)
    for x, m in zip(stable.x, match, strict=True):
        if m is not None:
            z = pca.transform(x[None])[0]
            ax.text(z[0], z[1], z[2], " " + "".join("+" if v > 0 else "−" for v in patterns[m]),
                    fontsize=8)
    ax.set_title(
        f"{len(stable)} stable points (memories, labelled by readout sign), "
        f"{len(saddle)} saddles ({len(one_mode)} with 1 unstable mode)"
    )
    fig.suptitle(f"3-bit flip-flop CT-RNN (n = {cfg['hidden']}, α = {cfg['alpha']}): "
                 "fixed points in 3-D PCA space (Sussillo & Barak 2013)")
    return write_reproduction(out, NAME, fig, claims=claims, checks=checks, settings=cfg,
                              quick=quick, seed=seed, timer=timer)
