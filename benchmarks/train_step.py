"""Benchmark: one CT-RNN train step (forward, BPTT, clip + AdamW update), JAX vs PyTorch eager
and ``torch.compile``.

Both sides implement the same equation and optimiser
(``x_{t+1} = (1-α)x_t + α(tanh(x_t) K_rec + b + u_t K_in + σ ξ_t)``, ``y = tanh(x) K_out + b_out``,
masked MSE, ``clip_by_global_norm(1)`` then AdamW(1e-3, wd 1e-4)) on the same fixed batch
(inputs 3, outputs 3). The JAX side is ``ctrnn_dyn.train``'s default loss (for this
``CTRNNCell``: ``ctrnn_dyn.fast_path.fast_forward``, the equation with a hand-written VJP whose
two loops run in ``ctrnn_dyn.native``'s compiled kernels on the CPU) + Optax
update, jitted, on a fixed batch; its noise ``ξ`` is the fast path's own stream
(``ctrnn_dyn.noise``: Philox4x32-10 and an inverse-CDF normal, drawn inside the forward kernel
step by step; in ``jax.numpy`` on the XLA-loop path), PyTorch's is ``torch.randn`` per step.
For information the step of ``make_train_step`` (which also
samples its batch) and, at the headline point, the step through ``nn.RNN`` (``fast=False``, JAX's
derivative of the Flax scan) and the fast path with its loops in XLA instead of the compiled
kernels (``native.suspended()``, the path of a machine without a C++ compiler) are timed too.
The second PyTorch baseline is the same step with the whole forward loop and its loss under
``torch.compile`` (Inductor; the backward comes from AOTAutograd), its compile time printed.
Everything is measured in the same run: medians over repetitions, the JAX/PyTorch ratio, achieved
GFLOP/s (counting the matmuls: ``6 B T (H² + H(m+p))`` per step) and the fraction of a matmul
peak (the best of the median GFLOP/s of a 1024² float32 ``jnp`` matmul at the start and the one
measured interleaved with that point) measured in this run.

Usage::

    python benchmarks/train_step.py            # headline point + grid + efficiency point
    python benchmarks/train_step.py --quick    # headline point only, fewer repetitions
    python benchmarks/train_step.py --point 512,256,200   # one point

Needs the optional ``bench`` extra (``torch``); without it only the JAX side runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ctrnn_dyn import native
from ctrnn_dyn.model import CTRNNCell
from ctrnn_dyn.tasks import Batch, FlipFlop
from ctrnn_dyn.train import default_optimizer, init_params, loss_fn, make_train_step

M_IN, P_OUT, ALPHA, SIGMA, LR, WD, CLIP = 3, 3, 0.2, 0.1, 1e-3, 1e-4, 1.0


def flops(H: int, B: int, T: int) -> float:
    return 6.0 * B * T * (H * H + H * (M_IN + P_OUT))


def median_time(fn, reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def matmul_peak(reps: int) -> float:
    n = 1024
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(lambda a, b: a @ b)
    t = median_time(lambda: mm(a, b).block_until_ready(), reps, warmup=2)
    return 2.0 * n**3 / t / 1e9


def _matmul_run():
    n = 1024
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(lambda a, b: a @ b)
    return lambda: mm(a, b).block_until_ready()


def make_batch(H: int, B: int, T: int) -> Batch:
    return FlipFlop(n_bits=3, n_steps=T, p_pulse=0.1).sample(jax.random.key(42), B)


def jax_step_fixed_batch(H: int, B: int, T: int, fast: bool | None = None,
                         sigma: float = SIGMA):
    """Jitted (params, opt_state) update on a fixed batch, fresh noise per call."""
    cell = CTRNNCell(hidden_features=H, output_features=P_OUT, alpha=ALPHA, noise_const=sigma)
    task = FlipFlop(n_bits=3, n_steps=T)
    opt = default_optimizer(LR, clip_norm=CLIP, weight_decay=WD)
    params = init_params(cell, task, key=jax.random.key(0))
    opt_state = opt.init(params)
    batch = make_batch(H, B, T)

    base_key = jax.random.key(1)

    @jax.jit
    def step(params, opt_state, i):
        key = jax.random.fold_in(base_key, i)
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, cell, batch, key=key,
                                                                 fast=fast)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    state = {"p": params, "o": opt_state, "i": 0}

    def run():
        state["i"] += 1
        p, o, loss = step(state["p"], state["o"], np.int32(state["i"]))
        loss.block_until_ready()
        state["p"], state["o"] = p, o

    return run


def jax_full_step(H: int, B: int, T: int):
    """``make_train_step`` as ``train`` uses it (samples its own batch)."""
    from ctrnn_dyn.train import init_state

    cell = CTRNNCell(hidden_features=H, output_features=P_OUT, alpha=ALPHA, noise_const=SIGMA)
    task = FlipFlop(n_bits=3, n_steps=T)
    opt = default_optimizer(LR, clip_norm=CLIP, weight_decay=WD)
    step = jax.jit(make_train_step(cell, task, opt, batch_size=B))
    holder = {"s": init_state(cell, task, opt, key=jax.random.key(0))}
    key = jax.random.key(1)

    def run():
        s, m = step(holder["s"], key)
        m.loss.block_until_ready()
        holder["s"] = s

    return run


def torch_step(H: int, B: int, T: int, threads: int | None = None, sigma: float = SIGMA,
               compiled: bool = False):
    """PyTorch's step, eager or with the forward loop and loss under ``torch.compile``
    (``compiled``; the first call compiles: the returned ``run.compile_s`` says how long)."""
    import torch

    g = torch.Generator().manual_seed(0)
    K = (torch.randn(H, H, generator=g) / np.sqrt(H)).requires_grad_()
    b = torch.zeros(H, requires_grad=True)
    K_in = (torch.randn(M_IN, H, generator=g) / np.sqrt(M_IN)).requires_grad_()
    K_out = (torch.randn(H, P_OUT, generator=g) / np.sqrt(H)).requires_grad_()
    b_out = torch.zeros(P_OUT, requires_grad=True)
    params = [K, b, K_in, K_out, b_out]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WD)
    batch = make_batch(H, B, T)
    u = torch.from_numpy(np.array(batch.inputs))
    y_star = torch.from_numpy(np.array(batch.targets))
    mask = torch.from_numpy(np.array(batch.mask))

    default_threads = torch.get_num_threads()

    def forward_loss(K, b, K_in, K_out, b_out):
        x = torch.ones(B, H)
        ys = []
        for t in range(T):
            drive = torch.tanh(x) @ K + b + u[:, t] @ K_in
            if sigma:
                drive = drive + sigma * torch.randn(B, H)
            x = (1 - ALPHA) * x + ALPHA * drive
            ys.append(torch.tanh(x) @ K_out + b_out)
        y = torch.stack(ys, dim=1)
        return (mask * (y - y_star) ** 2).sum() / mask.sum()

    if compiled:
        forward_loss = torch.compile(forward_loss)

    def run():
        if threads is not None:
            torch.set_num_threads(threads)
        opt.zero_grad(set_to_none=True)
        loss = forward_loss(*params)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        torch.set_num_threads(default_threads)

    run.compile_s = 0.0
    if compiled:
        t0 = time.perf_counter()
        run()
        run.compile_s = time.perf_counter() - t0
    return run


#: Timed back-to-back calls per variant and round, after one untimed call: training runs steps
#: back to back, and a step that follows another program's (PyTorch's) pays for the caches and
#: threads that program took, on either side.
STEADY_CALLS = 2


def measure(H: int, B: int, T: int, reps: int, peak: float, have_torch: bool,
            extra: bool = False, compiled: bool = False) -> dict:
    """Median times of each variant, rounds interleaved so load changes hit all alike; in each
    round a variant runs one untimed and :data:`STEADY_CALLS` timed calls back to back.

    The PyTorch baseline is the faster of 1 thread and 2 threads (``extra``, headline point only;
    on a shared 2-core machine the second thread can make eager PyTorch much slower), else 1
    thread. At the headline point (``extra``) both sides are also timed without noise
    (``sigma = 0``, 1-thread PyTorch): the ratio the step reaches when the noise draw is out of
    the comparison, and the fast path with XLA loops is timed beside the kernels; with
    ``compiled`` PyTorch's step is also timed under ``torch.compile`` (1 thread).
    """
    import os

    row = {"H": H, "B": B, "T": T}
    runs = {"jax": jax_step_fixed_batch(H, B, T), "jax_full": jax_full_step(H, B, T),
            "matmul": _matmul_run()}
    if extra:
        runs["jax_nn_rnn"] = jax_step_fixed_batch(H, B, T, fast=False)
        runs["jax_noise_free"] = jax_step_fixed_batch(H, B, T, sigma=0.0)
        if native.available():
            with native.suspended():  # traced (first call) inside: the XLA loops
                runs["jax_xla_loops"] = jax_step_fixed_batch(H, B, T)
                runs["jax_xla_loops"]()
                runs["jax_xla_loops_noise_free"] = jax_step_fixed_batch(H, B, T, sigma=0.0)
                runs["jax_xla_loops_noise_free"]()
    if have_torch:
        runs["torch_1thread"] = torch_step(H, B, T, threads=1)
        if extra:
            runs["torch_default"] = torch_step(H, B, T, threads=min(2, os.cpu_count() or 1))
            runs["torch_noise_free"] = torch_step(H, B, T, threads=1, sigma=0.0)
            if compiled:
                for name, sigma in (("torch_compile", SIGMA), ("torch_compile_noise_free", 0.0)):
                    runs[name] = torch_step(H, B, T, threads=1, sigma=sigma, compiled=True)
                    row[f"{name}_compile_s"] = runs[name].compile_s
    times = {k: [] for k in runs}
    for fn in runs.values():
        fn()
    for _ in range(reps):
        for k, fn in runs.items():
            fn()  # not timed: the first call after another variant refills caches, wakes threads
            for _ in range(STEADY_CALLS):
                times[k].append(median_time(fn, 1, warmup=0))
    for k, v in times.items():
        row[f"{k}_ms"] = 1e3 * statistics.median(v)
    row["gflops"] = flops(H, B, T) / (row["jax_ms"] / 1e3) / 1e9
    # the peak is re-measured interleaved with this point (the load on a shared machine drifts)
    row["peak_gflops"] = max(peak, 2.0 * 1024**3 / (row.pop("matmul_ms") / 1e3) / 1e9)
    row["peak_fraction"] = row["gflops"] / row["peak_gflops"]
    if have_torch:
        row["torch_ms"] = min(row["torch_1thread_ms"], row.get("torch_default_ms", np.inf))
        row["speedup"] = row["torch_ms"] / row["jax_ms"]
    return row


def fmt(row: dict) -> str:
    s = (f"H={row['H']:4d} B={row['B']:4d} T={row['T']:4d}  jax {row['jax_ms']:9.2f} ms "
         f"(full step {row['jax_full_ms']:9.2f} ms)  {row['gflops']:6.1f} GFLOP/s "
         f"= {100 * row['peak_fraction']:5.1f}% of peak {row['peak_gflops']:.1f}")
    if "jax_nn_rnn_ms" in row:
        s += f"  (through nn.RNN {row['jax_nn_rnn_ms']:9.2f} ms)"
    if "torch_ms" in row:
        s += (f"  torch {row['torch_ms']:9.2f} ms (1 thread {row['torch_1thread_ms']:.2f}, "
              f"2 threads {row.get('torch_default_ms', float('nan')):.2f})  "
              f"speedup x{row['speedup']:.2f}")
    if "jax_noise_free_ms" in row:
        s += f"\n    without noise: jax {row['jax_noise_free_ms']:.2f} ms"
        if "torch_noise_free_ms" in row:
            s += (f", torch (1 thread) {row['torch_noise_free_ms']:.2f} ms, speedup "
                  f"x{row['torch_noise_free_ms'] / row['jax_noise_free_ms']:.2f}")
    for suffix, label in (("", "noise on"), ("_noise_free", "without noise")):
        eager = row.get("torch_ms") if not suffix else row.get("torch_noise_free_ms")
        xla = row.get(f"jax_xla_loops{suffix}_ms")
        if xla is not None:
            s += f"\n    XLA loops ({label}): jax {xla:.2f} ms"
            if eager is not None:
                s += f", speedup over torch eager x{eager / xla:.2f}"
        tc = row.get(f"torch_compile{suffix}_ms")
        if tc is not None:
            s += (f"\n    torch.compile ({label}, 1 thread): {tc:.2f} ms "
                  f"(compile {row[f'torch_compile{suffix}_compile_s']:.1f} s), "
                  f"default jax step x{tc / row[f'jax{suffix}_ms']:.2f}")
    return s


#: The issue's headline point (hidden units, batch, time steps).
HEADLINE = (128, 64, 200)


def noise_cost(H: int, B: int, T: int, reps: int, have_torch: bool) -> dict:
    """What drawing the ``(T, B, H)`` standard-normal noise of one step costs on its own
    (medians, ms): ``jax.random.normal`` (Threefry + inverse-erf transform, one call, what
    ``nn.RNN`` draws), ``ctrnn_dyn.noise.normal`` (the fast path's stream in ``jax.numpy``, as
    the XLA-loop path draws it; the compiled kernel draws it inside its steps and has no
    separate cost) and, for comparison, PyTorch's ``randn`` of the same size (1 thread)."""
    from ctrnn_dyn import noise as stream

    key = jax.random.key(0)
    noise = jax.jit(lambda k: jax.random.normal(k, (T, B, H), jnp.float32))
    own = jax.jit(lambda k: stream.normal(k, (T, B, H)))
    row = {"noise_ms": 1e3 * median_time(lambda: noise(key).block_until_ready(), reps, 2),
           "stream_ms": 1e3 * median_time(lambda: own(key).block_until_ready(), reps, 2)}
    if have_torch:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        row["torch_randn_ms"] = 1e3 * median_time(lambda: torch.randn(T, B, H), reps, 2)
        torch.set_num_threads(threads)
    return row


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="headline point only, fewer reps")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    ap.add_argument("--point", default=None, metavar="H,B,T",
                    help="measure only this point (e.g. 512,256,200)")
    ap.add_argument("--no-compile", action="store_true",
                    help="skip the torch.compile baseline (it compiles for a minute or more)")
    args = ap.parse_args(argv)
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
        print("torch not installed: JAX side only (pip install '.[bench]')")
    reps = args.reps or (5 if args.quick else 7)
    native.prepare()  # before anything is traced, as training does
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; reps={reps} (medians); "
          f"recurrence kernels: {native.status()}")
    peak = matmul_peak(reps)
    print(f"matmul peak (1024^2 f32 jnp matmul): {peak:.1f} GFLOP/s")
    out = {"peak_gflops": peak, "headline": None, "grid": [], "efficiency": None}
    if args.point:
        H, B, T = (int(v) for v in args.point.split(","))
        row = measure(H, B, T, reps, peak, have_torch)
        print("point:", fmt(row))
        return {"peak_gflops": peak, "point": row}
    H, B, T = HEADLINE
    head = measure(H, B, T, reps, peak, have_torch, extra=True,
                   compiled=have_torch and not args.no_compile)
    out["headline"] = head
    print("headline:", fmt(head))
    nc = noise_cost(H, B, T, reps, have_torch)
    out["noise"] = nc
    print(f"noise draw alone at the headline point: jax.random.normal {nc['noise_ms']:.2f} ms, "
          f"ctrnn_dyn.noise.normal (jnp) {nc['stream_ms']:.2f} ms"
          + (f", torch randn {nc['torch_randn_ms']:.2f} ms" if have_torch else ""))
    if not args.quick:
        for H in (64, 128, 256, 512):
            for T in (50, 200, 800):
                r = head if (H, 64, T) == HEADLINE else measure(H, 64, T, 3, peak,
                                                               have_torch)
                out["grid"].append(r)
                print("grid:", fmt(r), flush=True)
        exps = {}
        for H in (64, 128, 256, 512):
            rows = [r for r in out["grid"] if r["H"] == H]
            Ts = np.log([r["T"] for r in rows])
            exps[H] = float(np.polyfit(Ts, np.log([r["jax_ms"] for r in rows]), 1)[0])
        out["t_exponent"] = exps
        print("cost exponent in T (log-log slope of jax ms vs T, B=64): "
              + ", ".join(f"H={h}: {e:.2f}" for h, e in exps.items()))
        eff = measure(512, 256, 200, 3, peak, have_torch)
        out["efficiency"] = eff
        print("efficiency:", fmt(eff))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main()
