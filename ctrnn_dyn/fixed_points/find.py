"""The public finder: :func:`find_fixed_points` for one map, :func:`find_fixed_points_batch` for
many (the solver batched over networks as well as starts), and the linearisation of the points
found."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np

from ctrnn_dyn import _checks
from ctrnn_dyn._batch import map_groups, network_mesh, stack_maps
from ctrnn_dyn.fixed_points import native_lm
from ctrnn_dyn.fixed_points._arguments import _alpha_of, _checked_options, _prepare, _Problem
from ctrnn_dyn.fixed_points.clustering import _outlier_mask
from ctrnn_dyn.fixed_points.container import FixedPoints
from ctrnn_dyn.fixed_points.fileformat import _CAP, _CONVERGED, _NONFINITE, _SLOW, STOP_REASONS
from ctrnn_dyn.fixed_points.linearise import add_linearisation
from ctrnn_dyn.fixed_points.newton import _dogleg, _newton_finish
from ctrnn_dyn.fixed_points.rounds import _solve
from ctrnn_dyn.fixed_points.solvers import _speeds, linear_solve_path, resolve_linear_solver

logger = logging.getLogger(__name__)


def find_fixed_points(
    F: Callable[..., Any],
    initial_states: Any,
    inputs: Any = None,
    *,
    method: str = "lm",
    tol_q: float | None = None,
    tol_grad: float | None = None,
    max_iters: int | None = None,
    chunk_iters: int | None = None,
    linear_solver: str = "auto",
    cg_iters: int = 20,
    cg_tol: float = 1e-2,
    mixed_precision: bool = True,
    grad_rtol: float = 1e-8,
    polish_steps: int = 30,
    slow_rtol: float = 1e-3,
    newton_restarts: int = 10,
    damping: float = 1e-6,
    coverage_damping: float | None = 1e-2,
    tol_unique: float | None = 1e-3,
    outlier_distance_scale: float | None = 10.0,
    compute_jacobians: bool = True,
    decompose: bool | None = None,
    left_eigvecs: bool = False,
    marginal_tol: float = 1e-3,
    dtype: Any = np.float64,
) -> FixedPoints:
    r"""Find fixed points (and slow points) of ``F(x, u)`` from many starts.

    Minimises :math:`q(x) = \tfrac12\lVert F(x,u) - x\rVert^2` from every start with a JAXopt
    solver ``vmap``-ped over starts (see the module docstring for the solvers and for how slow
    points are reported), then drops distance outliers, deduplicates, and linearises.

    Args:
        F: one-step map on unbatched arrays, ``F(x: (d,), u: (m,)) -> (d,)`` (a ``OneStepMap``
            or any JAX-traceable function; if ``initial_states`` is a pytree, ``F`` acts on that
            pytree carry and the result is raveled). A pytree map's arrays are traced
            (:func:`ctrnn_dyn._base.jit_map`): every map of the same shapes reuses the compiled
            programs; a plain function is static, so pass the same object again to reuse them.
        initial_states: ``(n, d)`` starts, or a pytree of ``(n, ...)`` leaves (a carry), or a
            :class:`FixedPoints` (its points ``x`` as starts, e.g. the previous input level's;
            see :func:`continue_fixed_points`).
        inputs: constant input, ``(m,)`` shared or ``(n, m)`` per start. ``None``: zero input of
            ``F.input_size`` if ``F`` has one, else ``F`` is called with ``u=None``.
        method: ``"lm"`` (Levenberg–Marquardt on the residual), ``"lbfgs"`` or ``"gd"`` (on q).
        tol_q: ``q`` at or below which a point is a fixed point. Default ``1e-20`` in float64,
            ``1e-12`` (FixedPointFinder's) in float32.
        tol_grad: stop a start when ``‖∇q‖`` (LM: ``‖(J−I)^T r‖``) falls to this (a slow point
            if ``q > tol_q``). Default ``1e-14`` in float64, ``1e-7`` in float32.
        max_iters: solver iterations per start (default lm 100, lbfgs 2000, gd 5000); the
            Newton finish (``polish_steps``) runs after it whatever is left of it.
        chunk_iters: iterations per round between retirements of finished starts (default lm 5,
            lbfgs 32, gd 128; rounds get up to 8x longer once fewer than 512 starts remain).
        linear_solver: ``"lm"`` only: ``"auto"`` (default: ``"dense"`` for ``d <= 100``,
            else ``"cg"``), ``"dense"`` (exact steps, ``JᵀJ`` built per start), ``"cg"``
            (matrix-free truncated CG) or ``"cholesky"`` (jaxopt's materialised Jacobian); see
            the module docstring for what each costs.
        cg_iters: ``"lm"`` with CG: at most this many CG iterations per LM step
            (default 20; see the module docstring for the cost of fewer).
        cg_tol: ``"lm"`` with ``"cg"``: CG stops at this relative residual (default ``1e-2``;
            ``0`` runs all ``cg_iters``).
        mixed_precision: ``"lm"`` with ``"cg"`` in float64: run the CG products in float32.
        grad_rtol: stop a start when ``‖∇q‖ <= grad_rtol · ‖F(x) − x‖`` (a local minimum of q).
        polish_steps: at most this many Newton steps (LU of ``J − I``, backtracking ``t = 1,
            ½, ¼``) finishing every start left above ``tol_q`` by the solver, each taken only
            if it at least halves ``q`` (default 30; a converging start needs a few). ``0``
            skips the finish (starts above ``tol_q`` are then slow points if the solver stopped
            on its gradient rule, else iteration caps).
        slow_rtol: a start the Newton finish cannot improve and that hit ``max_iters`` is a slow
            point if ``‖(J−I)ᵀr‖ <= slow_rtol · ‖J−I‖_F ‖r‖`` (near a local minimum of ``q``),
            otherwise it is recorded as stopped at the iteration cap.
        newton_restarts: starts that end above ``tol_q`` are restarted from their *start* with
            Powell's dogleg trust-region method on ``r`` (MINPACK hybrd's step, initial radius
            100 ``‖x‖``, the exact ``J − I``; at most this many iterations, one LU each), the
            route scipy's ``root`` takes; where that reaches a fixed point it replaces the
            solver's end point (default 10; ``0`` skips it). It recovers roots whose basin the
            solver's damped first steps left.
        damping: ``"lm"``: LM's initial damping parameter of the first run (the initial
            ``μ`` is it times the largest diagonal entry of ``JᵀJ``, estimated; default ``1e-6``,
            jaxopt's: nearly Gauss–Newton steps, the route scipy's hybrd takes). After each
            accepted step the damping falls with the residual (at most to ``‖r‖²``), so the last
            steps to a root stay quadratic however damped the start.
        coverage_damping: with deduplication (``tol_unique`` set) and ``"lm"``, every start
            whose first run reached a root other than the one nearest to the start (of the
            distinct roots the first runs found) is solved again with LM's initial damping
            parameter at this value: a damped first phase whose first steps are short
            gradient-like steps, so it stays in basins that the first run's Gauss–Newton steps
            jump over (as FixedPointFinder's Adam does). A start whose first run ended at its
            nearest root is not solved again, and the run is skipped where every start that
            converged reached one and the same root (most networks analysed by the thousand
            have a single attractor, and would pay a second solve for nothing; the price is that
            a root whose basin the first run jumped over in such a network stays unfound). The
            roots it reaches that the same start's first run did not are added, with
            :attr:`~FixedPoints.n_starts` ``0`` where no first run ended there (default
            ``1e-2``; on FixedPointFinder's 16-unit flip-flops it recovers the saddles the first
            run misses: 25–26 of the 27 roots without it). ``None`` skips it (on the flip-flops
            a quarter to a half of the call's time); so does ``tol_unique=None``, which keeps
            one entry per start.
            The order matters too: damped steps alone (``damping=1e-2``,
            ``coverage_damping=None``) find the flip-flops' 27 but miss a root hybrd reaches on
            a strongly recurrent α = 1 network (``tests/test_fixed_points_networks.py``), and a
            damped first run with a nearly undamped second one (``damping=1e-2``,
            ``coverage_damping=1e-6``), no faster on the flip-flops, missed a stable node of a
            network of the attract-or-oscillate reproduction.
        tol_unique: deduplication distance (FixedPointFinder's ``1e-3``; non-converged entries
            within it of a fixed point are merged into it, :attr:`FixedPoints.n_starts`
            counting them); ``None`` returns one entry per start.
        outlier_distance_scale: drop points farther than this times the starts' mean distance
            from the starts' centroid (FixedPointFinder's ``10``); ``None`` keeps all.
        compute_jacobians: compute ``∂F/∂x`` at each returned point (after deduplication: one
            Jacobian per distinct point, not per start).
        decompose: eigen-decompose the Jacobians and classify stability (needs Jacobians;
            default: ``compute_jacobians``, so ``compute_jacobians=False`` alone skips both).
            They run on a thread per core, BLAS held to one thread process-wide meanwhile
            (:func:`~ctrnn_dyn.fixed_points.linearise.one_blas_thread`; restored after).
        left_eigvecs: also return left eigenvectors.
        marginal_tol: band ``| |μ| − 1 | <= marginal_tol`` classed as marginal.
        dtype: ``float64`` (default; enabled locally) or ``float32``.

    Returns:
        ``FixedPoints`` (host NumPy arrays).

    Raises:
        ValueError: ``initial_states`` not ``(n, d)`` with ``n >= 1`` or ``d`` not the map's state
            size; ``inputs`` of the wrong shape or width; unknown ``method``; bad tolerances.
        TypeError: non-float ``initial_states`` or an unsupported ``dtype``.

    Example:
        >>> from ctrnn_dyn.systems import SWITCH
        >>> import numpy as np
        >>> fps = find_fixed_points(SWITCH.map(), np.linspace(-0.5, 1.5, 21)[:, None])
        >>> len(fps.fixed)
        3
    """
    options = {k: v for k, v in locals().items() if k not in ("F", "initial_states", "inputs")}
    return _find([F], [initial_states], [inputs], _checked_options(**options))[0]


def find_fixed_points_batch(
    maps: Sequence[Callable[..., Any]],
    initial_states: Any,
    inputs: Any = None,
    *,
    devices: Any = "auto",
    **options: Any,
) -> list[FixedPoints]:
    r""":func:`find_fixed_points` for many maps (e.g. an ensemble's networks), the solver running
    over all maps of one shape in one compiled program.

    The maps' parameters are stacked along a leading network axis
    (:func:`ctrnn_dyn._batch.stack_maps`). The solver — every start of every network, where
    nearly all the time goes — runs in rounds of one program per chunk of networks (equal
    chunks of at most :data:`_NETWORK_CHUNK_WORK` held numbers, ``n · d`` per network's
    states, ``n · d²`` with jaxopt's materialised Jacobians; the last chunk padded to the same
    size, so one shape compiles), split over ``devices``; each program runs, network by
    network, the blocks of rows that hold a running start. The Newton finish and restarts, the
    coverage run, deduplication and linearisation run network by network, on compiled programs
    shared by all networks of the shape.

    Args:
        maps: ``E`` one-step maps; pytree maps of one structure and shapes
            (:class:`~ctrnn_dyn.dynamics.OneStepMap` s of one cell) are solved together, a plain
            function on its own.
        initial_states: ``(E, n, d)``, a list (or tuple) of ``E`` starts as accepted by
            :func:`find_fixed_points` (pytree carries included), or ``(n, d)`` shared by all.
        inputs: ``None``, an array shared by all maps (``(m,)`` or ``(n, m)``), or a list of
            ``E``, one per map.
        devices: split the solver's rounds (every start of every network of a chunk) over
            these devices (``shard_map``; the chunk is padded to a multiple of their
            number): ``"auto"`` (default: all devices when there are several), ``None``, a
            sequence of devices or a 1-axis ``Mesh`` (:func:`ctrnn_dyn._batch.network_mesh`).
            On a CPU the cores are devices only when JAX starts with
            ``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>``.
        **options: as for :func:`find_fixed_points`, the same for every map.

    Returns:
        ``E`` :class:`FixedPoints`, in the order of ``maps``; each what
        :func:`find_fixed_points` returns for that map (to floating-point reassociation).

    Raises:
        TypeError: an unknown option, or as :func:`find_fixed_points`.
        ValueError: no maps, a per-map argument of the wrong length, or as
            :func:`find_fixed_points`.
    """
    maps = list(maps)
    if not maps:
        raise ValueError("maps must hold at least one map")
    unknown = set(options) - set(_OPTION_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; expected some of "
                        f"{sorted(_OPTION_DEFAULTS)}")
    starts = _checks.per_item(initial_states, len(maps), "initial_states", ndim=2, item="map")
    us = _checks.per_item(inputs, len(maps), "inputs", item="map")  # an array may be per start
    return _find(maps, starts, us, _checked_options(**{**_OPTION_DEFAULTS, **options}),
                 devices)


_OPTION_DEFAULTS = {
    name: p.default for name, p in inspect.signature(find_fixed_points).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
}


#: A chunk of networks solved in one program holds at most this many numbers per array of the
#: solver's state (``n · d`` per network, ``n · d²`` for jaxopt's materialised Jacobians; 128 MiB
#: in float64): the exact step's matrices exist for one block of rows at a time.
_NETWORK_CHUNK_WORK = 2**24


def _find(maps, starts, inputs, o, devices=None) -> list[FixedPoints]:
    """Every map's :class:`FixedPoints`: the maps grouped by structure and shapes, each group's
    solve and coverage run batched over its networks (in chunks), the rest network by
    network."""
    out: list[Any] = [None] * len(maps)
    with _checks.precision_context(o.dt):
        problems = [_prepare(F, s, u, o.dt) for F, s, u in zip(maps, starts, inputs, strict=True)]
        by_shape: dict[tuple, list[int]] = {}
        for i, p in enumerate(problems):
            by_shape.setdefault((p.x_start.shape, None if p.u is None else p.u.shape), []).append(i)
        for members in by_shape.values():
            for idx in map_groups([problems[i].Fm for i in members]):
                group = [members[j] for j in idx]
                n, d = problems[group[0]].x_start.shape
                mesh = network_mesh(devices, len(group))
                # decided once per group, on the host before tracing: what runs is recorded
                path = _solve_path(o, d, problems[group[0]].Fm)
                cholesky = o.solve_kw["linear_solver"] == "cholesky"  # jaxopt's: one device
                held = n * d * (d if cholesky else 1)
                cap = max(1, _NETWORK_CHUNK_WORK // held)
                size = -(-len(group) // -(-len(group) // cap))  # equal chunks of <= cap
                if mesh is not None:  # a multiple of the devices
                    size = -(-size // mesh.size) * mesh.size
                for c in range(0, len(group), size):
                    chunk = group[c: c + size]
                    # the last chunk padded to the same size (one compiled shape) with copies
                    # of its first network, whose starts are not solved
                    padded = [problems[i] for i in chunk]
                    padded += [padded[0]._replace(finite=np.zeros_like(padded[0].finite))
                               ] * (size - len(chunk))
                    ((_, F),) = stack_maps([p.Fm for p in padded], None if cholesky else mesh)
                    x_fin, iters = _solve_stacked(F, padded, np.stack([p.finite for p in padded]),
                                                  o, mesh, o.damping, path)
                    firsts = [_first_points(problems[i], x_fin[j], iters[j], o)
                              for j, i in enumerate(chunk)]
                    more = _coverage_runs(F, padded, firsts, o, mesh, path)
                    for i, fps in zip(chunk, _results([problems[i] for i in chunk], firsts,
                                                      more, o, path), strict=True):
                        out[i] = fps
    return out


def _results(problems: list[_Problem], firsts: list[FixedPoints],
             more: list[FixedPoints | None], o, path: str) -> list[FixedPoints]:
    """:func:`_result` of each network on a thread per core (one network: its points split over
    them): LAPACK's eigensolver releases the GIL (100 units: 2.4 ms a matrix, 4.0 on one)."""
    # the cores this process may use (all of them where the OS cannot say)
    cores = len(getattr(os, "sched_getaffinity", lambda _: range(os.cpu_count() or 1))(0))

    def one(j: int, workers: int) -> FixedPoints:
        with _checks.precision_context(o.dt):  # JAX's precision is per thread
            return _result(problems[j], firsts[j], more[j], o, path, workers)

    if len(problems) == 1 or cores == 1 or not (o.compute_jacobians and o.decompose):
        return [one(j, cores) for j in range(len(problems))]
    with ThreadPoolExecutor(min(cores, len(problems))) as pool:
        return list(pool.map(partial(one, workers=1), range(len(problems))))


def _solve_stacked(F, problems: list[_Problem], active: np.ndarray, o, mesh, damping: float,
                   path: str) -> tuple[np.ndarray, np.ndarray]:
    """The solver on the problems' stacked map ``F`` and their starts ``active (E, n)``, LM's
    initial damping parameter ``damping``, on ``path`` (:func:`_solve_path`; the whole run on
    :mod:`~.native_lm`'s kernel where it says so): ``x (E, n, d)``, ``iters (E, n)``."""
    d = problems[0].x_start.shape[1]
    u = None if problems[0].u is None else np.stack([p.u for p in problems])
    x0, kw = np.stack([p.x_start for p in problems]), o.solve_kw
    if path.endswith(native_lm.PATH_SUFFIX):
        stops = {k: kw[k] for k in ("tol_q", "tol_grad", "grad_rtol", "max_iters")}
        return native_lm.solve(F, x0, u, np.asarray(active, bool), damping=damping, **stops)
    kw = {**kw, "linear_solver": resolve_linear_solver(kw["linear_solver"], d),
          "kernels": path != "xla"}
    return _solve(F, x0, u, active, mesh=mesh, damping=damping, **kw)


def _solve_path(o, d: int, F) -> str:
    """:func:`~.native_lm.solver_path` of the options ``o`` for ``F``'s states of size ``d``."""
    solver = resolve_linear_solver(o.solve_kw["linear_solver"], d)
    return native_lm.solver_path(linear_solve_path(o.method, solver), o.method, solver, F)


def _first_points(p: _Problem, x_fin: np.ndarray, iters: np.ndarray, o) -> FixedPoints:
    """One entry per start from the solver's end points: the Newton finish and restarts of the
    starts left above ``tol_q``, and the stop reasons."""
    Fm, finite, tol_q = p.Fm, p.finite, o.tol_q
    n = finite.size
    # host arrays: rows are picked on the host (no device slicing program per number of rows)
    x_start, u = p.x_start, p.u
    q = np.array(_speeds(x_fin, u, F=Fm))
    x_fin = np.array(x_fin)
    reason = np.where(q <= tol_q, _CONVERGED, _CAP).astype(np.int8)
    cand = np.flatnonzero(finite & np.isfinite(q) & (q > tol_q))
    if cand.size and o.polish_steps:
        # finish every start still above tolerance with Newton in the working precision
        finished, g_rel = _finish(Fm, x_fin, q, u, cand, o.polish_steps, tol_q)
        # a slow point: Newton stalled (the step's predicted decrease to q = 0 failed) where
        # the solver had stopped on a vanishing gradient, or where the residual is nearly
        # orthogonal to the range of J − I; anything still moving is an iteration cap
        local_min = (iters[cand] < o.max_iters) | (g_rel <= o.slow_rtol)
        reason[cand] = np.where(finished & local_min, _SLOW, _CAP)
        left = cand[q[cand] > tol_q]
        if left.size and o.newton_restarts:
            # the solver took these starts to no root; a dogleg restart from the start
            # itself (scipy's route) reaches roots whose basin the solver's steps left
            xr, qr = _in_blocks(partial(_dogleg, F=Fm, max_steps=o.newton_restarts,
                                        tol_q=tol_q), (x_start, u), left)
            win = np.isfinite(qr) & (qr <= tol_q)
            x_fin[left[win]] = xr[win]
            q[left[win]] = qr[win]
            logger.debug("Newton restarts: %d of %d reached a root", win.sum(), left.size)
    elif cand.size:
        reason[cand] = np.where(iters[cand] < o.max_iters, _SLOW, _CAP)
    reason[q <= tol_q] = _CONVERGED
    reason[~(finite & np.isfinite(q))] = _NONFINITE
    x_fin = np.where(finite[:, None], x_fin, p.x_init)
    q = np.where(finite, q, np.nan)
    converged = finite & (q <= tol_q)
    u_np = np.zeros((n, 0), o.dt) if p.u is None else np.asarray(p.u)
    fps = FixedPoints(
        x=x_fin,
        u=u_np,
        q=q,
        converged=converged,
        n_iters=iters.astype(np.int64),
        x_init=p.x_init,
        alpha=_alpha_of(p.F),
        n_starts=np.ones(n, np.int64),
        stop_reason=reason,
    )
    logger.info(
        "find_fixed_points: starts stopped %s",
        ", ".join(f"{np.sum(reason == k)} {label}" for k, label in enumerate(STOP_REASONS)),
    )
    return fps


def _result(p: _Problem, fps: FixedPoints, more: FixedPoints | None, o,
            solver_path: str, workers: int = 1) -> FixedPoints:
    """The result from the starts' entries ``fps`` and the roots only the coverage run reached
    (``more``): outliers dropped, deduplicated, the unique points linearised (on ``workers``
    threads), ``solver_path`` recorded."""
    n = len(fps)
    finite = p.finite
    if more is not None:
        finite = np.concatenate([finite, np.ones(len(more), bool)])
        fps = FixedPoints.concatenate([fps, more])
    if o.outlier_distance_scale is not None:
        fps = fps[_outlier_mask(fps.x, fps.x_init, o.outlier_distance_scale) | ~finite]
    if o.tol_unique is not None:
        fps = fps.unique(o.tol_unique)
    if o.compute_jacobians and len(fps):
        fps = add_linearisation(p.Fm, fps, p.u is None, o.decompose, o.left_eigvecs,
                                 o.marginal_tol, workers)
    logger.info("find_fixed_points: %d starts -> %d entries (%d fixed)", n, len(fps),
                int(np.sum(fps.converged)))
    return dataclasses.replace(fps, solver_path=solver_path)


def _finish(F, x, q, u, cand, polish_steps, tol_q):
    """Newton finish of the starts ``cand`` (rows of ``x``, ``q``, updated in place); returns
    their ``finished`` and ``g_rel`` flags (:func:`~.solvers._newton_finish`)."""
    x[cand], q[cand], _, finished, g_rel = _in_blocks(
        partial(_newton_finish, F=F, max_steps=int(polish_steps), tol_q=float(tol_q)),
        (x, u), cand)
    return finished, g_rel


#: The Newton finish and the dogleg restarts run on blocks of this many rows: few compiled
#: shapes per map shape (not one per number of starts left), and a block's loop stops with its
#: own rows.
_NEWTON_BLOCK = 32


def _in_blocks(fun, arrays, idx):
    """``fun`` on rows ``idx`` of host ``arrays`` (``None`` kept), in blocks of
    :data:`_NEWTON_BLOCK` rows, or in one block of all the arrays' rows where that computes no
    more rows (so at most two shapes compile); the last block padded with copies of its first
    row. Returns its outputs' rows for ``idx``, as host arrays."""
    n = len(arrays[0])
    size = n if n <= -(-idx.size // _NEWTON_BLOCK) * _NEWTON_BLOCK else _NEWTON_BLOCK
    outs = []
    for i in range(0, idx.size, size):
        rows = idx[i: i + size]
        rows = np.concatenate([rows, np.full(size - rows.size, rows[0])])
        outs.append(fun(*_host_rows(arrays, rows)))
    return tuple(np.concatenate([np.asarray(o[j]) for o in outs])[: idx.size]
                 for j in range(len(outs[0])))


def _ended_nearest(x_start: np.ndarray, first: FixedPoints, roots: np.ndarray) -> np.ndarray:
    """``(n,)``: the start's first run converged to the root nearest to the start of the
    distinct ``roots (R, d)`` the first runs found: such a run is taken to have stepped over
    no other root's basin."""

    def nearest(x):  # squared distances by one product: (n, R), not (n, R, d)
        return np.argmin(np.sum(roots**2, 1)[None, :] - 2.0 * x @ roots.T, axis=1)

    return first.converged & (nearest(x_start) == nearest(first.x))


def _host_rows(arrays, idx):
    """Rows ``idx`` of host arrays (``None`` kept), picked on the host."""
    return tuple(None if a is None else a[idx] for a in arrays)


def _coverage_runs(F, problems: list[_Problem], firsts: list[FixedPoints], o, mesh,
                   path: str) -> list[FixedPoints | None]:
    """The coverage run of every network of the stacked ``F`` (``problems`` padded as the
    stack), in one solve: the starts whose first run reached a root other than the root (of
    those it found) nearest to the start are solved a second time with LM's initial damping
    ``coverage_damping`` (a damped first phase: short gradient-like first steps that stay in
    basins the first run's Gauss–Newton steps jump over) and Newton-finished. Returns, per
    network of ``firsts``, the roots they reach that their first run did not (farther than
    ``tol_unique`` from its end point) as converged entries, or ``None`` where no start was
    solved again. Starts whose first run found no root were restarted already. ``path``: as
    for :func:`_solve_stacked`."""
    if o.coverage_damping is None or o.method != "lm" or o.tol_unique is None:
        return [None] * len(firsts)
    n = problems[0].x_start.shape[0]
    again = np.zeros((len(problems), n), bool)
    # problems may end in padding copies (no first run, nothing solved again): zip stops at
    # the real networks
    for j, (p, first) in enumerate(zip(problems, firsts, strict=False)):
        roots = first[first.converged].unique(o.tol_unique).x
        if len(roots) > 1:  # where every start reached one root there is nothing to cover
            again[j] = p.finite & first.converged & ~_ended_nearest(p.x_start, first, roots)
    if not again.any():
        return [None] * len(firsts)
    x2, iters = _solve_stacked(F, problems, again, o, mesh, float(o.coverage_damping), path)
    return [_coverage_points(p, first, x2[j], iters[j], again[j], o) if again[j].any() else None
            for j, (p, first) in enumerate(zip(problems, firsts, strict=False))]


def _coverage_points(p: _Problem, first: FixedPoints, x2: np.ndarray, iters: np.ndarray,
                     again: np.ndarray, o) -> FixedPoints:
    """The roots that the coverage run took the starts ``again`` to and their first run did
    not, Newton-finished, as converged entries."""
    tol_q, u = o.tol_q, p.u
    q = np.array(_speeds(x2, u, F=p.Fm))
    cand = np.flatnonzero(again & np.isfinite(q) & (q > tol_q))
    if cand.size and o.polish_steps:
        _finish(p.Fm, x2, q, u, cand, o.polish_steps, tol_q)
    same = first.converged & (np.linalg.norm(x2 - first.x, axis=1) <= o.tol_unique)
    new = np.flatnonzero(again & np.isfinite(q) & (q <= tol_q) & ~same)
    logger.debug("coverage run (damping %g): %d starts reached another root",
                 o.coverage_damping, new.size)
    k = new.size
    return FixedPoints(
        x=x2[new],
        u=first.u[new],
        q=q[new],
        converged=np.ones(k, bool),
        n_iters=iters[new].astype(np.int64),
        x_init=first.x_init[new],
        alpha=first.alpha,
        n_starts=np.zeros(k, np.int64),  # counted where their first run ended
        stop_reason=np.full(k, _CONVERGED, np.int8),
    )
