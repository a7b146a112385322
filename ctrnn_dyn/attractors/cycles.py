"""Limit cycles and invariant circles (Poincaré recurrence, Newton, Floquet), and the rotation
number on a circle."""

from __future__ import annotations

import logging
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

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
    _settled_orbit,
)

logger = logging.getLogger(__name__)


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


@renamed(u="inputs")
def circle_rotation(
    F: Map, x0: Any, inputs: Any = None, *, n_steps: int = 2000, max_period: int = 500
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
        inputs: ``(m,)`` input held constant, or ``None``.
        n_steps: orbit length ``N``.
        max_period: longest period searched (at most ``N // 2``).

    Returns:
        :class:`CircleRotation`.

    Raises:
        ValueError / TypeError: ``F`` not callable, ``x0`` not a finite ``(n,)`` array, bad
            ``inputs``, ``n_steps`` or ``max_period`` not an int ``>= 1``.
    """
    _check_F(F)
    x0 = _check_state(x0, "x0")
    _check_positive(n_steps, "n_steps", integer=True)
    _check_positive(max_period, "max_period", integer=True)
    context, dtype = _precision(np.float64)
    with context:
        X = np.asarray(_settled_orbit(F, jnp.asarray(x0, dtype), _as_u(inputs, dtype), 0,
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


@renamed(u="inputs", precision="dtype")
def find_limit_cycle(
    F: Map,
    x0: Any,
    inputs: Any = None,
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
    dtype: Any = np.float64,
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
        inputs: constant input ``(m,)`` or ``None``.
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
        dtype: ``np.float64`` (default, switched on locally) or ``np.float32`` (JAX's dtypes and
            the strings ``"float64"``/``"float32"`` also work).

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
    context, dtype = _precision(dtype)
    with context:
        uj = _as_u(inputs, dtype)
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


