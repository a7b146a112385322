"""Newton's method on the residual ``r(x) = F(x) − x``, for the starts the solver leaves above
the tolerance: the Newton finish (backtracking) and Powell's dogleg restarts (MINPACK hybrd's
step), batched over starts and jitted with the map traced."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ctrnn_dyn import linear
from ctrnn_dyn._base import jit_map
from ctrnn_dyn.fixed_points.solvers import _COMPILE, _residual, _speed

_BACKTRACK = (1.0, 0.5, 0.25)


@jit_map(map_argname="F", static_argnames=("max_steps", "tol_q"), compiler_options=_COMPILE)
def _newton_finish(x, u, *, F, max_steps, tol_q):
    r"""Finish starts with Newton steps :math:`\delta = -(J - I)^{-1} r(x)` while ``q`` falls.

    A step ``x + t δ`` (``t = 1, 1/2, 1/4``, the largest that works) is taken when it at least
    halves ``q``: a start whose ``q`` still falls geometrically towards zero is carried on until
    it stops falling (a fixed point reaches ``q`` at float64's rounding floor in a few steps),
    whereas at a local minimum of ``q`` above zero ``J − I`` is (nearly) singular along the
    residual, the Newton step's predicted decrease (to ``q = 0``) does not materialise and the
    start stalls at once. Stops after ``max_steps`` steps, at ``q <= tol_q · 1e-10`` (far below the
    fixed-point tolerance), or when no step halves ``q``.

    Returns:
        ``x``, ``q``, ``steps`` taken, ``stalled`` (stopped because no step halved ``q``; ``False``
        where it ran out of steps while still falling) and ``g_rel`` :math:`= \lVert (J-I)^\top
        r\rVert / (\lVert J - I\rVert_F \lVert r\rVert)` at the final ``x`` (small at a local
        minimum of ``q``: the residual is nearly orthogonal to the range of ``J − I``).
    """
    ts = jnp.asarray(_BACKTRACK, x.dtype)
    floor = tol_q * 1e-10

    def one(x, u):
        def linearise(x):
            J = linear.jacobian(F, x, u) - jnp.eye(x.shape[0], dtype=x.dtype)
            return J, _residual(F, x, u)

        def cond(carry):
            _, q, k, stalled = carry
            return (k < max_steps) & ~stalled & (q > floor)

        def body(carry):
            x, q, k, _ = carry
            J, r = linearise(x)
            delta = -jnp.linalg.solve(J, r)
            trial = x[None, :] + ts[:, None] * delta[None, :]
            qs = jax.vmap(lambda xt: _speed(F, xt, u))(trial)
            good = jnp.isfinite(qs) & (qs <= 0.5 * q) & jnp.all(jnp.isfinite(trial), axis=1)
            pick = jnp.argmax(good)
            ok = good[pick]
            x_new = jnp.where(ok, trial[pick], x)
            q_new = jnp.where(ok, qs[pick], q)
            return x_new, q_new, k + ok.astype(k.dtype), ~ok

        q0 = _speed(F, x, u)
        x, q, k, stalled = jax.lax.while_loop(
            cond, body, (x, q0, jnp.asarray(0, jnp.int32), ~jnp.isfinite(q0))
        )
        J, r = linearise(x)
        g = jnp.linalg.norm(J.T @ r)
        g_rel = g / jnp.maximum(jnp.linalg.norm(J) * jnp.linalg.norm(r), jnp.finfo(x.dtype).tiny)
        return x, q, k, stalled | (q <= floor), g_rel

    return jax.vmap(one)(x, u)


@jit_map(map_argname="F", static_argnames=("max_steps", "tol_q"), compiler_options=_COMPILE)
def _dogleg(x, u, *, F, max_steps, tol_q):
    r"""Powell's dogleg trust-region method on ``r(x) = F(x) − x`` (MINPACK hybrd's step, with
    the exact ``J − I`` instead of Broyden updates), from each ``x``; returns ``x`` and ``q``.

    Each iteration builds the Newton step :math:`p_N = -(J-I)^{-1} r` and the Cauchy step
    :math:`p_C = -\frac{\lVert g\rVert^2}{\lVert (J-I) g\rVert^2} g`,
    :math:`g = (J-I)^\top r`, takes the point where the path :math:`0 \to p_C \to p_N` leaves
    the trust radius ``Δ``, accepts it if ``q`` falls by at least ``1e-4`` of the model's
    predicted decrease, and widens (ratio > 0.75) or narrows (ratio < 0.25) ``Δ``. Where ``J −
    I`` is nearly singular the step turns towards steepest descent instead of stalling as a
    line search along the Newton direction does.
    """
    floor = tol_q * 1e-10
    tiny = jnp.finfo(x.dtype).tiny

    def one(x, u):
        def cond(c):
            _, q, k, radius = c
            return (k < max_steps) & (q > floor) & (radius > 1e-12 * (1.0 + jnp.linalg.norm(c[0])))

        def body(c):
            x, q, k, radius = c
            J = linear.jacobian(F, x, u) - jnp.eye(x.shape[0], dtype=x.dtype)
            r = _residual(F, x, u)
            p_n = -jnp.linalg.solve(J, r)
            p_n = jnp.where(jnp.all(jnp.isfinite(p_n)), p_n, jnp.zeros_like(p_n))
            g = J.T @ r
            Jg = J @ g
            p_c = -(g @ g) / jnp.maximum(Jg @ Jg, tiny) * g
            n_n, n_c = jnp.linalg.norm(p_n), jnp.linalg.norm(p_c)
            newton_ok = (n_n <= radius) & (n_n > 0)
            d = p_n - p_c
            a, b, cc = d @ d, 2.0 * (p_c @ d), p_c @ p_c - radius**2
            tau = (-b + jnp.sqrt(jnp.maximum(b * b - 4.0 * a * cc, 0.0))) / jnp.maximum(2 * a, tiny)
            p_dog = p_c + jnp.clip(tau, 0.0, 1.0) * d
            p_sd = -radius * g / jnp.maximum(jnp.linalg.norm(g), tiny)
            p = jnp.where(newton_ok, p_n, jnp.where(n_c >= radius, p_sd, p_dog))
            model = 0.5 * jnp.sum((r + J @ p) ** 2)
            x_new = x + p
            q_new = _speed(F, x_new, u)
            ratio = (q - q_new) / jnp.maximum(q - model, tiny)
            ok = jnp.isfinite(q_new) & (ratio > 1e-4)
            step = jnp.linalg.norm(p)
            radius = jnp.where(ratio < 0.25, 0.25 * step,
                               jnp.where((ratio > 0.75), jnp.maximum(radius, 2.0 * step), radius))
            return (jnp.where(ok, x_new, x), jnp.where(ok, q_new, q), k + 1, radius)

        q0 = _speed(F, x, u)
        radius0 = 100.0 * jnp.maximum(1.0, jnp.linalg.norm(x))  # MINPACK: factor 100
        x, q, _, _ = jax.lax.while_loop(cond, body, (x, q0, jnp.asarray(0, jnp.int32), radius0))
        return x, q

    return jax.vmap(one)(x, u)
