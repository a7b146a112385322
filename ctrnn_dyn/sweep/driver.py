"""Running (or finishing) a sweep: the chunks not yet done as Dask tasks, then the table of
every network."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from ctrnn_dyn.sweep.chunks import _chunk_paths, _failed_rows, plan_chunks, run_chunk
from ctrnn_dyn.sweep.cluster import _client, _compilation_cache_plugin
from ctrnn_dyn.sweep.config import SweepConfig, load_config, validate_config
from ctrnn_dyn.sweep.tables import _atomic_write_parquet, _frame

__all__ = ["SweepResult", "run_sweep"]

logger = logging.getLogger(__name__)


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
