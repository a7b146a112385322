"""Benchmark: ``find_fixed_points`` vs the real FixedPointFinder (Golub & Sussillo 2018, PyTorch).

Not a restatement (that is ``benchmarks/_torch_fpf.py``): this runs FixedPointFinder's own
``FixedPointFinderTorch.find_fixed_points`` — its joint Adam loop, deduplication, distance-outlier
rule, Jacobians (its ``efficient_jacobian`` and the ``sequential_jacobian`` loop its code also
runs) and eigendecomposition — from a checkout of github.com/mattgolub/fixed-point-finder
(tested at commit ``1a30410``; nothing in it is edited; it is imported from ``--fpf-path``, and is
no dependency of ctrnn_dyn). Against it, ``find_fixed_points(F, starts)`` with every default
(float64; solve, deduplicate, linearise, classify), from the same starts.

Networks:

* ``flipflop16``: FixedPointFinder's PyTorch example, a 16-unit tanh ``torch.nn.RNN`` trained on
  the 3-bit flip-flop by the example's own ``train_FlipFlop`` (``examples/torch/run_FlipFlop.py``;
  ``--train --train-seed S`` reruns it after ``torch.manual_seed(S)`` and saves the
  ``state_dict`` to ``benchmarks/results/fpf_flipflop16_sS.npz``). Four are benchmarked
  (``--flipflop-seeds``); their committed weights were trained so, seed 0 at torch's default
  threads, seeds 1–3 at one thread (a retrain elsewhere may give other networks). Seed 0's
  network has no stable fixed point (each of its 27 has a real multiplier between −2.9 and
  −3.5); seeds 1–3 have the usual 8 stable corners. Starts as the example draws them: its
  ``sample_states`` (its ``random_seed=0``) of 1024 states from the validation trials' hidden
  states (the example's data generator: 512 training, then 128 validation trials), noise 0.5;
  zero input. FixedPointFinder gets the example's settings (``max_iters=10000, lr_init=1,
  outlier_distance_scale=10``, its defaults otherwise: float32, ``tol_q=1e-12``,
  ``tol_dq=1e-20``, ``tol_unique=1e-3``, Jacobians and eigendecomposition on) with printing off;
  ours gets ``ctrnn_dyn.interop.from_torch(model.rnn)``.
* ``flipflop16gru`` (not in the default ``--networks``): the same example with its model's
  ``rnn_type="gru"`` (a 16-unit ``torch.nn.GRU``; the example's script notes that
  FixedPointFinder's PyTorch version does not find a GRU's fixed points as expected), trained
  with the example's data and settings (``--train --rnn-type gru``; the example's
  ``train_FlipFlop`` builds only its tanh model, so its steps are repeated with the GRU); its
  starts, settings and map as for ``flipflop16``. The Newton checks take its map and Jacobian
  from PyTorch itself (a float64 copy of the module, ``torch.autograd``). Four are benchmarked
  (``--gru-seeds``), their committed weights trained at torch's default threads on 2 cores.
  Many of its starts run away into the region where the update gates saturate (``F(x) ≈ x``
  far from every root, ``|x|`` up to ~30). Entries there are no fixed points:
  FixedPointFinder's count among its "not fixed"; ours are slow points (counted there too) or
  iteration caps (``FixedPoints.unfinished``: in "entries" only). About 9 minutes a seed:
  FixedPointFinder runs its 10,000 iterations there, and the scipy multistart calls torch for
  every evaluation.
* ``pattern``: the recipe of ``benchmarks/fixed_points.py`` (``H = 128``, ``α = 0.2``, three ±1
  patterns, 1024 starts from trajectories plus noise 0.5), one network per ``--seeds`` entry.
  FixedPointFinder gets the CT-RNN's one-step map ``x' = (1−α) x + α (tanh(x) K + u K_in + b)``
  as a small ``torch.nn.RNN``-like module (``CTRNNStep`` below; it has ``batch_first`` and
  ``forward(inputs, h0) -> (outputs, h_n)``, which is all FixedPointFinderTorch calls) with its
  default settings; ours gets ``one_step_map`` of the ``CTRNNCell``.

Both sides run with ``torch.set_flush_denormal(True)`` (FixedPointFinder's float32 Adam slows
down ~40x on denormals otherwise). Warm wall times are medians over ``--repeats`` runs after one
untimed run of each, interleaved (FixedPointFinder at each ``--threads`` setting of
``torch.set_num_threads``, then ours) so that load from other processes hits both alike; JAX
runs at XLA's default thread pool (all cores). Cold = the first call in a fresh Python process
(compilation and first-call overheads included; imports, network and starts excluded; the
import times are printed too). Ours is also timed with ``decompose=False`` in the same
interleaving: the difference is what the eigendecompositions of its unique points cost, which
FixedPointFinder's run pays too, so FixedPointFinder's time over it bounds the ratio any faster
solve could reach (printed). Each start's Levenberg–Marquardt iterations in the first solver run
(one untimed call without deduplication) are summarised as well, and the path our solver took
(``solver_path``); where that is the whole run on a compiled kernel (the flip-flops' tanh RNNs,
:mod:`ctrnn_dyn.fixed_points.native_lm`), ours is also timed on the XLA loop (kernels suspended),
in the same interleaving.

Points: every entry either finder returns, and every end point of a scipy ``root(method="hybr")``
multistart from the same starts (the reference), is checked with a float64 NumPy Newton solve
(backtracking, from the entry): an entry is a fixed point if Newton reaches ``‖F(x) − x‖ <
1e-10`` within ``--match-tol`` of it. The roots are pooled; "missed" counts the roots the other
finder found (or that any of the three found) and this one did not, and the misses are listed
with the starts that reach them and what the other finder did from those starts.

Usage::

    git clone https://github.com/mattgolub/fixed-point-finder /tmp/fpf
    python benchmarks/fpf_real.py [--fpf-path /tmp/fpf] [--repeats 5] [--seeds 0,1,2,3,4]
        [--flipflop-seeds 0,1,2,3] [--gru-seeds 0,1,2,3] [--threads 1,2]
        [--networks flipflop16,flipflop16gru,pattern] [--no-cold] [--no-scipy] [--quick]
        [--save]
    python benchmarks/fpf_real.py --train [--train-seed 0] [--rnn-type gru]   # retrain

``--quick``: one repeat, the first seed of each, one thread setting, no cold runs, no scipy
multistart. About 25 minutes in full on a loaded 2-core machine.
``--save`` also writes the output to ``benchmarks/results/fpf_real.txt`` (with other
``--networks`` than the default, to ``fpf_real_<networks>.txt``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
FPF_COMMIT = "1a3041798a8c227878bb889fbe7ae47370a1848c"


#: The flip-flop networks: FixedPointFinder's example model ``FlipFlop(rnn_type=...)``.
RNN_TYPES = {"flipflop16": "tanh", "flipflop16gru": "gru"}


def flipflop_weights(seed: int, rnn_type: str = "tanh") -> Path:
    kind = "" if rnn_type == "tanh" else rnn_type
    return HERE / "results" / f"fpf_flipflop16{kind}_s{seed}.npz"


RESULTS = HERE / "results" / "fpf_real.txt"
# the example's settings (examples/torch/run_FlipFlop.py), printing off
FLIPFLOP_HPS = dict(
    max_iters=10000, lr_init=1.0, outlier_distance_scale=10.0, verbose=False, super_verbose=False
)
PATTERN_HPS = dict(verbose=False, super_verbose=False)  # FixedPointFinder's defaults
N_STARTS = 1024
NOISE = 0.5
HIDDEN, ALPHA = 128, 0.2


# -- FixedPointFinder ---------------------------------------------------------------------------


def _fpf_modules(fpf_path: str):
    """FixedPointFinder's PyTorch finder and its flip-flop example, imported from a checkout
    (its torch modules need NumPy and PyTorch; the example also Matplotlib and scikit-learn)."""
    import matplotlib

    matplotlib.use("Agg")
    root = Path(fpf_path).resolve()
    if not (root / "FixedPointFinderTorch.py").is_file():
        raise SystemExit(f"no FixedPointFinder checkout at {root} (see --fpf-path)")
    for sub in (root / "examples" / "helper", root / "examples" / "torch", root):
        if str(sub) not in sys.path:
            sys.path.insert(0, str(sub))
    with contextlib.redirect_stdout(io.StringIO()):
        import FixedPointFinderTorch
        import FlipFlop
        import FlipFlopData
    return FixedPointFinderTorch.FixedPointFinderTorch, FlipFlop.FlipFlop, FlipFlopData.FlipFlopData


def train_flipflop(fpf_path: str, seed: int, out: Path, rnn_type: str = "tanh") -> None:
    """Train the example's 16-unit flip-flop with the example's own ``train_FlipFlop`` (3 bits,
    512 training trials, batch 128, Adam at learning rate 1/sqrt(128), until the mean loss <
    1e-4) and save its ``state_dict``. ``train_FlipFlop`` builds a tanh RNN; for another
    ``rnn_type`` (the example's ``FlipFlop`` takes ``"gru"``) its steps are taken with that
    model instead: the same data, settings and ``FlipFlop.train``."""
    import torch

    _, FlipFlop, FlipFlopData = _fpf_modules(fpf_path)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    if rnn_type == "tanh":
        import run_FlipFlop

        model, _ = run_FlipFlop.train_FlipFlop()
    else:
        data = FlipFlopData()
        train, valid = data.generate_data(n_trials=512), data.generate_data(n_trials=128)
        model = FlipFlop(n_inputs=3, n_hidden=16, n_outputs=3, rnn_type=rnn_type)
        model.train(train, valid, learning_rate=1.0 / np.sqrt(128), batch_size=128)
    print(f"trained in {time.perf_counter() - t0:.0f} s")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    print(f"saved {out}")


def _ctrnn_step_class():
    import torch

    class CTRNNStep(torch.nn.Module):
        r"""The CT-RNN one-step map as a ``torch.nn.RNN``-like module for FixedPointFinderTorch:
        ``h_{t+1} = (1−α) h_t + α (tanh(h_t) K + u_t K_in + b)`` (rows of ``K`` presynaptic);
        ``forward(inputs (B, T, m), h0 (1, B, d)) -> (outputs (B, T, d), h_T (1, B, d))``."""

        batch_first = True

        def __init__(self, K: np.ndarray, K_in: np.ndarray, b: np.ndarray, alpha: float):
            super().__init__()
            f32 = torch.float32
            self.K = torch.nn.Parameter(torch.as_tensor(K, dtype=f32))
            self.K_in = torch.nn.Parameter(torch.as_tensor(K_in, dtype=f32))
            self.b = torch.nn.Parameter(torch.as_tensor(b, dtype=f32))
            self.alpha = float(alpha)

        def forward(self, inputs, h0):
            h, outs = h0[0], []
            for t in range(inputs.shape[1]):
                drive = torch.addmm(self.b, inputs[:, t], self.K_in)
                h = torch.lerp(h, torch.addmm(drive, torch.tanh(h), self.K), self.alpha)
                outs.append(h)
            return torch.stack(outs, dim=1), h.unsqueeze(0)

    return CTRNNStep


# -- networks -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Network:
    """A network as both finders take it, and its float64 NumPy map for the Newton checks."""

    name: str
    rnn: Any  # the torch module FixedPointFinder gets
    F: Any  # the map ctrnn_dyn gets
    starts: np.ndarray  # (n, d) float64
    inputs: np.ndarray  # (1, m) zeros
    hps: dict
    f_np: Callable[[np.ndarray], np.ndarray]  # x (d,) -> F(x) (d,)
    jac_np: Callable[[np.ndarray], np.ndarray]  # x (d,) -> dF/dx (d, d)


def _flipflop_model(fpf_path: str, weights: Path, rnn_type: str = "tanh"):
    import torch

    _, FlipFlop, _ = _fpf_modules(fpf_path)
    if not weights.is_file():
        raise SystemExit(f"{weights} missing: run with --train first")
    model = FlipFlop(n_inputs=3, n_hidden=16, n_outputs=3, rnn_type=rnn_type)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in np.load(weights).items()})
    return model


def flipflop_starts(fpf_path: str, weights: Path, rnn_type: str = "tanh") -> np.ndarray:
    """The example's starts: ``fpf.sample_states`` of the validation hidden states, noise 0.5."""
    FPF, _, FlipFlopData = _fpf_modules(fpf_path)
    model = _flipflop_model(fpf_path, weights, rnn_type)
    data = FlipFlopData()
    data.generate_data(n_trials=512)  # the example draws its training trials first
    valid = data.generate_data(n_trials=128)
    hidden = model.predict(valid)["hidden"]
    sampler = FPF(model.rnn, **FLIPFLOP_HPS)
    return sampler.sample_states(hidden, n_inits=N_STARTS, noise_scale=NOISE)


def flipflop_network(
    fpf_path: str, seed: int, starts: np.ndarray | None = None, ours: bool = True,
    rnn_type: str = "tanh",
) -> Network:
    weights = flipflop_weights(seed, rnn_type)
    model = _flipflop_model(fpf_path, weights, rnn_type)
    if starts is None:
        starts = flipflop_starts(fpf_path, weights, rnn_type)
    if rnn_type == "tanh":
        sd = np.load(weights)
        W = sd["rnn.weight_hh_l0"].astype(np.float64)
        b = (sd["rnn.bias_ih_l0"] + sd["rnn.bias_hh_l0"]).astype(np.float64)

        def f_np(x):
            return np.tanh(W @ x + b)

        def jac_np(x):
            return (1.0 - np.tanh(W @ x + b) ** 2)[:, None] * W
    else:
        f_np, jac_np = _torch_float64_map(model.rnn)

    F = None
    if ours:
        from ctrnn_dyn.interop import from_torch

        F = from_torch(model.rnn)
    name = next(k for k, v in RNN_TYPES.items() if v == rnn_type)
    return Network(
        f"{name} s{seed}",
        model.rnn,
        F,
        np.asarray(starts, np.float64),
        np.zeros((1, 3)),
        FLIPFLOP_HPS,
        f_np,
        jac_np,
    )


def _torch_float64_map(rnn):
    """The one-step map of a one-layer ``torch.nn`` RNN module at zero input, and its Jacobian
    (``torch.autograd``), in float64 on a copy: the Newton checks' map, from PyTorch's own
    module rather than from ctrnn_dyn's translation of it."""
    import copy

    import torch

    rnn64 = copy.deepcopy(rnn).double()
    zero = torch.zeros(1, 1, rnn.input_size, dtype=torch.float64)

    def step(x):
        return rnn64(zero, x.reshape(1, 1, -1))[1].reshape(-1)

    def f_np(x):
        with torch.no_grad():
            return step(torch.as_tensor(x, dtype=torch.float64)).numpy()

    def jac_np(x):
        x = torch.as_tensor(x, dtype=torch.float64)
        return torch.autograd.functional.jacobian(step, x).numpy()

    return f_np, jac_np


def pattern_kernel_and_starts(seed: int) -> tuple[np.ndarray, np.ndarray]:
    sys.path.insert(0, str(HERE))
    from fixed_points import make_starts, pattern_network

    from ctrnn_dyn.dynamics import one_step_map

    cell, params, K = pattern_network(HIDDEN, ALPHA, seed)
    starts = make_starts(one_step_map(cell, params), HIDDEN, N_STARTS, seed)
    return np.asarray(K, np.float64), np.asarray(starts, np.float64)


def pattern_network(seed: int, K: np.ndarray, starts: np.ndarray, ours: bool = True) -> Network:
    rnn = _ctrnn_step_class()(K, np.zeros((1, HIDDEN)), np.zeros(HIDDEN), ALPHA)

    def f_np(x):
        return (1.0 - ALPHA) * x + ALPHA * (np.tanh(x) @ K)

    def jac_np(x):
        return (1.0 - ALPHA) * np.eye(x.size) + ALPHA * (K * (1.0 - np.tanh(x) ** 2)[:, None]).T

    F = None
    if ours:
        sys.path.insert(0, str(HERE))
        from fixed_points import pattern_network as recipe

        from ctrnn_dyn.dynamics import one_step_map

        cell, params, _ = recipe(HIDDEN, ALPHA, seed)
        F = one_step_map(cell, params)
    return Network(f"pattern s{seed}", rnn, F, starts, np.zeros((1, 1)), PATTERN_HPS, f_np, jac_np)


# -- running the finders ------------------------------------------------------------------------


_TIMED: dict = {}


def _timed_class(FPF):
    """``FPF`` with the wall time of its joint optimisation recorded (``t_opt``); nothing else
    changes."""
    if FPF not in _TIMED:

        class Timed(FPF):
            def _run_joint_optimization(self, *args, **kwargs):
                t0 = time.perf_counter()
                fps = super()._run_joint_optimization(*args, **kwargs)
                self.t_opt = time.perf_counter() - t0
                return fps

        _TIMED[FPF] = Timed
    return _TIMED[FPF]


def run_fpf(FPF, net: Network):
    """FixedPointFinder's whole run: construct it and call its ``find_fixed_points``; returns
    the wall time, its unique and all points, and the time of its Adam loop alone."""
    cls = _timed_class(FPF)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # its ReduceLROnPlateau gets a tensor that requires grad (harmless)
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
        t0 = time.perf_counter()
        fpf = cls(net.rnn, **net.hps)
        unique, all_fps = fpf.find_fixed_points(net.starts, net.inputs)
        seconds = time.perf_counter() - t0
    return seconds, unique, all_fps, fpf.t_opt


def run_ours(net: Network, **options: Any):
    from ctrnn_dyn.fixed_points import find_fixed_points

    t0 = time.perf_counter()
    fps = find_fixed_points(net.F, net.starts, **options)
    return time.perf_counter() - t0, fps


# -- verification -------------------------------------------------------------------------------


def newton(net: Network, x: np.ndarray, max_steps: int = 60) -> tuple[np.ndarray, float]:
    """Float64 Newton on ``r(x) = F(x) − x`` with backtracking (``t = 1, ½, …, 2⁻¹⁰``), until
    ``‖r‖`` stops decreasing; returns the end point and its ``‖r‖``."""
    x = np.asarray(x, np.float64).copy()
    eye = np.eye(x.size)
    r = net.f_np(x) - x
    nr = float(np.linalg.norm(r))
    for _ in range(max_steps):
        if not np.isfinite(nr) or nr < 1e-15:
            break
        try:
            dx = np.linalg.solve(net.jac_np(x) - eye, -r)
        except np.linalg.LinAlgError:
            break
        for t in 0.5 ** np.arange(11):
            x_new = x + t * dx
            r_new = net.f_np(x_new) - x_new
            if np.linalg.norm(r_new) < nr:
                break
        else:
            break
        x, r, nr = x_new, r_new, float(np.linalg.norm(r_new))
    return x, nr


class Roots:
    """The pool of verified roots (Newton end points closer than ``tol`` are one root)."""

    def __init__(self, net: Network, match_tol: float, same_tol: float = 1e-6):
        self.net, self.match_tol, self.same_tol = net, match_tol, same_tol
        self.x: list[np.ndarray] = []
        self.res: list[float] = []

    def verify(self, points: np.ndarray) -> np.ndarray:
        """Root index of each point (``-1``: Newton from it reaches no root within
        ``match_tol``)."""
        ids = np.full(len(points), -1)
        for i, p in enumerate(points):
            if not np.all(np.isfinite(p)):
                continue
            xr, nr = newton(self.net, p)
            if nr < 1e-10 and np.linalg.norm(xr - p) <= self.match_tol:
                ids[i] = self._index(xr, nr)
        return ids

    def _index(self, xr: np.ndarray, nr: float) -> int:
        if self.x:
            d = np.linalg.norm(np.asarray(self.x) - xr, axis=1)
            j = int(np.argmin(d))
            if d[j] <= self.same_tol:
                return j
        self.x.append(xr)
        self.res.append(nr)
        return len(self.x) - 1

    def n_unstable(self, j: int) -> int:
        mu = np.linalg.eigvals(self.net.jac_np(self.x[j]))
        return int(np.sum(np.abs(mu) > 1.0))

    def nearest(self, p: np.ndarray) -> tuple[int, float]:
        if not self.x or not np.all(np.isfinite(p)):
            return -1, np.inf
        d = np.linalg.norm(np.asarray(self.x) - p, axis=1)
        return int(np.argmin(d)), float(np.min(d))


def scipy_multistart(net: Network) -> np.ndarray:
    """End points of ``scipy.optimize.root(method="hybr")`` with the exact Jacobian from every
    start."""
    from scipy.optimize import root

    eye = np.eye(net.starts.shape[1])

    def fun(x):
        return net.f_np(x) - x, net.jac_np(x) - eye

    out = np.empty_like(net.starts)
    for i, x0 in enumerate(net.starts):
        out[i] = root(fun, x0, jac=True, method="hybr").x
    return out


# -- cold runs ----------------------------------------------------------------------------------


def _cold_child(args: argparse.Namespace) -> None:
    """In a fresh process: imports (timed), network (untimed), first and second call (timed)."""
    t0 = time.perf_counter()
    if args.cold_child == "fpf":
        import torch

        FPF, _, _ = _fpf_modules(args.fpf_path)
    else:
        import jax  # noqa: F401

        from ctrnn_dyn.fixed_points import find_fixed_points  # noqa: F401
    import_s = time.perf_counter() - t0
    import torch

    torch.set_num_threads(args.cold_threads)
    torch.set_flush_denormal(True)
    data = np.load(args.cold_data)
    ours = args.cold_child == "ours"
    if args.cold_network in RNN_TYPES:
        net = flipflop_network(args.fpf_path, args.cold_seed, data["starts"], ours=ours,
                               rnn_type=RNN_TYPES[args.cold_network])
    else:
        net = pattern_network(args.cold_seed, data["K"], data["starts"], ours=ours)
    if ours:
        first, fps = run_ours(net)
        second, _ = run_ours(net)
        n = int(np.sum(fps.converged))
    else:
        first, unique, _, _ = run_fpf(FPF, net)
        second, _, _, _ = run_fpf(FPF, net)
        n = int(unique.n)
    print(json.dumps(dict(import_s=import_s, first_s=first, second_s=second, n=n)))


def cold(
    args: argparse.Namespace, who: str, net: Network, seed: int, threads: int, extra: dict
) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.npz"
        np.savez(path, starts=net.starts, **extra)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            f"--cold-child={who}",
            f"--cold-network={net.name.split()[0]}",
            f"--cold-seed={seed}",
            f"--cold-threads={threads}",
            f"--cold-data={path}",
            f"--fpf-path={args.fpf_path}",
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# -- the benchmark ------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)


def bench_network(args, FPF, net: Network, seed: int, extra: dict, out: Report) -> dict:
    import torch

    from ctrnn_dyn import native
    from ctrnn_dyn.fixed_points.native_lm import PATH_SUFFIX

    threads = args.threads
    # untimed first runs (ours: compilation), then interleaved timed repeats
    torch.set_num_threads(threads[0])
    run_fpf(FPF, net)
    path = run_ours(net)[1].solver_path
    run_ours(net, decompose=False)
    # where the whole solve runs on a kernel (native_lm), ours is timed on the XLA loop too
    whole_run = path.endswith(PATH_SUFFIX)
    if whole_run:
        with native.suspended():
            run_ours(net)
    t_xla: list[float] = []
    t_fpf: dict[int, list[float]] = {t: [] for t in threads}
    t_opt: dict[int, list[float]] = {t: [] for t in threads}
    fpf_res: dict[int, Any] = {}
    t_ours: list[float] = []
    t_no_eig: list[float] = []  # ours without the eigendecompositions (what they cost)
    fps = None
    for _ in range(args.repeats):
        for t in threads:
            torch.set_num_threads(t)
            s, unique, all_fps, s_opt = run_fpf(FPF, net)
            t_fpf[t].append(s)
            t_opt[t].append(s_opt)
            fpf_res[t] = (unique, all_fps)
            s, fps = run_ours(net)
            t_ours.append(s)
            t_no_eig.append(run_ours(net, decompose=False)[0])
            if whole_run:
                with native.suspended():
                    t_xla.append(run_ours(net)[0])
    torch.set_num_threads(threads[0])
    # each start's iterations in the first solver run (no deduplication: one entry per start)
    per_start = run_ours(net, tol_unique=None, outlier_distance_scale=None,
                         compute_jacobians=False)[1].n_iters

    cold_res = {}
    if args.cold:
        for t in threads:
            cold_res[f"fpf{t}"] = cold(args, "fpf", net, seed, t, extra)
        cold_res["ours"] = cold(args, "ours", net, seed, threads[0], extra)

    # verification
    roots = Roots(net, args.match_tol)
    ids_fpf = {t: roots.verify(fpf_res[t][0].xstar) for t in threads}
    ids_fixed = roots.verify(fps.fixed.x)
    ids_slow = roots.verify(fps.slow.x)
    ids_scipy = np.full(len(net.starts), -1)
    t_scipy = np.nan
    if args.scipy:
        t0 = time.perf_counter()
        ends = scipy_multistart(net)
        t_scipy = time.perf_counter() - t0
        ids_scipy = roots.verify(ends)
    n_roots = len(roots.x)
    stable = np.array([roots.n_unstable(j) == 0 for j in range(n_roots)], bool)
    found = {f"fpf{t}": set(ids_fpf[t][ids_fpf[t] >= 0]) for t in threads}
    found["ours"] = set(ids_fixed[ids_fixed >= 0])
    found["scipy"] = set(ids_scipy[ids_scipy >= 0])
    union = set(range(n_roots))

    def row(label, cold_s, warm, entries, key, other, not_fixed):
        got = found[key]
        missed = len(found[other] - got) if other else 0
        return (
            f"{net.name:<14} {label:<24} {cold_s:>7} {warm:>8} {entries:>7} {len(got):>6} "
            f"{int(stable[list(got)].sum()) if got else 0:>6} {not_fixed:>9} {missed:>6} "
            f"{len(union - got):>6}"
        )

    med_ours = statistics.median(t_ours)
    for t in threads:
        c = cold_res.get(f"fpf{t}")
        out(
            row(
                f"FixedPointFinder {t} thr",
                f"{c['first_s']:.2f}" if c else "-",
                f"{statistics.median(t_fpf[t]):.3f}",
                fpf_res[t][0].n,
                f"fpf{t}",
                "ours",
                int(np.sum(ids_fpf[t] < 0)),
            )
        )
    c = cold_res.get("ours")
    out(
        row(
            "ctrnn_dyn default",
            f"{c['first_s']:.2f}" if c else "-",
            f"{med_ours:.3f}",
            len(fps),
            "ours",
            f"fpf{threads[0]}",
            int(np.sum(ids_fixed < 0)) + len(fps.slow),
        )
    )
    if args.scipy:
        out(row("scipy hybr multistart", "-", f"{t_scipy:.1f}", "-", "scipy", None, "-"))
    return dict(
        net=net,
        roots=roots,
        fps=fps,
        fpf_res=fpf_res,
        ids_fpf=ids_fpf,
        ids_fixed=ids_fixed,
        ids_slow=ids_slow,
        t_fpf=t_fpf,
        t_opt=t_opt,
        t_ours=t_ours,
        t_no_eig=t_no_eig,
        t_xla=t_xla,
        path=path,
        per_start=per_start,
        cold=cold_res,
        found=found,
        stable=stable,
    )


def details(args, res: dict, out: Report) -> None:
    from ctrnn_dyn.fixed_points import find_fixed_points

    net, roots, fps = res["net"], res["roots"], res["fps"]
    t_fpf, t_ours, threads = res["t_fpf"], res["t_ours"], args.threads
    med_ours = statistics.median(t_ours)
    parts = []
    for t in threads:
        pairs = [
            a / b for a, b in zip(t_fpf[t], t_ours[threads.index(t) :: len(threads)], strict=True)
        ]
        parts.append(
            f"{t} thr {statistics.median(t_fpf[t]) / med_ours:.1f}x "
            f"(pairs {min(pairs):.1f}-{max(pairs):.1f}; its Adam loop "
            f"{statistics.median(res['t_opt'][t]):.3f} s of {statistics.median(t_fpf[t]):.3f} s)"
        )
    out(f"  {net.name}: warm FixedPointFinder/ours " + ", ".join(parts))
    # the eigendecompositions of the unique points, which both finders compute: a floor that no
    # faster solve removes
    eig = med_ours - statistics.median(res["t_no_eig"])
    if eig > 0:
        out(f"  ours without the eigendecompositions {statistics.median(res['t_no_eig']):.3f} s: "
            f"they take {eig:.3f} s of {med_ours:.3f} s; with a solver taking no time at all "
            "the ratio would be at most "
            + ", ".join(f"{statistics.median(t_fpf[t]) / eig:.1f}x ({t} thr)" for t in threads))
    line = f"  ours: solver path {res['path']}"
    if res["t_xla"]:
        xla = statistics.median(res["t_xla"])
        line += (f"; on the XLA loop (kernels suspended) {xla:.3f} s, {xla / med_ours:.2f}x "
                 "ours")
    out(line)
    its = res["per_start"]
    out(f"  ours: Levenberg-Marquardt iterations per start in the first run: mean "
        f"{its.mean():.1f}, median {np.median(its):.0f}, max {its.max()}")
    if res["cold"]:
        c = res["cold"]
        out(
            "  cold (first call in a fresh process; imports "
            + ", ".join(f"{k} {v['import_s']:.1f} s" for k, v in c.items())
            + "): "
            + ", ".join(
                f"{k} {v['first_s']:.2f} s then {v['second_s']:.3f} s" for k, v in c.items()
            )
        )
    n_slow_fixed = int(np.sum(res["ids_slow"] >= 0))
    if len(fps.slow):
        out(
            f"  ours: {len(fps.slow)} slow entries, {n_slow_fixed} of them Newton-converge to a "
            "fixed point within the match tolerance"
        )
    unique, all_fps = res["fpf_res"][threads[0]]
    q_f = unique.qstar
    out(
        f"  FixedPointFinder ({threads[0]} thr): {unique.n} entries, {int(np.sum(q_f < 1e-12))} "
        f"with q < 1e-12, {int(all_fps.n_iters[0])} Adam iterations"
    )
    fpf_found, ours_found = res["found"][f"fpf{threads[0]}"], res["found"]["ours"]
    only_fpf, only_ours = sorted(fpf_found - ours_found), sorted(ours_found - fpf_found)
    others = sorted(res["found"]["scipy"] - fpf_found - ours_found)
    if not (only_fpf or only_ours or others):
        return
    per_start = find_fixed_points(
        net.F, net.starts, tol_unique=None, outlier_distance_scale=None, compute_jacobians=False
    )
    labels = per_start.stop_labels

    def ends(xs):
        """Root each start's end point is at (``-1``: none within ``match_tol``)."""
        near = [roots.nearest(x) for x in xs]
        return np.array([k if d <= args.match_tol else -1 for k, d in near])

    ours_end, fpf_end = ends(per_start.x), ends(all_fps.xstar)
    scipy_found = res["found"]["scipy"]

    def in_scipy(j):
        return "not run" if not args.scipy else "found" if j in scipy_found else "not found"

    def where(end, idx, lab=None):
        """``root: count`` of where the starts ``idx`` ended (``-1``: at no root)."""
        keys, counts = np.unique(end[idx], return_counts=True)
        text = ", ".join(f"{k}: {c}" for k, c in zip(keys, counts, strict=True))
        if lab is not None:
            kinds, kc = np.unique(lab[idx], return_counts=True)
            text += " (" + ", ".join(f"{c} {k}" for k, c in zip(kinds, kc, strict=True)) + ")"
        return "{" + text + "}"

    def missed(j, finder, end, other, other_end, lab=None):
        """The line for root ``j``, reached by ``finder`` (its end points ``end``) and missed by
        ``other``, with where ``other`` took the same starts."""
        idx = np.flatnonzero(end == j)
        out(
            f"  {net.name} root {j} (Newton ||r|| {roots.res[j]:.1e}, {roots.n_unstable(j)} "
            f"unstable, scipy multistart: {in_scipy(j)}): "
            f"found by {finder} from {idx.size} starts {idx[:8].tolist()}, missed by {other}; "
            f"from those starts {other} ended at roots {where(other_end, idx, lab)}"
        )

    for j in only_fpf:
        missed(j, "FixedPointFinder", fpf_end, "ours", ours_end, labels)
    for j in only_ours:
        missed(j, "ours", ours_end, "FixedPointFinder", fpf_end)
    for j in others:
        out(
            f"  {net.name} root {j} ({roots.n_unstable(j)} unstable) found only by the scipy "
            "multistart"
        )


HEADER = (
    f"{'network':<14} {'finder':<24} {'cold s':>7} {'warm s':>8} {'entries':>7} "
    f"{'fixed':>6} {'stable':>6} {'not fixed':>9} {'missed':>6} {'of all':>6}"
)


DEFAULT_NETWORKS = "flipflop16,pattern"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fpf-path", default=os.environ.get("FPF_PATH", "/tmp/fpf"))
    parser.add_argument("--networks", default=DEFAULT_NETWORKS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", default="0,1,2,3,4", help="pattern networks")
    parser.add_argument(
        "--flipflop-seeds",
        default="0,1,2,3",
        help="trained flip-flops (benchmarks/results/fpf_flipflop16_s*.npz)",
    )
    parser.add_argument(
        "--gru-seeds",
        default="0,1,2,3",
        help="trained GRU flip-flops (benchmarks/results/fpf_flipflop16gru_s*.npz)",
    )
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--match-tol", type=float, default=1e-3)
    parser.add_argument("--no-cold", dest="cold", action="store_false")
    parser.add_argument("--no-scipy", dest="scipy", action="store_false")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--save", action="store_true")
    parser.add_argument("--train", action="store_true", help="retrain the flip-flop and exit")
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--rnn-type", default="tanh", choices=sorted(set(RNN_TYPES.values())),
                        help="with --train: the example model's rnn_type")
    for name in ("child", "network", "seed", "threads", "data"):
        parser.add_argument(f"--cold-{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train:
        train_flipflop(args.fpf_path, args.train_seed,
                       flipflop_weights(args.train_seed, args.rnn_type), args.rnn_type)
        return
    if args.cold_child:
        args.cold_seed, args.cold_threads = int(args.cold_seed), int(args.cold_threads)
        _cold_child(args)
        return
    if args.quick:
        args.repeats, args.seeds, args.cold, args.scipy = 1, "0", False, False
        args.flipflop_seeds = args.flipflop_seeds.split(",")[0]
        args.gru_seeds = args.gru_seeds.split(",")[0]
        args.threads = args.threads.split(",")[0]
    args.threads = [int(t) for t in args.threads.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    ff_seeds = {"flipflop16": [int(s) for s in args.flipflop_seeds.split(",")],
                "flipflop16gru": [int(s) for s in args.gru_seeds.split(",")]}
    networks = args.networks.split(",")

    import jax
    import torch

    torch.set_flush_denormal(True)
    FPF, _, _ = _fpf_modules(args.fpf_path)
    out = Report()
    out(f"FixedPointFinder (PyTorch) at {FPF_COMMIT[:7]} vs ctrnn_dyn find_fixed_points defaults")
    out(
        f"torch {torch.__version__}, jax {jax.__version__}, numpy {np.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at start; repeats {args.repeats}, torch threads "
        f"{args.threads} interleaved, JAX at XLA's default threads, flush_denormal on"
    )
    out(
        f"FixedPointFinder settings: flip-flop {FLIPFLOP_HPS}, pattern {PATTERN_HPS} (else "
        "its defaults: float32, tol_q 1e-12, tol_dq 1e-20, max_iters 5000, lr_init 1, "
        "tol_unique 1e-3, Jacobians+eig)"
    )
    out(
        "cold: first call in a fresh process (compile included, imports excluded); warm: "
        "median; fixed: distinct entries Newton-verified (||F(x)-x|| < 1e-10 within "
        f"{args.match_tol:g}); missed: roots the other finder found and this one did not; "
        "of all: roots any of the three found that this one did not"
    )
    out()
    out(HEADER)
    results = []
    for kind, rnn_type in RNN_TYPES.items():
        if kind not in networks:
            continue
        for i, seed in enumerate(ff_seeds[kind]):
            net = flipflop_network(args.fpf_path, seed, rnn_type=rnn_type)
            a = argparse.Namespace(**vars(args))
            a.cold = args.cold and i == 0  # one cold run: the other flip-flops have its shapes
            results.append(bench_network(a, FPF, net, seed, {}, out))
    if "pattern" in networks:
        for i, seed in enumerate(seeds):
            K, starts = pattern_kernel_and_starts(seed)
            net = pattern_network(seed, K, starts)
            a = argparse.Namespace(**vars(args))
            a.cold = args.cold and i == 0  # one cold run: later seeds have the same shapes
            results.append(bench_network(a, FPF, net, seed, {"K": K}, out))
    out()
    for res in results:
        details(args, res, out)
    out(f"load average at end {os.getloadavg()[0]:.1f}")
    if args.save:
        path = RESULTS
        if args.networks != DEFAULT_NETWORKS:
            path = RESULTS.with_name(f"{RESULTS.stem}_{'_'.join(networks)}.txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(out.lines) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
