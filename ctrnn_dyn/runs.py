"""A training run on disk, loaded back as the objects that made it.

``ctrnn-dyn train --out DIR`` (or :func:`ctrnn_dyn.train.train` with ``checkpoint_dir=DIR``)
writes ``DIR/checkpoint`` (:mod:`ctrnn_dyn.checkpoint`): the parameters, the history, and JSON
descriptions of the cell and the task. :func:`load_run` turns that back into a cell, its
parameters, the task and the history, from which the one-step map ``F`` of the trained network
follows::

    from ctrnn_dyn.runs import load_run

    run = load_run("runs/ff")        # the run directory (or the checkpoint file itself)
    F = run.map()                    # ctrnn_dyn.one_step_map(run.cell, run.params), noise off
    run.task.sample(key, 32)         # trials of the task it was trained on
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["Run", "load_run"]


class Run(NamedTuple):
    """A trained network as :func:`load_run` reads it from a run directory.

    Attributes:
        cell: the cell rebuilt from its configuration (with its training noise; :meth:`map`
            switches the noise off).
        params: ``nn.RNN`` variables ``{"params": {"cell": ...}}`` at the last checkpoint.
        task: the task the network was trained on, rebuilt from its configuration.
        history: :class:`ctrnn_dyn.history.History` (``.step``, ``.loss``, ``.eval_loss``, …).
        step: number of training steps the parameters have taken.
        nonfinite_step: first step with a non-finite loss, or ``None``.
        config: the other run settings stored with the checkpoint (batch size, learning rate,
            seed, … as the trainer recorded them).
        path: the checkpoint file read.
    """

    cell: Any
    params: Any
    task: Any
    history: Any
    step: int
    nonfinite_step: int | None
    config: dict
    path: Path

    def map(self) -> Any:
        """The deterministic one-step map ``F(x, u)`` of the trained network (noise off).

        Returns:
            :class:`ctrnn_dyn.dynamics.OneStepMap` of :attr:`cell` and :attr:`params`.
        """
        from ctrnn_dyn.dynamics import one_step_map

        return one_step_map(self.cell, self.params)


def load_run(path: str | os.PathLike) -> Run:
    """Load the run written to ``path`` by ``ctrnn-dyn train`` or ``train(checkpoint_dir=...)``.

    Args:
        path: the run directory (containing ``checkpoint``) or the checkpoint file.

    Returns:
        :class:`Run` ``(cell, params, task, history, step, nonfinite_step, config, path)``.

    Raises:
        TypeError: ``path`` is not a ``str`` or ``os.PathLike``.
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: the file is not a readable checkpoint, or it lacks the cell or task
            description needed to rebuild the network (a task type outside
            :data:`ctrnn_dyn.tasks.TASKS` is not recorded).
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    from ctrnn_dyn import checkpoint

    p = Path(path)
    file = p / checkpoint.CHECKPOINT_NAME if p.is_dir() else p
    saved = checkpoint.load(file)
    if saved.cell_config is None:
        raise ValueError(f"checkpoint {file} has no cell configuration; cannot rebuild the cell")
    if saved.task_config is None:
        raise ValueError(
            f"checkpoint {file} has no task configuration (the task was not one of "
            "ctrnn_dyn.tasks.TASKS); cannot rebuild the task"
        )
    return Run(
        cell=saved.cell,
        params=saved.params,
        task=saved.task,
        history=saved.history,
        step=int(saved.step),
        nonfinite_step=saved.nonfinite_step,
        config=dict(saved.extra),
        path=file,
    )
