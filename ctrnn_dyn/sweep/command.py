"""The ``ctrnn-dyn sweep`` subcommand."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ctrnn_dyn.sweep.driver import run_sweep

__all__ = ["SWEEP_HELP", "configure_sweep_parser", "add_sweep_parser", "run_sweep_command"]

logger = logging.getLogger(__name__)


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
