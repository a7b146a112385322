"""Benchmark: ``find_fixed_points`` vs a PyTorch re-statement of FixedPointFinder's optimiser.

Network (issue 4): a CT-RNN with ``H = 128`` tanh units, ``α = 0.2``, zero input, and
``K_rec = (2/H) Σ_k ξ_k ξ_kᵀ + N(0, 0.1²/H)`` with three random ±1 patterns ``ξ_k`` (many fixed
points and saddles). Starts: 1024 states sampled from 64 trajectories of 100 steps (random
``N(0, 1)`` initial states) plus ``N(0, 0.5²)`` noise. Both finders get the same network and the
same starts in the same run; wall times are medians over ``--repeats`` warm runs (the JAX
compile is timed separately).

The baseline is FixedPointFinder's joint Adam loop (lr 1.0, ReduceLROnPlateau(0.95, patience 2),
tol_q 1e-12, tol_dq 1e-20, max 5000 iterations, float32) in ``benchmarks/_torch_fpf.py``, run
with ``torch.set_flush_denormal(True)`` (without it, float32 denormals near q ≈ 1e-40 make it
~40x slower on CPU, an unfair handicap), its points deduplicated and outlier-filtered with the
same rules. The script prints wall time, q quantiles, unique converged points and stable points
for each method, the ratios, and whether every FixedPointFinder point (q < 1e-12) is also found
(within ``--match-tol``).

Usage::

    python benchmarks/fixed_points.py [--starts 1024] [--hidden 128] [--repeats 3]
        [--methods lm,lbfgs,gd] [--threads 2] [--scaling] [--cold]

``--cold`` times the first default call (solve, deduplicate, linearise, classify) in a fresh
Python process, compilation included, then a second (warm) call in that process, and prints
both before the warm benchmark.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn.dynamics import one_step_map, simulate
from ctrnn_dyn.fixed_points import FixedPoints, find_fixed_points, sample_initial_states
from ctrnn_dyn.model import CTRNNCell


def pattern_network(hidden: int, alpha: float, seed: int):
    """``(cell, params, K_rec)`` of the pattern CT-RNN (zero input, one dummy input channel)."""
    rng = np.random.default_rng(seed)
    xi = rng.choice([-1.0, 1.0], size=(3, hidden))
    K = (2.0 / hidden) * xi.T @ xi + rng.normal(0.0, 0.1 / np.sqrt(hidden), (hidden, hidden))
    cell = CTRNNCell(hidden_features=hidden, output_features=1, alpha=alpha, noise_const=0.0)
    params = {
        "params": {
            "recurrent_kernel": {"kernel": jnp.asarray(K), "bias": jnp.zeros(hidden)},
            "input_kernel": {"kernel": jnp.zeros((1, hidden))},
            "output_kernel": {"kernel": jnp.zeros((hidden, 1)), "bias": jnp.zeros(1)},
        }
    }
    return cell, params, K


def make_starts(F, hidden: int, n_starts: int, seed: int) -> np.ndarray:
    """Starts from 64 trajectories × 100 steps plus N(0, 0.5²) noise."""
    key = jax.random.PRNGKey(seed)
    k_x0, k_s = jax.random.split(key)
    x0 = jax.random.normal(k_x0, (64, hidden))
    u = jnp.zeros((1,))
    states = jax.jit(jax.vmap(lambda x: simulate(F, x, u, n_steps=100)))(x0)
    return np.asarray(sample_initial_states(states, n_starts, noise_scale=0.5, key=k_s))


def _quantiles(q: np.ndarray) -> str:
    q = q[np.isfinite(q)]
    qs = np.quantile(q, [0.0, 0.5, 0.9, 1.0]) if q.size else [np.nan] * 4
    return "min {:.1e} med {:.1e} p90 {:.1e} max {:.1e}".format(*qs)


def _n_stable(x: np.ndarray, K: np.ndarray, alpha: float) -> int:
    """Points with all |μ| < 1 for ``J = (1−α)I + α (K ⊙ f'(x)[:, None])ᵀ`` (NumPy, float64)."""
    n = 0
    for xi in x:
        J = (1.0 - alpha) * np.eye(xi.size) + alpha * (K * (1.0 - np.tanh(xi) ** 2)[:, None]).T
        n += int(np.max(np.abs(np.linalg.eigvals(J))) < 1.0)
    return n


def _all_found(reference: np.ndarray, found: np.ndarray, tol: float) -> tuple[bool, int]:
    if reference.size == 0:
        return True, 0
    if found.size == 0:
        return False, reference.shape[0]
    dist = np.linalg.norm(reference[:, None, :] - found[None, :, :], axis=-1).min(axis=1)
    missed = int(np.sum(dist > tol))
    return missed == 0, missed


def _cold_child(args: argparse.Namespace) -> None:
    """In a fresh process: the first default call (compile included), then a warm one."""
    cell, params, _ = pattern_network(args.hidden, args.alpha, args.seed)
    F = one_step_map(cell, params)
    starts = make_starts(F, args.hidden, args.starts, args.seed)
    t0 = time.perf_counter()
    fps = find_fixed_points(F, starts)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    find_fixed_points(F, starts)
    warm = time.perf_counter() - t0
    print(
        f"cold (fresh process, H={args.hidden}, {args.starts} starts): first default call "
        f"{cold:.2f} s (compile included), second {warm:.3f} s; {len(fps.fixed)} fixed, "
        f"{len(fps.slow)} slow"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--alpha", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default="lm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--match-tol", type=float, default=1e-3)
    parser.add_argument("--scaling", action="store_true", help="also time 256/512/1024/2048 starts")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--cold", action="store_true", help="time a first call in a new process")
    parser.add_argument("--cold-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold_child:
        _cold_child(args)
        return
    if args.cold:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--cold-child",
               f"--starts={args.starts}", f"--hidden={args.hidden}", f"--alpha={args.alpha}",
               f"--seed={args.seed}"]
        print(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout, end="")

    cell, params, K = pattern_network(args.hidden, args.alpha, args.seed)
    F = one_step_map(cell, params)
    starts = make_starts(F, args.hidden, args.starts, args.seed)
    print(f"network: H={args.hidden} alpha={args.alpha} starts={args.starts}")

    ref_x = np.zeros((0, args.hidden))
    torch_time = np.nan
    if not args.no_torch:
        import torch

        sys.path.insert(0, str(Path(__file__).resolve().parent))  # python benchmarks/… or -m
        from _torch_fpf import torch_fpf

        torch.set_num_threads(args.threads)
        torch.set_flush_denormal(True)
        # interleave FPF and warm lm runs so that load from other processes hits both alike
        lm_kw = dict(method="lm", compute_jacobians=False, decompose=False)
        find_fixed_points(F, starts, **lm_kw)  # compile
        times, lm_times, res = [], [], None
        for _ in range(args.repeats):
            res = torch_fpf(K, np.zeros(args.hidden), np.zeros(args.hidden), args.alpha, starts)
            times.append(res.seconds)
            t0 = time.perf_counter()
            find_fixed_points(F, starts, **lm_kw)
            lm_times.append(time.perf_counter() - t0)
        torch_time = statistics.median(times)
        print(
            f"interleaved: FPF {torch_time:.3f} s vs lm {statistics.median(lm_times):.3f} s "
            f"(per-pair ratios {[round(a / b, 1) for a, b in zip(times, lm_times, strict=True)]})"
        )
        fpf = FixedPoints(
            x=res.x.astype(np.float64),
            u=np.zeros((args.starts, 1)),
            q=res.q.astype(np.float64),
            converged=res.q < 1e-12,
            n_iters=np.full(args.starts, res.n_iters),
            x_init=starts,
        )
        keep = (
            np.linalg.norm(fpf.x - starts.mean(0), axis=1)
            <= 10.0 * np.linalg.norm(starts - starts.mean(0), axis=1).mean()
        )
        fpf_u = fpf[keep].unique(1e-3)
        ref_x = fpf_u.fixed.x
        print(
            f"FPF (torch, float32): {torch_time:.3f} s  iters {res.n_iters}  "
            f"q {_quantiles(res.q)}  unique converged {len(fpf_u.fixed)}, "
            f"stable {_n_stable(ref_x, K, args.alpha)}"
        )

    for method in args.methods.split(","):
        kw = dict(method=method, compute_jacobians=False, decompose=False)
        t0 = time.perf_counter()
        find_fixed_points(F, starts, **kw)
        first = time.perf_counter() - t0
        times, fps = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fps = find_fixed_points(F, starts, **kw)
            times.append(time.perf_counter() - t0)
        solve_time = statistics.median(times)
        find_fixed_points(F, starts, method=method)  # compile the linearisation
        t0 = time.perf_counter()
        full = find_fixed_points(F, starts, method=method)
        full_time = time.perf_counter() - t0
        fixed = full.fixed
        ok, missed = _all_found(ref_x, fixed.x, args.match_tol)
        print(
            f"{method}: solve {solve_time:.3f} s (first call incl. compile {first:.1f} s), "
            f"with Jacobians+eig {full_time:.3f} s | q(fixed) {_quantiles(fixed.q)} | "
            f"unique converged {len(fixed)}, stable {len(full.stable)}, slow {len(full.slow)} | "
            f"max q converged {np.max(fixed.q) if len(fixed) else np.nan:.1e}"
        )
        if not args.no_torch:
            print(
                f"  ratio FPF/{method}: {torch_time / solve_time:.1f}x (solve), "
                f"{torch_time / full_time:.1f}x (incl. linearisation); all FPF points found: {ok}"
                f" (missed {missed})"
            )
        del fps
    if args.scaling:
        for n in (256, 512, 1024, 2048):
            s = make_starts(F, args.hidden, n, args.seed + 1)
            kw = dict(method="lm", compute_jacobians=False, decompose=False)
            find_fixed_points(F, s, **kw)
            t = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                find_fixed_points(F, s, **kw)
                t.append(time.perf_counter() - t0)
            med = statistics.median(t)
            print(f"scaling lm: {n} starts {med:.3f} s  ({1e3 * med / n:.3f} ms/start)")


if __name__ == "__main__":
    main()
