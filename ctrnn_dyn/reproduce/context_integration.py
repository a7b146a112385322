r"""Mante, Sussillo, Shenoy & Newsome (2013): context-dependent integration by line attractors.

A CT-RNN is trained on :class:`ctrnn_dyn.tasks.ContextIntegration` (two noisy evidence
channels, "motion" and "colour", and a context cue; report the sign of the *cued* channel's
integrated evidence). For each context ``c`` we hold the input at the cue alone
(:math:`u = e_{2+c}`, no evidence) and minimise the speed :math:`q` from states visited during
the stimulus period. The fixed and slow points (``q <= slow_q_max``) form a **line** — an
approximate line attractor — and at each of them one multiplier :math:`\mu \approx 1`
(continuous :math:`\lambda = (\mu - 1)/\alpha \approx 0`) has its right eigenvector along the
line (:func:`ctrnn_dyn.attractors.line_attractor`).

Input and selection vectors: the input vectors are the columns
:math:`b_k = \partial F/\partial u_k = \alpha K_\mathrm{in}^\top e_k` (motion, colour); the
*selection vector* at a slow point is the left eigenvector :math:`\ell` of :math:`\mu \approx 1`
(normalised :math:`\ell^H r = 1`), and :math:`\ell^H b_k` is how far one unit of channel ``k``
moves the state *along the line*. Mante et al.'s mechanism: the cued channel's gain is large,
the other's small, although both input vectors are the same in both contexts.

Why the stimulus lasts 200 steps (20 τ at α = 0.1). A line needs one multiplier within 0.02
of 1, i.e. a memory time constant of at least 1/0.02 = 50 *steps*, and the network only builds
the memory the task needs. With :class:`~ctrnn_dyn.tasks.ContextIntegration`'s default 40-step
stimulus a leak with a 30–70 step time constant already labels almost every trial correctly
(the label is the sign of the evidence actually shown; accuracy 0.99), so training stops short
of a line: the motion context kept a second slow mode (the irrelevant colour input only half
suppressed; median |μ − 1| 0.015 but no separation of time scales) and the colour context
collapsed onto two decision attractors and a saddle (median |μ − 1| 0.033); training twice as
long made the colour context worse (0.041). At 100 stimulus steps the colour context still
failed in 7 of 8 variants (longer training, more units, network noise 0.3, input noise 1.0,
weaker coherences: 0.028–0.053). Mante et al.'s network integrated noisy evidence over 750 ms
at τ = 10 ms (75 τ). With 200 noisy stimulus steps forgetting early evidence costs accuracy on
every weak-coherence trial, and both contexts grow a line of slow points with median
|μ − 1| ≈ 0.01 (seeds 0 and 1, full and quick size). The JSON's ``settings["task"]``
records the trial layout; the coherences and the per-step input noise (0.5) are the task's
defaults.
"""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn import plot
from ctrnn_dyn.attractors import line_attractor
from ctrnn_dyn.fixed_points import find_fixed_points, sample_initial_states
from ctrnn_dyn.linear import input_jacobian
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
from ctrnn_dyn.tasks import ContextIntegration

__all__ = ["NAME", "run", "settings"]

NAME = "context_integration"
CONTEXTS = ("motion", "colour")
logger = logging.getLogger(__name__)


def settings(quick: bool) -> dict:
    """Sizes and hyper-parameters of the full (``quick=False``) or reduced run."""
    return {
        "hidden": 48 if quick else 64,
        "forward": "nn.RNN",  # the pass the committed figure was trained through
        "alpha": 0.1,
        "noise": 0.1,
        "steps": 1000 if quick else 1500,
        "learning_rate": 0.005,
        "batch_size": 64,
        "analysis_trials": 128 if quick else 256,
        "starts_per_context": 256 if quick else 512,
        "slow_q_max": 1e-5,
        "eigenvalue_tolerance": 0.02,
        # 200 noisy evidence steps (20 tau): see the module docstring
        "task": {"n_steps": 220, "stim_start": 5, "stim_steps": 200, "response_steps": 10,
                 "noise_std": 0.5},
    }


def _analyse_context(net, cfg, states, key, c):
    u = np.zeros(4)
    u[2 + c] = 1.0
    starts = sample_initial_states(states, cfg["starts_per_context"], noise_scale=0.0, key=key)
    logger.info("context_integration: slow points of context %d", c)
    fps = find_fixed_points(net.F, np.asarray(starts), u, left_eigvecs=True)
    keep = np.isfinite(fps.q) & (fps.q <= cfg["slow_q_max"])
    pts = fps[keep]
    alpha = cfg["alpha"]
    line = None
    n_modes = net.F.state_size
    mu_near, dist, gains = np.zeros(0, complex), np.zeros(0), np.zeros((0, 2))
    if len(pts):
        mu = pts.eigvals
        k_near = np.argmin(np.abs(mu - 1.0), axis=1)
        rows = np.arange(len(pts))
        mu_near = mu[rows, k_near]
        dist = np.abs(mu_near - 1.0)
        # selection vector (left eigenvector of mu ~ 1, l^H r = 1) against the input vectors
        with jax.enable_x64(True):
            B = np.asarray(jax.vmap(lambda x: input_jacobian(net.F, x, jnp.asarray(u)))(
                jnp.asarray(pts.x)))  # (N, n, 4)
        ell = pts.left_eigvecs[rows, :, k_near]  # (N, n)
        gains = np.abs(np.einsum("nd,ndk->nk", ell.conj(), B)[:, :2])  # motion, colour
    if len(pts) >= 2 and n_modes >= 2:
        line = line_attractor(pts, F=net.F, u=u, eig_tol=cfg["eigenvalue_tolerance"] / alpha,
                              converged_only=False)
    claims = {
        "input": u,
        "n_points": len(pts),
        "n_fixed": int(pts.converged.sum()),
        "max_q": float(np.max(pts.q)) if len(pts) else None,
        "mu_nearest_1": mu_near,
        "abs_mu_minus_1_median": float(np.median(dist)) if len(pts) else None,
        "abs_mu_minus_1_max": float(np.max(dist)) if len(pts) else None,
        "fraction_within_tolerance": (float(np.mean(dist <= cfg["eigenvalue_tolerance"]))
                                      if len(pts) else None),
        "continuous_lambda_median": (float(np.median(((mu_near - 1.0) / alpha).real))
                                     if len(pts) else None),
        "line_attractor": None if line is None else {
            "is_line": line.is_line, "reason": line.reason, "length": line.length,
            "variance_ratio_pc1": float(line.variance_ratio[0]),
            "median_alignment": float(np.median(line.alignment)),
            "median_gap": float(np.median(line.gap)),
        },
        "selection_gain_median": {
            "motion": float(np.median(gains[:, 0])) if len(pts) else None,
            "colour": float(np.median(gains[:, 1])) if len(pts) else None},
    }
    return claims, pts, line, dist


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0,
        forward: str | None = None) -> ReproductionResult:
    """Train the context-dependent integration network and find its line attractors.

    Args:
        out_dir: directory for ``context_integration.png`` and ``.json`` (created).
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
    task = ContextIntegration(**cfg["task"])
    net = train_network(task, hidden=cfg["hidden"], alpha=cfg["alpha"], noise=cfg["noise"],
                        steps=cfg["steps"], learning_rate=cfg["learning_rate"],
                        batch_size=cfg["batch_size"], key=k_train,
                        forward=cfg["forward"])
    batch = task.sample(k_trials, cfg["analysis_trials"])
    states, outputs = rollout(net, batch.inputs)
    accuracy = float(task.accuracy(np.asarray(outputs, np.float32), batch))
    inputs = np.asarray(batch.inputs)
    ctx = inputs[:, 0, 2:].argmax(1)
    stim = slice(task.stim_start, task.stim_start + task.stim_steps)

    per_ctx, pts, lines, dists = {}, [], [], []
    for c, name in enumerate(CONTEXTS):
        claims_c, p, line, dist = _analyse_context(
            net, cfg, states[ctx == c][:, stim], jax.random.fold_in(k_starts, c), c)
        per_ctx[name] = claims_c
        pts.append(p)
        lines.append(line)
        dists.append(dist)
    tol = cfg["eigenvalue_tolerance"]
    claims = {"accuracy": accuracy, "train_seconds": net.train_seconds, "contexts": per_ctx}
    checks = {"accuracy_above_0.9": accuracy > 0.9}
    for c, name in enumerate(CONTEXTS):
        cc = per_ctx[name]
        other = CONTEXTS[1 - c]
        enough = cc["n_points"] >= 3
        checks[f"{name}_slow_points_form_a_line"] = (
            enough and cc["line_attractor"]["variance_ratio_pc1"] >= 0.9
            and cc["line_attractor"]["median_alignment"] >= 0.9)
        checks[f"{name}_one_eigenvalue_within_{tol}_of_1_along_line"] = (
            enough and cc["abs_mu_minus_1_median"] <= tol)
        checks[f"{name}_context_selects_its_channel"] = (
            enough and cc["selection_gain_median"][name] > cc["selection_gain_median"][other])

    # ----------------------------------------------------------------------------- figure
    fig = new_figure(14.0, 9.0)
    grid = fig.add_gridspec(2, 3)
    pca = TrajectoryPCA(2).fit(states[:, stim])
    cued = np.where(ctx == 0, inputs[:, stim, 0].sum(1), inputs[:, stim, 1].sum(1))
    col = np.where(cued > 0, plot.OKABE_ITO["blue"], plot.OKABE_ITO["vermillion"])
    for c, name in enumerate(CONTEXTS):
        ax = fig.add_subplot(grid[0, c])
        Z = pca.transform(states[ctx == c])
        for z, colour in zip(Z[:40], col[ctx == c][:40], strict=False):
            ax.plot(z[:, 0], z[:, 1], color=colour, lw=0.5, alpha=0.5)
        if len(pts[c]):
            P = pca.transform(pts[c].x)
            sc = ax.scatter(P[:, 0], P[:, 1], c=dists[c], cmap="viridis", s=16, zorder=3,
                            vmin=0, vmax=2 * tol, edgecolors="k", linewidths=0.3)
            fig.colorbar(sc, ax=ax, label=r"$|\mu - 1|$ (slowest mode)")
        if lines[c] is not None:
            d = pca.transform_directions(lines[c].direction[None])[0]
            m = pca.transform(lines[c].center[None])[0]
            half = 0.5 * lines[c].length * d
            ax.plot([m[0] - half[0], m[0] + half[0]], [m[1] - half[1], m[1] + half[1]], "k--",
                    lw=1, label="line direction")
        ax.plot([], [], color=plot.OKABE_ITO["blue"], label="cued evidence > 0")
        ax.plot([], [], color=plot.OKABE_ITO["vermillion"], label="cued evidence < 0")
        ev = pca.explained_variance_ratio_
        ax.set_xlabel(f"PC1 ({100 * ev[0]:.0f}%)")
        ax.set_ylabel(f"PC2 ({100 * ev[1]:.0f}%)")
        med = per_ctx[name]["abs_mu_minus_1_median"]
        ax.set_title(f"{name}: {per_ctx[name]['n_points']} slow points "
                     f"(median |μ−1| = {med if med is None else round(med, 4)})")
        ax.legend(fontsize="x-small", frameon=False, loc="best")
    ax = fig.add_subplot(grid[0, 2])
    for c, name in enumerate(CONTEXTS):
        if lines[c] is None:
            continue
        order = lines[c].order
        pos = np.linspace(0, 1, len(order))
        ax.plot(pos, dists[c][order], marker=".", lw=0.8, label=f"{name} context")
    ax.axhline(tol, color="k", ls=":", label=f"tolerance {tol}")
    ax.set_xlabel("position along the line (normalised)")
    ax.set_ylabel(r"$|\mu - 1|$ of the slowest mode")
    ax.set_title("one multiplier ≈ 1 along each line")
    ax.legend(frameon=False, fontsize="small")
    ax = fig.add_subplot(grid[1, 0])
    t = np.arange(1, outputs.shape[1] + 1)
    for c, (name, ls) in enumerate(zip(CONTEXTS, ("-", "--"), strict=True)):
        sel = np.flatnonzero(ctx == c)[:12]
        for i in sel:
            ax.plot(t, outputs[i, :, 0], color=col[i], ls=ls, lw=0.8)
        ax.plot([], [], color="0.3", ls=ls, label=f"{name} context")
    ax.axvspan(task.stim_start, task.stim_start + task.stim_steps, color="0.93",
               label="stimulus")
    ax.set_xlabel("time step")
    ax.set_ylabel("output")
    ax.set_title(f"output (colour: sign of cued evidence)\naccuracy {accuracy:.3f}")
    ax.legend(frameon=False, fontsize="small")
    ax = fig.add_subplot(grid[1, 1])
    w = 0.35
    xs = np.arange(2)
    for k, chan in enumerate(CONTEXTS):
        vals = [per_ctx[name]["selection_gain_median"][chan] or 0.0 for name in CONTEXTS]
        ax.bar(xs + (k - 0.5) * w, vals, w, label=f"{chan} input")
    ax.set_xticks(xs, [f"{name} context" for name in CONTEXTS])
    ax.set_ylabel(r"$|\ell^H b_k|$ (movement along line per unit input)")
    ax.set_title("selection vector · input vectors")
    ax.legend(frameon=False, fontsize="small")
    ax = fig.add_subplot(grid[1, 2])
    plot.loss_curve(net.result.history.loss, steps=net.result.history.step, ax=ax)
    ax.set_title(f"training loss ({cfg['steps']} steps, {net.train_seconds:.0f} s)")
    fig.suptitle(f"Context-dependent integration CT-RNN (n = {cfg['hidden']}, "
                 f"α = {cfg['alpha']}): a line attractor per context (Mante et al. 2013)")
    return write_reproduction(out, NAME, fig, claims=claims, checks=checks, settings=cfg,
                              quick=quick, seed=seed, timer=timer)
