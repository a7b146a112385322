"""Benchmark: analysing many networks — fixed points (256 starts) + dynamics classification per
network — batched over networks in compiled programs, against a loop of per-network calls that
compile anew.

Networks: ``E`` CT-RNNs of the attract-or-oscillate size (100 tanh units, ``α = 0.1``, 3 inputs),
each with its own initial weights (``fold_in(key, i)``). Per network: 256 starts sampled from its
own trajectories (8 trials of 50 steps under random inputs, plus ``N(0, 0.5²)`` noise),
``find_fixed_points`` at zero input (default options: solve, deduplicate, linearise, classify)
and ``classify_dynamics`` from 8 of the starts (500 transient + 2000 steps).

* **batched**: the maps are :class:`~ctrnn_dyn.dynamics.OneStepMap` pytrees of one shape,
  stacked on a network axis: each round of the fixed-point solver runs every network of a chunk
  in one program, and the classification all networks in one program
  (:func:`ctrnn_dyn.ensemble_analysis.find_fixed_points_ensemble` and
  ``classify_dynamics_ensemble``); every program compiles once.
* **per-network loop** (the baseline, measured in the same run): the same calls with each map
  wrapped in an object that is not a pytree and compares by identity, so every network compiles
  its own programs — what every analysis did while it took ``F`` as a static argument. It is
  timed on ``min(E, --loop-max)`` networks; its cost is per network, so networks per hour come
  from those.

Each measurement starts from empty compilation caches (``jax.clear_caches()``). The share of
time spent compiling is the sum of JAX's compile-time events (tracing, lowering,
XLA compilation) over the wall time. With ``--repeats R`` the loop and every size are measured
``R`` times, interleaved (loop, sizes, loop, sizes, ...), and the medians are printed: this shared
machine's run times vary by 5–10 % from run to run.

With ``--host-devices N`` (N > 1) the CPU's cores are exposed as ``N`` JAX devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``, set before JAX starts): the batched
analyses then split their networks over the devices (``devices="auto"``), and each size is also
timed with ``devices=None`` (one device) in the same run.

Usage::

    python benchmarks/analysis_scale.py [--sizes 1,32,256] [--loop-max 4] [--host-devices 2]
                                        [--repeats 3]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _host_devices import expose_host_devices  # noqa: E402

expose_host_devices(sys.argv, default=1)

import argparse  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.monitoring  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ctrnn_dyn.attractors import classify_dynamics  # noqa: E402
from ctrnn_dyn.dynamics import one_step_map, simulate  # noqa: E402
from ctrnn_dyn.ensemble_analysis import (  # noqa: E402
    classify_dynamics_ensemble,
    find_fixed_points_ensemble,
)
from ctrnn_dyn.fixed_points import find_fixed_points, sample_initial_states  # noqa: E402
from ctrnn_dyn.model import CTRNNCell, rnn  # noqa: E402

HIDDEN, INPUTS, ALPHA, STARTS, CLASSIFY_STARTS = 100, 3, 0.1, 256, 8
CLASSIFY = dict(n_transient=500, n_steps=2000)

_compile_s = [0.0]
_COMPILE_EVENTS = ("/jax/core/compile/backend_compile_duration",
                   "/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration")
jax.monitoring.register_event_duration_secs_listener(
    lambda event, secs, **kw: _compile_s.__setitem__(0, _compile_s[0] + secs)
    if event in _COMPILE_EVENTS else None)


class PerNetworkMap:
    """A map that is not a pytree and hashes by identity: analyses compile it on its own."""

    def __init__(self, F):
        self.F, self.state_size, self.input_size, self.alpha = (F, F.state_size, F.input_size,
                                                                F.alpha)

    def __call__(self, x, u=None):
        return self.F(x, u)

    def jacobian(self, x, u=None):
        return self.F.jacobian(x, u)


def ensemble(E: int, key: jax.Array):
    """``(cell, stacked params, [starts (256, n)] * E, [classify starts (8, n)] * E)``."""
    cell = CTRNNCell(hidden_features=HIDDEN, output_features=2, alpha=ALPHA, noise_const=0.0)
    init = jax.jit(jax.vmap(lambda k: rnn(cell).init(k, jnp.ones((1, 2, INPUTS)))))
    params = init(jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(E)))
    inputs = jax.random.normal(jax.random.fold_in(key, 1 << 30), (8, 50, INPUTS))

    @jax.jit
    def roll(p):
        F = one_step_map(cell, p)
        return jax.vmap(lambda u: simulate(F, jnp.ones(HIDDEN), u))(inputs)

    starts, picks = [], []
    for i in range(E):
        p = jax.tree_util.tree_map(lambda a, i=i: a[i], params)
        s = sample_initial_states(roll(p), STARTS, noise_scale=0.5,
                                  key=jax.random.fold_in(key, 10_000 + i))
        starts.append(s)
        picks.append(s[:CLASSIFY_STARTS])
    return cell, params, starts, picks


def batched(cell, params, starts, picks, devices="auto") -> tuple[float, float, list]:
    t0, c0 = time.perf_counter(), _compile_s[0]
    u = jnp.zeros(INPUTS)
    fps = find_fixed_points_ensemble(cell, params, starts, u, devices=devices)
    classes = classify_dynamics_ensemble(cell, params, picks, u, devices=devices, **CLASSIFY)
    return time.perf_counter() - t0, _compile_s[0] - c0, [(len(f.fixed), c.labels[0])
                                                          for f, c in zip(fps, classes,
                                                                          strict=True)]


def loop(cell, params, starts, picks, n: int) -> tuple[float, float, list]:
    from ctrnn_dyn.ensemble_analysis import network_maps

    maps = network_maps(cell, params)[:n]
    u = jnp.zeros(INPUTS)
    t0, c0 = time.perf_counter(), _compile_s[0]
    out = []
    for F, s, p in zip(maps, starts, picks, strict=False):
        G = PerNetworkMap(F)
        f = find_fixed_points(G, s, u)
        c = classify_dynamics(G, p, u, **CLASSIFY)
        out.append((len(f.fixed), c.labels[0]))
    return time.perf_counter() - t0, _compile_s[0] - c0, out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,32,256")
    ap.add_argument("--loop-max", type=int, default=4,
                    help="networks the per-network loop is timed on (its cost is per network)")
    ap.add_argument("--host-devices", type=int, default=1,
                    help="CPU cores exposed as JAX devices (read before JAX starts)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="measurements of the loop and of each size, interleaved; medians")
    ap.add_argument("--compile-breakdown", action="store_true",
                    help="then time the largest size's compilations program by program")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"jax {jax.__version__}; {HIDDEN} units, {STARTS} starts, classify {CLASSIFY_STARTS} "
          f"starts x {CLASSIFY}; {len(jax.devices())} device(s): {jax.devices()[0].device_kind}; "
          f"medians of {args.repeats}")
    key = jax.random.key(0)
    cell, params, starts, picks = ensemble(max(sizes), key)
    n_loop = min(args.loop_max, max(sizes))
    several = len(jax.devices()) > 1
    loops, runs, ones = [], {E: [] for E in sizes}, {E: [] for E in sizes}
    for _ in range(args.repeats):
        jax.clear_caches()
        loops.append(loop(cell, params, starts, picks, n_loop))
        for E in sizes:
            sub = jax.tree_util.tree_map(lambda a, E=E: a[:E], params)
            jax.clear_caches()  # each size pays its own compilation
            runs[E].append(batched(cell, sub, starts[:E], picks[:E]))
            if several:  # the same on one device, in the same run
                jax.clear_caches()
                ones[E].append(batched(cell, sub, starts[:E], picks[:E], devices=None))

    def median(measured):
        """The measurement of median wall time, and the spread of the walls."""
        walls = [m[0] for m in measured]
        return measured[int(np.argsort(walls)[len(walls) // 2])], min(walls), max(walls)

    (loop_s, loop_c, loop_out), lo, hi = median(loops)
    loop_rate = 3600 * n_loop / loop_s
    print(f"per-network loop: {n_loop} networks in {loop_s:.1f} s ({loop_rate:.0f} networks/h; "
          f"{lo:.1f}-{hi:.1f} s), compiling {100 * loop_c / loop_s:.0f} % of the time")
    rows = []
    for E in sizes:
        (wall, comp, out), lo, hi = median(runs[E])
        rate = 3600 * E / wall
        rows.append((E, wall, comp, rate))
        same = all(o[:n_loop] == loop_out[:min(E, n_loop)] for _, _, o in runs[E])
        print(f"E = {E:4d}: {wall:8.1f} s ({lo:.1f}-{hi:.1f}), {rate:9.0f} networks/h = "
              f"x{rate / loop_rate:.1f} the loop; compiling {100 * comp / wall:.1f} % of the "
              f"time; {wall / E:.3f} s per network; same results as the loop on its networks: "
              f"{same}", flush=True)
        if several:
            (wall1, comp1, out1), lo, hi = median(ones[E])
            print(f"  one device: {wall1:8.1f} s ({lo:.1f}-{hi:.1f}; {3600 * E / wall1:.0f} "
                  f"networks/h, x{3600 * E / wall1 / loop_rate:.1f} the loop; compiling "
                  f"{100 * comp1 / wall1:.1f} %); {len(jax.devices())} devices are "
                  f"{wall1 / wall:.2f}x faster; same results: {out1 == out}", flush=True)
    if len(rows) > 1:
        Es = np.array([r[0] for r in rows], float)
        walls = np.array([r[1] for r in rows])
        slope, intercept = np.polyfit(Es, walls, 1)
        print(f"cost fit: {intercept:.1f} s + {slope:.3f} s x E")
    if args.compile_breakdown:
        compile_breakdown(cell, params, starts, picks)


def compile_breakdown(cell, params, starts, picks) -> None:
    """The batched analysis of all networks again from empty caches, its compile events
    (``jax_log_compiles``) summed per program, largest first."""
    import collections
    import logging
    import re

    found = collections.defaultdict(lambda: [0.0, 0])
    pattern = re.compile(r"Finished (.*?) (?:of|for) (jit\([^)]*\)|\S+) in ([0-9.e-]+) sec")

    class Events(logging.Handler):
        def emit(self, record):
            m = pattern.search(record.getMessage())
            if m:
                found[(m.group(1), m.group(2))][0] += float(m.group(3))
                found[(m.group(1), m.group(2))][1] += 1

    handler, log = Events(), logging.getLogger("jax")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    jax.clear_caches()
    try:
        with jax.log_compiles(True):
            wall, comp, _ = batched(cell, params, starts, picks)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    E = len(starts)
    print(f"compilations of the batch at E = {E} ({wall:.1f} s, compiling {comp:.2f} s):")
    for (kind, name), (secs, n) in sorted(found.items(), key=lambda kv: -kv[1][0])[:12]:
        print(f"  {secs:6.2f} s  x{n}  {kind} {name}")


if __name__ == "__main__":
    main()
