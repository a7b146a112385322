"""The solver's schedule: rounds of iterations over stacked networks and their starts. After
each round the finished starts are retired and the rest compacted into fewer rows (a few batch
shapes per call), so the cost follows the sum of iterations over starts, not the slowest start;
every round runs all networks at once (split over devices when asked)."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jaxopt
import numpy as np

from ctrnn_dyn.fixed_points.solvers import _COMPILE, _init_states, _run_chunk, row_block

logger = logging.getLogger(__name__)


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
    ``n_total`` for small problems (:data:`_ONE_SHAPE_WORK`). A smaller shape is used only if
    it is smaller than the solver's block of rows at ``n_total``
    (:func:`~.solvers.row_block`): a round at the full shape runs only the blocks holding a
    running start, so a shape of a block or more would save no work, only cost a compile (at
    256 starts of 100 units the 32-row shape took 0.9 s to compile and saved nothing)."""
    if n_total * d * d <= _ONE_SHAPE_WORK:
        return n_total
    block = row_block(n_total)
    small = min(n_total, 32)
    if n_active <= small and small < block:
        return small
    mid = -(-n_total // 64) * 8
    if small < mid < block and n_active <= mid:
        return mid
    return n_total


@partial(jax.jit, compiler_options=_COMPILE)
def _gather(tree: Any, rows: jax.Array) -> Any:
    """Rows ``rows (E, k')`` of each network of a tree of leaves ``(E, k, ...)``."""
    return jax.tree_util.tree_map(
        lambda a: jax.vmap(lambda b, i: jnp.take(b, i, axis=0))(a, rows), tree)


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
    mesh=None,
    kernels=False,
):
    """Run the solver with retirement + compaction for a stacked ``F`` (``E`` networks),
    starts ``x0 (E, n, d)``, inputs ``u (E, n, m)`` or ``None`` and the starts to solve
    ``active0 (E, n)``; returns the final ``x (E, n, d)`` and iteration counts ``(E, n)``
    (host arrays). ``damping``: LM's initial damping parameter (``None``: jaxopt's ``1e-6``).
    ``kernels``: LM's exact steps on the compiled kernel of :mod:`ctrnn_dyn.native` (static:
    :func:`~.solvers.linear_solve_path` said so, on the host, before tracing).

    Every round runs every network (the starts still active) in one program, split over
    ``mesh``'s devices when given (``E`` a multiple of their number; not with
    ``linear_solver="cholesky"``, whose LAPACK calls are jaxopt's); the program runs only the
    blocks of rows holding a running start (:func:`~.solvers._run_networks`), so a network
    whose starts crawl does not keep the finished ones, or the other networks, running. Between
    rounds the rows are compacted on the ladder of :func:`_batch_size` (at most three shapes
    compile)."""
    damping = np.asarray(jaxopt.LevenbergMarquardt.damping_parameter if damping is None
                         else damping, x0.dtype)
    E, n, d = x0.shape
    x_host = np.array(x0)
    u_host = None if u is None else np.asarray(u)
    iters = np.zeros((E, n), np.int32)
    active = np.array(active0, bool)
    if not active.any():
        return x_host, iters
    kw = dict(
        method=method,
        max_iters=max_iters,
        linear_solver=linear_solver,
        cg_iters=cg_iters,
        mixed_precision=mixed_precision,
        cg_tol=cg_tol,
        kernels=kernels,
    )
    # the held state: every network of the stack (one without starts left costs nothing: its
    # rows are frozen and the solver runs only the blocks holding a running row), its rows
    # compacted on the ladder of _batch_size; slots[e, j]: the start network e's row j holds
    # (its active starts ascending where valid, then padding: copies of the first)
    cur = None
    rounds = 0
    while active.any():
        rows = _batch_size(int(active.sum(1).max()), n, d)
        if cur is None or rows != cur.slots.shape[1]:
            cur = _hold(cur, rows, active, x_host, u_host, n, F=F, damping=damping,
                        mesh=mesh if linear_solver != "cholesky" else None, **kw)
        shape = cur.slots.shape
        # a live row holds a start still active; the others (retired starts, padding) are
        # frozen (their iteration count passed as the cap stops them at once), not read back
        slots = cur.slots
        live = cur.valid & np.take_along_axis(active, slots, axis=1)
        its_in = np.where(live, np.take_along_axis(iters, slots, axis=1), max_iters)
        # longer rounds once few starts are left: fewer round trips for the slow tail
        n_iter = chunk_iters * int(np.clip(512 // shape[1], 1, 8))
        xs, state, its, stop = _run_chunk(
            _rows(x_host, slots),
            cur.state,
            None if u_host is None else _rows(u_host, slots),
            its_in.astype(np.int32),
            F=F,
            mesh=cur.mesh,
            n_iter=n_iter,
            tol_q=tol_q,
            tol_grad=tol_grad,
            grad_rtol=grad_rtol,
            **kw,
        )
        cur = cur._replace(state=state)
        net, j = np.nonzero(live)
        start = slots[net, j]
        x_host[net, start] = np.asarray(xs)[net, j]
        iters[net, start] = np.asarray(its)[net, j]
        stopped = np.asarray(stop)[net, j]
        active[net[stopped], start[stopped]] = False
        rounds += 1
        logger.debug("round %d: %d active (batch %d x %d), %d stopped", rounds, active.sum(),
                     *shape, stopped.sum())
    return x_host, iters


class _Held(NamedTuple):
    """The solver state of every network's rows ``slots`` (``valid``: a real start), split over
    ``mesh``'s devices (or ``None``)."""

    slots: np.ndarray
    valid: np.ndarray
    state: Any
    mesh: Any


def _hold(src, rows, active, x_host, u_host, n, *, F, damping, mesh, **kw) -> _Held:
    """Hold ``rows`` rows of every network: the active starts' states gathered from the held
    state ``src`` (``None``: initial states), split over ``mesh`` if the networks divide evenly
    over its devices."""
    E = active.shape[0]
    if mesh is not None and E % mesh.size:
        mesh = None
    slots, valid = _slots(active, rows)
    if src is None:
        state = _init_states(_rows(x_host, slots),
                             None if u_host is None else _rows(u_host, slots), damping, F=F,
                             mesh=mesh, **kw)
    else:
        state = _gather(src.state, _positions(src.slots, src.valid, slots, n))
    return _Held(slots, valid, state, mesh)


def _slots(active: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(slots, valid)``, both ``(E, size)``: each network's active starts ascending, then
    padding (copies of its first row; index 0 for a network with none)."""
    order = np.argsort(~active, axis=1, kind="stable")[:, :size]
    valid = np.arange(size)[None, :] < active.sum(1)[:, None]
    return np.where(valid, order, order[:, :1]), valid


def _positions(slots: np.ndarray, valid: np.ndarray, new_slots: np.ndarray, n: int) -> np.ndarray:
    """Row of ``slots`` holding each start of ``new_slots`` (a subset of the valid ones), per
    network: one ``searchsorted`` over keys ``e (n + 1) + start`` (ascending row by row)."""
    E, k = slots.shape
    offset = (n + 1) * np.arange(E)[:, None]
    keys = (offset + np.where(valid, slots, n)).ravel()
    pos = np.searchsorted(keys, (offset + new_slots).ravel()).reshape(new_slots.shape)
    return np.clip(pos - k * np.arange(E)[:, None], 0, k - 1)


def _rows(a: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """``a[e, slots[e]]`` for every network ``e``."""
    return np.take_along_axis(a, slots[..., None], axis=1)


