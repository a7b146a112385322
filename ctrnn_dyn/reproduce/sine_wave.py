r"""The seed's sine-wave generator, reverse-engineered as in Sussillo & Barak (2013), Fig. 4.

A CT-RNN is trained on :class:`ctrnn_dyn.tasks.SineWave`: a static input level
:math:`u = 0.25 + (100\omega - 9)/51` selects the frequency :math:`\omega` (rad per step) of
the target :math:`\sin(\omega t)`. Sussillo & Barak's mechanism: under each input level the
network has a fixed point at the centre of its oscillation whose linearisation has an
*unstable complex pair* :math:`\mu, \bar\mu` (:math:`|\mu| > 1`) rotating by
:math:`|\arg\mu| \approx \omega` per step; the oscillation is that linear rotation, bounded by
the nonlinearity into a limit cycle.

For each of ``n_levels`` input levels we find fixed points from that level's own trajectory
(second half of the trial, plus noise, and its centre) and, by *continuation*, from the fixed
points chosen at the two neighbouring levels (repeated ``continuation_passes`` times or until
no level's choice changes), and keep the converged point nearest the centre of the
oscillation. Its leading complex pair (largest :math:`|\mu|`) names the level's mechanism
(:data:`MECHANISMS`): an *unstable focus at ω* (the paper's: :math:`|\mu| > 1 +`
``marginal_tol`` and :math:`|\arg\mu|` within ``rotation_tolerance`` of :math:`\omega`), an
unstable focus rotating at another rate, a *marginal* or *stable* focus (the oscillation
around it decays: the network's output is a transient), no complex pair, or no fixed point
(every start stalled on a slow point; the best :math:`q` is recorded). As a check on the
dynamics themselves, the output amplitude after ``sustain_steps`` steps at each level is
recorded beside it (about 1 for a sustained oscillation). The claim is the number of levels
that use the paper's mechanism, all of them for the check to pass.

Deviation from the seed's setting (recorded in the JSON): the seed trains on 50-step trials,
shorter than one period at the lowest frequencies (:math:`2\pi/0.1 \approx 63` steps); networks
trained that way produce the sine as a decaying transient around a *stable* focus. We train on
``trial_steps``-step trials, several periods at every frequency, which penalises a decaying
oscillation.

Data (``sine_wave.npz``, NumPy only, no pickle): the trained parameters ``recurrent_kernel``
``(n, n)``, ``recurrent_bias`` ``(n,)``, ``input_kernel`` ``(1, n)``, ``output_kernel``
``(n, 1)``, ``output_bias`` ``(1,)`` and ``alpha`` (the map is
:math:`F(x, u) = (1-\alpha)x + \alpha(\tanh(x) W + b + u K_\mathrm{in})`); per level
``omega`` ``(L,)``, ``input_level`` ``(L,)``, ``found`` ``(L,)`` bool, ``best_q`` ``(L,)``,
``mechanism`` ``(L,)`` strings, ``late_amplitude`` ``(L,)``; and the chosen fixed points
(one per level with ``found``, in level order, ``fixed_point_level`` their level indices) as
:meth:`~ctrnn_dyn.fixed_points.FixedPoints.save` writes them under the prefix ``levels/``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import matplotlib as mpl
import numpy as np

from ctrnn_dyn import plot
from ctrnn_dyn.fixed_points import FixedPoints, find_fixed_points
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
from ctrnn_dyn.tasks import SineWave

__all__ = ["MECHANISMS", "NAME", "leading_pair", "mechanism_of", "rotation_of", "run", "settings"]

NAME = "sine_wave"
logger = logging.getLogger(__name__)


#: Mechanism labels of a level, in the order the figure lists them. ``"unstable focus at ω"``
#: is Sussillo & Barak's: an unstable complex pair rotating within ``rotation_tolerance`` of
#: the target frequency.
MECHANISMS = ("unstable focus at ω", "unstable focus off ω", "marginal focus",
              "stable focus", "no complex pair", "no fixed point")
PAPER = MECHANISMS[0]


def settings(quick: bool) -> dict:
    """Sizes and hyper-parameters of the full (``quick=False``) or reduced run."""
    return {
        "hidden": 32 if quick else 100,
        "forward": "nn.RNN",  # the pass the committed figure was trained through
        "alpha": 0.1,
        "noise": 0.1,
        "steps": 600 if quick else 4000,
        "learning_rate": 0.005,
        "batch_size": 32,
        "trial_steps": 100 if quick else 300,  # several periods at every ω: see above
        "seed_trial_steps": 50,
        "n_levels": 7 if quick else 21,
        "starts_per_level": 8 if quick else 16,
        "start_noise": 0.05,
        "max_solver_iters": 500,
        "continuation_passes": 3,
        "rotation_tolerance": 0.15,
        "marginal_tol": 1e-3,
        "sustain_steps": 600 if quick else 2000,
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


def leading_pair(eigvals: np.ndarray) -> tuple[float, float]:
    """``(|arg μ|, |μ|)`` of the complex multiplier of largest modulus, stable or not, or
    ``(nan, nan)`` when every multiplier is real.

    Args:
        eigvals: ``(n,)`` multipliers of one fixed point.
    """
    mu = np.asarray(eigvals)
    cand = mu[np.abs(mu.imag) > 1e-9]
    if cand.size == 0:
        return float("nan"), float("nan")
    lead = cand[np.argmax(np.abs(cand))]
    return float(abs(np.angle(lead))), float(abs(lead))


def mechanism_of(rotation: float, modulus: float, omega: float, *, rotation_tolerance: float,
                 marginal_tol: float) -> str:
    """The level's mechanism (one of :data:`MECHANISMS`, not ``"no fixed point"``) from the
    leading complex pair ``(|arg μ|, |μ|)`` of its fixed point.

    ``|μ| > 1 + marginal_tol``: an unstable focus, "at ω" when
    ``| |arg μ|/ω − 1 | <= rotation_tolerance``; ``| |μ| − 1 | <= marginal_tol``: a marginal
    focus; below: a stable focus (the oscillation around it decays).
    """
    if not np.isfinite(modulus):
        return "no complex pair"
    if modulus > 1.0 + marginal_tol:
        return PAPER if abs(rotation / omega - 1.0) <= rotation_tolerance else MECHANISMS[1]
    return "marginal focus" if modulus >= 1.0 - marginal_tol else "stable focus"


def _find(net, starts: np.ndarray, inputs: np.ndarray, cfg: dict, *,
          linearise: bool = False) -> FixedPoints:
    """One entry per start (no deduplication, no outlier removal), in start order; with
    ``linearise`` also the Jacobians, multipliers and stability classes."""
    logger.info("sine_wave: finding fixed points from %d starts", len(starts))
    return find_fixed_points(net.F, starts, inputs, tol_unique=None, outlier_distance_scale=None,
                             max_iters=cfg["max_solver_iters"], compute_jacobians=linearise,
                             decompose=linearise)


def _best(cands: FixedPoints, centre: np.ndarray) -> int | None:
    """Index of the converged candidate nearest the oscillation's centre, or ``None``."""
    sel = np.flatnonzero(cands.converged)
    if sel.size == 0:
        return None
    return int(sel[np.argmin(np.linalg.norm(cands.x[sel] - centre, axis=1))])


def _fixed_points_per_level(net, states: np.ndarray, levels: np.ndarray, cfg: dict,
                            key: jax.Array) -> tuple[list[FixedPoints], list[np.ndarray]]:
    """Candidates of every level: trajectory starts, then continuation from the neighbours.

    Pass 0 starts from ``starts_per_level`` states of the level's own trajectory (second half,
    plus noise) and its centre. Each later pass starts, for every level, from the chosen fixed
    points of the two neighbouring levels (the one below and the one above; the level's own
    centre where a neighbour has none), for ``continuation_passes`` passes or until no level's
    choice changes. Returns per level the candidates and, per candidate, the index of the level
    its start came from (``-1``: its own trajectory).
    """
    L, S = len(levels), cfg["starts_per_level"]
    half = states[:, states.shape[1] // 2:]
    centres = half.mean(axis=1)
    idx = np.asarray(jax.random.randint(key, (L, S), 0, half.shape[1]))
    noise = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (L, S, states.shape[-1])))
    starts = np.take_along_axis(half, idx[..., None], axis=1) + cfg["start_noise"] * noise
    starts[:, 0] = centres  # the centre of each oscillation is the natural start
    fps = _find(net, starts.reshape(-1, states.shape[-1]), np.repeat(levels, S, axis=0), cfg)
    cands = [fps[i * S:(i + 1) * S] for i in range(L)]
    origin = [np.full(S, -1) for _ in range(L)]
    chosen = [_best(c, centres[i]) for i, c in enumerate(cands)]
    for _ in range(cfg["continuation_passes"]):
        x0, src = [], []
        for i in range(L):
            for j in (i - 1, i + 1):
                ok = 0 <= j < L and chosen[j] is not None
                x0.append(cands[j].x[chosen[j]] if ok else centres[i])
                src.append(j if ok else -1)
        more = _find(net, np.asarray(x0), np.repeat(levels, 2, axis=0), cfg)
        for i in range(L):
            cands[i] = FixedPoints.concatenate([cands[i], more[2 * i:2 * i + 2]])
            origin[i] = np.concatenate([origin[i], src[2 * i:2 * i + 2]])
        new = [_best(c, centres[i]) for i, c in enumerate(cands)]
        changed = any((a is None) != (b is None) or (a is not None and not np.allclose(
            cands[i].x[a], cands[i].x[b], atol=1e-6)) for i, (a, b) in
            enumerate(zip(chosen, new, strict=True)))
        chosen = new
        if not changed:
            break
    return cands, origin


def _late_amplitude(net, levels: np.ndarray, omegas: np.ndarray, n_steps: int) -> np.ndarray:
    """Half the peak-to-peak output over the last two target periods of an ``n_steps`` run at
    each level (target amplitude 1): ~1 for a sustained oscillation, ~0 for a decaying one."""
    u = np.repeat(levels[:, None, :], n_steps, axis=1)
    _, y = rollout(net, u)
    out = []
    for i, w in enumerate(omegas):
        window = int(np.ceil(2 * 2 * np.pi / float(w)))
        tail = y[i, -window:, 0]
        out.append(0.5 * float(tail.max() - tail.min()))
    return np.asarray(out)


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0,
        forward: str | None = None) -> ReproductionResult:
    """Train the sine-wave generator and name the mechanism behind each frequency.

    Args:
        out_dir: directory for ``sine_wave.png``/``.pdf``/``.json``/``.npz`` (created).
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
    half = states[:, states.shape[1] // 2:]
    cands, origin = _fixed_points_per_level(net, states, levels, cfg, k_starts)
    amplitude = _late_amplitude(net, levels, omegas, cfg["sustain_steps"])

    tol, mtol = cfg["rotation_tolerance"], cfg["marginal_tol"]
    best_of = [_best(c, half[i].mean(0)) for i, c in enumerate(cands)]
    lin = [i for i, b in enumerate(best_of) if b is not None]
    # linearise the chosen point of each level (a converged start stays where it is)
    linear = (_find(net, np.stack([cands[i].x[best_of[i]] for i in lin]), levels[lin], cfg,
                    linearise=True) if lin else None)
    per_level, chosen = [], []
    for i, w in enumerate(omegas):
        c = cands[i]
        best = best_of[i]
        entry = {"omega": w, "input": levels[i, 0], "found": best is not None,
                 "best_q": float(np.nanmin(c.q)) if np.isfinite(c.q).any() else None,
                 "n_starts": len(c), "n_converged": int(c.converged.sum()),
                 "late_amplitude": amplitude[i]}
        if best is None:
            entry["mechanism"] = "no fixed point"
            per_level.append(entry)
            continue
        pt = linear[lin.index(i)]
        chosen.append(pt)
        rot, mod = leading_pair(pt.eigvals[0])
        src = int(origin[i][best])
        entry.update({
            "q": pt.q[0], "moved_when_linearised": float(np.linalg.norm(pt.x[0] - c.x[best])),
            "start": ("own trajectory" if src < 0 else
                      f"continued from the fixed point at ω = {float(omegas[src]):.3f}"),
            "n_distinct_fixed_points": len(c.fixed.unique(1e-3)),
            "n_unstable": int(pt.n_unstable[0]), "stability": str(pt.stability[0]),
            "pair_rotation_per_step": rot, "pair_modulus": mod,
            "rotation_over_omega": rot / float(w),
            "mechanism": mechanism_of(rot, mod, float(w), rotation_tolerance=tol,
                                      marginal_tol=mtol),
        })
        per_level.append(entry)
    mech = np.array([p["mechanism"] for p in per_level])
    n_paper = int(np.sum(mech == PAPER))
    found = np.array([p["found"] for p in per_level])
    ratios = np.array([p.get("rotation_over_omega", np.nan) for p in per_level])
    L = len(omegas)
    claims = {
        "accuracy_1_minus_mse_over_var": accuracy,
        "accuracy_on_seed_50_step_trials": accuracy_seed_len,
        "train_seconds": net.train_seconds,
        "n_levels": L,
        "n_levels_papers_mechanism": n_paper,
        "levels_by_mechanism": {m: [float(w) for w, k in zip(omegas, mech, strict=True) if k == m]
                                for m in MECHANISMS if np.any(mech == m)},
        "n_levels_with_fixed_point": int(found.sum()),
        "median_abs_relative_rotation_error_of_papers_levels": (
            float(np.median(np.abs(ratios[mech == PAPER] - 1.0))) if n_paper else None),
        "levels": per_level,
    }
    tol_pct = round(100 * tol)
    checks = {
        "accuracy_at_least_0.9": {
            "pass": accuracy >= 0.9, "value": accuracy,
            "criterion": "1 - MSE/Var over all 400 frequencies >= 0.9"},
        "fixed_point_found_at_every_level": {
            "pass": bool(found.all()), "value": int(found.sum()),
            "criterion": f"a converged fixed point at each of the {L} levels"},
        f"all_{L}_levels_unstable_focus_rotating_within_15pct_of_target": {
            "pass": n_paper == L, "value": n_paper,
            "criterion": f"levels whose fixed point's leading complex pair has |mu| > "
                         f"1 + {mtol:g} and ||arg mu|/omega - 1| <= {tol:g} ({tol_pct} %): "
                         f"all {L}"},
    }

    # ----------------------------------------------------------------------------- data
    data = {
        "network": network_arrays(net.cell, net.params),
        "fixed_points": {"levels": FixedPoints.concatenate(chosen)} if chosen else {},
        "arrays": {
            "omega": np.asarray(omegas, np.float64), "input_level": levels[:, 0],
            "found": found, "fixed_point_level": np.flatnonzero(found),
            "best_q": np.array([np.nan if p["best_q"] is None else p["best_q"]
                                for p in per_level]),
            "mechanism": mech.astype(str), "late_amplitude": amplitude,
        },
    }
    with plot.style():
        fig = _figure(cfg, net, accuracy, omegas, batch, outputs, half,
                      data["fixed_points"].get("levels"), per_level, mech)
    return write_reproduction(out, NAME, fig, claims=claims, checks=checks, settings=cfg,
                              quick=quick, seed=seed, timer=timer, data=data)


_MECH_STYLE = {  # marker, face colour (None: open), edge colour
    "unstable focus at ω": ("s", plot.OKABE_ITO["reddish purple"], "k"),
    "unstable focus off ω": ("s", None, plot.OKABE_ITO["reddish purple"]),
    "marginal focus": ("D", plot.OKABE_ITO["bluish green"], "k"),
    "stable focus": ("o", plot.OKABE_ITO["blue"], "k"),
    "no complex pair": ("^", None, "0.3"),
}


def _figure(cfg, net, accuracy, omegas, batch, outputs, half, fixed, per_level, mech):
    tol = cfg["rotation_tolerance"]
    fig = new_figure(7.2, 6.6)
    grid = fig.add_gridspec(3, 3, height_ratios=[1.0, 1.0, 1.1])
    cmap = mpl.colormaps["viridis"]
    norm = mpl.colors.Normalize(vmin=float(omegas.min()), vmax=float(omegas.max()))
    ax = fig.add_subplot(grid[0, 0])
    show = np.round(np.linspace(0, len(omegas) - 1, 3)).astype(int)
    t = np.arange(1, outputs.shape[1] + 1)
    tgt = np.asarray(batch.targets)
    for i in show:
        ax.plot(t, outputs[i, :, 0] + 2.5 * (i == show[-1]) - 2.5 * (i == show[0]),
                color=cmap(norm(omegas[i])), lw=1.0)
        ax.plot(t, tgt[i, :, 0] + 2.5 * (i == show[-1]) - 2.5 * (i == show[0]), color="k",
                lw=0.5, ls="--")
    ax.plot([], [], color="0.4", lw=1.0, label="network")
    ax.plot([], [], color="k", lw=0.5, ls="--", label="target")
    ax.set_yticks([-2.5, 0, 2.5], [f"ω = {omegas[i]:.2f}" for i in show])
    ax.set_xlabel("time step")
    plot.legend_outside(ax, "above", ncol=2)
    ax.set_title(f"1 − MSE/Var = {accuracy:.3f} (all 400 ω)", pad=14)
    ax = fig.add_subplot(grid[1, 0])
    plot.loss_curve(net.result.history.loss, steps=net.result.history.step, ax=ax)
    ax.set_title(f"training loss ({cfg['steps']} steps)")

    ax = fig.add_subplot(grid[0:2, 1:], projection="3d")
    pca = TrajectoryPCA(3).fit(half)
    Z = pca.transform(half)
    for i, w in enumerate(omegas):
        ax.plot(Z[i, :, 0], Z[i, :, 1], Z[i, :, 2], color=cmap(norm(w)), lw=0.7)
    if fixed is not None:
        P = pca.transform(fixed.x)
        lv = np.flatnonzero([p["found"] for p in per_level])
        for k, j in enumerate(lv):
            m, face, edge = _MECH_STYLE[mech[j]]
            ax.scatter(*P[k], marker=m, s=22, facecolors=face or "white", edgecolors=edge,
                       depthshade=False, zorder=5, linewidths=0.8)
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    ax.set_zlabel("PC3")
    ax.set_title("states (second half of each trial) and each level's fixed point, in PCA")
    plot.colorbar(ax, mpl.cm.ScalarMappable(norm=norm, cmap=cmap),
                  "target frequency ω (rad/step)", shrink=0.55, pad=0.12)

    rot = np.array([p.get("pair_rotation_per_step", np.nan) for p in per_level])
    mod = np.array([p.get("pair_modulus", np.nan) for p in per_level])
    ax = fig.add_subplot(grid[2, 0])
    line = np.linspace(0.9 * omegas.min(), 1.05 * omegas.max(), 10)
    ax.fill_between(line, line * (1 - tol), line * (1 + tol), color="0.88", lw=0)
    ax.plot(line, line, color="0.4", lw=0.7)
    _mech_scatter(ax, omegas, rot, mech)
    ax.set_xlabel("target ω (rad/step)")
    ax.set_ylabel("|arg μ| (rad/step)")
    ax.set_title(f"rotation (grey: ω ± {100 * tol:.0f} %)")
    ax = fig.add_subplot(grid[2, 1])
    ax.axhspan(1 - cfg["marginal_tol"], 1 + cfg["marginal_tol"], color="0.88", lw=0)
    ax.axhline(1.0, color="0.4", lw=0.7)
    _mech_scatter(ax, omegas, mod, mech)
    ax.set_xlabel("target ω (rad/step)")
    ax.set_ylabel("|μ| of the leading complex pair")
    ax.set_title("growth per step")
    ax = fig.add_subplot(grid[2, 2])
    amp = np.array([p["late_amplitude"] for p in per_level])
    ax.axhline(1.0, color="0.4", lw=0.7)
    _mech_scatter(ax, omegas, amp, mech)
    ax.set_ylim(0, max(1.3, float(np.nanmax(amp)) * 1.1))
    ax.set_xlabel("target ω (rad/step)")
    ax.set_ylabel("output amplitude (target 1)")
    ax.set_title(f"amplitude at {cfg['sustain_steps']} steps")
    handles, labels = [], []
    for m in MECHANISMS:
        n = int(np.sum(mech == m))
        if m in _MECH_STYLE:
            mk, face, edge = _MECH_STYLE[m]
            h = mpl.lines.Line2D([], [], ls="", marker=mk, markerfacecolor=face or "white",
                                 markeredgecolor=edge, markersize=5)
        else:
            h = mpl.lines.Line2D([], [], ls="", marker="x", color="k", markersize=5)
        handles.append(h)
        labels.append(f"{m}: {n}")
    fig.legend(handles, labels, loc="outside lower center", ncol=3,
               title=f"mechanism at each level's fixed point (levels of {len(mech)})")
    plot.label_panels(fig)
    fig.suptitle(f"Sine-wave generator (n = {cfg['hidden']}, α = {cfg['alpha']}, "
                 f"{cfg['trial_steps']}-step trials): {int(np.sum(mech == PAPER))} of "
                 f"{len(mech)} levels oscillate around an unstable focus rotating at ω")
    return fig


def _mech_scatter(ax, omegas, values, mech):
    for m, (mk, face, edge) in _MECH_STYLE.items():
        sel = (mech == m) & np.isfinite(values)
        if sel.any():
            ax.scatter(omegas[sel], values[sel], marker=mk, s=16, facecolors=face or "white",
                       edgecolors=edge, zorder=3, linewidths=0.7)
    sel = (mech == "no fixed point") & np.isfinite(values)
    if sel.any():
        ax.scatter(omegas[sel], values[sel], marker="x", s=16, color="k", zorder=3)


