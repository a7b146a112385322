r"""Training CT-RNNs with Optax: the loss, a pure per-network train step, and the train loop.

Loss on a batch (inputs ``u`` ``(B,T,m)``, targets ``y*``, mask ``M`` ``(B,T,p)``):

.. math::

    L = \frac{\sum M\,(y - y^*)^2}{\sum M}
        + \lambda_r\,\overline{r^2} + \lambda_w \sum_{K \in \{K_\mathrm{rec}, K_\mathrm{in},
        K_\mathrm{out}\}} \lVert K \rVert_F^2

(``loss="cross_entropy"`` replaces the masked MSE by the masked logistic loss
``softplus(−y* y)`` for ±1 targets.)

The forward pass of a :class:`~ctrnn_dyn.model.CTRNNCell` with a fixed ``alpha`` is, by default
(``fast=None``), :func:`ctrnn_dyn.fast_path.fast_forward`: the cell's equation with a
hand-written VJP, equal to ``nn.RNN(cell)`` to float rounding (tested against ``nn.RNN``, a
NumPy loop, JAX's own derivative of a plain loop and finite differences) and, with noise,
drawing the very ``ξ_t`` that ``nn.RNN``'s per-step ``noise_stream`` keys give the cell
(:func:`ctrnn_dyn.model.step_noise`). At H = 128, B = 64, T = 200 its train step takes about
half the time of differentiating ``nn.RNN`` (``benchmarks/train_step.py``). Other cells, and
``fast=False``, use ``nn.RNN(cell)`` (``ctrnn_dyn.model.rnn``).
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from ctrnn_dyn import _checks, native
from ctrnn_dyn import checkpoint as ckpt
from ctrnn_dyn.fast_path import fast_forward, loop_path, supports_fast_path
from ctrnn_dyn.history import History, StepMetrics
from ctrnn_dyn.model import CTRNNCell, rnn, step_noise
from ctrnn_dyn.tasks import Batch

__all__ = [
    "LossAux",
    "TrainState",
    "StepMetrics",
    "History",
    "TrainResult",
    "forward",
    "fast_forward",
    "supports_fast_path",
    "uses_input_basis",
    "loss_fn",
    "default_optimizer",
    "init_params",
    "init_state",
    "make_train_step",
    "make_eval_fn",
    "train",
    "use_fast_path",
    "forward_path",
]

logger = logging.getLogger(__name__)

LossKind = Literal["mse", "cross_entropy"]


class LossAux(NamedTuple):
    """Auxiliary outputs of :func:`loss_fn`.

    Attributes:
        mse: masked data term (MSE or cross-entropy), scalar.
        outputs: network outputs ``(B, T, p)``.
    """

    mse: jax.Array
    outputs: jax.Array


class TrainState(NamedTuple):
    """Per-network training state (a pytree; ``vmap`` it for an ensemble).

    Attributes:
        step: number of optimiser steps taken so far (int32 scalar).
        params: network variables in the ``nn.RNN`` layout ``{"params": {"cell": ...}}``.
        opt_state: the optimiser's state.
        finite: False once a non-finite loss or gradient was met; from then on the step leaves
            ``params`` and ``opt_state`` unchanged (the NaN guard).
        nonfinite_step: index of the first step with a non-finite loss, or −1.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    finite: jax.Array
    nonfinite_step: jax.Array


class TrainResult(NamedTuple):
    """Result of :func:`train`.

    Attributes:
        params: final (last good) params, ``nn.RNN`` layout.
        opt_state: final optimiser state.
        history: :class:`History`.
        step: number of steps taken (after a non-finite stop: the step count reached).
        nonfinite_step: first step with a non-finite loss, or ``None``.
        forward_path: the code that ran the forward pass (:func:`forward_path`).
    """

    params: Any
    opt_state: Any
    history: History
    step: int = 0
    nonfinite_step: int | None = None
    forward_path: str = ""


# ---------------------------------------------------------------------------------------------
# Forward passes
# ---------------------------------------------------------------------------------------------


def forward(cell: nn.Module, params: Any, inputs: jax.Array, *, key: jax.Array | None):
    """Generic forward pass through ``nn.RNN(cell)``: returns ``(outputs, rates)`` ``(B,T,·)``.

    For cells that return a single array (``RateCTRNNCell``), outputs and rates are the same.
    """
    rngs = {"noise_stream": key} if key is not None else {}
    out = rnn(cell).apply(params, inputs, rngs=rngs)
    if isinstance(out, tuple):
        return out[0], out[1]
    return out, out


def use_fast_path(cell: nn.Module, fast: bool | None) -> bool:
    """Resolve ``fast`` (``None``: where supported) and, for the fast path on the CPU, build and
    load its compiled kernels now, before anything is traced (:func:`ctrnn_dyn.native.prepare`).
    """
    if fast is None:
        fast = supports_fast_path(cell)
    if fast and not supports_fast_path(cell):
        raise ValueError("fast=True needs a CTRNNCell with train_alpha=False")
    if fast:
        native.prepare()
    return bool(fast)


def forward_path(cell: nn.Module, fast: bool | None = None) -> str:
    """The code that runs ``cell``'s forward pass in programs traced now: ``"nn.RNN"``,
    ``"fast_path/kernels:<key>"`` or ``"fast_path/xla-loops"``. Checkpoints record it: the paths
    compute the same model but round differently, so training diverges between them."""
    if not use_fast_path(cell, fast):
        return "nn.RNN"
    return f"fast_path/{loop_path(cell)}"


def _has_noise(cell: nn.Module) -> bool:
    sigma = getattr(cell, "noise_const", 0.0)
    return not (isinstance(sigma, int | float) and sigma == 0)


def _kernels(params: Any) -> list[jax.Array]:
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return [
        v for path, v in leaves
        if getattr(path[-1], "key", None) == "kernel"
    ]


def uses_input_basis(cell: nn.Module, task: Any) -> bool:
    """True when training samples ``task.sample_codes`` and projects ``task.input_basis``
    (a :class:`CTRNNCell` and a task that has both; see :mod:`ctrnn_dyn.tasks`)."""
    return (isinstance(cell, CTRNNCell) and getattr(task, "input_basis", None) is not None
            and hasattr(task, "sample_codes"))


def _project_input_kernel(cell: nn.Module, params: Any, basis: jax.Array) -> Any:
    """``params`` with the input kernel ``K_in`` ``(m, n)`` replaced by ``basis @ K_in``
    ``(k, n)``."""
    if not isinstance(cell, CTRNNCell):
        raise ValueError(f"input_basis needs a CTRNNCell, got {type(cell).__name__}")
    tree = params["params"]["cell"]
    k_in = tree["input_kernel"]["kernel"]
    basis = jnp.asarray(basis, k_in.dtype)
    if basis.ndim != 2 or basis.shape[1] != k_in.shape[0]:
        raise ValueError(f"input_basis must have shape (k, {k_in.shape[0]}), got {basis.shape}")
    cell_tree = {**tree, "input_kernel": {**tree["input_kernel"], "kernel": basis @ k_in}}
    return {**params, "params": {**params["params"], "cell": cell_tree}}


def _sampler(cell: nn.Module, task: Any) -> tuple[Callable, Any]:
    """``(sample, input_basis)``: the task's code sampler and basis when
    :func:`uses_input_basis`, else ``(task.sample, None)``."""
    if uses_input_basis(cell, task):
        return task.sample_codes, np.asarray(task.input_basis)
    return task.sample, None


def loss_fn(
    params: Any,
    cell: nn.Module,
    batch: Batch,
    *,
    key: jax.Array | None,
    rate_l2: float = 0.0,
    weight_l2: float = 0.0,
    loss: LossKind = "mse",
    fast: bool | None = None,
    input_basis: jax.Array | None = None,
) -> tuple[jax.Array, LossAux]:
    r"""Masked loss of ``cell`` with ``params`` on ``batch`` (see the module docstring).

    Args:
        params: ``nn.RNN`` variables ``{"params": {"cell": ...}}``.
        cell: the RNN cell.
        batch: :class:`~ctrnn_dyn.tasks.Batch` with ``(B,T,m)``, ``(B,T,p)``, ``(B,T,p)``.
        key: PRNG key of the noise (``None`` only if the cell has no noise).
        rate_l2: weight of the mean squared rate.
        weight_l2: weight of the summed squared kernels.
        loss: ``"mse"`` or ``"cross_entropy"`` (logistic loss on ±1 targets).
        fast: ``None`` (default): :func:`~ctrnn_dyn.fast_path.fast_forward` when the cell
            supports it (:func:`~ctrnn_dyn.fast_path.supports_fast_path`), else ``nn.RNN``;
            ``True``: the fast path (an error if unsupported); ``False``: ``nn.RNN``.
        input_basis: ``(k, m)``: ``batch.inputs`` are ``(B, T, k)`` codes of the inputs
            ``codes @ input_basis`` (a task's ``sample_codes``); the forward pass then uses
            ``codes @ (input_basis @ K_in)`` — the same drive, with ``k`` instead of ``B·T``
            rows projected through ``K_in``. Needs a :class:`CTRNNCell`.

    Returns:
        ``(loss, LossAux(mse, outputs))``.
    """
    if fast is None:
        fast = supports_fast_path(cell)
    if fast and not supports_fast_path(cell):
        raise ValueError("fast=True needs a CTRNNCell with train_alpha=False")
    if key is None and _has_noise(cell):
        raise ValueError("key is required: the cell has noise (noise_const != 0)")
    net_params = params if input_basis is None else _project_input_kernel(cell, params,
                                                                          input_basis)
    if fast:
        noise = None
        if _has_noise(cell):
            B, T, _ = batch.inputs.shape
            noise = step_noise(key, T, (B, cell.hidden_features))
        outputs, rates = fast_forward(cell, net_params, batch.inputs, noise=noise)
    else:
        outputs, rates = forward(cell, net_params, batch.inputs, key=key)
    mask = batch.mask
    denom = jnp.maximum(jnp.sum(mask), 1.0)
    if loss == "mse":
        data = jnp.sum(mask * (outputs - batch.targets) ** 2) / denom
    elif loss == "cross_entropy":
        data = jnp.sum(mask * jax.nn.softplus(-batch.targets * outputs)) / denom
    else:
        raise ValueError(f"loss must be 'mse' or 'cross_entropy', got {loss!r}")
    total = data
    if rate_l2:
        total = total + rate_l2 * jnp.mean(rates**2)
    if weight_l2:
        total = total + weight_l2 * sum(jnp.sum(k**2) for k in _kernels(params))
    return total, LossAux(data, outputs)


# ---------------------------------------------------------------------------------------------
# Optimiser, init, step
# ---------------------------------------------------------------------------------------------


def default_optimizer(
    learning_rate: float | optax.Schedule = 1e-3,
    *,
    clip_norm: float = 1.0,
    weight_decay: float = 1e-4,
    b1: float = 0.9,
    b2: float = 0.999,
) -> optax.GradientTransformation:
    """``optax.chain(optax.clip_by_global_norm(clip_norm), optax.adamw(learning_rate, ...))``.

    Raises:
        TypeError: a hyper-parameter is not a number (a string, a bool, ``None``).
        ValueError: ``learning_rate <= 0``, ``clip_norm <= 0``, ``weight_decay < 0``, ``b1`` or
            ``b2`` outside ``[0, 1)``, or a value that is not finite. Arrays (the per-network
            values of ``optax.inject_hyperparams``, tracers) and schedules are not checked.
    """
    _checks.check_hparams({"learning_rate": learning_rate, "clip_norm": clip_norm,
                           "weight_decay": weight_decay, "b1": b1, "b2": b2}, skip_arrays=True)
    return optax.chain(
        optax.clip_by_global_norm(clip_norm),
        optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay),
    )


def _check_widths(cell: nn.Module, task: Any) -> None:
    out = getattr(cell, "output_features", None)
    if out is None:
        out = getattr(cell, "hidden_features", None)
    if out is not None and out != task.output_size:
        raise ValueError(
            f"cell.output_features = {out} does not match the task's output_size = "
            f"{task.output_size}"
        )
    features = getattr(cell, "features", None)  # Flax's GRUCell, LSTMCell, SimpleCell, ...
    if out is None and isinstance(features, int) and features != task.output_size:
        name = type(cell).__name__
        raise ValueError(
            f"{name} has no readout: its outputs are its {features} hidden units "
            f"({name}.features = {features}), but the task's targets have "
            f"task.output_size = {task.output_size}; train a cell whose outputs have the "
            f"task's size, e.g. CTRNNCell(hidden_features={features}, "
            f"output_features={task.output_size}), or a cell of your own that ends in a "
            f"linear readout nn.Dense({task.output_size})"
        )


def init_params(cell: nn.Module, task: Any, *, key: jax.Array) -> Any:
    """Initial params ``rnn(cell).init(...)`` for ``task``'s input width (``nn.RNN`` layout)."""
    _check_widths(cell, task)
    k_p, k_n = jax.random.split(key)
    dummy = jnp.zeros((1, task.n_steps, task.input_size), jnp.float32)
    return rnn(cell).init({"params": k_p, "noise_stream": k_n}, dummy)


def _check_params(cell: nn.Module, task: Any, params: Any) -> None:
    try:
        tree = params["params"]["cell"]
    except (TypeError, KeyError):
        raise ValueError(
            "params must have the nn.RNN layout {'params': {'cell': ...}}"
        ) from None
    if isinstance(cell, CTRNNCell):
        m = tree["input_kernel"]["kernel"].shape[0]
        if m != task.input_size:
            raise ValueError(
                f"params' input kernel has width {m} but the task's input_size is "
                f"{task.input_size}"
            )


def init_state(
    cell: nn.Module,
    task: Any,
    optimizer: optax.GradientTransformation,
    *,
    key: jax.Array | None = None,
    params: Any = None,
) -> TrainState:
    """Initial :class:`TrainState` (params from ``key`` unless ``params`` is given)."""
    if params is None:
        if key is None:
            raise ValueError("init_state needs key= or params=")
        params = init_params(cell, task, key=key)
    _check_widths(cell, task)
    _check_params(cell, task, params)
    return TrainState(
        step=jnp.asarray(0, jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        finite=jnp.asarray(True),
        nonfinite_step=jnp.asarray(-1, jnp.int32),
    )


def make_train_step(
    cell: nn.Module,
    task: Any,
    optimizer: optax.GradientTransformation,
    *,
    batch_size: int,
    rate_l2: float = 0.0,
    weight_l2: float = 0.0,
    loss: LossKind = "mse",
    fast: bool | None = None,
) -> Callable[[TrainState, jax.Array], tuple[TrainState, StepMetrics]]:
    """A pure, un-jitted per-network train step ``step(state, key) -> (state, StepMetrics)``.

    The step draws its batch and noise from ``fold_in(key, state.step)`` (split in two), so the
    same ``key`` gives the same run whatever the chunking; ``key`` is the run's data key and stays
    fixed across steps. It takes the loss gradient, applies ``optimizer``, and leaves params and
    optimiser state unchanged once a non-finite loss, gradient or update has been met
    (``state.finite``).
    No Python side effects or host callbacks: ``jax.jit`` it, ``jax.vmap`` it over networks.

    Raises:
        ValueError: ``batch_size < 1`` or a task/cell width mismatch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise TypeError(f"batch_size must be an int >= 1, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _check_widths(cell, task)
    fast = use_fast_path(cell, fast)
    sample, basis = _sampler(cell, task)
    grad_fn = jax.value_and_grad(
        functools.partial(loss_fn, cell=cell, rate_l2=rate_l2, weight_l2=weight_l2, loss=loss,
                          fast=fast, input_basis=basis),
        has_aux=True,
    )

    def step(state: TrainState, key: jax.Array) -> tuple[TrainState, StepMetrics]:
        k_batch, k_noise = jax.random.split(jax.random.fold_in(key, state.step))
        batch = sample(k_batch, batch_size)
        (total, aux), grads = grad_fn(state.params, batch=batch, key=k_noise)
        gnorm = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ok = (state.finite & jnp.isfinite(total) & jnp.isfinite(gnorm)
              & jnp.isfinite(optax.tree.norm(updates)))
        keep = functools.partial(jax.tree_util.tree_map, lambda new, old: jnp.where(ok, new, old))
        new_state = TrainState(
            step=state.step + 1,
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            finite=ok,
            nonfinite_step=jnp.where(state.finite & ~ok, state.step, state.nonfinite_step),
        )
        metrics = StepMetrics(total, aux.mse, gnorm, task.accuracy(aux.outputs, batch))
        return new_state, metrics

    return step


def make_eval_fn(
    cell: nn.Module,
    task: Any,
    *,
    batch_size: int,
    n_batches: int = 4,
    loss: LossKind = "mse",
    fast: bool | None = None,
) -> Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]:
    """``eval(params, key) -> (mean data loss, mean accuracy)`` over ``n_batches`` held-out
    batches drawn from ``fold_in(key, i)`` (the same batches every call with the same key)."""
    fast = use_fast_path(cell, fast)
    sample, basis = _sampler(cell, task)

    def one(params, k):
        k_batch, k_noise = jax.random.split(k)
        batch = sample(k_batch, batch_size)
        _, aux = loss_fn(params, cell, batch, key=k_noise, loss=loss, fast=fast,
                         input_basis=basis)
        return aux.mse, task.accuracy(aux.outputs, batch)

    def evaluate(params, key):
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n_batches))
        losses, accs = jax.lax.map(lambda k: one(params, k), keys)
        return losses.mean(), accs.mean()

    return evaluate


# ---------------------------------------------------------------------------------------------
# Train loop
# ---------------------------------------------------------------------------------------------


def _key_data(key: jax.Array) -> np.ndarray:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(key))
    return np.asarray(key)


def _check_key(key: Any) -> jax.Array:
    if key is None:
        raise ValueError("key is required (e.g. key=jax.random.key(0))")
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    return key


def _check_resumable(path: Path, saved: Any, config: dict, key_data: np.ndarray) -> None:
    """Refuse to continue checkpoint ``saved`` with settings that would change its history,
    naming the first that differs (key, then the cell's fields, the task's, the train
    settings)."""
    again = ("; resuming with another value would change how the run is trained: pass the "
             "value it was written with, or start a new run in another checkpoint_dir")
    if saved.key is not None and not np.array_equal(saved.key, key_data):
        raise ValueError(f"cannot resume {path}: it was written with a different key{again}")
    for what, before, now in (("cell", saved.cell_config, config["cell"]),
                              ("task", saved.task_config, config["task"]),
                              ("train", (saved.extra or {}).get("train_settings"),
                               config["train"])):
        if before is None or now is None:
            continue
        keys = list(config["train"]) if what == "train" else None
        if what == "train":  # settings the run chose itself (a custom optimizer) are skipped
            before = {k: v for k, v in before.items() if v is not None}
            now = {k: v for k, v in now.items() if v is not None}
        field = _checks.first_difference(before, now, keys)
        if field is not None:
            name = field if what == "train" else f"{what}.{field}"
            which = "with" if what == "train" else f"for a different {what}:"
            raise ValueError(
                f"cannot resume {path}: it was written {which} {name}={before.get(field)!r}, "
                f"this call has {name}={now.get(field)!r}{again}"
            )
    batch = (saved.extra or {}).get("batch_size")
    if batch is not None and batch != config["batch_size"]:
        raise ValueError(f"cannot resume {path}: it was written with batch_size={batch!r}, "
                         f"this call has batch_size={config['batch_size']!r}{again}")


def train(
    cell: nn.Module,
    task: Any,
    *,
    key: jax.Array,
    steps: int,
    batch_size: int,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 1e-3,
    rate_l2: float = 0.0,
    weight_l2: float = 0.0,
    loss: LossKind = "mse",
    params: Any = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 500,
    resume: bool = False,
    eval_every: int | None = None,
    eval_task: Any = None,
    eval_batches: int = 4,
    eval_batch_size: int | None = None,
    progress: bool | None = None,
    sync_every: int = 100,
    fast: bool | None = None,
    run_config: dict | None = None,
) -> TrainResult:
    """Train ``cell`` on ``task`` for ``steps`` optimiser steps.

    Keys: ``key`` is split into (init, data, eval) keys; step ``s`` draws its batch and noise
    from ``fold_in(data_key, s)``, so the run is a pure function of ``key`` and the options, and
    resuming from a checkpoint continues the same sequence bit for bit.

    Args:
        cell: RNN cell (a ``CTRNNCell`` with a fixed ``alpha`` uses the fast path).
        task: a task from :mod:`ctrnn_dyn.tasks`.
        key: PRNG key (required).
        steps: total number of steps (a resumed run continues up to ``steps``).
        batch_size: trials per step.
        optimizer: Optax transformation; default :func:`default_optimizer` (``learning_rate``).
        learning_rate: used only by the default optimiser.
        rate_l2: L2 penalty on the rates; see :func:`loss_fn`.
        weight_l2: L2 penalty on the kernels; see :func:`loss_fn`.
        loss: loss kind; see :func:`loss_fn`.
        params: initial params (default: ``rnn(cell).init`` from the init key).
        checkpoint_dir: write ``checkpoint_dir/checkpoint`` every ``checkpoint_every`` steps
            and at the end (atomic writes).
        checkpoint_every: steps between checkpoints.
        resume: continue from ``checkpoint_dir/checkpoint`` if it exists. The checkpoint must
            have been written with the same key, cell, task, ``batch_size``, ``rate_l2``,
            ``weight_l2``, ``loss`` and (default optimiser) ``learning_rate``: anything else
            would change how its steps were trained, and is refused naming the first setting
            that differs. A custom ``optimizer`` must have the same state structure.
        eval_every: evaluate on held-out batches every this many steps (and at the end);
            ``None`` = only at the end.
        eval_task: task for evaluation (default ``task``; e.g. a held-out split).
        eval_batches: held-out batches per evaluation.
        eval_batch_size: their size (default ``batch_size``).
        progress: tqdm bar; ``None`` = only when stderr is a terminal.
        sync_every: steps between host syncs (history, NaN check, progress).
        fast: forward pass: ``None`` (default) the fast path where supported, ``True`` the
            fast path, ``False`` ``nn.RNN`` (see :func:`loss_fn`).
        run_config: extra JSON-able settings stored in the checkpoint.

    Returns:
        :class:`TrainResult` ``(params, opt_state, history, step, nonfinite_step)``. On a
        non-finite loss training stops, logs the step, and returns the last good params.

    Raises:
        TypeError: a size or hyper-parameter of the wrong type (``steps=1.5``,
            ``learning_rate="fast"``).
        ValueError: ``steps < 1``, ``batch_size < 1``, ``learning_rate <= 0``, a negative or
            non-finite ``rate_l2``/``weight_l2``, an unknown ``loss``, a cell whose output size
            is not the task's (e.g. Flax's ``GRUCell``, which has no readout), a bad or
            mismatched checkpoint on resume.
    """
    from tqdm import tqdm


    for name, value, low in (("steps", steps, 1), ("batch_size", batch_size, 1),
                             ("checkpoint_every", checkpoint_every, 1),
                             ("sync_every", sync_every, 1), ("eval_batches", eval_batches, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name} must be an int >= {low}, got {type(value).__name__}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if eval_every is not None and (not isinstance(eval_every, int) or eval_every < 1):
        raise ValueError(f"eval_every must be None or an int >= 1, got {eval_every!r}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir")
    if loss not in ("mse", "cross_entropy"):
        raise ValueError(f"loss must be 'mse' or 'cross_entropy', got {loss!r}")
    hparams = {"rate_l2": rate_l2, "weight_l2": weight_l2}
    if optimizer is None:
        hparams["learning_rate"] = learning_rate
    _checks.check_hparams(hparams, skip_arrays=True)
    key = _check_key(key)
    _check_widths(cell, task)
    eval_task = task if eval_task is None else eval_task

    optimizer = default_optimizer(learning_rate) if optimizer is None else optimizer
    k_init, k_data, k_eval = jax.random.split(key, 3)
    state = init_state(cell, task, optimizer, key=k_init, params=params)
    history = History.empty()

    config = {
        "cell": ckpt.cell_config(cell),
        "task": ckpt.task_config_or_none(task),
        "batch_size": int(batch_size),
        # what shapes the run's steps beyond cell, task and key (learning_rate: None for an
        # optimizer passed in, which cannot be compared)
        "train": {
            "batch_size": int(batch_size),
            "learning_rate": (float(learning_rate) if "learning_rate" in hparams
                              and isinstance(learning_rate, int | float) else None),
            "rate_l2": float(rate_l2), "weight_l2": float(weight_l2), "loss": loss,
        },
        "run": run_config or {},
    }
    run_path = forward_path(cell, fast)  # builds the kernels now, before anything is traced
    path = Path(checkpoint_dir) / ckpt.CHECKPOINT_NAME if checkpoint_dir is not None else None
    if path is not None:
        ckpt.remove_stale_temporaries(path)  # left by a run killed while writing
    if resume and path is not None and path.exists():
        saved = ckpt.load(path)  # configuration checks first, then the typed restore
        _check_resumable(path, saved, config, _key_data(key))
        saved = ckpt.load(path, params_like=state.params, opt_state_like=state.opt_state)
        state = TrainState(
            step=jnp.asarray(saved.step, jnp.int32),
            params=saved.params,
            opt_state=saved.opt_state,
            finite=jnp.asarray(saved.nonfinite_step is None),
            nonfinite_step=jnp.asarray(
                -1 if saved.nonfinite_step is None else saved.nonfinite_step, jnp.int32
            ),
        )
        history = saved.history
        logger.info("resumed from %s at step %d", path, saved.step)
        trained_by = (saved.extra or {}).get("forward_path")
        if trained_by is not None and trained_by != run_path:
            logger.warning(
                "checkpoint %s was trained through %s; it continues through %s: the two compute "
                "the same model but round differently, so the run will not match an "
                "uninterrupted one bit for bit", path, trained_by, run_path)

    step_fn = jax.jit(
        make_train_step(cell, task, optimizer, batch_size=batch_size, rate_l2=rate_l2,
                        weight_l2=weight_l2, loss=loss, fast=fast)
    )
    eval_fn = jax.jit(
        make_eval_fn(cell, eval_task, batch_size=eval_batch_size or batch_size,
                     n_batches=eval_batches, loss=loss, fast=fast)
    )

    def save(s: TrainState, h: History) -> None:
        if path is None:
            return
        ns = int(s.nonfinite_step)
        ckpt.save(
            path,
            ckpt.Checkpoint(
                params=s.params, opt_state=s.opt_state, step=int(s.step), history=h,
                cell_config=config["cell"], task_config=config["task"],
                key=_key_data(key), nonfinite_step=None if ns < 0 else ns,
                extra={"batch_size": config["batch_size"], "forward_path": run_path,
                       "train_settings": config["train"], **config["run"]},
            ),
        )

    start = int(state.step)
    if progress is None:
        progress = sys.stderr.isatty()
    if start < steps:  # without a bar: one log line here and one per evaluation/checkpoint
        logger.info("training %s on %s: steps %d..%d", type(cell).__name__, type(task).__name__,
                    start + 1, steps)
    bar = tqdm(total=steps, initial=min(start, steps), disable=not progress, desc="train",
               unit="step")
    buffer: list[StepMetrics] = []
    buffer_start = start
    nonfinite: int | None = None
    if not bool(state.finite):
        nonfinite = int(state.nonfinite_step)
    s = start
    try:
        while s < steps and nonfinite is None:
            state, metrics = step_fn(state, k_data)
            buffer.append(metrics)
            s += 1
            eval_due = eval_every is not None and s % eval_every == 0
            ckpt_due = s % checkpoint_every == 0
            if s % sync_every == 0 or s == steps or eval_due or ckpt_due:
                history = history._extend(buffer, buffer_start)
                bar.update(len(buffer))
                buffer, buffer_start = [], s
                if not bool(state.finite):
                    nonfinite = int(state.nonfinite_step)
                    history = history.truncate(nonfinite)
                    break
                bar.set_postfix(loss=f"{history.loss[-1]:.4g}", acc=f"{history.accuracy[-1]:.3f}")
                if eval_due or s == steps:
                    ev_loss, ev_acc = eval_fn(state.params, k_eval)
                    history = history._add_eval(s, float(ev_loss), float(ev_acc))
                if ckpt_due or s == steps:
                    save(state, history)
                if not progress and (eval_due or ckpt_due or s == steps):
                    logger.info("step %d/%d: loss %.4g, accuracy %.3f%s", s, steps,
                                history.loss[-1], history.accuracy[-1],
                                f", held-out loss {history.eval_loss[-1]:.4g}"
                                if eval_due or s == steps else "")
    finally:
        bar.close()
    if nonfinite is not None:
        logger.warning(
            "non-finite loss at step %d: training stopped, keeping the last good params",
            nonfinite,
        )
        save(state, history)
    return TrainResult(
        params=state.params,
        opt_state=state.opt_state,
        history=history,
        step=int(state.step) if nonfinite is None else nonfinite,
        nonfinite_step=nonfinite,
        forward_path=run_path,
    )
