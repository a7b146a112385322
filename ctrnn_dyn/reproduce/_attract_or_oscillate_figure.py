"""The attract-or-oscillate figure: per alpha, the trajectories and fixed points or the
invariant circle in PCA space, and every network's verdict."""

from __future__ import annotations

import numpy as np

from ctrnn_dyn import plot
from ctrnn_dyn.pca import TrajectoryPCA
from ctrnn_dyn.reproduce._common import (
    new_figure,
)

_SUM_COLOURS = (plot.OKABE_ITO["blue"], plot.OKABE_ITO["orange"], plot.OKABE_ITO["bluish green"])


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
