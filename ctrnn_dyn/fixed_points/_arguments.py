"""The finder's arguments checked and prepared (the float dtype is checked by
:func:`ctrnn_dyn._checks.float_dtype`): the map (raveled when the states are a pytree:
:class:`_RaveledMap`), the inputs, and a trial evaluation of the map on their shapes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


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
    x = jax.ShapeDtypeStruct((d,), dt)
    uu = None if u is None else jax.ShapeDtypeStruct(u.shape[1:], dt)
    try:
        out = jax.eval_shape(F, x, uu)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"F failed on a state of shape ({d},) (from initial_states) and an input of shape "
            f"{None if u is None else u.shape[1:]} (from inputs): {err}"
        ) from err
    shape = getattr(out, "shape", None)
    if shape != (d,):
        raise ValueError(
            f"F must map a state of shape ({d},) to shape ({d},), got {shape}; check the width "
            "of initial_states"
        )
