"""The registry of tasks by name (``TASKS``, :func:`get_task`, used by the CLI) and a task's
JSON-able configuration (:func:`task_config`, :func:`task_from_config`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ctrnn_dyn.tasks.evidence import ContextIntegration, PerceptualDecision
from ctrnn_dyn.tasks.flipflop import FlipFlop
from ctrnn_dyn.tasks.modulo3 import ModuloThree
from ctrnn_dyn.tasks.neurogym_env import NeurogymTask
from ctrnn_dyn.tasks.sine_wave import SineWave

__all__ = ["TASKS", "get_task", "task_config", "task_from_config"]


TASKS: dict[str, type] = {
    "sine_wave": SineWave,
    "flipflop": FlipFlop,
    "context_integration": ContextIntegration,
    "perceptual_decision": PerceptualDecision,
    "modulo3": ModuloThree,
}


def get_task(name: str, **kwargs: Any) -> Any:
    """Build the task registered as ``name`` (see ``TASKS``) with keyword parameters.

    ``"neurogym:ENV_ID"`` is ``NeurogymTask(env="ENV_ID", **kwargs)`` (see
    :func:`from_neurogym`; ``n_trials`` defaults to 1000), e.g. the CLI's
    ``--task neurogym:PerceptualDecisionMaking-v0``.

    Raises:
        ValueError: unknown ``name`` (the message lists the known ones).
    """
    if name.startswith("neurogym:"):
        if "env" in kwargs:
            raise ValueError(f"give the environment once: {name!r} and env={kwargs['env']!r}")
        return NeurogymTask(env=name.split(":", 1)[1], **kwargs)
    if name not in TASKS:
        raise ValueError(f"unknown task name {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](**kwargs)


def task_config(task: Any) -> dict[str, Any]:
    """JSON-able ``{"name": ..., **fields}`` of a registered task or a neurogym task built from
    an id (name ``"neurogym:ENV_ID"``); inverse: task_from_config."""
    if isinstance(task, NeurogymTask):
        if not isinstance(task.env, str):
            raise TypeError("a NeurogymTask built from an environment object has no config; "
                            "build it from an environment id")
        fields = {f.name: _jsonable(getattr(task, f.name)) for f in dataclasses.fields(task)
                  if f.name != "env"}
        return {"name": f"neurogym:{task.env}", **fields}
    for name, cls in TASKS.items():
        if type(task) is cls:
            fields = {
                f.name: _jsonable(getattr(task, f.name)) for f in dataclasses.fields(task)
            }
            return {"name": name, **fields}
    raise TypeError(f"task must be one of the registered task types, got {type(task).__name__}")


def task_from_config(config: dict[str, Any]) -> Any:
    """Rebuild a task from :func:`task_config`'s dict."""
    config = dict(config)
    name = config.pop("name")
    if isinstance(name, str) and name.startswith("neurogym:"):
        return get_task(name, **{k: _tuplify(v) if isinstance(v, list) else v
                                 for k, v in config.items()})
    cls = TASKS.get(name)
    if cls is None:
        raise ValueError(f"unknown task name {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in config:
            v = config[f.name]
            kwargs[f.name] = _tuplify(v) if isinstance(v, list) else v
    return cls(**kwargs)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value
