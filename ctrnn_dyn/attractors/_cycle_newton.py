r"""Newton refinement of limit cycles over a stack of networks: the two systems
(:func:`find_limit_cycle`'s time-``T`` map of an invariant circle with its phase condition, and
``F^P(x) = x`` of a periodic orbit), each evaluated for every network of a stacked map in one
program, and the Newton iteration that drives them (each network's linear solve on the host,
in float64)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ctrnn_dyn._base import jit_map
from ctrnn_dyn._batch import vmap_over_maps
from ctrnn_dyn.attractors._common import _orbit


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


def _circle_system(F, z, u, x_ref, v, *, k_max: int):
    """Residual ``[Φ(x,T) - x ; v·(x - x_ref)]`` of one network, its Jacobian w.r.t.
    ``z = (x, T)``, and the orbit ``F^{0..k_max}(x)``."""
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


def _orbit_system(F, x, u, period, *, length: int):
    """Residual ``F^period(x) - x`` of one network (``period`` traced), its Jacobian and
    ``F^{0..length}(x)``."""

    def resid(x):
        xs = _orbit(F, x, u, length)
        return lax.dynamic_index_in_dim(xs, period, keepdims=False) - x, xs

    r, xs = resid(x)
    return r, jax.jacfwd(lambda x: resid(x)[0])(x), xs


@jit_map(static_argnames=("k_max",))
def circle_systems(F, z, u, x_ref, v, k_max: int):
    """:func:`_circle_system` for a stacked map: ``z (G, n + 1)``, ``u (G, m)`` or ``None``,
    ``x_ref``, ``v (G, n)``; returns ``r (G, n + 1)``, ``jac (G, n + 1, n + 1)``,
    ``xs (G, k_max + 1, n)``."""
    return vmap_over_maps(partial(_circle_system, k_max=k_max))(F, z, u, x_ref, v)


@jit_map(static_argnames=("length",))
def orbit_systems(F, x, u, period, length: int):
    """:func:`_orbit_system` for a stacked map: ``x (G, n)``, ``period (G,)``."""
    return vmap_over_maps(partial(_orbit_system, length=length))(F, x, u, period)


def bucket(steps: int) -> int:
    """Orbit lengths are compiled in powers of two (at least 8): networks whose periods differ
    share a program; the extra steps are computed and ignored."""
    return max(8, 1 << (int(steps) - 1).bit_length())


class Refined(NamedTuple):
    """One network's Newton result: the last iterate ``z``, ``‖r‖`` there (``inf`` when the
    period left its bracket), the iterations used, and the Jacobian and orbit evaluated at the
    last iterate (``None`` if none was)."""

    z: np.ndarray
    residual: float
    n_newton: int
    jac: np.ndarray | None
    orbit: np.ndarray | None


def newton(system: Callable, z0: np.ndarray, tols: np.ndarray, max_newton: int,
           period_max: np.ndarray | None = None) -> list[Refined]:
    r"""Newton's method :math:`z \leftarrow z - J^{-1} r(z)` for ``G`` systems at once.

    ``system(z (G, k)) -> (r (G, k), jac (G, k, k), orbit (G, L, n))``. A system stops when
    ``‖r‖ < tols[g]`` or is not finite (the step is then not taken), after ``max_newton``
    evaluations, or (``period_max (G,)`` given, the period being ``z[-1]``) when a step takes
    the period outside ``[1, period_max[g]]`` (its residual is then ``inf``); the stopped
    systems keep their values while the others iterate. The steps are solved on the host in
    float64, all running systems in one batched solve (each by least squares if that one is
    singular), and applied in ``z0``'s dtype."""
    z = np.array(z0)
    G = z.shape[0]
    out: list[Refined | None] = [None] * G
    live = np.ones(G, bool)
    for it in range(1, max_newton + 1):
        r, jac, xs = system(z)
        r, jac = np.asarray(r, np.float64), np.asarray(jac, np.float64)
        res = np.linalg.norm(r, axis=1)
        done = live & (~np.isfinite(res) | (res < tols))
        step = live & ~done
        g = np.flatnonzero(step)
        if g.size:
            z[g] -= _solve(jac[g], r[g]).astype(z.dtype)
            if period_max is not None:
                left = (z[g, -1] < 1.0) | (z[g, -1] > period_max[g])
                res[g[left]] = np.inf
                done[g[left]] = True
        stopped = np.flatnonzero(done | (live & (it == max_newton)))
        if stopped.size:
            xs = np.asarray(xs)
            for k in stopped:
                out[k] = Refined(z[k].copy(), float(res[k]), it, jac[k], xs[k])
            live[stopped] = False
        if not live.any():
            break
    return out  # type: ignore[return-value]


def _solve(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``A⁻¹ b`` for stacks ``A (G, k, k)``, ``b (G, k)``; a singular ``A`` by least squares."""
    try:
        return np.linalg.solve(A, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.empty_like(b)
        for i in range(len(b)):
            try:
                out[i] = np.linalg.solve(A[i], b[i])
            except np.linalg.LinAlgError:
                out[i] = np.linalg.lstsq(A[i], b[i], rcond=None)[0]
        return out
