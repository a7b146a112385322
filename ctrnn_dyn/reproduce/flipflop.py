r"""Sussillo & Barak (2013), Fig. 2–3: the 3-bit flip-flop's fixed points in 3-D PCA space.

Trains a CT-RNN on the 3-bit flip-flop (:class:`ctrnn_dyn.tasks.FlipFlop`), finds its fixed
points under zero input from states visited in noise-free trials (plus noise), and tests the
mechanism Sussillo & Barak describe:

* **memories**: 8 stable fixed points whose readouts
  :math:`y^* = f(x^*)K_\mathrm{out} + b_\mathrm{out}` carry the 8 distinct bit patterns;
* **one-bit separatrices**: exactly 12 saddles with exactly one unstable mode (multiplier
  :math:`|\mu| > 1`), one per edge of the cube of memories: simulated forward under zero input
  from :math:`x^* \pm \varepsilon v` (:math:`v` the unit unstable eigenvector), each ends at
  two memories whose patterns differ in exactly one bit, and the 12 saddles join the 12
  distinct pairs of one-bit neighbours.

Higher-index saddles (2 or more unstable modes) are counted and drawn with their own markers.

Files (``run(out_dir)``): ``flipflop.png`` / ``.pdf`` (a: training loss; b: pulses, output and
target of one test trial; c: the fixed points in 3-D PCA space, memories labelled with their
readout's bit pattern, and the unstable manifolds of the 1-mode saddles, i.e. the orbits from
:math:`x^* \pm \varepsilon v`), ``flipflop.json`` (claims and checks), and ``flipflop.npz``
(loads with ``np.load(path, allow_pickle=False)``):

- ``recurrent_kernel`` ``(n, n)``, ``recurrent_bias`` ``(n,)``, ``input_kernel`` ``(3, n)``,
  ``output_kernel`` ``(n, 3)``, ``output_bias`` ``(3,)``, ``alpha`` ``()``: the trained
  network (tanh rates; :math:`x' = (1-\alpha)x + \alpha(\tanh(x)K_\mathrm{rec} +
  b_\mathrm{rec} + uK_\mathrm{in})`);
- ``fp/zero_input/<field>``: its fixed points under zero input as
  :meth:`~ctrnn_dyn.fixed_points.FixedPoints.save` writes them (``x`` ``(N, n)``, ``q``,
  ``eigvals`` ``(N, n)`` sorted by ``|μ|`` descending, ``n_unstable``, ``stability``, ...);
- ``saddle_eps`` ``()`` and ``saddle_flow_steps`` ``()``: the ε and the number of steps of the
  saddle test.
"""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.transforms as mtransforms
import numpy as np
from mpl_toolkits.mplot3d import proj3d

from ctrnn_dyn import plot
from ctrnn_dyn.dynamics import simulate
from ctrnn_dyn.fixed_points import find_fixed_points, sample_initial_states
from ctrnn_dyn.pca import TrajectoryPCA
from ctrnn_dyn.reproduce._common import (
    ReproductionResult,
    Timer,
    check_run_args,
    network_arrays,
    new_figure,
    readout,
    rollout,
    train_network,
    with_forward,
    write_reproduction,
)
from ctrnn_dyn.tasks import FlipFlop

__all__ = ["NAME", "run", "settings"]

NAME = "flipflop"
logger = logging.getLogger(__name__)


def settings(quick: bool) -> dict:
    """Sizes and hyper-parameters of the full (``quick=False``) or reduced run."""
    return {
        "n_bits": 3,
        "hidden": 32 if quick else 64,
        "forward": "nn.RNN",  # the pass the committed figure was trained through
        "alpha": 0.5,
        "noise": 0.0,
        "steps": 400 if quick else 1500,
        "learning_rate": 0.01,
        "batch_size": 64,
        "trial_steps": 64,
        "p_pulse": 0.05,
        "analysis_trials": 32 if quick else 64,
        "analysis_trial_steps": 200,
        "fixed_point_starts": 512 if quick else 2048,
        "start_noise": 0.5,
        "saddle_eps": 1e-2,
        "saddle_flow_steps": 3000,
        "memory_tolerance": 1e-3,
    }


def pattern_label(signs: np.ndarray, minus: str = "-") -> str:
    """``(+1, -1, +1)`` -> ``"+-+"`` (bit 1 first)."""
    return "".join("+" if v > 0 else minus for v in np.asarray(signs))


def saddle_flows(F, fps, memories: np.ndarray, *, eps: float, n_steps: int,
                 tolerance: float) -> list[dict]:
    r"""Follow each 1-mode saddle's unstable manifold to where it ends.

    For each saddle :math:`x^*` with exactly one unstable multiplier (its unit eigenvector
    :math:`v`, real part), simulates ``F`` under zero input from :math:`x^* + \varepsilon v`
    and :math:`x^* - \varepsilon v` for ``n_steps`` steps and finds the memory (row of
    ``memories``) within ``tolerance`` of each end state.

    Returns:
        One dict per saddle: ``index`` (into ``fps``), ``multiplier``, ``ends`` (two memory
        indices or ``None``), ``end_distances`` and ``orbits`` ``(2, n_steps + 1, d)``.
    """
    out = []
    idx = np.flatnonzero(np.asarray(fps.n_unstable) == 1)
    if idx.size == 0:
        return out
    m = np.asarray(fps.u).shape[1]
    starts, mus = [], []
    for i in idx:
        mu = np.asarray(fps.eigvals[i])
        j = int(np.argmax(np.abs(mu)))  # the one unstable multiplier
        v = np.real(np.asarray(fps.eigvecs[i])[:, j])
        v = v / np.linalg.norm(v)
        x = np.asarray(fps.x[i], np.float64)
        starts += [x + eps * v, x - eps * v]
        mus.append(complex(mu[j]))
    with jax.enable_x64(True):
        x0 = jnp.asarray(np.stack(starts), jnp.float64)
        u = jnp.zeros((m,), jnp.float64)
        traj = np.asarray(jax.jit(jax.vmap(lambda x: simulate(F, x, u, n_steps=n_steps)))(x0))
    traj = np.concatenate([np.stack(starts)[:, None], traj], axis=1)
    for k, i in enumerate(idx):
        ends, dists = [], []
        for j in (2 * k, 2 * k + 1):
            d = np.linalg.norm(memories - traj[j, -1], axis=1) if len(memories) else np.array([])
            near = int(np.argmin(d)) if d.size else None
            ends.append(near if near is not None and d[near] <= tolerance else None)
            dists.append(float(d[near]) if near is not None else None)
        out.append({"index": int(i), "multiplier": mus[k], "ends": ends,
                    "end_distances": dists, "orbits": traj[2 * k:2 * k + 2]})
    return out


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0,
        forward: str | None = None) -> ReproductionResult:
    """Train, reverse-engineer and draw the 3-bit flip-flop.

    Args:
        out_dir: directory for ``flipflop.png``, ``.pdf``, ``.json`` and ``.npz`` (created).
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

    task = FlipFlop(n_bits=cfg["n_bits"], n_steps=cfg["trial_steps"], p_pulse=cfg["p_pulse"])
    net = train_network(task, hidden=cfg["hidden"], alpha=cfg["alpha"], noise=cfg["noise"],
                        steps=cfg["steps"], learning_rate=cfg["learning_rate"],
                        batch_size=cfg["batch_size"], key=k_train,
                        forward=cfg["forward"])

    test_task = FlipFlop(n_bits=cfg["n_bits"], n_steps=cfg["analysis_trial_steps"],
                         p_pulse=cfg["p_pulse"])
    batch = test_task.sample(k_trials, cfg["analysis_trials"])
    states, outputs = rollout(net, batch.inputs)
    accuracy = float(test_task.accuracy(np.asarray(outputs, np.float32), batch))

    starts = sample_initial_states(states, cfg["fixed_point_starts"],
                                   noise_scale=cfg["start_noise"], key=k_starts)
    logger.info("flipflop: finding fixed points from %d starts", len(starts))
    fps = find_fixed_points(net.F, np.asarray(starts)).fixed
    n_unstable = np.asarray(fps.n_unstable, int)
    classes = plot.point_classes(fps)

    # memories: the stable points and the bit pattern of their readout
    stable_idx = np.flatnonzero(n_unstable == 0)
    memories = np.asarray(fps.x[stable_idx], np.float64)
    y_stable = readout(net, memories)
    signs = np.where(y_stable > 0, 1, -1)
    labels = [pattern_label(p) for p in signs]
    n_bits = cfg["n_bits"]
    n_patterns = 2 ** n_bits

    # one-bit separatrices: each 1-mode saddle's unstable manifold ends at two memories
    logger.info("flipflop: following the unstable manifolds of the 1-mode saddles")
    flows = saddle_flows(net.F, fps, memories, eps=cfg["saddle_eps"],
                         n_steps=cfg["saddle_flow_steps"], tolerance=cfg["memory_tolerance"])
    saddle_rows, edges = [], set()
    for fl in flows:
        a, b = fl["ends"]
        bits = (None if a is None or b is None
                else int(np.sum(signs[a] != signs[b])))
        if bits == 1:
            edges.add(frozenset((labels[a], labels[b])))
        saddle_rows.append({
            "multiplier": fl["multiplier"],
            "ends": [None if e is None else labels[e] for e in (a, b)],
            "end_distances": fl["end_distances"],
            "bits_differing": bits,
        })
    n_one_mode = len(flows)
    n_one_bit = sum(r["bits_differing"] == 1 for r in saddle_rows)
    by_modes = {int(k): int(v) for k, v in zip(*np.unique(n_unstable, return_counts=True),
                                                 strict=True)}

    claims = {
        "test_accuracy": accuracy,
        "final_train_loss": float(net.result.history.loss[-1]),
        "train_seconds": net.train_seconds,
        "n_fixed_points": len(fps),
        "max_q": float(np.max(fps.q)) if len(fps) else None,
        "point_class_counts": {str(k): int(v) for k, v in zip(
            *np.unique(classes, return_counts=True), strict=True)},
        "n_points_by_unstable_modes": by_modes,
        "n_stable": len(stable_idx),
        "stable_readouts": y_stable,
        "stable_bit_patterns": labels,
        "n_distinct_stable_patterns": len(set(labels)),
        "n_one_mode_saddles": n_one_mode,
        "one_mode_saddles": saddle_rows,
        "n_one_mode_saddles_joining_one_bit_neighbours": n_one_bit,
        "n_cube_edges_joined": len(edges),
        "saddle_test": {"eps": cfg["saddle_eps"], "steps": cfg["saddle_flow_steps"],
                        "memory_tolerance": cfg["memory_tolerance"]},
    }
    n_edges = n_bits * 2 ** (n_bits - 1)
    checks = {
        "eight_stable_points_with_the_eight_distinct_readouts": {
            "pass": len(stable_idx) == n_patterns and len(set(labels)) == n_patterns,
            "value": {"stable_points": len(stable_idx), "distinct_readout_patterns":
                      len(set(labels))},
            "criterion": "8 stable fixed points whose readout signs are 8 distinct patterns"},
        "twelve_saddles_with_exactly_one_unstable_mode": {
            "pass": n_one_mode == n_edges, "value": n_one_mode,
            "criterion": "exactly 12 fixed points with exactly one multiplier |mu| > 1"},
        "every_one_mode_saddle_joins_two_memories_one_bit_apart": {
            "pass": n_one_mode > 0 and n_one_bit == n_one_mode,
            "value": {"one_mode_saddles": n_one_mode, "joining_one_bit_neighbours": n_one_bit},
            "criterion": "from x* +- eps v each run ends within memory_tolerance of a memory, "
                         "and the two memories' patterns differ in exactly one bit"},
        "the_one_mode_saddles_join_all_twelve_one_bit_neighbours": {
            "pass": len(edges) == n_edges, "value": len(edges),
            "criterion": "the pairs joined are the 12 distinct edges of the cube of memories"},
        "task_accuracy_above_0.95": {
            "pass": accuracy > 0.95, "value": accuracy,
            "criterion": "fraction of correct output signs on fresh test trials > 0.95"},
    }

    with plot.style():
        fig = _figure(cfg, net, batch, outputs, states, fps, memories, labels, flows,
                      claims)
    data = {"network": network_arrays(net.cell, net.params),
            "fixed_points": {"zero_input": fps},
            "arrays": {"saddle_eps": np.asarray(cfg["saddle_eps"]),
                       "saddle_flow_steps": np.asarray(cfg["saddle_flow_steps"])}}
    return write_reproduction(out, NAME, fig, claims=claims, checks=checks, settings=cfg,
                              quick=quick, seed=seed, timer=timer, data=data)


def _figure(cfg, net, batch, outputs, states, fps, memories, labels, flows, claims):
    fig = new_figure(plot.PAGE_WIDTH, 4.3)
    grid = fig.add_gridspec(2, 2, width_ratios=[1.0, 1.75], height_ratios=[0.8, 1.2])

    ax = fig.add_subplot(grid[0, 0])
    plot.loss_curve(net.result.history.loss, steps=net.result.history.step, ax=ax)
    ax.set_title(f"training loss ({cfg['steps']} steps)")
    plot.panel_label(ax, "a")

    ax = fig.add_subplot(grid[1, 0])
    _pulse_panel(ax, cfg, batch, outputs)
    plot.panel_label(ax, "b")

    ax = fig.add_subplot(grid[:, 1], projection="3d")
    pca = TrajectoryPCA(3).fit(states)
    plot.fixed_points_3d(fps, pca=pca, trajectories=states[:2], modes=False, fit="points",
                         trajectory_alpha=0.35, trajectory_width=0.4, marker_size=26, ax=ax)
    ax.set_box_aspect(None, zoom=0.86)  # room inside the axes for the tick and axis labels
    first = True
    for fl in flows:
        for orbit in fl["orbits"]:
            z = pca.transform(orbit)
            ax.plot(*z.T, color=plot.OKABE_ITO["vermillion"], lw=0.8, zorder=3,
                    label="unstable manifold of a 1-mode saddle" if first else None)
            first = False
    # each memory's label 10 pt from it on screen, away from the cube's centre
    zm = pca.transform(memories)
    proj = ax.get_proj()
    pts = np.stack(proj3d.proj_transform(*zm.T, proj), axis=1)[:, :2]
    centre = np.asarray(proj3d.proj_transform(*zm.mean(0), proj)[:2])
    for z, p, lab in zip(zm, pts, labels, strict=True):
        d = p - centre
        d = d / (np.linalg.norm(d) or 1.0)
        shift = mtransforms.offset_copy(ax.transData, fig=fig, x=13 * d[0], y=13 * d[1],
                                        units="points")
        ax.text(z[0], z[1], z[2], lab.replace("-", "\u2212"), fontsize=7, ha="center",
                va="center", zorder=10, transform=shift)
    ax.set_title(f"{claims['n_stable']} memories (labelled by readout), "
                 f"{claims['n_one_mode_saddles']} one-mode saddles;\n"
                 f"{claims['n_one_mode_saddles_joining_one_bit_neighbours']} of them join "
                 f"two memories one bit apart", loc="center")
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    plot.legend_outside(ax, "below", ncol=2)
    plot.panel_label(ax, "c")
    fig.suptitle(f"3-bit flip-flop, CT-RNN with n = {cfg['hidden']} units, α = "
                 f"{cfg['alpha']:g} (after Sussillo & Barak 2013, Fig. 2–3)")
    return fig


def _pulse_panel(ax, cfg, batch, outputs) -> None:
    """Pulses (triangles: up +1, down −1), output (solid) and target (dashed) per bit."""
    T = 120
    t = np.arange(1, T + 1)
    n_bits = cfg["n_bits"]
    ticks, ticklabels = [], []
    for i in range(n_bits):
        off = 3.2 * (n_bits - 1 - i)
        col = plot.OKABE_ITO[("blue", "orange", "bluish green")[i % 3]]
        ax.axhline(off, color="0.9", lw=0.5, zorder=0)
        ax.plot(t, off + np.asarray(batch.targets[0, :T, i]), color="0.25", ls=(0, (2, 1.5)),
                lw=0.8, zorder=2, label="target")
        ax.plot(t, off + np.asarray(outputs[0, :T, i]), color=col, lw=1.1, zorder=3,
                label="output")
        pulses = np.asarray(batch.inputs[0, :T, i])
        for sign, marker, name in ((1, "^", "pulse +1"), (-1, "v", "pulse \u22121")):
            sel = pulses * sign > 0
            ax.scatter(t[sel], np.full(sel.sum(), off + 1.45 * sign), marker=marker, s=14,
                       color="black", zorder=4, label=name, linewidths=0)
        ticks += [off - 1, off + 1]
        ticklabels += ["\u22121", "+1"]
        ax.text(-0.2, off, f"bit {i + 1}", transform=ax.get_yaxis_transform(), rotation=90,
                ha="center", va="center")
    ax.set_yticks(ticks, ticklabels)
    ax.set_ylim(-1.8, 3.2 * (n_bits - 1) + 1.8)
    ax.set_xlim(0, T + 1)
    ax.set_xlabel("time step")
    ax.set_title("one test trial: pulses, output, target")
    handles, names = ax.get_legend_handles_labels()
    keep = dict(zip(names, handles, strict=True))
    plot.legend_outside(ax, "below", ncol=4, handles=list(keep.values()),
                        labels=list(keep.keys()))
