"""The solver core: JAXopt's Levenberg–Marquardt, L-BFGS and gradient descent batched over starts
and over networks, jitted with the map traced (:func:`ctrnn_dyn._base.jit_map`). Which rows run
in which round is :mod:`~ctrnn_dyn.fixed_points.rounds`; the Newton finish and dogleg restarts
are in :mod:`~ctrnn_dyn.fixed_points.newton`.

The solver's programs take a *stacked* map (array leaves ``(E, ...)``,
:func:`ctrnn_dyn._batch.stack_maps`) and arrays with a leading network axis ``E``: the networks of
one shape run in one program (a single map is a stack of one), split over a device mesh when
given."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import jaxopt
from jaxopt.linear_solve import solve_cg

from ctrnn_dyn import linear, native
from ctrnn_dyn._base import jit_map, merge_map, split_map
from ctrnn_dyn._batch import over_devices, serial_lapack, serial_when, vmap_over_maps

logger = logging.getLogger(__name__)

METHODS = ("lm", "lbfgs", "gd")
_DEFAULT_MAX_ITERS = {"lm": 100, "lbfgs": 2000, "gd": 5000}
_DEFAULT_CHUNK = {"lm": 5, "lbfgs": 32, "gd": 128}

#: XLA options for the finder's programs: LLVM's optimisation level 1 instead of 2 compiles
#: them ~35 % faster (0.97 vs 1.41 s for a first call on a 16-unit flip-flop) with no
#: measurable change in run time (the work is in a few large products and LAPACK calls).
_COMPILE = {"xla_backend_optimization_level": 1}



@dataclasses.dataclass(eq=False)
class _LevenbergMarquardt(jaxopt.LevenbergMarquardt):
    """jaxopt's LM, with these changes for this use.

    - With ``materialize_jac=True`` jaxopt ignores ``jac_fun``; we use it (the analytic CT-RNN
      Jacobian).
    - Matrix-free (``materialize_jac=False``), jaxopt sets the initial damping from the exact
      diagonal of ``JᵀJ``, which costs ``d`` Jacobian-vector products per start; we estimate
      it with one probe, ``|v ⊙ JᵀJ v|`` with ``v = 1`` (only its maximum scales the damping).
    - ``exact_step``: ``solver`` gets the system's matrix in place of the product
      ``v -> JᵀJ v``: :func:`_gauss_newton_solve` the map's Gauss–Newton parts ``gram_fun`` (a
      :class:`~ctrnn_dyn.dynamics.GaussNewton`) and the state where given, else
      :func:`_ridge_solve` the residual's Jacobian ``J`` (``d`` Jacobian-vector products,
      which ``vmap`` turns into one matrix product), ``JᵀJ`` formed by the solve: half the
      products of building ``JᵀJ`` column by column from ``v -> Jᵀ(Jv)``.
    - After an accepted step that took ``q`` to ``q'`` the damping ``μ`` is capped at
      ``max(‖r'‖², μ q'/q)``: near a root ``μ`` falls with the residual (Yamashita and
      Fukushima's ``μ = ‖r‖²`` keeps LM's local convergence quadratic), where jaxopt divides it
      by at most 3 per step, so a start that began far from a root (a large initial ``μ``)
      would finish with several linearly converging, over-damped steps; near a slow point
      (``q' ≈ q > 0``) the cap is ``μ`` itself and jaxopt's rule stands (``μ = ‖r‖²`` there
      gives undamped steps that overshoot the minimum of ``q``). After a rejected step jaxopt's
      increase stands.
    """

    exact_step: bool = False
    gram_fun: Callable | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.materialize_jac and self.jac_fun is not None:
            self._jac_fun = self.jac_fun

    def update(self, params, state, *args, **kwargs):
        new_params, new = super().update(params, state, *args, **kwargs)
        ratio = new.value / state.value  # NaN or inf from q = 0: not an accepted decrease
        cap = jnp.maximum(2.0 * new.value, state.damping_factor * ratio)
        mu = jnp.where(ratio < 1.0, jnp.minimum(new.damping_factor, cap), new.damping_factor)
        return jaxopt.OptStep(new_params, new._replace(damping_factor=mu))

    def _solve_linear_eqs(self, matvec, state, params, *args, **kwargs):
        if not self.exact_step:
            return super()._solve_linear_eqs(matvec, state, params, *args, **kwargs)
        if self.gram_fun is not None:  # solver: _gauss_newton_solve
            velocity = self.solver_fn(self.gram_fun, params, state.gradient,
                                      ridge=state.damping_factor)
        else:  # solver: _ridge_solve
            jacobian = jax.jacfwd(lambda p: self._fun(p, *args, **kwargs))(params)
            velocity = self.solver_fn(jacobian, state.gradient, ridge=state.damping_factor,
                                      normal=True)
        return velocity, jnp.zeros_like(velocity), velocity

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


def linear_solve_path(method: str, linear_solver: str) -> str:
    """Which code runs the solver's linear solves for ``method`` and the resolved
    ``linear_solver``: ``"kernels:<key>"`` where LM's exact steps (``"lm"``, ``"dense"``) run on
    the compiled kernel of :mod:`ctrnn_dyn.native` (the CPU, once
    :func:`~ctrnn_dyn.native.prepare` — called here, on the host, before anything is traced —
    has built and loaded it; not inside :func:`~ctrnn_dyn.native.suspended`), else
    ``"xla"``."""
    if method == "lm" and linear_solver == "dense" and native.prepare() and native.available():
        return f"kernels:{native.kernel_key()}"
    return "xla"


def _ridge_solve(A, b, ridge, init=None, *, normal=False, serial=False, kernels=False):
    """Solve ``(A + ridge I) x = b`` exactly, ``A`` (LM's ``JᵀJ``: symmetric positive
    semi-definite) by Cholesky (a NaN solution where ``A + ridge I`` is not numerically
    positive definite); ``normal``: ``A`` is given as the Jacobian ``M`` and the matrix is
    ``MᵀM``. ``kernels``: by the compiled kernel of :mod:`ctrnn_dyn.native` (CPU, after
    :func:`ctrnn_dyn.native.prepare`): the batch of a ``vmap`` in one call, spread over XLA's
    thread pool, or with ``serial`` (several host devices' programs at once,
    :func:`ctrnn_dyn._batch.serial_lapack`) on the calling thread; else by XLA's LAPACK calls,
    with ``serial`` one call per start."""
    del init
    if kernels:
        call = jax.ffi.ffi_call(native.RIDGE_SOLVE_TARGET, jax.ShapeDtypeStruct(b.shape, b.dtype),
                                vmap_method="broadcast_all")
        return call(A, b, jnp.asarray(ridge, b.dtype), spread=not serial, normal=normal)
    if normal:
        A = A.T @ A
    eye = jnp.eye(b.shape[0], dtype=b.dtype)
    return serial_when(serial, partial(jax.scipy.linalg.solve, assume_a="pos"))(A + ridge * eye,
                                                                                 b)


def _gauss_newton_solve(parts, x, b, ridge, init=None, *, serial=False, kernels=False):
    """:func:`_ridge_solve` of a CT-RNN's Gauss–Newton matrix at the state ``x`` from its
    ``parts`` (:class:`~ctrnn_dyn.dynamics.GaussNewton`). ``kernels``: the compiled kernel forms
    the matrix itself from the network's ``M``, ``P``, ``a2`` (passed once under ``vmap``, not
    once per start) and the state's slopes, so that no ``(d, d)`` matrix per start is written
    and read back; else XLA forms it."""
    del init
    if kernels:
        call = jax.ffi.ffi_call(native.GAUSS_NEWTON_SOLVE_TARGET,
                                jax.ShapeDtypeStruct(b.shape, b.dtype), vmap_method="expand_dims")
        return call(parts.M, parts.P, parts.a2, parts.slopes(x), b,
                    jnp.asarray(ridge, b.dtype), spread=not serial)
    return _ridge_solve(parts(x), b, ridge, serial=serial)


def _make_solver(
    F,
    method: str,
    max_iters: int,
    linear_solver: str = "cg",
    cg_iters: int = 5,
    mixed_precision: bool = False,
    cg_tol: float = 0.0,
    serial: bool = False,
    dtype: Any = jnp.float64,
    kernels: bool = False,
):
    """The JAXopt solver of ``method`` for the map ``F`` (``dtype``: the states' float type,
    which a map's :meth:`~ctrnn_dyn.dynamics.OneStepMap.gauss_newton` is built in)."""
    if method == "lm":
        if linear_solver == "dense":
            # float64 throughout: JᵀJ built from float32 products (20 % faster on 100-unit
            # networks) turns crawling starts of a 16-unit GRU into slow points (13 -> 104)
            gram = getattr(F, "gauss_newton", None)
            gram = gram(dtype) if callable(gram) else None
            return _LevenbergMarquardt(
                residual_fun=partial(_residual, F),
                materialize_jac=False,
                solver=partial(_ridge_solve if gram is None else _gauss_newton_solve,
                               serial=serial, kernels=kernels),
                maxiter=max_iters,
                implicit_diff=False,
                exact_step=True,
                gram_fun=gram,
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
                     "cg_tol", "kernels", "mesh"),
)
def _init_states(x, u, damping, *, F, method, max_iters, linear_solver, cg_iters,
                 mixed_precision, cg_tol, kernels, mesh):
    """Initial solver states for a stacked ``F``, ``x (E, k, d)`` and ``u (E, k, m)`` (or
    ``None``); ``damping`` (LM, a traced scalar: another value compiles nothing) replaces
    jaxopt's initial damping parameter (``1e-6``: the initial ``μ`` is it times the largest
    diagonal entry of ``JᵀJ``); the networks split over ``mesh``'s devices (or ``None``)."""

    def one_network(F, x, u):
        solver = _make_solver(F, method, max_iters, linear_solver, cg_iters, mixed_precision,
                              cg_tol, serial_lapack(mesh), x.dtype, kernels)
        state = jax.vmap(solver.init_state)(x, u)
        if method == "lm":
            # jaxopt starts increase_factor as a Python int; its first update makes it a float
            state = state._replace(damping_factor=state.damping_factor
                                   * (damping / solver.damping_parameter),
                                   increase_factor=jnp.asarray(state.increase_factor, x.dtype))
        # strong types, as the rounds' loop returns them: otherwise the solver would compile
        # once for the initial state and again for every later round's (checked by the tests
        # that count compilations; cheaper than tracing an update to learn its types)
        return jax.tree_util.tree_map(lambda a: jax.lax.convert_element_type(a, a.dtype), state)

    return vmap_over_maps(one_network, mesh)(F, x, u)


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
        "kernels",
        "mesh",
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
    kernels,
    mesh,
):
    """Up to ``n_iter`` solver iterations per start of a stacked ``F`` (rows ``(E, k)``, the
    networks split over ``mesh``'s devices or ``None``); returns the stop flags too."""
    return over_devices(partial(
        _run_networks, method=method, n_iter=n_iter, tol_q=tol_q, tol_grad=tol_grad,
        grad_rtol=grad_rtol, max_iters=max_iters, linear_solver=linear_solver,
        cg_iters=cg_iters, mixed_precision=mixed_precision, cg_tol=cg_tol, kernels=kernels,
        serial=serial_lapack(mesh),
    ), mesh)(F, x, state, u, iters)


def _run_networks(F, x, state, u, iters, *, max_iters, **kw):
    """:func:`_run_chunk` on one device: the rows ``(E, k)`` of the stacked ``F``'s networks in
    blocks of :func:`row_block` rows of one network, one block after another, each block's
    loop ending with its own rows; only the blocks holding a running row are run (a network's
    running rows sorted first; frozen rows come with their cap as iteration count). The cost
    is that of the blocks still running, network by network, not of every row of every
    network until the slowest is done (as one loop ``vmap`` -ped over networks and rows)."""
    arrays, static = split_map(F)
    E, k = iters.shape
    size = row_block(k)
    per_net = k // size
    frozen = iters >= max_iters
    order = jnp.argsort(frozen, axis=1, stable=True)
    running = -(-jnp.sum(~frozen, axis=1) // size)  # (E,) blocks holding a running row
    blocks = jnp.arange(E * per_net)
    todo = jnp.argsort(blocks % per_net >= running[blocks // per_net], stable=True)

    def block(i, carry):
        net, b = jnp.divmod(todo[i], per_net)
        rows = jax.lax.dynamic_slice_in_dim(order[net], b * size, size)
        Fn = merge_map([None if a is None else a[net] for a in arrays], static)
        xs, st, its, _ = carry
        part = jax.tree_util.tree_map(lambda a: a[net, rows], (xs, st, u, its))
        out = _run_rows(Fn, *part, max_iters=max_iters, **kw)
        return jax.tree_util.tree_map(lambda a, new: a.at[net, rows].set(new), carry, out)

    return jax.lax.fori_loop(0, jnp.sum(running), block,
                             (x, state, iters, jnp.ones((E, k), bool)))


def _run_rows(F, x, state, u, iters, *, method, n_iter, tol_q, tol_grad, grad_rtol,
              max_iters, linear_solver, cg_iters, mixed_precision, cg_tol, serial, kernels):
    """Up to ``n_iter`` solver iterations on rows ``(b, ...)`` of one network's map ``F``
    (``vmap`` -ped; the loop ends when each row has stopped)."""
    solver = _make_solver(F, method, max_iters, linear_solver, cg_iters, mixed_precision, cg_tol,
                          serial, x.dtype, kernels)

    def stop_rule(x, st, u, it):
        q = st.value if method == "lm" else _speed(F, x, u)
        small_grad = (st.error <= tol_grad) | (st.error <= grad_rtol * jnp.sqrt(2.0 * q))
        return (q <= tol_q) | small_grad | (it >= max_iters) | ~jnp.isfinite(q)

    # under vmap every row runs the loop's body until the last row stops (the others' results
    # discarded): the step kernel skips a system with a negative ridge, so a row that has
    # stopped passes LM's damping as -1 and costs no factorisation
    skip_stopped = kernels and method == "lm" and linear_solver == "dense"

    def one(x, st, u, it):
        def cond(carry):
            _, _, _, k, stop = carry
            return (k < n_iter) & ~stop

        def body(carry):
            x, st, it, k, stop = carry
            step_st = st
            if skip_stopped:
                step_st = st._replace(damping_factor=jnp.where(
                    (k < n_iter) & ~stop, st.damping_factor, -jnp.ones_like(st.damping_factor)))
            x_new, st_new = solver.update(x, step_st, u)
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


#: A network's rows run in blocks of at least this many (:func:`row_block`).
_MIN_BLOCK = 32


def row_block(k: int) -> int:
    """Rows per block for ``k`` rows of one network: ``k / 8`` when that is a whole number of
    at least :data:`_MIN_BLOCK` (batches are powers of two or multiples of 8), else ``k``
    (one block): a round costs about the blocks that still hold a running row."""
    size = k // 8
    return size if size >= _MIN_BLOCK and size * 8 == k else k


@jit_map(map_argname="F", compiler_options=_COMPILE)
def _speeds(x, u, *, F):
    return jax.vmap(partial(_speed, F))(x, u)
