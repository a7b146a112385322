r"""The seed's three small circuits — switch, limit cycle, strange attractor — and their numbers.

Redraws the seed's ``ctrnn_dynamics.png`` / ``ctrnn_strange_attractor.png`` (trajectories of
Beer's (1995) rate CT-RNNs, :math:`h_{t+1} = h_t + \alpha(-h_t + \sigma(h_t K + b))`,
:math:`\alpha = \Delta t/\tau`, zero input) and tests the mechanism behind each:

* **switch** (1 neuron, bistable): three fixed points, the roots of
  :math:`-h + \sigma(8h - 4) = 0`, the outer two stable and the middle one (0.5) unstable; the
  unstable point is the boundary of the two basins: every start below it ends at the low
  state, every start above it at the high state. Panels: trajectories, the 1-D phase portrait
  :math:`\dot h(h)` with arrows drawn from the sign of :math:`\dot h`, and the end state
  against the start.
* **oscillator** (2 neurons): one fixed point, an unstable focus at (0.5, 0.5), enclosed by an
  attracting limit cycle; starts inside (next to the focus) and outside both converge to that
  one cycle, and once close, their distance to it shrinks per period by the cycle's
  non-trivial Floquet multiplier :math:`\mu_2` (measured, and compared with the multiplier
  of the monodromy matrix). Panels: trajectories, the phase plane (nullclines, flow, focus,
  cycle), and the distance to the cycle against time with the Floquet prediction
  :math:`\propto |\mu_2|^{t/T}`.
* **chaotic circuit** (3 neurons): a positive largest Lyapunov exponent :math:`\lambda_1`
  (Benettin's QR method, three starts, each more than 3 standard errors above 0) that the
  starts agree on within 2 combined standard errors, one exponent :math:`\approx 0` along the
  flow, and :math:`\lambda_1` confirmed without Jacobians: pairs of trajectories started
  :math:`10^{-9}` apart on the attractor (renormalised every 10 τ) separate at the mean
  log-rate :math:`\lambda_1` (within 2 combined standard errors). Panels: the attractor in
  3-D (rates), the running estimate of :math:`\lambda_1` per start with its final ±2 SE,
  and the pairs' accumulated log growth against :math:`\lambda_1 t`.

:func:`~ctrnn_dyn.attractors.classify_dynamics` names each circuit's long-run behaviour
(fixed point, limit cycle, chaotic); the verdicts are checks too.

Files (``run(out_dir)``): ``seed_dynamics.png`` / ``.pdf``, ``seed_dynamics.json`` (claims and
checks) and ``seed_dynamics.npz`` (loads with ``np.load(path, allow_pickle=False)``):

- ``net/<circuit>/recurrent_kernel`` ``(n, n)`` (rows presynaptic), ``net/<circuit>/
  recurrent_bias`` ``(n,)``, ``net/<circuit>/alpha`` ``(n,)`` (:math:`\Delta t/\tau`) for
  ``switch``, ``oscillator`` and ``chaos`` (rate model with the sigmoid
  :math:`\sigma(z) = 1/(1 + e^{-z})`; no input or output kernels: the input adds to the
  rates and the rates are the output);
- ``fp/switch/<field>``, ``fp/oscillator/<field>``: the fixed points as
  :meth:`~ctrnn_dyn.fixed_points.FixedPoints.save` writes them;
- ``oscillator/cycle_orbit`` ``(P, 2)``: the cycle from ``F^t(x)``, ``t = 0 … ceil(period)``;
  ``oscillator/period_steps`` ``()``; ``oscillator/floquet_multipliers`` ``(2,)`` complex;
- ``switch/basin_starts`` ``(S,)`` and ``switch/basin_ends`` ``(S,)``;
- ``chaos/lyapunov_exponents`` ``(3 starts, 3)``, ``chaos/lyapunov_stderr`` ``(3, 3)``,
  ``chaos/lyapunov_history`` ``(3, blocks, 3)`` per unit time; ``chaos/separation_times``
  ``(M,)`` and ``chaos/separation_log_growth_mean`` ``(M,)``: the mean over the pairs of
  their accumulated log growth :math:`\sum_k \ln(d_k/d_0)`.

``run(out_dir, quick=False, seed=0)``; no training and no randomness except the starts and
directions of the separation test's pairs (from ``seed``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial import cKDTree

from ctrnn_dyn import plot
from ctrnn_dyn.attractors import classify_dynamics, find_limit_cycle, lyapunov_spectrum
from ctrnn_dyn.dynamics import simulate
from ctrnn_dyn.fixed_points import find_fixed_points
from ctrnn_dyn.reproduce._circuits64 import _map64, _run_from
from ctrnn_dyn.reproduce._common import (
    ReproductionResult,
    Timer,
    check_run_args,
    write_reproduction,
)
from ctrnn_dyn.reproduce._seed_dynamics_figure import _figure
from ctrnn_dyn.systems import CHAOS, OSCILLATOR, SWITCH

__all__ = ["NAME", "run"]

NAME = "seed_dynamics"
logger = logging.getLogger(__name__)


def _settings(quick: bool) -> dict:
    return {
        "switch_fixed_point_starts": 41,
        "switch_basin_starts": 101,
        "switch_basin_steps": 3000,
        "oscillator_fixed_point_grid": 7,
        "limit_cycle_transient_steps": 2000,
        "cycle_sample_periods": 200,
        "cycle_starts": {"inside": [0.51, 0.5], "outside": [0.0, 0.0]},
        "cycle_run_steps": 3000,
        "cycle_contraction_from": 1e-2,
        "cycle_contraction_rtol": 0.05,
        "cycle_converged_distance": 1e-6,
        "lyapunov_steps": 500_000 if quick else 5_000_000,
        "lyapunov_transient_steps": 2000 if quick else 10_000,
        "lyapunov_blocks": 50,
        "separation_pairs": 32 if quick else 128,
        "separation_d0": 1e-9,
        "separation_transient_steps": 20_000,
        "separation_renormalise_steps": 100,
        "separation_steps": 50_000 if quick else 100_000,
        "classify_steps": {"switch": 5000, "oscillator": 20_000,
                           "chaos": 100_000 if quick else 300_000},
        "classify_transient_steps": 2000,
        "chaos_plot_steps": CHAOS.n_steps,
    }


def _switch(settings: dict) -> tuple[dict, dict, object, dict]:
    F = _map64(SWITCH)
    starts = np.linspace(-0.5, 1.5, settings["switch_fixed_point_starts"])[:, None]
    fps = find_fixed_points(F, starts).fixed
    order = np.argsort(fps.x[:, 0])
    fps = fps[order]
    lam = fps.continuous_eigvals[:, 0].real  # units of 1/tau
    three = len(fps) == 3
    # the basins: where each start ends (the exact unstable point itself left out)
    h0 = np.linspace(-0.2, 1.2, settings["switch_basin_starts"])
    h0 = h0[np.abs(h0 - 0.5) > 1e-9]
    ends = _run_from(SWITCH, h0[:, None], settings["switch_basin_steps"])[:, -1, 0]
    basin_ok = False
    if three:
        lo, mid, hi = fps.x[:, 0]
        below, above = h0 < mid, h0 > mid
        basin_ok = bool(np.all(np.abs(ends[below] - lo) < 1e-3)
                        and np.all(np.abs(ends[above] - hi) < 1e-3))
    claims = {
        "fixed_points": fps.x[:, 0],
        "multipliers": fps.eigvals[:, 0].real,
        "continuous_eigenvalues": lam,
        "stability": list(fps.stability),
        "q": fps.q,
        "basin": {"n_starts": len(h0), "run_time": settings["switch_basin_steps"] * SWITCH.dt,
                  "n_ending_low": int(np.sum(np.abs(ends - fps.x[0, 0]) < 1e-3)),
                  "n_ending_high": int(np.sum(np.abs(ends - fps.x[-1, 0]) < 1e-3)),
                  "highest_start_ending_low": float(h0[ends < 0.5].max()),
                  "lowest_start_ending_high": float(h0[ends > 0.5].min())},
    }
    middle = three and abs(fps.x[1, 0] - 0.5) < 1e-8
    checks = {
        "switch_three_fixed_points": {
            "pass": three, "value": fps.x[:, 0],
            "criterion": "three roots of -h + sigma(8h - 4) = 0 found"},
        "switch_middle_at_half_unstable": {
            "pass": bool(middle and lam[1] > 0 and fps.stability[1] == "unstable node"),
            "value": {"h": fps.x[1, 0] if three else None,
                      "lambda_per_tau": lam[1] if three else None},
            "criterion": "middle point at 0.5 (to 1e-8) with lambda > 0"},
        "switch_outer_stable": {
            "pass": bool(three and lam[0] < 0 and lam[2] < 0),
            "value": [lam[0], lam[-1]], "criterion": "lambda < 0 at the outer points"},
        "switch_unstable_point_separates_the_basins": {
            "pass": basin_ok, "value": claims["basin"],
            "criterion": "every start below the unstable point ends within 1e-3 of the low "
                         "point, every start above it within 1e-3 of the high point"},
    }
    return claims, checks, fps, {"h0": h0, "ends": ends}


def _cycle_distance(cycle, centre: np.ndarray, n_periods: int):
    """``dist(X)``: distance of states ``X`` ``(M, 2)`` to the invariant circle, measured to
    the polygon through ``n_periods`` periods of its orbit sorted by angle about ``centre``
    (spacing ~``1/n_periods`` of a step: a resolution of ~1e-9)."""
    dense = _run_from(OSCILLATOR, cycle.orbit[:1], int(n_periods * cycle.period))[0]
    ang = np.arctan2(dense[:, 1] - centre[1], dense[:, 0] - centre[0])
    poly = dense[np.argsort(ang)]
    tree = cKDTree(poly)
    m = len(poly)

    def seg_dist(X, A, B):
        AB = B - A
        t = np.clip(np.sum((X - A) * AB, 1) / np.maximum(np.sum(AB * AB, 1), 1e-300), 0, 1)
        return np.linalg.norm(X - (A + t[:, None] * AB), axis=1)

    def dist(X):
        X = np.asarray(X, np.float64)
        _, k = tree.query(X)
        return np.minimum(seg_dist(X, poly[k], poly[(k + 1) % m]),
                          seg_dist(X, poly[k], poly[(k - 1) % m]))

    return dist


def _oscillator(settings: dict) -> tuple[dict, dict, object, object, dict]:
    F = _map64(OSCILLATOR)
    g = np.linspace(-0.2, 1.2, settings["oscillator_fixed_point_grid"])
    starts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    fps = find_fixed_points(F, starts).fixed
    cycle = find_limit_cycle(F, np.asarray(OSCILLATOR.initial_states())[0], dt=OSCILLATOR.dt,
                             n_transient=settings["limit_cycle_transient_steps"])
    mu = np.asarray(cycle.floquet_multipliers)
    nontrivial = mu[np.argsort(np.abs(mu - 1.0))][1:]
    one_fp = len(fps) == 1 and np.allclose(fps.x[0], 0.5, atol=1e-8)
    focus = np.asarray(fps.x[0]) if len(fps) else np.full(2, 0.5)
    curves: dict = {}
    winding = None
    runs = {}
    if cycle.converged:
        ang = np.unwrap(np.arctan2(cycle.orbit[:, 1] - focus[1], cycle.orbit[:, 0] - focus[0]))
        winding = int(np.rint((ang[-1] - ang[0]) / (2 * np.pi)))
        dist = _cycle_distance(cycle, focus, settings["cycle_sample_periods"])
        names = list(settings["cycle_starts"])
        x0 = np.array([settings["cycle_starts"][k] for k in names], np.float64)
        traj = _run_from(OSCILLATOR, x0, settings["cycle_run_steps"])
        t = OSCILLATOR.dt * np.arange(traj.shape[1])
        P = cycle.period
        mu2 = float(np.abs(nontrivial[0]))
        for name, tr in zip(names, traj, strict=True):
            d = dist(tr)
            logd = np.log(np.maximum(d, 1e-300))
            peak = int(np.argmax(d))
            after = np.flatnonzero(d[peak:] <= settings["cycle_contraction_from"])
            ratio = None
            if after.size:
                i0 = peak + int(after[0])
                if i0 + P < len(d) - 1:
                    ratio = float(np.exp(np.interp(i0 + P, np.arange(len(d)), logd) - logd[i0]))
            runs[name] = {"start": x0[names.index(name)], "final_distance": float(d[-1]),
                          "max_distance": float(d[peak]),
                          "distance_ratio_over_one_period": ratio,
                          "contraction_from_time": None if ratio is None else float(t[i0])}
            curves[name] = {"t": t, "d": d, "traj": tr,
                            "t0": None if ratio is None else float(t[i0]),
                            "d0": None if ratio is None else float(d[i0])}
        log_err = [abs(np.log(r["distance_ratio_over_one_period"]) / np.log(mu2) - 1)
                   if r["distance_ratio_over_one_period"] else np.inf for r in runs.values()]
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
            "nontrivial_multiplier_modulus": float(np.abs(nontrivial[0])),
            "floquet_exponents_per_time": np.log(np.abs(nontrivial)) / cycle.period_time,
            "stable": cycle.stable,
            "residual": cycle.residual,
            "winding_number_about_the_fixed_point": winding,
        },
        "convergence_to_the_cycle": runs,
    }
    ok_runs = bool(runs) and all(r["final_distance"] < settings["cycle_converged_distance"]
                                 for r in runs.values())
    ratios = {k: r["distance_ratio_over_one_period"] for k, r in runs.items()}
    checks = {
        "oscillator_one_fixed_point_at_half": {
            "pass": bool(one_fp), "value": fps.x,
            "criterion": "exactly one fixed point, at (0.5, 0.5) to 1e-8"},
        "oscillator_fixed_point_unstable_focus": {
            "pass": bool(one_fp and fps.stability[0] == "unstable focus"),
            "value": fps.continuous_eigvals[0] if len(fps) else None,
            "criterion": "complex pair with Re lambda > 0"},
        "oscillator_limit_cycle_found_and_stable": {
            "pass": bool(cycle.converged and cycle.stable and np.all(np.abs(nontrivial) < 1)),
            "value": np.abs(nontrivial),
            "criterion": "closed orbit solved; non-trivial Floquet multiplier |mu_2| < 1"},
        "oscillator_cycle_encloses_the_focus": {
            "pass": winding is not None and abs(winding) == 1, "value": winding,
            "criterion": "the cycle winds once around the fixed point"},
        "oscillator_starts_inside_and_outside_reach_the_cycle": {
            "pass": ok_runs, "value": {k: r["final_distance"] for k, r in runs.items()},
            "criterion": "distance to the cycle after the run < cycle_converged_distance"},
        "oscillator_contraction_per_period_is_the_floquet_multiplier": {
            "pass": bool(runs and max(log_err) <= settings["cycle_contraction_rtol"]),
            "value": {"measured_ratio_per_period": ratios,
                      "floquet_mu_2": float(np.abs(nontrivial[0]))},
            "criterion": "ln(ratio) within cycle_contraction_rtol of ln|mu_2|, ratio measured "
                         "over one period from where the distance first falls below "
                         "cycle_contraction_from"},
    }
    return claims, checks, fps, cycle, curves


def _separation(settings: dict, lam1: float, lam1_se: float, seed: int) -> tuple[dict, dict]:
    r"""The largest exponent from pairs of trajectories (no Jacobians): each pair starts
    :math:`d_0` apart on the attractor and is renormalised back to :math:`d_0` every 100 steps
    (Benettin's two-trajectory method); its rate is :math:`\sum_k \ln(d_k/d_0) / t`.

    Each pair starts from its own point: a start drawn uniformly from ``[0.45, 0.55]^3`` (the
    seed's starts span that range) run for ``separation_transient_steps``, long enough for the
    chaos to decorrelate the points, so the pairs are independent and the standard error of
    their mean rate is ``std / sqrt(pairs)``.
    """
    F = _map64(CHAOS)
    n_pairs = settings["separation_pairs"]
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(0.45, 0.55, size=(n_pairs, 3))
    v = rng.normal(size=(n_pairs, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    d0 = settings["separation_d0"]
    chunk = settings["separation_renormalise_steps"]
    n_chunks = settings["separation_steps"] // chunk
    with jax.enable_x64(True):
        u = jnp.zeros((3,), jnp.float64)
        step = jax.jit(jax.vmap(lambda s: simulate(F, s, u, n_steps=chunk)[-1]))
        X = jnp.asarray(x0, jnp.float64)
        for _ in range(settings["separation_transient_steps"] // chunk):
            X = step(X)
        P = np.asarray(X)
        Q = P + d0 * v
        acc = np.empty((n_chunks, n_pairs))
        total = np.zeros(n_pairs)
        for i in range(n_chunks):
            Y = np.asarray(step(jnp.asarray(np.concatenate([P, Q]), jnp.float64)))
            P, Q = Y[:n_pairs], Y[n_pairs:]
            d = np.linalg.norm(Q - P, axis=1)
            total += np.log(d / d0)
            acc[i] = total
            Q = P + (Q - P) * (d0 / d)[:, None]
    t = CHAOS.dt * chunk * np.arange(1, n_chunks + 1)
    rates = acc[-1] / t[-1]
    rate, se = float(rates.mean()), float(rates.std(ddof=1) / np.sqrt(n_pairs))
    z = abs(rate - lam1) / np.hypot(se, lam1_se)
    claims = {"n_pairs": n_pairs, "d0": d0, "time": float(t[-1]),
              "renormalised_every_time": chunk * CHAOS.dt,
              "mean_rate": rate, "mean_rate_stderr": se,
              "difference_over_combined_stderr": float(z)}
    curves = {"t": t, "mean": acc.mean(1), "p10": np.percentile(acc, 10, axis=1),
              "p90": np.percentile(acc, 90, axis=1), "rate": rate}
    return claims, curves


def _chaos(settings: dict, seed: int) -> tuple[dict, dict, object, dict]:
    F = _map64(CHAOS)
    x0 = np.asarray(CHAOS.initial_states())
    spec = lyapunov_spectrum(F, x0, dt=CHAOS.dt, n_steps=settings["lyapunov_steps"],
                             n_transient=settings["lyapunov_transient_steps"],
                             n_blocks=settings["lyapunov_blocks"])
    lam = np.asarray(spec.exponents)  # (B, 3)
    se = np.asarray(spec.stderr)
    # the exponent nearest 0 is the one along the flow
    izero = np.argmin(np.abs(lam), axis=1)
    zero = np.take_along_axis(lam, izero[:, None], 1)[:, 0]
    zero_se = np.take_along_axis(se, izero[:, None], 1)[:, 0]
    l1, s1 = lam[:, 0], se[:, 0]
    pair_z = np.array([abs(l1[i] - l1[j]) / np.hypot(s1[i], s1[j])
                       for i in range(len(l1)) for j in range(i + 1, len(l1))])
    lam1 = float(l1.mean())
    lam1_se = float(np.sqrt(np.sum(s1 ** 2)) / len(s1))
    sep_claims, sep_curves = _separation(settings, lam1, lam1_se, seed)
    claims = {
        "starts": CHAOS.starts,
        "lyapunov_exponents_per_time": lam,
        "lyapunov_stderr": se,
        "largest": l1,
        "largest_mean": lam1,
        "largest_mean_stderr": lam1_se,
        "largest_interval_2se": [lam1 - 2 * lam1_se, lam1 + 2 * lam1_se],
        "largest_over_stderr": l1 / s1,
        "largest_max_pairwise_difference_over_combined_stderr": float(pair_z.max()),
        "exponent_nearest_zero": zero,
        "exponent_nearest_zero_stderr": zero_se,
        "sum": spec.total,
        "kaplan_yorke_dimension": spec.kaplan_yorke_dimension,
        "averaged_time": spec.n_steps * spec.dt,
        "separation": sep_claims,
    }
    checks = {
        "chaos_largest_exponent_positive_by_3_stderr": {
            "pass": bool(np.all(l1 > 3 * s1)), "value": l1 / s1,
            "criterion": "lambda_1 / SE > 3 for every start"},
        "chaos_largest_exponent_agrees_across_starts_within_2_stderr": {
            "pass": bool(np.all(pair_z <= 2.0)), "value": float(pair_z.max()),
            "criterion": "|lambda_1,i - lambda_1,j| <= 2 sqrt(SE_i^2 + SE_j^2) for every pair "
                         "of starts"},
        "chaos_one_exponent_zero_within_3_stderr": {
            "pass": bool(np.all(np.abs(zero) <= 3 * zero_se) and np.all(izero == 1)),
            "value": zero / zero_se,
            "criterion": "the second exponent is the one nearest 0, |lambda_2| <= 3 SE"},
        "chaos_pairs_separate_at_the_largest_exponent_within_2_stderr": {
            "pass": bool(sep_claims["difference_over_combined_stderr"] <= 2.0),
            "value": {"pairs_rate": sep_claims["mean_rate"], "qr_lambda_1": lam1,
                      "difference_over_combined_stderr":
                      sep_claims["difference_over_combined_stderr"]},
            "criterion": "two-trajectory rate within 2 combined SE of the QR method's mean "
                         "lambda_1"},
    }
    return claims, checks, spec, sep_curves


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
        checks[f"classify_{system.name}_{expected[system.name].replace(' ', '_')}"] = {
            "pass": all(label == expected[system.name] for label in res.labels),
            "value": list(res.labels),
            "criterion": f"classify_dynamics labels every start {expected[system.name]!r}"}
    return out, checks


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0,
        forward: str | None = None) -> ReproductionResult:
    """Reproduce the seed's dynamics figures and test the mechanism behind each circuit.

    Args:
        out_dir: directory for ``seed_dynamics.png``, ``.pdf``, ``.json`` and ``.npz``
            (created).
        quick: shorter Lyapunov/classification runs and fewer separation pairs (for tests).
        seed: the directions of the separation test's pairs.
        forward: accepted for the common signature; nothing here is trained.

    Returns:
        :class:`~ctrnn_dyn.reproduce._common.ReproductionResult`; ``claims`` holds
        ``switch``, ``oscillator``, ``chaos`` and ``classification`` sections.
    """
    timer = Timer()
    out = check_run_args(out_dir, quick, seed, forward)
    settings = _settings(quick)

    logger.info("seed_dynamics: the switch's fixed points and basins")
    sw_claims, sw_checks, sw_fps, basin = _switch(settings)
    logger.info("seed_dynamics: the oscillator's limit cycle")
    osc_claims, osc_checks, osc_fps, cycle, osc_curves = _oscillator(settings)
    logger.info("seed_dynamics: the chaotic circuit's Lyapunov spectrum and separation test")
    ch_claims, ch_checks, spec, sep_curves = _chaos(settings, seed)
    logger.info("seed_dynamics: classify_dynamics on the three circuits")
    cls_claims, cls_checks = _classify(settings)

    with plot.style():
        fig = _figure(settings, sw_fps, basin, osc_fps, cycle, osc_claims, osc_curves, spec,
                      ch_claims, sep_curves, cls_claims)

    claims = {"switch": sw_claims, "oscillator": osc_claims, "chaos": ch_claims,
              "classification": cls_claims}
    checks = {**sw_checks, **osc_checks, **ch_checks, **cls_checks}
    networks = {}
    for system in (SWITCH, OSCILLATOR, CHAOS):
        networks[system.name] = {
            "recurrent_kernel": np.asarray(system.K, np.float64),
            "recurrent_bias": np.asarray(system.b, np.float64),
            "alpha": system.dt / np.asarray(system.tau, np.float64),
        }
    arrays = {
        "switch/basin_starts": basin["h0"], "switch/basin_ends": basin["ends"],
        "chaos/lyapunov_exponents": np.asarray(spec.exponents),
        "chaos/lyapunov_stderr": np.asarray(spec.stderr),
        "chaos/lyapunov_history": np.asarray(spec.history),
        "chaos/separation_times": sep_curves["t"],
        "chaos/separation_log_growth_mean": sep_curves["mean"],
    }
    if cycle.converged:
        arrays.update({"oscillator/cycle_orbit": np.asarray(cycle.orbit),
                       "oscillator/period_steps": np.asarray(cycle.period),
                       "oscillator/floquet_multipliers": np.asarray(cycle.floquet_multipliers)})
    data = {"networks": networks, "fixed_points": {"switch": sw_fps, "oscillator": osc_fps},
            "arrays": arrays}
    return write_reproduction(out, NAME, fig, claims=claims, checks=checks, settings=settings,
                              quick=quick, seed=seed, timer=timer, data=data)
