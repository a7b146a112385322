"""The ``ctrnn-dyn`` command line.

Subcommands are registered with :func:`subcommand`; adding one is one function::

    @subcommand("reproduce", help="reproduce a figure")
    def _reproduce(parser: argparse.ArgumentParser) -> Handler:
        parser.add_argument("name")
        def run(args: argparse.Namespace) -> int:
            ...
            return 0
        return run

``ctrnn-dyn train --task flipflop --hidden 64 --steps 3000 --out DIR`` trains a CT-RNN and
writes ``DIR/checkpoint``, ``DIR/history.csv``, ``DIR/loss.png`` and ``DIR/summary.json``;
``--resume`` continues a killed run from ``DIR/checkpoint`` (bit-identical to an uninterrupted
run with the same options).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["main", "subcommand", "SUBCOMMANDS", "build_parser"]

Handler = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], Handler]

#: name -> (help, configure function); filled by :func:`subcommand`.
SUBCOMMANDS: dict[str, tuple[str, Configure]] = {}


def subcommand(name: str, *, help: str) -> Callable[[Configure], Configure]:  # noqa: A002
    """Register ``configure(parser) -> handler`` as the subcommand ``name``."""

    def register(configure: Configure) -> Configure:
        SUBCOMMANDS[name] = (help, configure)
        return configure

    return register


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="ctrnn-dyn",
        description="Train continuous-time RNNs and reverse-engineer their dynamics.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, configure) in SUBCOMMANDS.items():
        sub = subs.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_handler=configure(sub), _parser=sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ctrnn-dyn`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return int(args._handler(args) or 0)


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    if isinstance(parsed, list):
        parsed = tuple(tuple(v) if isinstance(v, list) else v for v in parsed)
    return key.strip(), parsed


def _plot_history(history: Any, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    panels = (("loss", history.loss, history.eval_loss, "semilogy"),
              ("accuracy", history.accuracy, history.eval_accuracy, "plot"))
    for ax, (name, train_y, eval_y, kind) in zip(axes, panels, strict=True):
        getattr(ax, kind)(history.step, train_y, lw=0.8, label="train")
        if len(history.eval_step):
            getattr(ax, kind)(history.eval_step, eval_y, "o-", ms=3, label="held-out")
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@subcommand("train", help="train a CT-RNN on a task")
def _train(parser: argparse.ArgumentParser) -> Handler:
    from ctrnn_dyn.tasks import TASKS

    parser.add_argument("--task", required=True, help=f"task name: {', '.join(TASKS)}")
    parser.add_argument("--task-option", action="append", default=[], type=_parse_option,
                        metavar="KEY=VALUE",
                        help="task parameter (JSON value), e.g. n_bits=3; repeatable")
    parser.add_argument("--hidden", type=int, default=64, help="hidden units (default 64)")
    parser.add_argument("--alpha", type=float, default=0.5, help="dt/tau in (0, 1] (default 0.5)")
    parser.add_argument("--noise", type=float, default=0.0, help="noise_const sigma (default 0)")
    parser.add_argument("--steps", type=int, default=3000, help="train steps (default 3000)")
    parser.add_argument("--batch-size", type=int, default=64, help="trials per step (default 64)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    parser.add_argument("--clip", type=float, default=1.0, help="global-norm gradient clip")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    parser.add_argument("--rate-l2", type=float, default=0.0, help="L2 penalty on rates")
    parser.add_argument("--weight-l2", type=float, default=0.0, help="L2 penalty on kernels")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    parser.add_argument("--checkpoint-every", type=int, default=500,
                        help="steps between checkpoints (default 500)")
    parser.add_argument("--eval-every", type=int, default=500,
                        help="steps between held-out evaluations (default 500)")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        import jax

        from ctrnn_dyn.checkpoint import CHECKPOINT_NAME
        from ctrnn_dyn.model import CTRNNCell
        from ctrnn_dyn.tasks import get_task
        from ctrnn_dyn.train import default_optimizer, train

        p = args._parser
        try:
            task = get_task(args.task, **dict(args.task_option))
        except (ValueError, TypeError) as err:
            p.error(f"--task/--task-option: {err}")
        for name in ("hidden", "steps", "batch_size", "checkpoint_every", "eval_every"):
            if getattr(args, name) < 1:
                p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
        if not 0.0 < args.alpha <= 1.0:
            p.error(f"--alpha must be in (0, 1], got {args.alpha}")
        out: Path = args.out
        if (out / CHECKPOINT_NAME).exists() and not args.resume:
            p.error(f"{out / CHECKPOINT_NAME} exists; pass --resume to continue it or choose "
                    "another --out")
        out.mkdir(parents=True, exist_ok=True)
        cell = CTRNNCell(hidden_features=args.hidden, output_features=task.output_size,
                         alpha=args.alpha, noise_const=args.noise)
        optimizer = default_optimizer(args.lr, clip_norm=args.clip,
                                      weight_decay=args.weight_decay)
        run_config = {k: v for k, v in vars(args).items()
                      if not k.startswith("_") and k not in ("out", "resume", "no_progress",
                                                             "verbose", "task_option")}
        run_config["task_option"] = [list(o) for o in args.task_option]
        t0 = time.perf_counter()
        result = train(
            cell, task, key=jax.random.key(args.seed), steps=args.steps,
            batch_size=args.batch_size, optimizer=optimizer, rate_l2=args.rate_l2,
            weight_l2=args.weight_l2, checkpoint_dir=out, checkpoint_every=args.checkpoint_every,
            resume=args.resume, eval_every=args.eval_every,
            progress=False if args.no_progress else None, run_config=run_config,
        )
        wall = time.perf_counter() - t0
        h = result.history
        h.to_dataframe().to_csv(out / "history.csv", index=False)
        _plot_history(h, out / "loss.png", f"{args.task}, H={args.hidden}, alpha={args.alpha}")
        summary = {
            "task": args.task,
            "steps": result.step,
            "nonfinite_step": result.nonfinite_step,
            "wall_time_s": wall,
            "final_loss": float(h.loss[-1]) if len(h.loss) else None,
            "eval_loss": float(h.eval_loss[-1]) if len(h.eval_loss) else None,
            "eval_accuracy": float(h.eval_accuracy[-1]) if len(h.eval_accuracy) else None,
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary))
        if result.nonfinite_step is not None:
            print(f"stopped: non-finite loss at step {result.nonfinite_step}", file=sys.stderr)
            return 1
        return 0

    return run


# ---------------------------------------------------------------------------------------------
# analyze: the report logic lives in ctrnn_dyn.report
# ---------------------------------------------------------------------------------------------


def _parse_vector(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0,0,1, got {text!r}"
        ) from None
    return values


@subcommand("analyze", help="find and classify a trained run's fixed points; write a report")
def _analyze(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="run directory written by `ctrnn-dyn train`")
    parser.add_argument("--out", type=Path, default=None,
                        help="report directory (default RUN_DIR/analysis)")
    parser.add_argument("--inputs", nargs="+", type=_parse_vector, default=None, metavar="U",
                        help="constant inputs, each comma-separated, e.g. 0,0,0 1,0,0 "
                             "(default: zero input)")
    parser.add_argument("--starts", type=int, default=512,
                        help="starts of the fixed-point search (default 512)")
    parser.add_argument("--trials", type=int, default=32,
                        help="task trials the starts are sampled from (default 32)")
    parser.add_argument("--noise-scale", type=float, default=0.5,
                        help="noise added to the sampled states (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of trials and starts (default 0)")

    def run(args: argparse.Namespace) -> int:
        from ctrnn_dyn.report import analyze_run, write_report
        from ctrnn_dyn.runs import load_run

        p = args._parser
        out: Path = args.out if args.out is not None else args.run_dir / "analysis"
        if out.exists() and not out.is_dir():
            p.error(f"argument --out: {out} is a file; expected a directory")
        for name in ("starts", "trials"):
            if getattr(args, name) < 1:
                p.error(f"argument --{name}: must be >= 1, got {getattr(args, name)}")
        if args.seed < 0:
            p.error(f"argument --seed: must be >= 0, got {args.seed}")
        if not 0.0 <= args.noise_scale < float("inf"):
            p.error(f"argument --noise-scale: must be finite and >= 0, got {args.noise_scale}")
        try:
            loaded = load_run(args.run_dir)
        except (FileNotFoundError, ValueError) as err:
            p.error(f"argument RUN_DIR: {err}")
        try:
            report = analyze_run(loaded, inputs=args.inputs, n_starts=args.starts,
                                 n_trials=args.trials, noise_scale=args.noise_scale,
                                 seed=args.seed)
        except (ValueError, TypeError) as err:
            p.error(f"argument --inputs: {err}" if str(err).startswith("inputs") else str(err))
        try:
            paths = write_report(report, out)
        except (OSError, ValueError) as err:
            p.error(f"argument --out: cannot write the report to {out}: {err}")
        print(json.dumps({"verdict": report.numbers["verdict"]["label"],
                          "inputs": [{k: n[k] for k in ("u", "n_fixed", "n_stable", "n_slow",
                                                        "n_unstable_counts")}
                                     for n in report.numbers["inputs"]],
                          **{k: str(v) for k, v in paths.items()}}))
        return 0

    return run


# ---------------------------------------------------------------------------------------------
# reproduce / sweep: their modules own the arguments and the handler
# ---------------------------------------------------------------------------------------------


def _delegate(module: str, attr: str) -> Configure:
    """A configure function that imports ``module.attr`` (a configure function) when used."""

    def configure(parser: argparse.ArgumentParser) -> Handler:
        import importlib

        try:
            target = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:  # report on use, keep `train` working
            message = f"{parser.prog} is unavailable: {err}"
            return lambda args: parser.error(message)
        return target(parser)

    return configure


subcommand("reproduce", help="reproduce a classic figure (PNG + JSON of its numbers)")(
    _delegate("ctrnn_dyn.reproduce", "configure_reproduce")
)
subcommand("sweep", help="train a grid of configurations x seeds as vmapped chunks on Dask")(
    _delegate("ctrnn_dyn.sweep", "configure_sweep_parser")
)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
