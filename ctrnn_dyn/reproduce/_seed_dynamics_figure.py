"""The seed-dynamics figure: the switch, the limit cycle and the strange attractor, each with
its analysis (fixed points, Floquet multipliers, Lyapunov spectrum, separation of neighbours)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.ticker
import numpy as np

from ctrnn_dyn import plot
from ctrnn_dyn.reproduce._circuits64 import _map64, _simulate64
from ctrnn_dyn.reproduce._common import (
    new_figure,
)
from ctrnn_dyn.systems import CHAOS, OSCILLATOR, SWITCH


def _switch_portrait(ax, fps) -> None:
    """1-D phase portrait: ``dh/dt`` against ``h``; arrows on the axis point the way the
    sign of ``dh/dt`` says; fixed points in the package's marker code, labelled directly."""
    F = _map64(SWITCH)
    h = np.linspace(-0.1, 1.1, 481)
    with jax.enable_x64(True):
        v = np.asarray(jax.vmap(lambda x: (F(x) - x) / SWITCH.dt)(jnp.asarray(h[:, None])))[:, 0]
    ax.axhline(0.0, color="0.6", lw=0.6, zorder=1)
    ax.plot(h, v, color=plot.OKABE_ITO["blue"], zorder=2)
    xs = np.asarray(fps.x[:, 0])
    edges = np.concatenate([[h[0]], xs, [h[-1]]])
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mid = 0.5 * (lo + hi)
        sign = np.sign(np.interp(mid, h, v))
        if sign == 0 or hi - lo < 0.08:
            continue
        half = min(0.06, 0.3 * (hi - lo))
        ax.annotate("", xy=(mid + sign * half, 0.0), xytext=(mid - sign * half, 0.0),
                    arrowprops={"arrowstyle": "-|>", "color": "0.2", "lw": 1.0,
                                "mutation_scale": 8}, zorder=3)
    classes = plot.point_classes(fps)
    plot.mark_points(ax, np.stack([xs, np.zeros_like(xs)], 1), classes, size=30, label=False)
    for x, cls in zip(xs, classes, strict=True):
        ax.annotate(cls.split()[0], (x, 0.0), xytext=(0, -11), textcoords="offset points",
                    ha="center", va="top", fontsize=6.5)
    ax.set_xlim(h[0], h[-1])
    ax.set_xlabel("rate h")
    ax.set_ylabel(r"$\dot h$ (per $\tau$)")
    ax.set_title(r"switch: $\dot h = -h + \sigma(8h - 4)$")


def _distance_panel(ax, curves: dict, cycle, mu2: float) -> None:
    colours = {"inside": plot.OKABE_ITO["vermillion"], "outside": plot.OKABE_ITO["blue"]}
    P = cycle.period_time
    for name, c in curves.items():
        keep = c["d"] > 3e-9  # the distance's resolution is ~1e-9
        ax.plot(c["t"][keep], c["d"][keep], color=colours.get(name, "0.3"), lw=1.0,
                label=f"start {name} the cycle")
    for c in curves.values():
        if c["t0"] is not None:
            tt = np.linspace(c["t0"], c["t0"] + 2 * P, 50)
            ax.plot(tt, c["d0"] * mu2 ** ((tt - c["t0"]) / P), color="black", ls=(0, (3, 2)),
                    lw=0.8, label=r"Floquet: $d \propto |\mu_2|^{t/T}$")
    ax.set_yscale("log")
    ax.set_ylim(1e-9, 1.0)
    ax.set_xlim(0, 6 * P)
    ax.set_xlabel(r"time ($\tau$)")
    ax.set_ylabel("distance to the cycle")
    ax.set_title(rf"$|\mu_2|$ = {mu2:.2g} per period")
    plot.legend_outside(ax, "below", ncol=1)


def _lyapunov_panel(ax, spec, claims: dict) -> None:
    hist = np.asarray(spec.history)  # (B, blocks, k) running estimates
    n_blocks = hist.shape[1]
    t = np.arange(1, n_blocks + 1) * (spec.n_steps // n_blocks) * spec.dt
    colours = [plot.OKABE_ITO[c] for c in ("blue", "orange", "bluish green")]
    se = np.asarray(spec.stderr)[:, 0]
    for b, start in enumerate(CHAOS.starts):
        ax.plot(t, hist[b, :, 0], color=colours[b % 3], lw=1.0, label=f"h(0) = {start:g}")
        ax.errorbar(t[-1] * (1.15 + 0.12 * b), hist[b, -1, 0], yerr=2 * se[b], fmt="o", ms=2.5,
                    color=colours[b % 3], capsize=1.5, lw=0.8)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(r"averaging time ($\tau$)")
    ax.set_ylabel(r"$\lambda_1$ estimate (per $\tau$)")
    lo, hi = claims["largest_interval_2se"]
    ax.set_title(rf"$\lambda_1$ = {claims['largest_mean']:.4f} $\pm$ "
                 rf"{2 * claims['largest_mean_stderr']:.4f} (2 SE)")
    plot.legend_outside(ax, "below", ncol=3)


def _separation_panel(ax, curves: dict, claims: dict, lam1: float) -> None:
    t = curves["t"]
    ax.fill_between(t, curves["p10"], curves["p90"], color="0.85", lw=0,
                    label="10–90 % of pairs")
    ax.plot(t, curves["mean"], color=plot.OKABE_ITO["blue"], lw=1.0, label="mean of pairs")
    ax.plot(t, lam1 * t, color="black", ls=(0, (3, 2)), lw=0.9,
            label=r"$\lambda_1 t$ (QR method)")
    ax.set_xlabel(r"time ($\tau$)")
    ax.set_ylabel(r"$\sum \ln(d_k/d_0)$")
    ax.set_title(f"pairs: rate {claims['mean_rate']:.4f} ± "
                 f"{2 * claims['mean_rate_stderr']:.4f}")
    plot.legend_outside(ax, "below", ncol=2)


def _verdict(cls_claims: dict, name: str) -> str:
    labels = sorted(set(cls_claims[name]["labels"]))
    return ", ".join(labels)


def _figure(settings, sw_fps, basin, osc_fps, cycle, osc_claims, osc_curves, spec, ch_claims,
            sep_curves, cls_claims):
    fig = new_figure(plot.PAGE_WIDTH, 8.2)
    grid = fig.add_gridspec(3, 3)
    colours = [plot.OKABE_ITO[c] for c in ("blue", "orange", "bluish green", "vermillion",
                                            "reddish purple")]
    # row 1: switch
    ax = fig.add_subplot(grid[0, 0])
    sw_traj = _simulate64(SWITCH)
    for b, start in enumerate(SWITCH.starts):
        ax.plot(SWITCH.times, sw_traj[b, :, 0], color=colours[b], label=f"{start:g}")
    ax.set_xlabel(r"time ($\tau$)")
    ax.set_ylabel("rate h")
    ax.set_title(f"switch (seed); verdict: {_verdict(cls_claims, 'switch')}")
    plot.legend_outside(ax, "right", title="h(0)")
    plot.panel_label(ax, "a")
    ax = fig.add_subplot(grid[0, 1])
    _switch_portrait(ax, sw_fps)
    plot.panel_label(ax, "b")
    ax = fig.add_subplot(grid[0, 2])
    ends = basin["ends"]
    mid = float(sw_fps.x[1, 0]) if len(sw_fps) == 3 else 0.5
    ax.axvline(mid, color="0.5", lw=0.6, ls=(0, (3, 2)), zorder=1)
    ax.scatter(basin["h0"], ends, s=5, color=plot.OKABE_ITO["blue"], zorder=3, linewidths=0)
    ax.annotate(f"unstable point\nh* = {mid:.2f}", (mid, 0.5), xytext=(5, 0),
                textcoords="offset points", fontsize=6.5, va="center")
    ax.set_xlabel("start h(0)")
    ax.set_ylabel(f"h after {settings['switch_basin_steps'] * SWITCH.dt:g} τ")
    ax.set_title("basins split at the unstable point")
    plot.panel_label(ax, "c")
    # row 2: oscillator
    osc_traj = _simulate64(OSCILLATOR)
    ax = fig.add_subplot(grid[1, 0])
    for b, start in enumerate(OSCILLATOR.starts):
        ax.plot(OSCILLATOR.times, osc_traj[b, :, 0], color=colours[b], label=f"{start:g}")
    ax.set_xlabel(r"time ($\tau$)")
    ax.set_ylabel(r"rate $h_1$")
    ax.set_title(f"oscillator (seed); verdict: {_verdict(cls_claims, 'oscillator')}")
    plot.legend_outside(ax, "right", title="h(0)")
    plot.panel_label(ax, "d")
    ax = fig.add_subplot(grid[1, 1])
    trajs = np.stack([c["traj"][:600] for c in osc_curves.values()]) if osc_curves else None
    plot.phase_portrait(_map64(OSCILLATOR), dt=OSCILLATOR.dt, xlim=(-0.05, 1.05),
                        ylim=(-0.05, 1.05), fixed_points=osc_fps, trajectories=trajs,
                        density=20, state_symbol="h", ax=ax)
    lines = [ln for ln in ax.lines if len(ln.get_xdata()) > 1]
    dots = [ln for ln in ax.lines if len(ln.get_xdata()) == 1]
    for k, name in enumerate(osc_curves):
        colour = plot.OKABE_ITO["vermillion" if name == "inside" else "blue"]
        lines[k].set(color=colour, linewidth=0.8, label=f"start {name} the cycle")
        dots[k].set(color=colour)
    if cycle.converged:
        ax.plot(cycle.orbit[:, 0], cycle.orbit[:, 1], color="black", lw=1.8, zorder=4,
                label=f"limit cycle, T = {cycle.period_time:.2f} τ")
    ax.set_xlabel(r"$h_1$")
    ax.set_ylabel(r"$h_2$")
    ax.set_aspect("equal")
    ax.set_title("focus inside an attracting cycle")
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    plot.legend_outside(ax, "below", ncol=2)
    plot.panel_label(ax, "e")
    ax = fig.add_subplot(grid[1, 2])
    if cycle.converged:
        _distance_panel(ax, osc_curves, cycle,
                        osc_claims["limit_cycle"]["nontrivial_multiplier_modulus"])
    plot.panel_label(ax, "f")
    # row 3: chaos
    ch_traj = _simulate64(CHAOS, settings["chaos_plot_steps"])
    ax = fig.add_subplot(grid[2, 0], projection="3d")
    ax.plot(*ch_traj[1, 200:].T, color=plot.OKABE_ITO["blue"], lw=0.3)
    ax.set_xlabel(r"rate $h_1$", labelpad=-2)
    ax.set_ylabel(r"rate $h_2$", labelpad=-2)
    ax.set_zlabel(r"rate $h_3$", labelpad=-2)
    ax.tick_params(pad=-1)
    ax.set_title(f"chaotic circuit (seed)\nverdict: {_verdict(cls_claims, 'chaos')}",
                 loc="center")
    plot.panel_label(ax, "g")
    ax = fig.add_subplot(grid[2, 1])
    _lyapunov_panel(ax, spec, ch_claims)
    plot.panel_label(ax, "h")
    ax = fig.add_subplot(grid[2, 2])
    _separation_panel(ax, sep_curves, ch_claims["separation"], ch_claims["largest_mean"])
    plot.panel_label(ax, "i")
    fig.suptitle("The seed's circuits (Beer 1995): bistable switch, limit cycle, "
                 "strange attractor")
    return fig
