"""Per-start verdicts on the long-run dynamics: fixed point, limit cycle, quasi-periodic,
chaotic, divergent."""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn._base import jit_map
from ctrnn_dyn._checks import renamed
from ctrnn_dyn.attractors._common import (
    Map,
    _as_u,
    _check_F,
    _check_nonneg_int,
    _check_positive,
    _check_state,
    _orbit,
    _precision,
)
from ctrnn_dyn.attractors.lyapunov import _lyap_batch, _summarise_lyap

logger = logging.getLogger(__name__)

#: Labels of :func:`classify_dynamics`, indexed by its ``codes``.
LABELS: tuple[str, ...] = ("fixed point", "limit cycle", "quasi-periodic", "chaotic", "divergent")


class DynamicsClassification(NamedTuple):
    r"""Per-start verdicts of :func:`classify_dynamics` and the numbers behind them.

    Attributes:
        labels: ``B`` strings from :data:`LABELS`.
        codes: ``(B,)`` indices into :data:`LABELS`.
        lyapunov: ``(B, k)`` leading Lyapunov exponents per unit time, descending.
        lyapunov_stderr: ``(B, k)`` their block standard errors.
        n_zero: ``(B,)`` exponents with :math:`|\lambda| \le` ``zero_tol``.
        zero_tol: ``(B,)`` the tolerance used per start (per unit time).
        speed: ``(B,)`` final speed :math:`\|F(x) - x\|/dt`.
        period: ``(B,)`` exact integer return time of the map (0 if none within the window).
        max_abs: ``(B,)`` largest :math:`|x_i|` seen.
        final_state: ``(B, n)``.
    """

    labels: tuple[str, ...]
    codes: np.ndarray
    lyapunov: np.ndarray
    lyapunov_stderr: np.ndarray
    n_zero: np.ndarray
    zero_tol: np.ndarray
    speed: np.ndarray
    period: np.ndarray
    max_abs: np.ndarray
    final_state: np.ndarray


@jit_map(static_argnames=("n_recur",))
def _recurrence_batch(F, xs, u, n_recur: int):
    def one(x):
        X = _orbit(F, x, u, n_recur)
        dist = jnp.linalg.norm(X[1:] - x, axis=1)
        speed = dist[0]
        return speed, dist

    return jax.vmap(one)(xs)


@renamed(starts="initial_states", u="inputs", precision="dtype")
def classify_dynamics(
    F: Map,
    initial_states: Any,
    inputs: Any = None,
    *,
    dt: float = 1.0,
    n_transient: int = 2000,
    n_steps: int = 20000,
    n_exponents: int | None = None,
    n_blocks: int = 20,
    zero_tol: float | None = None,
    speed_tol: float = 1e-6,
    recurrence_tol: float = 1e-7,
    n_recur: int = 1000,
    divergence_bound: float = 1e6,
    dtype: Any = np.float64,
) -> DynamicsClassification:
    r"""Name the long-run behaviour from each start.

    After ``n_transient`` steps, the leading Lyapunov exponents :math:`\lambda_1 \ge \dots` are
    measured over ``n_steps`` (QR method, all starts at once under ``vmap``), and then, in order:

    * **divergent** — non-finite states or :math:`\max|x| >` ``divergence_bound``;
    * **fixed point** — final speed :math:`\|F(x)-x\|/dt <` ``speed_tol`` (an unstable fixed
      point the run sits on exactly is still a fixed point; its exponents say it is unstable);
    * **chaotic** — :math:`\lambda_1 >` ``zero_tol``;
    * **limit cycle** — exactly one exponent with :math:`|\lambda| \le` ``zero_tol`` (the
      direction along the orbit), or :math:`\lambda_1 < -` ``zero_tol`` with an exact integer
      return :math:`F^P(x) = x` (a stable periodic orbit of the map);
    * **quasi-periodic** — two or more exponents with :math:`|\lambda| \le` ``zero_tol``;
    * otherwise **fixed point** (still converging: all exponents negative).

    ``zero_tol`` defaults to :math:`\max(10/(N\,dt),\ 4\,\mathrm{stderr}(\lambda_1))`: a zero
    exponent of a finite run of duration :math:`N\,dt` is only resolved to :math:`O(1/(N dt))`.
    Chaos with a small :math:`\lambda_1` needs a long enough run to be told from a cycle.

    Args:
        F: one-step map ``F(x, u)``.
        initial_states: ``(B, n)`` initial states (or ``(n,)`` for one).
        inputs: constant input ``(m,)`` or ``None``.
        dt: time per step.
        n_transient: steps discarded first.
        n_steps: steps over which exponents are measured.
        n_exponents: leading exponents to compute (default ``min(n, 4)``).
        n_blocks: blocks for the exponents' standard error.
        zero_tol: tolerance for a zero exponent, per unit time (default above).
        speed_tol: speed below which the state is at rest (per unit time).
        recurrence_tol: tolerance for an exact integer return of the map.
        n_recur: window searched for integer returns.
        divergence_bound: states larger than this count as divergent.
        dtype: ``np.float64`` (default, switched on locally) or ``np.float32`` (JAX's dtypes and
            the strings ``"float64"``/``"float32"`` also work).

    Returns:
        :class:`DynamicsClassification`.

    Raises:
        TypeError / ValueError: naming the bad argument.

    Example:
        >>> from ctrnn_dyn import systems
        >>> F = systems.SWITCH.map()
        >>> classify_dynamics(F, [[0.2], [0.9]], dt=0.01, n_steps=2000).labels
        ('fixed point', 'fixed point')
    """
    _check_F(F)
    arr = _check_state(initial_states, "initial_states", ndim=(1, 2))
    arr = arr.reshape(-1, arr.shape[-1])
    _check_positive(dt, "dt")
    _check_positive(n_steps, "n_steps", integer=True)
    _check_nonneg_int(n_transient, "n_transient")
    _check_positive(n_recur, "n_recur", integer=True)
    _check_positive(speed_tol, "speed_tol")
    _check_positive(divergence_bound, "divergence_bound")
    if zero_tol is not None:
        _check_positive(zero_tol, "zero_tol")
    n = arr.shape[1]
    k = min(n, 4) if n_exponents is None else n_exponents
    _check_positive(k, "n_exponents", integer=True)
    if k > n:
        raise ValueError(f"n_exponents must be <= n = {n}, got {k}")
    n_blocks = min(n_blocks, n_steps)
    block = n_steps // n_blocks
    dt = float(dt)
    context, dtype = _precision(dtype)
    with context:
        xs = jnp.asarray(arr, dtype)
        uj = _as_u(inputs, dtype)
        x_end, sums, maxabs = _lyap_batch(
            F, xs, uj, n_transient=n_transient, n_blocks=n_blocks, block=block, k=k
        )
        step_norm, dist = _recurrence_batch(F, x_end, uj, n_recur)
        x_end = np.asarray(x_end, np.float64)
        sums = np.asarray(sums, np.float64)
        maxabs = np.asarray(maxabs, np.float64).max(axis=1)
        step_norm = np.asarray(step_norm, np.float64)
        dist = np.asarray(dist, np.float64)
    exponents, stderr, _ = _summarise_lyap(sums, block, dt)
    if zero_tol is None:
        zt = np.maximum(10.0 / (block * n_blocks * dt), 4.0 * np.nan_to_num(stderr[:, 0]))
    else:
        zt = np.full(arr.shape[0], float(zero_tol))
    speed = step_norm / dt
    scale = np.maximum(1.0, np.abs(x_end).max(axis=1))
    hits = dist < recurrence_tol * scale[:, None]
    period = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    n_zero = np.sum(np.abs(exponents) <= zt[:, None], axis=1)

    lam1 = exponents[:, 0]
    finite = np.all(np.isfinite(x_end), axis=1) & np.all(np.isfinite(exponents), axis=1)
    # First matching verdict wins: divergent, fixed point, chaotic, cycle/torus on a zero mode;
    # otherwise contracting onto a periodic orbit of the map or a fixed point.
    codes = np.select(
        [~finite | (maxabs > divergence_bound), speed < speed_tol, lam1 > zt, lam1 >= -zt],
        [4, 0, 3, np.where(n_zero == 1, 1, 2)],
        default=np.where(period > 1, 1, 0),
    ).astype(np.int64)
    labels = tuple(LABELS[c] for c in codes)
    return DynamicsClassification(
        labels=labels,
        codes=codes,
        lyapunov=exponents,
        lyapunov_stderr=stderr,
        n_zero=n_zero,
        zero_tol=zt,
        speed=speed,
        period=period,
        max_abs=maxabs,
        final_state=x_end,
    )
