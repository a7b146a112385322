r"""Training CT-RNNs with Optax: the loss, a pure per-network train step, and the train loop.

The train loop, :func:`train`, is also the top-level ``ctrnn_dyn.fit`` (the same function;
``ctrnn_dyn.train`` names this module).

Loss on a batch (inputs ``u`` ``(B,T,m)``, targets ``y*``, mask ``M`` ``(B,T,p)``):

.. math::

    L = \frac{\sum M\,(y - y^*)^2}{\sum M}
        + \lambda_r\,\overline{r^2} + \lambda_w \sum_{K \in \{K_\mathrm{rec}, K_\mathrm{in},
        K_\mathrm{out}\}} \lVert K \rVert_F^2

(``loss="cross_entropy"`` replaces the masked MSE by the masked logistic loss
``softplus(−y* y)`` for ±1 targets.)

The forward pass of a :class:`~ctrnn_dyn.model.CTRNNCell` with a fixed ``alpha`` is, by default
(``fast=None``), :func:`ctrnn_dyn.fast_path.fast_forward`: the cell's equation with a
hand-written VJP, equal to ``nn.RNN(cell)`` to float rounding for the same noise (tested
against ``nn.RNN``, a NumPy loop, JAX's own derivative of a plain loop and finite differences).
With noise it draws ``ξ`` from its own stream (:mod:`ctrnn_dyn.noise`, generated inside the
compiled forward kernel), not the ``ξ_t`` of ``nn.RNN``'s per-step ``noise_stream`` keys
(:func:`ctrnn_dyn.model.step_noise`): for one key the two paths train on different noise of
the same distribution. At H = 128, B = 64, T = 200 its train step takes about half the time of
differentiating ``nn.RNN`` (``benchmarks/train_step.py``). Other cells, and
``fast=False``, use ``nn.RNN(cell)`` (``ctrnn_dyn.model.rnn``).
"""

from __future__ import annotations

from ctrnn_dyn.fast_path import fast_forward as fast_forward
from ctrnn_dyn.fast_path import supports_fast_path as supports_fast_path
from ctrnn_dyn.history import History as History
from ctrnn_dyn.history import StepMetrics as StepMetrics
from ctrnn_dyn.train.loop import TrainResult as TrainResult
from ctrnn_dyn.train.loop import train as train
from ctrnn_dyn.train.loss import LossAux as LossAux
from ctrnn_dyn.train.loss import LossKind as LossKind
from ctrnn_dyn.train.loss import forward as forward
from ctrnn_dyn.train.loss import forward_path as forward_path
from ctrnn_dyn.train.loss import loss_fn as loss_fn
from ctrnn_dyn.train.loss import use_fast_path as use_fast_path
from ctrnn_dyn.train.loss import uses_input_basis as uses_input_basis
from ctrnn_dyn.train.step import TrainState as TrainState
from ctrnn_dyn.train.step import default_optimizer as default_optimizer
from ctrnn_dyn.train.step import init_params as init_params
from ctrnn_dyn.train.step import init_state as init_state
from ctrnn_dyn.train.step import make_eval_fn as make_eval_fn
from ctrnn_dyn.train.step import make_train_step as make_train_step

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
