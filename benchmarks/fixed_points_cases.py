"""Benchmark: ``find_fixed_points``' default answer and time on networks nobody designed for it.

Each case is a network trained (or built) the way other people build theirs, with the starts a
user would take; the default call (solve, deduplicate, linearise, classify) is timed warm (median
of ``--repeats`` calls after a first one) and its fixed points are checked against an
independent float64 multistart: ``scipy.optimize.root`` (MINPACK hybrd, with the Jacobian)
from the same starts, on the same map. The table gives the fixed points found, the roots scipy
reaches (inside FixedPointFinder's outlier radius), the roots missed, slow entries on top of a
root, and the time. ``--cold`` also times the first call in a fresh process (compilation
included; imports and training excluded).

Cases:

- ``sine250``: the seed's sine-wave generator setting (ctrnn-jax's ``scripts/train_ctrnn.py``
  with ``fixed_points_ctrnn.py``'s network): a 250-unit tanh CT-RNN at ``α = 1``, noise 0.1,
  Adam(1e-3) on 50-step trials, batch 8, ``--sine-steps`` steps (default 20,000); 100 starts
  ``2·N(0, 1)`` at the input level of ``ω = 0.3``.
- ``sine250b``: the same network trained as the sine reproduction trains (AdamW 5e-3 with
  warm-up and cosine decay, batch 32, 500 steps).
- ``flipflop32``: 3-bit flip-flop, 32 units, ``α = 0.5``, 600 steps of ``ctrnn_dyn.train``'s
  defaults; 256 starts from its trajectories plus ``N(0, 0.5²)``.
- ``gru16``: a Flax ``GRUCell(16)`` with recurrent kernels ×3 and biases ``N(0, 0.5²)``;
  512 starts ``N(0, 0.5²)``.

Usage::

    python benchmarks/fixed_points_cases.py [--cases sine250,sine250b,flipflop32,gru16]
        [--repeats 3] [--cold] [--sine-steps 20000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from ctrnn_dyn.dynamics import one_step_map, simulate
from ctrnn_dyn.fixed_points import find_fixed_points, sample_initial_states
from ctrnn_dyn.model import CTRNNCell

CASES = ("sine250", "sine250b", "flipflop32", "gru16")


def _sine(steps: int, recipe: str):
    from ctrnn_dyn.reproduce._common import train_network
    from ctrnn_dyn.tasks import SineWave

    task = SineWave(n_steps=50)
    if recipe == "seed":
        net = train_network(task, hidden=250, alpha=1.0, noise=0.1, steps=steps,
                            learning_rate=1e-3, batch_size=8, key=jax.random.PRNGKey(0),
                            forward="fast")
    else:
        net = train_network(task, hidden=250, alpha=1.0, noise=0.1, steps=500,
                            learning_rate=0.005, batch_size=32, key=jax.random.PRNGKey(0))
    u = np.asarray(task.batch_for(jnp.asarray([0.3])).inputs[0, 0], np.float64)
    starts = 2.0 * np.random.default_rng(0).normal(size=(100, 250))
    return net.F, starts, u


def _flipflop():
    from ctrnn_dyn.tasks import FlipFlop
    from ctrnn_dyn.train import train

    cell = CTRNNCell(hidden_features=32, output_features=3, alpha=0.5, noise_const=0.0)
    task = FlipFlop(n_bits=3, n_steps=100)
    res = train(cell, task, key=jax.random.PRNGKey(0), steps=600, batch_size=64,
                learning_rate=1e-3, progress=False)
    F = one_step_map(cell, res.params)
    batch = task.sample(jax.random.PRNGKey(1), 32)
    states = jax.vmap(lambda u: simulate(F, jnp.zeros(32), u))(batch.inputs)
    starts = sample_initial_states(states, 256, noise_scale=0.5, key=jax.random.PRNGKey(2))
    return F, np.asarray(starts, np.float64), np.zeros(3)


def _gru():
    from flax import linen as nn

    cell = nn.GRUCell(features=16)
    carry = cell.initialize_carry(jax.random.PRNGKey(0), (1,))
    params = cell.init(jax.random.PRNGKey(0), carry, jnp.ones(1))
    rng = np.random.default_rng(0)

    def stronger(path, a):
        name = jax.tree_util.keystr(path)
        a = np.asarray(a)
        if "bias" in name:
            return rng.normal(0.0, 0.5, a.shape).astype(a.dtype)
        return 3.0 * a if "'h" in name else a

    F = one_step_map(cell, jax.tree_util.tree_map_with_path(stronger, params))
    return F, rng.normal(0.0, 0.5, (512, 16)), np.zeros(1)


def build(case: str, sine_steps: int):
    if case == "sine250":
        return _sine(sine_steps, "seed")
    if case == "sine250b":
        return _sine(sine_steps, "reproduction")
    if case == "flipflop32":
        return _flipflop()
    if case == "gru16":
        return _gru()
    raise SystemExit(f"unknown case {case!r}; choose from {CASES}")


def scipy_roots(F, starts: np.ndarray, u: np.ndarray, scale: float = 10.0) -> np.ndarray:
    """Distinct roots (``q < 1e-20``) scipy's hybrd reaches from the starts, in float64."""
    with jax.enable_x64(True):
        uj = jnp.asarray(u)
        r = jax.jit(lambda x: F(x, uj) - x)
        jac = jax.jit(jax.jacfwd(lambda x: F(x, uj) - x))
        centre = starts.mean(0)
        radius = scale * np.linalg.norm(starts - centre, axis=1).mean()
        roots: list[np.ndarray] = []
        for x0 in starts:
            sol = scipy.optimize.root(lambda x: np.asarray(r(jnp.asarray(x))), x0,
                                      jac=lambda x: np.asarray(jac(jnp.asarray(x))),
                                      method="hybr", tol=1e-14)
            res = np.asarray(r(jnp.asarray(sol.x)))
            if 0.5 * res @ res < 1e-20 and np.linalg.norm(sol.x - centre) <= radius:
                if not any(np.linalg.norm(sol.x - y) < 1e-6 for y in roots):
                    roots.append(sol.x)
    return np.asarray(roots).reshape(-1, starts.shape[1])


def cold_child(case: str, sine_steps: int) -> None:
    F, starts, u = build(case, sine_steps)
    t0 = time.perf_counter()
    find_fixed_points(F, starts, u)
    print(f"COLD {time.perf_counter() - t0:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold", action="store_true")
    parser.add_argument("--sine-steps", type=int, default=20000)
    parser.add_argument("--cold-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold_child:
        cold_child(args.cold_child, args.sine_steps)
        return
    rows = []
    for case in args.cases.split(","):
        cold = float("nan")
        if args.cold:
            out = subprocess.run([sys.executable, __file__, "--cold-child", case,
                                  "--sine-steps", str(args.sine_steps)],
                                 capture_output=True, text=True, check=True)
            cold = float(out.stdout.split("COLD")[-1])
        F, starts, u = build(case, args.sine_steps)
        find_fixed_points(F, starts, u)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fps = find_fixed_points(F, starts, u)
            times.append(time.perf_counter() - t0)
        roots = scipy_roots(F, starts, u)
        fixed = fps.fixed
        missed = sum(
            not len(fixed) or np.min(np.linalg.norm(fixed.x - root, axis=1)) > 1e-6
            for root in roots
        )
        on_root = sum(
            len(roots) > 0 and np.min(np.linalg.norm(roots - x, axis=1)) < 1e-3
            for x in fps[~fps.converged].x
        )
        rows.append((case, len(starts), len(fixed), len(fps.slow), len(fps.unfinished),
                     len(roots), missed, on_root, statistics.median(times), cold))
        print(fps.summary(max_rows=6), flush=True)
    print()
    print(f"{'case':<11} {'starts':>6} {'fixed':>5} {'slow':>4} {'cap':>4} {'scipy':>5} "
          f"{'missed':>6} {'slow-on-root':>12} {'warm s':>7} {'cold s':>7}")
    for row in rows:
        print(f"{row[0]:<11} {row[1]:>6} {row[2]:>5} {row[3]:>4} {row[4]:>4} {row[5]:>5} "
              f"{row[6]:>6} {row[7]:>12} {row[8]:>7.2f} {row[9]:>7.2f}")


if __name__ == "__main__":
    main()
