"""Shared plumbing of the reproductions: argument checks, JSON-able numbers, figure, JSON and
data output.

Every reproduction builds its figure inside :func:`ctrnn_dyn.plot.style` on a
:func:`new_figure` at most :data:`~ctrnn_dyn.plot.PAGE_WIDTH` (7.2 in) wide, so its text is
read at print size, and calls :func:`write_reproduction` once, which writes

* ``OUT/NAME.png`` (``plot.SAVE_DPI`` = 300 dpi) and ``OUT/NAME.pdf`` (vector), the figure;
* ``OUT/NAME.json``:

  .. code-block:: text

      {"name": ..., "quick": bool, "seed": int,
       "claims": {...},          # the numbers the figure shows
       "checks": {name: bool},   # each quantitative claim of the reproduction, checked
       "claim_results": [{"claim": name, "criterion": str, "value": ..., "pass": bool}],
       "settings": {...},        # every size / hyper-parameter used
       "versions": {...},        # python, jax, flax, optax, jaxopt, numpy, ..., ctrnn_dyn
       "wall_time_s": float}

* ``OUT/NAME.npz`` (:func:`save_data`; no pickled objects, it loads with
  ``np.load(path, allow_pickle=False)``): the data behind the figure, so that a claim can be
  re-checked with NumPy alone, without training again. Its keys:

  - one network, under the seed's names (:func:`network_arrays`): ``recurrent_kernel``
    ``(n, n)`` (rows presynaptic: the recurrent drive is ``f(x) @ recurrent_kernel +
    recurrent_bias``), ``recurrent_bias`` ``(n,)``, ``input_kernel`` ``(m, n)``,
    ``output_kernel`` ``(n, p)``, ``output_bias`` ``(p,)``, ``alpha`` (``()`` or ``(n,)``);
    several networks under ``net/<name>/<key>`` with the same keys;
  - per analysed condition the fixed points as :meth:`~ctrnn_dyn.fixed_points.FixedPoints.save`
    writes them, under ``fp/<condition>/<field>`` (``x``, ``u``, ``q``, ``converged``,
    ``n_iters``, ``x_init``, ``eigvals``, ``n_unstable``, ``stability``, ``n_starts``,
    ``stop_reason``, ``alpha``, ``format_version``); the ``(N, d, d)`` fields
    (``jacobians``, ``eigvecs``, ``left_eigvecs``) are left out unless asked for, since they
    follow from the saved parameters (:func:`load_fixed_points` recomputes nothing; it returns
    them as ``None``);
  - further arrays under the names each reproduction's docstring lists.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import tempfile
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "ReproductionResult",
    "Timer",
    "check_run_args",
    "jsonable",
    "load_fixed_points",
    "network_arrays",
    "new_figure",
    "save_data",
    "software_versions",
    "write_reproduction",
]

logger = logging.getLogger(__name__)

_PACKAGES = ("ctrnn_dyn", "jax", "jaxlib", "flax", "optax", "jaxopt", "numpy", "scipy",
             "scikit-learn", "matplotlib")


class ReproductionResult(NamedTuple):
    """What a reproduction returns (and wrote).

    Attributes:
        name: the reproduction's registry name.
        claims: the numbers behind the figure (JSON-able nested dict).
        checks: each quantitative claim of the reproduction and whether it holds.
        settings: sizes and hyper-parameters used.
        png: path of the written figure (PNG).
        json: path of the written JSON.
        wall_time_s: seconds from the start of ``run`` to the files being written.
        pdf: path of the vector figure.
        npz: path of the data behind the figure, ``None`` if none was written.
    """

    name: str
    claims: dict[str, Any]
    checks: dict[str, bool]
    settings: dict[str, Any]
    png: Path
    json: Path
    wall_time_s: float
    pdf: Path | None = None
    npz: Path | None = None

    @property
    def all_checks_pass(self) -> bool:
        """True when every check holds."""
        return all(self.checks.values())


class Timer:
    """Wall-clock timer started at construction (``elapsed`` in seconds)."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0


#: Forward passes a reproduction can train through (see :func:`train_network`).
FORWARD_PASSES = ("nn.RNN", "fast")


def check_run_args(out_dir: Any, quick: Any, seed: Any, forward: Any = None) -> Path:
    """Validate ``run``'s arguments and create ``out_dir``; returns it as a ``Path``.

    Raises:
        TypeError: ``out_dir`` not path-like, ``quick`` not a bool, ``seed`` not an int.
        ValueError: ``seed`` negative, ``forward`` neither ``None`` nor in
            :data:`FORWARD_PASSES`.
    """
    if forward is not None and forward not in FORWARD_PASSES:
        raise ValueError(f"forward must be None or one of {FORWARD_PASSES}, got {forward!r}")
    if not isinstance(out_dir, str | Path):
        raise TypeError(f"out_dir must be a str or pathlib.Path, got {type(out_dir).__name__}")
    if not isinstance(quick, bool):
        raise TypeError(f"quick must be a bool, got {type(quick).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int >= 0, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed}")
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def with_forward(cfg: dict, forward: str | None) -> dict:
    """``cfg`` with ``cfg["forward"]`` replaced by ``forward`` unless it is ``None`` (a run
    through the other pass than the recorded one; the JSON's settings say which)."""
    return cfg if forward is None else {**cfg, "forward": forward}


def software_versions() -> dict[str, str]:
    """Versions of Python, the platform and the scientific stack (``"missing"`` if absent)."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    try:
        import jax

        out["jax_backend"] = jax.default_backend()
    except Exception:  # pragma: no cover - jax is a hard dependency
        out["jax_backend"] = "unknown"
    return out


def jsonable(value: Any) -> Any:
    """Recursively turn NumPy/JAX scalars and arrays, tuples, paths and dataclasses into JSON
    types. Complex numbers become ``[re, im]``; non-finite floats become ``None``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, str | bool) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "__array__") and not isinstance(value, np.generic):
        return jsonable(np.asarray(value).tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, complex | np.complexfloating):
        return [jsonable(float(value.real)), jsonable(float(value.imag))]
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    raise TypeError(f"cannot convert {type(value).__name__} to JSON")


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure (no global state, no GUI backend) with constrained layout.

    ``width`` and ``height`` are the print size in inches: at most
    :data:`~ctrnn_dyn.plot.PAGE_WIDTH` wide for a figure across a journal page (a wider one
    is shrunk when printed, and its 7-pt text with it; this is logged). Create it inside
    ``with plot.style():`` so that its text takes the package's style.
    """
    from ctrnn_dyn.plot import PAGE_WIDTH

    if width > PAGE_WIDTH + 1e-9:
        logger.info("figure %.1f in wide: wider than a journal page (%.1f in), its text "
                    "will print smaller than the style's 7 pt", width, PAGE_WIDTH)
    return Figure(figsize=(width, height), layout="constrained")


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


def write_reproduction(
    out_dir: Path,
    name: str,
    fig: Figure,
    *,
    claims: dict[str, Any],
    checks: Mapping[str, Any],
    settings: dict[str, Any],
    quick: bool,
    seed: int,
    timer: Timer,
    data: Mapping[str, Any] | None = None,
) -> ReproductionResult:
    """Write ``out_dir/name.png`` (300 dpi), ``name.pdf``, ``name.json`` and, when ``data`` is
    given, ``name.npz`` (``save_data(path, **data)``); returns the result.

    ``checks`` maps each claim's name to whether it holds, either a bool or a mapping
    ``{"pass": bool, "value": ..., "criterion": str}`` with the number(s) that decide it and the
    rule applied; the JSON's ``"checks"`` holds the bools and ``"claim_results"`` one entry per
    claim (``claim``, ``criterion``, ``value``, ``pass``).

    The JSON and the data are written through a temporary file and renamed, so a killed run
    never leaves a half-written file.
    """
    from ctrnn_dyn.plot import save_figure

    png, pdf = save_figure(fig, out_dir / f"{name}.png")
    npz = None if data is None else save_data(out_dir / f"{name}.npz", **data)
    table = []
    for k, v in checks.items():
        entry = dict(v) if isinstance(v, Mapping) else {"pass": v}
        if "pass" not in entry:
            raise ValueError(f"checks[{k!r}] must be a bool or a mapping with a 'pass' key")
        ok = bool(entry.pop("pass"))
        table.append({"claim": k, **entry, "pass": ok})
    checks = {row["claim"]: row["pass"] for row in table}
    wall = timer.elapsed
    payload = {
        "name": name,
        "quick": quick,
        "seed": int(seed),
        "claims": jsonable(claims),
        "checks": checks,
        "all_checks_pass": all(checks.values()),
        "claim_results": jsonable(table),
        "settings": jsonable(settings),
        "versions": software_versions(),
        "wall_time_s": round(wall, 2),
    }
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    failed = [k for k, v in checks.items() if not v]
    if failed:
        logger.warning("%s: checks failed: %s", name, ", ".join(failed))
    logger.info("%s: wrote %s, %s, %s%s in %.1f s", name, png, pdf, path,
                "" if npz is None else f" and {npz}", wall)
    return ReproductionResult(name, payload["claims"], checks, payload["settings"], png, path,
                              wall, pdf, npz)


# ---------------------------------------------------------------------------------------------
# Training and rollouts shared by the trained-network reproductions (public API only)
# ---------------------------------------------------------------------------------------------


class TrainedNetwork(NamedTuple):
    """A trained CT-RNN and what the analyses need from it.

    Attributes:
        cell: the (noise-carrying) training cell.
        params: ``nn.RNN`` params ``{"params": {"cell": ...}}``.
        F: the deterministic one-step map ``F(x, u)`` (noise off).
        result: the :class:`~ctrnn_dyn.train.TrainResult`.
        train_seconds: wall time of training.
    """

    cell: Any
    params: Any
    F: Any
    result: Any
    train_seconds: float


def train_network(
    task: Any,
    *,
    hidden: int,
    alpha: float,
    noise: float,
    steps: int,
    learning_rate: float,
    batch_size: int,
    key: Any,
    loss: str = "mse",
    weight_l2: float = 0.0,
    rate_l2: float = 0.0,
    zero_carry: bool = False,
    orthogonal_init: bool = False,
    forward: str = "nn.RNN",
) -> TrainedNetwork:
    """Train a tanh ``CTRNNCell`` on ``task`` with AdamW and a warm-up + cosine schedule.

    The schedule rises from ``lr/10`` to ``learning_rate`` over the first 5% of the steps and
    decays to ``lr/20`` (``optax.warmup_cosine_decay_schedule``), inside
    :func:`ctrnn_dyn.train.default_optimizer` (global-norm clipping at 1). ``zero_carry``
    starts every trial from ``x = 0`` instead of the seed's ``x = 1``; ``orthogonal_init``
    initialises the kernels orthogonally instead of the seed's Glorot-normal (gradients then
    survive many steps of an ``α = 1`` network). ``forward`` is the forward pass trained
    through: ``"nn.RNN"``, the one the committed figures were made with, or ``"fast"``
    (:mod:`ctrnn_dyn.fast_path`, ``train``'s default). The two are the same model to float
    rounding, but thousands of optimiser steps amplify rounding into a different network, so
    only the recorded pass reproduces a figure's numbers.
    """
    if forward not in FORWARD_PASSES:
        raise ValueError(f"forward must be one of {FORWARD_PASSES}, got {forward!r}")
    import optax
    from flax.linen import initializers

    from ctrnn_dyn.dynamics import one_step_map
    from ctrnn_dyn.model import CTRNNCell
    from ctrnn_dyn.train import default_optimizer, train

    extra = {"carry_init": initializers.zeros_init()} if zero_carry else {}
    if orthogonal_init:
        extra["kernel_init"] = initializers.orthogonal()
    cell = CTRNNCell(hidden_features=hidden, output_features=task.output_size, alpha=alpha,
                     noise_const=noise, **extra)
    schedule = optax.warmup_cosine_decay_schedule(
        learning_rate / 10, learning_rate, max(steps // 20, 1), steps, learning_rate / 20
    )
    timer = Timer()
    logger.info("training a %d-unit network (alpha=%g) on %s for %d steps", hidden, alpha,
                type(task).__name__, steps)
    result = train(cell, task, key=key, steps=steps, batch_size=batch_size,
                   optimizer=default_optimizer(schedule), loss=loss, weight_l2=weight_l2,
                   rate_l2=rate_l2, sync_every=min(100, steps), progress=None,
                   fast=forward == "fast")
    return TrainedNetwork(cell, result.params, one_step_map(cell, result.params), result,
                          timer.elapsed)


def rollout(net: TrainedNetwork, inputs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free states and outputs of ``net`` on ``inputs`` ``(B, T, m)``.

    Returns:
        ``(states (B, T, n), outputs (B, T, p))``: the voltages ``x_1 … x_T`` after each step
        (from the cell's initial carry) and the readout ``f(x_t) K_out + b_out``.
    """
    import jax
    import jax.numpy as jnp

    from ctrnn_dyn.dynamics import simulate

    inputs = jnp.asarray(inputs, jnp.float32)
    x0 = net.cell.initialize_carry(jax.random.PRNGKey(0), (inputs.shape[-1],))
    states = jax.jit(jax.vmap(lambda u: simulate(net.F, x0, u)))(inputs)
    return np.asarray(states), readout(net, states)


def readout(net: TrainedNetwork, states: Any) -> np.ndarray:
    """The network's output ``y = f(x) K_out + b_out`` for states ``(..., n)``."""
    tree = net.params["params"].get("cell", net.params["params"])
    K_out = np.asarray(tree["output_kernel"]["kernel"], np.float64)
    b_out = np.asarray(tree["output_kernel"]["bias"], np.float64)
    import jax

    with jax.enable_x64(True):
        rates = np.asarray(net.cell.activation_fn(np.asarray(states, np.float64)))
    return rates @ K_out + b_out
