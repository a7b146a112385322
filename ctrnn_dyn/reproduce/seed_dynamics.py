r"""The seed's three small circuits — switch, limit cycle, strange attractor — and their numbers.

Redraws the seed's ``ctrnn_dynamics.png`` / ``ctrnn_strange_attractor.png`` (trajectories of
Beer's (1995) rate CT-RNNs, ``h_{t+1} = h_t + (dt/τ)(-h_t + σ(h_t K + b))``, zero input) and
adds what the seed never computed:

* **switch** (1 neuron): its three fixed points and their stability, checked to be the roots
  of :math:`-h + \sigma(8h - 4) = 0` with the middle one (0.5) unstable; a 1-D phase portrait
  :math:`\dot h` against :math:`h`.
* **oscillator** (2 neurons): one unstable focus at (0.5, 0.5) inside a stable limit cycle,
  its period and Floquet multipliers (one ≈ 1 along the flow, the other inside the unit
  circle); a phase portrait with nullclines.
* **chaotic circuit** (3 neurons): its Lyapunov spectrum (largest > 0, one ≈ 0 along the
  flow, sum < 0) with the estimate's convergence, and :func:`classify_dynamics` verdicts for
  all three systems.

``run(out_dir, quick=False, seed=0)`` writes ``seed_dynamics.png`` and ``seed_dynamics.json``.
No training and no randomness: ``seed`` is accepted for a uniform interface and recorded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.ticker
import numpy as np

from ctrnn_dyn import plot
from ctrnn_dyn.attractors import classify_dynamics, find_limit_cycle, lyapunov_spectrum
from ctrnn_dyn.dynamics import OneStepMap
from ctrnn_dyn.fixed_points import find_fixed_points
from ctrnn_dyn.reproduce._common import (
    ReproductionResult,
    Timer,
    check_run_args,
    new_figure,
    write_reproduction,
)
from ctrnn_dyn.systems import CHAOS, OSCILLATOR, SWITCH, CircuitSystem

__all__ = ["NAME", "run"]

NAME = "seed_dynamics"
logger = logging.getLogger(__name__)


def _map64(system: CircuitSystem) -> OneStepMap:
    """The circuit's map with float64 parameters (analysis runs in float64)."""
    with jax.enable_x64(True):
        return system.map(jnp.float64)


def _simulate64(system: CircuitSystem, n_steps: int | None = None) -> np.ndarray:
    with jax.enable_x64(True):
        return np.asarray(system.simulate(n_steps=n_steps, dtype=jnp.float64))


def _settings(quick: bool) -> dict:
    return {
        "switch_fixed_point_starts": 41,
        "oscillator_fixed_point_grid": 7,
        "limit_cycle_transient_steps": 2000,
        "lyapunov_steps": 50_000 if quick else 500_000,
        "lyapunov_transient_steps": 2000 if quick else 10_000,
        "lyapunov_blocks": 20,
        "classify_steps": {"switch": 5000, "oscillator": 20_000,
                           "chaos": 100_000 if quick else 300_000},
        "classify_transient_steps": 2000,
        "chaos_plot_steps": CHAOS.n_steps if quick else 4 * CHAOS.n_steps,
    }


def _switch(settings: dict) -> tuple[dict, dict, object]:
    F = _map64(SWITCH)
    starts = np.linspace(-0.5, 1.5, settings["switch_fixed_point_starts"])[:, None]
    fps = find_fixed_points(F, starts).fixed
    order = np.argsort(fps.x[:, 0])
    fps = fps[order]
    lam = fps.continuous_eigvals[:, 0].real  # units of 1/tau
    claims = {
        "fixed_points": fps.x[:, 0],
        "multipliers": fps.eigvals[:, 0].real,
        "continuous_eigenvalues": lam,
        "stability": list(fps.stability),
        "q": fps.q,
    }
    middle = len(fps) == 3 and abs(fps.x[1, 0] - 0.5) < 1e-8
    checks = {
        "switch_three_fixed_points": len(fps) == 3,
        "switch_middle_at_half_unstable": bool(middle and lam[1] > 0 and fps.stability[1]
                                                == "unstable node"),
        "switch_outer_stable": bool(len(fps) == 3 and lam[0] < 0 and lam[2] < 0),
    }
    return claims, checks, fps


def _oscillator(settings: dict) -> tuple[dict, dict, object, object]:
    F = _map64(OSCILLATOR)
    g = np.linspace(-0.2, 1.2, settings["oscillator_fixed_point_grid"])
    starts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    fps = find_fixed_points(F, starts).fixed
    cycle = find_limit_cycle(F, np.asarray(OSCILLATOR.initial_states())[0], dt=OSCILLATOR.dt,
                             n_transient=settings["limit_cycle_transient_steps"])
    mu = np.asarray(cycle.floquet_multipliers)
    nontrivial = mu[np.argsort(np.abs(mu - 1.0))][1:]
    claims = {
        "fixed_points": fps.x,
        "fixed_point_stability": list(fps.stability),
        "fixed_point_continuous_eigenvalues": fps.continuous_eigvals,
        "limit_cycle": {
            "converged": cycle.converged,
            "kind": cycle.kind,
            "period_steps": cycle.period,
            "period_time": cycle.period_time,
            "floquet_multipliers": mu,
            "trivial_multiplier": cycle.trivial_multiplier,
            "floquet_exponents_per_time": np.log(np.abs(nontrivial)) / cycle.period_time,
            "stable": cycle.stable,
            "residual": cycle.residual,
        },
    }
    one_fp = len(fps) == 1 and np.allclose(fps.x[0], 0.5, atol=1e-8)
    checks = {
        "oscillator_one_fixed_point_at_half": bool(one_fp),
        "oscillator_fixed_point_unstable_focus": bool(one_fp and fps.stability[0]
                                                      == "unstable focus"),
        "oscillator_limit_cycle_found": bool(cycle.converged),
        "oscillator_trivial_multiplier_near_1": bool(abs(cycle.trivial_multiplier - 1) < 1e-3),
        "oscillator_limit_cycle_stable": bool(cycle.converged and cycle.stable
                                              and np.all(np.abs(nontrivial) < 0.9)),
    }
    return claims, checks, fps, cycle


def _chaos(settings: dict) -> tuple[dict, dict, object, object]:
    F = _map64(CHAOS)
    x0 = np.asarray(CHAOS.initial_states())
    spec = lyapunov_spectrum(F, x0, dt=CHAOS.dt, n_steps=settings["lyapunov_steps"],
                             n_transient=settings["lyapunov_transient_steps"],
                             n_blocks=settings["lyapunov_blocks"])
    lam = np.asarray(spec.exponents)  # (B, 3)
    # the exponent nearest 0 is the one along the flow
    zero = np.take_along_axis(lam, np.argmin(np.abs(lam), axis=1)[:, None], 1)[:, 0]
    duration = spec.n_steps * spec.dt
    claims = {
        "starts": CHAOS.starts,
        "lyapunov_exponents_per_time": lam,
        "lyapunov_stderr": spec.stderr,
        "largest": spec.largest,
        "exponent_nearest_zero": zero,
        "sum": spec.total,
        "kaplan_yorke_dimension": spec.kaplan_yorke_dimension,
        "averaged_time": duration,
    }
    checks = {
        "chaos_largest_exponent_positive": bool(np.all(lam[:, 0] > 3 * spec.stderr[:, 0])
                                                and np.all(lam[:, 0] > 0)),
        "chaos_one_exponent_near_zero": bool(np.all(np.abs(zero) < 0.2 * lam[:, 0])),
        "chaos_sum_negative": bool(np.all(spec.total < 0)),
        "chaos_largest_agrees_across_starts": bool(np.ptp(lam[:, 0]) < 0.6 * lam[:, 0].mean()),
    }
    return claims, checks, spec, x0


def _classify(settings: dict) -> tuple[dict, dict]:
    out, checks = {}, {}
    expected = {"switch": "fixed point", "oscillator": "limit cycle", "chaos": "chaotic"}
    for system in (SWITCH, OSCILLATOR, CHAOS):
        starts = np.asarray(system.initial_states(), np.float64)
        if system is SWITCH:  # the exact middle start sits on the unstable point forever
            starts = starts[np.abs(starts[:, 0] - 0.5) > 1e-9]
        if system is OSCILLATOR:  # (0.5, 0.5) is the unstable focus itself
            starts = starts[np.abs(starts[:, 0] - 0.5) > 1e-9]
        res = classify_dynamics(_map64(system), starts, dt=system.dt,
                                n_steps=settings["classify_steps"][system.name],
                                n_transient=settings["classify_transient_steps"])
        out[system.name] = {"starts": starts[:, 0], "labels": list(res.labels),
                            "largest_exponent": res.lyapunov[:, 0]}
        checks[f"classify_{system.name}_{expected[system.name].replace(' ', '_')}"] = all(
            label == expected[system.name] for label in res.labels)
    return out, checks


def _switch_axis(ax, fps) -> None:
    """1-D phase portrait: ``dh/dt`` against ``h``, fixed points by stability class."""
    F = _map64(SWITCH)
    h = np.linspace(-0.1, 1.1, 400)
    with jax.enable_x64(True):
        v = np.asarray(jax.vmap(lambda x: (F(x) - x) / SWITCH.dt)(jnp.asarray(h[:, None])))[:, 0]
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.plot(h, v, color=plot.OKABE_ITO["blue"], label=r"$\dot h = -h + \sigma(8h-4)$")
    for x, cls in zip(fps.x[:, 0], fps.stability, strict=True):
        style = plot.STABILITY_STYLE.get(str(cls), plot.STABILITY_STYLE["fixed point"])
        ax.scatter([x], [0.0], s=45, marker=style["marker"], zorder=5,
                   facecolors=style["color"] if style["filled"] else "white",
                   edgecolors=style["color"], linewidths=1.3, label=str(cls))
    for x0, direction in ((0.2, -1), (0.38, 1), (0.62, -1), (0.8, 1)):
        ax.annotate("", xy=(x0 + 0.06 * -direction, 0), xytext=(x0, 0),
                    arrowprops={"arrowstyle": "->", "color": "0.3"})
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    ax.legend(uniq.values(), uniq.keys(), fontsize="small", frameon=False, loc="upper left")
    ax.set_xlabel("h (firing rate)")
    ax.set_ylabel(r"$dh/dt$ (per $\tau$)")
    ax.set_title("Switch: 1-D phase portrait")


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0,
        forward: str | None = None) -> ReproductionResult:
    """Reproduce the seed's dynamics figures with fixed points, Floquet and Lyapunov numbers.

    Args:
        out_dir: directory for ``seed_dynamics.png`` and ``seed_dynamics.json`` (created).
        quick: shorter Lyapunov/classification runs (for tests; the claims still hold).
        seed: recorded only (nothing here is random).
        forward: accepted for the common signature; nothing here is trained.

    Returns:
        :class:`~ctrnn_dyn.reproduce._common.ReproductionResult`; ``claims`` holds
        ``switch``, ``oscillator``, ``chaos`` and ``classification`` sections.
    """
    timer = Timer()
    out = check_run_args(out_dir, quick, seed, forward)
    settings = _settings(quick)

    logger.info("seed_dynamics: the switch's fixed points")
    sw_claims, sw_checks, sw_fps = _switch(settings)
    logger.info("seed_dynamics: the oscillator's limit cycle")
    osc_claims, osc_checks, osc_fps, cycle = _oscillator(settings)
    logger.info("seed_dynamics: the chaotic circuit's Lyapunov spectrum")
    ch_claims, ch_checks, spec, _ = _chaos(settings)
    logger.info("seed_dynamics: classify_dynamics on the three circuits")
    cls_claims, cls_checks = _classify(settings)

    fig = new_figure(14.0, 12.5)
    grid = fig.add_gridspec(3, 3)
    # row 1: switch
    ax = fig.add_subplot(grid[0, 0])
    sw_traj = _simulate64(SWITCH)
    for b, start in enumerate(SWITCH.starts):
        ax.plot(SWITCH.times, sw_traj[b, :, 0], label=f"h(0) = {start}")
    ax.set_xlabel(r"time ($\tau$)")
    ax.set_ylabel("firing rate h")
    ax.set_title("Switch model trajectories (seed)")
    ax.legend(fontsize="small", frameon=False)
    _switch_axis(fig.add_subplot(grid[0, 1]), sw_fps)
    ax = fig.add_subplot(grid[0, 2])
    ax.axis("off")
    lines = ["Switch fixed points (h*, λ per τ, class):"]
    lines += [f"  {x:.4f}  λ={lam:+.3f}  {cls}" for x, lam, cls in zip(
        sw_claims["fixed_points"], sw_claims["continuous_eigenvalues"], sw_claims["stability"],
        strict=True)]
    lc = osc_claims["limit_cycle"]
    lines += ["", "Oscillator:", f"  fixed point {np.round(osc_fps.x[0], 4)}  "
              f"({osc_fps.stability[0]})",
              f"  limit cycle period {lc['period_time']:.4f} τ ({lc['period_steps']:.2f} steps)",
              "  Floquet multipliers " + ", ".join(f"{abs(m):.4g}" for m in lc[
                  "floquet_multipliers"])]
    lam_mean = np.asarray(ch_claims["lyapunov_exponents_per_time"]).mean(0)
    lines += ["", f"Chaotic circuit (mean of {len(CHAOS.starts)} starts, per τ):",
              "  Lyapunov λ = " + ", ".join(f"{v:+.4f}" for v in lam_mean),
              f"  sum = {lam_mean.sum():+.4f},  D_KY = "
              f"{np.mean(ch_claims['kaplan_yorke_dimension']):.3f}",
              "", "classify_dynamics:"]
    lines += [f"  {k}: {', '.join(sorted(set(v['labels'])))}" for k, v in cls_claims.items()]
    ax.text(0.0, 1.0, "\n".join(lines), va="top", family="monospace", fontsize=8.5,
            transform=ax.transAxes)
    # row 2: oscillator
    osc_traj = _simulate64(OSCILLATOR)
    ax = fig.add_subplot(grid[1, 0])
    for b, start in enumerate(OSCILLATOR.starts):
        ax.plot(OSCILLATOR.times, osc_traj[b, :, 0], label=f"h(0) = {start}")
    ax.set_xlabel(r"time ($\tau$)")
    ax.set_ylabel(r"firing rate $h_1$")
    ax.set_title("Oscillator trajectories (seed)")
    ax.set_ylim(-0.05, 1.3)
    ax.legend(fontsize="small", frameon=False, loc="upper center", ncol=3)
    ax = fig.add_subplot(grid[1, 1])
    plot.phase_portrait(_map64(OSCILLATOR), dt=OSCILLATOR.dt, xlim=(-0.05, 1.05),
                        ylim=(-0.05, 1.05), fixed_points=osc_fps,
                        trajectories=osc_traj[[0, 1, 4]], ax=ax)
    if cycle.converged:
        ax.plot(cycle.orbit[:, 0], cycle.orbit[:, 1], color="k", lw=2.2, zorder=4,
                label=f"limit cycle, T = {cycle.period_time:.3f} τ")
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                  fontsize="small", borderaxespad=0.0)
    ax.set_xlabel(r"$h_1$")
    ax.set_ylabel(r"$h_2$")
    ax.set_title("Oscillator: nullclines, focus, limit cycle")
    ax = fig.add_subplot(grid[1, 2])
    plot.eigenspectrum(np.stack([cycle.floquet_multipliers, osc_fps.eigvals[0]]),
                       labels=["Floquet multipliers", "focus multipliers"], ax=ax)
    ax.set_title("Oscillator: Floquet multipliers |μ| = "
                 + ", ".join(f"{abs(m):.3g}" for m in cycle.floquet_multipliers), fontsize=9)
    # row 3: chaos
    ch_traj = _simulate64(CHAOS, settings["chaos_plot_steps"])
    ax = fig.add_subplot(grid[2, 0])
    t = CHAOS.dt * np.arange(1, ch_traj.shape[1] + 1)
    keep = t <= CHAOS.dt * CHAOS.n_steps
    for i in range(3):
        ax.plot(t[keep], ch_traj[1, keep, i], lw=0.7, label=f"neuron {i + 1}")
    ax.set_xlabel(r"time ($\tau$)")
    ax.set_ylabel("firing rate")
    ax.set_title("Strange attractor over time (seed)")
    ax.set_ylim(-0.02, 1.2)
    ax.legend(fontsize="small", frameon=False, loc="upper center", ncol=3)
    ax = fig.add_subplot(grid[2, 1], projection="3d")
    plot.attractor_3d(ch_traj[:, 200:], ax=ax)
    for line in ax.get_lines():
        line.set_linewidth(0.35)
    ax.set_title("Strange attractor in 3-D")
    ax = fig.add_subplot(grid[2, 2])
    hist = np.asarray(spec.history)[1]  # start 0.5, running estimate per block
    blocks = np.arange(1, hist.shape[0] + 1) * (spec.n_steps // hist.shape[0]) * spec.dt
    for i in range(2):  # lambda_3 (about -0.5) is given in the legend, off this scale
        ax.plot(blocks, hist[:, i], marker=".", label=rf"$\lambda_{i + 1}$")
    ax.plot([], [], " ", label=rf"$\lambda_3$ = {hist[-1, 2]:+.3f} (off scale)")
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(r"averaging time ($\tau$)")
    ax.set_ylabel(r"running estimate (per $\tau$)")
    ax.set_title(f"Lyapunov exponents, start {CHAOS.starts[1]}: convergence")
    ax.legend(fontsize="small", frameon=False)
    fig.suptitle("Seed circuits (Beer 1995): switch, limit cycle, strange attractor")

    claims = {"switch": sw_claims, "oscillator": osc_claims, "chaos": ch_claims,
              "classification": cls_claims}
    checks = {**sw_checks, **osc_checks, **ch_checks, **cls_checks}
    return write_reproduction(out, NAME, fig, claims=claims, checks=checks, settings=settings,
                              quick=quick, seed=seed, timer=timer)
