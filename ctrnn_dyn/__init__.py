"""ctrnn_dyn: train continuous-time RNNs in JAX and reverse-engineer their dynamics.

Plotting lives in ``ctrnn_dyn.plot``, checkpoints in ``ctrnn_dyn.checkpoint``, sweeps in
``ctrnn_dyn.sweep`` and figure reproductions in ``ctrnn_dyn.reproduce``; the generic linear
algebra (``jacobian``, ``eig``, ``classify``, ``continuous_eigvals``) in ``ctrnn_dyn.linear``.
``ctrnn_dyn.fit`` is the training function, the same object as ``ctrnn_dyn.train.train``
(``ctrnn_dyn.train`` is the module).

One vocabulary throughout: a map ``F`` comes first wherever one is taken, the input is
``inputs``, a set of starting states ``initial_states``, the precision ``dtype``; a count of the
wrong type is a ``TypeError``, one out of range a ``ValueError``, each naming the argument.

Importing the package changes nothing in JAX or any other library, and loads no submodule: each
name below is imported from its module when first used (PEP 562), so ``import ctrnn_dyn`` costs
almost nothing on top of Python's start and the CLI answers ``--help`` at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "DynamicsClassification": "attractors",
    "LimitCycle": "attractors",
    "LineAttractor": "attractors",
    "LyapunovSpectrum": "attractors",
    "classify_dynamics": "attractors",
    "find_limit_cycle": "attractors",
    "line_attractor": "attractors",
    "lyapunov_spectrum": "attractors",
    "OneStepMap": "dynamics",
    "one_step_map": "dynamics",
    "simulate": "dynamics",
    "vector_field": "dynamics",
    "EnsembleResult": "ensemble",
    "train_ensemble": "ensemble",
    "FixedPoints": "fixed_points",
    "find_fixed_points": "fixed_points",
    "sample_initial_states": "fixed_points",
    "CTRNNCell": "model",
    "RateCTRNNCell": "model",
    "rnn": "model",
    "TrajectoryPCA": "pca",
    "TASKS": "tasks",
    "Batch": "tasks",
    "ContextIntegration": "tasks",
    "FixedTrials": "tasks",
    "FlipFlop": "tasks",
    "ModuloThree": "tasks",
    "PerceptualDecision": "tasks",
    "SineWave": "tasks",
    "get_task": "tasks",
    "TrainResult": "train",
    "default_optimizer": "train",
    "fit": "train",
    "make_train_step": "train",
    "load_run": "runs",
    "Run": "runs",
    "analyze_run": "report",
    "write_report": "report",
    "AnalysisReport": "report",
    "from_torch": "interop",
    "TorchMap": "interop",
    "from_neurogym": "tasks",
    "NeurogymTask": "tasks",
}

#: Public names that are another name in their module.
_RENAMED = {"fit": "train"}

#: Former top-level names, still reachable (with a DeprecationWarning) in their module.
_MOVED = {"classify": "linear", "continuous_eigvals": "linear", "eig": "linear",
          "jacobian": "linear"}

__all__ = sorted(_EXPORTS)

_SUBMODULES = frozenset({
    "attractors", "checkpoint", "cli", "dynamics", "ensemble", "fast_path", "fixed_points",
    "interop", "linear", "model", "native", "noise", "pca", "plot", "report", "reproduce",
    "runs", "sweep", "systems", "tasks", "train",
})

if TYPE_CHECKING:
    from ctrnn_dyn.attractors import DynamicsClassification as DynamicsClassification
    from ctrnn_dyn.attractors import LimitCycle as LimitCycle
    from ctrnn_dyn.attractors import LineAttractor as LineAttractor
    from ctrnn_dyn.attractors import LyapunovSpectrum as LyapunovSpectrum
    from ctrnn_dyn.attractors import classify_dynamics as classify_dynamics
    from ctrnn_dyn.attractors import find_limit_cycle as find_limit_cycle
    from ctrnn_dyn.attractors import line_attractor as line_attractor
    from ctrnn_dyn.attractors import lyapunov_spectrum as lyapunov_spectrum
    from ctrnn_dyn.dynamics import OneStepMap as OneStepMap
    from ctrnn_dyn.dynamics import one_step_map as one_step_map
    from ctrnn_dyn.dynamics import simulate as simulate
    from ctrnn_dyn.dynamics import vector_field as vector_field
    from ctrnn_dyn.ensemble import EnsembleResult as EnsembleResult
    from ctrnn_dyn.ensemble import train_ensemble as train_ensemble
    from ctrnn_dyn.fixed_points import FixedPoints as FixedPoints
    from ctrnn_dyn.fixed_points import find_fixed_points as find_fixed_points
    from ctrnn_dyn.fixed_points import sample_initial_states as sample_initial_states
    from ctrnn_dyn.interop import TorchMap as TorchMap
    from ctrnn_dyn.interop import from_torch as from_torch
    from ctrnn_dyn.model import CTRNNCell as CTRNNCell
    from ctrnn_dyn.model import RateCTRNNCell as RateCTRNNCell
    from ctrnn_dyn.model import rnn as rnn
    from ctrnn_dyn.pca import TrajectoryPCA as TrajectoryPCA
    from ctrnn_dyn.report import AnalysisReport as AnalysisReport
    from ctrnn_dyn.report import analyze_run as analyze_run
    from ctrnn_dyn.report import write_report as write_report
    from ctrnn_dyn.runs import Run as Run
    from ctrnn_dyn.runs import load_run as load_run
    from ctrnn_dyn.tasks import TASKS as TASKS
    from ctrnn_dyn.tasks import Batch as Batch
    from ctrnn_dyn.tasks import ContextIntegration as ContextIntegration
    from ctrnn_dyn.tasks import FixedTrials as FixedTrials
    from ctrnn_dyn.tasks import FlipFlop as FlipFlop
    from ctrnn_dyn.tasks import ModuloThree as ModuloThree
    from ctrnn_dyn.tasks import NeurogymTask as NeurogymTask
    from ctrnn_dyn.tasks import PerceptualDecision as PerceptualDecision
    from ctrnn_dyn.tasks import SineWave as SineWave
    from ctrnn_dyn.tasks import from_neurogym as from_neurogym
    from ctrnn_dyn.tasks import get_task as get_task
    from ctrnn_dyn.train import TrainResult as TrainResult
    from ctrnn_dyn.train import default_optimizer as default_optimizer
    from ctrnn_dyn.train import make_train_step as make_train_step
    from ctrnn_dyn.train import train as fit  # noqa: F401  (ctrnn_dyn.fit)


def __getattr__(name: str):
    if name in _SUBMODULES:  # ``ctrnn_dyn.plot`` etc. without an explicit import
        return importlib.import_module(f"ctrnn_dyn.{name}")
    if name in _MOVED:
        import warnings

        where = f"ctrnn_dyn.{_MOVED[name]}.{name}"
        warnings.warn(f"ctrnn_dyn.{name} is deprecated: use {where}", DeprecationWarning,
                      stacklevel=2)
        return getattr(importlib.import_module(f"ctrnn_dyn.{_MOVED[name]}"), name)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ctrnn_dyn' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ctrnn_dyn.{module}"), _RENAMED.get(name, name))
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})
