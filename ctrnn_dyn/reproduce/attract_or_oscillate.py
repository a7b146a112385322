r"""Attract or oscillate: two mechanisms for the modulo-3 "SET" task, told apart by analysis.

The seed author's study (16,128 trained networks) found that CT-RNNs trained on the modulo-3
task (:class:`ctrnn_dyn.tasks.ModuloThree`: three colour stimuli, report whether
:math:`a + b + c \equiv 0 \pmod 3`) solve it in one of two ways depending on the Euler fraction
:math:`\alpha = dt/\tau`: with :math:`\alpha = 0.1` by **fixed-point attractors** (a lattice of
stable points in PCA space, one per running sum), with :math:`\alpha = 1.0` by an
**oscillation** (a limit cycle under zero input whose phase holds the running sum).

We train ``settings["networks"]`` networks per :math:`\alpha` (every one tallied and shown). A
network is *trained* when its accuracy on fresh trials (new onsets, every colour triple)
exceeds ``trained_accuracy``; one that only fits its training set is *memorised* and is not
analysed or classified. For each trained network, under zero input:

* the verdict of :func:`ctrnn_dyn.attractors.classify_dynamics` (fixed point / limit cycle /
  …, from Lyapunov exponents, speeds and returns, never from :math:`\alpha`), from states the
  network visits during trials;
* its fixed points and how many are stable: one attractor per running sum mod 3 needs at
  least three;
* where the state goes: after stimulus ``k = 1, 2, 3`` of each analysis trial the input is
  held at zero for ``relax_steps`` steps; at :math:`\alpha = 0.1` the claim is that the state
  then sits (within ``attractor_radius``) on a stable fixed point that codes the running sum
  :math:`\sum_{i \le k} c_i \bmod 3` (per ``k``, the fraction of trials on the attractor their
  running sum goes to most, each attractor counted for one sum, at least
  ``coding_accuracy``, and at least three attractors reached);
* at :math:`\alpha = 1.0` the oscillation *solved*: a discrete map's attracting closed curve is
  an invariant circle :math:`K` on which the map rotates by :math:`\rho`,
  :math:`F(K(\theta)) = K(\theta + \rho)`, found by Newton on its Fourier parameterisation
  (:func:`solve_invariant_circle`, converged to ``circle_tol`` at its nodes and between them;
  no fallback). Separately, the phase must code the running sum: the relaxed state's time
  shift against a trial without stimuli (its nearest point on that trial's own long orbit,
  ``phase_reference_steps`` steps) is read as the angle in the oscillation's plane, which turns
  ``round(projected_turns)`` times per period (:func:`~ctrnn_dyn.attractors.circle_rotation`);
  a nearest-centroid (circular mean) read-out of that angle must give the running sum after
  each stimulus in at least ``coding_accuracy`` of trials. The JSON also gives the read-out of
  the phase per whole period.

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

Data (``attract_or_oscillate.npz``, NumPy only): every network's parameters under
``net/alpha_<a>_net<j>/`` (``recurrent_kernel``, ``recurrent_bias``, ``input_kernel``,
``output_kernel``, ``output_bias``, ``alpha``); ``alpha_<a>_net<j>/accuracy``,
``/train_set_accuracy`` and ``/status``; for each analysed network its zero-input fixed points
under ``fp/alpha_<a>_net<j>/`` (as :meth:`~ctrnn_dyn.fixed_points.FixedPoints.save` writes
them), ``/running_sums`` ``(B, 3)`` and, where it has stable fixed points,
``/relaxed_states`` ``(B, 3, n)`` float32 (the states after each stimulus and ``relax_steps``
steps of zero input); for a solved circle
``/circle_nodes`` ``(N, n)`` (its values at :math:`\theta_j = 2\pi j/N`),
``/circle_rotation`` and ``/phase_after_stimulus`` ``(B, 3)`` (radians, relative to the
stimulus-free trial).
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
from ctrnn_dyn.attractors import circle_rotation, classify_dynamics
from ctrnn_dyn.dynamics import simulate
from ctrnn_dyn.fixed_points import find_fixed_points, sample_initial_states
from ctrnn_dyn.reproduce._attract_or_oscillate_figure import _figure
from ctrnn_dyn.reproduce._common import (
    ReproductionResult,
    Timer,
    check_run_args,
    network_arrays,
    rollout,
    train_network,
    with_forward,
    write_reproduction,
)
from ctrnn_dyn.reproduce._invariant_circle import circle_phase, solve_invariant_circle
from ctrnn_dyn.reproduce._running_sums import (
    _after_each_stimulus,
    _landing,
    _sequence_of,
    coding_accuracy,
)
from ctrnn_dyn.tasks import ALL_COLOUR_COMBINATIONS, Batch, FixedTrials, ModuloThree

__all__ = ["NAME", "run", "settings", "EXPECTED", "training_trials", "solve_invariant_circle",
           "circle_phase", "coding_accuracy"]

NAME = "attract_or_oscillate"
#: The seed author's finding: the mechanism each alpha leads to.
EXPECTED = {0.1: "fixed point", 1.0: "limit cycle"}
#: Status of a network: generalises to fresh trials, fits only its training set, or neither.
STATUS = ("trained", "memorised", "not trained")
logger = logging.getLogger(__name__)


def settings(quick: bool) -> dict:
    """Sizes and hyper-parameters of the full (``quick=False``) or reduced run."""
    return {
        "alphas": [0.1, 1.0],
        "hidden": 32 if quick else 100,
        "forward": "nn.RNN",  # the pass the committed figure was trained through
        "noise": 0.1,
        "zero_carry": True,
        # the seed author's training set: a fixed set of trials, 15 per rejecting colour triple
        # and 30 per accepting one (540 trials, balanced labels), revisited every epoch
        "train_trials_per_triple": {"rejecting": 15, "accepting": 30},
        # alpha = 1 needs the full network and 6000 steps to leave the chance plateau; the
        # quick run trains too briefly for that and analyses its networks anyway (tests)
        "steps": {"0.1": 300 if quick else 2000, "1.0": 150 if quick else 6000},
        # networks trained per alpha (keys fold_in(key, j)); every one is tallied
        "networks": {"0.1": 1 if quick else 3, "1.0": 1 if quick else 3},
        "analyse_untrained": quick,
        "learning_rate": {"0.1": 0.005, "1.0": 0.001},
        "loss": "mse",
        "batch_size": 64,
        "trained_accuracy": 0.9,
        "test_trials": 512 if quick else 1024,
        "analysis_trials": 54 if quick else 216,
        "classify_starts": 6 if quick else 24,
        "classify_transient_steps": 300 if quick else 3000,
        "classify_steps": 600 if quick else 12_000,
        "fixed_point_starts": 64 if quick else 1024,
        "start_noise": 0.1,
        # after each stimulus: zero input for relax_steps, then read the attractor / phase
        "relax_steps": 200 if quick else 1000,
        "attractor_radius": 1e-2,
        "coding_accuracy": 0.9,
        "circle_points": [33, 65],
        "circle_newton_iters": 8,
        "phase_reference_steps": 600 if quick else 2000,
        "circle_tol": 1e-9,
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
    """Train one network at ``alpha`` on the fixed trial set and, if it generalises (or
    ``analyse_untrained``), analyse it."""
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
    good = cfg["trained_accuracy"]
    status = ("trained" if accuracy > good else
              "memorised" if train_accuracy > good else "not trained")
    claims = {"alpha": alpha, "status": status, "accuracy": accuracy,
              "train_set_accuracy": train_accuracy, "n_train_trials": int(data.inputs.shape[0]),
              "train_seconds": net.train_seconds}
    out = {"net": net, "claims": claims, "params": network_arrays(net.cell, net.params)}
    if status != "trained" and not cfg["analyse_untrained"]:
        return out

    coded = task.sample_codes(k_trials, cfg["analysis_trials"])
    batch = task.decode_codes(coded)
    states, _ = rollout(net, batch.inputs)
    colours, onsets = _sequence_of(np.asarray(coded.inputs), task.stimulus_steps)
    sums = np.cumsum(colours, axis=1) % 3  # running sum after stimulus 1, 2, 3
    zero = np.zeros(task.input_size)
    # the verdict: classify_dynamics under zero input from states visited after stimulus 1
    starts = np.asarray(sample_initial_states(states[:, task.first_onset + 5:],
                                              cfg["classify_starts"], noise_scale=0.0,
                                              key=k_starts), np.float64)
    logger.info("alpha=%g: classify_dynamics, fixed points and cycles", alpha)
    verdict = classify_dynamics(net.F, starts, zero, dt=alpha,
                                n_transient=cfg["classify_transient_steps"],
                                n_steps=cfg["classify_steps"])
    counts = Counter(verdict.labels)
    fp_starts = sample_initial_states(states, cfg["fixed_point_starts"],
                                      noise_scale=cfg["start_noise"], key=k_fp)
    fps = find_fixed_points(net.F, np.asarray(fp_starts), zero).fixed
    stable = fps.stable if len(fps) else fps
    relaxed, t_relaxed = _after_each_stimulus(net, task, states, onsets, cfg["relax_steps"])
    landed, purity = _landing(relaxed, np.asarray(stable.x) if len(stable) else np.zeros((0, 1)),
                              sums, cfg["attractor_radius"])
    claims.update({
        "classify_labels": dict(counts),
        "mechanism": counts.most_common(1)[0][0],
        "largest_lyapunov_median_per_tau": float(np.median(verdict.lyapunov[:, 0])),
        "n_fixed_points_zero_input": len(fps),
        "n_stable_fixed_points_zero_input": len(stable),
        "stability_counts": dict(Counter(str(s) for s in (fps.stability if len(fps) else []))),
        "attractor_of_running_sum_fraction_per_stimulus": purity,
        "n_attractors_reached": int(len(set(landed[landed >= 0].tolist()))),
        "circle": None,
        "phase_codes_running_sum_accuracy_per_stimulus": None,
    })
    out.update({"states": states, "sums": sums, "colours": colours, "fps": fps,
                "relaxed": relaxed, "landed": landed, "verdict": verdict,
                "labels": np.asarray(batch.targets[:, -1, 0])})
    osc = [i for i, lab in enumerate(verdict.labels) if lab in ("limit cycle", "quasi-periodic")]
    if osc:
        x_on = np.asarray(verdict.final_state[osc[0]], np.float64)
        rot = circle_rotation(net.F, x_on, zero)
        u0 = np.zeros(task.input_size, np.float32)
        orbit = np.asarray(jax.jit(lambda x: simulate(net.F, x, u0, n_steps=600))(
            jnp.asarray(x_on, jnp.float32)), np.float64)
        circle = None
        if rot.period_steps is not None:
            m = int(min(len(orbit), np.ceil(3 * rot.period_steps)))
            circle = solve_invariant_circle(net.F, orbit[:m], zero, rot.rotation_per_step,
                                            n_points=tuple(cfg["circle_points"]),
                                            max_iters=cfg["circle_newton_iters"],
                                            tol=cfg["circle_tol"])
        claims["circle"] = {
            "rotation_per_step_estimate": rot.rotation_per_step,
            "period_steps_estimate": rot.period_steps,
            "lyapunov_per_tau": verdict.lyapunov[osc[0]],
            "zero_tol_per_tau": float(verdict.zero_tol[osc[0]]),
            **({} if circle is None else {
                "solved": circle["converged"], "rotation_per_step": circle["rotation"],
                "period_steps": 2 * np.pi / abs(circle["rotation"]),
                "residual": circle["residual"],
                "midpoint_residual": circle["midpoint_residual"],
                "newton_iterations": circle["iterations"]}),
        }
        out["orbit"] = orbit
        if circle is not None and circle["converged"]:
            out["circle"] = circle
        if rot.period_steps is not None:
            # the phase after each stimulus against a trial without stimuli at the same time:
            # the stimulus-free trial's own orbit, run on for ``phase_reference_steps`` steps,
            # is the ruler; a relaxed state at time t whose nearest ruler point is at time s is
            # s - t steps ahead of the stimulus-free trial
            T0 = int(t_relaxed.max()) + 1
            blank = np.asarray(jax.jit(lambda x: simulate(
                net.F, x, u0, n_steps=T0 + cfg["phase_reference_steps"]))(
                jnp.zeros(cfg["hidden"], jnp.float32)), np.float64)
            ruler = blank[cfg["relax_steps"]:]
            X = relaxed.reshape(-1, relaxed.shape[-1])
            d2 = (np.sum(X**2, 1)[:, None] - 2 * X @ ruler.T + np.sum(ruler**2, 1)[None, :])
            s_near = np.argmin(d2, axis=1) + cfg["relax_steps"]
            dist = np.sqrt(np.maximum(d2[np.arange(len(X)), s_near - cfg["relax_steps"]], 0))
            # the angle in the oscillation's plane turns ``turns`` times per period
            # (circle_rotation's projected turns): that angle is the phase the code is read in
            turns = max(1, int(round(rot.projected_turns)))
            shift = rot.rotation_per_step * (s_near - t_relaxed.ravel())
            dphase = np.angle(np.exp(1j * turns * shift)).reshape(sums.shape)
            once = np.angle(np.exp(1j * shift)).reshape(sums.shape)
            acc = [coding_accuracy(dphase[:, k], sums[:, k], circular=True) for k in range(3)]
            claims["phase_codes_running_sum_accuracy_per_stimulus"] = acc
            claims["circle"]["turns_per_period_in_the_oscillation_plane"] = turns
            claims["circle"]["phase_per_period_codes_running_sum_accuracy_per_stimulus"] = [
                coding_accuracy(once[:, k], sums[:, k], circular=True) for k in range(3)]
            claims["circle"]["max_distance_of_relaxed_states_to_the_orbit"] = float(dist.max())
            claims["circle"]["orbit_diameter"] = float(np.max(np.linalg.norm(
                ruler[:200, None] - ruler[None, :200], axis=-1)))
            out["dphase"] = dphase
    return out


def _one_alpha(alpha: float, cfg: dict, key: jax.Array) -> dict:
    """Train ``cfg["networks"][alpha]`` networks (keys ``fold_in(key, j)``) and tally them.

    The figure shows the first trained network (else the first one). The mechanism tally is
    over the trained networks only (the memorising ones are labelled so); every network's
    status and numbers are in the JSON.
    """
    nets = []
    for j in range(cfg["networks"][str(alpha)]):
        logger.info("alpha=%g: network %d of %d", alpha, j + 1, cfg["networks"][str(alpha)])
        nets.append(_one_network(alpha, cfg, jax.random.fold_in(key, j)))
    status = [r["claims"]["status"] for r in nets]
    trained = [j for j, s in enumerate(status) if s == "trained"]
    shown = trained[0] if trained else 0
    return {
        "nets": nets, "shown": shown,
        "claims": {
            "n_networks": len(nets), "n_trained": len(trained),
            "n_memorised": status.count("memorised"), "n_not_trained": status.count("not trained"),
            "mechanisms_of_trained": dict(Counter(nets[j]["claims"]["mechanism"]
                                                  for j in trained)),
            "shown_network": shown,
            "networks": [r["claims"] for r in nets],
        },
    }


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0,
        forward: str | None = None) -> ReproductionResult:
    """Train the modulo-3 task at α = 0.1 and α = 1.0 and name each mechanism by analysis.

    Args:
        out_dir: directory for ``attract_or_oscillate.png``/``.pdf``/``.json``/``.npz``.
        quick: one briefly trained network per α, analysed anyway (tests).
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
    need = cfg["coding_accuracy"]
    checks = {}
    for a, r in res.items():
        c = r["claims"]
        tr = [n for n in c["networks"] if n["status"] == "trained"]
        checks[f"alpha_{a}_at_least_3_networks_tallied"] = {
            "pass": c["n_networks"] >= 3, "value": c["n_networks"],
            "criterion": "networks trained and tallied >= 3"}
        checks[f"alpha_{a}_most_networks_generalise_to_fresh_trials"] = {
            "pass": c["n_trained"] > c["n_networks"] / 2,
            "value": {"trained": c["n_trained"], "memorised": c["n_memorised"],
                      "not_trained": c["n_not_trained"]},
            "criterion": f"more than half with accuracy > {cfg['trained_accuracy']} on fresh "
                         "trials"}
        checks[f"alpha_{a}_every_trained_network_classified_"
               f"{EXPECTED[a].replace(' ', '_')}"] = {
            "pass": bool(tr and all(n["mechanism"] == EXPECTED[a] for n in tr)),
            "value": [n["mechanism"] for n in tr],
            "criterion": f"classify_dynamics' majority verdict '{EXPECTED[a]}' for every trained "
                         "network (at least one)"}
        if a == 0.1:
            checks["alpha_0.1_every_trained_network_has_at_least_3_stable_fixed_points"] = {
                "pass": bool(tr and all(n["n_stable_fixed_points_zero_input"] >= 3 for n in tr)),
                "value": [n["n_stable_fixed_points_zero_input"] for n in tr],
                "criterion": "stable fixed points under zero input >= 3 (one per running sum "
                             "mod 3) in every trained network"}
            checks["alpha_0.1_state_after_each_stimulus_lands_on_its_running_sums_attractor"] = {
                "pass": bool(tr and all(
                    min(n["attractor_of_running_sum_fraction_per_stimulus"]) >= need
                    and n["n_attractors_reached"] >= 3 for n in tr)),
                "value": [{"per_stimulus": n["attractor_of_running_sum_fraction_per_stimulus"],
                           "attractors_reached": n["n_attractors_reached"]} for n in tr],
                "criterion": f"after stimulus 1, 2, 3 and {cfg['relax_steps']} steps of zero "
                             f"input, >= {need} of trials on their running sum's attractor "
                             "(each attractor one sum), >= 3 attractors reached, in every "
                             "trained network"}
        else:
            checks["alpha_1.0_invariant_circle_solved_by_newton"] = {
                "pass": bool(tr and all(n["circle"] is not None
                                        and n["circle"].get("solved", False) for n in tr)),
                "value": [None if n["circle"] is None else {
                    k: n["circle"].get(k) for k in ("residual", "midpoint_residual",
                                                    "rotation_per_step")} for n in tr],
                "criterion": f"max |F(K(theta)) - K(theta + rho)| <= {cfg['circle_tol']:g} at "
                             "the nodes and between them, every trained network"}
            checks["alpha_1.0_phase_on_the_circle_codes_the_running_sum"] = {
                "pass": bool(tr and all(
                    n["phase_codes_running_sum_accuracy_per_stimulus"] is not None
                    and min(n["phase_codes_running_sum_accuracy_per_stimulus"]) >= need
                    for n in tr)),
                "value": [n["phase_codes_running_sum_accuracy_per_stimulus"] for n in tr],
                "criterion": f"nearest-centroid read-out of the phase gives the running sum "
                             f"after each stimulus in >= {need} of trials, every trained "
                             "network"}

    # ----------------------------------------------------------------------------- data
    networks, fixed, arrays = {}, {}, {}
    for a, r in res.items():
        for j, n in enumerate(r["nets"]):
            name = f"alpha_{a}_net{j}"
            networks[name] = n["params"]
            arrays[f"{name}/accuracy"] = np.asarray(n["claims"]["accuracy"])
            arrays[f"{name}/train_set_accuracy"] = np.asarray(n["claims"]["train_set_accuracy"])
            arrays[f"{name}/status"] = np.asarray(n["claims"]["status"])
            if "relaxed" in n:
                arrays[f"{name}/running_sums"] = n["sums"]
                if n["claims"]["n_stable_fixed_points_zero_input"]:  # (else nothing to land on)
                    arrays[f"{name}/relaxed_states"] = n["relaxed"].astype(np.float32)
                if len(n["fps"]):
                    fixed[name] = n["fps"]
            if "circle" in n:
                arrays[f"{name}/circle_nodes"] = n["circle"]["nodes"]
                arrays[f"{name}/circle_rotation"] = np.asarray(n["circle"]["rotation"])
            if "dphase" in n:
                arrays[f"{name}/phase_after_stimulus"] = n["dphase"]
    data = {"networks": networks, "fixed_points": fixed, "arrays": arrays}
    with plot.style():
        fig = _figure(cfg, res)
    return write_reproduction(out, NAME, fig, claims=claims, checks=checks, settings=cfg,
                              quick=quick, seed=seed, timer=timer, data=data)
