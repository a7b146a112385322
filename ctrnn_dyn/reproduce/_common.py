"""Shared plumbing of the reproductions: argument checks, JSON-able numbers, PNG + JSON output.

Every reproduction writes ``OUT/NAME.png`` (the figure) and ``OUT/NAME.json``:

.. code-block:: text

    {"name": ..., "quick": bool, "seed": int,
     "claims": {...},          # the numbers the figure shows
     "checks": {name: bool},   # each quantitative claim of the reproduction, checked
     "settings": {...},        # every size / hyper-parameter used
     "versions": {...},        # python, jax, flax, optax, jaxopt, numpy, ..., ctrnn_dyn
     "wall_time_s": float}
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
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
    "new_figure",
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
        png: path of the written figure.
        json: path of the written JSON.
        wall_time_s: seconds from the start of ``run`` to the files being written.
    """

    name: str
    claims: dict[str, Any]
    checks: dict[str, bool]
    settings: dict[str, Any]
    png: Path
    json: Path
    wall_time_s: float

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
    """A pyplot-free figure (no global state, no GUI backend) with constrained layout."""
    return Figure(figsize=(width, height), layout="constrained", dpi=110)


def write_reproduction(
    out_dir: Path,
    name: str,
    fig: Figure,
    *,
    claims: dict[str, Any],
    checks: dict[str, bool],
    settings: dict[str, Any],
    quick: bool,
    seed: int,
    timer: Timer,
) -> ReproductionResult:
    """Write ``out_dir/name.png`` and ``out_dir/name.json``; returns the result.

    The JSON is written through a temporary file and renamed, so a killed run never leaves a
    half-written file.
    """
    png = out_dir / f"{name}.png"
    fig.savefig(png, dpi=110)
    checks = {k: bool(v) for k, v in checks.items()}
    wall = timer.elapsed
    payload = {
        "name": name,
        "quick": quick,
        "seed": int(seed),
        "claims": jsonable(claims),
        "checks": checks,
        "all_checks_pass": all(checks.values()),
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
    logger.info("%s: wrote %s and %s in %.1f s", name, png, path, wall)
    return ReproductionResult(name, payload["claims"], checks, payload["settings"], png, path,
                              wall)


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
