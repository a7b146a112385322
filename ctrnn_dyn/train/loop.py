"""The train loop :func:`train`: steps in jitted blocks, held-out evaluations, checkpoints
that a killed run resumes from bit for bit, and the NaN guard."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from ctrnn_dyn import _checks
from ctrnn_dyn import checkpoint as ckpt
from ctrnn_dyn.history import History, StepMetrics
from ctrnn_dyn.train.loss import LossKind, forward_path
from ctrnn_dyn.train.step import (
    TrainState,
    _check_widths,
    default_optimizer,
    init_state,
    make_eval_fn,
    make_train_step,
)

__all__ = ["TrainResult", "train"]

logger = logging.getLogger(__name__)


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

    Also reachable as ``ctrnn_dyn.fit``: the same function (``ctrnn_dyn.train`` is the module).

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


    for name, value in (("steps", steps), ("batch_size", batch_size),
                        ("checkpoint_every", checkpoint_every), ("sync_every", sync_every),
                        ("eval_batches", eval_batches)):
        _checks.check_int(name, value, 1)
    if eval_every is not None:
        _checks.check_int("eval_every", eval_every, 1)
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
