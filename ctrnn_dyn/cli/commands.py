"""The subcommands: ``train`` (and ``--resume``), ``analyze`` (the report logic lives in
:mod:`ctrnn_dyn.report`), and ``reproduce`` and ``sweep``, whose modules own their arguments and
handlers. Importing this module registers them, in that order."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from ctrnn_dyn.cli.core import Configure, Handler, UsageError, check_output_dir, subcommand

logger = logging.getLogger(__name__)


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


#: ``train`` options that shape the run's steps (argparse dests), in the order a resumed run's
#: options are compared with its checkpoint's; the first that differs is named.
_HISTORY_OPTIONS = ("task", "task_option", "hidden", "alpha", "noise", "seed", "batch_size",
                    "lr", "clip", "weight_decay", "rate_l2", "weight_l2")
#: real-valued options -> their hyper-parameter rule (ctrnn_dyn._checks)
_HPARAM_OPTIONS = {"alpha": "alpha", "noise": "noise_const", "lr": "learning_rate",
                   "clip": "clip_norm", "weight_decay": "weight_decay", "rate_l2": "rate_l2",
                   "weight_l2": "weight_l2"}
#: integer options -> their lower bound
_INT_OPTIONS = {"hidden": 1, "steps": 1, "batch_size": 1, "checkpoint_every": 1,
                "eval_every": 1, "seed": 0}
_MAX_SEED = 2**63 - 1


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _check_train_options(args: argparse.Namespace) -> None:
    """Sizes, hyper-parameters and task options of ``ctrnn-dyn train`` (before JAX loads)."""
    from ctrnn_dyn import _checks

    for dest, low in _INT_OPTIONS.items():
        if getattr(args, dest) < low:
            raise UsageError(_flag(dest), f"must be >= {low}, got {getattr(args, dest)}")
    if args.seed > _MAX_SEED:
        raise UsageError("--seed", f"must be < 2**63, got {args.seed}")
    for dest, rule in _HPARAM_OPTIONS.items():
        problem = _checks.hparam_problem(rule, getattr(args, dest))
        if problem is not None:
            raise UsageError(_flag(dest), problem[1])
    for key, value in args.task_option:
        problem = _checks.task_option_problem(value)
        if problem is not None:
            raise UsageError("--task-option", f"{key} {problem}")


def _resumable_checkpoint(args: argparse.Namespace, task: Any, run_config: dict) -> Any:
    """The checkpoint ``ctrnn-dyn train --resume`` continues, after checking that it exists, is
    readable, was trained with the same settings and has steps left to take."""
    from ctrnn_dyn import _checks
    from ctrnn_dyn import checkpoint as ckpt

    out: Path = args.out
    path = out / ckpt.CHECKPOINT_NAME
    if not path.is_file():
        where = f"{out} does not exist" if not out.exists() else f"{out} has no checkpoint"
        raise UsageError("--resume", f"nothing to resume: {where}; check --out, or drop "
                                     "--resume to start a new run there")
    try:
        saved = ckpt.load(path)
    except (ValueError, OSError) as err:
        raise UsageError("--resume", f"cannot resume: {err}; delete it to start over, or "
                                     "choose another --out") from err
    before = dict(saved.extra or {})
    if saved.task_config is not None:  # compare resolved tasks: defaults count as given
        now_task = ckpt.task_config_or_none(task) or {}
        before["task"] = saved.task_config.get("name")
        run_config = {**run_config, "task": now_task.get("name", args.task)}
        field = _checks.first_difference(saved.task_config, now_task)
        if field is not None and field != "name":
            raise UsageError("--task-option", (
                f"the run in {out} was trained with {field}="
                f"{json.dumps(saved.task_config.get(field))}, this command has {field}="
                f"{json.dumps(now_task.get(field))}; resuming with another value would change "
                f"how it is trained: pass --task-option {field}="
                f"{json.dumps(saved.task_config.get(field))}, or start a new run with another "
                "--out"))
    dest = _checks.first_difference(before, run_config,
                                    [d for d in _HISTORY_OPTIONS if d != "task_option"])
    if dest is not None:
        was, now = before[dest], run_config[dest]
        raise UsageError(_flag(dest), (
            f"the run in {out} was trained with {_flag(dest)} {was}, this command has "
            f"{_flag(dest)} {now}; resuming with another value would change how it is trained: "
            f"pass {_flag(dest)} {was}, or start a new run with another --out"))
    if saved.nonfinite_step is not None:
        raise UsageError("--resume", (
            f"the run in {out} stopped at a non-finite loss at step {saved.nonfinite_step} and "
            "cannot be continued; start a new run (another --out) with other settings, e.g. a "
            "smaller --lr"))
    if args.steps <= saved.step:
        raise UsageError("--steps", (
            f"the run in {out} has already taken {saved.step} steps, so --steps {args.steps} "
            f"leaves nothing to do (nothing was changed); pass --steps > {saved.step} to "
            "continue it"))
    return saved


@subcommand("train", help="train a CT-RNN on a task")
def _train(parser: argparse.ArgumentParser) -> Handler:
    from ctrnn_dyn.tasks import TASKS

    parser.add_argument("--task", required=True,
                        help=f"task name: {', '.join(TASKS)}, or neurogym:ENV_ID (a neurogym "
                             "environment, e.g. neurogym:PerceptualDecisionMaking-v0)")
    parser.add_argument("--task-option", action="append", default=[], type=_parse_option,
                        metavar="KEY=VALUE",
                        help="task parameter (JSON value), e.g. n_bits=3; repeatable")
    parser.add_argument("--hidden", type=int, default=64, help="hidden units (default 64)")
    parser.add_argument("--alpha", type=float, default=0.5, help="dt/tau in (0, 1] (default 0.5)")
    parser.add_argument("--noise", type=float, default=0.0,
                        help="noise_const sigma >= 0 (default 0)")
    parser.add_argument("--steps", type=int, default=3000, help="train steps (default 3000)")
    parser.add_argument("--batch-size", type=int, default=64, help="trials per step (default 64)")
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="AdamW learning rate > 0 (default 0.001)")
    parser.add_argument("--clip", type=float, default=1.0,
                        help="global-norm gradient clip > 0 (default 1.0)")
    parser.add_argument("--weight-decay", type=float, default=1e-4,
                        help="AdamW weight decay >= 0 (default 0.0001)")
    parser.add_argument("--rate-l2", type=float, default=0.0,
                        help="L2 penalty on rates >= 0 (default 0)")
    parser.add_argument("--weight-l2", type=float, default=0.0,
                        help="L2 penalty on kernels >= 0 (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed >= 0 (default 0)")
    parser.add_argument("--checkpoint-every", type=int, default=500,
                        help="steps between checkpoints (default 500)")
    parser.add_argument("--eval-every", type=int, default=500,
                        help="steps between held-out evaluations (default 500)")
    parser.add_argument("--out", required=True, type=Path,
                        help="run directory (created; must not hold a checkpoint unless "
                             "--resume)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUT from its checkpoint up to --steps; the "
                             "options that shape training must be the ones it was started with")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (log lines instead)")

    def run(args: argparse.Namespace) -> int:
        _check_train_options(args)
        out: Path = check_output_dir(args.out, create=False)

        import jax

        from ctrnn_dyn.checkpoint import CHECKPOINT_NAME
        from ctrnn_dyn.model import CTRNNCell
        from ctrnn_dyn.tasks import get_task
        from ctrnn_dyn.train import default_optimizer, train

        if args.task not in TASKS and not args.task.startswith("neurogym:"):
            raise UsageError("--task", f"unknown task name {args.task!r}; known tasks: "
                                       f"{', '.join(sorted(TASKS))}")
        if args.task in TASKS:
            import dataclasses

            known = [f.name for f in dataclasses.fields(TASKS[args.task])]
            for key, _ in args.task_option:
                if key not in known:
                    raise UsageError("--task-option", f"{args.task} has no option {key!r}; its "
                                                      f"options: {', '.join(known)}")
        try:
            task = get_task(args.task, **dict(args.task_option))
        except (ValueError, TypeError) as err:
            raise UsageError("--task-option", str(err)) from err
        run_config = {k: getattr(args, k) for k in _HISTORY_OPTIONS if k != "task_option"}
        run_config.update(steps=args.steps, checkpoint_every=args.checkpoint_every,
                          eval_every=args.eval_every,
                          task_option=[list(o) for o in args.task_option])
        if args.resume:
            saved = _resumable_checkpoint(args, task, run_config)
            logger.info("resuming %s at step %d of %d", out, saved.step, args.steps)
        elif (out / CHECKPOINT_NAME).exists():
            raise UsageError("--out", f"{out / CHECKPOINT_NAME} exists; pass --resume to "
                                      "continue that run, or choose another --out")
        check_output_dir(out)
        cell = CTRNNCell(hidden_features=args.hidden, output_features=task.output_size,
                         alpha=args.alpha, noise_const=args.noise)
        optimizer = default_optimizer(args.lr, clip_norm=args.clip,
                                      weight_decay=args.weight_decay)
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
        logger.info("wrote %s/{checkpoint,history.csv,loss.png,summary.json}", out)
        print(json.dumps(summary))
        if result.nonfinite_step is not None:
            print(f"stopped: non-finite loss at step {result.nonfinite_step}", file=sys.stderr)
            return 1
        return 0

    return run


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
