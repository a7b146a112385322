"""A sweep's TOML file, read and validated into a :class:`SweepConfig` (every mistake named
by its field, before anything runs)."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ctrnn_dyn import _checks
from ctrnn_dyn.ensemble import CELL_HPARAMS, OPTIMIZER_HPARAMS

__all__ = [
    "SweepConfig",
    "load_config",
    "validate_config",
    "SCHEDULER_KINDS",
    "MAX_CONFIGURATIONS",
    "MAX_NETWORKS",
]


SCHEDULER_KINDS = ("local", "slurm")
_TOP_KEYS = {"task", "seeds", "chunk_size", "compilation_cache", "task_options", "cell", "train",
             "grid", "configs", "analysis", "scheduler"}
_CELL_KEYS = {"hidden_features", "alpha", "noise_const", "activation_fn", "noise_mode",
              "train_alpha", "excitatory_fraction"}
_TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": 1000, "batch_size": 256, "learning_rate": 1e-3, "weight_decay": 1e-4,
    "clip_norm": 1.0, "b1": 0.9, "b2": 0.999, "rate_l2": 0.0, "weight_l2": 0.0,
    "loss": "mse", "block_steps": 100, "eval_batches": 4,
}
_ANALYSIS_DEFAULTS: dict[str, Any] = {
    "fixed_points": False, "n_starts": 64, "starts_noise": 0.05, "max_iters": 200,
    "classify": False, "classify_starts": 4, "classify_transient": 500, "classify_steps": 2000,
}
_SCHEDULER_DEFAULTS: dict[str, Any] = {
    "kind": "local", "n_workers": 2, "threads_per_worker": 1, "retries": 2,
    "cores": 1, "memory": "4GB", "walltime": "01:00:00", "queue": None, "account": None,
    "jobs": 1, "processes": 1, "job_extra_directives": [], "python": None,
    "local_directory": None,
}
_POSITIVE_INTS = {"chunk_size", "cell.hidden_features", "train.steps", "train.batch_size",
                  "train.block_steps", "train.eval_batches", "analysis.n_starts",
                  "analysis.max_iters", "analysis.classify_starts", "analysis.classify_steps",
                  "scheduler.n_workers", "scheduler.threads_per_worker", "scheduler.cores",
                  "scheduler.jobs", "scheduler.processes"}
_NON_NEGATIVE_INTS = {"scheduler.retries", "analysis.classify_transient"}
_BATCHABLE = {f"cell.{k}" for k in CELL_HPARAMS} | {f"train.{k}" for k in OPTIMIZER_HPARAMS}

#: Most configurations (grid product x [[configs]] entries) and networks (x seeds) in a sweep;
#: checked from the list lengths before any configuration is built.
MAX_CONFIGURATIONS = 100_000
MAX_NETWORKS = 1_000_000


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A validated sweep.

    Attributes:
        task: registered task name (``ctrnn_dyn.tasks.TASKS``) or ``neurogym:ENV_ID``.
        task_options: keyword arguments of the task.
        cell: ``CTRNNCell`` fields shared by all configurations (before overrides).
        train: training settings (defaults filled in).
        configs: one dict ``{"section.field": value}`` of overrides per configuration.
        seeds: the seeds (each configuration is trained once per seed).
        chunk_size: networks per chunk (one vmapped ensemble per Dask task).
        analysis: analysis settings (fixed points, dynamics class).
        scheduler: scheduler settings (defaults filled in).
        compilation_cache: share JAX's persistent compilation cache between workers
            (``OUT/jax_cache``).
        source: the raw TOML document.
    """

    task: str
    task_options: dict
    cell: dict
    train: dict
    configs: tuple[dict, ...]
    seeds: tuple[int, ...]
    chunk_size: int
    analysis: dict
    scheduler: dict
    compilation_cache: bool
    source: dict

    def resolved(self, config_id: int) -> dict[str, dict]:
        """Sections ``{"task_options", "cell", "train"}`` of configuration ``config_id``."""
        out = {"task_options": dict(self.task_options), "cell": dict(self.cell),
               "train": dict(self.train)}
        for dotted, value in self.configs[config_id].items():
            section, field = dotted.split(".", 1)
            out["task_options" if section == "task" else section][field] = value
        return out


def load_config(path: str | os.PathLike, *, scheduler: str | None = None) -> SweepConfig:
    """Read and validate a sweep TOML file (``scheduler`` overrides ``[scheduler] kind``).

    Raises:
        FileNotFoundError: no file at ``path``.
        IsADirectoryError: ``path`` is a directory.
        ValueError: invalid TOML or an invalid field (the message names it).
    """
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"sweep config {p} is a directory; expected a TOML file")
    if not p.is_file():
        raise FileNotFoundError(f"sweep config {p} does not exist")
    try:
        doc = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{p} is not valid TOML: {err}") from err
    if scheduler is not None:
        doc = copy.deepcopy(doc)
        doc.setdefault("scheduler", {})
        if not isinstance(doc["scheduler"], dict):
            raise ValueError("scheduler must be a table")
        doc["scheduler"]["kind"] = scheduler
    return validate_config(doc)


def _fail(field: str, msg: str) -> ValueError:
    return ValueError(f"sweep config: {field}: {msg}")


def _check_table(doc: Any, field: str, allowed: Iterable[str] | None) -> dict:
    if not isinstance(doc, dict):
        raise _fail(field, f"must be a table, got {type(doc).__name__}")
    if allowed is not None:
        unknown = sorted(set(doc) - set(allowed))
        if unknown:
            raise _fail(f"{field}.{unknown[0]}" if field else unknown[0],
                        f"unknown key; allowed keys: {', '.join(sorted(allowed))}")
    return doc


def _check_value(field: str, value: Any) -> None:
    if field in _POSITIVE_INTS or field in _NON_NEGATIVE_INTS:
        low = 1 if field in _POSITIVE_INTS else 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(field, f"must be an integer >= {low}, got {value!r}")
        if value < low:
            raise _fail(field, f"must be >= {low}, got {value}")
    section, _, name = field.partition(".")
    if section in ("cell", "train") and name in _checks.HPARAM_RANGES:
        # learning_rate, clip_norm, weight_decay, b1, b2, alpha, noise_const, rate_l2, weight_l2
        problem = _checks.hparam_problem(name, value)
        if problem is not None:
            raise _fail(field, problem[1])
    if section in ("task", "task_options"):
        problem = _checks.task_option_problem(value)
        if problem is not None:
            raise _fail(field, problem)
    if field == "train.loss" and value not in ("mse", "cross_entropy"):
        raise _fail(field, f"must be 'mse' or 'cross_entropy', got {value!r}")


def validate_config(doc: Mapping[str, Any]) -> SweepConfig:
    """Validate a parsed sweep document; every error names the offending field.

    Checks unknown keys (top level and in every table), the task name and its options, the
    cell fields, positive sizes, a non-empty grid and seed list, and the scheduler kind — all
    before any work starts. Each configuration's cell and task are also constructed once, so
    their own checks (e.g. ``alpha`` in ``(0, 1]``) run here too.

    Raises:
        ValueError: naming the field.
    """
    import ctrnn_dyn.tasks as tasks

    doc = _check_table(dict(doc), "", _TOP_KEYS)
    if "task" not in doc:
        raise _fail("task", f"required; one of {', '.join(sorted(tasks.TASKS))}")
    task = doc["task"]
    neurogym = isinstance(task, str) and task.startswith("neurogym:")
    if task not in tasks.TASKS and not neurogym:
        raise _fail("task", f"unknown task {task!r}; known: "
                            f"{', '.join(sorted(tasks.TASKS))}, neurogym:ENV_ID")
    task_fields = ({f.name for f in dataclasses.fields(tasks.NeurogymTask)} - {"env"} if neurogym
                   else {f.name for f in dataclasses.fields(tasks.TASKS[task])})
    task_options = dict(_check_table(doc.get("task_options", {}), "task_options", task_fields))
    for k, v in task_options.items():
        _check_value(f"task_options.{k}", v)
    cell = dict(_check_table(doc.get("cell", {}), "cell", _CELL_KEYS))
    cell.setdefault("hidden_features", 100)
    cell.setdefault("alpha", 0.1)
    cell.setdefault("noise_const", 0.0)
    train = {**_TRAIN_DEFAULTS,
             **_check_table(doc.get("train", {}), "train", _TRAIN_DEFAULTS)}
    analysis = {**_ANALYSIS_DEFAULTS,
                **_check_table(doc.get("analysis", {}), "analysis", _ANALYSIS_DEFAULTS)}
    sched = {**_SCHEDULER_DEFAULTS,
             **_check_table(doc.get("scheduler", {}), "scheduler", _SCHEDULER_DEFAULTS)}
    kind = sched["kind"]
    if not isinstance(kind, str) or not (kind in SCHEDULER_KINDS or "://" in kind):
        raise _fail("scheduler.kind",
                    f"unknown scheduler {kind!r}; use 'local', 'slurm' or an address "
                    "such as 'tcp://host:8786'")
    _check_job_fields(sched)

    seeds = doc.get("seeds", 1)
    if isinstance(seeds, bool):
        raise _fail("seeds", "must be an integer >= 1 or a non-empty list of integers")
    if isinstance(seeds, int):
        if seeds < 1:
            raise _fail("seeds", f"must be >= 1, got {seeds}")
        if seeds > MAX_NETWORKS:
            raise _fail("seeds", f"{seeds} seeds exceed the limit of {MAX_NETWORKS} networks")
        seeds = list(range(seeds))
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise _fail("seeds", f"must be an integer >= 1 or a non-empty list of integers >= 0, "
                             f"got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise _fail("seeds", "contains duplicates")
    chunk_size = doc.get("chunk_size", 32)
    _check_value("chunk_size", chunk_size)
    compilation_cache = doc.get("compilation_cache", True)
    if not isinstance(compilation_cache, bool):
        raise _fail("compilation_cache", f"must be true or false, got {compilation_cache!r}")

    for section, table in (("cell", cell), ("train", train), ("analysis", analysis),
                           ("scheduler", sched)):
        for k, v in table.items():
            _check_value(f"{section}.{k}", v)

    # configurations: the grid's product, times each [[configs]] entry
    allowed = ({f"cell.{k}" for k in _CELL_KEYS} | {f"train.{k}" for k in _TRAIN_DEFAULTS}
               | {f"task.{k}" for k in task_fields})
    grid = _check_table(doc.get("grid", {}), "grid", None)
    for k, values in grid.items():
        if k not in allowed:
            raise _fail(f"grid.{k}", "unknown key; use 'section.field' with section cell, "
                                     "train or task, e.g. 'cell.alpha'")
        if not isinstance(values, list):
            raise _fail(f"grid.{k}", f"must be a list of values, got {values!r}")
        if not values:
            raise _fail(f"grid.{k}", "empty list: the grid would have no configuration")
    entries = doc.get("configs", [{}])
    if not isinstance(entries, list) or not entries:
        raise _fail("configs", "must be a non-empty array of tables ([[configs]])")
    for i, e in enumerate(entries):
        _check_table(e, f"configs[{i}]", allowed)
    _check_sizes(grid, len(entries), len(seeds))  # before anything is built
    names = sorted(grid)
    product = [dict(zip(names, vals, strict=True))
               for vals in itertools.product(*(grid[k] for k in names))]
    configs = []
    for e in entries:
        for g in product:
            configs.append({**e, **g})
    for i, c in enumerate(configs):
        for k, v in c.items():
            where = f"grid.{k}" if k in grid else f"configs[{i}].{k}"
            try:
                _check_value(k, v)
            except ValueError as err:
                raise _fail(where, str(err).split(": ", 2)[-1]) from None

    cfg = SweepConfig(task=task, task_options=task_options, cell=cell, train=train,
                      configs=tuple(configs), seeds=tuple(seeds), chunk_size=chunk_size,
                      analysis=analysis, scheduler=sched,
                      compilation_cache=compilation_cache, source=dict(doc))
    for i in range(len(configs)):
        try:
            _build(cfg, i)
        except (TypeError, ValueError) as err:
            raise _fail(f"configuration {i} {configs[i]}", str(err)) from err
    return cfg


def _build(cfg: SweepConfig, config_id: int):
    """(cell, task) of one configuration."""
    from ctrnn_dyn.checkpoint import cell_from_config
    from ctrnn_dyn.tasks import get_task

    r = cfg.resolved(config_id)
    task = get_task(cfg.task, **{k: tuple(map(tuple, v)) if isinstance(v, list) and v
                                 and isinstance(v[0], list) else v
                                 for k, v in r["task_options"].items()})
    cell = cell_from_config({"type": "CTRNNCell", "output_features": task.output_size,
                             **r["cell"]})
    return cell, task


def _check_sizes(grid: Mapping[str, list], n_entries: int, n_seeds: int) -> None:
    """Bound the number of configurations and networks from the list lengths alone, before
    the grid's product (or anything else of that size) exists."""
    sizes = [len(grid[k]) for k in sorted(grid)]
    n_configs = math.prod(sizes) * n_entries
    if n_configs > MAX_CONFIGURATIONS:
        factors = " x ".join(f"{n} ({k})" for k, n in zip(sorted(grid), sizes, strict=True))
        if n_entries > 1:
            factors += f" x {n_entries} ([[configs]])"
        raise _fail("grid", f"{n_configs} configurations ({factors}) exceed the limit of "
                            f"{MAX_CONFIGURATIONS}")
    if n_configs * n_seeds > MAX_NETWORKS:
        raise _fail("grid", f"{n_configs} configurations x {n_seeds} seeds = "
                            f"{n_configs * n_seeds} networks exceed the limit of {MAX_NETWORKS}")


# What may reach the generated batch script. Paths (``python``, ``local_directory``) are words
# of the worker's command line: safe characters and ``$NAME``/``${NAME}`` references only (so
# ``$TMPDIR`` works), nothing that ends the command, substitutes one or redirects. A directive
# is one ``sbatch`` option, ``-x``, ``--name``, ``--name=value`` or ``--name value``, written
# after ``#SBATCH`` on its own line: a newline would start a shell line, so none is allowed;
# ``& | * [ ]`` may appear in its value for Slurm's constraint expressions (inert in a comment
# line, which only sbatch reads), no other shell metacharacter may.
_SAFE_WORD = r"[A-Za-z0-9_./+@%,:=~-]"
_PATH_RE = re.compile(rf"(?:{_SAFE_WORD}|\$(?:[A-Za-z_]\w*|\{{[A-Za-z_]\w*\}}))+", re.ASCII)
_DIRECTIVE_RE = re.compile(
    r"(?:-[A-Za-z]|--[A-Za-z][A-Za-z0-9-]*)(?:[= ][A-Za-z0-9_./+@%,:=~*&|\[\]-]+)?", re.ASCII)
_SLURM_NAME_RE = re.compile(r"[A-Za-z0-9_.,+-]+", re.ASCII)
_WALLTIME_RE = re.compile(r"\d+(?:-\d+)?(?::\d+){0,2}", re.ASCII)
_MEMORY_RE = re.compile(r"\d+(?:\.\d+)? ?(?:[kKMGTP]i?)?B?", re.ASCII)


def _check_job_fields(scheduler: Mapping[str, Any]) -> None:
    """Validate the ``[scheduler]`` fields that end up in a SLURM batch script.

    Raises:
        ValueError: naming the field (``sweep config: scheduler.<field>: ...``).
    """
    def text(field: str, value: Any, pattern: re.Pattern, what: str) -> None:
        if not isinstance(value, str):
            raise _fail(field, f"must be a string ({what}), got {value!r}")
        if any(c in value for c in "\n\r\0"):
            raise _fail(field, f"must be a single line ({what}), got {value!r}")
        if value.startswith("-") and pattern is not _DIRECTIVE_RE:
            raise _fail(field, f"must not start with '-' ({what}), got {value!r}")
        if not pattern.fullmatch(value):
            raise _fail(field, f"is not {what}: {value!r} contains characters the batch "
                               "script would interpret (shell metacharacters, quotes, spaces)")

    path = "a path: letters, digits, _ . / + @ % , : = ~ - and $NAME or ${NAME}"
    for k in ("python", "local_directory"):
        if scheduler.get(k) is not None:
            text(f"scheduler.{k}", scheduler[k], _PATH_RE, path)
    for k in ("queue", "account"):
        if scheduler.get(k) is not None:
            text(f"scheduler.{k}", scheduler[k], _SLURM_NAME_RE,
                 "a Slurm name: letters, digits, _ . , + -")
    for k, pattern, what in (
        ("walltime", _WALLTIME_RE, "a Slurm time such as '01:00:00', '90' or '2-12:00:00'"),
        ("memory", _MEMORY_RE, "a size such as '4GB', '500MiB' or '16G'"),
    ):
        value = scheduler[k]
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            continue  # minutes / bytes as a TOML integer
        text(f"scheduler.{k}", value, pattern, what)
    directives = scheduler["job_extra_directives"]
    if not isinstance(directives, list):
        raise _fail("scheduler.job_extra_directives",
                    f"must be a list of sbatch options, got {directives!r}")
    for i, d in enumerate(directives):
        text(f"scheduler.job_extra_directives[{i}]", d, _DIRECTIVE_RE,
             "one sbatch option such as '--exclusive', '--gres=gpu:1' or '-C a100|h100'")
