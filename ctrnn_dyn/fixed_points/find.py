"""The public finder: starts sampled from trajectories, :func:`find_fixed_points`, and
:func:`continue_fixed_points` along a path of inputs."""

from __future__ import annotations

import dataclasses
import logging
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn import _checks, linear
from ctrnn_dyn.fixed_points._arguments import (
    _alpha_of,
    _check_map,
    _prepare_inputs,
    _prepare_map,
)
from ctrnn_dyn.fixed_points.clustering import _outlier_mask
from ctrnn_dyn.fixed_points.container import FixedPoints
from ctrnn_dyn.fixed_points.fileformat import _CAP, _CONVERGED, _NONFINITE, _SLOW, STOP_REASONS
from ctrnn_dyn.fixed_points.newton import _dogleg, _newton_finish
from ctrnn_dyn.fixed_points.solvers import (
    _DEFAULT_CHUNK,
    _DEFAULT_MAX_ITERS,
    LINEAR_SOLVERS,
    METHODS,
    _bucket,
    _eig_host,
    _jacobians,
    _solve,
    _speeds,
    _take,
    resolve_linear_solver,
)

logger = logging.getLogger(__name__)


def sample_initial_states(states: Any, n: int, *, noise_scale: float, key: jax.Array) -> jax.Array:
    r"""Draw ``n`` starts from visited states plus isotropic noise (FixedPointFinder's recipe).

    :math:`x^{(i)}_0 = s_{b_i t_i} + \sigma\,\xi_i`, with ``(b_i, t_i)`` uniform with replacement
    over the trajectories and time steps, :math:`\xi_i \sim N(0, I)`.

    Args:
        states: ``(B, T, d)`` trajectories or ``(S, d)`` states.
        n: number of starts (``>= 1``).
        noise_scale: ``σ >= 0``.
        key: PRNG key.

    Returns:
        ``(n, d)`` starts, in ``states``' float dtype.

    Raises:
        TypeError: ``n`` not an int.
        ValueError: wrong rank, empty ``states``, ``n < 1`` or ``noise_scale < 0``.
    """
    states = jnp.asarray(states)
    if states.ndim not in (2, 3):
        raise ValueError(f"states must have shape (B, T, d) or (S, d), got {states.shape}")
    if not jnp.issubdtype(states.dtype, jnp.floating):
        states = states.astype(jnp.result_type(float))
    flat = states.reshape(-1, states.shape[-1])
    if flat.shape[0] == 0:
        raise ValueError("states must contain at least one state")
    n = _checks.check_int("n", n, 1)
    if not np.isfinite(noise_scale) or noise_scale < 0:
        raise ValueError(f"noise_scale must be finite and >= 0, got {noise_scale!r}")
    k_idx, k_noise = jax.random.split(key)
    idx = jax.random.randint(k_idx, (int(n),), 0, flat.shape[0])
    noise = jax.random.normal(k_noise, (int(n), flat.shape[1]), flat.dtype)
    return flat[idx] + jnp.asarray(noise_scale, flat.dtype) * noise


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
        coverage_damping: with deduplication (``tol_unique`` set) and ``"lm"``, every start
            whose first run reached a root is solved again with LM's initial damping parameter
            at this value instead of jaxopt's ``1e-6`` (the initial ``μ`` is it times the
            largest diagonal entry of ``JᵀJ``): a damped first phase whose first steps are short
            gradient-like steps, so it stays in basins that the first run's Gauss–Newton steps
            jump over. It is skipped where every start that converged reached one and the
            same root (most networks analysed by the thousand have a single attractor, and
            would pay a second solve for nothing; the price is that a root whose basin the
            first run jumped over in such a network stays unfound). The roots it reaches that
            the same start's first run did not are added,
            with :attr:`~FixedPoints.n_starts` ``0`` where no first run ended there (default
            ``1e-2``; on FixedPointFinder's 16-unit flip-flops it recovers the saddles the
            first run misses). ``None`` skips it (up to half the solve time); so does
            ``tol_unique=None``, which keeps one entry per start.
        tol_unique: deduplication distance (FixedPointFinder's ``1e-3``; non-converged entries
            within it of a fixed point are merged into it, :attr:`FixedPoints.n_starts`
            counting them); ``None`` returns one entry per start.
        outlier_distance_scale: drop points farther than this times the starts' mean distance
            from the starts' centroid (FixedPointFinder's ``10``); ``None`` keeps all.
        compute_jacobians: compute ``∂F/∂x`` at each returned point (after deduplication: one
            Jacobian per distinct point, not per start).
        decompose: eigen-decompose the Jacobians and classify stability (needs Jacobians;
            default: ``compute_jacobians``, so ``compute_jacobians=False`` alone skips both).
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
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if linear_solver not in LINEAR_SOLVERS:
        raise ValueError(f"linear_solver must be one of {LINEAR_SOLVERS}, got {linear_solver!r}")
    dt = _checks.float_dtype(dtype)
    x64 = dt == np.dtype(np.float64)
    if tol_q is None:
        tol_q = 1e-20 if x64 else 1e-12
    if tol_grad is None:
        tol_grad = 1e-14 if x64 else 1e-7
    if max_iters is None:
        max_iters = _DEFAULT_MAX_ITERS[method]
    if chunk_iters is None:
        chunk_iters = _DEFAULT_CHUNK[method]
    for name, value in (("tol_q", tol_q), ("tol_grad", tol_grad), ("grad_rtol", grad_rtol)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    for name, value in (
        ("max_iters", max_iters),
        ("chunk_iters", chunk_iters),
        ("cg_iters", cg_iters),
    ):
        _checks.check_int(name, value, 1)
    for name, value in (("polish_steps", polish_steps), ("newton_restarts", newton_restarts)):
        _checks.check_int(name, value, 0)
    if tol_unique is not None and not tol_unique > 0:
        raise ValueError(f"tol_unique must be > 0 or None, got {tol_unique!r}")
    if outlier_distance_scale is not None and not outlier_distance_scale > 0:
        raise ValueError(
            f"outlier_distance_scale must be > 0 or None, got {outlier_distance_scale!r}"
        )
    if decompose is None:
        decompose = compute_jacobians
    if decompose and not compute_jacobians:
        raise ValueError("decompose=True needs compute_jacobians=True")
    if coverage_damping is not None:
        if isinstance(coverage_damping, bool) or not isinstance(coverage_damping, numbers.Real):
            raise TypeError(f"coverage_damping must be a float > 0 or None, got "
                            f"{type(coverage_damping).__name__}")
        if not (np.isfinite(coverage_damping) and coverage_damping > 0):
            raise ValueError(f"coverage_damping must be > 0 or None, got {coverage_damping!r}")
    if not (np.isfinite(slow_rtol) and slow_rtol >= 0):
        raise ValueError(f"slow_rtol must be finite and >= 0, got {slow_rtol!r}")

    if isinstance(initial_states, FixedPoints):  # continue from earlier points
        initial_states = initial_states.x
    Fm, x0 = _prepare_map(F, initial_states)
    if x0.ndim != 2:
        raise ValueError(f"initial_states must have shape (n, d), got {x0.shape}")
    n, d = x0.shape
    if n < 1 or d < 1:
        raise ValueError(f"initial_states must have shape (n, d) with n, d >= 1, got {x0.shape}")
    state_size = getattr(F, "state_size", None)
    if isinstance(state_size, int) and d != state_size:
        raise ValueError(
            f"initial_states has width {d} but F's state size is {state_size} "
            f"(expected shape (n, {state_size}))"
        )

    ctx = _checks.precision_context(dt)
    with ctx:
        u = _prepare_inputs(F, inputs, n, dt)
        _check_map(Fm, d, u, dt)
        finite = np.all(np.isfinite(x0), axis=1)
        if not finite.all():
            logger.warning("%d of %d starts are not finite; they are skipped", (~finite).sum(), n)
        x_init = x0.astype(dt)
        x_start = jnp.asarray(np.where(finite[:, None], x_init, 0.0), dt)
        u_j = None if u is None else jnp.asarray(u)
        solve_kw = dict(
            method=method,
            tol_q=float(tol_q),
            tol_grad=float(tol_grad),
            max_iters=int(max_iters),
            chunk_iters=int(chunk_iters),
            linear_solver=resolve_linear_solver(linear_solver, d),
            cg_iters=int(cg_iters),
            cg_tol=float(cg_tol),
            grad_rtol=float(grad_rtol),
            mixed_precision=bool(mixed_precision and x64),
        )
        x_fin, iters = _solve(Fm, x_start, u_j, finite, **solve_kw)
        q = np.array(_speeds(x_fin, u_j, F=Fm))
        x_fin = np.array(x_fin)
        reason = np.where(q <= tol_q, _CONVERGED, _CAP).astype(np.int8)
        cand = np.flatnonzero(finite & np.isfinite(q) & (q > tol_q))
        if cand.size and polish_steps:
            # finish every start still above tolerance with Newton in the working precision
            finished, g_rel = _finish(Fm, x_fin, q, u_j, cand, polish_steps, tol_q)
            # a slow point: Newton stalled (the step's predicted decrease to q = 0 failed) where
            # the solver had stopped on a vanishing gradient, or where the residual is nearly
            # orthogonal to the range of J − I; anything still moving is an iteration cap
            local_min = (iters[cand] < max_iters) | (g_rel <= slow_rtol)
            reason[cand] = np.where(finished & local_min, _SLOW, _CAP)
            left = cand[q[cand] > tol_q]
            if left.size and newton_restarts:
                # the solver took these starts to no root; a dogleg restart from the start
                # itself (scipy's route) reaches roots whose basin the solver's steps left
                size = _bucket(left.size, n)
                idx = np.concatenate([left, np.full(size - left.size, left[0])])
                xr, qr = _dogleg(
                    *_take((x_start, u_j), idx),
                    F=Fm,
                    max_steps=int(newton_restarts),
                    tol_q=float(tol_q),
                )
                xr, qr = np.asarray(xr[: left.size]), np.asarray(qr[: left.size])
                win = np.isfinite(qr) & (qr <= tol_q)
                x_fin[left[win]] = xr[win]
                q[left[win]] = qr[win]
                logger.debug("Newton restarts: %d of %d reached a root", win.sum(), left.size)
        elif cand.size:
            reason[cand] = np.where(iters[cand] < max_iters, _SLOW, _CAP)
        reason[q <= tol_q] = _CONVERGED
        reason[~(finite & np.isfinite(q))] = _NONFINITE
        x_fin = np.where(finite[:, None], x_fin, x_init)
        q = np.where(finite, q, np.nan)
        converged = finite & (q <= tol_q)
        u_np = np.zeros((n, 0), dt) if u is None else np.asarray(u)
        fps = FixedPoints(
            x=x_fin,
            u=u_np,
            q=q,
            converged=converged,
            n_iters=iters.astype(np.int64),
            x_init=x_init,
            alpha=_alpha_of(F),
            n_starts=np.ones(n, np.int64),
            stop_reason=reason,
        )
        if (coverage_damping is not None and method == "lm" and tol_unique is not None
                and len(fps[converged].unique(tol_unique)) > 1):
            more = _coverage_run(Fm, x_start, u_j, finite, fps, float(coverage_damping),
                                 solve_kw, polish_steps, tol_unique)
            finite = np.concatenate([finite, np.ones(len(more), bool)])
            fps = FixedPoints.concatenate([fps, more])
        logger.info(
            "find_fixed_points: starts stopped %s",
            ", ".join(
                f"{np.sum(reason == k)} {label}" for k, label in enumerate(STOP_REASONS)
            ),
        )
        if outlier_distance_scale is not None:
            fps = fps[_outlier_mask(fps.x, fps.x_init, outlier_distance_scale) | ~finite]
        if tol_unique is not None:
            fps = fps.unique(tol_unique)
        if compute_jacobians and len(fps):
            fps = _add_linearisation(Fm, fps, u is None, decompose, left_eigvecs, marginal_tol)
    logger.info(
        "find_fixed_points: %d starts -> %d entries (%d fixed)",
        n,
        len(fps),
        int(np.sum(fps.converged)),
    )
    return fps


def _finish(F, x, q, u, cand, polish_steps, tol_q):
    """Newton finish of the starts ``cand`` (rows of ``x``, ``q``, updated in place); returns
    their ``finished`` and ``g_rel`` flags (:func:`~.solvers._newton_finish`)."""
    size = _bucket(cand.size, x.shape[0])
    idx = np.concatenate([cand, np.full(size - cand.size, cand[0])])
    xs, qs, _, finished, g_rel = _newton_finish(
        *_take((jnp.asarray(x), u), idx), F=F, max_steps=int(polish_steps), tol_q=float(tol_q)
    )
    x[cand] = np.asarray(xs[: cand.size])
    q[cand] = np.asarray(qs[: cand.size])
    return np.asarray(finished[: cand.size]), np.asarray(g_rel[: cand.size])


def _coverage_run(F, x_start, u, finite, first, damping, solve_kw, polish_steps, tol_unique):
    """Solve the starts whose first run reached a root a second time with LM's initial damping
    ``damping`` (a damped first phase: short gradient-like first steps that stay in basins the
    first run's Gauss–Newton steps jump over), Newton-finish them, and return, as converged
    entries, the roots they reach that their first run did not (farther than ``tol_unique``
    from its end point). Starts whose first run found no root were restarted already."""
    tol_q = solve_kw["tol_q"]
    finite = finite & first.converged
    x2, iters = _solve(F, x_start, u, finite, damping=damping, **solve_kw)
    q = np.array(_speeds(x2, u, F=F))
    x2 = np.array(x2)
    cand = np.flatnonzero(finite & np.isfinite(q) & (q > tol_q))
    if cand.size and polish_steps:
        _finish(F, x2, q, u, cand, polish_steps, tol_q)
    same = first.converged & (np.linalg.norm(x2 - first.x, axis=1) <= tol_unique)
    new = np.flatnonzero(finite & np.isfinite(q) & (q <= tol_q) & ~same)
    logger.debug("coverage run (damping %g): %d starts reached another root", damping, new.size)
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


@_checks.renamed(extra_starts="extra_initial_states")
def continue_fixed_points(
    F: Callable[..., Any],
    fps: FixedPoints | Any,
    inputs_path: Any,
    *,
    extra_initial_states: Any = None,
    **options: Any,
) -> list[FixedPoints]:
    r"""Follow fixed points along a path of constant inputs (numerical continuation).

    At each input level :math:`u_k` of ``inputs_path`` the starts are the fixed points found at
    the previous level (at the first level: ``fps``), plus ``extra_initial_states`` if given;
    where the previous level has no fixed point its slow points are used instead. A fixed point
    that moves smoothly with the input is then one short Newton/LM solve away from its
    predecessor, even where starts from the network's states stall on slow points (e.g. the
    sine-wave generator's low-frequency levels).

    Args:
        F: one-step map on a flat state, as for :func:`find_fixed_points`.
        fps: the points to start from: a :class:`FixedPoints` (its fixed points, or its slow
            points if it has none) or an ``(n, d)`` array of states.
        inputs_path: ``(K, m)`` input levels, followed in order.
        extra_initial_states: ``(n', d)`` starts added at every level (e.g. states of the
            network), or ``None``.
        **options: passed to :func:`find_fixed_points` (``tol_unique`` keeps its default, so
            each level holds one entry per distinct point).

    Returns:
        ``K`` :class:`FixedPoints`, one per level (possibly empty of fixed points where the
        branch ends, e.g. at a saddle-node bifurcation; the next level then continues from the
        slow points there).

    Raises:
        ValueError: ``inputs_path`` not ``(K, m)`` with ``K >= 1``, or no finite start.
    """
    path = np.asarray(inputs_path, dtype=float)
    if path.ndim == 1:
        path = path[:, None]
    if path.ndim != 2 or path.shape[0] < 1:
        raise ValueError(f"inputs_path must have shape (K, m) with K >= 1, got {path.shape}")
    extra = (None if extra_initial_states is None
             else np.asarray(extra_initial_states, dtype=float))
    prev = fps
    out: list[FixedPoints] = []
    for k, u in enumerate(path):
        if isinstance(prev, FixedPoints):
            pick = prev.fixed if len(prev.fixed) else prev[np.isfinite(prev.q)]
            starts = pick.x
        else:
            starts = np.asarray(prev, dtype=float)
        if extra is not None:
            starts = np.concatenate([starts.reshape(-1, extra.shape[-1]), extra], axis=0)
        starts = starts[np.all(np.isfinite(starts), axis=1)] if starts.ndim == 2 else starts
        if np.ndim(starts) != 2 or starts.shape[0] == 0:
            raise ValueError(f"no finite start to continue from at level {k} (input {u})")
        level = find_fixed_points(F, starts, u, **options)
        out.append(level)
        prev = level if len(level) else prev
    return out


def _add_linearisation(F, fps, no_input, decompose, left, marginal_tol) -> FixedPoints:
    ok = np.all(np.isfinite(fps.x), axis=1)
    n, d = fps.x.shape
    jac = np.full((n, d, d), np.nan, fps.x.dtype)
    fields: dict[str, Any] = {}
    if ok.any():
        idx = np.flatnonzero(ok)
        size = _bucket(idx.size, factor=2)
        pad = np.concatenate([idx, np.full(size - idx.size, idx[0])])
        x = jnp.asarray(fps.x[pad])
        u = None if no_input else jnp.asarray(fps.u[pad])
        jac[idx] = np.asarray(_jacobians(x, u, F=F))[: idx.size]
        if decompose:
            eigvals = np.full((n, d), np.nan + 0j)
            eigvecs = np.full((n, d, d), np.nan + 0j)
            lv = np.full((n, d, d), np.nan + 0j)
            good = idx[np.all(np.isfinite(jac[idx]), axis=(1, 2))]
            if good.size:
                dec = _eig_host(jac[good], left)
                eigvals[good], eigvecs[good] = dec.eigvals, dec.eigvecs
                if left:
                    lv[good] = dec.left_eigvecs
            fields.update(eigvals=eigvals, eigvecs=eigvecs)
            if left:
                fields["left_eigvecs"] = lv
    fields["jacobians"] = jac
    if decompose:
        if "eigvals" not in fields:
            fields.update(
                eigvals=np.full((n, d), np.nan + 0j), eigvecs=np.full((n, d, d), np.nan + 0j)
            )
        stab = linear.classify(fields["eigvals"], marginal_tol=marginal_tol)
        fields.update(stability=stab.label, n_unstable=stab.n_unstable)
    return dataclasses.replace(fps, **fields)
