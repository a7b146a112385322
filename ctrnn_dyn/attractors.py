r"""Attractors beyond fixed points: limit cycles, Lyapunov spectra, line attractors, verdicts.

Everything acts on a one-step map ``F(x, u) -> x_next`` of unbatched arrays (see
:mod:`ctrnn_dyn.dynamics`), with a step of ``dt`` time units. Rates (Lyapunov exponents) are
reported *per unit time*: an exponent per step divided by ``dt``.

* :func:`find_limit_cycle` — settle, detect recurrence on a Poincaré section, refine by Newton,
  Floquet multipliers from the monodromy matrix.
* :func:`lyapunov_spectrum` — Benettin's QR method,
  :math:`Q_{t+1}R_{t+1} = DF(x_t)\,Q_t`, :math:`\lambda_i = \frac{1}{N\,dt}\sum_t\log|R_{t,ii}|`.
* :func:`line_attractor` — do fixed/slow points form a 1-D manifold with one eigenvalue
  :math:`\mu \approx 1` (continuous :math:`\lambda \approx 0`) along it?
* :func:`classify_dynamics` — per start: fixed point / limit cycle / quasi-periodic / chaotic /
  divergent, with the numbers behind each verdict.

Heavy lifting is ``lax.scan`` under ``jit`` and ``vmap`` over starts; the computations run in
float64 (switched on locally with ``jax.enable_x64``) unless ``precision="float32"``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ctrnn_dyn._base import jit_map

__all__ = [
    "LimitCycle",
    "find_limit_cycle",
    "LyapunovSpectrum",
    "lyapunov_spectrum",
    "LineAttractor",
    "line_attractor",
    "CircleRotation",
    "circle_rotation",
    "DynamicsClassification",
    "classify_dynamics",
    "LABELS",
]

logger = logging.getLogger(__name__)

Map = Callable[[jax.Array, Any], jax.Array]

#: Labels of :func:`classify_dynamics`, indexed by its ``codes``.
LABELS: tuple[str, ...] = ("fixed point", "limit cycle", "quasi-periodic", "chaotic", "divergent")


# --------------------------------------------------------------------------------- helpers
def _precision_ctx(precision: str):
    if precision == "float64":
        return jax.enable_x64(True)
    if precision == "float32":
        return contextlib.nullcontext()
    raise ValueError(f"precision must be 'float64' or 'float32', got {precision!r}")


def _dtype(precision: str):
    return jnp.float64 if precision == "float64" else jnp.float32


def _check_F(F: Any) -> None:
    if not callable(F):
        raise TypeError(f"F must be a callable one-step map F(x, u) -> x_next, got {type(F)}")


def _check_state(x: Any, name: str, ndim: tuple[int, ...] = (1,)) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim not in ndim:
        shapes = " or ".join({1: "(n,)", 2: "(B, n)"}[d] for d in ndim)
        raise ValueError(f"{name} must have shape {shapes}, got {arr.shape}")
    if arr.shape[-1] < 1:
        raise ValueError(f"{name} must have at least one state dimension, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return arr


def _check_positive(value: Any, name: str, integer: bool = False) -> None:
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        what = "a positive int" if integer else "a positive number"
        raise ValueError(f"{name} must be {what}, got {value!r}")


def _check_nonneg_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")


def _as_u(u: Any, dtype) -> jax.Array | None:
    if u is None:
        return None
    arr = np.asarray(u)
    if arr.ndim != 1:
        raise ValueError(f"u must have shape (m,) (held constant), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("u contains non-finite values (nan or inf)")
    return jnp.asarray(arr, dtype)


def _jacobian(F: Map, x: jax.Array, u: Any) -> jax.Array:
    """``∂F/∂x`` at ``x``: ``F.jacobian`` when the map has one (analytic), else ``jacfwd``."""
    jac = getattr(F, "jacobian", None)
    if callable(jac):
        return jac(x, u)
    return jax.jacfwd(lambda y: F(y, u))(x)


def _iterate(F: Map, x: jax.Array, u: Any, n_steps: int) -> jax.Array:
    def step(y, _):
        return F(y, u), None

    return lax.scan(step, x, None, length=n_steps)[0]


def _orbit(F: Map, x: jax.Array, u: Any, n_steps: int) -> jax.Array:
    """``(n_steps + 1, n)``: ``x, F(x), …, F^{n_steps}(x)``."""

    def step(y, _):
        y = F(y, u)
        return y, y

    _, xs = lax.scan(step, x, None, length=n_steps)
    return jnp.concatenate([x[None], xs], axis=0)


@jit_map(static_argnames=("n_transient", "n_steps"))
def _settled_orbit(F: Map, x: jax.Array, u: Any, n_transient: int, n_steps: int) -> jax.Array:
    """``(n_steps + 1, n)`` orbit after ``n_transient`` settling steps."""
    return _orbit(F, _iterate(F, x, u, n_transient), u, n_steps)


# ----------------------------------------------------------------------- Lyapunov spectrum
class LyapunovSpectrum(NamedTuple):
    r"""Lyapunov exponents by the QR (Benettin) method.

    Leading axis ``B`` present only when several starts were given.

    Attributes:
        exponents: ``([B,] k)`` exponents per unit time, descending.
        stderr: ``([B,] k)`` standard error from ``n_blocks`` block estimates (a convergence
            estimate; blocks are not independent, so read it as an order of magnitude).
        history: ``([B,] n_blocks, k)`` running estimate after each block (convergence plot).
        final_state: ``([B,] n)`` state at the end of the run.
        n_steps: steps averaged over (after ``n_transient``).
        dt: time per step.
    """

    exponents: np.ndarray
    stderr: np.ndarray
    history: np.ndarray
    final_state: np.ndarray
    n_steps: int
    dt: float

    @property
    def largest(self) -> np.ndarray:
        """``([B])`` the largest exponent."""
        return self.exponents[..., 0]

    @property
    def total(self) -> np.ndarray:
        """``([B])`` sum of the exponents (phase-space contraction rate when ``k = n``)."""
        return self.exponents.sum(-1)

    @property
    def kaplan_yorke_dimension(self) -> np.ndarray:
        r"""``([B])`` :math:`D_{KY} = j + \sum_{i\le j}\lambda_i / |\lambda_{j+1}|`, ``j`` the
        largest index with a non-negative partial sum."""
        lam = np.atleast_2d(self.exponents)
        out = np.empty(lam.shape[0])
        for b, row in enumerate(lam):
            csum = np.cumsum(row)
            j = int(np.sum(csum >= 0))
            if j == 0:
                out[b] = 0.0
            elif j == row.size:
                out[b] = float(row.size)
            else:
                out[b] = j + csum[j - 1] / abs(row[j])
        return out if self.exponents.ndim == 2 else out[0]


def _lyap_core(F, x0, u, n_transient: int, n_blocks: int, block: int, k: int):
    def step(carry, _):
        x, Q = carry
        Q, R = jnp.linalg.qr(_jacobian(F, x, u) @ Q)
        return (F(x, u), Q), jnp.log(jnp.abs(jnp.diagonal(R)))

    # the transient settles the state *and* the tangent basis (Benettin's own transient)
    Q = jnp.eye(x0.shape[0], k, dtype=x0.dtype)
    (x, Q), _ = lax.scan(lambda c, _: (step(c, None)[0], None), (x0, Q), None,
                         length=n_transient)

    def block_fn(carry, _):
        carry, logs = lax.scan(step, carry, None, length=block)
        return carry, (logs.sum(0), jnp.max(jnp.abs(carry[0])))

    (x, _), (sums, maxabs) = lax.scan(block_fn, (x, Q), None, length=n_blocks)
    return x, sums, maxabs


@jit_map(static_argnames=("n_transient", "n_blocks", "block", "k"))
def _lyap_batch(F, x0s, u, *, n_transient, n_blocks, block, k):
    return jax.vmap(lambda x: _lyap_core(F, x, u, n_transient, n_blocks, block, k))(x0s)


def _summarise_lyap(sums: np.ndarray, block: int, dt: float):
    """``sums`` ``(B, n_blocks, k)`` of log|R_ii| per block → sorted rates, stderr, history."""
    n_blocks = sums.shape[1]
    rates = sums / (block * dt)  # per-block estimates
    history = np.cumsum(sums, axis=1) / (
        block * dt * np.arange(1, n_blocks + 1)[None, :, None]
    )
    exponents = history[:, -1]
    if n_blocks > 1:
        stderr = rates.std(axis=1, ddof=1) / np.sqrt(n_blocks)
    else:
        stderr = np.full_like(exponents, np.nan)
    order = np.argsort(-np.where(np.isnan(exponents), -np.inf, exponents), axis=1)
    exponents = np.take_along_axis(exponents, order, axis=1)
    stderr = np.take_along_axis(stderr, order, axis=1)
    history = np.take_along_axis(history, order[:, None, :], axis=2)
    return exponents, stderr, history


def lyapunov_spectrum(
    F: Map,
    x0: Any,
    u: Any = None,
    *,
    n_steps: int,
    dt: float = 1.0,
    n_transient: int = 1000,
    n_exponents: int | None = None,
    n_blocks: int = 20,
    precision: str = "float64",
) -> LyapunovSpectrum:
    r"""Lyapunov spectrum of the map ``F`` by Benettin's QR method, per unit time.

    .. math::

        Q_{t+1} R_{t+1} = DF(x_t)\,Q_t,\qquad
        \lambda_i = \frac{1}{N\,\Delta t}\sum_{t=1}^{N} \log |(R_t)_{ii}|,

    after ``n_transient`` steps to settle on the attractor. For a map sampled from a flow with
    step ``dt`` these are the flow's exponents (up to the discretisation error of the map);
    a limit cycle or chaotic flow has one exponent ≈ 0 along the flow direction.

    Args:
        F: one-step map ``F(x, u) -> x_next`` on unbatched arrays (``F.jacobian`` is used if
            present, else ``jax.jacfwd``).
        x0: start ``(n,)``, or ``(B, n)`` for several starts (vmapped).
        u: constant input ``(m,)`` or ``None`` (passed to ``F`` as is).
        n_steps: steps to average over (rounded down to a multiple of ``n_blocks``).
        dt: time per step; exponents are divided by it.
        n_transient: steps discarded first.
        n_exponents: how many leading exponents ``k`` (default all ``n``).
        n_blocks: blocks for the running history and the standard error.
        precision: ``"float64"`` (default, switched on locally) or ``"float32"``.

    Returns:
        :class:`LyapunovSpectrum` (exponents descending, with ``stderr`` and ``history``).

    Raises:
        TypeError / ValueError: naming the bad argument (shape, non-finite start, counts).

    Example:
        >>> import jax.numpy as jnp
        >>> F = lambda x, u: jnp.array([[0.5, 0.0], [0.0, 0.8]]) @ x
        >>> lyapunov_spectrum(F, jnp.ones(2), n_steps=100, n_blocks=10).exponents.round(4)
        array([-0.2231, -0.6931])
    """
    _check_F(F)
    arr = _check_state(x0, "x0", ndim=(1, 2))
    _check_positive(n_steps, "n_steps", integer=True)
    _check_positive(dt, "dt")
    _check_nonneg_int(n_transient, "n_transient")
    _check_positive(n_blocks, "n_blocks", integer=True)
    n = arr.shape[-1]
    k = n if n_exponents is None else n_exponents
    _check_positive(k, "n_exponents", integer=True)
    if k > n:
        raise ValueError(f"n_exponents must be <= n = {n}, got {k}")
    n_blocks = min(n_blocks, n_steps)
    block = n_steps // n_blocks
    with _precision_ctx(precision):
        dtype = _dtype(precision)
        xs = jnp.asarray(arr.reshape(-1, n), dtype)
        uj = _as_u(u, dtype)
        x_end, sums, _ = _lyap_batch(
            F, xs, uj, n_transient=n_transient, n_blocks=n_blocks, block=block, k=k
        )
        sums = np.asarray(sums, np.float64)
        x_end = np.asarray(x_end)
    exponents, stderr, history = _summarise_lyap(sums, block, float(dt))
    if arr.ndim == 1:
        exponents, stderr, history, x_end = exponents[0], stderr[0], history[0], x_end[0]
    return LyapunovSpectrum(exponents, stderr, history, x_end, block * n_blocks, float(dt))


# ----------------------------------------------------------------------------- limit cycles
class CircleRotation(NamedTuple):
    """Period and rotation of an attracting invariant circle, from its orbit's returns
    (:func:`circle_rotation`); every field is ``None`` when the orbit does not return.

    Attributes:
        period_steps: period ``P`` in steps (fractional).
        rotation_per_step: ``2π / P`` (radians per step).
        return_distance_ratio: ``d(P) / max_L d(L)`` (0 for an exact return).
        projected_turns: turns per period of the orbit's angle in its two leading principal
            axes (a diagnostic: 2 when that projection winds twice per period).
    """

    period_steps: float | None
    rotation_per_step: float | None
    return_distance_ratio: float | None
    projected_turns: float | None


def circle_rotation(
    F: Map, x0: Any, u: Any = None, *, n_steps: int = 2000, max_period: int = 500
) -> CircleRotation:
    r"""Period and rotation of an attracting closed curve (an invariant circle) of the map ``F``.

    A discrete map's invariant circle need not close after a whole number of steps, and when
    one step moves far along it the time-``T`` interpolation of :func:`find_limit_cycle` cannot
    refine it ("inaccurate circle"). Here, on the float64 orbit ``x_1 … x_N`` from ``x0``
    (already on the attractor), the mean return distance
    :math:`d(L) = \langle\lVert x_{t+L} - x_t\rVert\rangle_t` has its first deep minimum
    (a local minimum below 10% of its maximum) at the period: ``L_0`` refined by the vertex of
    the V-shaped :math:`d` through ``L_0 - 1, L_0, L_0 + 1`` (distance grows linearly with the
    phase offset), :math:`P = L_0 + (d_- - d_+)/(2 (\max(d_-, d_+) - d_0))`; the rotation per
    step is :math:`2\pi/P`.

    Args:
        F: one-step map ``F(x, u)``.
        x0: ``(n,)`` a state on (or very near) the attractor.
        u: ``(m,)`` input held constant, or ``None``.
        n_steps: orbit length ``N``.
        max_period: longest period searched (at most ``N // 2``).

    Returns:
        :class:`CircleRotation`.

    Raises:
        ValueError / TypeError: ``F`` not callable, ``x0`` not a finite ``(n,)`` array, bad
            ``u``, non-positive ``n_steps`` or ``max_period``.
    """
    _check_F(F)
    x0 = _check_state(x0, "x0")
    _check_positive(n_steps, "n_steps", integer=True)
    _check_positive(max_period, "max_period", integer=True)
    with _precision_ctx("float64"):
        dtype = _dtype("float64")
        X = np.asarray(_settled_orbit(F, jnp.asarray(x0, dtype), _as_u(u, dtype), 0,
                                      n_steps))[1:]
    max_period = min(max_period, n_steps // 2)
    d = np.zeros(max_period)  # d[L] for L = 0 … max_period - 1
    for L in range(1, max_period):
        d[L] = np.linalg.norm(X[L:] - X[:-L], axis=1).mean()
    deep = np.flatnonzero((d[1:-1] <= d[:-2]) & (d[1:-1] <= d[2:])
                          & (d[1:-1] < 0.1 * d.max())) + 1
    if len(deep) == 0:
        return CircleRotation(None, None, None, None)
    L0 = int(deep[0])
    dm, d0, dp = d[L0 - 1], d[L0], d[L0 + 1]
    denom = 2.0 * (max(dm, dp) - d0)
    period = L0 + ((dm - dp) / denom if denom > 0 else 0.0)
    Xc = X - X.mean(0)
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    Z = Xc @ vt[:2].T
    angle = np.unwrap(np.arctan2(Z[:, 1], Z[:, 0]))
    slope = abs(float(np.polyfit(np.arange(len(angle)), angle, 1)[0]))
    return CircleRotation(
        period_steps=float(period),
        rotation_per_step=float(2 * np.pi / period),
        return_distance_ratio=float(d0 / d.max()),
        projected_turns=float(slope * period / (2 * np.pi)),
    )


class LimitCycle(NamedTuple):
    r"""A periodic attractor (or saddle cycle) of the map ``F``.

    Two kinds. A map sampled from a flow (Euler step of an ODE) has an *invariant circle*
    whose period in steps is generally not an integer; it is found as a closed orbit of the
    interpolated time-``T`` map :math:`\Phi(x, T)` (cubic interpolation between samples
    ``F^{k-1..k+2}(x)``, ``k = \lfloor T\rfloor``) with a Poincaré phase condition. A genuinely
    discrete *periodic orbit* ``x = F^P(x)`` has an integer period.

    Attributes:
        x: ``(n,)`` a point on the cycle (on the Poincaré section).
        period: period in steps (fractional for an invariant circle).
        period_time: ``period * dt`` in time units.
        orbit: ``(ceil(period) + 1, n)`` states ``F^t(x)``, ``t = 0 … ceil(period)``.
        floquet_multipliers: ``(n,)`` complex eigenvalues of the monodromy matrix
            :math:`M = \partial\Phi/\partial x` (or :math:`DF^P`), descending in modulus.
        stable: all multipliers except the trivial one inside the unit circle.
        converged: the Newton residual fell below tolerance.
        residual: final ``‖Φ(x, T) - x‖``.
        kind: ``"invariant circle"``, ``"periodic orbit"``, or why none was found:
            ``"fixed point"``, ``"divergent"``, ``"no recurrence"``, ``"newton failed"``,
            ``"inaccurate circle"`` (multiplier along the flow not within ``trivial_tol`` of 1).
        trivial_multiplier: the multiplier nearest 1 (along the flow; ``nan`` for a discrete
            periodic orbit); its distance from 1 measures the interpolation error.
        n_newton: Newton iterations used.
        dt: time per step.
    """

    x: np.ndarray
    period: float
    period_time: float
    orbit: np.ndarray
    floquet_multipliers: np.ndarray
    stable: bool
    converged: bool
    residual: float
    kind: str
    trivial_multiplier: complex
    n_newton: int
    dt: float


def _lagrange_cubic(theta):
    """Weights of the cubic through nodes ``-1, 0, 1, 2`` evaluated at ``theta``."""
    t = theta
    return jnp.stack(
        [
            -t * (t - 1) * (t - 2) / 6,
            (t + 1) * (t - 1) * (t - 2) / 2,
            -(t + 1) * t * (t - 2) / 2,
            (t + 1) * t * (t - 1) / 6,
        ]
    )


@jit_map(static_argnames=("k_max",))
def _circle_newton_system(F, z, u, x_ref, v, k_max: int):
    """Residual ``[Φ(x,T) - x ; v·(x - x_ref)]``, its Jacobian w.r.t. ``z = (x, T)``, and the
    orbit ``F^{0..k_max}(x)``."""
    n = x_ref.shape[0]

    def resid(z):
        x, T = z[:n], z[n]
        xs = _orbit(F, x, u, k_max)
        k = jnp.clip(jnp.floor(T).astype(jnp.int32), 1, k_max - 2)
        nodes = lax.dynamic_slice(xs, (k - 1, jnp.zeros((), k.dtype)), (4, n))
        phi = _lagrange_cubic(T - k) @ nodes
        return jnp.concatenate([phi - x, ((x - x_ref) @ v)[None]]), xs

    r, xs = resid(z)
    jac = jax.jacfwd(lambda z: resid(z)[0])(z)
    return r, jac, xs


def _bucket(steps: int) -> int:
    """Orbit lengths are compiled in powers of two (at least 8): networks whose periods differ
    share a program; the extra steps are computed and ignored."""
    return max(8, 1 << (int(steps) - 1).bit_length())


@jit_map(static_argnames=("length",))
def _orbit_newton_system(F, x, u, period, length: int):
    """Residual ``F^period(x) - x`` (``period`` traced), its Jacobian and ``F^{0..length}(x)``."""
    def resid(x):
        xs = _orbit(F, x, u, length)
        return lax.dynamic_index_in_dim(xs, period, keepdims=False) - x, xs

    r, xs = resid(x)
    return r, jax.jacfwd(lambda x: resid(x)[0])(x), xs


def _failed_cycle(x, kind: str, dt: float, residual: float = np.nan, n_newton: int = 0):
    n = x.shape[0]
    return LimitCycle(
        x=np.asarray(x),
        period=np.nan,
        period_time=np.nan,
        orbit=np.asarray(x)[None],
        floquet_multipliers=np.full(n, np.nan + 0j),
        stable=False,
        converged=False,
        residual=float(residual),
        kind=kind,
        trivial_multiplier=complex(np.nan),
        n_newton=n_newton,
        dt=dt,
    )


def find_limit_cycle(
    F: Map,
    x0: Any,
    u: Any = None,
    *,
    dt: float = 1.0,
    n_transient: int = 2000,
    n_search: int = 5000,
    section_radius: float = 0.2,
    tol: float = 1e-10,
    max_newton: int = 30,
    fixed_point_tol: float = 1e-9,
    recurrence_tol: float = 1e-7,
    trivial_tol: float = 1e-3,
    precision: str = "float64",
) -> LimitCycle:
    r"""Find the limit cycle reached from ``x0`` and its Floquet multipliers.

    1. *Settle*: iterate ``n_transient`` steps.
    2. *Detect recurrence* in the next ``n_search`` steps: an exact return
       ``‖F^P(x) - x‖ < recurrence_tol`` (integer period ``P``: a discrete periodic orbit), or
       else the first upward crossing of the Poincaré section
       :math:`\{y : v\cdot(y - x) = 0\}`, :math:`v \parallel F(x) - x`, within
       ``section_radius`` × the orbit's diameter of ``x``; linear interpolation gives a first,
       fractional period ``T_0`` in steps.
    3. *Refine* by Newton on :math:`z = (x, T)`:
       :math:`\Phi(x, T) = x,\ v\cdot(x - x_0) = 0`, where :math:`\Phi(x, T)` is the
       cubic (Lagrange) interpolation of ``F^{k-1..k+2}(x)`` at ``T``, ``k = ⌊T⌋`` — the
       time-``T`` map of the flow the samples come from, to :math:`O(h^4)` in the step length
       ``h``. A discrete orbit is refined by Newton on :math:`F^P(x) = x`.
    4. *Floquet multipliers*: eigenvalues of the monodromy matrix
       :math:`M = \partial\Phi/\partial x` (``DF^P`` for a discrete orbit). For a cycle of a
       flow one multiplier is ≈ 1 (the direction along the flow; its error from 1 is
       reported as ``trivial_multiplier``); the cycle is stable when all others have
       :math:`|\mu| < 1`.

    Args:
        F: one-step map ``F(x, u)``.
        x0: start ``(n,)``.
        u: constant input ``(m,)`` or ``None``.
        dt: time per step (for ``period_time``).
        n_transient: settling steps.
        n_search: steps searched for a return (must exceed the period).
        section_radius: a return counts when it crosses the section within this fraction of
            the orbit's diameter from the settled point.
        tol: Newton tolerance on ``‖residual‖`` (relative to ``max(1, max|x|)``).
        max_newton: Newton iteration cap.
        fixed_point_tol: below this speed ``‖F(x) - x‖`` the settled state is a fixed point.
        trivial_tol: an invariant circle is accepted only if its multiplier along the flow is
            within this distance of 1; otherwise the interpolated time-``T`` map is too coarse
            (a few samples per period, or a genuinely discrete map) and ``converged=False``
            with ``kind="inaccurate circle"``.
        recurrence_tol: exact-return tolerance for integer periods.
        precision: ``"float64"`` (default) or ``"float32"``.

    Returns:
        :class:`LimitCycle`; ``converged=False`` with ``kind`` saying why if none was found.

    Raises:
        TypeError / ValueError: naming the bad argument.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ctrnn_dyn import systems
        >>> with jax.enable_x64(True):
        ...     F = systems.OSCILLATOR.map(jnp.float64)
        >>> lc = find_limit_cycle(F, jnp.zeros(2), dt=0.1)
        >>> round(lc.period_time, 2), lc.stable, round(float(abs(lc.floquet_multipliers[0])), 6)
        (29.09, True, 1.0)
    """
    _check_F(F)
    arr = _check_state(x0, "x0")
    _check_positive(dt, "dt")
    _check_nonneg_int(n_transient, "n_transient")
    _check_positive(n_search, "n_search", integer=True)
    if n_search < 4:
        raise ValueError(f"n_search must be >= 4, got {n_search}")
    _check_positive(section_radius, "section_radius")
    _check_positive(tol, "tol")
    _check_positive(max_newton, "max_newton", integer=True)
    dt = float(dt)
    n = arr.shape[0]
    with _precision_ctx(precision):
        dtype = _dtype(precision)
        uj = _as_u(u, dtype)
        X = np.asarray(_settled_orbit(F, jnp.asarray(arr, dtype), uj, n_transient, n_search),
                       np.float64)
        if not np.all(np.isfinite(X)):
            return _failed_cycle(np.asarray(X[0]), "divergent", dt)
        x_ref = X[0]
        scale = max(1.0, float(np.max(np.abs(X))))
        speed = float(np.linalg.norm(X[1] - X[0]))
        dist = np.linalg.norm(X - x_ref, axis=1)
        diam = float(dist.max())
        if speed < fixed_point_tol * scale:
            return _failed_cycle(x_ref, "fixed point", dt, residual=speed)

        exact = np.nonzero(dist[1:] < recurrence_tol * scale)[0]
        if exact.size:
            return _refine_periodic_orbit(F, x_ref, uj, int(exact[0]) + 1, dt, tol, max_newton,
                                          scale, dtype)

        v = (X[1] - X[0]) / speed
        s = (X - x_ref) @ v
        up = np.nonzero((s[1:-1] < 0) & (s[2:] >= 0))[0] + 1
        T0 = None
        for t in up:
            theta = -s[t] / (s[t + 1] - s[t])
            p = X[t] + theta * (X[t + 1] - X[t])
            if np.linalg.norm(p - x_ref) < section_radius * diam:
                T0 = t + theta
                break
        if T0 is None:
            return _failed_cycle(x_ref, "no recurrence", dt)

        k_max = math.ceil(T0) + 4
        z = jnp.asarray(np.concatenate([x_ref, [T0]]), dtype)
        xr, vj = jnp.asarray(x_ref, dtype), jnp.asarray(v, dtype)
        res_norm, it, jac, xs = np.inf, 0, None, None
        for it in range(1, max_newton + 1):  # noqa: B007 - Newton iterations, not time steps
            r, jac, xs = _circle_newton_system(F, z, uj, xr, vj, _bucket(k_max))
            r, jac = np.asarray(r, np.float64), np.asarray(jac, np.float64)
            res_norm = float(np.linalg.norm(r))
            if not np.isfinite(res_norm):
                break
            if res_norm < tol * scale:
                break
            try:
                step = np.linalg.solve(jac, r)
            except np.linalg.LinAlgError:
                step = np.linalg.lstsq(jac, r, rcond=None)[0]
            z = z - jnp.asarray(step, dtype)
            T = float(z[n])
            if not 1.0 <= T <= k_max - 2:
                logger.info("find_limit_cycle: period left its bracket (T=%g)", T)
                res_norm = np.inf
                break
        x_star = np.asarray(z[:n], np.float64)
        T = float(z[n])
        if not (np.isfinite(res_norm) and res_norm < tol * scale) or jac is None:
            return _failed_cycle(x_star, "newton failed", dt, residual=res_norm, n_newton=it)
        M = jac[:n, :n] + np.eye(n)
        mu = np.linalg.eigvals(M)
        mu = mu[np.argsort(-np.abs(mu), kind="stable")]
        i_triv = int(np.argmin(np.abs(mu - 1.0)))
        others = np.delete(mu, i_triv)
        orbit = np.asarray(xs)[: math.ceil(T) + 1]  # the orbit of the converged x
        if abs(mu[i_triv] - 1.0) > trivial_tol:
            logger.info("find_limit_cycle: multiplier along the flow %s is not 1", mu[i_triv])
            return _failed_cycle(x_star, "inaccurate circle", dt, residual=res_norm, n_newton=it)
    return LimitCycle(
        x=x_star,
        period=T,
        period_time=T * dt,
        orbit=orbit,
        floquet_multipliers=mu,
        stable=bool(np.all(np.abs(others) < 1.0)),
        converged=True,
        residual=res_norm,
        kind="invariant circle",
        trivial_multiplier=complex(mu[i_triv]),
        n_newton=it,
        dt=dt,
    )


def _refine_periodic_orbit(F, x_ref, uj, period, dt, tol, max_newton, scale, dtype):
    x = jnp.asarray(x_ref, dtype)
    res_norm, it, jac, xs = np.inf, 0, None, None
    for it in range(1, max_newton + 1):  # noqa: B007 - Newton iterations, not time steps
        r, jac, xs = _orbit_newton_system(F, x, uj, np.int32(period), _bucket(period))
        r, jac = np.asarray(r, np.float64), np.asarray(jac, np.float64)
        res_norm = float(np.linalg.norm(r))
        if not np.isfinite(res_norm) or res_norm < tol * scale:
            break
        try:
            step = np.linalg.solve(jac, r)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(jac, r, rcond=None)[0]
        x = x - jnp.asarray(step, dtype)
    if not (np.isfinite(res_norm) and res_norm < tol * scale):
        return _failed_cycle(np.asarray(x), "newton failed", dt, res_norm, it)
    mu = np.linalg.eigvals(jac + np.eye(jac.shape[0]))
    mu = mu[np.argsort(-np.abs(mu), kind="stable")]
    orbit = np.asarray(xs)[: period + 1]
    return LimitCycle(
        x=np.asarray(x, np.float64),
        period=float(period),
        period_time=period * dt,
        orbit=orbit,
        floquet_multipliers=mu,
        stable=bool(np.all(np.abs(mu) < 1.0)),
        converged=True,
        residual=res_norm,
        kind="periodic orbit",
        trivial_multiplier=complex(np.nan),
        n_newton=it,
        dt=dt,
    )


# --------------------------------------------------------------------------- line attractors
class LineAttractor(NamedTuple):
    r"""Evidence for (or against) a line attractor formed by a set of fixed/slow points.

    Attributes:
        is_line: the verdict (all criteria below met).
        direction: ``(d,)`` unit vector, the points' first principal axis.
        length: extent of the points along ``direction``.
        center: ``(d,)`` mean of the points.
        n_points: points used (converged ones only, when a ``converged`` flag exists).
        variance_ratio: ``(min(N, d),)`` PCA explained-variance ratios of the points.
        slow_eigvals: ``(N,)`` at each point, the continuous-time eigenvalue
            :math:`\lambda = (\mu - 1)/\alpha` nearest 0 (i.e. the multiplier nearest 1).
        gap: ``(N,)`` the next eigenvalue's :math:`|\lambda|` (separation of time scales).
        alignment: ``(N,)`` :math:`|\cos|` between the slow eigenvector and the manifold's
            local tangent (secant across ``±max(1, N // 20)`` neighbours of the points sorted
            along ``direction``; central differences for ``N < 40``).
        order: ``(N,)`` indices that sort the points along the line.
        reason: ``"line attractor"`` or the first criterion that failed.
    """

    is_line: bool
    direction: np.ndarray
    length: float
    center: np.ndarray
    n_points: int
    variance_ratio: np.ndarray
    slow_eigvals: np.ndarray
    gap: np.ndarray
    alignment: np.ndarray
    order: np.ndarray
    reason: str


def _continuous_spectra(points, jacobians, eigvals, eigvecs, alpha):
    """Continuous-time eigenvalues ``(N, d)`` and right eigenvectors ``(N, d, d)``."""
    if jacobians is not None:
        J = np.asarray(jacobians)
        d = J.shape[-1]
        a = np.broadcast_to(np.asarray(alpha, np.float64), (d,))
        A = (J - np.eye(d)) / a[None, :, None]
        lam, vec = np.linalg.eig(A)
        return lam, vec
    a = np.asarray(alpha, np.float64)
    if a.ndim and not np.allclose(a, a.flat[0]):
        raise ValueError(
            "alpha is per-neuron: pass jacobians (or F) rather than eigvals so the "
            "continuous-time spectrum can be computed"
        )
    return (np.asarray(eigvals) - 1.0) / float(a.flat[0]), np.asarray(eigvecs)


def line_attractor(
    fixed_points: Any,
    *,
    F: Map | None = None,
    u: Any = None,
    alpha: Any = None,
    eig_tol: float = 0.05,
    min_gap_ratio: float = 5.0,
    min_variance_ratio: float = 0.9,
    min_alignment: float = 0.9,
    min_points: int = 3,
    min_length: float = 1e-6,
    converged_only: bool = True,
) -> LineAttractor:
    r"""Do these fixed (or slow) points form a line attractor?

    A line attractor is a 1-D manifold of fixed points, each with one eigenvalue
    :math:`\mu \approx 1` (continuous time :math:`\lambda = (\mu-1)/\alpha \approx 0`) whose
    eigenvector points *along* the manifold, and all other modes decaying. The test:

    * the points spread along one direction: first PCA variance ratio ``>= min_variance_ratio``
      and extent ``> min_length``, with at least ``min_points`` points;
    * at each point the eigenvalue nearest zero has median :math:`|\lambda| \le` ``eig_tol``
      (per unit of the time constant) and is separated from the next one by a factor
      ``>= min_gap_ratio``;
    * its eigenvector is aligned with the local tangent: median :math:`|\cos| \ge`
      ``min_alignment``.

    Isolated fixed points fail the eigenvalue test (their slowest mode decays or grows at a
    finite rate) even if three of them happen to be collinear.

    Args:
        fixed_points: a ``FixedPoints``-like object with ``x`` ``(N, d)`` and any of
            ``jacobians`` ``(N, d, d)`` or ``eigvals``/``eigvecs`` (discrete multipliers,
            ``(N, d)``/``(N, d, d)``), optionally ``converged`` ``(N,)``; or an array
            ``(N, d)`` of points together with ``F``.
        F: the one-step map; used for Jacobians when ``fixed_points`` carries none, and for
            its ``alpha`` attribute.
        u: input ``(m,)`` for ``F``.
        alpha: ``dt/τ`` (scalar or ``(d,)``) to turn multipliers into continuous eigenvalues;
            default ``F.alpha``, else ``fixed_points.alpha``, else 1 (per step).
        eig_tol: largest median :math:`|\lambda|` of the slow mode (criteria above).
        min_gap_ratio: smallest ratio of the next eigenvalue's modulus to the slow one's.
        min_variance_ratio: smallest first-PCA variance ratio of the points.
        min_alignment: smallest median :math:`|\cos|` of slow eigenvector and tangent.
        min_points: fewest points.
        min_length: smallest extent along the line.
        converged_only: use only points flagged ``converged``; ``False`` also uses slow points
            (an approximate line attractor is often a line of slow points).

    Returns:
        :class:`LineAttractor` with the verdict and the evidence.

    Raises:
        ValueError / TypeError: naming the bad argument.

    Example:
        >>> import numpy as np, jax.numpy as jnp
        >>> A = jnp.array([[1.0, 0.0], [0.0, 0.5]])  # integrates along x_1, forgets x_2
        >>> pts = np.stack([np.linspace(-1, 1, 5), np.zeros(5)], axis=1)
        >>> res = line_attractor(pts, F=lambda x, u: A @ x)
        >>> res.is_line, round(res.length, 6)
        (True, 2.0)
    """
    if isinstance(fixed_points, np.ndarray | jax.Array | list | tuple):
        points = np.asarray(fixed_points)
        jacobians = eigvals = eigvecs = converged = None
    else:
        if not hasattr(fixed_points, "x"):
            raise TypeError(
                "fixed_points must be a FixedPoints-like object with .x (N, d) or an array "
                f"(N, d), got {type(fixed_points).__name__}"
            )
        points = np.asarray(fixed_points.x)
        jacobians = getattr(fixed_points, "jacobians", None)
        eigvals = getattr(fixed_points, "eigvals", None)
        eigvecs = getattr(fixed_points, "eigvecs", None)
        converged = getattr(fixed_points, "converged", None)
    if points.ndim != 2:
        raise ValueError(f"fixed_points.x must have shape (N, d), got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("fixed_points.x contains non-finite values (nan or inf)")
    if F is not None:
        _check_F(F)
    keep = (np.ones(points.shape[0], bool) if converged is None or not converged_only
            else np.asarray(converged, bool))
    if keep.shape != (points.shape[0],):
        raise ValueError(f"fixed_points.converged must have shape (N,), got {keep.shape}")
    points = points[keep]
    N, d = points.shape
    if alpha is None:
        alpha = getattr(F, "alpha", None) if F is not None else None
        if alpha is None:
            alpha = getattr(fixed_points, "alpha", None)
        if alpha is None:
            alpha = 1.0
    alpha = np.asarray(alpha, np.float64)
    if np.any(~np.isfinite(alpha)) or np.any(alpha <= 0):
        raise ValueError(f"alpha must be positive, got {alpha}")

    if jacobians is not None:
        jacobians = np.asarray(jacobians)[keep]
    elif eigvals is not None and eigvecs is not None:
        eigvals, eigvecs = np.asarray(eigvals)[keep], np.asarray(eigvecs)[keep]
    elif F is not None:
        with jax.enable_x64(True):
            uj = _as_u(u, jnp.float64)
            jacobians = np.asarray(_jacobians(F, jnp.asarray(points, jnp.float64), uj))
    else:
        raise ValueError(
            "line_attractor needs Jacobians: fixed_points without jacobians/eigvals needs F"
        )

    empty = LineAttractor(
        False, np.full(d, np.nan), 0.0, points.mean(0) if N else np.full(d, np.nan), N,
        np.zeros(0), np.zeros(0, complex), np.zeros(0), np.zeros(0), np.zeros(0, int), "",
    )
    if N < max(min_points, 2):
        return empty._replace(reason=f"too few points ({N} < {max(min_points, 2)})")

    center = points.mean(0)
    _, svals, vt = np.linalg.svd(points - center, full_matrices=False)
    var = svals**2
    variance_ratio = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    direction = vt[0]
    proj = (points - center) @ direction
    order = np.argsort(proj)
    length = float(proj.max() - proj.min())

    # local tangent: secant across +-k neighbours of the points sorted along the line (k = 1:
    # central differences). k grows with N so that the secant spans about a tenth of the line:
    # with dense points, neighbours' off-line scatter (slow points sit within a tolerance of the
    # manifold) would otherwise swamp their spacing and the verdict would depend on how many
    # points the finder returned.
    sorted_pts = points[order]
    k = max(1, N // 20)
    pos = np.arange(N)
    tang = sorted_pts[np.minimum(pos + k, N - 1)] - sorted_pts[np.maximum(pos - k, 0)]
    norms = np.linalg.norm(tang, axis=1, keepdims=True)
    tang = np.where(norms > 0, tang / np.where(norms > 0, norms, 1.0), direction)
    tangents = np.empty_like(tang)
    tangents[order] = tang

    lam, vec = _continuous_spectra(points, jacobians, eigvals, eigvecs, alpha)
    ranks = np.argsort(np.abs(lam), axis=1)
    idx = np.arange(N)
    slow = lam[idx, ranks[:, 0]]
    gap = np.abs(lam[idx, ranks[:, 1]]) if d > 1 else np.full(N, np.inf)
    v_slow = vec[idx, :, ranks[:, 0]]
    alignment = np.abs(np.einsum("ni,ni->n", v_slow.conj(), tangents)) / np.linalg.norm(
        v_slow, axis=1
    )

    med_slow = float(np.median(np.abs(slow)))
    if variance_ratio[0] < min_variance_ratio:
        reason = f"points not 1-D (first variance ratio {variance_ratio[0]:.3g})"
    elif length <= min_length:
        reason = f"points do not extend (length {length:.3g})"
    elif med_slow > eig_tol:
        reason = f"no eigenvalue near zero (median |lambda| {med_slow:.3g} > {eig_tol})"
    elif float(np.median(gap)) < min_gap_ratio * max(med_slow, 1e-300):
        reason = f"no separation of time scales (gap {float(np.median(gap)):.3g})"
    elif float(np.median(alignment)) < min_alignment:
        reason = f"slow mode not along the line (alignment {float(np.median(alignment)):.3g})"
    else:
        reason = "line attractor"
    return LineAttractor(
        is_line=reason == "line attractor",
        direction=direction,
        length=length,
        center=center,
        n_points=N,
        variance_ratio=variance_ratio,
        slow_eigvals=slow,
        gap=gap,
        alignment=alignment,
        order=order,
        reason=reason,
    )


# ---------------------------------------------------------------------- classify_dynamics
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


@jit_map
def _jacobians(F, xs, u):
    """``(N, n, n)`` Jacobians of ``F`` at the rows of ``xs``."""
    return jax.vmap(lambda x: _jacobian(F, x, u))(xs)


@jit_map(static_argnames=("n_recur",))
def _recurrence_batch(F, xs, u, n_recur: int):
    def one(x):
        X = _orbit(F, x, u, n_recur)
        dist = jnp.linalg.norm(X[1:] - x, axis=1)
        speed = dist[0]
        return speed, dist

    return jax.vmap(one)(xs)


def classify_dynamics(
    F: Map,
    starts: Any,
    u: Any = None,
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
    precision: str = "float64",
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
        starts: ``(B, n)`` initial states (or ``(n,)`` for one).
        u: constant input ``(m,)`` or ``None``.
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
        precision: ``"float64"`` (default) or ``"float32"``.

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
    arr = _check_state(starts, "starts", ndim=(1, 2))
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
    with _precision_ctx(precision):
        dtype = _dtype(precision)
        xs = jnp.asarray(arr, dtype)
        uj = _as_u(u, dtype)
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
