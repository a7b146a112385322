r"""The analysis of a trained run, :func:`analyze_run` (see :mod:`ctrnn_dyn.report` for its
steps), and what it returns."""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn._checks import check_int
from ctrnn_dyn.attractors import DynamicsClassification, classify_dynamics
from ctrnn_dyn.fixed_points import FixedPoints, find_fixed_points
from ctrnn_dyn.report.starts import analysis_starts
from ctrnn_dyn.runs import Run, load_run

__all__ = ["AnalysisReport", "InputAnalysis", "analyze_run"]

logger = logging.getLogger(__name__)


class InputAnalysis(NamedTuple):
    """What :func:`analyze_run` found under one constant input.

    Attributes:
        u: ``(m,)`` the input.
        fixed_points: fixed points (``.fixed``) and slow points (``.slow``) from all starts,
            linearised and classified (:class:`~ctrnn_dyn.fixed_points.FixedPoints`).
        continuous_eigvals: ``(N, d)`` eigenvalues :math:`\\lambda` of :math:`(J - I)/\\alpha`
            per entry of ``fixed_points``, sorted by real part descending, or ``None`` when the
            map has no :math:`\\alpha`.
        dynamics: :class:`~ctrnn_dyn.attractors.DynamicsClassification` from the first
            ``n_dynamics`` starts.
        numbers: the JSON-able summary of this input written to ``analysis.json``.
    """

    u: np.ndarray
    fixed_points: FixedPoints
    continuous_eigvals: np.ndarray | None
    dynamics: DynamicsClassification
    numbers: dict


class AnalysisReport(NamedTuple):
    """Result of :func:`analyze_run`.

    Attributes:
        run: the analysed :class:`~ctrnn_dyn.runs.Run`.
        inputs: ``(K, m)`` the constant inputs analysed.
        states: ``(B, T, n)`` noise-free trajectories on the task's trials.
        starts: ``(n_starts, n)`` the starts of the fixed-point search.
        per_input: one :class:`InputAnalysis` per row of ``inputs``.
        fixed_points: all inputs' points in one container (the ``.npz``), in input order.
        numbers: everything ``analysis.json`` holds.
    """

    run: Run
    inputs: np.ndarray
    states: np.ndarray
    starts: np.ndarray
    per_input: tuple[InputAnalysis, ...]
    fixed_points: FixedPoints
    numbers: dict


def _check_inputs(inputs: Any, m: int) -> np.ndarray:
    if inputs is None:
        return np.zeros((1, m))
    try:
        u = np.asarray(inputs, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"inputs must be numbers of shape (m,) or (K, m), got {inputs!r}") from err
    u = u[None] if u.ndim == 1 else u
    if u.ndim != 2 or u.shape[0] < 1 or u.shape[1] != m:
        raise ValueError(
            f"inputs must have shape ({m},) or (K, {m}) (the network's input width), got "
            f"{np.shape(inputs)}"
        )
    if not np.all(np.isfinite(u)):
        raise ValueError("inputs must be finite")
    return u


def _readout(run: Run, x: np.ndarray) -> np.ndarray | None:
    """``f(x) K_out + b_out`` ``(N, p)`` for a cell with a readout, else ``None``."""
    tree = run.params["params"]
    tree = tree.get("cell", tree)
    if "output_kernel" not in tree:
        return None
    K = np.asarray(tree["output_kernel"]["kernel"], np.float64)
    b = np.asarray(tree["output_kernel"]["bias"], np.float64)
    with jax.enable_x64(True):
        rates = np.asarray(run.cell.activation_fn(jnp.asarray(x, jnp.float64)))
    return rates @ K + b


def _continuous(fps: FixedPoints) -> np.ndarray | None:
    """``(N, d)`` eigenvalues of ``(J - I)/alpha``, sorted by real part (descending)."""
    if fps.alpha is None or fps.eigvals is None or not len(fps):
        return None
    a = np.asarray(fps.alpha, float)
    if a.ndim == 0 or np.all(a == a.reshape(-1)[0]):
        lam = (np.asarray(fps.eigvals) - 1.0) / float(a.reshape(-1)[0])
    elif fps.jacobians is not None:
        eye = np.eye(fps.state_size)
        lam = np.linalg.eigvals((np.asarray(fps.jacobians) - eye) / a[:, None])
    else:
        return None
    order = np.argsort(-lam.real, axis=1, kind="stable")
    return np.take_along_axis(lam, order, axis=1)


def _pair(z: complex) -> list[float]:
    return [float(np.real(z)), float(np.imag(z))]


def _counts(values: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(collections.Counter(values).items())}


def _input_numbers(run: Run, u: np.ndarray, fps: FixedPoints, lam: np.ndarray | None,
                   dyn: DynamicsClassification, offset: int, time_unit: str,
                   n_eigvals: int) -> dict:
    fixed = np.flatnonzero(fps.converged)
    slow = fps.slow
    y = _readout(run, fps.x[fixed]) if len(fixed) else None
    points = []
    for j, i in enumerate(fixed):
        entry: dict[str, Any] = {
            "index": int(offset + i),
            "q": float(fps.q[i]),
            "stability": str(fps.stability[i]),
            "n_unstable": int(fps.n_unstable[i]),
            "top_multipliers": [_pair(m) for m in fps.eigvals[i, :n_eigvals]],
        }
        if lam is not None:
            entry["n_unstable_continuous"] = int(np.sum(lam[i].real > 0))
            entry["top_continuous_eigvals"] = [_pair(v) for v in lam[i, :n_eigvals]]
        if y is not None:
            entry["readout"] = [float(v) for v in y[j]]
        points.append(entry)
    stab = fps.stability[fixed] if len(fixed) else np.array([], str)
    n_unst = fps.n_unstable[fixed] if len(fixed) else np.array([], int)
    stable = int(np.sum(np.isin(stab, ("stable node", "stable focus"))))
    out: dict[str, Any] = {
        "u": [float(v) for v in u],
        "n_fixed": int(len(fixed)),
        "n_slow": len(slow),
        "n_other": len(fps) - len(fixed) - len(slow),
        "n_stable": stable,
        "stability_counts": _counts(stab.tolist()),
        "n_unstable_counts": _counts(int(k) for k in n_unst),
        "fixed_points": points,
        "slow_q": [float(v) for v in np.sort(slow.q)],
    }
    if lam is not None and len(fixed):
        out["n_stable_continuous"] = int(np.sum(np.all(lam[fixed].real < 0, axis=1)))
    labels = _counts(dyn.labels)
    out["dynamics"] = {
        "labels": labels,
        "verdict": max(labels, key=labels.get),
        "n_starts": len(dyn.labels),
        "lyapunov": np.where(np.isfinite(dyn.lyapunov), dyn.lyapunov, np.nan).tolist(),
        "lyapunov_unit": f"1/{time_unit}",
        "period_steps": [int(p) for p in dyn.period],
    }
    return _finite_or_none(out)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def analyze_run(
    run: Run | str | os.PathLike,
    *,
    inputs: Any = None,
    n_starts: int = 512,
    n_trials: int = 32,
    noise_scale: float = 0.5,
    seed: int = 0,
    n_dynamics: int = 8,
    dynamics_transient: int = 2000,
    dynamics_steps: int = 5000,
    n_eigvals: int = 3,
    **find_kwargs: Any,
) -> AnalysisReport:
    r"""Find, linearise and classify the fixed and slow points of a trained run.

    See the module docstring for the procedure and the keys.

    Args:
        run: a :class:`~ctrnn_dyn.runs.Run` or the path of a run directory.
        inputs: constant inputs, ``(m,)`` or ``(K, m)``; ``None``: zero input.
        n_starts: starts of the fixed-point search.
        n_trials: task trials whose states the starts are sampled from.
        noise_scale: standard deviation of the noise added to the sampled states.
        seed: seed of the trials and the starts' sampling.
        n_dynamics: starts (the first of the fixed-point starts) whose long-run behaviour
            :func:`~ctrnn_dyn.attractors.classify_dynamics` names, per input.
        dynamics_transient: steps ``classify_dynamics`` discards first.
        dynamics_steps: steps over which it measures the Lyapunov exponents.
        n_eigvals: leading multipliers / eigenvalues listed per fixed point in the numbers.
        **find_kwargs: passed to :func:`~ctrnn_dyn.fixed_points.find_fixed_points`
            (``tol_q``, ``max_iters``, ``method``, …; not ``compute_jacobians`` or
            ``decompose``, which the report needs on).

    Returns:
        :class:`AnalysisReport`.

    Raises:
        TypeError, ValueError: a bad argument, naming it; see also
            :func:`~ctrnn_dyn.runs.load_run` for a bad path.
    """
    t0 = time.perf_counter()
    reserved = sorted({"compute_jacobians", "decompose", "inputs"} & set(find_kwargs))
    if reserved:
        raise ValueError(
            f"analyze_run sets {', '.join(reserved)} of find_fixed_points itself (the report needs "
            "the linearisation; pass constant inputs as inputs=)"
        )
    if not isinstance(run, Run):
        run = load_run(run)
    for name, value, low in (("n_dynamics", n_dynamics, 1), ("dynamics_steps", dynamics_steps, 1),
                             ("dynamics_transient", dynamics_transient, 0),
                             ("n_eigvals", n_eigvals, 1)):
        check_int(name, value, low)
    F = run.map()
    if F.input_size is None:
        raise ValueError("the network's input width cannot be read from its parameters")
    u_all = _check_inputs(inputs, F.input_size)
    logger.info("analyze: sampling %d starts from %d trials of %s", n_starts, n_trials,
                type(run.task).__name__)
    states, starts = analysis_starts(run, n_starts=n_starts, n_trials=n_trials,
                                     noise_scale=noise_scale, seed=seed)
    alpha = None if F.alpha is None else np.asarray(F.alpha, float)
    scalar_alpha = alpha is not None and (alpha.ndim == 0 or np.all(alpha == alpha.flat[0]))
    dt, time_unit = (float(alpha.flat[0]), "tau") if scalar_alpha else (1.0, "step")
    dyn_starts = starts[: min(n_dynamics, len(starts))]
    per_input = []
    offset = 0
    for k, u in enumerate(u_all):
        logger.info("analyze: input %d/%d u=%s: fixed points", k + 1, len(u_all), u.tolist())
        fps = find_fixed_points(F, starts, u, **find_kwargs)
        lam = _continuous(fps)
        logger.info("analyze: input %d/%d: %d fixed, %d slow; classifying the dynamics",
                    k + 1, len(u_all), int(np.sum(fps.converged)), len(fps.slow))
        dyn = classify_dynamics(F, dyn_starts, u, dt=dt, n_transient=dynamics_transient,
                                n_steps=dynamics_steps)
        numbers = _input_numbers(run, u, fps, lam, dyn, offset, time_unit, n_eigvals)
        per_input.append(InputAnalysis(u, fps, lam, dyn, numbers))
        offset += len(fps)
    all_fps = FixedPoints.concatenate([a.fixed_points for a in per_input])
    verdicts = collections.Counter()
    for a in per_input:
        verdicts.update(a.dynamics.labels)
    numbers = {
        "run": {
            "path": str(run.path),
            "step": run.step,
            "nonfinite_step": run.nonfinite_step,
            "final_loss": float(run.history.loss[-1]) if len(run.history.loss) else None,
        },
        "settings": {
            "seed": seed,
            "n_trials": n_trials,
            "n_starts": n_starts,
            "noise_scale": float(noise_scale),
            "n_dynamics": len(dyn_starts),
            "dynamics_transient": dynamics_transient,
            "dynamics_steps": dynamics_steps,
            "dynamics_dt": dt,
            "time_unit": time_unit,
            "find_fixed_points": {k: v for k, v in find_kwargs.items()
                                  if isinstance(v, int | float | str | bool | None)},
        },
        "cell": _cell_config(run),
        "task": _task_config(run),
        "inputs": [a.numbers for a in per_input],
        "verdict": {
            "label": verdicts.most_common(1)[0][0],
            "counts": _counts(list(verdicts.elements())),
            "summary": _summary(per_input),
        },
        "wall_time_s": round(time.perf_counter() - t0, 2),
    }
    logger.info("analyze: %s", numbers["verdict"]["summary"])
    return AnalysisReport(run, u_all, states, starts, tuple(per_input), all_fps, numbers)


def _cell_config(run: Run) -> dict:
    from ctrnn_dyn.checkpoint import cell_config

    return cell_config(run.cell)


def _task_config(run: Run) -> dict:
    from ctrnn_dyn.tasks import task_config

    return task_config(run.task)


def _summary(per_input: Sequence[InputAnalysis]) -> str:
    lines = []
    for a in per_input:
        n = a.numbers
        modes = ", ".join(f"{c} with {k}" for k, c in n["n_unstable_counts"].items() if k != "0")
        labels = ", ".join(f"{lab} x{c}" for lab, c in n["dynamics"]["labels"].items())
        u = "(" + ", ".join(f"{v:g}" for v in n["u"]) + ")"
        lines.append(
            f"u = {u}: {n['n_fixed']} fixed points ({n['n_stable']} stable"
            + (f"; unstable modes: {modes}" if modes else "")
            + f"), {n['n_slow']} slow points; from {n['dynamics']['n_starts']} starts: {labels}"
        )
    return "\n".join(lines)
