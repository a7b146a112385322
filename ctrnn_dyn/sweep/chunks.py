"""A sweep's networks in chunks (:func:`plan_chunks`), and one chunk trained as one vmapped
ensemble and analysed (:func:`run_chunk`, one Dask task)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from ctrnn_dyn.sweep.config import _BATCHABLE, _TRAIN_DEFAULTS, SweepConfig
from ctrnn_dyn.sweep.tables import _atomic_write_parquet, _frame, _scalar

__all__ = ["ChunkSpec", "plan_chunks", "run_chunk"]


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


def _failed_rows(spec: ChunkSpec, error: str) -> list[dict]:
    return [{"network": net, "config_id": c, "seed": s, "chunk": spec.chunk_id,
             "status": "failed", "error": error,
             **{k: _scalar(v) for k, v in spec.columns[j].items()}}
            for j, (net, c, s) in enumerate(spec.networks)]
