"""Where the chunks run: a local Dask cluster, a running scheduler, or SLURM jobs
(dask-jobqueue); JAX's persistent compilation cache on the workers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ctrnn_dyn.sweep.config import _SCHEDULER_DEFAULTS, _check_job_fields

__all__ = ["make_slurm_cluster", "slurm_job_script"]


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
