r"""Hyper-parameter sweeps on Dask: chunks of vmapped ensembles, one Parquet row per network.

A sweep is a TOML file (read with :mod:`tomllib`) describing a grid (or list) of configurations
× seeds of one task. Networks that differ only in per-network hyper-parameters
(:data:`ctrnn_dyn.ensemble.CELL_HPARAMS`, :data:`~ctrnn_dyn.ensemble.OPTIMIZER_HPARAMS`) are
grouped, split into chunks of ``chunk_size``, and each chunk is trained as one
:func:`ctrnn_dyn.ensemble.train_ensemble` call — one Dask task. Network ``(config, seed)`` is
trained with ``key = jax.random.key(seed)``, so its row equals
``ctrnn_dyn.train.train(cell, task, key=jax.random.key(seed), ...)``.

Output directory ``OUT``::

    OUT/config.toml                 copy of the sweep file
    OUT/chunks/<chunk>.parquet      rows of a finished chunk (written atomically; its existence
                                    marks the chunk done)
    OUT/chunks/<chunk>.failed.parquet rows of a chunk that kept failing (status "failed", error)
    OUT/checkpoints/<chunk>.ckpt    the chunk's stacked params/optimiser states
                                    (:func:`ctrnn_dyn.checkpoint.save`; network axis first)
    OUT/results.parquet             every row of the current sweep, in network order

Re-running the same command runs only chunks without a ``.parquet`` (unfinished or failed
ones): no row is lost or duplicated, because the table is assembled from one file per chunk
and chunk names carry a hash of their content. Dask retries a failing chunk ``retries`` times
(and re-schedules the chunks of a worker that died); a chunk that still fails is recorded with
its error and the sweep goes on.

Example file (see ``benchmarks/sweep_example.toml``)::

    task = "modulo3"
    seeds = 3                  # 0, 1, 2  (or a list of ints)
    chunk_size = 4

    [cell]
    hidden_features = 100
    alpha = 0.1
    noise_const = 0.0

    [train]
    steps = 1000
    batch_size = 256

    [grid]                     # cartesian product over "section.field" keys
    "cell.alpha" = [0.1, 1.0]

    [scheduler]
    kind = "local"             # "local", "slurm", or a scheduler address "tcp://host:8786"
    n_workers = 2

Scheduler kinds: ``local`` starts a ``distributed.LocalCluster`` (processes, no setup);
an address connects to a running scheduler; ``slurm`` submits ``dask_jobqueue.SLURMCluster``
jobs configured by ``[scheduler]`` (``cores``, ``memory``, ``walltime``, ``queue``,
``account``, ``jobs``, ``job_extra_directives``, ``python``, ``local_directory``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import re
import time
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ctrnn_dyn import _checks
from ctrnn_dyn.ensemble import CELL_HPARAMS, OPTIMIZER_HPARAMS

__all__ = [
    "SweepConfig",
    "ChunkSpec",
    "SweepResult",
    "load_config",
    "validate_config",
    "plan_chunks",
    "run_chunk",
    "run_sweep",
    "make_slurm_cluster",
    "slurm_job_script",
    "SWEEP_HELP",
    "add_sweep_parser",
    "configure_sweep_parser",
    "run_sweep_command",
]

logger = logging.getLogger(__name__)

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


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Chunks
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ChunkSpec:
    """One Dask task: networks sharing everything but per-network hyper-parameters.

    Attributes:
        chunk_id: ``"<index>-<content hash>"``; names its files.
        networks: ``(network index, config id, seed)`` per network.
        static: the resolved sections shared by the chunk's networks (a varying
            hyper-parameter holds its group's first value there, overridden per network).
        varying: ``{"section.field": [value per network]}`` per-network hyper-parameters.
        columns: ``[{"section.field": value}]`` per network, the configuration's overrides
            (become table columns).
        task: task name.
        analysis: analysis settings.
    """

    chunk_id: str
    networks: tuple[tuple[int, int, int], ...]
    static: dict
    varying: dict
    columns: tuple[dict, ...]
    task: str
    analysis: dict


def plan_chunks(cfg: SweepConfig) -> list[ChunkSpec]:
    """Split configurations × seeds into chunks (deterministic order and names)."""
    groups: dict[str, list[tuple[int, int, int]]] = {}
    statics: dict[str, dict] = {}
    nets = [(c, s) for c in range(len(cfg.configs)) for s in cfg.seeds]
    for idx, (c, s) in enumerate(nets):
        r = cfg.resolved(c)
        static = copy.deepcopy(r)
        for dotted in _BATCHABLE:
            section, field = dotted.split(".")
            static[section].pop(field, None)
        sig = json.dumps(static, sort_keys=True, default=str)
        groups.setdefault(sig, []).append((idx, c, s))
        statics[sig] = r
    chunks = []
    for sig, members in groups.items():
        resolved_all = [cfg.resolved(c) for _, c, _ in members]
        static = copy.deepcopy(statics[sig])
        varies: list[str] = []
        for dotted in sorted(_BATCHABLE):
            # a hyper-parameter that varies anywhere in the group is passed per network in
            # every chunk of the group, so that all its chunks run the same compiled program
            section, field = dotted.split(".")
            vals = [r[section].get(field) for r in resolved_all]
            if len({json.dumps(v) for v in vals}) > 1:
                varies.append(dotted)
            if vals[0] is not None:
                static[section][field] = vals[0]
        for lo in range(0, len(members), cfg.chunk_size):
            part = tuple(members[lo:lo + cfg.chunk_size])
            resolved = resolved_all[lo:lo + cfg.chunk_size]
            varying = {d: [r[d.split(".")[0]][d.split(".")[1]] for r in resolved]
                       for d in varies}
            columns = tuple(dict(cfg.configs[c]) for _, c, _ in part)
            content = json.dumps([cfg.task, static, varying, part, cfg.analysis],
                                 sort_keys=True, default=str)
            digest = hashlib.sha256(content.encode()).hexdigest()[:12]
            chunks.append(ChunkSpec(
                chunk_id=f"{len(chunks):05d}-{digest}", networks=part, static=static,
                varying=varying, columns=columns, task=cfg.task, analysis=dict(cfg.analysis),
            ))
    return chunks


def _atomic_write_parquet(df, path: Path) -> None:
    """Write ``df`` to ``path`` atomically; the file and its directory are fsynced, and a failed
    write leaves no temporary file (see :func:`ctrnn_dyn._files.atomic_write`)."""
    from ctrnn_dyn import _files

    path.parent.mkdir(parents=True, exist_ok=True)
    _files.atomic_write(path, lambda fh: df.to_parquet(fh, engine="pyarrow", index=False))


def _chunk_paths(out: Path, chunk_id: str) -> tuple[Path, Path, Path]:
    return (out / "chunks" / f"{chunk_id}.parquet",
            out / "chunks" / f"{chunk_id}.failed.parquet",
            out / "checkpoints" / f"{chunk_id}.ckpt")


def _analyse(cell, task, result, hp, analysis, key) -> tuple[list, list, list]:
    """(n fixed points, n stable fixed points, dynamics class) per network (None if off),
    through the ensemble analyses (one compiled program for all networks of the chunk)."""
    import jax
    import jax.numpy as jnp

    from ctrnn_dyn import ensemble_analysis
    from ctrnn_dyn.dynamics import simulate
    from ctrnn_dyn.fixed_points import sample_initial_states

    n = len(result)
    n_fp: list = [None] * n
    n_stable: list = [None] * n
    cls: list = [None] * n
    if not (analysis["fixed_points"] or analysis["classify"]):
        return n_fp, n_stable, cls
    maps = ensemble_analysis.network_maps(cell, result.params, hp)
    batch = task.sample(key, 16)
    x0 = jnp.ones((maps[0].state_size,), jnp.float32)
    zero_u = jnp.zeros((task.input_size,), jnp.float32)
    rollout = jax.jit(jax.vmap(lambda F, u: simulate(F, x0, u), in_axes=(None, 0)))
    states = [rollout(F, batch.inputs) for F in maps]  # (B, T, n) each
    keys = [jax.random.fold_in(key, i) for i in range(n)]
    if analysis["fixed_points"]:
        starts = [sample_initial_states(s, analysis["n_starts"],
                                        noise_scale=analysis["starts_noise"], key=k)
                  for s, k in zip(states, keys, strict=True)]
        found = ensemble_analysis.find_fixed_points_ensemble(
            cell, result.params, starts, zero_u, hparams=hp, max_iters=analysis["max_iters"])
        n_fp = [len(f.fixed) for f in found]
        n_stable = [len(f.fixed.stable) for f in found]
    if analysis["classify"]:
        picks = []
        for s, k in zip(states, keys, strict=True):
            flat = s.reshape(-1, s.shape[-1])
            picks.append(flat[jax.random.choice(k, flat.shape[0],
                                                (analysis["classify_starts"],), replace=False)])
        verdicts = ensemble_analysis.classify_dynamics_ensemble(
            cell, result.params, picks, zero_u, hparams=hp,
            n_transient=analysis["classify_transient"], n_steps=analysis["classify_steps"])
        for i, c in enumerate(verdicts):
            labels, counts = np.unique(np.asarray(c.labels), return_counts=True)
            cls[i] = str(labels[np.argmax(counts)])
    return n_fp, n_stable, cls


def run_chunk(spec: ChunkSpec, out_dir: str | os.PathLike) -> list[dict]:
    """Train (and analyse) one chunk, write its checkpoint and its rows; return the rows.

    Idempotent: if the chunk's table exists it is read back instead of re-running. Runs in a
    Dask worker (or anywhere): imports JAX lazily and writes every file atomically.
    """
    import pandas as pd

    out = Path(out_dir)
    done, failed, ckpt_path = _chunk_paths(out, spec.chunk_id)
    if done.exists():
        return pd.read_parquet(done).to_dict("records")
    import jax

    from ctrnn_dyn import checkpoint as ckpt
    from ctrnn_dyn.ensemble import train_ensemble
    from ctrnn_dyn.tasks import get_task

    t0 = time.perf_counter()
    opts = spec.static["task_options"]
    task = get_task(spec.task, **{k: tuple(map(tuple, v)) if isinstance(v, list) and v
                                  and isinstance(v[0], list) else v for k, v in opts.items()})
    cell = ckpt.cell_from_config({"type": "CTRNNCell", "output_features": task.output_size,
                                  **spec.static["cell"]})
    tr = spec.static["train"]
    hp = {dotted.split(".", 1)[1]: np.asarray(v, np.float32)
          for dotted, v in spec.varying.items()}
    for k in ("weight_decay", "clip_norm", "b1", "b2"):
        if k in tr and tr[k] != _TRAIN_DEFAULTS[k]:
            # a non-default optimiser constant: injected like a per-network hyper-parameter
            hp.setdefault(k, np.full(len(spec.networks), tr[k], np.float32))
    keys = jax.numpy.stack([jax.random.key(seed) for _, _, seed in spec.networks])
    result = train_ensemble(
        cell, task, keys=keys, steps=tr["steps"], batch_size=tr["batch_size"], hparams=hp or None,
        learning_rate=tr.get("learning_rate", 1e-3),
        rate_l2=tr["rate_l2"], weight_l2=tr["weight_l2"], loss=tr["loss"],
        block_steps=tr["block_steps"], eval_batches=tr["eval_batches"],
    )
    t_train = time.perf_counter() - t0
    # Analysis starts are keyed by the chunk's first network, so they are reproducible per chunk.
    n_fp, n_stable, cls = _analyse(cell, task, result, hp, spec.analysis,
                                   jax.random.fold_in(keys[0], 7))
    ckpt.save(ckpt_path, ckpt.Checkpoint(
        params=result.params, opt_state=result.opt_state, step=tr["steps"],
        history=result.history, cell_config=ckpt.cell_config(cell),
        task_config=ckpt.task_config_or_none(task),
        key=np.stack([np.asarray(jax.random.key_data(k)) for k in keys]),
        extra={"chunk": spec.chunk_id, "networks": [list(n) for n in spec.networks],
               "varying": spec.varying, "train": tr},
    ))
    wall = time.perf_counter() - t0
    h = result.history
    rows = []
    for j, (net, config_id, seed) in enumerate(spec.networks):
        ns = int(result.nonfinite_step[j])
        rows.append({
            "network": net, "config_id": config_id, "seed": seed, "chunk": spec.chunk_id,
            "status": "ok", "error": None,
            **{k: _scalar(v) for k, v in spec.columns[j].items()},
            "final_loss": float(h.loss[j, -1]), "best_loss": float(np.nanmin(h.loss[j])),
            "eval_loss": float(h.eval_loss[j]), "accuracy": float(h.eval_accuracy[j]),
            "train_accuracy": float(h.accuracy[j, -1]),
            "n_fixed_points": n_fp[j], "n_stable_fixed_points": n_stable[j],
            "dynamics_class": cls[j], "nonfinite_step": None if ns < 0 else ns,
            "steps": tr["steps"], "train_time_s": t_train / len(spec.networks),
            "wall_time_s": wall / len(spec.networks),
            "checkpoint": str(ckpt_path), "checkpoint_index": j,
        })
    _atomic_write_parquet(_frame(rows), done)
    if failed.exists():
        failed.unlink()
    return rows


def _scalar(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, list | dict) else v


_COLUMNS = ["network", "config_id", "seed", "chunk", "status", "error", "final_loss",
            "best_loss", "eval_loss", "accuracy", "train_accuracy", "n_fixed_points",
            "n_stable_fixed_points", "dynamics_class", "nonfinite_step", "steps",
            "train_time_s", "wall_time_s", "checkpoint", "checkpoint_index"]


def _frame(rows: list[dict]):
    import pandas as pd

    df = pd.DataFrame.from_records(rows)
    for c in _COLUMNS:
        if c not in df:
            df[c] = None
    for c in ("n_fixed_points", "n_stable_fixed_points", "nonfinite_step", "checkpoint_index"):
        df[c] = df[c].astype("Int64")
    for c in ("error", "dynamics_class", "checkpoint"):
        df[c] = df[c].astype("string")
    extra = [c for c in df.columns if c not in _COLUMNS]
    return df[_COLUMNS[:4] + extra + _COLUMNS[4:]]


def _failed_rows(spec: ChunkSpec, error: str) -> list[dict]:
    return [{"network": net, "config_id": c, "seed": s, "chunk": spec.chunk_id,
             "status": "failed", "error": error,
             **{k: _scalar(v) for k, v in spec.columns[j].items()}}
            for j, (net, c, s) in enumerate(spec.networks)]


# ---------------------------------------------------------------------------------------------
# Schedulers
# ---------------------------------------------------------------------------------------------


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


def _slurm_kwargs(scheduler: Mapping[str, Any]) -> dict[str, Any]:
    s = {**_SCHEDULER_DEFAULTS, **scheduler}
    _check_job_fields(s)
    kwargs: dict[str, Any] = {
        "cores": s["cores"], "memory": s["memory"], "processes": s["processes"],
        "walltime": s["walltime"], "job_extra_directives": list(s["job_extra_directives"]),
    }
    for k in ("queue", "account", "python", "local_directory"):
        if s[k] is not None:
            kwargs[k] = s[k]
    return kwargs


def make_slurm_cluster(scheduler: Mapping[str, Any]):
    """A ``dask_jobqueue.SLURMCluster`` from the ``[scheduler]`` table (not yet scaled).

    The sweep scales it to ``jobs`` jobs. Each job runs ``processes`` worker processes sharing
    ``cores`` cores and ``memory``; :func:`slurm_job_script` shows the batch script it submits.
    """
    from dask_jobqueue import SLURMCluster

    # A free port: a fixed 8787 clashes with any other Dask scheduler on the login node.
    return SLURMCluster(**_slurm_kwargs(scheduler),
                        scheduler_options={"dashboard_address": ":0"})


def slurm_job_script(scheduler: Mapping[str, Any],
                     scheduler_address: str = "tcp://SCHEDULER:8786") -> str:
    """The SLURM batch script one sweep job submits, built without starting a scheduler."""
    from dask_jobqueue.slurm import SLURMJob

    return SLURMJob(scheduler=scheduler_address, name="ctrnn-dyn-worker",
                    **_slurm_kwargs(scheduler)).job_script()


def _compilation_cache_plugin(path: str) -> Any:
    """A Dask worker plugin that points JAX's persistent compilation cache at ``path`` on every
    worker (also on workers restarted after a crash), so workers share compiled programs."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class CompilationCache(WorkerPlugin):
        name = "ctrnn-dyn-jax-cache"

        def setup(self, worker: Any) -> None:
            import jax

            jax.config.update("jax_compilation_cache_dir", path)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

    return CompilationCache()


def _client(scheduler: Mapping[str, Any]):
    """(client, cluster or None) for the scheduler settings."""
    from distributed import Client, LocalCluster

    kind = scheduler["kind"]
    if kind == "local":
        env = {}
        if scheduler["threads_per_worker"] == 1:
            env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                " --xla_cpu_multi_thread_eigen=false"
                                " intra_op_parallelism_threads=1").strip()
        cluster = LocalCluster(n_workers=scheduler["n_workers"],
                               threads_per_worker=scheduler["threads_per_worker"],
                               processes=True, dashboard_address=":0", env=env)
        return Client(cluster), cluster
    if kind == "slurm":
        cluster = make_slurm_cluster(scheduler)
        cluster.scale(jobs=scheduler["jobs"])
        return Client(cluster), cluster
    return Client(kind), None


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes:
        table: path of ``results.parquet``.
        n_chunks: chunks in the sweep.
        ran: chunk ids run this time.
        skipped: chunk ids already finished.
        failed: ``{chunk id: error}`` of chunks that kept failing.
        wall_time: seconds.
    """

    table: Path
    n_chunks: int
    ran: tuple[str, ...]
    skipped: tuple[str, ...]
    failed: dict
    wall_time: float

    def read(self):
        """The results table as a ``pandas.DataFrame``."""
        import pandas as pd

        return pd.read_parquet(self.table)


def run_sweep(
    config: SweepConfig | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    client: Any = None,
    scheduler: str | None = None,
    progress: bool | None = None,
) -> SweepResult:
    """Run (or finish) a sweep into ``out_dir``.

    Args:
        config: a :class:`SweepConfig` or the path of a sweep TOML file (validated first).
        out_dir: output directory (created).
        client: an existing ``distributed.Client`` to use (then ``[scheduler]`` is ignored
            except ``retries``; with ``compilation_cache`` a worker plugin pointing JAX's
            persistent cache at ``out_dir/jax_cache`` is registered on its workers).
        scheduler: override ``[scheduler] kind`` (``"local"``, ``"slurm"``, an address).
        progress: tqdm bar over chunks (default: when stderr is a terminal).

    Returns:
        :class:`SweepResult`; the table is ``out_dir/results.parquet``.
    """
    import sys

    import pandas as pd
    from distributed import as_completed
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    if not isinstance(config, SweepConfig):
        config = load_config(config, scheduler=scheduler)
    elif scheduler is not None:
        config = validate_config({**config.source,
                                  "scheduler": {**config.source.get("scheduler", {}),
                                                "kind": scheduler}})
    out = Path(out_dir)
    (out / "chunks").mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    _write_config(config, out)
    chunks = plan_chunks(config)
    todo = [c for c in chunks if not _chunk_paths(out, c.chunk_id)[0].exists()]
    skipped = tuple(c.chunk_id for c in chunks if c not in todo)
    logger.info("sweep: %d chunks, %d already finished", len(chunks), len(skipped))
    failed: dict[str, str] = {}
    if todo:
        own = client is None
        cluster = None
        if own:
            client, cluster = _client(config.scheduler)
        try:
            if config.compilation_cache:
                client.register_plugin(
                    _compilation_cache_plugin(str((out / "jax_cache").resolve())))
            futures = {
                client.submit(run_chunk, spec, str(out.resolve()), key=f"chunk-{spec.chunk_id}",
                              retries=config.scheduler["retries"], pure=False): spec
                for spec in todo
            }
            show = sys.stderr.isatty() if progress is None else progress
            finished = len(skipped)
            with tqdm(total=len(chunks), initial=len(skipped), disable=not show,
                      desc="sweep", unit="chunk") as bar:
                for fut in as_completed(futures):
                    spec = futures[fut]
                    try:
                        fut.result()
                    except Exception as err:  # noqa: BLE001 - recorded, the sweep goes on
                        msg = f"{type(err).__name__}: {err}"
                        logger.error("chunk %s failed: %s", spec.chunk_id, msg)
                        failed[spec.chunk_id] = msg
                        _atomic_write_parquet(_frame(_failed_rows(spec, msg)),
                                              _chunk_paths(out, spec.chunk_id)[1])
                    bar.update(1)
                    finished += 1
                    if not show:  # without a bar: one line per finished chunk
                        logger.info("chunk %s %s (%d of %d)", spec.chunk_id,
                                    "failed" if spec.chunk_id in failed else "done", finished,
                                    len(chunks))
        finally:
            if own:
                client.close()
                if cluster is not None:
                    cluster.close()
    frames = []
    for spec in chunks:
        done, bad, _ = _chunk_paths(out, spec.chunk_id)
        if done.exists():
            frames.append(pd.read_parquet(done))
        elif bad.exists():
            frames.append(pd.read_parquet(bad))
    table = out / "results.parquet"
    df = pd.concat(frames, ignore_index=True).sort_values("network", kind="stable")
    _atomic_write_parquet(df.reset_index(drop=True), table)
    return SweepResult(table=table, n_chunks=len(chunks),
                       ran=tuple(c.chunk_id for c in todo), skipped=skipped, failed=failed,
                       wall_time=time.perf_counter() - t0)


def _write_config(config: SweepConfig, out: Path) -> None:
    from ctrnn_dyn import _files

    text = json.dumps(config.source, indent=2, sort_keys=True, default=str)
    _files.atomic_write(out / "config.json", lambda fh: fh.write(text.encode()))


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


SWEEP_HELP = "train a grid of configurations x seeds as vmapped chunks on Dask"


def configure_sweep_parser(parser: argparse.ArgumentParser):
    """Add the ``sweep`` arguments to ``parser``; returns the handler :func:`run_sweep_command`.

    Matches ``ctrnn_dyn.cli``'s registry: ``subcommand("sweep", help=SWEEP_HELP)(
    configure_sweep_parser)``.
    """
    parser.add_argument("config", help="sweep TOML file")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--scheduler", default=None,
                        help="'local' (default: a LocalCluster), 'slurm' (dask-jobqueue), or a "
                             "scheduler address such as tcp://host:8786")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return run_sweep_command


def add_sweep_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``sweep CONFIG.toml --out DIR [--scheduler local|ADDRESS|slurm]`` to a CLI's
    ``subparsers``; the sub-parser's ``func`` default is :func:`run_sweep_command`."""
    p = subparsers.add_parser(
        "sweep", help=SWEEP_HELP,
        description="Run (or resume) a sweep described by a TOML file; writes "
                    "OUT/results.parquet with one row per network.",
    )
    p.set_defaults(func=configure_sweep_parser(p))
    return p


def run_sweep_command(args: argparse.Namespace) -> int:
    """Run the ``sweep`` subcommand; returns the exit status (1 if any chunk failed)."""
    from ctrnn_dyn.cli import check_output_dir

    check_output_dir(Path(args.out), create=False)  # created once the config is valid
    result = run_sweep(args.config, args.out, scheduler=args.scheduler,
                       progress=False if args.no_progress else None)
    logger.info("sweep done: %d chunks (%d run, %d skipped, %d failed) in %.1fs -> %s",
                result.n_chunks, len(result.ran), len(result.skipped), len(result.failed),
                result.wall_time, result.table)
    print(f"{result.table}: {result.n_chunks} chunks, {len(result.ran)} run, "
          f"{len(result.skipped)} skipped, {len(result.failed)} failed, "
          f"{result.wall_time:.1f}s")
    return 1 if result.failed else 0
