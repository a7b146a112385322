"""Networks trained per hour: vmapped ensembles vs one network after another (and a sweep).

Configuration: the attract-or-oscillate study (modulo-3 task: 100 units, 100 inputs, T = 50,
batch 256), with few steps per network (the per-step cost is that of a full run).

Measured in the same process, interleaved, repeated (the CPU is shared: medians of ratios):

* ``train()``   — one network after another with :func:`ctrnn_dyn.train.train`, as a user
  would write it (each call builds and compiles its own step: end-to-end cost).
* ``loop``      — one network after another with ONE compiled single-network step reused for
  every network (jitted init, ``steps`` dispatches), timed with the ``nn.RNN`` forward pass
  and with the fast one; the faster of the two in each repeat is the baseline.
* ``ens E/c/v`` — :func:`ctrnn_dyn.ensemble.train_ensemble` with ``E`` networks in chunks of
  ``c``, ``v`` networks vectorised together on a device (``vmap_size="auto"``: 1 on a CPU at
  this size, each device loops over its share of the chunk; on a GPU the whole share),
  programs already compiled (steady state).

``--sweep`` adds ``ctrnn-dyn sweep`` on a 2-worker LocalCluster and reports its overhead (wall
time minus the workers' training time / 2, over the latter). Runs unchanged on a GPU.

On a CPU the script exposes the cores as JAX devices before JAX starts
(``--xla_force_host_platform_device_count``, ``--host-devices``, default: all cores), so that
``train_ensemble``'s default ``devices="auto"`` shards the network axis over them; the
one-by-one baselines run on the default device as a user's loop would. ``--host-devices 1``
measures the ensemble on one device (``sharded`` column "no").

    python benchmarks/ensemble.py                    # E in 1 8 32 128
    python benchmarks/ensemble.py --quick            # small, for a smoke test
"""

from __future__ import annotations

import os
import sys

_ORIGINAL_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _host_devices import expose_host_devices  # noqa: E402

expose_host_devices(sys.argv, default=os.cpu_count() or 1)

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from ctrnn_dyn import train as tr  # noqa: E402
from ctrnn_dyn.ensemble import train_ensemble  # noqa: E402
from ctrnn_dyn.model import CTRNNCell  # noqa: E402
from ctrnn_dyn.tasks import ModuloThree  # noqa: E402


def _block(tree):
    return jax.block_until_ready(tree)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--inputs", type=int, default=100)
    ap.add_argument("--n-steps", type=int, default=50, help="trial length T")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="optimiser steps per network")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    ap.add_argument("--chunks", type=int, nargs="+", default=None,
                    help="chunk sizes to try (default: 1 2 4 8 32, capped at E)")
    ap.add_argument("--vmap-sizes", type=int, nargs="+", default=None,
                    help="also try these vmap_size values inside the largest chunk (0: plain "
                         "vmap; default rows use vmap_size='auto')")
    ap.add_argument("--loop-networks", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-calls", type=int, default=1,
                    help="networks timed with train() per repeat (it compiles every call)")
    ap.add_argument("--sweep", action="store_true", help="also time a 2-worker sweep")
    ap.add_argument("--sweep-networks", type=int, default=32)
    ap.add_argument("--sweep-chunk", type=int, default=8)
    ap.add_argument("--sweep-only", action="store_true", help="only the sweep measurement")
    ap.add_argument("--host-devices", type=int, default=os.cpu_count() or 1,
                    help="CPU cores exposed as JAX devices (set before JAX starts)")
    ap.add_argument("--unsharded", action="store_true",
                    help="also time each ensemble on one device (devices=None)")
    ap.add_argument("--fast", dest="fast", action="store_const", const=True, default=None,
                    help="use the fast CT-RNN forward pass (hand-written VJP) everywhere")
    ap.add_argument("--nn-rnn", dest="fast", action="store_const", const=False,
                    help="use the nn.RNN forward pass everywhere (default: the loop is timed "
                         "with both, the ensemble with train's default, the fast path)")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.hidden, a.inputs, a.n_steps, a.batch = 16, 8, 30, 32
        a.sizes, a.repeats, a.loop_networks = [1, 8], 2, 2

    task = ModuloThree(stimulus_dim=a.inputs, n_steps=a.n_steps,
                       last_onset=min(40, a.n_steps - 7))
    cell = CTRNNCell(hidden_features=a.hidden, output_features=1, alpha=0.1, noise_const=0.0)
    opt = tr.default_optimizer(1e-3)
    S = a.steps
    if a.sweep_only:
        _sweep(a, None)
        return
    n_dev = len(jax.devices())
    print(f"device: {jax.devices()[0].platform} x{n_dev}; "
          f"H={a.hidden} m={a.inputs} T={a.n_steps} B={a.batch}, {S} steps/network")

    # --- best one-by-one loop: one compiled step, reused; with nn.RNN and with the fast
    # forward pass (faster for one network here), the faster of the two is the baseline ------
    init = jax.jit(lambda k: tr.init_state(cell, task, opt, key=k))
    keys = jax.random.split(jax.random.key(0), max(max(a.sizes), a.loop_networks))
    loop_paths = [a.fast] if a.fast is not None else [False, True]

    def compiled_loop(fast: bool):
        step = jax.jit(tr.make_train_step(cell, task, opt, batch_size=a.batch, fast=fast))
        evaluate = jax.jit(tr.make_eval_fn(cell, task, batch_size=a.batch, n_batches=1,
                                           fast=fast))

        def loop(n: int) -> tuple[float, float]:
            t, c = time.perf_counter(), time.process_time()
            for i in range(n):
                k_init, k_data, k_eval = jax.random.split(keys[i], 3)
                state = init(k_init)
                for _ in range(S):
                    state, m = step(state, k_data)
                _block((m, evaluate(state.params, k_eval)))
            return (time.perf_counter() - t) / n, (time.process_time() - c) / n

        loop(1)
        return loop

    loop_fns = {fast: compiled_loop(fast) for fast in loop_paths}

    def loop(n: int) -> tuple[float, float, dict]:
        """The fastest one-by-one path in this repeat: (s/network, cpu s/network, all)."""
        times = {fast: fn(n) for fast, fn in loop_fns.items()}
        best = min(times.values())
        return best[0], best[1], times

    def train_one() -> float:
        t = time.perf_counter()
        tr.train(cell, task, key=keys[0], steps=S, batch_size=a.batch, progress=False, fast=a.fast,
                 eval_batches=1)
        return time.perf_counter() - t

    # --- ensemble variants -----------------------------------------------------------------
    # (E, chunk, vmap_size, devices): "auto" shards over the devices when E >= their number
    variants = []
    for E in a.sizes:
        sharded = 1 < n_dev <= E
        chunks = sorted({min(-(-c // n_dev) * n_dev if sharded else c, E)
                         for c in (a.chunks or [1, 2, 4, 8, 32])})
        for c in chunks:
            variants.append((E, c, "auto", "auto"))
            if a.unsharded and sharded:
                variants.append((E, c, "auto", None))
        for v in a.vmap_sizes or []:  # 0: plain vmap of the whole chunk
            if v < max(chunks):
                variants.append((E, max(chunks), v or None, "auto"))

    def ens(E, c, v, dev) -> tuple[float, float]:
        t, cpu = time.perf_counter(), time.process_time()
        r = train_ensemble(cell, task, keys=keys[:E], steps=S, batch_size=a.batch,
                           chunk_size=c, vmap_size=v, block_steps=S, eval_batches=1, fast=a.fast,
                           devices=dev)
        _block(r.history.loss)
        return (time.perf_counter() - t) / E, (time.process_time() - cpu) / E

    compile_s = {}
    for _, c, v, dev in variants:  # compile (cached per chunk shape)
        if (c, v, dev) not in compile_s:
            t = time.perf_counter()
            ens(c, c, v, dev)
            compile_s[(c, v, dev)] = time.perf_counter() - t
    t_train = [train_one() for _ in range(a.train_calls)]  # first call warms the caches

    ratios: dict = {k: [] for k in variants}
    cpu_ratios: dict = {k: [] for k in variants}
    per_net: dict = {k: [] for k in variants}
    loops, loops_cpu, trains = [], [], []
    per_path: dict = {fast: [] for fast in loop_paths}
    for rep in range(a.repeats):
        tl, cl, times = loop(a.loop_networks)
        loops.append(tl)
        loops_cpu.append(cl)
        for fast, (t_path, _) in times.items():
            per_path[fast].append(t_path)
        trains.append(statistics.median([train_one() for _ in range(a.train_calls)]))
        for k in variants:
            te, ce = ens(*k)
            per_net[k].append(te)
            ratios[k].append(tl / te)
            cpu_ratios[k].append(cl / ce)
        paths = ", ".join(f"{_path_name(f)} {t:.3f}" for f, (t, _) in times.items())
        print(f"  repeat {rep + 1}: loop {tl:.3f} s/network (cpu {cl:.3f} s; {paths}), train() "
              f"{trains[-1]:.2f} s/network", flush=True)

    tl = statistics.median(loops)
    tt = statistics.median(trains)
    print(f"\none-by-one  train():        {tt:8.3f} s/network  {3600 / tt:9.0f} networks/h "
          f"(includes a compile per call; first call {t_train[0]:.1f}s)")
    for fast, ts in per_path.items():
        t_path = statistics.median(ts)
        print(f"one-by-one  loop, {_path_name(fast):>7}: {t_path:8.3f} s/network  "
              f"{3600 / t_path:9.0f} networks/h ({t_path / S * 1e3:.1f} ms/step)")
    print(f"one-by-one  best loop:      {tl:8.3f} s/network  {3600 / tl:9.0f} networks/h "
          f"(the faster path in each repeat: the 'x loop' baseline)")
    print("ensemble (steady state, programs compiled; 'x loop' = median over repeats of loop "
          "time / ensemble time in the same repeat, wall clock and process CPU time):")
    print(f"  {'E':>4} {'chunk':>5} {'vmap':>5} {'sharded':>7} {'s/network':>10} "
          f"{'networks/h':>11} {'x loop':>7} {'x loop cpu':>10} {'x train()':>9} "
          f"{'compile s':>9}")
    for k in variants:
        E, c, v, dev = k
        te = statistics.median(per_net[k])
        sharded = dev == "auto" and 1 < n_dev <= E
        shard = f"x{n_dev}" if sharded else "no"
        shown = v if v == "auto" else v or (c // n_dev if sharded else c)  # None: whole share
        print(f"  {E:>4} {c:>5} {shown:>5} {shard:>7} {te:>10.3f} {3600 / te:>11.0f} "
              f"{statistics.median(ratios[k]):>7.2f} {statistics.median(cpu_ratios[k]):>10.2f} "
              f"{tt / te:>9.2f} {compile_s[(c, v, dev)]:>9.1f}")

    if a.sweep:
        _sweep(a, tl)


def _path_name(fast: bool | None) -> str:
    return "fast" if fast else "nn.RNN"


def _sweep(a, t_loop: float | None) -> None:
    import pandas as pd

    from ctrnn_dyn.sweep import run_sweep

    n = a.sweep_networks
    chunk = a.sweep_chunk
    text = f"""
task = "modulo3"
seeds = {n}
chunk_size = {chunk}
[task_options]
stimulus_dim = {a.inputs}
n_steps = {a.n_steps}
last_onset = {min(40, a.n_steps - 7)}
[cell]
hidden_features = {a.hidden}
alpha = 0.1
[train]
steps = {a.steps}
batch_size = {a.batch}
block_steps = {a.steps}
eval_batches = 1
[scheduler]
n_workers = 2
"""
    # the sweep's workers are processes of their own, one core each: not the host devices
    # exposed to this process
    os.environ["XLA_FLAGS"] = _ORIGINAL_XLA_FLAGS
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "sweep.toml"
        cfg.write_text(text)
        t = time.perf_counter()
        r = run_sweep(cfg, Path(d) / "out", progress=False)
        wall = time.perf_counter() - t
        df = pd.read_parquet(r.table)
    train_s = df.groupby("chunk")["train_time_s"].sum().sum()  # inside the workers
    work_s = df.groupby("chunk")["wall_time_s"].sum().sum()
    ideal = train_s / 2
    print(f"\nsweep: {n} networks in {r.n_chunks} chunks of {chunk} on a 2-worker LocalCluster: "
          f"{wall:.1f}s wall ({3600 * n / wall:.0f} networks/h incl. cluster start and "
          f"compiles); inside the tasks: training {train_s:.1f}s, training + checkpoint + "
          f"parquet {work_s:.1f}s (worker-seconds)")
    print(f"  overhead = (wall - training/2) / (training/2) = {(wall - ideal) / ideal:.1%}; "
          f"checkpoint+parquet alone = {(work_s - train_s) / train_s:.1%} of training")


if __name__ == "__main__":
    jnp.zeros(1).block_until_ready()
    main()
