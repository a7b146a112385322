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
from ctrnn_dyn.pca import TrajectoryPCA
from ctrnn_dyn.reproduce._common import (
    ReproductionResult,
    Timer,
    check_run_args,
    network_arrays,
    new_figure,
    rollout,
    train_network,
    with_forward,
    write_reproduction,
)
from ctrnn_dyn.tasks import ALL_COLOUR_COMBINATIONS, Batch, FixedTrials, ModuloThree

__all__ = ["NAME", "run", "settings", "EXPECTED", "training_trials", "solve_invariant_circle",
           "circle_phase", "coding_accuracy"]

NAME = "attract_or_oscillate"
#: The seed author's finding: the mechanism each alpha leads to.
EXPECTED = {0.1: "fixed point", 1.0: "limit cycle"}
#: Status of a network: generalises to fresh trials, fits only its training set, or neither.
STATUS = ("trained", "memorised", "not trained")
_SUM_COLOURS = (plot.OKABE_ITO["blue"], plot.OKABE_ITO["orange"], plot.OKABE_ITO["bluish green"])
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


# ---------------------------------------------------------------------------------------------
# The invariant circle of a map: Newton on its Fourier parameterisation
# ---------------------------------------------------------------------------------------------


def _resample(K: np.ndarray, n_points: int) -> np.ndarray:
    """Values of the trigonometric interpolant of nodes ``K`` ``(N, n)`` at ``n_points``
    equally spaced phases (zero-padding or truncating its spectrum)."""
    N = len(K)
    C = np.fft.fft(K, axis=0) / N
    k = np.fft.fftfreq(N, 1.0 / N)
    th = 2 * np.pi * np.arange(n_points) / n_points
    return (np.exp(1j * np.outer(th, k)) @ C).real


def solve_invariant_circle(F, orbit: np.ndarray, u: np.ndarray, rotation: float, *,
                           n_points: tuple[int, ...] = (33, 65, 129), max_iters: int = 15,
                           tol: float = 1e-9, gmres_tol: float = 1e-12) -> dict:
    r"""Solve an attracting closed curve of a map as an invariant circle, by Newton.

    A discrete map's oscillation need not close after a whole number of steps: it is an
    *invariant circle* :math:`K(\theta)` on which the map is a rotation by :math:`\rho`,
    :math:`F(K(\theta), u) = K(\theta + \rho)`. With ``K`` represented by its values at ``N``
    nodes :math:`\theta_j = 2\pi j/N` (trigonometric interpolation), Newton solves the ``N·n``
    equations at the nodes and one phase condition :math:`\sum_j \langle K_j - K^0_j,
    \partial_\theta K^0_j\rangle = 0` for the ``N·n + 1`` unknowns ``(K, ρ)``; each Newton
    step is solved matrix-free by GMRES (the Jacobian is block-diagonal ``DF(K_j)`` minus a
    shift in ``θ``). ``K^0`` is fitted to ``orbit`` (phases :math:`\rho t`) with the first
    ``n_points[0]`` nodes; the solution on each node count starts the next one. The residual
    is also evaluated halfway between the final nodes (``midpoint_residual``): small there
    too means the interpolant is the circle, not only the nodes; a circle counts as solved
    when both are at most ``tol``.

    Args:
        F: one-step map ``F(x, u)`` (float64-traceable).
        orbit: ``(M, n)`` consecutive states on the circle.
        u: ``(m,)`` constant input.
        rotation: first guess of ``ρ`` (radians per step, e.g. from
            :func:`~ctrnn_dyn.attractors.circle_rotation`).
        n_points: node counts ``N`` (odd), refined in turn.
        max_iters: Newton iterations per node count.
        tol: converged when ``max |F(K_j) − K(θ_j + ρ)| <= tol`` at the nodes and between them.
        gmres_tol: relative tolerance of each GMRES solve.

    Returns:
        ``{"converged", "rotation", "nodes" (N, n), "residual", "midpoint_residual",
        "iterations", "n_points"}``.
    """
    from scipy.sparse.linalg import LinearOperator, gmres

    if any(N % 2 == 0 or N < 3 for N in n_points):
        raise ValueError(f"n_points must be odd and >= 3, got {n_points}")
    orbit = np.asarray(orbit, np.float64)
    M, n = orbit.shape
    N0 = n_points[0]
    theta = np.mod(rotation * np.arange(M), 2 * np.pi)
    harm = np.arange(1, (N0 - 1) // 2 + 1)
    basis = np.column_stack([np.ones(M), np.cos(np.outer(theta, harm)),
                             np.sin(np.outer(theta, harm))])
    coef, *_ = np.linalg.lstsq(basis, orbit, rcond=None)
    nodes = 2 * np.pi * np.arange(N0) / N0
    K = np.column_stack([np.ones(N0), np.cos(np.outer(nodes, harm)),
                         np.sin(np.outer(nodes, harm))]) @ coef
    rho, iterations = float(rotation), 0

    def shift(V, s, deriv=False):
        k = np.fft.fftfreq(len(V), 1.0 / len(V))
        fac = np.exp(1j * k * s) * (1j * k if deriv else 1.0)
        return np.fft.ifft(np.fft.fft(V, axis=0) * fac[:, None], axis=0).real

    with jax.enable_x64(True):
        uj = jnp.asarray(u, jnp.float64)
        f = jax.jit(jax.vmap(lambda x: F(x, uj)))
        jac = jax.jit(jax.vmap(jax.jacfwd(lambda x: F(x, uj))))
        for N in n_points:
            K = _resample(K, N) if len(K) != N else K
            K0, dK0 = K.copy(), shift(K, 0.0, deriv=True)
            for _ in range(max_iters):
                R = np.asarray(f(jnp.asarray(K))) - shift(K, rho)
                if not np.all(np.isfinite(R)) or np.max(np.abs(R)) <= tol:
                    break
                iterations += 1
                DF = np.asarray(jac(jnp.asarray(K)))  # (N, n, n)
                dSK = shift(K, rho, deriv=True)

                def matvec(v, DF=DF, dSK=dSK, dK0=dK0, N=N, rho=rho):
                    dK, dr = v[:-1].reshape(N, n), v[-1]
                    top = np.einsum("jab,jb->ja", DF, dK) - shift(dK, rho) - dr * dSK
                    return np.concatenate([top.ravel(), [np.sum(dK0 * dK)]])

                A = LinearOperator((N * n + 1, N * n + 1), matvec=matvec, dtype=np.float64)
                rhs = -np.concatenate([R.ravel(), [np.sum((K - K0) * dK0)]])
                step, _ = gmres(A, rhs, rtol=gmres_tol, atol=0.0, restart=100, maxiter=5)
                K = K + step[:-1].reshape(N, n)
                rho += float(step[-1])
        res = float(np.max(np.abs(np.asarray(f(jnp.asarray(K))) - shift(K, rho))))
        half = np.pi / len(K)
        mid = shift(K, half)
        mid_res = float(np.max(np.abs(np.asarray(f(jnp.asarray(mid))) - shift(K, half + rho))))
    ok = bool(np.isfinite(res) and res <= tol and mid_res <= tol)
    return {"converged": ok, "rotation": rho, "nodes": K, "residual": res,
            "midpoint_residual": mid_res, "iterations": iterations, "n_points": len(K)}


def circle_phase(nodes: np.ndarray, X: np.ndarray, n_fine: int = 2048) -> tuple[np.ndarray,
                                                                                   np.ndarray]:
    """Phase ``θ ∈ [0, 2π)`` of the circle point nearest each state, and that distance.

    Args:
        nodes: ``(N, n)`` the circle's values at ``θ_j = 2πj/N``.
        X: ``(B, n)`` states.
        n_fine: points of the circle searched.

    Returns:
        ``(theta (B,), distance (B,))``.
    """
    N = len(nodes)
    k = np.fft.fftfreq(N, 1.0 / N)
    C = np.fft.fft(nodes, axis=0) / N  # (N, n)
    th = 2 * np.pi * np.arange(n_fine) / n_fine
    fine = (np.exp(1j * np.outer(th, k)) @ C).real  # (n_fine, n)
    d2 = (np.sum(X**2, 1)[:, None] - 2 * X @ fine.T + np.sum(fine**2, 1)[None, :])
    j = np.argmin(d2, axis=1)
    return th[j], np.sqrt(np.maximum(d2[np.arange(len(X)), j], 0.0))


# ---------------------------------------------------------------------------------------------
# Trials, running sums, and what the state does after each stimulus
# ---------------------------------------------------------------------------------------------


def _sequence_of(codes: np.ndarray, stimulus_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Colours ``(B, 3)`` and onsets ``(B, 3)`` read back from ``(B, T, 3)`` colour codes."""
    on = codes.sum(-1) > 0
    start = on & ~np.concatenate([np.zeros((len(on), 1), bool), on[:, :-1]], axis=1)
    onsets = np.array([np.flatnonzero(r)[:3] for r in start])
    colours = np.take_along_axis(codes.argmax(-1), onsets, axis=1)
    return colours, onsets


def _after_each_stimulus(net, task, states, onsets, relax_steps):
    """The state just after stimulus ``k`` (``k = 1, 2, 3``) of every trial, then held at zero
    input for ``relax_steps`` steps: ``(relaxed (B, 3, n), absolute time (B, 3))``."""
    t_end = onsets + task.stimulus_steps - 1  # index of the state after the last stimulus step
    x = np.take_along_axis(states, t_end[..., None], axis=1)  # (B, 3, n)
    u0 = np.zeros(task.input_size, np.float32)
    run = jax.jit(jax.vmap(lambda s: simulate(net.F, s, u0, n_steps=relax_steps)[-1]))
    relaxed = np.asarray(run(jnp.asarray(x.reshape(-1, x.shape[-1]), jnp.float32)))
    return relaxed.reshape(x.shape).astype(np.float64), t_end + relax_steps


def coding_accuracy(values: np.ndarray, sums: np.ndarray, *, circular: bool) -> float:
    """Nearest-centroid accuracy of ``values`` ``(B,)`` (phases when ``circular``) at telling
    apart the running sums ``sums`` ``(B,)`` in {0, 1, 2} (centroids: each sum's mean, circular
    mean for phases). 1/3 is chance."""
    cents = []
    for s in range(3):
        v = values[sums == s]
        if v.size == 0:
            return 0.0
        cents.append(np.angle(np.mean(np.exp(1j * v))) if circular else np.mean(v))
    cents = np.asarray(cents)
    d = values[:, None] - cents[None, :]
    if circular:
        d = np.angle(np.exp(1j * d))
    return float(np.mean(np.argmin(np.abs(d), axis=1) == sums))


def _landing(relaxed: np.ndarray, stable_x: np.ndarray, sums: np.ndarray, radius: float):
    """Attractor each relaxed state sits on (``-1``: none within ``radius``) and, per stimulus
    ``k``, the fraction of trials whose attractor is the one its running sum lands on most
    (each attractor counted for one running sum; misses count against)."""
    B, K, n = relaxed.shape
    if len(stable_x) == 0:
        return np.full((B, K), -1), np.zeros(K)
    d = np.linalg.norm(relaxed[:, :, None, :] - stable_x[None, None], axis=-1)
    idx = np.where(d.min(-1) <= radius, d.argmin(-1), -1)
    purity = []
    for k in range(K):
        hit = 0
        for a in range(len(stable_x)):
            sel = idx[:, k] == a
            if sel.any():
                hit += np.bincount(sums[sel, k], minlength=3).max()
        purity.append(hit / B)
    return idx, np.asarray(purity)


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


def _figure(cfg, res):
    fig = new_figure(7.2, 6.4)
    grid = fig.add_gridspec(2, 3, width_ratios=[1.2, 1.0, 0.9])
    for row, (a, r) in enumerate(res.items()):
        n = r["nets"][r["shown"]]
        if "states" not in n:  # nothing trained and nothing analysed at this alpha
            ax = fig.add_subplot(grid[row, :2])
            ax.axis("off")
            ax.text(0.0, 0.5, f"α = {a}: no network generalised to fresh trials, so none is "
                    "analysed", va="center")
        else:
            _state_panels(fig, grid, row, a, n, r["shown"])
        _network_panel(fig.add_subplot(grid[row, 2]), a, r, cfg)
    handles = {}  # one legend for every panel, below the figure
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
                   ncol=4)
    verdicts = "; ".join(
        f"α = {a}: " + (", ".join(f"{k} ({v})" for k, v in r["claims"]["mechanisms_of_trained"]
                                  .items()) or "no trained network")
        for a, r in res.items())
    plot.label_panels(fig)
    fig.suptitle("Modulo-3 task; expected (seed author): fixed points at α = 0.1, an "
                 f"oscillation at α = 1.0\nclassify_dynamics on the trained networks: {verdicts}")
    return fig


def _state_panels(fig, grid, row, a, n, shown):
    c = n["claims"]
    states = n["states"]
    pca = TrajectoryPCA(3).fit(states)
    ax = fig.add_subplot(grid[row, 0], projection="3d")
    Z = pca.transform(states)
    for z, lab in zip(Z[:30], n["labels"][:30], strict=False):
        ax.plot(z[:, 0], z[:, 1], z[:, 2], lw=0.4, alpha=0.6,
                color=plot.OKABE_ITO["blue"] if lab > 0 else plot.OKABE_ITO["vermillion"])
    if len(n["fps"]):
        plot.mark_points(ax, pca.transform(n["fps"].x), plot.point_classes(n["fps"]), size=18)
    if "circle" in n:
        th = 2 * np.pi * np.arange(400) / 400
        P = pca.transform(_circle_curve(n["circle"]["nodes"], th))
        ax.plot(P[:, 0], P[:, 1], P[:, 2], color="k", lw=1.5, label="invariant circle")
    ax.plot([], [], color=plot.OKABE_ITO["blue"], lw=0.8, label="trial, label +1")
    ax.plot([], [], color=plot.OKABE_ITO["vermillion"], lw=0.8, label="trial, label −1")
    ax.set_xlabel("PC1", labelpad=-4)
    ax.set_ylabel("PC2", labelpad=-4)
    ax.set_zlabel("PC3", labelpad=-4)
    ax.tick_params(pad=0)
    circ = c["circle"]
    extra = ""
    if circ is not None and "solved" in circ:
        extra = (f"\ninvariant circle {'solved' if circ['solved'] else 'not solved'} "
                 f"(residual {circ['residual']:.0e})")
    ax.set_title(f"α = {a}, network #{shown} ({c['status']}): {c['mechanism']}\n"
                 f"{c['n_stable_fixed_points_zero_input']} stable of "
                 f"{c['n_fixed_points_zero_input']} fixed points{extra}", fontsize=6.5)
    ax = fig.add_subplot(grid[row, 1])
    sums = n["sums"]
    if a == 0.1:
        R = n["relaxed"].reshape(-1, n["relaxed"].shape[-1])
        P = pca.transform(R)
        s = sums.ravel()
        for v in range(3):
            ax.scatter(P[s == v, 0], P[s == v, 1], s=8, color=_SUM_COLOURS[v], alpha=0.7,
                       label=f"running sum ≡ {v}", zorder=2)
        st = n["fps"].stable if len(n["fps"]) else n["fps"]
        if len(st):
            S = pca.transform(st.x)
            ax.scatter(S[:, 0], S[:, 1], s=60, marker="o", facecolors="none",
                       edgecolors="k", linewidths=0.9, label="stable fixed point", zorder=3)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
        pur = c["attractor_of_running_sum_fraction_per_stimulus"]
        ax.set_title("after stimulus 1, 2, 3 + zero input:\non its running sum's attractor\n"
                     + " / ".join(f"{100 * p:.0f} %" for p in pur))
    elif "dphase" in n:  # phase measured on the stimulus-free trial's orbit
        dph = n["dphase"]
        rng = np.random.default_rng(0)
        for k in range(3):
            for v in range(3):
                sel = sums[:, k] == v
                ax.scatter(dph[sel, k], k + 1 + 0.25 * rng.uniform(-1, 1, sel.sum()), s=6,
                           color=_SUM_COLOURS[v], alpha=0.7,
                           label=f"running sum ≡ {v}" if k == 0 else None)
        ax.set_xlim(-np.pi, np.pi)
        ax.set_xticks([-np.pi, -np.pi / 2, 0, np.pi / 2, np.pi], ["−π", "−π/2", "0", "π/2", "π"])
        ax.set_yticks([1, 2, 3], ["after 1st", "after 2nd", "after 3rd"])
        turns = c["circle"]["turns_per_period_in_the_oscillation_plane"]
        ax.set_xlabel(f"phase vs a trial without stimuli (rad; {turns} turn"
                      f"{'s' * (turns > 1)} per {c['circle']['period_steps_estimate']:.1f} steps)")
        acc = c["phase_codes_running_sum_accuracy_per_stimulus"]
        ax.set_title("after stimulus 1, 2, 3 + zero input:\nphase gives the running sum\n"
                     + " / ".join(f"{100 * p:.0f} %" for p in acc) + " (chance 33 %)")
    else:
        ax.axis("off")
        circ = c["circle"]
        why = ("no oscillation under zero input" if circ is None else
               f"invariant circle not solved\n(residual {circ.get('residual', float('nan')):.1e})")
        ax.text(0.0, 0.5, f"{why}:\nphase coding not measured", va="center")


def _circle_curve(nodes, theta):
    N = len(nodes)
    k = np.fft.fftfreq(N, 1.0 / N)
    C = np.fft.fft(nodes, axis=0) / N
    return (np.exp(1j * np.outer(theta, k)) @ C).real


def _network_panel(ax, a, r, cfg):
    nets = r["claims"]["networks"]
    idx = np.arange(len(nets))
    ax.bar(idx - 0.2, [n["train_set_accuracy"] for n in nets], 0.4,
           color=plot.OKABE_ITO["sky blue"], label="training set")
    ax.bar(idx + 0.2, [n["accuracy"] for n in nets], 0.4, color=plot.OKABE_ITO["blue"],
           label="fresh trials")
    ax.axhline(cfg["trained_accuracy"], color="k", ls=":", lw=0.7)
    ticks = []
    for j, n in enumerate(nets):
        extra = ""
        if n["status"] == "trained":  # the numbers behind each analysed network's claims
            extra = f"\n{n['mechanism']}\n{n['n_stable_fixed_points_zero_input']} stable"
            if a == 0.1:  # the worst stimulus: fraction on its running sum's attractor
                land = n["attractor_of_running_sum_fraction_per_stimulus"]
                extra += f"\nland {100 * min(land):.0f} %"
            elif n["phase_codes_running_sum_accuracy_per_stimulus"] is not None:
                code = n["phase_codes_running_sum_accuracy_per_stimulus"]
                extra += f"\nphase {100 * min(code):.0f} %"
        ticks.append(f"#{j}\n{n['status']}{extra}")
    ax.set_xticks(idx, ticks, fontsize=6)
    ax.set_xlim(-0.6, max(len(nets), 3) - 0.4)
    ax.set_ylim(0, 1.05)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_ylabel("accuracy")
    c = r["claims"]
    ax.set_title(f"α = {a}: all {c['n_networks']} networks\n{c['n_trained']} trained, "
                 f"{c['n_memorised']} memorised")


