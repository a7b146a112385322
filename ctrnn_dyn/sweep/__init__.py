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

from ctrnn_dyn.sweep.chunks import ChunkSpec as ChunkSpec
from ctrnn_dyn.sweep.chunks import plan_chunks as plan_chunks
from ctrnn_dyn.sweep.chunks import run_chunk as run_chunk
from ctrnn_dyn.sweep.cluster import make_slurm_cluster as make_slurm_cluster
from ctrnn_dyn.sweep.cluster import slurm_job_script as slurm_job_script
from ctrnn_dyn.sweep.command import SWEEP_HELP as SWEEP_HELP
from ctrnn_dyn.sweep.command import add_sweep_parser as add_sweep_parser
from ctrnn_dyn.sweep.command import configure_sweep_parser as configure_sweep_parser
from ctrnn_dyn.sweep.command import run_sweep_command as run_sweep_command
from ctrnn_dyn.sweep.config import MAX_CONFIGURATIONS as MAX_CONFIGURATIONS
from ctrnn_dyn.sweep.config import MAX_NETWORKS as MAX_NETWORKS
from ctrnn_dyn.sweep.config import SCHEDULER_KINDS as SCHEDULER_KINDS
from ctrnn_dyn.sweep.config import SweepConfig as SweepConfig
from ctrnn_dyn.sweep.config import load_config as load_config
from ctrnn_dyn.sweep.config import validate_config as validate_config
from ctrnn_dyn.sweep.driver import SweepResult as SweepResult
from ctrnn_dyn.sweep.driver import run_sweep as run_sweep

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
