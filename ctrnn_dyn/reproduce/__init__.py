"""Reproductions of the field's classic figures: one module per figure, and a registry.

Each module ``ctrnn_dyn.reproduce.<name>`` has ``run(out_dir, *, quick=False, seed=0,
forward=None)``, which
writes ``out_dir/<name>.png`` and ``out_dir/<name>.json`` (the figure's quantitative claims,
whether each holds, the settings, software versions and wall time) and returns a
:class:`ReproductionResult`. ``quick=True`` is a reduced version for tests; ``forward``
(``"nn.RNN"`` or ``"fast"``) trains through another forward pass than the recorded one.

From the shell::

    ctrnn-dyn reproduce flipflop --out figures            # one figure
    ctrnn-dyn reproduce all --out figures --quick         # every figure, reduced
    python -m ctrnn_dyn.reproduce seed_dynamics --out figures

From Python::

    from ctrnn_dyn import reproduce
    result = reproduce.get("flipflop")("figures", quick=True)
    result.checks          # {"eight_stable_fixed_points": True, ...}
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ctrnn_dyn.reproduce._common import FORWARD_PASSES, ReproductionResult

__all__ = [
    "REPRODUCTIONS",
    "ReproductionResult",
    "get",
    "run_all",
    "add_reproduce_arguments",
    "add_reproduce_parser",
    "configure_reproduce",
    "run_reproduce_command",
]

logger = logging.getLogger(__name__)

#: name -> one line on what the figure shows (the modules are imported on first use).
REPRODUCTIONS: dict[str, str] = {
    "seed_dynamics": "the seed's switch, limit cycle and strange attractor, with fixed points, "
                     "Floquet multipliers and the Lyapunov spectrum",
    "flipflop": "3-bit flip-flop: 8 stable fixed points at the memories, saddles between "
                "them (Sussillo & Barak 2013)",
    "sine_wave": "sine-wave generator: one oscillatory fixed point per input, rotating at the "
                 "target frequency (Sussillo & Barak 2013)",
    "context_integration": "context-dependent integration: a line of slow points per context "
                           "(Mante et al. 2013)",
    "attract_or_oscillate": "modulo-3 task: fixed-point lattice at alpha=0.1 vs limit cycle at "
                            "alpha=1.0, told apart by classify_dynamics",
}

Runner = Callable[..., ReproductionResult]


def get(name: str) -> Runner:
    """The ``run`` function of reproduction ``name``.

    Raises:
        ValueError: unknown ``name`` (the message lists the known ones).
    """
    if name not in REPRODUCTIONS:
        raise ValueError(
            f"name must be one of {', '.join(REPRODUCTIONS)}, got {name!r}"
        )
    return importlib.import_module(f"ctrnn_dyn.reproduce.{name}").run


def run_all(
    out_dir: str | Path, *, quick: bool = False, seed: int = 0, names: list[str] | None = None,
    forward: str | None = None,
) -> dict[str, ReproductionResult]:
    """Run several reproductions (default: all, in registry order) into ``out_dir``."""
    names = list(REPRODUCTIONS) if names is None else names
    runners = [get(n) for n in names]  # validate every name before running anything
    results = {}
    for name, runner in zip(names, runners, strict=True):
        logger.info("reproducing %s (quick=%s, seed=%d)", name, quick, seed)
        results[name] = runner(out_dir, quick=quick, seed=seed, forward=forward)
    return results


# ---------------------------------------------------------------------------------------------
# Command line: `ctrnn-dyn reproduce NAME|all [--out figures] [--quick] [--seed S]
# [--forward nn.RNN|fast]`
# ---------------------------------------------------------------------------------------------


def add_reproduce_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``reproduce`` arguments to ``parser``; returns it."""
    parser.add_argument("name", choices=[*REPRODUCTIONS, "all"], metavar="NAME",
                        help="figure to reproduce: " + ", ".join([*REPRODUCTIONS, "all"]))
    parser.add_argument("--out", default="figures", type=Path,
                        help="output directory for NAME.png and NAME.json (default: figures)")
    parser.add_argument("--quick", action="store_true",
                        help="reduced sizes (seconds to a minute each), as used in tests")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    parser.add_argument("--forward", choices=FORWARD_PASSES, default=None,
                        help="train through this forward pass (default: the one each figure "
                             "records in its settings, nn.RNN)")
    parser.set_defaults(_reproduce_handler=run_reproduce_command)
    return parser


def add_reproduce_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``reproduce`` sub-command to an ``argparse`` sub-parsers object."""
    parser = subparsers.add_parser(
        "reproduce", help="reproduce a classic figure (PNG + JSON of its numbers)",
        description="Reproduce a classic figure: writes OUT/NAME.png and OUT/NAME.json.",
    )
    return add_reproduce_arguments(parser)


def configure_reproduce(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """``cli.subcommand``-style configure function: adds the arguments, returns the handler."""
    add_reproduce_arguments(parser)
    return run_reproduce_command


def run_reproduce_command(args: argparse.Namespace) -> int:
    """Run the reproduction(s) named by parsed ``args``; prints one line each.

    Returns:
        0 when every check of every reproduction holds, 1 otherwise.
    """
    from ctrnn_dyn.cli import UsageError, check_output_dir

    if args.seed < 0:
        raise UsageError("--seed", f"must be >= 0, got {args.seed}")
    check_output_dir(args.out, create=False)  # each reproduction creates it
    names = list(REPRODUCTIONS) if args.name == "all" else [args.name]
    status = 0
    for i, name in enumerate(names, 1):
        logger.info("reproducing %s (%d of %d)%s", name, i, len(names),
                    ", quick" if args.quick else "")
        result = get(name)(args.out, quick=bool(args.quick), seed=int(args.seed),
                           forward=args.forward)
        failed = [k for k, ok in result.checks.items() if not ok]
        verdict = "all checks pass" if not failed else "FAILED: " + ", ".join(failed)
        print(f"{name}: {result.png} {result.json} ({result.wall_time_s:.1f} s) {verdict}")
        status |= bool(failed)
    return status
