r"""Mante, Sussillo, Shenoy & Newsome (2013): context-dependent integration by line attractors.

A CT-RNN is trained on :class:`ctrnn_dyn.tasks.ContextIntegration` (two noisy evidence
channels, "motion" and "colour", and a context cue; report the sign of the *cued* channel's
integrated evidence). For each context ``c`` we hold the input at the cue alone
(:math:`u = e_{2+c}`, no evidence) and minimise the speed :math:`q` from states visited during
the stimulus period, stopping each start once :math:`q \le` ``slow_q_stop`` (a drift of at
most :math:`200\sqrt{2 \cdot 10^{-8}} \approx 0.03` over the stimulus: fixed for the task)
and without Newton polishing or exact Gauss–Newton steps (the finder's ``linear_solver="cg"``),
which would slide every point along a slow line to its few exact zeros. These slow points
(``q <= slow_q_max``) form a **line** — an approximate line attractor — and at each of them
one multiplier :math:`\mu \approx 1` (continuous :math:`\lambda = (\mu - 1)/\alpha \approx 0`)
has its right eigenvector along the line (:func:`ctrnn_dyn.attractors.line_attractor`).

The claims, per context, test Mante et al.'s mechanism rather than "some slow points":

* the slow points lie on a line (first principal component >= 90 % of their variance, the slow
  mode's eigenvector along it);
* the *signed* slow multiplier :math:`\mu_1` (the one nearest 1): :math:`\mu_1 > 1` is a
  slowly *repelling* direction, reported as a fraction; what the memory needs is its time
  constant :math:`1/|\mu_1 - 1|` (steps) to be at least the stimulus duration at most points
  (a line that forgets within the stimulus is a leak, not an integrator), and the next mode
  :math:`\mu_2` at least 10x faster (:math:`|\mu_2 - 1| \ge 10\,|\mu_1 - 1|`: one slow
  dimension, not several);
* *selection*: the input vectors are the columns :math:`b_k = \partial F/\partial u_k =
  \alpha K_\mathrm{in}^\top e_k` (motion, colour); the *selection vector* at a slow point is the
  left eigenvector :math:`\ell` of :math:`\mu_1` (normalised :math:`\ell^H r = 1`), and
  :math:`|\ell^H b_k|` is how far one unit of channel ``k`` moves the state *along the line*.
  The cued channel must move it at least 5x more than the other (median over the points of the
  ratio), although both input vectors are the same in both contexts.

A panel in the style of Mante et al.'s Fig. 5 shows condition-averaged trajectories (every
context x motion x colour coherence, ``mante_trials_per_condition`` trials each) projected on
the task axes — the choice, motion and colour regression axes, orthogonalised in that order —
sorted by the relevant and by the irrelevant coherence (relevant: correct trials; irrelevant:
split by choice).

Data (``context_integration.npz``, NumPy only): the parameters (``recurrent_kernel``,
``recurrent_bias``, ``input_kernel``, ``output_kernel``, ``output_bias``, ``alpha``), each
context's slow points under ``fp/motion/`` and ``fp/colour/`` (as
:meth:`~ctrnn_dyn.fixed_points.FixedPoints.save` writes them), ``motion_input`` and
``colour_input`` (the constant input of each analysis), ``stim_steps`` and ``task_axes``
``(n, 3)`` (choice, motion, colour).

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
every weak-coherence trial. Even so, analysed with the claims above, the network trained here
does not hold its evidence as Mante et al.'s did: the slow points lie on a line (PC1 > 99 % of
their variance) that the cued input moves along (selection ratio far above 5), but the line
is a slow manifold between two decision attractors, not an integrator: the slow mode's time
constant is about 100 steps (motion) and 50 steps (colour), shorter than the stimulus, the
slow multiplier exceeds 1 at a quarter to a third of the points, the next mode is only
3–6x faster, and the outputs saturate within about 100 steps. Training twice as long on
coherences eight times weaker (0.0125–0.1, so that every step's evidence counts) made it worse
(time constants 36–54 steps). The JSON states each of these numbers and the failing checks.
The JSON's ``settings["task"]`` records the trial layout; the coherences and the per-step
input noise (0.5) are the task's defaults.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib as mpl
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
    network_arrays,
    new_figure,
    rollout,
    train_network,
    with_forward,
    write_reproduction,
)
from ctrnn_dyn.tasks import ContextIntegration

__all__ = ["NAME", "run", "settings", "slow_modes"]

NAME = "context_integration"
CONTEXTS = ("motion", "colour")
logger = logging.getLogger(__name__)


def settings(quick: bool) -> dict:
    """Sizes and hyper-parameters of the full (``quick=False``) or reduced run."""
    return {
        "hidden": 32 if quick else 64,
        "forward": "nn.RNN",  # the pass the committed figure was trained through
        "alpha": 0.1,
        "noise": 0.1,
        "steps": 300 if quick else 1500,
        "learning_rate": 0.005,
        "batch_size": 64,
        "analysis_trials": 64 if quick else 256,
        "starts_per_context": 96 if quick else 512,
        "slow_q_stop": 1e-8,
        "slow_q_max": 1e-5,
        "eigenvalue_tolerance": 0.02,
        "weight_l2": 0.0,
        "rate_l2": 0.0,
        "mante_trials_per_condition": 1 if quick else 4,
        # 200 noisy evidence steps (20 tau): see the module docstring
        "task": {"n_steps": 220, "stim_start": 5, "stim_steps": 200, "response_steps": 10,
                 "noise_std": 0.5},
    }


def slow_modes(eigvals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per point the multiplier nearest 1 and the next one.

    Args:
        eigvals: ``(N, n)`` multipliers.

    Returns:
        ``(mu_1, mu_2)``, each ``(N,)`` complex: the multiplier with the smallest
        :math:`|\\mu - 1|` (the slow mode) and the one with the next smallest, skipping the
        slow mode's complex conjugate (the next mode).
    """
    mu = np.asarray(eigvals, complex)
    dist = np.abs(mu - 1.0)
    order = np.argsort(dist, axis=1, kind="stable")
    rows = np.arange(len(mu))
    mu1 = mu[rows, order[:, 0]]
    second = np.where(np.isclose(mu[rows, order[:, 1]], np.conj(mu1), rtol=0, atol=1e-12)
                      & (np.abs(mu1.imag) > 0), order[:, 2 % mu.shape[1]], order[:, 1])
    return mu1, mu[rows, second]


def _analyse_context(net, cfg, states, key, c):
    u = np.zeros(4)
    u[2 + c] = 1.0
    starts = sample_initial_states(states, cfg["starts_per_context"], noise_scale=0.0, key=key)
    logger.info("context_integration: slow points of context %d", c)
    # stop a start once it moves less than sqrt(2 tol_q) per step (a drift of at most
    # stim_steps * sqrt(2 tol_q) over the stimulus: fixed for the task), without Newton
    # polishing, which would slide a point along a slow line to the line's few exact zeros;
    # and with matrix-free (CG) LM steps, which descend onto the line: exact Gauss-Newton steps
    # (the default "dense" at 64 units) leap along it to those zeros just the same (94 slow
    # points per context in 3 clusters, against 241 and 409 spread along the line)
    fps = find_fixed_points(net.F, np.asarray(starts), u, left_eigvecs=True,
                            tol_q=cfg["slow_q_stop"], polish_steps=0, linear_solver="cg")
    keep = np.isfinite(fps.q) & (fps.q <= cfg["slow_q_max"])
    pts = fps[keep]
    alpha, stim = cfg["alpha"], cfg["task"]["stim_steps"]
    line = None
    n_modes = net.F.state_size
    mu1 = mu2 = np.zeros(0, complex)
    gains = np.zeros((0, 2))
    if len(pts):
        mu1, mu2 = slow_modes(pts.eigvals)
        k_near = np.argmin(np.abs(pts.eigvals - mu1[:, None]), axis=1)
        rows = np.arange(len(pts))
        # selection vector (left eigenvector of the slow mode, l^H r = 1) against the input
        # vectors b_k = dF/du_k
        with jax.enable_x64(True):
            B = np.asarray(jax.vmap(lambda x: input_jacobian(net.F, x, jnp.asarray(u)))(
                jnp.asarray(pts.x)))  # (N, n, 4)
        ell = pts.left_eigvecs[rows, :, k_near]  # (N, n)
        gains = np.abs(np.einsum("nd,ndk->nk", ell.conj(), B)[:, :2])  # motion, colour
    if len(pts) >= 2 and n_modes >= 2:
        line = line_attractor(net.F, pts, inputs=u,
                              eig_tol=cfg["eigenvalue_tolerance"] / alpha, converged_only=False)
    d1, d2 = np.abs(mu1 - 1.0), np.abs(mu2 - 1.0)
    tau_steps = 1.0 / np.maximum(d1, 1e-300)  # time constant of the slow mode, in steps
    ratio = d2 / np.maximum(d1, 1e-300)       # how much faster the next mode is
    sel = gains[:, c] / np.maximum(gains[:, 1 - c], 1e-300)  # cued / other, along the line
    some = len(pts) > 0
    claims = {
        "input": u,
        "n_points": len(pts),
        "n_fixed": int(pts.converged.sum()),
        "max_q": float(np.max(pts.q)) if some else None,
        "slow_multiplier": mu1,
        "next_multiplier": mu2,
        "slow_mu_minus_1_median": float(np.median(mu1.real - 1.0)) if some else None,
        "slow_lambda_median_per_tau": float(np.median((mu1.real - 1.0) / alpha)) if some else None,
        "fraction_repelling_mu_above_1": float(np.mean(mu1.real > 1.0)) if some else None,
        "slow_time_constant_steps_median": float(np.median(tau_steps)) if some else None,
        f"fraction_time_constant_at_least_{stim}_steps": (
            float(np.mean(tau_steps >= stim)) if some else None),
        "next_mode_speed_ratio_median": float(np.median(ratio)) if some else None,
        "fraction_next_mode_at_least_10x_faster": float(np.mean(ratio >= 10.0)) if some else None,
        "line_attractor": None if line is None else {
            "is_line": line.is_line, "reason": line.reason, "length": line.length,
            "variance_ratio_pc1": float(line.variance_ratio[0]),
            "median_alignment": float(np.median(line.alignment)),
        },
        "selection_gain_median": {
            "motion": float(np.median(gains[:, 0])) if some else None,
            "colour": float(np.median(gains[:, 1])) if some else None},
        "selection_ratio_median": float(np.median(sel)) if some else None,
    }
    return claims, pts, line, {"mu1": mu1, "mu2": mu2, "tau": tau_steps, "ratio": ratio,
                               "gains": gains}


def _mante_axes(states: np.ndarray, choice: np.ndarray, coh: np.ndarray, ctx: np.ndarray):
    """Mante et al.'s task axes: regress each unit's state over the stimulus period on choice,
    motion and colour coherence and context (plus a constant), then orthogonalise the choice,
    motion and colour coefficient vectors (QR, in that order). Returns ``(n, 3)``."""
    B, T, n = states.shape
    X = np.column_stack([choice, coh[:, 0], coh[:, 1], 2.0 * ctx - 1.0, np.ones(B)])
    Y = states.mean(axis=1)  # (B, n): time-averaged states
    beta, *_ = np.linalg.lstsq(X, Y, rcond=None)  # (5, n)
    Q, R = np.linalg.qr(beta[:3].T)
    return Q * np.sign(np.diag(R))[None, :]


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0,
        forward: str | None = None) -> ReproductionResult:
    """Train the context-dependent integration network and analyse its line attractors.

    Args:
        out_dir: directory for ``context_integration.png``/``.pdf``/``.json``/``.npz``.
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
    k_train, k_trials, k_starts, k_mante = jax.random.split(jax.random.PRNGKey(seed), 4)
    task = ContextIntegration(**cfg["task"])
    net = train_network(task, hidden=cfg["hidden"], alpha=cfg["alpha"], noise=cfg["noise"],
                        steps=cfg["steps"], learning_rate=cfg["learning_rate"],
                        batch_size=cfg["batch_size"], key=k_train,
                        weight_l2=cfg["weight_l2"], rate_l2=cfg["rate_l2"],
                        forward=cfg["forward"])
    batch = task.sample(k_trials, cfg["analysis_trials"])
    states, outputs = rollout(net, batch.inputs)
    accuracy = float(task.accuracy(np.asarray(outputs, np.float32), batch))
    inputs = np.asarray(batch.inputs)
    ctx = inputs[:, 0, 2:].argmax(1)
    stim = slice(task.stim_start, task.stim_start + task.stim_steps)

    per_ctx, pts, lines, modes = {}, [], [], []
    for c, name in enumerate(CONTEXTS):
        claims_c, p, line, m = _analyse_context(
            net, cfg, states[ctx == c][:, stim], jax.random.fold_in(k_starts, c), c)
        per_ctx[name] = claims_c
        pts.append(p)
        lines.append(line)
        modes.append(m)
    S = task.stim_steps
    claims = {"accuracy": accuracy, "train_seconds": net.train_seconds, "contexts": per_ctx}
    checks = {"accuracy_above_0.9": {"pass": accuracy > 0.9, "value": accuracy,
                                     "criterion": "fraction of fresh trials correct > 0.9"}}
    for name in CONTEXTS:
        cc = per_ctx[name]
        enough = cc["n_points"] >= 3
        la = cc["line_attractor"] or {}
        checks[f"{name}_slow_points_form_a_line"] = {
            "pass": bool(enough and la["variance_ratio_pc1"] >= 0.9
                         and la["median_alignment"] >= 0.9),
            "value": {"n_points": cc["n_points"],
                      "variance_ratio_pc1": la.get("variance_ratio_pc1"),
                      "median_alignment": la.get("median_alignment")},
            "criterion": ">= 3 slow points, PC1 >= 90 % of their variance, median |cos| of the "
                         "slow eigenvector and the line >= 0.9"}
        frac = cc[f"fraction_time_constant_at_least_{S}_steps"]
        checks[f"{name}_slow_mode_time_constant_at_least_{S}_steps_at_most_points"] = {
            "pass": bool(enough and frac > 0.5),
            "value": {"fraction": frac, "median_steps": cc["slow_time_constant_steps_median"],
                      "fraction_repelling": cc["fraction_repelling_mu_above_1"]},
            "criterion": f"1/|mu_1 - 1| >= {S} steps (the stimulus) at more than half of the "
                         "slow points"}
        frac = cc["fraction_next_mode_at_least_10x_faster"]
        checks[f"{name}_next_mode_at_least_10x_faster_at_most_points"] = {
            "pass": bool(enough and frac > 0.5),
            "value": {"fraction": frac, "median_ratio": cc["next_mode_speed_ratio_median"]},
            "criterion": "|mu_2 - 1| >= 10 |mu_1 - 1| at more than half of the slow points"}
        checks[f"{name}_selection_ratio_cued_over_other_at_least_5"] = {
            "pass": bool(enough and cc["selection_ratio_median"] >= 5.0),
            "value": cc["selection_ratio_median"],
            "criterion": "median over slow points of |l^H b_cued| / |l^H b_other| >= 5"}

    # Mante et al.'s view: condition-averaged trajectories on the task axes, from a balanced
    # set of trials (every context x motion coherence x colour coherence)
    m_in, m_coh, m_ctx = _balanced_trials(task, cfg["mante_trials_per_condition"], k_mante)
    m_states, m_out = rollout(net, m_in)
    m_choice = np.sign(m_out[:, -task.response_steps:, 0].mean(axis=1))
    axes = _mante_axes(m_states[:, stim], m_choice, m_coh, m_ctx)

    # ----------------------------------------------------------------------------- data
    data = {
        "network": network_arrays(net.cell, net.params),
        "fixed_points": {name: pts[c] for c, name in enumerate(CONTEXTS) if len(pts[c])},
        "arrays": {"stim_steps": np.asarray(S), "task_axes": axes,
                   **{f"{name}_input": np.asarray(per_ctx[name]["input"], np.float64)
                      for name in CONTEXTS}},
    }
    with plot.style():
        fig = _figure(cfg, net, task, accuracy, states, outputs, inputs, ctx, stim, pts, lines,
                      modes, per_ctx, m_states, m_coh, m_ctx, m_choice, axes)
    return write_reproduction(out, NAME, fig, claims=claims, checks=checks, settings=cfg,
                              quick=quick, seed=seed, timer=timer, data=data)


def _balanced_trials(task, per_condition: int, key: jax.Array):
    """Trials laid out as :meth:`ContextIntegration.sample` lays them out (evidence
    ``c_k + noise_std · ξ`` during the stimulus window, the one-hot cue on every step), with
    ``per_condition`` trials of every context and signed motion and colour coherence.

    Returns:
        ``(inputs (B, T, 4), coherences (B, 2), contexts (B,))``.
    """
    levels = sorted({s * c for c in task.coherences for s in (-1.0, 1.0)})
    conds = np.array([(ctx, a, b) for ctx in (0, 1) for a in levels for b in levels
                      for _ in range(per_condition)])
    ctx, coh = conds[:, 0].astype(int), conds[:, 1:]
    window = np.zeros(task.n_steps)
    window[task.stim_start:task.stim_start + task.stim_steps] = 1.0
    noise = task.noise_std * np.asarray(jax.random.normal(key, (len(conds), task.n_steps, 2)))
    evidence = (coh[:, None, :] + noise) * window[None, :, None]
    cue = np.broadcast_to(np.eye(2)[ctx][:, None, :], (len(conds), task.n_steps, 2))
    return np.concatenate([evidence, cue], axis=-1), coh, ctx


def _figure(cfg, net, task, accuracy, states, outputs, inputs, ctx, stim, pts, lines, modes,
            per_ctx, m_states, m_coh, m_ctx, m_choice, axes):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    S = task.stim_steps
    fig = new_figure(7.2, 9.2)
    grid = fig.add_gridspec(4, 3, height_ratios=[1.0, 1.0, 1.0, 0.9])
    pca = TrajectoryPCA(2).fit(states[:, stim])
    cued = np.where(ctx == 0, inputs[:, stim, 0].sum(1), inputs[:, stim, 1].sum(1))
    col = np.where(cued > 0, plot.OKABE_ITO["blue"], plot.OKABE_ITO["vermillion"])
    ctx_colour = (plot.OKABE_ITO["sky blue"], plot.OKABE_ITO["orange"])
    lim = 3.0 / S
    dnorm = mpl.colors.TwoSlopeNorm(vcenter=0.0, vmin=-lim, vmax=lim)
    sc = None
    pca_axes = []
    for c, name in enumerate(CONTEXTS):
        ax = fig.add_subplot(grid[0, c])
        pca_axes.append(ax)
        Z = pca.transform(states[ctx == c])
        for z, colour in zip(Z[:30], col[ctx == c][:30], strict=False):
            ax.plot(z[:, 0], z[:, 1], color=colour, lw=0.4, alpha=0.45)
        if len(pts[c]):
            P = pca.transform(pts[c].x)
            sc = ax.scatter(P[:, 0], P[:, 1], c=np.clip(modes[c]["mu1"].real - 1.0, -lim, lim),
                            cmap="PuOr_r", norm=dnorm, s=10, zorder=3, edgecolors="k",
                            linewidths=0.3)
        if lines[c] is not None:
            d = pca.transform_directions(lines[c].direction[None])[0]
            m = pca.transform(lines[c].center[None])[0]
            half = 0.5 * lines[c].length * d
            ax.plot([m[0] - half[0], m[0] + half[0]], [m[1] - half[1], m[1] + half[1]], "k--",
                    lw=0.8)
        ev = pca.explained_variance_ratio_
        ax.set_xlabel(f"PC1 ({100 * ev[0]:.0f} %)")
        ax.set_ylabel(f"PC2 ({100 * ev[1]:.0f} %)")
        ax.set_title(f"{name} context:\n{per_ctx[name]['n_points']} slow points")
    if sc is not None:
        plot.colorbar(pca_axes, sc, r"slow multiplier $\mu_1 - 1$ (> 0: repelling)",
                      location="bottom", shrink=0.6, extend="both", pad=0.04)

    ax = fig.add_subplot(grid[0, 2])
    for c in range(len(CONTEXTS)):
        if lines[c] is None:
            continue
        order = lines[c].order
        pos = np.linspace(0, 1, len(order))
        ax.plot(pos, modes[c]["mu1"].real[order] - 1, lw=0.9, color=ctx_colour[c])
        ax.plot(pos, np.abs(modes[c]["mu2"][order] - 1), lw=0.7, ls=":", color=ctx_colour[c])
    ax.axhspan(-1.0 / S, 1.0 / S, color="0.88", lw=0)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_yscale("symlog", linthresh=1.0 / S)
    ax.set_ylim(-0.3, 0.3)
    ax.set_yticks([-0.1, -0.01, 0.0, 0.01, 0.1], ["−0.1", "−0.01", "0", "0.01", "0.1"])
    ax.yaxis.set_minor_locator(mpl.ticker.NullLocator())
    ax.set_xlabel("position along the line")
    ax.set_ylabel(r"$\mu_1 - 1$ (solid), $|\mu_2 - 1|$ (dotted)")
    ax.set_title(f"slow and next mode\n(grey: τ ≥ {S} steps)")

    # Mante et al. 2013, Fig. 5: condition averages on the choice and input axes
    names = ("motion", "colour")
    levels = np.array(sorted(set(np.abs(m_coh).ravel())))
    cnorm = mpl.colors.Normalize(-levels.max(), levels.max())
    cmap = mpl.colormaps["coolwarm"]
    P = m_states @ axes  # (B, T, 3): choice, motion, colour
    mante_axes = []
    for c, k in itertools.product(range(2), range(2)):
        ax = fig.add_subplot(grid[1 + c, k])
        mante_axes.append(ax)
        for lvl in np.unique(m_coh[:, k]):
            for ch, ls in ((1.0, "-"), (-1.0, "--")):
                if k == c and np.sign(lvl) != ch:
                    continue  # relevant input: correct trials only, as in Mante et al.
                sel = (m_ctx == c) & (m_coh[:, k] == lvl) & (m_choice == ch)
                if sel.sum() < 2:
                    continue
                tr = P[sel][:, stim].mean(axis=0)
                ax.plot(tr[:, 0], tr[:, 1 + k], color=cmap(cnorm(lvl)), ls=ls, lw=0.8)
        ax.set_xlabel("choice axis")
        ax.set_ylabel(f"{names[k]} axis")
        rel = "relevant" if k == c else "irrelevant"
        ax.set_title(f"{names[c]} context,\nsorted by {names[k]} ({rel})")
    plot.colorbar(mante_axes, mpl.cm.ScalarMappable(norm=cnorm, cmap=cmap),
                  "coherence of the sorting input", location="bottom", shrink=0.5, pad=0.03)

    ax = fig.add_subplot(grid[1, 2])
    w = 0.35
    xs = np.arange(2)
    for k, chan in enumerate(CONTEXTS):
        vals = [per_ctx[name]["selection_gain_median"][chan] or 0.0 for name in CONTEXTS]
        ax.bar(xs + (k - 0.5) * w, vals, w, color=ctx_colour[k])
    ratio = [per_ctx[name]["selection_ratio_median"] for name in CONTEXTS]
    ax.set_xticks(xs, [f"{name}\ncontext" for name in CONTEXTS])
    ax.set_ylabel(r"median $|\ell^H b_k|$")
    ax.set_title("input moving the state along the line\ncued/other: "
                 + ", ".join("–" if r is None else f"{r:.0f}" for r in ratio))

    ax = fig.add_subplot(grid[2, 2])
    for c in range(len(CONTEXTS)):
        tau = np.sort(modes[c]["tau"])
        ax.plot(tau, np.arange(1, len(tau) + 1) / max(len(tau), 1), drawstyle="steps-post",
                color=ctx_colour[c])
    ax.axvline(S, color="k", ls=":", lw=0.7)
    ax.axhline(0.5, color="0.6", lw=0.5)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    lo = min([float(np.min(m["tau"])) for m in modes if len(m["tau"])] + [S / 10])
    ax.set_xlim(lo / 1.5, 10 * S)
    ax.set_xlabel(r"time constant $1/|\mu_1 - 1|$ (steps)")
    ax.set_ylabel("fraction of slow points")
    ax.set_title(f"memory time constant\n(dotted: the {S}-step stimulus)")

    ax = fig.add_subplot(grid[3, :2])
    t = np.arange(1, outputs.shape[1] + 1)
    for c, ls in enumerate(("-", "--")):
        for i in np.flatnonzero(ctx == c)[:12]:
            ax.plot(t, outputs[i, :, 0], color=col[i], ls=ls, lw=0.6)
    ax.axvspan(task.stim_start, task.stim_start + task.stim_steps, color="0.93", lw=0)
    ax.set_xlabel("time step (stimulus shaded)")
    ax.set_ylabel("output")
    ax.set_title(f"output (colour: sign of the cued evidence); accuracy {accuracy:.3f}")

    ax = fig.add_subplot(grid[3, 2])
    ax.axis("off")
    handles = [
        Line2D([], [], color=plot.OKABE_ITO["blue"], lw=1), Line2D(
            [], [], color=plot.OKABE_ITO["vermillion"], lw=1),
        Line2D([], [], color="k", ls="--", lw=0.8),
        Patch(color=ctx_colour[0]), Patch(color=ctx_colour[1]),
        Line2D([], [], color="0.3", lw=0.8), Line2D([], [], color="0.3", lw=0.8, ls="--")]
    labels = ["cued evidence > 0", "cued evidence < 0", "line fitted to the slow points",
              "motion (context or input)", "colour (context or input)",
              "output: motion context; Mante panels: choice +1",
              "output: colour context; Mante panels: choice −1"]
    ax.legend(handles, labels, loc="center left", frameon=False, title="key")
    plot.label_panels(fig)
    fig.suptitle(f"Context-dependent integration (n = {cfg['hidden']}, α = {cfg['alpha']}, "
                 f"{S}-step noisy stimulus), after Mante et al. 2013")
    return fig


