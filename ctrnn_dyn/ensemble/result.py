"""What :func:`~ctrnn_dyn.ensemble.train_ensemble` returns: every network's params, optimiser
state and history with the network axis first, and one network as a
:class:`~ctrnn_dyn.train.TrainResult`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from ctrnn_dyn import train as _train

__all__ = ["EnsembleHistory", "EnsembleResult", "network_params"]


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
