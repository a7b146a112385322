"""What every analysis shares: compiling a function of a map ``F`` once per *shape* of map.

An analysis takes the map ``F(x, u)`` as its first argument. Compiled with ``F`` as a static
argument, each network's parameters would be baked into its own program and every new network
would compile again. :func:`jit_map` instead splits ``F`` the way equinox's ``filter_jit`` does:
the array leaves of its pytree (a :class:`~ctrnn_dyn.dynamics.OneStepMap`'s parameters, a
:class:`~ctrnn_dyn.interop.TorchMap`'s weights, a ``jax.tree_util.Partial``'s array arguments)
are traced, and the rest (the function itself, a cell's configuration, Python numbers) is static
and compared by equality. Two networks of the same shapes then share one compiled program. A plain
Python function is all static, as with ``static_argnames``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

__all__ = ["jit_map", "split_map", "merge_map"]


def _traced(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array | np.ndarray | np.generic)


class _Static:
    """The static part of a map: its tree structure and its non-array leaves."""

    __slots__ = ("treedef", "leaves")

    def __init__(self, treedef: Any, leaves: tuple):
        self.treedef, self.leaves = treedef, leaves

    def __hash__(self) -> int:
        return hash((self.treedef, self.leaves))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, _Static) and self.treedef == other.treedef
                and self.leaves == other.leaves)


def split_map(F: Any) -> tuple[list, _Static]:
    """``(arrays, static)``: ``F``'s array leaves (``None`` elsewhere) and the rest."""
    leaves, treedef = jax.tree_util.tree_flatten(F)
    arrays = [leaf if _traced(leaf) else None for leaf in leaves]
    static = _Static(treedef, tuple(None if _traced(leaf) else leaf for leaf in leaves))
    return arrays, static


def merge_map(arrays: list, static: _Static) -> Any:
    """Inverse of :func:`split_map`."""
    leaves = [a if s is None else s for a, s in zip(arrays, static.leaves, strict=True)]
    return jax.tree_util.tree_unflatten(static.treedef, leaves)


def jit_map(fun: Callable | None = None, *, static_argnames: tuple[str, ...] = (),
            map_argname: str | None = None,
            compiler_options: dict[str, Any] | None = None) -> Callable:
    """``jax.jit`` for ``fun(F, ...)``: ``F``'s array leaves traced, the rest of ``F`` static.

    ``F`` is the first parameter, or the one named ``map_argname``. Other arguments follow
    ``jax.jit``'s rules, with ``static_argnames`` static (they may be passed by position or by
    name). ``compiler_options`` go to this function's XLA compilation only (``jax.jit``'s).
    """
    if fun is None:
        return functools.partial(jit_map, static_argnames=static_argnames,
                                 map_argname=map_argname, compiler_options=compiler_options)
    signature = inspect.signature(fun)
    first = map_argname or next(iter(signature.parameters))

    def compiled(arrays, static_part, **kwargs):
        return fun(**{first: merge_map(arrays, static_part)}, **kwargs)

    # named after fun: JAX's compile logs and profiles show which analysis compiled
    compiled.__name__, compiled.__qualname__ = fun.__name__, fun.__qualname__
    compiled = jax.jit(compiled, static_argnames=("static_part", *static_argnames),
                       compiler_options=compiler_options)

    @functools.wraps(fun)
    def call(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        arrays, static = split_map(arguments.pop(first))
        return compiled(arrays, static, **arguments)

    call.compiled = compiled  # the one jitted function: its cache size counts compilations
    return call
