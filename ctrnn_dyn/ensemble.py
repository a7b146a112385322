r"""Many networks at once: ``vmap`` over params, optimiser states and keys; device sharding.

An ensemble is ``E`` independent networks that share a cell *architecture* and a task. Each
network ``i`` is trained exactly as :func:`ctrnn_dyn.train.train` would train it alone with
``key = keys[i]`` — same key split ``(init, data, eval) = split(key, 3)``, same per-step batches
``fold_in(data_key, step)``, same loss and optimiser step (the per-network step of
:func:`ctrnn_dyn.train.make_train_step`, vectorised with :func:`jax.vmap`) — so its result
equals the single-network run up to float32 round-off.

Per-network hyper-parameters (``hparams``) carry the network axis where the maths allows it:

* ``alpha``, ``noise_const`` — fields of the cell; the cell is rebuilt inside the vectorised step
  with the network's (traced) value;
* ``learning_rate``, ``weight_decay``, ``clip_norm``, ``b1``, ``b2`` — hyper-parameters of
  :func:`~ctrnn_dyn.train.default_optimizer`, injected into the optimiser *state* with
  :func:`optax.inject_hyperparams` so that each network's state holds its own value.

Everything else (sizes, ``steps``, ``batch_size``, the loss and its regularisers) is shared.

Layout and speed. The ``E`` networks are trained in chunks of ``chunk_size``; each chunk is one
compiled program that runs ``block_steps`` steps of the vectorised step inside a
``lax.fori_loop`` (one host round-trip per block). With several devices (the default
``devices="auto"``) the network axis of every chunk is sharded over them with
:mod:`jax.sharding`, and the block is written per device with :func:`jax.shard_map`: each
device steps only its own networks, with no communication (a ``lax.map`` over a sharded axis
left to the SPMD partitioner is all-gathered, so every device would train every network).

Where the speed comes from on a CPU (measured with ``benchmarks/ensemble.py``: 100 units, 100
inputs, T = 50, batch 256). One network's step is a chain of small dependent matmuls — per time
step one ``(B, n) × (n, n)`` forward and one backward — that XLA:CPU runs on one core at about
the speed of a loop of the same matmuls; vectorising them (``vmap``) turns them into batched
matmuls of the same per-network cost and multiplies every ``(T, B, ·)`` intermediate ``E``-fold,
so on one device an ensemble is only about as fast as a compiled loop (1.0–1.2×). The gains are
(1) parallelism: independent networks on separate cores, which one small network cannot use —
expose the cores as devices before JAX starts
(``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>``) and the default
``devices="auto"`` shards the chunk over them, each core looping over its networks at about the
speed of a single-network process on that core (on 2 cores 1.1× a compiled loop of the default
fast step, whose compiled recurrence kernels already use both cores, and 2.2× a loop through
``nn.RNN``); (2)
less work per network: a task with an ``input_basis`` (the modulo-3 task's three colour vectors)
is trained on its ``(B, T, 3)`` codes with ``basis @ K_in`` as the input kernel
(:func:`ctrnn_dyn.train.loss_fn`), removing a third of the step's arithmetic for ensemble and
loop alike. ``vmap_size`` bounds the number of networks vectorised together on a device
(``"auto"``: one at a time for large networks on a CPU); on a GPU, vectorise everything (on one
H200 an ensemble of 1024 trains 26× more networks per hour than a compiled loop:
``benchmarks/results/ensemble_h200.txt``).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ctrnn_dyn import train as _train

__all__ = [
    "CELL_HPARAMS",
    "OPTIMIZER_HPARAMS",
    "EnsembleHistory",
    "EnsembleResult",
    "train_ensemble",
    "network_params",
]

logger = logging.getLogger(__name__)

CELL_HPARAMS = ("alpha", "noise_const")
OPTIMIZER_HPARAMS = ("learning_rate", "weight_decay", "clip_norm", "b1", "b2")
_AXIS = "networks"


class EnsembleHistory(NamedTuple):
    """Per-network training history (NumPy).

    Attributes:
        loss, mse, grad_norm, accuracy: ``(E, steps)`` metrics of every train step (on that
            step's batch, params before the update) — as :class:`ctrnn_dyn.history.History`.
        eval_loss, eval_accuracy: ``(E,)`` held-out data loss and accuracy after the last step.
    """

    loss: np.ndarray
    mse: np.ndarray
    grad_norm: np.ndarray
    accuracy: np.ndarray
    eval_loss: np.ndarray
    eval_accuracy: np.ndarray


class EnsembleResult(NamedTuple):
    """Result of :func:`train_ensemble`; every array has the network axis first.

    Attributes:
        params: stacked params, leaves ``(E, ...)`` (``nn.RNN`` layout).
        opt_state: stacked optimiser states.
        history: :class:`EnsembleHistory`.
        nonfinite_step: ``(E,)`` first step with a non-finite loss, or −1.
        keys: ``(E,)`` the networks' keys, as given.
        hparams: ``{name: (E, ...) array}`` the per-network hyper-parameters used.
        wall_time: ``(E,)`` seconds of training per network (its chunk's time / chunk size).
        forward_path: the code that ran the forward pass (:func:`ctrnn_dyn.train.forward_path`).
    """

    params: Any
    opt_state: Any
    history: EnsembleHistory
    nonfinite_step: np.ndarray
    keys: jax.Array
    hparams: dict[str, np.ndarray]
    wall_time: np.ndarray
    forward_path: str = ""

    def __len__(self) -> int:
        return int(self.nonfinite_step.shape[0])

    def network(self, i: int) -> _train.TrainResult:
        """Network ``i`` as the :class:`~ctrnn_dyn.train.TrainResult` that ``train`` returns."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"network index {i} out of range for an ensemble of {n}")
        h = self.history
        steps = h.loss.shape[1]
        history = _train.History(
            step=np.arange(1, steps + 1, dtype=np.int64),
            loss=h.loss[i], mse=h.mse[i], grad_norm=h.grad_norm[i], accuracy=h.accuracy[i],
            eval_step=np.asarray([steps], np.int64),
            eval_loss=h.eval_loss[i:i + 1], eval_accuracy=h.eval_accuracy[i:i + 1],
        )
        ns = int(self.nonfinite_step[i])
        if ns >= 0:
            history = history.truncate(ns)._replace(
                eval_step=np.zeros(0, np.int64), eval_loss=np.zeros(0, np.float32),
                eval_accuracy=np.zeros(0, np.float32))
        take = _take(i)
        return _train.TrainResult(
            params=take(self.params), opt_state=take(self.opt_state), history=history,
            step=steps if ns < 0 else ns, nonfinite_step=None if ns < 0 else ns,
            forward_path=self.forward_path,
        )


def _take(i: int) -> Callable[[Any], Any]:
    return lambda tree: jax.tree_util.tree_map(lambda a: a[i], tree)


def network_params(params: Any, i: int) -> Any:
    """Params of network ``i`` from stacked ensemble params (leaves ``(E, ...)``)."""
    return _take(i)(params)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int >= {low}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _check_keys(keys: Any) -> jax.Array:
    if keys is None:
        raise ValueError("keys is required: one PRNG key per network, e.g. "
                         "jax.random.split(jax.random.key(0), E)")
    keys = keys if isinstance(keys, jax.Array) else jnp.asarray(keys)
    msg = ("keys must be a stack of PRNG keys with the network axis first: shape (E,) of typed "
           f"keys or (E, 2) uint32 raw keys, got shape {keys.shape} dtype {keys.dtype}")
    if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
        if keys.ndim != 1:
            raise ValueError(msg)
        return keys
    if keys.ndim != 2 or keys.dtype != jnp.uint32:
        raise ValueError(msg)
    try:
        return jax.random.wrap_key_data(keys)
    except (TypeError, ValueError):
        raise ValueError(msg) from None


def _check_hparams(hparams: Mapping[str, Any] | None, n: int, cell: nn.Module,
                   optimizer: Any) -> dict[str, np.ndarray]:
    if hparams is None:
        return {}
    if not isinstance(hparams, Mapping):
        raise TypeError(f"hparams must be a mapping name -> (E,) values, got {type(hparams)}")
    out: dict[str, np.ndarray] = {}
    for name, value in hparams.items():
        if name not in CELL_HPARAMS + OPTIMIZER_HPARAMS:
            raise ValueError(
                f"hparams[{name!r}]: unknown per-network hyper-parameter; supported: "
                f"{', '.join(CELL_HPARAMS + OPTIMIZER_HPARAMS)}"
            )
        arr = np.asarray(value, np.float32)
        if arr.ndim == 0 or arr.shape[0] != n:
            raise ValueError(
                f"hparams[{name!r}] must have the network axis first, shape ({n}, ...), "
                f"got shape {arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"hparams[{name!r}] must be finite")
        if name in CELL_HPARAMS:
            if not hasattr(cell, name):
                raise ValueError(f"hparams[{name!r}]: the cell has no field {name!r}")
            if name == "alpha":
                h = getattr(cell, "hidden_features", None)
                if arr.ndim > 2 or (arr.ndim == 2 and arr.shape[1] != h):
                    raise ValueError(
                        f"hparams['alpha'] must have shape ({n},) or ({n}, {h}), got {arr.shape}"
                    )
                if np.any(arr <= 0) or np.any(arr > 1):
                    raise ValueError("hparams['alpha'] must be in (0, 1]")
            elif arr.ndim != 1 or np.any(arr < 0):
                raise ValueError(f"hparams[{name!r}] must have shape ({n},) and be >= 0")
        else:
            if optimizer is not None:
                raise ValueError(
                    f"hparams[{name!r}] needs the default optimiser (optimizer=None); a custom "
                    "optimizer takes its hyper-parameters through optax.inject_hyperparams"
                )
            if arr.ndim != 1:
                raise ValueError(f"hparams[{name!r}] must have shape ({n},), got {arr.shape}")
        out[name] = arr
    return out


def _mesh(devices: Sequence[Any] | Mesh | None) -> Mesh | None:
    if devices is None:
        return None
    if isinstance(devices, Mesh):
        if devices.axis_names != (_AXIS,):
            raise ValueError(f"a mesh passed as devices must have the one axis {_AXIS!r}, "
                             f"got {devices.axis_names}")
        return devices
    devices = list(devices)
    if not devices:
        raise ValueError("devices must be None or a non-empty sequence of jax devices")
    return Mesh(np.asarray(devices), (_AXIS,))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


_CPU_VECTORISE_BELOW = 5e6


def _auto_vmap_size(cell: nn.Module, task: Any, batch_size: int) -> int | None:
    """``1`` (no vectorisation) for large per-network steps on a CPU, else ``None`` (vmap)."""
    if jax.default_backend() != "cpu":
        return None
    n = getattr(cell, "hidden_features", None)
    m = getattr(task, "input_size", None)
    T = getattr(task, "n_steps", None)
    if n is None or m is None or T is None:
        return None
    work = batch_size * T * n * (n + m)
    return 1 if work >= _CPU_VECTORISE_BELOW else None


def _optimizer(optimizer, learning_rate, opt_hp):
    if optimizer is not None:
        return optimizer
    if not opt_hp:
        return _train.default_optimizer(learning_rate)
    return optax.inject_hyperparams(_train.default_optimizer)(learning_rate=learning_rate)


class _Programs(NamedTuple):
    init: Callable
    block: Callable
    eval: Callable


_PROGRAMS: dict[Any, _Programs] = {}
_PROGRAMS_MAX = 16


def _signature(cell: nn.Module, task: Any) -> str:
    from ctrnn_dyn.checkpoint import cell_config

    return repr((type(cell).__name__, cell_config(cell), type(task).__name__, repr(task)))


def _programs(cell, task, opt, *, batch_size, rate_l2, weight_l2, loss, fast, eval_batches,
              eval_batch_size, vmap_size, mesh, cache_key) -> _Programs:
    """The three jitted, vectorised programs of a chunk (init, block of steps, evaluation).

    Cached per process on (cell, task, settings) when the optimiser is built here from plain
    numbers (``cache_key``), so that training chunk after chunk — or call after call, as a sweep
    worker does — compiles once per shape.
    """
    key = None
    if cache_key is not None:
        key = (_signature(cell, task), batch_size, rate_l2, weight_l2, loss, fast, eval_batches,
               eval_batch_size, vmap_size, mesh, cache_key)
        if key in _PROGRAMS:
            return _PROGRAMS[key]

    def cell_for(chp: dict[str, jax.Array]) -> nn.Module:
        return cell.clone(**chp) if chp else cell

    def init_one(key, ohp):
        k_init, k_data, k_eval = jax.random.split(key, 3)
        state = _train.init_state(cell, task, opt, key=k_init)
        if ohp:
            hyper = dict(state.opt_state.hyperparams)
            hyper.update({k: v.astype(hyper[k].dtype) for k, v in ohp.items()})
            state = state._replace(opt_state=state.opt_state._replace(hyperparams=hyper))
        return state, k_data, k_eval

    def step_one(state, k_data, chp):
        step = _train.make_train_step(cell_for(chp), task, opt, batch_size=batch_size,
                                      rate_l2=rate_l2, weight_l2=weight_l2, loss=loss, fast=fast)
        return step(state, k_data)

    def eval_one(params, k_eval, chp):
        ev = _train.make_eval_fn(cell_for(chp), task, batch_size=eval_batch_size,
                                 n_batches=eval_batches, loss=loss, fast=fast)
        return ev(params, k_eval)

    if vmap_size is None:
        step = jax.vmap(step_one)
    else:  # a loop inside the program over groups of vmap_size vectorised networks
        def step(s, k, c):
            return jax.lax.map(lambda a: step_one(*a), (s, k, c), batch_size=vmap_size)

    def local_block(states, k_data, chp, n, size):
        """``n <= size`` steps of the networks at hand; metrics in a ``(size, E)`` buffer."""
        m0 = jax.eval_shape(step, states, k_data, chp)[1]
        buf = jax.tree_util.tree_map(lambda a: jnp.zeros((size, *a.shape), a.dtype), m0)

        def body(i, carry):
            s, b = carry
            s, m = step(s, k_data, chp)
            b = jax.tree_util.tree_map(lambda bb, mm: bb.at[i].set(mm), b, m)
            return s, b

        return jax.lax.fori_loop(0, n, body, (states, buf))

    @functools.partial(jax.jit, static_argnames="size")
    def block(states, k_data, chp, n, *, size):
        """``n <= size`` steps (``n`` traced: one program serves every block length); metrics
        land in a ``(size, E)`` buffer of which the first ``n`` rows are filled."""
        if mesh is None:
            return local_block(states, k_data, chp, n, size)
        # Each device runs its own networks: written per device with shard_map, because the
        # SPMD partitioner cannot split a lax.map over the sharded network axis (it replicates
        # the loop, so every device would train every network).
        net = PartitionSpec(_AXIS)
        return jax.shard_map(
            functools.partial(local_block, size=size), mesh=mesh,
            in_specs=(net, net, net, PartitionSpec()),
            out_specs=(net, PartitionSpec(None, _AXIS)),
            # every output is per network (nothing replicated to check); flax's scan carries
            # would otherwise fail the varying-axes type check
            check_vma=False,
        )(states, k_data, chp, n)

    out = _Programs(jax.jit(jax.vmap(init_one)), block, jax.jit(jax.vmap(eval_one)))
    if key is not None:
        if len(_PROGRAMS) >= _PROGRAMS_MAX:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
        _PROGRAMS[key] = out
    return out


def train_ensemble(
    cell: nn.Module,
    task: Any,
    *,
    keys: jax.Array,
    steps: int,
    batch_size: int,
    hparams: Mapping[str, Any] | None = None,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 1e-3,
    rate_l2: float = 0.0,
    weight_l2: float = 0.0,
    loss: _train.LossKind = "mse",
    chunk_size: int | None = None,
    block_steps: int = 100,
    vmap_size: int | None | str = "auto",
    devices: Sequence[Any] | Mesh | str | None = "auto",
    eval_batches: int = 4,
    eval_batch_size: int | None = None,
    fast: bool | None = None,
    progress: bool = False,
) -> EnsembleResult:
    r"""Train ``E = len(keys)`` networks at once, each exactly as ``train(cell, task, key=k)``.

    Network ``i`` uses ``(k_init, k_data, k_eval) = split(keys[i], 3)``: params
    ``init_params(cell, task, key=k_init)``, step ``s`` the batch and noise of
    ``fold_in(k_data, s)``, and the held-out evaluation after the last step from ``k_eval`` —
    the conventions of :func:`ctrnn_dyn.train.train`. The per-network update is
    :func:`ctrnn_dyn.train.make_train_step`'s step, vectorised over (params, optimiser state,
    key, hyper-parameters) with :func:`jax.vmap`.

    Args:
        cell: the shared cell architecture (per-network ``alpha``/``noise_const`` via
            ``hparams``).
        task: a task from :mod:`ctrnn_dyn.tasks`.
        keys: ``(E,)`` typed keys or ``(E, 2)`` raw ``uint32`` keys, one per network.
        steps: optimiser steps per network.
        batch_size: trials per step.
        hparams: optional ``{name: (E,) values}`` (``alpha`` may be ``(E, n)``); names in
            :data:`CELL_HPARAMS` and, with the default optimiser, :data:`OPTIMIZER_HPARAMS`.
        optimizer: shared Optax transformation (default: ``default_optimizer(learning_rate)``).
        learning_rate: learning rate of the default optimiser when not in ``hparams``.
        rate_l2: L2 penalty on the rates; see :func:`ctrnn_dyn.train.loss_fn` (shared).
        weight_l2: L2 penalty on the kernels; see :func:`ctrnn_dyn.train.loss_fn` (shared).
        loss: loss kind; see :func:`ctrnn_dyn.train.loss_fn` (shared).
        chunk_size: networks vectorised in one program (default: all ``E``); the ensemble is
            trained chunk after chunk. With explicit ``devices`` it must be a multiple of their
            number (with ``"auto"`` it is rounded up; the padding networks are discarded).
        block_steps: steps per compiled block (one host sync per block).
        vmap_size: networks vectorised together inside a chunk's program; the program loops
            (``lax.map``) over the chunk's groups of ``vmap_size``. ``None`` = the whole chunk
            (plain ``vmap``); ``1`` = no vectorisation, one compiled loop over networks.
            ``"auto"`` (default): ``None`` on accelerators or for small networks; ``1`` on a
            CPU when one network's step is already large (``B·T·n·(n+m) >= 5e6``), where
            vectorising only multiplies the working set (see the module docstring). With
            several devices this applies to each device's share of the chunk.
        devices: shard the network axis over these devices (or a 1-axis ``Mesh`` named
            ``"networks"``); ``None`` = the default device; ``"auto"`` (default) = all of
            ``jax.devices()`` when there are several and ``E`` is at least their number. On a
            CPU, expose the cores as devices before JAX starts
            (``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>``): independent
            networks then run in parallel, which a single small network cannot.
        eval_batches: held-out batches after training (as in ``train``).
        eval_batch_size: their size (as in ``train``).
        fast: forward pass: ``None`` (default) the fast path where the cell supports it,
            ``True`` the fast path, ``False`` ``nn.RNN`` (see :func:`ctrnn_dyn.train.loss_fn`).
        progress: show a tqdm bar over steps.

    Returns:
        :class:`EnsembleResult` with the network axis first everywhere.

    Raises:
        ValueError / TypeError: bad ``keys`` shape, sizes < 1, unknown or mis-shaped
            ``hparams``, ``chunk_size`` not a multiple of the number of devices.
    """
    from tqdm.auto import tqdm

    keys = _check_keys(keys)
    n_net = int(keys.shape[0])
    steps = _check_int("steps", steps, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    block_steps = _check_int("block_steps", block_steps, 1)
    if isinstance(devices, str):
        if devices != "auto":
            raise ValueError(f"devices must be 'auto', None, a sequence of jax devices or a "
                             f"Mesh, got {devices!r}")
        devices = jax.devices() if 1 < len(jax.devices()) <= n_net else None
        auto_devices = True
    else:
        auto_devices = False
    if vmap_size == "auto":
        vmap_size = _auto_vmap_size(cell, task, batch_size)
    elif vmap_size is not None:
        vmap_size = _check_int("vmap_size", vmap_size, 1)
    eval_batches = _check_int("eval_batches", eval_batches, 1)
    chunk = n_net if chunk_size is None else _check_int("chunk_size", chunk_size, 1)
    chunk = min(chunk, n_net)
    mesh = _mesh(devices)
    if mesh is not None and auto_devices:
        chunk = -(-chunk // mesh.size) * mesh.size
    if mesh is not None and chunk % mesh.size:
        raise ValueError(
            f"chunk_size ({chunk}) must be a multiple of the number of devices ({mesh.size})"
            " to shard the network axis"
        )
    hp = _check_hparams(hparams, n_net, cell, optimizer)
    cell_hp = {k: v for k, v in hp.items() if k in CELL_HPARAMS}
    opt_hp = {k: v for k, v in hp.items() if k in OPTIMIZER_HPARAMS}
    opt = _optimizer(optimizer, learning_rate, opt_hp)
    _train.step._check_widths(cell, task)
    # build (and so validate) one step eagerly: errors surface here, not inside a trace
    _train.make_train_step(cell, task, opt, batch_size=batch_size, rate_l2=rate_l2,
                           weight_l2=weight_l2, loss=loss, fast=fast)
    forward_path = _train.forward_path(cell, fast)

    init_chunk, block_chunk, eval_chunk = _programs(
        cell, task, opt, batch_size=batch_size, rate_l2=rate_l2, weight_l2=weight_l2,
        loss=loss, fast=fast, eval_batches=eval_batches,
        eval_batch_size=eval_batch_size or batch_size, vmap_size=vmap_size, mesh=mesh,
        cache_key=None if optimizer is not None else (learning_rate, tuple(sorted(opt_hp))),
    )

    sharding = None if mesh is None else NamedSharding(mesh, PartitionSpec(_AXIS))

    n_chunks = math.ceil(n_net / chunk)
    outs = []
    bar = tqdm(total=n_chunks * steps, disable=not progress, desc="ensemble", unit="step")
    try:
        for c in range(n_chunks):
            lo, hi = c * chunk, min((c + 1) * chunk, n_net)
            idx = np.minimum(np.arange(lo, lo + chunk), n_net - 1)  # pad the last chunk
            ck = keys[idx]
            chp = {k: jnp.asarray(v[idx]) for k, v in cell_hp.items()}
            ohp = {k: jnp.asarray(v[idx]) for k, v in opt_hp.items()}
            if sharding is not None:
                ck, chp, ohp = jax.device_put((ck, chp, ohp), sharding)
            t0 = time.perf_counter()
            states, k_data, k_eval = init_chunk(ck, ohp)
            metrics = []
            done = 0
            size = min(block_steps, steps)
            while done < steps:
                n = min(size, steps - done)
                states, m = block_chunk(states, k_data, chp, jnp.asarray(n, jnp.int32),
                                        size=size)
                metrics.append(jax.tree_util.tree_map(lambda a, n=n: a[:n], jax.device_get(m)))
                done += n
                bar.update(n)
            ev_loss, ev_acc = eval_chunk(states.params, k_eval, chp)
            ev_loss, ev_acc = jax.device_get((ev_loss, ev_acc))
            wall = time.perf_counter() - t0
            m = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0), *metrics)
            keep = hi - lo
            outs.append((
                jax.tree_util.tree_map(lambda a, k=keep: np.asarray(a)[:k],
                                       jax.device_get(states)),
                jax.tree_util.tree_map(lambda a, k=keep: np.asarray(a).T[:k], m),
                np.asarray(ev_loss)[:keep], np.asarray(ev_acc)[:keep],
                np.full(keep, wall / (hi - lo)),
            ))
            logger.info("ensemble chunk %d/%d (%d networks) trained in %.2fs", c + 1, n_chunks,
                        keep, wall)
    finally:
        bar.close()

    def cat(*xs):
        return np.concatenate(xs, axis=0)

    states = jax.tree_util.tree_map(cat, *[o[0] for o in outs])
    m = jax.tree_util.tree_map(cat, *[o[1] for o in outs])
    history = EnsembleHistory(
        loss=m.loss, mse=m.mse, grad_norm=m.grad_norm, accuracy=m.accuracy,
        eval_loss=cat(*[o[2] for o in outs]), eval_accuracy=cat(*[o[3] for o in outs]),
    )
    return EnsembleResult(
        params=states.params,
        opt_state=states.opt_state,
        history=history,
        nonfinite_step=np.asarray(states.nonfinite_step, np.int64),
        keys=keys,
        hparams=hp,
        wall_time=cat(*[o[4] for o in outs]),
        forward_path=forward_path,
    )
