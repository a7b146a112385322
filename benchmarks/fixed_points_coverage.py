"""Benchmark: does ``find_fixed_points``' default call find every root scipy reaches, over many
networks nobody chose?

A finder tuned on a few networks can lose roots on others: a change of its solver's route (the
damping schedule, the first steps) moves starts from one basin to another. This runs the default
call on ``--seeds`` networks of each of two recipes (those of ``tests/test_fixed_points.py``) at
each width of ``--widths``, and checks it against an independent float64 multistart:
``scipy.optimize.root`` (MINPACK hybrd) from the same starts, on a NumPy ``F`` of the equation
(SCIENCE.md §1), roots within FixedPointFinder's outlier radius (10 mean start distances).

Recipes (``α = 0.2``, ``u = 0.3`` on one input, weights rounded to float32 as the map holds them):

* ``pattern``: ``K = (2/H) ξᵀξ + N(0, 0.1²/H)`` for two ±1 patterns ``ξ``, no bias;
* ``random``: ``K ~ N(0, 1.5²/H)``, biases ``N(0, 0.1²)``;

32 starts ``N(0, 1.5²)`` per network. A root counts as found when a fixed point of the call lies
within ``1e-8`` of it. The table lists the networks where the call missed a root; ``extra`` counts
the call's fixed points (``q <= 1e-20``, within the same radius) that no hybrd run reached: each
multistart finds the roots its own route leads to, so the two counts together say which finds
more.

Usage::

    python benchmarks/fixed_points_coverage.py [--seeds 10] [--widths 12,24]
"""

from __future__ import annotations

import argparse
import time

import jax.numpy as jnp
import numpy as np
import scipy.optimize

from ctrnn_dyn.dynamics import one_step_map
from ctrnn_dyn.fixed_points import find_fixed_points
from ctrnn_dyn.model import CTRNNCell

ALPHA = 0.2
U = np.array([0.3])


def _f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float32).astype(np.float64)


def network(recipe: str, width: int, seed: int):
    """``(F, F_np, starts)`` of one network of ``recipe``."""
    rng = np.random.default_rng(1000 * seed + width + (0 if recipe == "pattern" else 500))
    if recipe == "pattern":
        xi = rng.choice([-1.0, 1.0], size=(2, width))
        K = _f32((2.0 / width) * xi.T @ xi
                 + rng.normal(0.0, 0.1 / np.sqrt(width), (width, width)))
        b = np.zeros(width)
    else:
        K = _f32(rng.normal(0.0, 1.5 / np.sqrt(width), (width, width)))
        b = _f32(rng.normal(0.0, 0.1, width))
    K_in = _f32(rng.normal(size=(1, width)))
    starts = rng.normal(0.0, 1.5, (32, width))
    cell = CTRNNCell(hidden_features=width, output_features=1, alpha=ALPHA, noise_const=0.0)
    params = {"params": {
        "recurrent_kernel": {"kernel": jnp.asarray(K), "bias": jnp.asarray(b)},
        "input_kernel": {"kernel": jnp.asarray(K_in)},
        "output_kernel": {"kernel": jnp.zeros((width, 1)), "bias": jnp.zeros(1)},
    }}

    def F_np(x: np.ndarray) -> np.ndarray:
        return (1.0 - ALPHA) * x + ALPHA * (np.tanh(x) @ K + b + U @ K_in)

    return one_step_map(cell, params), F_np, starts


def _radius(starts: np.ndarray) -> tuple[np.ndarray, float]:
    centre = starts.mean(0)
    return centre, 10.0 * np.linalg.norm(starts - centre, axis=1).mean()


def scipy_roots(F_np, starts: np.ndarray) -> list[np.ndarray]:
    """Distinct roots (``q < 1e-20``, within the outlier radius) hybrd reaches from ``starts``."""
    centre, radius = _radius(starts)
    roots: list[np.ndarray] = []
    for x0 in starts:
        sol = scipy.optimize.root(lambda x: F_np(x) - x, x0, method="hybr", tol=1e-14)
        r = F_np(sol.x) - sol.x
        if 0.5 * r @ r < 1e-20 and np.linalg.norm(sol.x - centre) <= radius:
            if not any(np.linalg.norm(sol.x - y) < 1e-6 for y in roots):
                roots.append(sol.x)
    return roots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--widths", default="12,24")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    t0 = time.perf_counter()
    total_roots = total_missed = total_extra = networks = 0
    print(f"{'recipe':<8} {'H':>3} {'seed':>4} {'scipy':>5} {'fixed':>5} {'missed':>6} "
          f"{'extra':>5}")
    for seed in range(args.seeds):
        for recipe in ("pattern", "random"):
            for width in widths:
                F, F_np, starts = network(recipe, width, seed)
                roots = scipy_roots(F_np, starts)
                fixed = find_fixed_points(F, starts, U).fixed.x
                missed = sum(
                    1 for r in roots
                    if len(fixed) == 0 or np.min(np.linalg.norm(fixed - r, axis=1)) >= 1e-8)
                centre, radius = _radius(starts)
                reached = np.asarray(roots).reshape(-1, width)
                extra = sum(
                    1 for x in fixed if np.linalg.norm(x - centre) <= radius
                    and (not roots or np.min(np.linalg.norm(reached - x, axis=1)) >= 1e-8))
                networks += 1
                total_roots += len(roots)
                total_missed += missed
                total_extra += extra
                if missed:
                    print(f"{recipe:<8} {width:>3} {seed:>4} {len(roots):>5} {len(fixed):>5} "
                          f"{missed:>6} {extra:>5}")
    print(f"{networks} networks, {total_roots} roots scipy reaches, {total_missed} of them missed "
          f"by the default call, which finds {total_extra} that scipy does not "
          f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
