"""A PyTorch re-statement of FixedPointFinder's joint optimisation (Golub & Sussillo 2018).

Only the optimisation loop of ``FixedPointFinderTorch._run_joint_optimization`` is restated, with
its defaults: Adam on the mean speed ``mean_i q(x_i)``, ``q = ½‖F(x) − x‖²``, learning rate 1.0
decayed by ``ReduceLROnPlateau(factor=0.95, patience=2, cooldown=0)``, stop when every start has
``q < tol_q`` or ``|Δq| < tol_dq · lr`` (after the first iteration), or after ``max_iters``;
float32. The CT-RNN map is ``F(x) = (1−α) x + α (tanh(x) K + b + u K_in)`` (rows presynaptic).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch


@dataclasses.dataclass(frozen=True)
class TorchFPFResult:
    """Final states ``x (n, d)``, speeds ``q (n,)``, iterations run and wall time (s)."""

    x: np.ndarray
    q: np.ndarray
    n_iters: int
    seconds: float


def torch_fpf(
    K_rec: np.ndarray,
    b_rec: np.ndarray,
    drive: np.ndarray,
    alpha: float,
    initial_states: np.ndarray,
    *,
    lr_init: float = 1.0,
    tol_q: float = 1e-12,
    tol_dq: float = 1e-20,
    max_iters: int = 5000,
    dtype: torch.dtype = torch.float32,
) -> TorchFPFResult:
    """Run FixedPointFinder's joint Adam optimisation on a CT-RNN.

    Args:
        K_rec: ``(d, d)`` recurrent kernel, rows presynaptic.
        b_rec: ``(d,)`` bias.
        drive: ``(d,)`` constant input drive ``u K_in``.
        alpha: Euler fraction ``dt/τ``.
        initial_states: ``(n, d)`` starts.

    Returns:
        ``TorchFPFResult``.
    """
    K = torch.as_tensor(np.asarray(K_rec), dtype=dtype)
    c = torch.as_tensor(np.asarray(b_rec) + np.asarray(drive), dtype=dtype)
    x = torch.tensor(np.asarray(initial_states), dtype=dtype, requires_grad=True)
    optimizer = torch.optim.Adam([x], lr=lr_init)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.95, patience=2, cooldown=0
    )
    start = time.perf_counter()
    q_prev = torch.full((x.shape[0],), float("nan"), dtype=dtype)
    n_iter = 0
    for n_iter in range(1, max_iters + 1):
        optimizer.zero_grad()
        F_x = (1.0 - alpha) * x + alpha * (torch.tanh(x) @ K + c)
        q = 0.5 * torch.sum((F_x - x) ** 2, dim=1)
        q_scalar = torch.mean(q)
        q_scalar.backward()
        optimizer.step()
        scheduler.step(q_scalar.item())
        lr = optimizer.param_groups[0]["lr"]
        with torch.no_grad():
            dq = torch.abs(q - q_prev)
            q_prev = q.detach().clone()
            if n_iter > 1 and bool(torch.all((dq < tol_dq * lr) | (q < tol_q))):
                break
    with torch.no_grad():
        xs = x.detach()
        F_x = (1.0 - alpha) * xs + alpha * (torch.tanh(xs) @ K + c)
        q_final = 0.5 * torch.sum((F_x - xs) ** 2, dim=1)
    seconds = time.perf_counter() - start
    return TorchFPFResult(xs.numpy().copy(), q_final.numpy().copy(), n_iter, seconds)
