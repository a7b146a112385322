"""The checks of an ensemble's arguments: keys and per-network hyper-parameters (which of them
may differ between networks); the devices' mesh is :func:`ctrnn_dyn._batch.network_mesh`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

__all__ = ["CELL_HPARAMS", "OPTIMIZER_HPARAMS"]


CELL_HPARAMS = ("alpha", "noise_const")
OPTIMIZER_HPARAMS = ("learning_rate", "weight_decay", "clip_norm", "b1", "b2")


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


