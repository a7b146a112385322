r"""Attract or oscillate: two mechanisms for the modulo-3 "SET" task, told apart by analysis.

The seed author's study (16,128 trained networks) found that CT-RNNs trained on the modulo-3
task (:class:`ctrnn_dyn.tasks.ModuloThree`: three colour stimuli, report whether
:math:`a + b + c \equiv 0 \pmod 3`) solve it in one of two ways depending on the Euler fraction
:math:`\alpha = dt/\tau`: with :math:`\alpha = 0.1` by **fixed-point attractors** (a lattice of
stable points in PCA space, one per running sum), with :math:`\alpha = 1.0` by an
**oscillation** (a limit cycle under zero input whose phase holds the running sum).

We train one network per :math:`\alpha` and, under zero input, run
:func:`ctrnn_dyn.attractors.classify_dynamics` from states the network visits during trials:
the verdict (fixed point / limit cycle / …) comes from Lyapunov exponents, speeds and returns,
never from :math:`\alpha`. For the fixed-point network we also find its stable fixed points;
for the oscillating one, its cycle's period and Floquet multipliers
(:func:`ctrnn_dyn.attractors.find_limit_cycle`).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import jax
import numpy as np

from ctrnn_dyn import plot
from ctrnn_dyn.attractors import classify_dynamics, find_limit_cycle
from ctrnn_dyn.dynamics import simulate
from ctrnn_dyn.fixed_points import find_fixed_points, sample_initial_states
from ctrnn_dyn.pca import TrajectoryPCA
from ctrnn_dyn.reproduce._common import (
    ReproductionResult,
    Timer,
    check_run_args,
    new_figure,
    rollout,
    train_network,
    write_reproduction,
)
from ctrnn_dyn.tasks import ALL_COLOUR_COMBINATIONS, ModuloThree

__all__ = ["NAME", "run", "settings", "EXPECTED"]

NAME = "attract_or_oscillate"
#: The seed author's finding: the mechanism each alpha leads to.
EXPECTED = {0.1: "fixed point", 1.0: "limit cycle"}
logger = logging.getLogger(__name__)


def settings(quick: bool) -> dict:
    """Sizes and hyper-parameters of the full (``quick=False``) or reduced run."""
    return {
        "alphas": [0.1, 1.0],
        "hidden": 48 if quick else 100,
        "noise": 0.1,
        "zero_carry": True,
        "balanced_labels": True,
        "steps": {"0.1": 800 if quick else 2000, "1.0": 1500 if quick else 3000},
        "learning_rate": {"0.1": 0.005, "1.0": 0.003},
        "loss": "mse",
        "batch_size": 64,
        "analysis_trials": 54,
        "classify_starts": 24 if quick else 64,
        "classify_transient_steps": 1000 if quick else 3000,
        "classify_steps": 4000 if quick else 20_000,
        "fixed_point_starts": 256 if quick else 1024,
        "start_noise": 0.1,
    }


def _one_alpha(alpha: float, cfg: dict, key: jax.Array) -> dict:
    k_train, k_trials, k_starts, k_fp = jax.random.split(key, 4)
    combos = ALL_COLOUR_COMBINATIONS
    if cfg["balanced_labels"]:  # as many +1 trials as -1 trials, as in the seed author's data
        combos = combos + tuple(c for c in ALL_COLOUR_COMBINATIONS if sum(c) % 3 == 0)
    task = ModuloThree(combinations=combos)
    tag = str(alpha)
    net = train_network(task, hidden=cfg["hidden"], alpha=alpha, noise=cfg["noise"],
                        steps=cfg["steps"][tag], learning_rate=cfg["learning_rate"][tag],
                        batch_size=cfg["batch_size"], key=k_train, loss=cfg["loss"],
                        zero_carry=cfg["zero_carry"])
    batch = task.sample(k_trials, cfg["analysis_trials"])
    states, outputs = rollout(net, batch.inputs)
    accuracy = float(task.accuracy(np.asarray(outputs, np.float32), batch))
    label = np.asarray(batch.targets[:, -1, 0])
    # starts: states visited after the first stimulus, under zero input from then on
    starts = np.asarray(sample_initial_states(states[:, task.first_onset + 5:],
                                              cfg["classify_starts"], noise_scale=0.0,
                                              key=k_starts), np.float64)
    zero = np.zeros(task.input_size)
    verdict = classify_dynamics(net.F, starts, zero, dt=alpha,
                                n_transient=cfg["classify_transient_steps"],
                                n_steps=cfg["classify_steps"])
    counts = Counter(verdict.labels)
    mechanism = counts.most_common(1)[0][0]
    # fixed points under zero input (stable ones are the attractors)
    fp_starts = sample_initial_states(states, cfg["fixed_point_starts"],
                                      noise_scale=cfg["start_noise"], key=k_fp)
    fps = find_fixed_points(net.F, np.asarray(fp_starts), zero).fixed
    n_stable = len(fps.stable) if len(fps) else 0
    cycle = None
    cyc_idx = [i for i, lab in enumerate(verdict.labels) if lab == "limit cycle"]
    if cyc_idx:
        cycle = find_limit_cycle(net.F, starts[cyc_idx[0]], zero, dt=alpha)
    # zero-input continuation of a few end-of-trial states, for the picture
    u0 = np.zeros(task.input_size, np.float32)
    tails = np.asarray(jax.jit(jax.vmap(lambda x: simulate(net.F, x, u0, n_steps=300)))(
        states[:6, -1]))
    return {
        "net": net, "states": states, "label": label, "fps": fps, "cycle": cycle,
        "tails": tails, "verdict": verdict,
        "claims": {
            "alpha": alpha,
            "accuracy": accuracy,
            "train_seconds": net.train_seconds,
            "classify_labels": dict(counts),
            "mechanism": mechanism,
            "largest_lyapunov_median_per_tau": float(np.median(verdict.lyapunov[:, 0])),
            "n_zero_exponents_median": float(np.median(verdict.n_zero)),
            "n_fixed_points_zero_input": len(fps),
            "n_stable_fixed_points_zero_input": n_stable,
            "stability_counts": {str(k): int(v) for k, v in Counter(
                [str(s) for s in (fps.stability if len(fps) else [])]).items()},
            "limit_cycle": None if cycle is None else {
                "converged": cycle.converged, "kind": cycle.kind,
                "period_steps": cycle.period, "period_tau": cycle.period_time,
                "floquet_multipliers_abs": np.sort(np.abs(cycle.floquet_multipliers))[::-1][:4],
                "stable": cycle.stable,
            },
        },
    }


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0) -> ReproductionResult:
    """Train the modulo-3 task at α = 0.1 and α = 1.0 and name each mechanism by analysis.

    Args:
        out_dir: directory for ``attract_or_oscillate.png`` and ``.json`` (created).
        quick: smaller networks and shorter training (tests).
        seed: PRNG seed.

    Returns:
        :class:`~ctrnn_dyn.reproduce._common.ReproductionResult`.
    """
    timer = Timer()
    out = check_run_args(out_dir, quick, seed)
    cfg = settings(quick)
    key = jax.random.PRNGKey(seed)
    res = {a: _one_alpha(a, cfg, jax.random.fold_in(key, i))
           for i, a in enumerate(cfg["alphas"])}
    claims = {f"alpha_{a}": r["claims"] for a, r in res.items()}
    checks = {}
    for a, r in res.items():
        c = r["claims"]
        checks[f"alpha_{a}_trained_accuracy_above_0.9"] = c["accuracy"] > 0.9
        checks[f"alpha_{a}_classified_{EXPECTED[a].replace(' ', '_')}"] = (
            c["mechanism"] == EXPECTED[a])
    checks["alpha_0.1_has_several_stable_fixed_points"] = (
        res[0.1]["claims"]["n_stable_fixed_points_zero_input"] >= 2)
    checks["alpha_1.0_limit_cycle_found"] = bool(
        res[1.0]["cycle"] is not None and res[1.0]["cycle"].converged)

    # ----------------------------------------------------------------------------- figure
    fig = new_figure(14.0, 9.5)
    grid = fig.add_gridspec(2, 3)
    for row, (a, r) in enumerate(res.items()):
        c = r["claims"]
        pca = TrajectoryPCA(3).fit(r["states"])
        ax = fig.add_subplot(grid[row, 0], projection="3d")
        Z = pca.transform(r["states"])
        for z, lab in zip(Z[:30], r["label"][:30], strict=False):
            ax.plot(z[:, 0], z[:, 1], z[:, 2], lw=0.5, alpha=0.6,
                    color=plot.OKABE_ITO["blue"] if lab > 0 else plot.OKABE_ITO["vermillion"])
        if len(r["fps"]):
            plot.fixed_points_3d(r["fps"], pca=pca, ax=ax)
        ax.set_title(f"α = {a}: trials (blue: label +1, red: −1)\n"
                     f"{c['n_stable_fixed_points_zero_input']} stable fixed points "
                     "(zero input)", fontsize=9)
        ax = fig.add_subplot(grid[row, 1], projection="3d")
        plot.attractor_3d(r["tails"], pca=pca, ax=ax)
        if r["cycle"] is not None and r["cycle"].converged:
            orb = pca.transform(r["cycle"].orbit)
            ax.plot(orb[:, 0], orb[:, 1], orb[:, 2], color="k", lw=2.0,
                    label=f"limit cycle, period {r['cycle'].period:.2f} steps")
            ax.legend(fontsize="small", frameon=False, loc="upper left")
        ax.set_title(f"α = {a}: 300 steps of zero input after each trial", fontsize=9)
        ax = fig.add_subplot(grid[row, 2])
        labels = list(c["classify_labels"])
        ax.bar(labels, [c["classify_labels"][k] for k in labels],
               color=plot.OKABE_ITO["bluish green"])
        ax.set_ylabel("starts")
        ax.set_title(f"α = {a}: classify_dynamics says '{c['mechanism']}'\n"
                     f"(accuracy {c['accuracy']:.3f}; median λ₁ = "
                     f"{c['largest_lyapunov_median_per_tau']:+.3f}/τ)", fontsize=9)
    verdicts = ", ".join(f"α = {a}: '{r['claims']['mechanism']}' (accuracy "
                         f"{r['claims']['accuracy']:.2f})" for a, r in res.items())
    untrained = [str(a) for a, r in res.items() if r["claims"]["accuracy"] <= 0.9]
    note = (f"\nNOT REPRODUCED: the α = {', '.join(untrained)} network did not learn the task "
            "in this budget" if untrained else "")
    fig.suptitle("Modulo-3 task, expected (seed author): fixed points at α = 0.1, limit cycle at "
                 f"α = 1.0\nclassify_dynamics says {verdicts}{note}")
    return write_reproduction(out, NAME, fig, claims=claims, checks=checks, settings=cfg,
                              quick=quick, seed=seed, timer=timer)
