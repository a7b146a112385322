"""Limit cycles and invariant circles (Poincaré recurrence, Newton, Floquet), for one map or
many (:func:`find_limit_cycle_batch`), and the rotation number on a circle."""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn._batch import take_networks
from ctrnn_dyn._checks import per_item, renamed
from ctrnn_dyn.attractors._common import (
    Map,
    _as_u,
    _check_F,
    _check_nonneg_int,
    _check_positive,
    _check_state,
    _checked_maps,
    _known_options,
    _precision,
    _same_shape,
    _settled_orbit,
    _settled_orbits,
    _stacked_batches,
)
from ctrnn_dyn.attractors._cycle_newton import (
    Refined,
    bucket,
    circle_systems,
    newton,
    orbit_systems,
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
    options = _cycle_options(dt=dt, n_transient=n_transient, n_search=n_search,
                             section_radius=section_radius, tol=tol, max_newton=max_newton,
                             fixed_point_tol=fixed_point_tol, recurrence_tol=recurrence_tol,
                             trivial_tol=trivial_tol, dtype=dtype)
    return _limit_cycles([F], [_check_state(x0, "x0")], [inputs], options, devices=None)[0]


def find_limit_cycle_batch(
    maps: Sequence[Map],
    x0: Any,
    inputs: Any = None,
    *,
    devices: Any = "auto",
    **options: Any,
) -> list[LimitCycle]:
    """:func:`find_limit_cycle` for many maps of one shape (e.g. an ensemble's networks): the
    settling and the search orbits of all networks run in one compiled program (their
    parameters stacked along a leading network axis, the scan ``vmap`` -ped over it and split
    over ``devices``), and the Newton refinement iterates the networks whose cycles have one
    kind and one orbit length together, one program evaluation per iteration for all of them
    (their linear solves on the host). Maps whose static parts differ form a group each.

    Args:
        maps: ``E`` one-step maps (:class:`~ctrnn_dyn.dynamics.OneStepMap` s are stacked; a
            plain function is a group of its own).
        x0: ``(E, n)`` or a list of ``E`` ``(n,)`` starts (one per map), or ``(n,)`` shared.
        inputs: ``None``, ``(m,)`` shared, or ``(E, m)`` / a list of ``E`` ``(m,)`` per map.
        devices: split the settling over these devices, as for
            :func:`~ctrnn_dyn.attractors.classify_dynamics_batch`.
        **options: as for :func:`find_limit_cycle`, the same for all maps.

    Returns:
        ``E`` :class:`LimitCycle` s in the order of ``maps``; each what
        :func:`find_limit_cycle` returns for that map (to floating-point reassociation).

    Raises:
        TypeError / ValueError: naming the bad argument.
    """
    maps = _checked_maps(maps)
    _known_options(options, _CYCLE_DEFAULTS, "find_limit_cycle_batch")
    E = len(maps)
    starts = [_check_state(x, f"x0[{i}]") for i, x in
              enumerate(per_item(x0, E, "x0", ndim=1, item="map"))]
    _same_shape(starts, "x0")
    return _limit_cycles(maps, starts, per_item(inputs, E, "inputs", ndim=1, item="map"),
                         _cycle_options(**{**_CYCLE_DEFAULTS, **options}), devices)


_CYCLE_DEFAULTS = {
    name: p.default for name, p in inspect.signature(find_limit_cycle).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
}


class _Options(NamedTuple):
    """:func:`find_limit_cycle`'s checked options (:func:`_cycle_options`)."""

    dt: float
    n_transient: int
    n_search: int
    section_radius: float
    tol: float
    max_newton: int
    fixed_point_tol: float
    recurrence_tol: float
    trivial_tol: float
    dtype: Any


def _cycle_options(*, dt, n_transient, n_search, section_radius, tol, max_newton,
                   fixed_point_tol, recurrence_tol, trivial_tol, dtype) -> _Options:
    """:func:`find_limit_cycle`'s keyword options, checked (each error names its option)."""
    _check_positive(dt, "dt")
    _check_nonneg_int(n_transient, "n_transient")
    _check_positive(n_search, "n_search", integer=True)
    if n_search < 4:
        raise ValueError(f"n_search must be >= 4, got {n_search}")
    _check_positive(section_radius, "section_radius")
    _check_positive(tol, "tol")
    _check_positive(max_newton, "max_newton", integer=True)
    _precision(dtype)  # checks it
    return _Options(float(dt), n_transient, n_search, section_radius, tol, max_newton,
                    fixed_point_tol, recurrence_tol, trivial_tol, dtype)


class _Return(NamedTuple):
    """A settled orbit's first return, to be refined: an exact return after ``period`` steps
    (a periodic orbit) or a crossing of the Poincaré section (normal ``v``) at fractional time
    ``T0`` (an invariant circle)."""

    x_ref: np.ndarray
    scale: float
    period: int | None
    v: np.ndarray | None
    T0: float | None

    def key(self) -> tuple[str, int]:
        """Returns refined together: one kind and one compiled orbit length."""
        if self.period is not None:
            return "orbit", bucket(self.period)
        return "circle", bucket(math.ceil(self.T0) + 4)


def _first_return(X: np.ndarray, o: _Options) -> _Return | LimitCycle:
    """Steps 2 of :func:`find_limit_cycle` on the settled orbit ``X (n_search + 1, n)``: the
    first return, or the failed :class:`LimitCycle` saying why there is none."""
    if not np.all(np.isfinite(X)):
        return _failed_cycle(np.asarray(X[0]), "divergent", o.dt)
    x_ref = X[0]
    scale = max(1.0, float(np.max(np.abs(X))))
    speed = float(np.linalg.norm(X[1] - X[0]))
    dist = np.linalg.norm(X - x_ref, axis=1)
    diam = float(dist.max())
    if speed < o.fixed_point_tol * scale:
        return _failed_cycle(x_ref, "fixed point", o.dt, residual=speed)
    exact = np.nonzero(dist[1:] < o.recurrence_tol * scale)[0]
    if exact.size:
        return _Return(x_ref, scale, int(exact[0]) + 1, None, None)
    v = (X[1] - X[0]) / speed
    s = (X - x_ref) @ v
    for t in np.nonzero((s[1:-1] < 0) & (s[2:] >= 0))[0] + 1:
        theta = -s[t] / (s[t + 1] - s[t])
        p = X[t] + theta * (X[t + 1] - X[t])
        if np.linalg.norm(p - x_ref) < o.section_radius * diam:
            return _Return(x_ref, scale, None, v, t + theta)
    return _failed_cycle(x_ref, "no recurrence", o.dt)


def _limit_cycles(maps: list, starts: list[np.ndarray], inputs: list, o: _Options,
                  devices: Any) -> list[LimitCycle]:
    """Every map's :class:`LimitCycle`: per group of stackable maps, the settled orbits in one
    program, the first returns on the host, and the Newton refinement per kind and orbit
    length (:func:`~._cycle_newton.newton`)."""
    context, dt = _precision(o.dtype)
    out: list[Any] = [None] * len(maps)
    with context:
        for idx, F, xs, u, mesh in _stacked_batches(maps, starts, inputs, dt, devices):
            X = np.asarray(_settled_orbits(F, xs, u, mesh=mesh, n_transient=o.n_transient,
                                           n_steps=o.n_search), np.float64)
            found = [_first_return(X[j], o) for j in range(len(idx))]
            classes: dict[tuple[str, int], list[int]] = {}
            for j, f in enumerate(found):
                if isinstance(f, _Return):
                    classes.setdefault(f.key(), []).append(j)
            for (kind, length), members in classes.items():
                refined = _refine(F, u, [found[j] for j in members], members, kind, length, o,
                                  dt)
                for j, result in zip(members, refined, strict=True):
                    found[j] = result
            for j, i in enumerate(idx):
                out[i] = found[j]
    return out


def _refine(F, u, returns: list[_Return], members: list[int], kind: str, length: int,
            o: _Options, dt) -> list[LimitCycle]:
    """Step 3 and 4 of :func:`find_limit_cycle` for networks ``members`` of the stacked ``F``
    (padded to a power of two with copies of the first: few compiled shapes)."""
    G = 1 << (len(members) - 1).bit_length()
    pad = returns + [returns[0]] * (G - len(returns))
    nets = np.asarray(members + [members[0]] * (G - len(members)))
    Fg = take_networks(F, nets)
    ug = None if u is None else jax.device_put(np.asarray(u)[nets])
    tols = np.array([o.tol * r.scale for r in pad])
    x_ref = np.stack([r.x_ref for r in pad]).astype(dt)
    if kind == "orbit":
        periods = np.array([r.period for r in pad], np.int32)
        refined = newton(lambda z: orbit_systems(Fg, z, ug, periods, length), x_ref, tols,
                         o.max_newton)
        return [_periodic_orbit(r, f, o) for r, f in zip(returns, refined, strict=False)]
    v = np.stack([r.v for r in pad]).astype(dt)
    z0 = np.concatenate([x_ref, np.array([[r.T0] for r in pad])], axis=1).astype(dt)
    # the period may move within the orbit computed for its first estimate (ceil(T0) + 4
    # steps, whatever the compiled length)
    period_max = np.array([math.ceil(r.T0) + 2.0 for r in pad])
    refined = newton(lambda z: circle_systems(Fg, z, ug, x_ref, v, length), z0, tols,
                     o.max_newton, period_max=period_max)
    return [_invariant_circle(r, f, o) for r, f in zip(returns, refined, strict=False)]


def _invariant_circle(r: _Return, f: Refined, o: _Options) -> LimitCycle:
    n = r.x_ref.shape[0]
    x_star = np.asarray(f.z[:n], np.float64)
    T = float(f.z[n])
    if not (np.isfinite(f.residual) and f.residual < o.tol * r.scale) or f.jac is None:
        return _failed_cycle(x_star, "newton failed", o.dt, residual=f.residual,
                             n_newton=f.n_newton)
    mu = _multipliers(f.jac[:n, :n])
    i_triv = int(np.argmin(np.abs(mu - 1.0)))
    others = np.delete(mu, i_triv)
    if abs(mu[i_triv] - 1.0) > o.trivial_tol:
        logger.info("find_limit_cycle: multiplier along the flow %s is not 1", mu[i_triv])
        return _failed_cycle(x_star, "inaccurate circle", o.dt, residual=f.residual,
                             n_newton=f.n_newton)
    return LimitCycle(
        x=x_star,
        period=T,
        period_time=T * o.dt,
        orbit=f.orbit[: math.ceil(T) + 1],  # the orbit of the converged x
        floquet_multipliers=mu,
        stable=bool(np.all(np.abs(others) < 1.0)),
        converged=True,
        residual=f.residual,
        kind="invariant circle",
        trivial_multiplier=complex(mu[i_triv]),
        n_newton=f.n_newton,
        dt=o.dt,
    )


def _periodic_orbit(r: _Return, f: Refined, o: _Options) -> LimitCycle:
    if not (np.isfinite(f.residual) and f.residual < o.tol * r.scale):
        return _failed_cycle(np.asarray(f.z), "newton failed", o.dt, f.residual, f.n_newton)
    mu = _multipliers(f.jac)
    return LimitCycle(
        x=np.asarray(f.z, np.float64),
        period=float(r.period),
        period_time=r.period * o.dt,
        orbit=f.orbit[: r.period + 1],
        floquet_multipliers=mu,
        stable=bool(np.all(np.abs(mu) < 1.0)),
        converged=True,
        residual=f.residual,
        kind="periodic orbit",
        trivial_multiplier=complex(np.nan),
        n_newton=f.n_newton,
        dt=o.dt,
    )


def _multipliers(jac: np.ndarray) -> np.ndarray:
    """Eigenvalues of the monodromy matrix ``jac + I`` (``jac`` of the residual), descending in
    modulus."""
    mu = np.linalg.eigvals(jac + np.eye(jac.shape[0]))
    return mu[np.argsort(-np.abs(mu), kind="stable")]
