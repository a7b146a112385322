r"""Cognitive tasks as pure, keyed JAX generators (SCIENCE.md §3).

Every task is a small frozen dataclass of its parameters with

* ``sample(key, batch_size) -> Batch(inputs, targets, mask)`` — shapes ``(B, T, m)``,
  ``(B, T, p)``, ``(B, T, p)``; pure JAX, jittable (``batch_size`` static);
* ``input_size`` (``m``), ``output_size`` (``p``), ``n_steps`` (``T``);
* ``accuracy(outputs, batch) -> scalar`` — the task's score on a batch of network outputs
  ``(B, T, p)`` (documented per task), jittable.

Optionally, a task whose inputs are combinations of a few fixed vectors (``inputs = codes @
basis``) also has ``input_basis`` ``(k, m)`` and ``sample_codes(key, batch_size)``: the same
trials as ``sample`` with ``inputs`` replaced by the ``(B, T, k)`` codes. Training then projects
the ``k`` basis vectors through the input kernel once per step instead of every ``(B, T)``
input (:func:`ctrnn_dyn.train.loss_fn`'s ``input_basis``).

Time convention: the CT-RNN reads its output *after* the update, so ``outputs[:, t]`` is the
network's response having seen ``inputs[:, :t+1]``; targets are aligned with that.

Tasks:

* :class:`SineWave` — the seed's sine-wave generator (Sussillo & Barak 2013).
* :class:`FlipFlop` — N-bit flip-flop.
* :class:`ContextIntegration` — Mante et al. (2013) context-dependent integration.
* :class:`PerceptualDecision` — integrate one noisy channel, report its sign.
* :class:`ModuloThree` — the attract-or-oscillate "SET" task (labels by ``a + b + c mod 3``).
* :class:`NeurogymTask` — a neurogym environment's trials (:func:`from_neurogym`; optional
  dependency ``neurogym``).

``get_task(name, **kwargs)`` builds one from the registry ``TASKS`` (used by the CLI).
"""

from __future__ import annotations

from ctrnn_dyn.tasks.base import Batch as Batch
from ctrnn_dyn.tasks.evidence import ContextIntegration as ContextIntegration
from ctrnn_dyn.tasks.evidence import PerceptualDecision as PerceptualDecision
from ctrnn_dyn.tasks.fixed_trials import FixedTrials as FixedTrials
from ctrnn_dyn.tasks.flipflop import FlipFlop as FlipFlop
from ctrnn_dyn.tasks.modulo3 import ALL_COLOUR_COMBINATIONS as ALL_COLOUR_COMBINATIONS
from ctrnn_dyn.tasks.modulo3 import ModuloThree as ModuloThree
from ctrnn_dyn.tasks.modulo3 import set_label as set_label
from ctrnn_dyn.tasks.neurogym_env import NeurogymTask as NeurogymTask
from ctrnn_dyn.tasks.neurogym_env import from_neurogym as from_neurogym
from ctrnn_dyn.tasks.registry import TASKS as TASKS
from ctrnn_dyn.tasks.registry import get_task as get_task
from ctrnn_dyn.tasks.registry import task_config as task_config
from ctrnn_dyn.tasks.registry import task_from_config as task_from_config
from ctrnn_dyn.tasks.sine_wave import SineWave as SineWave

__all__ = [
    "Batch",
    "SineWave",
    "FlipFlop",
    "ContextIntegration",
    "PerceptualDecision",
    "ModuloThree",
    "FixedTrials",
    "NeurogymTask",
    "from_neurogym",
    "TASKS",
    "get_task",
    "task_config",
    "task_from_config",
    "set_label",
]
