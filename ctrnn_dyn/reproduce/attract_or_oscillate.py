r"""Attract or oscillate: two mechanisms for the modulo-3 "SET" task, told apart by analysis.

The seed author's study (16,128 trained networks) found that CT-RNNs trained on the modulo-3
task (:class:`ctrnn_dyn.tasks.ModuloThree`: three colour stimuli, report whether
:math:`a + b + c \equiv 0 \pmod 3`) solve it in one of two ways depending on the Euler fraction
:math:`\alpha = dt/\tau`: with :math:`\alpha = 0.1` by **fixed-point attractors** (a lattice of
stable points in PCA space, one per running sum), with :math:`\alpha = 1.0` by an
**oscillation** (a limit cycle under zero input whose phase holds the running sum).

We train ``settings["networks"]`` networks per :math:`\alpha` and, under zero input, run
:func:`ctrnn_dyn.attractors.classify_dynamics` from states each network visits during trials:
the verdict (fixed point / limit cycle / …) comes from Lyapunov exponents, speeds and returns,
never from :math:`\alpha`. For the fixed-point network we also find its stable fixed points;
for the oscillating one, its cycle's period and Floquet multipliers
(:func:`ctrnn_dyn.attractors.find_limit_cycle`). A network counts as trained when its accuracy
on *fresh* trials (new onsets; every colour triple) exceeds 0.9; the mechanism claim is the
majority verdict of the trained networks.

Training as the seed author trained (why :math:`\alpha = 1` needs it). The label is a
third-order function of the colours: no single colour and no pair predicts it. On fresh trials
every step an :math:`\alpha = 1` network (a discrete-time RNN, whose state after a stimulus
also depends on *when* it came) stays on the chance plateau (MSE 1.0; accuracy about 0.5 after
3000–8000 steps for every learning rate, batch, initialisation, noise and loss we tried); an
:math:`\alpha = 0.1` network, a leaky integrator that holds the colour sum regardless of
timing, learns either way. The seed author trained on a *fixed* set — 15 trials per rejecting
colour triple and 30 per accepting one (540 trials), 2500 epochs at a learning rate of 1e-4 —
and so do we (:class:`~ctrnn_dyn.tasks.FixedTrials`, :func:`training_trials`; learning rate 1e-3 for
:math:`\alpha = 1`, 6000 steps). The network first fits the trials it sees and then, in about
half of the runs, generalises to fresh trials; the others memorise (training-set accuracy
about 1, fresh trials about 0.5), which is why several networks are trained.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn import plot
from ctrnn_dyn.attractors import circle_rotation, classify_dynamics, find_limit_cycle
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
    with_forward,
    write_reproduction,
)
from ctrnn_dyn.tasks import ALL_COLOUR_COMBINATIONS, Batch, FixedTrials, ModuloThree

__all__ = ["NAME", "run", "settings", "EXPECTED", "training_trials"]

NAME = "attract_or_oscillate"
#: The seed author's finding: the mechanism each alpha leads to.
EXPECTED = {0.1: "fixed point", 1.0: "limit cycle"}
logger = logging.getLogger(__name__)


def settings(quick: bool) -> dict:
    """Sizes and hyper-parameters of the full (``quick=False``) or reduced run."""
    return {
        "alphas": [0.1, 1.0],
        # alpha = 1 needs the full network and training to leave the chance plateau: the quick
        # run stops at the first trained network and analyses more briefly, it is not smaller
        "hidden": 100,
        "forward": "nn.RNN",  # the pass the committed figure was trained through
        "noise": 0.1,
        "zero_carry": True,
        # the seed author's training set: a fixed set of trials, 15 per rejecting colour triple
        # and 30 per accepting one (540 trials, balanced labels), revisited every epoch
        "train_trials_per_triple": {"rejecting": 15, "accepting": 30},
        "steps": {"0.1": 800 if quick else 2000, "1.0": 6000},
        # networks trained per alpha (different seeds); about half of the alpha = 1.0 ones
        # generalise beyond the training set (see the module docstring)
        "networks": {"0.1": 1, "1.0": 3},
        "stop_at_first_trained": quick,
        "learning_rate": {"0.1": 0.005, "1.0": 0.001},
        "loss": "mse",
        "batch_size": 64,
        "test_trials": 1024,
        "analysis_trials": 54,
        "classify_starts": 24 if quick else 32,
        "classify_transient_steps": 1000 if quick else 3000,
        "classify_steps": 4000 if quick else 20_000,
        "fixed_point_starts": 256 if quick else 1024,
        "start_noise": 0.1,
    }


def training_trials(task: ModuloThree, per_triple: dict, *, key: jax.Array,
                    codes: bool = False) -> Batch:
    """The seed author's fixed training set: ``per_triple["accepting"]`` trials of each colour
    triple with ``a + b + c ≡ 0 (mod 3)`` and ``per_triple["rejecting"]`` of every other one,
    onsets drawn as :meth:`ModuloThree.sample` draws them. ``codes=True``: the same trials
    with inputs the ``(N, T, 3)`` colour codes (:meth:`ModuloThree.sample_codes`)."""
    parts = []
    for i, combo in enumerate(ALL_COLOUR_COMBINATIONS):
        n = per_triple["accepting" if sum(combo) % 3 == 0 else "rejecting"]
        sub = dataclasses.replace(task, combinations=(combo,))
        draw = sub.sample_codes if codes else sub.sample
        parts.append(draw(jax.random.fold_in(key, i), int(n)))
    return Batch(*(jnp.concatenate(leaves) for leaves in zip(*parts, strict=True)))


def _one_network(alpha: float, cfg: dict, key: jax.Array) -> dict:
    """Train one network at ``alpha`` on the fixed trial set and analyse it."""
    k_train, k_trials, k_starts, k_fp, k_data, k_test = jax.random.split(key, 6)
    task = ModuloThree()
    codes = training_trials(task, cfg["train_trials_per_triple"], key=k_data, codes=True)
    data = task.decode_codes(codes)
    tag = str(alpha)
    net = train_network(FixedTrials(data, task, codes), hidden=cfg["hidden"], alpha=alpha,
                        noise=cfg["noise"], steps=cfg["steps"][tag],
                        learning_rate=cfg["learning_rate"][tag], batch_size=cfg["batch_size"],
                        key=k_train, loss=cfg["loss"], zero_carry=cfg["zero_carry"],
                        forward=cfg["forward"])
    # accuracy on fresh trials (every colour triple, new onsets), and on the training set
    test = task.sample(k_test, cfg["test_trials"])
    accuracy = float(task.accuracy(np.asarray(rollout(net, test.inputs)[1], np.float32), test))
    train_accuracy = float(task.accuracy(np.asarray(rollout(net, data.inputs)[1], np.float32),
                                         data))
    batch = task.sample(k_trials, cfg["analysis_trials"])
    states, outputs = rollout(net, batch.inputs)
    label = np.asarray(batch.targets[:, -1, 0])
    # starts: states visited after the first stimulus, under zero input from then on
    starts = np.asarray(sample_initial_states(states[:, task.first_onset + 5:],
                                              cfg["classify_starts"], noise_scale=0.0,
                                              key=k_starts), np.float64)
    zero = np.zeros(task.input_size)
    logger.info("alpha=%g: classify_dynamics, fixed points and cycles", alpha)
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
    for i in [i for i, lab in enumerate(verdict.labels) if lab == "limit cycle"][:3]:
        cycle = find_limit_cycle(net.F, starts[i], zero, dt=alpha)
        if cycle.converged:
            break
    # the oscillation's rotation per step, measured on the settled orbit of a cycling start
    osc = [i for i, lab in enumerate(verdict.labels) if lab in ("limit cycle", "quasi-periodic")]
    rotation = (circle_rotation(net.F, verdict.final_state[osc[0]], zero)._asdict() if osc
                else None)
    # the settled oscillation itself (points, for the picture: one step jumps along it)
    u0 = np.zeros(task.input_size, np.float32)
    circle = (np.asarray(jax.jit(lambda x: simulate(net.F, x, u0, n_steps=1000))(
        jnp.asarray(verdict.final_state[osc[0]], jnp.float32))) if osc else None)
    # zero-input continuation of a few end-of-trial states, for the picture
    tails = np.asarray(jax.jit(jax.vmap(lambda x: simulate(net.F, x, u0, n_steps=300)))(
        states[:6, -1]))
    return {
        "net": net, "states": states, "label": label, "fps": fps, "cycle": cycle,
        "tails": tails, "verdict": verdict, "circle": circle,
        "claims": {
            "alpha": alpha,
            "accuracy": accuracy,
            "train_set_accuracy": train_accuracy,
            "n_train_trials": int(data.inputs.shape[0]),
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
            "oscillation": None if rotation is None else {
                **rotation, "period_tau": (None if rotation["period_steps"] is None
                                           else rotation["period_steps"] * alpha),
                "lyapunov_per_tau": verdict.lyapunov[osc[0]],
                "zero_tol_per_tau": float(verdict.zero_tol[osc[0]]),
            },
        },
    }


def _one_alpha(alpha: float, cfg: dict, key: jax.Array) -> dict:
    """Train ``cfg["networks"][alpha]`` networks (keys ``fold_in(key, j)``) and summarise
    (with ``cfg["stop_at_first_trained"]``, up to that many: stop at the first trained one).

    A network counts as *trained* when its accuracy on fresh trials exceeds 0.9; the figure
    shows the first trained one (else the most accurate). The mechanism tally is over the
    trained networks only; every network's accuracy and verdict is in the JSON.
    """
    nets = []
    for j in range(cfg["networks"][str(alpha)]):
        logger.info("alpha=%g: network %d of at most %d", alpha, j + 1,
                    cfg["networks"][str(alpha)])
        nets.append(_one_network(alpha, cfg, jax.random.fold_in(key, j)))
        if cfg["stop_at_first_trained"] and nets[-1]["claims"]["accuracy"] > 0.9:
            break
    acc = [r["claims"]["accuracy"] for r in nets]
    trained = [j for j, a in enumerate(acc) if a > 0.9]
    shown = trained[0] if trained else int(np.argmax(acc))
    out = dict(nets[shown])
    tally = Counter(nets[j]["claims"]["mechanism"] for j in trained)
    out["claims"] = {
        **nets[shown]["claims"],
        "shown_network": shown,
        "n_networks": len(nets),
        "n_trained": len(trained),
        "mechanisms_of_trained": dict(tally),
        "networks": [{k: r["claims"][k] for k in (
            "accuracy", "train_set_accuracy", "mechanism", "classify_labels",
            "largest_lyapunov_median_per_tau", "n_stable_fixed_points_zero_input")}
            for r in nets],
    }
    return out


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0,
        forward: str | None = None) -> ReproductionResult:
    """Train the modulo-3 task at α = 0.1 and α = 1.0 and name each mechanism by analysis.

    Args:
        out_dir: directory for ``attract_or_oscillate.png`` and ``.json`` (created).
        quick: smaller networks and shorter training (tests).
        seed: PRNG seed.

        forward: forward pass to train through, ``"nn.RNN"`` or ``"fast"``; ``None`` (default):
            the one the committed figure was made with (``settings(quick)["forward"]``).
    Returns:
        :class:`~ctrnn_dyn.reproduce._common.ReproductionResult`.
    """
    timer = Timer()
    out = check_run_args(out_dir, quick, seed, forward)
    cfg = with_forward(settings(quick), forward)
    key = jax.random.PRNGKey(seed)
    res = {a: _one_alpha(a, cfg, jax.random.fold_in(key, i))
           for i, a in enumerate(cfg["alphas"])}
    claims = {f"alpha_{a}": r["claims"] for a, r in res.items()}
    checks = {}
    for a, r in res.items():
        c = r["claims"]
        checks[f"alpha_{a}_trained_accuracy_above_0.9"] = c["n_trained"] >= 1
        # the mechanism of the trained networks (majority), named by classify_dynamics
        tally = Counter(c["mechanisms_of_trained"])
        checks[f"alpha_{a}_classified_{EXPECTED[a].replace(' ', '_')}"] = (
            c["n_trained"] >= 1 and tally[EXPECTED[a]] > c["n_trained"] / 2)
    checks["alpha_0.1_has_several_stable_fixed_points"] = (
        res[0.1]["claims"]["n_stable_fixed_points_zero_input"] >= 2)
    # the oscillation characterised: a refined cycle (period, Floquet multipliers), or -- for an
    # invariant circle find_limit_cycle cannot refine -- its rotation per step with one zero
    # Lyapunov exponent (along the circle) and the next one negative (attracting)
    osc = res[1.0]["claims"]["oscillation"]
    checks["alpha_1.0_oscillation_period_measured"] = bool(
        (res[1.0]["cycle"] is not None and res[1.0]["cycle"].converged)
        or (osc is not None and osc["period_steps"] is not None
            and abs(osc["lyapunov_per_tau"][0]) <= osc["zero_tol_per_tau"]
            and osc["lyapunov_per_tau"][1] < 0))

    # ----------------------------------------------------------------------------- figure
    fig = new_figure(18.0, 9.5)
    grid = fig.add_gridspec(2, 4, width_ratios=[1.2, 1.2, 0.8, 0.9])
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
        if r["circle"] is not None:
            P = pca.transform(r["circle"])
            ax.scatter(P[:, 0], P[:, 1], P[:, 2], s=1.5, color="k", depthshade=False,
                       label="settled oscillation (1000 steps, points)")
            ax.legend(fontsize="x-small", frameon=False, loc="upper left")
        if r["cycle"] is not None and r["cycle"].converged:
            orb = pca.transform(r["cycle"].orbit)
            ax.plot(orb[:, 0], orb[:, 1], orb[:, 2], color="k", lw=2.0,
                    label=f"limit cycle, period {r['cycle'].period:.2f} steps")
            ax.legend(fontsize="small", frameon=False, loc="upper left")
        osc = c["oscillation"]
        extra = ("" if osc is None or osc["period_steps"] is None else
                 f"\noscillation: {osc['rotation_per_step']:.3f} rad/step, period "
                 f"{osc['period_steps']:.2f} steps; λ₁ = {osc['lyapunov_per_tau'][0]:+.1e}, "
                 f"λ₂ = {osc['lyapunov_per_tau'][1]:+.2f} /τ")
        ax.set_title(f"α = {a}: 300 steps of zero input after each trial{extra}", fontsize=9)
        ax = fig.add_subplot(grid[row, 2])
        labels = list(c["classify_labels"])
        ax.bar(labels, [c["classify_labels"][k] for k in labels],
               color=plot.OKABE_ITO["bluish green"])
        ax.yaxis.set_label_position("right")
        ax.yaxis.tick_right()
        ax.set_ylabel("starts (zero input)")
        ax.set_title(f"α = {a}, network #{c['shown_network']}: classify_dynamics says "
                     f"'{c['mechanism']}'\n(accuracy {c['accuracy']:.3f}; median λ₁ = "
                     f"{c['largest_lyapunov_median_per_tau']:+.3f}/τ)", fontsize=9)
        # every network trained at this alpha: accuracy on fresh trials and its verdict
        ax = fig.add_subplot(grid[row, 3])
        nets = c["networks"]
        idx = np.arange(len(nets))
        ax.bar(idx - 0.2, [n["train_set_accuracy"] for n in nets], 0.4, color="0.75",
               label="training set")
        ax.bar(idx + 0.2, [n["accuracy"] for n in nets], 0.4,
               color=plot.OKABE_ITO["blue"], label="fresh trials")
        ax.axhline(0.9, color="k", ls=":", lw=0.8)
        for j, n in enumerate(nets):
            ax.text(j, 0.03, n["mechanism"], rotation=90, ha="center", va="bottom",
                    fontsize=8, color="w")
        ax.set_xticks(idx, [f"#{j}" for j in idx])
        ax.set_ylim(0, 1.25)
        ax.set_ylabel("accuracy")
        ax.set_title(f"α = {a}: {c['n_trained']} of {c['n_networks']} networks trained\n"
                     f"(verdicts of trained: {c['mechanisms_of_trained'] or 'none'})",
                     fontsize=9)
        ax.legend(fontsize="x-small", frameon=False, loc="upper left", ncol=2)
    verdicts = ", ".join(
        f"α = {a}: {r['claims']['mechanisms_of_trained'] or 'none'} among "
        f"{r['claims']['n_trained']}/{r['claims']['n_networks']} trained networks"
        for a, r in res.items())
    fig.suptitle("Modulo-3 task, expected (seed author): fixed points at α = 0.1, limit cycle at "
                 f"α = 1.0\nclassify_dynamics says {verdicts}")
    return write_reproduction(out, NAME, fig, claims=claims, checks=checks, settings=cfg,
                              quick=quick, seed=seed, timer=timer)
