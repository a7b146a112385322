"""The record of a training run: per-step metrics and held-out evaluations, as NumPy arrays.

:class:`StepMetrics` is what one train step returns (scalars, inside ``jit``); :class:`History`
stacks them on the host, with the evaluations beside them. Checkpoints store a ``History``, and
``ctrnn_dyn.train`` fills one, so both import it from here.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

__all__ = ["StepMetrics", "History"]


class StepMetrics(NamedTuple):
    """Metrics of one train step (scalars; stacked over steps in :class:`History`).

    Attributes:
        loss: total loss (data term + regularisers).
        mse: masked data term.
        grad_norm: global norm of the gradient (before clipping).
        accuracy: ``task.accuracy`` on the step's batch.
    """

    loss: jax.Array
    mse: jax.Array
    grad_norm: jax.Array
    accuracy: jax.Array


class History(NamedTuple):
    """Training history: NumPy arrays, one entry per train step (``step``, ``loss``, …) and one
    per evaluation (``eval_step``, ``eval_loss``, ``eval_accuracy``).

    ``step[i]`` is the number of steps taken *after* that update (1-based); the metrics are those
    computed on that step's batch with the params before the update. Use :meth:`to_dataframe`
    for a pandas table (evaluation columns joined on ``step``, NaN where not evaluated).
    """

    step: np.ndarray
    loss: np.ndarray
    mse: np.ndarray
    grad_norm: np.ndarray
    accuracy: np.ndarray
    eval_step: np.ndarray
    eval_loss: np.ndarray
    eval_accuracy: np.ndarray

    @classmethod
    def empty(cls) -> History:
        ints, floats = np.zeros(0, np.int64), np.zeros(0, np.float32)
        return cls(ints, floats, floats, floats, floats, ints, floats, floats)

    def to_dataframe(self):
        """A ``pandas.DataFrame`` indexed by nothing, one row per step, eval columns joined."""
        import pandas as pd

        df = pd.DataFrame(
            {
                "step": self.step,
                "loss": self.loss,
                "mse": self.mse,
                "grad_norm": self.grad_norm,
                "accuracy": self.accuracy,
            }
        )
        ev = pd.DataFrame(
            {"step": self.eval_step, "eval_loss": self.eval_loss,
             "eval_accuracy": self.eval_accuracy}
        )
        return df.merge(ev, on="step", how="left")

    def _extend(self, metrics: list[StepMetrics], first_step: int) -> History:
        if not metrics:
            return self
        host = jax.device_get(metrics)
        n = len(host)
        cols = {f: np.asarray([getattr(m, f) for m in host], np.float32)
                for f in StepMetrics._fields}
        steps = np.arange(first_step + 1, first_step + n + 1, dtype=np.int64)
        return self._replace(
            step=np.concatenate([self.step, steps]),
            **{f: np.concatenate([getattr(self, f), cols[f]]) for f in StepMetrics._fields},
        )

    def _add_eval(self, step: int, loss: float, accuracy: float) -> History:
        return self._replace(
            eval_step=np.append(self.eval_step, np.int64(step)),
            eval_loss=np.append(self.eval_loss, np.float32(loss)),
            eval_accuracy=np.append(self.eval_accuracy, np.float32(accuracy)),
        )

    def truncate(self, step: int) -> History:
        """Entries with ``step <= step`` only."""
        k = self.step <= step
        e = self.eval_step <= step
        return History(
            self.step[k], self.loss[k], self.mse[k], self.grad_norm[k], self.accuracy[k],
            self.eval_step[e], self.eval_loss[e], self.eval_accuracy[e],
        )
