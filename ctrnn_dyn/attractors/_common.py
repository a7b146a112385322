"""What the attractor analyses share: the precision (``dtype``), argument checks, the Jacobian
dispatch, orbits, and the frame of their batch versions (maps stacked per group)."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ctrnn_dyn import _checks
from ctrnn_dyn._base import jit_map
from ctrnn_dyn._batch import network_sharding, stacked_groups, vmap_over_maps

Map = Callable[[jax.Array, Any], jax.Array]


def _precision(dtype: Any) -> tuple[Any, Any]:
    """``(context, jnp dtype)`` for the keyword ``dtype`` (checked: float32 or float64)."""
    dt = _checks.float_dtype(dtype)
    return _checks.precision_context(dt), jnp.dtype(dt)


def _check_F(F: Any) -> None:
    if not callable(F):
        raise TypeError(f"F must be a callable one-step map F(x, u) -> x_next, got {type(F)}")


def _check_state(x: Any, name: str, ndim: tuple[int, ...] = (1,)) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim not in ndim:
        shapes = " or ".join({1: "(n,)", 2: "(B, n)"}[d] for d in ndim)
        raise ValueError(f"{name} must have shape {shapes}, got {arr.shape}")
    if arr.shape[-1] < 1:
        raise ValueError(f"{name} must have at least one state dimension, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return arr


def _check_positive(value: Any, name: str, integer: bool = False) -> None:
    """A count ``>= 1`` (``integer``) or a positive number; ``TypeError`` for a wrong type,
    ``ValueError`` for a wrong value, naming ``name``."""
    if integer:
        _checks.check_int(name, value, 1)
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__} {value!r}")
    if not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _check_nonneg_int(value: Any, name: str) -> None:
    _checks.check_int(name, value, 0)


def _host_u(inputs: Any, dtype) -> np.ndarray | None:
    """The constant input ``inputs`` ``(m,)`` (or ``None``), checked, as a host array of
    ``dtype``."""
    if inputs is None:
        return None
    arr = np.asarray(inputs)
    if arr.ndim != 1:
        raise ValueError(f"inputs must have shape (m,) (held constant), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("inputs contains non-finite values (nan or inf)")
    return arr.astype(dtype)


def _as_u(inputs: Any, dtype) -> jax.Array | None:
    """:func:`_host_u` put on the device (``jnp.asarray`` of a host array compiles a small
    program per shape)."""
    arr = _host_u(inputs, dtype)
    return None if arr is None else jax.device_put(arr)


def _jacobian(F: Map, x: jax.Array, u: Any) -> jax.Array:
    """``∂F/∂x`` at ``x``: ``F.jacobian`` when the map has one (analytic), else ``jacfwd``."""
    jac = getattr(F, "jacobian", None)
    if callable(jac):
        return jac(x, u)
    return jax.jacfwd(lambda y: F(y, u))(x)


def _iterate(F: Map, x: jax.Array, u: Any, n_steps: int) -> jax.Array:
    def step(y, _):
        return F(y, u), None

    return lax.scan(step, x, None, length=n_steps)[0]


def _orbit(F: Map, x: jax.Array, u: Any, n_steps: int) -> jax.Array:
    """``(n_steps + 1, n)``: ``x, F(x), …, F^{n_steps}(x)``."""

    def step(y, _):
        y = F(y, u)
        return y, y

    _, xs = lax.scan(step, x, None, length=n_steps)
    return jnp.concatenate([x[None], xs], axis=0)


@jit_map(static_argnames=("n_transient", "n_steps"))
def _settled_orbit(F: Map, x: jax.Array, u: Any, n_transient: int, n_steps: int) -> jax.Array:
    """``(n_steps + 1, n)`` orbit after ``n_transient`` settling steps."""
    return _orbit(F, _iterate(F, x, u, n_transient), u, n_steps)


@jit_map(static_argnames=("n_transient", "n_steps", "mesh"))
def _settled_orbits(F: Map, xs: jax.Array, u: Any, n_transient: int, n_steps: int,
                    mesh: Any = None) -> jax.Array:
    """:func:`_settled_orbit` for a stacked map (:func:`ctrnn_dyn._batch.stack_maps`), one start
    per network ``xs (E, n)`` and inputs ``(E, m)`` or ``None``: ``(E, n_steps + 1, n)``, the
    networks split over ``mesh`` (``None``: one device)."""
    return vmap_over_maps(
        lambda F, x, u: _orbit(F, _iterate(F, x, u, n_transient), u, n_steps), mesh)(F, xs, u)


@jit_map
def _jacobians(F, xs, u):
    """``(N, n, n)`` Jacobians of ``F`` at the rows of ``xs``."""
    return jax.vmap(lambda x: _jacobian(F, x, u))(xs)


def _checked_maps(maps: Any) -> list:
    """The maps of a batch analysis as a list: at least one, each callable."""
    maps = list(maps)
    if not maps:
        raise ValueError("maps must hold at least one map")
    for F in maps:
        _check_F(F)
    return maps


def _known_options(options: dict, allowed: Any, name: str) -> None:
    """``TypeError`` naming the options of ``name`` that are not ``allowed``."""
    unknown = set(options) - set(allowed)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)} for {name}; expected some of "
                        f"{sorted(allowed)}")


def _same_shape(arrs: list[np.ndarray], name: str) -> None:
    for i, a in enumerate(arrs[1:], 1):
        if a.shape != arrs[0].shape:
            raise ValueError(f"{name}[{i}] has shape {a.shape}, expected {arrs[0].shape} like "
                             f"{name}[0]")


def _stacked_batches(maps: list, starts: list[np.ndarray], inputs: list, dt: Any,
                     devices: Any):
    """Per group of stackable maps (:func:`ctrnn_dyn._batch.stacked_groups`): ``(indices,
    stacked map, starts (E, ...), inputs (E, m) or None, mesh)``, the starts and inputs cast
    to ``dt`` and on the device (call it inside ``dt``'s precision context)."""
    u_list = [_host_u(u, dt) for u in inputs]  # stacked on the host, put on the devices once
    if len({None if u is None else u.shape for u in u_list}) != 1:
        raise ValueError("inputs must be all None or all of one shape (m,)")
    for idx, padded, F, mesh in stacked_groups(maps, devices):
        # stacked on the host and put where the program takes them (no program per shape)
        where = network_sharding(mesh)
        xs = jax.device_put(np.stack([starts[i] for i in padded]).astype(dt), where)
        u = None if u_list[0] is None else jax.device_put(
            np.stack([u_list[i] for i in padded]), where)
        yield idx, F, xs, u, mesh


def _run_batch(maps: list, starts: list[np.ndarray], inputs: list, dtype: Any, devices: Any,
               run: Callable) -> list[tuple[np.ndarray, ...]]:
    """The frame of the batch analyses: per group of stackable maps (:func:`_stacked_batches`)
    ``run(F, xs, u, mesh)`` called once; returns each map's slice of its outputs (host
    arrays), in the order of ``maps``."""
    context, dt = _precision(dtype)
    out: list[Any] = [None] * len(maps)
    with context:
        for idx, F, xs, u, mesh in _stacked_batches(maps, starts, inputs, dt, devices):
            raw = [np.asarray(a) for a in run(F, xs, u, mesh)]
            for j, i in enumerate(idx):
                out[i] = tuple(a[j] for a in raw)
    return out
