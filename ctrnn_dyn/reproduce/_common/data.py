"""The data behind a figure (NPZ, no pickled objects): networks under the seed's names and
fixed points per condition."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["network_arrays", "LARGE_FIXED_POINT_FIELDS", "save_data", "load_fixed_points"]


def network_arrays(cell: Any, params: Any) -> dict[str, np.ndarray]:
    r"""A trained ``CTRNNCell``'s parameters under the seed's names, as float arrays.

    Args:
        cell: the :class:`~ctrnn_dyn.model.CTRNNCell` (for its effective recurrent kernel and
            ``alpha``).
        params: its params tree (``{"params": {"cell": {...}}}`` or ``{"params": {...}}``).

    Returns:
        ``{"recurrent_kernel" (n, n), "recurrent_bias" (n,), "input_kernel" (m, n),
        "output_kernel" (n, p), "output_bias" (p,), "alpha" () or (n,)}``; the update is
        :math:`x' = (1-\alpha) x + \alpha (f(x) K_\mathrm{rec} + b_\mathrm{rec} + u K_\mathrm{in})`
        and the readout :math:`y = f(x) K_\mathrm{out} + b_\mathrm{out}`.
    """
    tree = params["params"] if "params" in params else params
    tree = tree.get("cell", tree)
    return {
        "recurrent_kernel": np.asarray(cell.recurrent_weights(tree)),
        "recurrent_bias": np.asarray(tree["recurrent_kernel"]["bias"]),
        "input_kernel": np.asarray(tree["input_kernel"]["kernel"]),
        "output_kernel": np.asarray(tree["output_kernel"]["kernel"]),
        "output_bias": np.asarray(tree["output_kernel"]["bias"]),
        "alpha": np.asarray(cell.alpha_values(tree), np.float64),
    }


#: FixedPoints fields of shape (N, d, d), left out of a figure's data unless asked for.
LARGE_FIXED_POINT_FIELDS = ("jacobians", "eigvecs", "left_eigvecs")


def _fixed_point_arrays(fps: Any, keep_large: bool) -> dict[str, np.ndarray]:
    """The arrays ``fps.save`` writes (read back from a temporary file)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fp.npz")
        fps.save(path)
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files if keep_large or k not in LARGE_FIXED_POINT_FIELDS}


def _check_key(key: str, what: str) -> str:
    if not isinstance(key, str) or not key or "/" in key:
        raise ValueError(f"{what} names must be non-empty strings without '/', got {key!r}")
    return key


def save_data(
    path: str | Path,
    *,
    network: Mapping[str, Any] | None = None,
    networks: Mapping[str, Mapping[str, Any]] | None = None,
    fixed_points: Mapping[str, Any] | None = None,
    arrays: Mapping[str, Any] | None = None,
    large_fixed_point_fields: bool = False,
) -> Path:
    """Write the data behind a figure as one compressed ``.npz`` without pickled objects.

    Keys (see the module docstring): ``network``'s arrays at the top level; each of
    ``networks`` under ``net/<name>/``; each condition of ``fixed_points`` under
    ``fp/<condition>/`` with the fields :meth:`FixedPoints.save` writes (less
    :data:`LARGE_FIXED_POINT_FIELDS` unless ``large_fixed_point_fields``); ``arrays`` under
    their own keys. Written through a temporary file and renamed.

    Args:
        path: the ``.npz`` to write.
        network: seed-named arrays of the one network (:func:`network_arrays`).
        networks: ``{name: seed-named arrays}`` for several networks.
        fixed_points: ``{condition: FixedPoints}``.
        arrays: further ``{key: array}`` (numeric, bool or string).
        large_fixed_point_fields: keep the ``(N, d, d)`` fixed-point fields.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: a name is empty or contains ``/`` (network, condition), two entries share a
            key, or an array holds Python objects.
    """
    out: dict[str, np.ndarray] = {}

    def put(key: str, value: Any) -> None:
        arr = np.asarray(value)
        if arr.dtype == object:
            raise ValueError(f"data[{key!r}] holds Python objects; only numeric, bool and "
                             "string arrays are saved")
        if key in out:
            raise ValueError(f"data key {key!r} given twice")
        out[key] = arr

    for k, v in (network or {}).items():
        put(k, v)
    for name, net in (networks or {}).items():
        for k, v in net.items():
            put(f"net/{_check_key(name, 'network')}/{k}", v)
    for cond, fps in (fixed_points or {}).items():
        for k, v in _fixed_point_arrays(fps, large_fixed_point_fields).items():
            put(f"fp/{_check_key(cond, 'condition')}/{k}", v)
    for k, v in (arrays or {}).items():
        put(k, v)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **out)
    tmp.replace(path)
    return path


def load_fixed_points(path: str | Path, condition: str) -> Any:
    """The :class:`~ctrnn_dyn.fixed_points.FixedPoints` of ``condition`` from a figure's
    ``.npz`` (fields left out of the file are ``None``).

    Raises:
        KeyError: no fixed points for ``condition`` in the file (the message lists those
            present).
    """
    from ctrnn_dyn.fixed_points import FixedPoints

    prefix = f"fp/{condition}/"
    with np.load(path, allow_pickle=False) as z:
        fields = {k[len(prefix):]: z[k] for k in z.files if k.startswith(prefix)}
        conds = sorted({k.split("/")[1] for k in z.files if k.startswith("fp/")})
    if not fields:
        raise KeyError(f"no fixed points for condition {condition!r} in {path}; "
                       f"conditions: {conds}")
    names = {f.name for f in dataclasses.fields(FixedPoints)}
    return FixedPoints(**{k: v for k, v in fields.items() if k in names})
