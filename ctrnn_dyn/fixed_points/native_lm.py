"""The solver's whole run on one compiled kernel, for maps where that is written: a one-layer
tanh RNN, ``x' = tanh(W_hh x + W_ih u + b_ih + b_hh)`` (:class:`~ctrnn_dyn.interop.TorchMap` of a
``torch.nn.RNN``/``RNNCell`` with ``nonlinearity="tanh"``: FixedPointFinder's examples, and most
PyTorch vanilla RNNs).

Its iteration is the rounds' (:mod:`~ctrnn_dyn.fixed_points.rounds`) Levenberg–Marquardt with
the exact step (:class:`~ctrnn_dyn.fixed_points.solvers._LevenbergMarquardt`, ``lm`` with
``linear_solver="dense"``, and their stop rule), so every start takes the same steps, to
rounding; only where the work runs differs. The XLA loop runs a start's iteration as a few dozen
small programs of a block of rows (the step's linear solve on :mod:`ctrnn_dyn.native`'s
kernel), and a rejected step recomputes the Jacobian and ``JᵀJ`` at the same point; the kernel
runs each start to its end on one core, rows spread over XLA's CPU thread pool, and a rejected
step redoes only the factorisation. On FixedPointFinder's 16-unit flip-flop (seed 0 of
``benchmarks/fpf_real.py``, 1024 starts, 15,699 iterations in all, the same count on both paths)
the first solve takes 15 ms against the XLA loop's 27, the whole call 2.2–3.5x less time on the
four flip-flops, and a first call in a fresh process 0.4 s against 2.0 s (no solver program to
compile). The result records the path (``solver_path`` ends
in :data:`PATH_SUFFIX`)."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn import native
from ctrnn_dyn.interop import TorchMap

#: Appended to the solver path (``"kernels:<key>"``) where the whole run is on the kernel.
PATH_SUFFIX = "+lm_tanh_rnn"


def applies(F: Any) -> bool:
    """Whether ``F`` (a map, or maps stacked on a leading axis) is a one-layer tanh RNN."""
    return isinstance(F, TorchMap) and F.kind == "rnn_tanh" and F.num_layers == 1


def solver_path(path: str, method: str, linear_solver: str, F: Any) -> str:
    """``path`` (:func:`~.solvers.linear_solve_path`) with :data:`PATH_SUFFIX` where the whole
    run goes to the kernel: LM's exact steps on the kernels, and a map it is written for."""
    whole = path.startswith("kernels:") and method == "lm" and linear_solver == "dense"
    return path + PATH_SUFFIX if whole and applies(F) else path


@partial(jax.jit, static_argnames=("damping", "tol_q", "tol_grad", "grad_rtol", "max_iters"))
def _run(W, c, x0, active, *, damping, tol_q, tol_grad, grad_rtol, max_iters):
    """The kernel on networks ``W (E, d, d)``, input terms ``c (E, n, d)``, starts
    ``x0 (E, n, d)`` and ``active (E, n)``: ``x (E, n, d)``, iterations ``(E, n)``."""
    call = jax.ffi.ffi_call(
        native.LM_TANH_RNN_TARGET,
        (jax.ShapeDtypeStruct(x0.shape, x0.dtype), jax.ShapeDtypeStruct(x0.shape[:2], jnp.int32)))
    return call(W, c, x0, active, damping=float(damping), tol_q=float(tol_q),
                tol_grad=float(tol_grad), grad_rtol=float(grad_rtol),
                max_iters=np.int64(max_iters), spread=True)


def solve(F: TorchMap, x0: np.ndarray, u: np.ndarray | None, active: np.ndarray, *,
          damping: float, tol_q: float, tol_grad: float, grad_rtol: float,
          max_iters: int) -> tuple[np.ndarray, np.ndarray]:
    r"""The solver's run (as :func:`~.rounds._solve`) on the kernel, every start of every network
    in one call: ``F`` the maps stacked on a leading axis ``E``, starts ``x0 (E, n, d)``, inputs
    ``u (E, n, m)`` or ``None`` (zero), the starts to solve ``active (E, n)``; returns
    ``x (E, n, d)`` and iterations ``(E, n)`` (host arrays; an inactive start keeps its ``x0``
    with 0 iterations). The map of network ``e`` at start ``j`` is
    :math:`x' = \tanh(W_{hh} x + c_{ej})`, :math:`c_{ej} = W_{ih} u_{ej} + b_{ih} + b_{hh}`."""
    dtype = x0.dtype
    w_ih, w_hh, b_ih, b_hh = (np.asarray(a, dtype) for a in F.weights[0])
    c = (b_ih + b_hh)[:, None, :]  # (E, 1, d)
    if u is not None:
        c = np.einsum("ehm,enm->enh", w_ih, np.asarray(u, dtype)) + c
    x, iters = _run(w_hh, np.ascontiguousarray(np.broadcast_to(c, x0.shape)), x0,
                    np.asarray(active, bool), damping=float(damping), tol_q=float(tol_q),
                    tol_grad=float(tol_grad), grad_rtol=float(grad_rtol),
                    max_iters=int(max_iters))
    return np.array(x), np.array(iters)  # writable: the Newton finish updates rows in place
