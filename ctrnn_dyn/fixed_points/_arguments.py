"""The finder's arguments checked and prepared: its options (:func:`_checked_options`), and per
map (:func:`_prepare`) the map (raveled when the states are a pytree: :class:`_RaveledMap`), the
starts, the inputs, and a trial evaluation of the map on their shapes."""

from __future__ import annotations

import dataclasses
import functools
import logging
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn import _checks
from ctrnn_dyn._base import merge_map, split_map
from ctrnn_dyn.fixed_points.container import FixedPoints
from ctrnn_dyn.fixed_points.solvers import (
    _DEFAULT_CHUNK,
    _DEFAULT_MAX_ITERS,
    LINEAR_SOLVERS,
    METHODS,
)

logger = logging.getLogger("ctrnn_dyn.fixed_points.find")  # the finder's log


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class _RaveledMap:
    """``F`` on a pytree carry seen as a map on the flat vector (a pytree: ``F``'s arrays are
    traced by :func:`~ctrnn_dyn._base.jit_map`)."""

    F: Callable[..., Any]
    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[Any, ...]

    def tree_flatten(self) -> tuple[tuple, tuple]:
        return (self.F,), (self.treedef, self.shapes, self.dtypes)

    @classmethod
    def tree_unflatten(cls, aux: tuple, children: tuple) -> _RaveledMap:
        return cls(children[0], *aux)

    def _unravel(self, x: jax.Array) -> Any:
        leaves, start = [], 0
        for shape, dtype in zip(self.shapes, self.dtypes, strict=True):
            size = int(np.prod(shape))
            leaves.append(x[start : start + size].reshape(shape).astype(dtype))
            start += size
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def __call__(self, x: jax.Array, u: Any = None) -> jax.Array:
        out = self.F(self._unravel(x), u)
        leaves = jax.tree_util.tree_leaves(out)
        return jnp.concatenate([jnp.ravel(leaf).astype(x.dtype) for leaf in leaves])


def _prepare_map(F: Any, initial_states: Any) -> tuple[Any, np.ndarray]:
    """Flat map and ``(n, d)`` starts; a pytree of ``(n, ...)`` leaves is raveled per start."""
    if isinstance(initial_states, tuple | list | dict):
        leaves, treedef = jax.tree_util.tree_flatten(initial_states)
        if not leaves:
            raise ValueError("initial_states must not be an empty pytree")
        leaves = [np.asarray(leaf) for leaf in leaves]
        n = leaves[0].shape[0] if leaves[0].ndim else None
        if n is None or any(leaf.ndim < 1 or leaf.shape[0] != n for leaf in leaves):
            raise ValueError(
                "initial_states as a pytree must have leaves of shape (n, ...) with one n, got "
                f"{[leaf.shape for leaf in leaves]}"
            )
        shapes = tuple(leaf.shape[1:] for leaf in leaves)
        dtypes = tuple(
            leaf.dtype if np.issubdtype(leaf.dtype, np.floating) else np.dtype(float)
            for leaf in leaves
        )
        flat = np.concatenate([leaf.reshape(n, -1).astype(float) for leaf in leaves], axis=1)
        return _RaveledMap(F, treedef, shapes, dtypes), flat
    arr = np.asarray(initial_states)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"initial_states must be a float array (n, d), got dtype {arr.dtype}")
    return F, arr


def _alpha_of(F: Any) -> Any:
    alpha = getattr(F, "alpha", None)
    if alpha is None:
        return None
    try:
        return np.asarray(alpha, dtype=float)
    except (TypeError, ValueError):
        return None


def _prepare_inputs(F: Any, inputs: Any, n: int, dt: np.dtype) -> np.ndarray | None:
    width = getattr(F, "input_size", None)
    width = width if isinstance(width, int) else None
    if inputs is None:
        return None if width is None else np.zeros((n, width), dt)
    u = np.asarray(inputs)
    if not (np.issubdtype(u.dtype, np.floating) or np.issubdtype(u.dtype, np.integer)):
        raise TypeError(f"inputs must be a float array, got dtype {u.dtype}")
    if u.ndim == 1:
        u = np.broadcast_to(u, (n, u.shape[0]))
    elif u.ndim != 2 or u.shape[0] != n:
        raise ValueError(f"inputs must have shape (m,) or (n, m) = ({n}, m), got {u.shape}")
    if width is not None and u.shape[1] != width:
        raise ValueError(
            f"inputs has width {u.shape[1]} but F expects {width} (shape (m,) or (n, {width}))"
        )
    if not np.all(np.isfinite(u)):
        raise ValueError("inputs must be finite")
    return np.ascontiguousarray(u, dtype=dt)


def _check_map(F: Any, d: int, u: np.ndarray | None, dt: np.dtype) -> None:
    """``F`` maps a state ``(d,)`` (and an input like ``u``'s rows) to ``(d,)``: traced once per
    static part and array shapes of ``F`` (an ensemble's maps share one trace)."""
    arrays, static = split_map(F)
    shapes = tuple(None if a is None else (tuple(np.shape(a)), np.dtype(a.dtype))
                   for a in arrays)
    u_shape = None if u is None else tuple(u.shape[1:])
    try:
        hash(static)
    except TypeError:  # an unhashable static part: traced every time
        return _check_map_shapes.__wrapped__(static, shapes, d, u_shape, np.dtype(dt))
    return _check_map_shapes(static, shapes, d, u_shape, np.dtype(dt))


@functools.lru_cache(maxsize=64)
def _check_map_shapes(static: Any, shapes: tuple, d: int, u_shape: tuple | None,
                      dt: np.dtype) -> None:
    abstract = [None if s is None else jax.ShapeDtypeStruct(*s) for s in shapes]
    x = jax.ShapeDtypeStruct((d,), dt)
    uu = None if u_shape is None else jax.ShapeDtypeStruct(u_shape, dt)
    try:
        out = jax.eval_shape(lambda arrays, x, u: merge_map(arrays, static)(x, u), abstract, x,
                             uu)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"F failed on a state of shape ({d},) (from initial_states) and an input of shape "
            f"{u_shape} (from inputs): {err}"
        ) from err
    shape = getattr(out, "shape", None)
    if shape != (d,):
        raise ValueError(
            f"F must map a state of shape ({d},) to shape ({d},), got {shape}; check the width "
            "of initial_states"
        )


class _Options(NamedTuple):
    """The finder's checked options: the working dtype, the solver's keywords (``solve_kw``,
    :func:`~ctrnn_dyn.fixed_points.rounds._solve`) and what the steps after the solve use."""

    dt: np.dtype
    solve_kw: dict
    tol_q: float
    max_iters: int
    method: str
    polish_steps: int
    slow_rtol: float
    newton_restarts: int
    damping: float
    coverage_damping: float | None
    tol_unique: float | None
    outlier_distance_scale: float | None
    compute_jacobians: bool
    decompose: bool
    left_eigvecs: bool
    marginal_tol: float


def _check_damping(name: str, value: Any, alternative: str = "") -> None:
    """An LM damping parameter: a finite real number > 0 (``alternative``: what else the
    message names as accepted)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float > 0{alternative}, got {type(value).__name__}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be > 0{alternative}, got {value!r}")


def _checked_options(*, method, tol_q, tol_grad, max_iters, chunk_iters, linear_solver, cg_iters,
                     cg_tol, mixed_precision, grad_rtol, polish_steps, slow_rtol,
                     newton_restarts, damping, coverage_damping, tol_unique,
                     outlier_distance_scale,
                     compute_jacobians, decompose, left_eigvecs, marginal_tol, dtype) -> _Options:
    """:func:`find_fixed_points`' options checked, their defaults resolved."""
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
    _check_damping("damping", damping)
    if coverage_damping is not None:
        _check_damping("coverage_damping", coverage_damping, " or None")
    if not (np.isfinite(slow_rtol) and slow_rtol >= 0):
        raise ValueError(f"slow_rtol must be finite and >= 0, got {slow_rtol!r}")
    solve_kw = dict(
        method=method,
        tol_q=float(tol_q),
        tol_grad=float(tol_grad),
        max_iters=int(max_iters),
        chunk_iters=int(chunk_iters),
        linear_solver=linear_solver,  # resolved per state size
        cg_iters=int(cg_iters),
        cg_tol=float(cg_tol),
        grad_rtol=float(grad_rtol),
        mixed_precision=bool(mixed_precision and x64),
    )
    return _Options(
        dt=dt, solve_kw=solve_kw, tol_q=float(tol_q), max_iters=int(max_iters), method=method,
        polish_steps=int(polish_steps), slow_rtol=slow_rtol, newton_restarts=int(newton_restarts),
        damping=float(damping), coverage_damping=coverage_damping, tol_unique=tol_unique,
        outlier_distance_scale=outlier_distance_scale, compute_jacobians=compute_jacobians,
        decompose=decompose, left_eigvecs=left_eigvecs, marginal_tol=marginal_tol,
    )


class _Problem(NamedTuple):
    """One map's checked arguments: the map as given, the flat map, the starts as given
    (``x_init``), their finite rows and the solver's starts (non-finite rows zeroed), and the
    inputs ``(n, m)`` (``None``: ``F`` takes no input)."""

    F: Any
    Fm: Any
    x_init: np.ndarray
    finite: np.ndarray
    x_start: np.ndarray
    u: np.ndarray | None


def _prepare(F, initial_states, inputs, dt) -> _Problem:
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
    u = _prepare_inputs(F, inputs, n, dt)
    _check_map(Fm, d, u, dt)
    finite = np.all(np.isfinite(x0), axis=1)
    if not finite.all():
        logger.warning("%d of %d starts are not finite; they are skipped", (~finite).sum(), n)
    x_init = x0.astype(dt)
    return _Problem(F, Fm, x_init, finite, np.where(finite[:, None], x_init, 0.0).astype(dt), u)
