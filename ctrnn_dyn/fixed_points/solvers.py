"""The solver core: JAXopt's Levenberg–Marquardt, L-BFGS and gradient descent batched over starts,
and the retiring of finished starts (jitted with the map traced, :func:`ctrnn_dyn._base.jit_map`;
the Newton finish and dogleg restarts are in :mod:`~ctrnn_dyn.fixed_points.newton`)."""

from __future__ import annotations

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

#: XLA options for the finder's programs: LLVM's optimisation level 1 instead of 2 compiles
#: them ~35 % faster (0.97 vs 1.41 s for a first call on a 16-unit flip-flop) with no
#: measurable change in run time (the work is in a few large products and LAPACK calls).
_COMPILE = {"xla_backend_optimization_level": 1}



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


LINEAR_SOLVERS = ("auto", "dense", "cg", "cholesky")

#: ``linear_solver="auto"`` takes the exact (dense) LM step up to this state size: it costs
#: about ``d / 17`` truncated-CG steps and needs 5–10 iterations where CG-LM takes tens.
_DENSE_MAX_D = 100


def resolve_linear_solver(linear_solver: str, d: int) -> str:
    """``"auto"`` -> ``"dense"`` for ``d <= 100``, else ``"cg"``; other names unchanged."""
    if linear_solver != "auto":
        return linear_solver
    return "dense" if d <= _DENSE_MAX_D else "cg"


def _dense_solve(matvec, b, ridge, init=None):
    """Solve ``(A + ridge I) x = b`` exactly, ``A`` (LM's ``JᵀJ``, symmetric positive
    semi-definite) built column by column from ``matvec`` (``vmap`` turns the ``d`` products into
    matrix products); the solver state keeps no matrix, unlike jaxopt's materialised LM."""
    del init
    eye = jnp.eye(b.shape[0], dtype=b.dtype)
    A = jax.vmap(matvec, in_axes=1, out_axes=1)(eye) + ridge * eye
    return jax.scipy.linalg.solve(A, b, assume_a="pos")


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
        if linear_solver == "dense":
            # float64 throughout: JᵀJ built from float32 products (20 % faster on 100-unit
            # networks) turns crawling starts of a 16-unit GRU into slow points (13 -> 104)
            return _LevenbergMarquardt(
                residual_fun=partial(_residual, F),
                materialize_jac=False,
                solver=_dense_solve,
                maxiter=max_iters,
                implicit_diff=False,
            )
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
    compiler_options=_COMPILE,
    static_argnames=("method", "max_iters", "linear_solver", "cg_iters", "mixed_precision",
                     "cg_tol"),
)
def _init_states(x, u, damping, *, F, method, max_iters, linear_solver, cg_iters,
                 mixed_precision, cg_tol):
    """Initial solver states; ``damping`` (LM, a traced scalar: another value compiles
    nothing) replaces jaxopt's initial damping parameter (``1e-6``: the initial ``μ`` is it
    times the largest diagonal entry of ``JᵀJ``)."""
    solver = _make_solver(F, method, max_iters, linear_solver, cg_iters, mixed_precision, cg_tol)
    state = jax.vmap(solver.init_state)(x, u)
    if method == "lm":
        state = state._replace(damping_factor=state.damping_factor
                               * (damping / solver.damping_parameter))
    # Give the state the dtypes an update returns (jaxopt's LM starts ``increase_factor`` as a
    # Python int that its first update turns into a float): otherwise the solver compiles once
    # for the initial state and again for every later round's.
    after = jax.eval_shape(lambda st: jax.vmap(solver.update)(x, st, u)[1], state)
    return jax.tree_util.tree_map(
        lambda a, b: a if a.dtype == b.dtype else a.astype(b.dtype), state, after
    )


@jit_map(
    map_argname="F",
    compiler_options=_COMPILE,
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


@jit_map(map_argname="F", compiler_options=_COMPILE)
def _speeds(x, u, *, F):
    return jax.vmap(partial(_speed, F))(x, u)


@jit_map(map_argname="F", compiler_options=_COMPILE)
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


@partial(jax.jit, compiler_options=_COMPILE)
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
    damping = jnp.asarray(jaxopt.LevenbergMarquardt.damping_parameter if damping is None
                          else damping, x0.dtype)
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
    x_host = np.array(x0)
    u_host = None if u is None else np.asarray(u)
    # rows 0..held.size-1 of the state hold the starts `held` (ascending); the rows after
    # them are padding (copies of the first)
    held = active
    slots = _padded(held, _batch_size(active.size, n, x0.shape[1]))
    state = _init_states(jnp.asarray(x_host[slots]),
                         None if u_host is None else jnp.asarray(u_host[slots]), damping, **kw)
    rounds = 0
    while active.size:
        size = _batch_size(active.size, n, x0.shape[1])
        if size != slots.size:  # compact: the active starts' rows, padded to the new size
            state = _gather(state, jnp.asarray(_padded(np.searchsorted(held, active), size)))
            held = active
            slots = _padded(held, size)
        # a live row holds a start still active; the others (retired starts, padding) are
        # frozen (their iteration count passed as the cap stops them at once), not read back
        live = np.zeros(slots.size, bool)
        live[: held.size] = np.isin(held, active, assume_unique=True)
        its_in = np.where(live, iters[slots], max_iters)
        # longer rounds once few starts are left: fewer round trips for the slow tail
        n_iter = chunk_iters * int(np.clip(512 // size, 1, 8))
        xs, state, its, stop = _run_chunk(
            jnp.asarray(x_host[slots]),
            state,
            None if u_host is None else jnp.asarray(u_host[slots]),
            jnp.asarray(its_in, np.int32),
            n_iter=n_iter,
            tol_q=tol_q,
            tol_grad=tol_grad,
            grad_rtol=grad_rtol,
            **kw,
        )
        rows = slots[live]
        x_host[rows] = np.asarray(xs)[live]
        iters[rows] = np.asarray(its)[live]
        stopped = np.zeros(n, bool)
        stopped[rows] = np.asarray(stop)[live]
        rounds += 1
        logger.debug("round %d: %d active (batch %d), %d stopped", rounds, active.size, size,
                     stopped.sum())
        active = active[~stopped[active]]
    return jnp.asarray(x_host), iters


def _padded(idx: np.ndarray, size: int) -> np.ndarray:
    """``idx`` padded to ``size`` entries with copies of its first."""
    return np.concatenate([idx, np.full(size - idx.size, idx[0])])


