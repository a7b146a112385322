"""Many maps at once: maps grouped and stacked on a network axis, a function of one map
``vmap`` -ped over that axis, and the axis split over devices.

Maps of one static part (:func:`ctrnn_dyn._base.split_map`: an ensemble's
:class:`~ctrnn_dyn.dynamics.OneStepMap` s) stack into one map whose array leaves have a leading
axis ``E``; :func:`vmap_over_maps` runs a one-map function over it, on one device or split over a
:func:`network_mesh` with ``shard_map`` (each device its own networks, nothing communicated).
The batch analyses (:func:`~ctrnn_dyn.fixed_points.find_fixed_points_batch`,
:func:`~ctrnn_dyn.attractors.classify_dynamics_batch`, ``lyapunov_spectrum_batch``) and the
ensemble's training share it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ctrnn_dyn._base import _Static, merge_map, split_map

__all__ = ["map_groups", "stack_maps", "take_networks", "vmap_over_maps", "over_devices",
           "NETWORK_AXIS", "network_mesh", "serial_lapack", "serial_when", "stacked_groups"]


def map_groups(maps: Any) -> list[list[int]]:
    """Indices of ``maps`` grouped by static part (ascending within a group): the maps of a
    group can be stacked on a network axis (:func:`stack_maps`); nothing is copied.

    Raises:
        ValueError: maps of one static part whose leaves differ in shape.
    """
    groups: dict[_Static, list[int]] = {}
    splits = [split_map(F) for F in maps]
    for i, (_, static) in enumerate(splits):
        groups.setdefault(static, []).append(i)
    for idx in groups.values():
        for j, leaf in enumerate(splits[idx[0]][0]):
            shapes = {np.shape(splits[i][0][j]) for i in idx} if leaf is not None else set()
            if len(shapes) > 1:
                raise ValueError(f"maps {idx} share one structure but leaf {j} of their arrays "
                                 f"has different shapes {sorted(shapes)}: they cannot be stacked")
    return list(groups.values())


def stack_maps(maps: Any, mesh: Mesh | None = None) -> list[tuple[list[int], Any]]:
    """Group ``maps`` by static part (:func:`map_groups`) and stack each group's array leaves on
    a new leading axis, split over ``mesh``'s devices along it where given (as the programs of
    :func:`vmap_over_maps` take them: put on one device, every call would move them, and each
    leaf shape would compile a program that slices it).

    Returns ``[(indices, stacked map), ...]``: ``indices`` into ``maps`` (ascending), and one map
    of the group's structure whose array leaves are ``(len(indices), ...)`` (a function of it
    ``vmap`` -s over :func:`split_map`'s arrays and merges each slice back). Maps of one network
    shape, like an ensemble's, form one group.

    Raises:
        ValueError: maps of one static part whose leaves differ in shape.
    """
    out = []
    where = network_sharding(mesh)
    for idx in map_groups(maps):
        splits = [split_map(maps[i]) for i in idx]
        # stacked on the host and put on the device: an eager jnp.stack (or jnp.asarray)
        # compiles a small program per leaf shape, which a first call pays for in latency
        arrays = [None if leaf is None else
                  jax.device_put(np.stack([np.asarray(sp[0][j]) for sp in splits]), where)
                  for j, leaf in enumerate(splits[0][0])]
        out.append((idx, merge_map(arrays, splits[0][1])))
    return out


def network_sharding(mesh: Mesh | None) -> NamedSharding | None:
    """Arrays with a leading network axis split over ``mesh``'s devices (``None``: one device),
    as :func:`vmap_over_maps`'s programs take them."""
    return None if mesh is None else NamedSharding(mesh, PartitionSpec(NETWORK_AXIS))


def take_networks(F: Any, nets: Any) -> Any:
    """The stacked map of networks ``nets`` (indices, repeats allowed) of a stacked ``F``."""
    arrays, static = split_map(F)  # taken on the host: no eager gather compiled per shape
    return merge_map([None if a is None else jax.device_put(np.asarray(a)[np.asarray(nets)])
                      for a in arrays], static)


def vmap_over_maps(fun: Callable, mesh: Mesh | None = None) -> Callable:
    """``fun(F, *args)`` for one map -> the same for a stacked map (array leaves ``(E, ...)``,
    as :func:`stack_maps` makes) and arguments with a leading axis ``E`` (``None`` allowed):
    ``vmap`` -ped over the networks, each slice of ``F`` merged back into a map of its own.

    With a ``mesh`` (:func:`network_mesh`) the networks are split over its devices
    (:func:`over_devices`); ``E`` must be a multiple of ``mesh.size``."""

    def networks(F: Any, *xs: Any) -> Any:
        arrays, static = split_map(F)
        sizes = {np.shape(leaf)[0] for leaf in jax.tree_util.tree_leaves((arrays, xs))}
        if sizes == {1}:  # one network: its own program, without a vmap of size one
            one = jax.tree_util.tree_map(lambda a: a[0], (arrays, xs))
            out = fun(merge_map(one[0], static), *one[1])
            return jax.tree_util.tree_map(lambda a: a[None], out)
        return jax.vmap(lambda a, *x: fun(merge_map(a, static), *x))(arrays, *xs)

    return over_devices(networks, mesh)


def over_devices(fun: Callable, mesh: Mesh | None) -> Callable:
    """``fun(F, *args)`` of a stacked map and arguments with a leading axis ``E`` -> the same
    with the networks split over ``mesh``'s devices (``shard_map``: each device calls ``fun`` on
    its own networks, nothing is communicated; ``E`` a multiple of ``mesh.size``); ``fun``
    itself for ``mesh=None``."""
    if mesh is None:
        return fun

    def call(F: Any, *args: Any) -> Any:
        arrays, static = split_map(F)
        spec = PartitionSpec(NETWORK_AXIS)
        # check_vma off: constants made inside fun (an identity, a zero carry) are not
        # "varying" over the mesh axis, which jax.linearize's tangents would have to be
        return jax.shard_map(lambda a, *xs: fun(merge_map(a, static), *xs), mesh=mesh,
                             in_specs=spec, out_specs=spec, check_vma=False)(arrays, *args)

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


#: The batch analyses run a group's networks in chunks whose parameters hold at most this many
#: numbers (8 MiB in float64), so that a scan's networks stay in the last-level cache from step
#: to step. Classifying 256 networks of 100 units (8 starts, 2,500 steps; Gram–Schmidt on the
#: compiled kernel), medians of 3: one device 17.0 s in chunks of 2**18 numbers, 15.9 s of
#: 2**19, 15.0 s of 2**20, 24.3 s in one program; two host devices 9.2, 9.1, 9.0 and 14.9 s
#: (2**21: 9.6 s).
_CHUNK_NUMBERS = 2**20


def stacked_groups(maps: Any, devices: Any) -> list[tuple[list[int], list[int], Any, Mesh | None]]:
    """:func:`stack_maps` for an analysis over devices, in chunks: per chunk of a group of
    ``maps`` (equal chunks whose parameters hold at most :data:`_CHUNK_NUMBERS` numbers),
    ``(indices, padded, stacked map, mesh)``: the chunk's indices into ``maps``, the same padded
    with copies of its first to the chunk size (a multiple of the mesh's devices; one compiled
    shape per group), the stacked map of ``padded``, and the :func:`network_mesh` of
    ``devices`` for the chunk (``None``: one device)."""
    out = []
    for idx in map_groups(maps):
        arrays, _ = split_map(maps[idx[0]])
        per_network = max(1, sum(int(np.size(a)) for a in arrays if a is not None))
        cap = max(1, _CHUNK_NUMBERS // per_network)
        size = -(-len(idx) // -(-len(idx) // cap))  # equal chunks of <= cap networks
        mesh = network_mesh(devices, size)
        if mesh is not None:
            size = -(-size // mesh.size) * mesh.size
        for c in range(0, len(idx), size):
            chunk = idx[c: c + size]
            padded = chunk + [chunk[0]] * (size - len(chunk))
            ((_, F),) = stack_maps([maps[i] for i in padded], mesh)
            out.append((chunk, padded, F, mesh))
    return out
