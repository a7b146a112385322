"""Training checkpoints: params, optimiser state, step, history and configuration — atomic, safe.

File format (one file, ``<run dir>/checkpoint``)::

    b"CTRNNCK1" | sha256(payload) (32 bytes) | payload

where the payload is a msgpack document written with ``flax.serialization.msgpack_serialize``
(arrays as raw bytes with dtype and shape; nothing is ever unpickled). The optimiser state is
stored as its flattened leaves keyed by their pytree paths and restored into a template
(``optimizer.init(params)``), with every path, shape and dtype checked. Writes go to a temporary
file in the same directory (``.checkpoint.tmp-<pid>-<token>``, locked by its writer), are
fsynced, and replace the old file with ``os.replace`` (the directory is fsynced too); a kill at
any moment leaves either the old or the new checkpoint. A write that fails (a full disk) removes
its temporary file; temporaries left by a killed writer are removed by
:func:`remove_stale_temporaries`, which :func:`save` and ``ctrnn_dyn.train.train`` call when they
open a run directory. A truncated or corrupt file fails the checksum and raises ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import serialization

from ctrnn_dyn import _files
from ctrnn_dyn.history import History

__all__ = [
    "CHECKPOINT_NAME",
    "Checkpoint",
    "save",
    "load",
    "remove_stale_temporaries",
    "cell_config",
    "cell_from_config",
    "task_config_or_none",
]

CHECKPOINT_NAME = "checkpoint"
_MAGIC = b"CTRNNCK1"
_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """Everything needed to continue or inspect a training run.

    Attributes:
        params: network variables (``nn.RNN`` layout ``{"params": {"cell": ...}}``).
        opt_state: optimiser state (restored into its structure when ``load`` got a template,
            else a dict ``{pytree path: array}``).
        step: number of steps taken.
        history: :class:`ctrnn_dyn.history.History` (``.loss`` etc.).
        cell_config: JSON description of the cell (see :func:`cell_config`), or None.
        task_config: JSON description of the task (``ctrnn_dyn.tasks.task_config``), or None.
        key: raw data of the run's PRNG key (uint32 array), or None.
        nonfinite_step: first step with a non-finite loss, or None.
        extra: other JSON-able run settings (batch size, learning rate, …).
    """

    params: Any
    opt_state: Any
    step: int
    history: Any
    cell_config: dict | None = None
    task_config: dict | None = None
    key: np.ndarray | None = None
    nonfinite_step: int | None = None
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def cell(self) -> nn.Module:
        """The cell rebuilt from :attr:`cell_config`."""
        if self.cell_config is None:
            raise ValueError("this checkpoint has no cell configuration")
        return cell_from_config(self.cell_config)

    @property
    def task(self) -> Any:
        """The task rebuilt from :attr:`task_config`."""
        from ctrnn_dyn.tasks import task_from_config

        if self.task_config is None:
            raise ValueError("this checkpoint has no task configuration")
        return task_from_config(self.task_config)


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------

_ACTIVATIONS = {
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "sigmoid": nn.sigmoid,
    "softplus": nn.softplus,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "identity": lambda x: x,
}


def _activation_name(fn: Any) -> str:
    for name, f in _ACTIVATIONS.items():
        if fn is f:
            return name
    return getattr(fn, "__name__", repr(fn))


def _json_value(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray | jax.Array):
        a = np.asarray(v)
        return a.item() if a.ndim == 0 else a.tolist()
    if isinstance(v, tuple | list):
        return [_json_value(x) for x in v]
    if callable(v):
        return _activation_name(v)
    return repr(v)


def cell_config(cell: nn.Module) -> dict[str, Any]:
    """JSON-able description ``{"type": class name, field: value, ...}`` of a cell.

    Arrays become lists, callables their names (``activation_fn="tanh"``); initialisers are not
    recorded (they do not affect a trained network).
    """
    out: dict[str, Any] = {"type": type(cell).__name__}
    for f in dataclasses.fields(cell):
        if f.name in ("parent", "name") or f.name.endswith("_init"):
            continue
        out[f.name] = _json_value(getattr(cell, f.name))
    return out


def cell_from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild a ``CTRNNCell`` / ``RateCTRNNCell`` from :func:`cell_config`'s dict.

    Raises:
        ValueError: unknown cell type or activation name.
    """
    from ctrnn_dyn.model import CTRNNCell, RateCTRNNCell

    config = dict(config)
    kind = config.pop("type", None)
    classes = {"CTRNNCell": CTRNNCell, "RateCTRNNCell": RateCTRNNCell}
    if kind not in classes:
        raise ValueError(f"cannot rebuild a cell of type {kind!r}; known: {sorted(classes)}")
    cls = classes[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for k, v in config.items():
        if k not in names:
            continue
        if k == "activation_fn":
            if v not in _ACTIVATIONS:
                raise ValueError(f"unknown activation {v!r}; known: {sorted(_ACTIVATIONS)}")
            v = _ACTIVATIONS[v]
        elif k in ("dtype", "param_dtype"):
            continue
        elif isinstance(v, list):
            v = np.asarray(v, np.float32)
        kwargs[k] = v
    return cls(**kwargs)


def task_config_or_none(task: Any) -> dict | None:
    """``ctrnn_dyn.tasks.task_config(task)``, or None for an unregistered task type."""
    from ctrnn_dyn.tasks import task_config

    try:
        return task_config(task)
    except TypeError:
        return None


# ---------------------------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------------------------


def _to_numpy(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: np.asarray(jax.device_get(a)), tree)


def _flatten(tree: Any) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): np.asarray(jax.device_get(v)) for p, v in leaves}


def _resolve(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    return p


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete temporary files that an interrupted :func:`save` left next to a checkpoint.

    A temporary is stale when no running process is writing it (its writer's file lock is
    gone): a crash or a kill left it behind, and it only holds disk space.

    Args:
        path: the checkpoint file or its run directory (which need not contain one yet).

    Returns:
        The files removed.
    """
    return _files.remove_stale_temporaries(_resolve(path))


def save(path: str | os.PathLike, state: Checkpoint) -> Path:
    """Write ``state`` atomically to ``path`` (a file, or a run directory → ``dir/checkpoint``).

    Temporaries of ``path`` left by an interrupted write are removed first.

    Returns:
        The file written.

    Raises:
        OSError: the write failed (e.g. ``ENOSPC``); its temporary file has been removed and an
            existing checkpoint is untouched.
    """
    if not isinstance(state, Checkpoint):
        raise TypeError(f"state must be a Checkpoint, got {type(state).__name__}")
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    p.parent.mkdir(parents=True, exist_ok=True)
    history = state.history
    hist = {f: np.asarray(getattr(history, f)) for f in history._fields} if history else {}
    config = {
        "cell": state.cell_config,
        "task": state.task_config,
        "extra": state.extra,
        "nonfinite_step": state.nonfinite_step,
    }
    doc = {
        "format": "ctrnn_dyn.checkpoint",
        "version": _FORMAT_VERSION,
        "step": int(state.step),
        "params": serialization.to_state_dict(_to_numpy(state.params)),
        "opt_state": _flatten(state.opt_state),
        "history": hist,
        "key": np.asarray(state.key) if state.key is not None else np.zeros(0, np.uint32),
        "config": json.dumps(config),
    }
    payload = serialization.msgpack_serialize(doc)
    blob = _MAGIC + hashlib.sha256(payload).digest() + payload
    _files.remove_stale_temporaries(p)
    return _files.atomic_write(p, lambda fh: fh.write(blob))


def _restore_like(name: str, template: Any, leaves: dict[str, np.ndarray]) -> Any:
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    expected = [jax.tree_util.keystr(p) for p, _ in paths]
    if set(expected) != set(leaves):
        missing = sorted(set(expected) - set(leaves))[:3]
        extra = sorted(set(leaves) - set(expected))[:3]
        raise ValueError(
            f"checkpoint {name} does not match the expected structure: missing {missing}, "
            f"unexpected {extra}"
        )
    out = []
    for (_, ref), k in zip(paths, expected, strict=True):
        arr = leaves[k]
        ref_shape, ref_dtype = np.shape(ref), np.dtype(getattr(ref, "dtype", np.asarray(ref).dtype))
        if arr.shape != ref_shape or arr.dtype != ref_dtype:
            raise ValueError(
                f"checkpoint {name}{k} has shape {arr.shape} dtype {arr.dtype}, expected "
                f"shape {ref_shape} dtype {ref_dtype}"
            )
        out.append(jnp.asarray(arr))
    return jax.tree_util.tree_unflatten(treedef, out)


def load(
    path: str | os.PathLike,
    *,
    params_like: Any = None,
    opt_state_like: Any = None,
) -> Checkpoint:
    """Read a checkpoint written by :func:`save` (a file or a run directory).

    Args:
        path: the checkpoint file, or a directory containing ``checkpoint``.
        params_like: optional template; the params are checked against its structure, shapes
            and dtypes.
        opt_state_like: optional template (``optimizer.init(params)``); the optimiser state is
            restored into its structure. Without it ``opt_state`` is ``{path: array}``.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: not a checkpoint, truncated/corrupt (checksum), or not matching a template.
    """
    p = _resolve(path)
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint at {p}")
    blob = p.read_bytes()
    header = len(_MAGIC) + 32
    if len(blob) < header or blob[: len(_MAGIC)] != _MAGIC:
        raise ValueError(f"{p} is not a ctrnn_dyn checkpoint (bad header) or is truncated")
    digest, payload = blob[len(_MAGIC):header], blob[header:]
    if hashlib.sha256(payload).digest() != digest:
        raise ValueError(f"checkpoint {p} is truncated or corrupt (checksum mismatch)")
    try:
        doc = serialization.msgpack_restore(payload)
    except Exception as err:  # noqa: BLE001 - any decode error means a corrupt file
        raise ValueError(f"checkpoint {p} could not be decoded: {err}") from err
    if doc.get("format") != "ctrnn_dyn.checkpoint" or doc.get("version") != _FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {p} has format {doc.get('format')!r} version {doc.get('version')!r}; "
            f"expected 'ctrnn_dyn.checkpoint' version {_FORMAT_VERSION}"
        )
    config = json.loads(doc["config"])
    params = doc["params"]
    if params_like is not None:
        params = _restore_like("params", params_like, _flatten(params))
    else:
        params = jax.tree_util.tree_map(jnp.asarray, params)
    opt_state = doc["opt_state"]
    if opt_state_like is not None:
        opt_state = _restore_like("opt_state", opt_state_like, opt_state)
    hist = doc["history"]
    empty = History.empty()
    history = History(**{f: np.asarray(hist.get(f, getattr(empty, f))) for f in History._fields})
    key = np.asarray(doc["key"])
    return Checkpoint(
        params=params,
        opt_state=opt_state,
        step=int(doc["step"]),
        history=history,
        cell_config=config.get("cell"),
        task_config=config.get("task"),
        key=key if key.size else None,
        nonfinite_step=config.get("nonfinite_step"),
        extra=config.get("extra") or {},
    )
