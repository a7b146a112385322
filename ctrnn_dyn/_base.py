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
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec

__all__ = ["jit_map", "split_map", "merge_map", "stack_maps", "vmap_over_maps", "NETWORK_AXIS",
           "network_mesh", "serial_lapack", "serial_when", "stacked_groups"]


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

    @functools.partial(jax.jit, static_argnames=("static_part", *static_argnames),
                       compiler_options=compiler_options)
    def compiled(arrays, static_part, **kwargs):
        return fun(**{first: merge_map(arrays, static_part)}, **kwargs)

    @functools.wraps(fun)
    def call(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        arrays, static = split_map(arguments.pop(first))
        return compiled(arrays, static, **arguments)

    call.compiled = compiled  # the one jitted function: its cache size counts compilations
    return call


def stack_maps(maps: Any) -> list[tuple[list[int], Any]]:
    """Group ``maps`` by static part and stack each group's array leaves on a new leading axis.

    Returns ``[(indices, stacked map), ...]``: ``indices`` into ``maps`` (ascending), and one map
    of the group's structure whose array leaves are ``(len(indices), ...)`` (a function of it
    ``vmap`` -s over :func:`split_map`'s arrays and merges each slice back). Maps of one network
    shape, like an ensemble's, form one group.

    Raises:
        ValueError: maps of one static part whose leaves differ in shape.
    """
    groups: dict[_Static, list[int]] = {}
    splits = [split_map(F) for F in maps]
    for i, (_, static) in enumerate(splits):
        groups.setdefault(static, []).append(i)
    out = []
    for static, idx in groups.items():
        arrays = []
        for j, leaf in enumerate(splits[idx[0]][0]):
            if leaf is None:
                arrays.append(None)
                continue
            shapes = {np.shape(splits[i][0][j]) for i in idx}
            if len(shapes) != 1:
                raise ValueError(f"maps {idx} share one structure but leaf {j} of their arrays "
                                 f"has different shapes {sorted(shapes)}: they cannot be stacked")
            # stacked on the host and put on the device: an eager jnp.stack (or jnp.asarray)
            # compiles a small program per leaf shape, which a first call pays for in latency
            arrays.append(jax.device_put(np.stack([np.asarray(splits[i][0][j]) for i in idx])))
        out.append((idx, merge_map(arrays, static)))
    return out


def vmap_over_maps(fun: Callable, mesh: Mesh | None = None) -> Callable:
    """``fun(F, *args)`` for one map -> the same for a stacked map (array leaves ``(E, ...)``,
    as :func:`stack_maps` makes) and arguments with a leading axis ``E`` (``None`` allowed):
    ``vmap`` -ped over the networks, each slice of ``F`` merged back into a map of its own.

    With a ``mesh`` (:func:`network_mesh`) the networks are split over its devices
    (``shard_map``: each device runs its own networks, nothing is communicated); ``E`` must be
    a multiple of ``mesh.size``."""

    def call(F: Any, *args: Any) -> Any:
        arrays, static = split_map(F)

        def networks(arrays: Any, *xs: Any) -> Any:
            sizes = {np.shape(leaf)[0] for leaf in jax.tree_util.tree_leaves((arrays, xs))}
            if sizes == {1}:  # one network: its own program, without a vmap of size one
                one = jax.tree_util.tree_map(lambda a: a[0], (arrays, xs))
                out = fun(merge_map(one[0], static), *one[1])
                return jax.tree_util.tree_map(lambda a: a[None], out)
            return jax.vmap(lambda a, *x: fun(merge_map(a, static), *x))(arrays, *xs)

        if mesh is not None:
            spec = PartitionSpec(NETWORK_AXIS)
            # check_vma off: constants made inside fun (an identity, a zero carry) are not
            # "varying" over the mesh axis, which jax.linearize's tangents would have to be
            networks = jax.shard_map(networks, mesh=mesh, in_specs=spec, out_specs=spec,
                                     check_vma=False)
        return networks(arrays, *args)

    return call


#: The name of the network axis of a device mesh (an ensemble's, an analysis batch's).
NETWORK_AXIS = "networks"


def network_mesh(devices: Sequence[Any] | Mesh | str | None, n_networks: int) -> Mesh | None:
    """The 1-axis device mesh that a network axis of ``n_networks`` is split over.

    ``devices``: ``"auto"`` (all of ``jax.devices()`` when there are several and at least one
    network per device, else ``None``), ``None`` (one device), a sequence of devices, or a
    ``Mesh`` with the one axis :data:`NETWORK_AXIS`. On a CPU, cores become devices only when
    JAX starts with ``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>``.

    Raises:
        ValueError: another string, an empty sequence, or a mesh with other axes.
    """
    if isinstance(devices, str):
        if devices != "auto":
            raise ValueError(f"devices must be 'auto', None, a sequence of jax devices or a "
                             f"Mesh, got {devices!r}")
        devices = jax.devices() if 1 < len(jax.devices()) <= n_networks else None
    if devices is None:
        return None
    if isinstance(devices, Mesh):
        if devices.axis_names != (NETWORK_AXIS,):
            raise ValueError(f"a mesh passed as devices must have the one axis "
                             f"{NETWORK_AXIS!r}, got {devices.axis_names}")
        return devices
    devices = list(devices)
    if not devices:
        raise ValueError("devices must be None or a non-empty sequence of jax devices")
    return Mesh(np.asarray(devices), (NETWORK_AXIS,))


def serial_lapack(mesh: Mesh | None) -> bool:
    """Whether a program split over ``mesh`` must call LAPACK one matrix at a time.

    jaxlib's CPU LAPACK kernels (Cholesky, LU, QR, ...) spread a batch of matrices over XLA's
    thread pool and block a pool thread until it is done. Programs running on several CPU
    devices at once can block every pool thread that way and deadlock (seen with 2 forced host
    devices on 2 cores); one matrix per call runs inline."""
    return mesh is not None and mesh.size > 1 and mesh.devices.flat[0].platform == "cpu"


def serial_when(serial: bool, fun: Callable) -> Callable:
    """``fun`` whose ``vmap`` is a loop over the batch (one LAPACK call per matrix) when
    ``serial`` (see :func:`serial_lapack`), else ``fun``."""
    return jax.custom_batching.sequential_vmap(fun) if serial else fun


def stacked_groups(maps: Any, devices: Any) -> list[tuple[list[int], list[int], Any, Mesh | None]]:
    """:func:`stack_maps` for an analysis over devices: per group of ``maps``, ``(indices,
    padded, stacked map, mesh)``: the group's indices into ``maps``, the same padded with copies
    of its first to a multiple of the mesh's devices (the stacked map holds ``padded``), and the
    :func:`network_mesh` of ``devices`` for the group (``None``: one device)."""
    out = []
    for idx, F in stack_maps(maps):
        mesh = network_mesh(devices, len(idx))
        padded = idx + [idx[0]] * (-len(idx) % (1 if mesh is None else mesh.size))
        if len(padded) > len(idx):
            ((_, F),) = stack_maps([maps[i] for i in padded])
        out.append((idx, padded, F, mesh))
    return out
