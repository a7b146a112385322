"""The solver core: JAXopt's Levenberg–Marquardt, L-BFGS and gradient descent batched over starts,
the retiring of finished starts, and the Newton finish and dogleg restarts (all jitted with the
map traced, :func:`ctrnn_dyn._base.jit_map`)."""

from __future__ import annotations

import dataclasses
import logging
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import jaxopt
import numpy as np
from jaxopt.linear_solve import solve_cg

from ctrnn_dyn import linear
from ctrnn_dyn._base import jit_map

logger = logging.getLogger(__name__)

METHODS = ("lm", "lbfgs", "gd")
_DEFAULT_MAX_ITERS = {"lm": 100, "lbfgs": 2000, "gd": 5000}
_DEFAULT_CHUNK = {"lm": 5, "lbfgs": 32, "gd": 128}



class _LevenbergMarquardt(jaxopt.LevenbergMarquardt):
    """jaxopt's LM, with two fixes for this use.

    - With ``materialize_jac=True`` jaxopt ignores ``jac_fun``; we use it (the analytic CT-RNN
      Jacobian).
    - Matrix-free (``materialize_jac=False``), jaxopt sets the initial damping from the exact
      diagonal of ``JᵀJ``, which costs ``d`` Jacobian-vector products per start; we estimate
      it with one probe, ``|v ⊙ JᵀJ v|`` with ``v = 1`` (only its maximum scales the damping).
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.materialize_jac and self.jac_fun is not None:
            self._jac_fun = self.jac_fun

    def _jtj_diag_op(self, params, *args, **kwargs):
        v = jnp.ones_like(params)
        return jnp.abs(v * self._jtj_op(params, v, *args, **kwargs))


class _MixedPrecisionLM(_LevenbergMarquardt):
    """Matrix-free LM whose CG products ``JᵀJ v`` run in float32 (the truncated CG solve only
    needs a few digits); residuals, gradients and the accepted steps stay in float64, so the
    attainable ``q`` is float64's."""

    def _jtj_op(self, params, vec, *args, **kwargs):
        low = jnp.float32

        def cast(a):
            a = jnp.asarray(a)
            return a.astype(low) if jnp.issubdtype(a.dtype, jnp.floating) else a

        args, kwargs = jax.tree_util.tree_map(cast, (args, kwargs))

        def fun(p):
            return self._fun(p, *args, **kwargs).astype(low)

        p = params.astype(low)
        _, jv = jax.jvp(fun, (p,), (vec.astype(low),))
        _, vjp = jax.vjp(fun, p)
        return vjp(jv)[0].astype(params.dtype)


def _residual(F, x, u):
    return F(x, u) - x


def _speed(F, x, u):
    r = _residual(F, x, u)
    return 0.5 * jnp.sum(r * r)


LINEAR_SOLVERS = ("cg", "cholesky")


def _make_solver(
    F,
    method: str,
    max_iters: int,
    linear_solver: str = "cg",
    cg_iters: int = 5,
    mixed_precision: bool = False,
    cg_tol: float = 0.0,
):
    if method == "lm":
        if linear_solver == "cg":
            # Matrix-free: each CG iteration is one jvp and one vjp of F, which vmap turns into
            # matrix-matrix products shared by all starts.
            cls = _MixedPrecisionLM if mixed_precision else _LevenbergMarquardt
            return cls(
                residual_fun=partial(_residual, F),
                materialize_jac=False,
                solver=partial(solve_cg, maxiter=cg_iters, tol=cg_tol),
                maxiter=max_iters,
                implicit_diff=False,
            )

        def jac(x, u):
            return linear.jacobian(F, x, u) - jnp.eye(x.shape[0], dtype=x.dtype)

        return _LevenbergMarquardt(
            residual_fun=partial(_residual, F),
            jac_fun=jac,
            materialize_jac=True,
            solver="cholesky",
            maxiter=max_iters,
            implicit_diff=False,
        )
    if method == "lbfgs":
        return jaxopt.LBFGS(
            fun=partial(_speed, F),
            maxiter=max_iters,
            linesearch="hager-zhang",
            implicit_diff=False,
        )
    return jaxopt.GradientDescent(fun=partial(_speed, F), maxiter=max_iters, implicit_diff=False)


@jit_map(
    map_argname="F",
    static_argnames=("method", "max_iters", "linear_solver", "cg_iters", "mixed_precision",
                     "cg_tol", "damping"),
)
def _init_states(x, u, *, F, method, max_iters, linear_solver, cg_iters, mixed_precision, cg_tol,
                 damping=None):
    """Initial solver states; ``damping`` (LM) replaces jaxopt's initial damping parameter
    (``1e-6``: the initial ``μ`` is it times the largest diagonal entry of ``JᵀJ``)."""
    solver = _make_solver(F, method, max_iters, linear_solver, cg_iters, mixed_precision, cg_tol)
    if damping is not None and method == "lm":
        solver = dataclasses.replace(solver, damping_parameter=damping)
    state = jax.vmap(solver.init_state)(x, u)
    # Give the state the dtypes an update returns (jaxopt's LM starts ``increase_factor`` as a
    # Python int that its first update turns into a float): otherwise the solver compiles once
    # for the initial state and again for every later round's.
    after = jax.eval_shape(lambda st: jax.vmap(solver.update)(x, st, u)[1], state)
    return jax.tree_util.tree_map(
        lambda a, b: a if a.dtype == b.dtype else a.astype(b.dtype), state, after
    )


@jit_map(
    map_argname="F",
    static_argnames=(
        "method",
        "n_iter",
        "tol_q",
        "tol_grad",
        "grad_rtol",
        "max_iters",
        "linear_solver",
        "cg_iters",
        "mixed_precision",
        "cg_tol",
    ),
)
def _run_chunk(
    x,
    state,
    u,
    iters,
    *,
    F,
    method,
    n_iter,
    tol_q,
    tol_grad,
    grad_rtol,
    max_iters,
    linear_solver,
    cg_iters,
    mixed_precision,
    cg_tol,
):
    """Up to ``n_iter`` solver iterations per start (vmapped); returns the stop flags too."""
    solver = _make_solver(F, method, max_iters, linear_solver, cg_iters, mixed_precision, cg_tol)

    def stop_rule(x, st, u, it):
        q = st.value if method == "lm" else _speed(F, x, u)
        small_grad = (st.error <= tol_grad) | (st.error <= grad_rtol * jnp.sqrt(2.0 * q))
        return (q <= tol_q) | small_grad | (it >= max_iters) | ~jnp.isfinite(q)

    def one(x, st, u, it):
        def cond(carry):
            _, _, _, k, stop = carry
            return (k < n_iter) & ~stop

        def body(carry):
            x, st, it, k, _ = carry
            x_new, st_new = solver.update(x, st, u)
            it = it + 1
            bad = ~jnp.all(jnp.isfinite(x_new))  # a failed step: keep the last good x, stop
            x, st = jax.tree_util.tree_map(
                lambda a, b: jnp.where(bad, a, b), (x, st), (x_new, st_new)
            )
            return x, st, it, k + 1, stop_rule(x, st, u, it) | bad

        carry = (x, st, it, jnp.asarray(0, jnp.int32), stop_rule(x, st, u, it))
        x, st, it, _, stop = jax.lax.while_loop(cond, body, carry)
        return x, st, it, stop

    return jax.vmap(one)(x, state, u, iters)


@jit_map(map_argname="F")
def _speeds(x, u, *, F):
    return jax.vmap(partial(_speed, F))(x, u)


_BACKTRACK = (1.0, 0.5, 0.25)


@jit_map(map_argname="F", static_argnames=("max_steps", "tol_q"))
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


@jit_map(map_argname="F", static_argnames=("max_steps", "tol_q"))
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


@jit_map(map_argname="F")
def _jacobians(x, u, *, F):
    return jax.vmap(partial(linear.jacobian, F))(x, u)


def _eig_host(J: np.ndarray, left: bool) -> linear.EigenDecomposition:
    """:func:`ctrnn_dyn.linear.eig`'s conventions with NumPy's LAPACK on the host (no compile per
    number of points, no padding)."""
    mu, R = np.linalg.eig(J)
    mu, R = mu.astype(complex), R.astype(complex)
    order = np.argsort(-np.abs(mu), axis=-1, kind="stable")
    mu = np.take_along_axis(mu, order, axis=-1)
    R = np.take_along_axis(R, order[..., None, :], axis=-1)
    L = None
    if left:
        try:
            inv = np.linalg.inv(R)
        except np.linalg.LinAlgError:  # a defective matrix: eigenvectors not a basis
            inv = np.linalg.pinv(R)
        L = np.conj(np.swapaxes(inv, -1, -2))
    return linear.EigenDecomposition(mu, R, L)


def _bucket(n_active: int, n_total: int | None = None, factor: int = 4) -> int:
    """Batch size for ``n_active`` rows: ``8 · factor^k`` (capped at ``n_total``), few shapes."""
    size = 8
    while size < n_active:
        size *= factor
    return size if n_total is None else min(size, n_total)


#: Below this many ``n · d²`` (starts times the cost of one product with ``J``) the solver
#: keeps one batch shape: compiling a smaller one (about a second each) would cost more than the
#: retired starts' padded work it saves.
_ONE_SHAPE_WORK = 2**20


def _batch_size(n_active: int, n_total: int, d: int) -> int:
    """Batch size for ``n_active`` of ``n_total`` starts of width ``d``: one of ``n_total``,
    about ``n_total / 8`` (a multiple of 8) and ``32``, so that a call compiles the solver for
    at most three shapes (a first call on new shapes pays two or three compiles, not one per
    rung of a fine ladder), at the price of up to 8x padding while many starts remain; only
    ``n_total`` for small problems (:data:`_ONE_SHAPE_WORK`)."""
    if n_total * d * d <= _ONE_SHAPE_WORK:
        return n_total
    small = min(n_total, 32)
    if n_active <= small:
        return small
    mid = -(-n_total // 64) * 8
    if small < mid < n_total and n_active <= mid:
        return mid
    return n_total


def _take(tree: Any, idx: np.ndarray) -> Any:
    idx = jnp.asarray(idx)
    return jax.tree_util.tree_map(lambda a: jnp.take(a, idx, axis=0), tree)


@jax.jit
def _gather(tree: Any, idx: jax.Array) -> Any:
    return jax.tree_util.tree_map(lambda a: jnp.take(a, idx, axis=0), tree)


def _solve(
    F,
    x0,
    u,
    active0,
    *,
    method,
    tol_q,
    tol_grad,
    max_iters,
    chunk_iters,
    linear_solver,
    cg_iters,
    grad_rtol,
    mixed_precision,
    cg_tol=0.0,
    damping=None,
):
    """Run the solver with retirement + compaction; returns final ``x`` and iteration counts.
    ``damping``: LM's initial damping parameter (``None``: jaxopt's ``1e-6``)."""
    n = x0.shape[0]
    x = x0
    iters = np.zeros(n, np.int32)
    active = np.flatnonzero(active0)
    if active.size == 0:
        return x, iters
    kw = dict(
        F=F,
        method=method,
        max_iters=max_iters,
        linear_solver=linear_solver,
        cg_iters=cg_iters,
        mixed_precision=mixed_precision,
        cg_tol=cg_tol,
    )
    state = (
        _init_states(*_take((x, u), active), damping=damping, **kw)
        if active.size < n
        else _init_states(x, u, damping=damping, **kw)
    )
    pos = np.arange(active.size)  # rows of `state` holding the active starts
    rounds = 0
    x_host = np.array(x0)
    u_host = None if u is None else np.asarray(u)
    while active.size:
        m = active.size
        size = _batch_size(m, n, x0.shape[1])
        rows = np.concatenate([pos, np.full(size - m, pos[0])])
        idx = np.concatenate([active, np.full(size - m, active[0])])
        if not (rows.size == _leading(state) and np.array_equal(rows, np.arange(rows.size))):
            state = _gather(state, jnp.asarray(rows))
        # longer rounds once few starts are left: fewer round trips for the slow tail
        n_iter = chunk_iters * int(np.clip(512 // size, 1, 8))
        xs, state, its, stop = _run_chunk(
            jnp.asarray(x_host[idx]),
            state,
            None if u_host is None else jnp.asarray(u_host[idx]),
            jnp.asarray(iters[idx]),
            n_iter=n_iter,
            tol_q=tol_q,
            tol_grad=tol_grad,
            grad_rtol=grad_rtol,
            **kw,
        )
        x_host[active] = np.asarray(xs)[:m]
        iters[active] = np.asarray(its)[:m]
        stop = np.asarray(stop)[:m]
        rounds += 1
        logger.debug("round %d: %d active (batch %d), %d stopped", rounds, m, size, stop.sum())
        pos = np.flatnonzero(~stop)
        active = active[pos]
    return jnp.asarray(x_host), iters


def _leading(tree: Any) -> int:
    return int(jax.tree_util.tree_leaves(tree)[0].shape[0])


