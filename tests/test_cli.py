"""The ``ctrnn-dyn`` command line: train, resume, errors, adding a subcommand."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys

import jax
import numpy as np
import pandas as pd
import pytest

from ctrnn_dyn import checkpoint as ckpt
from ctrnn_dyn import cli

SMALL = ["--task", "flipflop", "--hidden", "8", "--batch-size", "4", "--task-option",
         "n_steps=12", "--task-option", "p_pulse=0.2", "--checkpoint-every", "5",
         "--eval-every", "5", "--no-progress"]


def test_train_writes_outputs_and_resume_matches_a_straight_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *SMALL, "--steps", "10", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 10 and summary["nonfinite_step"] is None
    for name in ("checkpoint", "history.csv", "loss.png", "summary.json"):
        assert (out / name).is_file()
    df = pd.read_csv(out / "history.csv")
    assert df["step"].tolist() == list(range(1, 11)) and np.isfinite(df["loss"]).all()
    c = ckpt.load(out)
    assert c.step == 10 and c.task.n_steps == 12 and c.cell.hidden_features == 8
    # an existing run needs --resume
    with pytest.raises(SystemExit) as err:
        cli.main(["train", *SMALL, "--steps", "15", "--out", str(out)])
    assert err.value.code == 2 and "--resume" in capsys.readouterr().err
    # resume to 15 steps == a straight 15-step run
    assert cli.main(["train", *SMALL, "--steps", "15", "--out", str(out), "--resume"]) == 0
    straight = tmp_path / "straight"
    assert cli.main(["train", *SMALL, "--steps", "15", "--out", str(straight)]) == 0
    a, b = ckpt.load(out), ckpt.load(straight)
    assert a.step == b.step == 15
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_array_equal(a.history.loss, b.history.loss)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "nope"], "argument --task: unknown task name 'nope'; known tasks: "),
        (["--task", "flipflop", "--steps", "0"], "argument --steps: must be >= 1, got 0"),
        (["--task", "flipflop", "--batch-size", "0"], "argument --batch-size: must be >= 1"),
        (["--task", "flipflop", "--alpha", "1.5"], "argument --alpha: must be in (0, 1]"),
        (["--task", "flipflop", "--task-option", "n_bitz=3"],
         "argument --task-option: flipflop has no option 'n_bitz'; its options: n_bits, "
         "n_steps, p_pulse, settle_steps"),
    ],
)
def test_bad_arguments_give_clear_errors(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(["train", *args, "--out", str(tmp_path / "x")])
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_registered_subcommands_build():
    assert {"train", "reproduce", "sweep"} <= set(cli.SUBCOMMANDS)
    args = cli.build_parser().parse_args(["train", "--task", "flipflop", "--out", "x"])
    assert callable(args._handler) and args.hidden == 64 and args.steps == 3000


def test_adding_a_subcommand_is_one_function(capsys):
    @cli.subcommand("hello", help="say hello")
    def _hello(parser: argparse.ArgumentParser):
        parser.add_argument("--name", default="world")
        return lambda args: print(f"hello {args.name}") or 0

    try:
        assert cli.main(["hello", "--name", "ctrnn"]) == 0
        assert capsys.readouterr().out.strip() == "hello ctrnn"
    finally:
        del cli.SUBCOMMANDS["hello"]


# -- a user's mistake: exit status 2 and one line naming the argument ----------------------------


def _refused(argv, capsys) -> str:
    """Run ``ctrnn-dyn ARGV``, expect exit status 2, return its one line of stderr."""
    with pytest.raises(SystemExit) as err:
        cli.main(argv)
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A 4-step run (the refusals below never reach training); its log lines are in
    ``run/../log.txt``."""
    out = tmp_path_factory.mktemp("cli") / "run"
    records = _Records()
    logger = logging.getLogger("ctrnn_dyn")
    logger.addHandler(records)
    try:
        assert cli.main(["train", *SMALL, "--steps", "4", "--out", str(out)]) == 0
    finally:
        logger.removeHandler(records)
    (out.parent / "log.txt").write_text("\n".join(records.lines))
    return out


def _snapshot(out):
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--clip", "-1"], "argument --clip: must be > 0, got -1.0"),
        (["--clip", "0"], "argument --clip: must be > 0, got 0.0"),
        (["--lr", "0"], "argument --lr: must be > 0, got 0.0"),
        (["--lr", "nan"], "argument --lr: must be a finite number > 0, got nan"),
        (["--lr", "inf"], "argument --lr: must be a finite number > 0, got inf"),
        (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
        (["--weight-decay=-1e-4"], "argument --weight-decay: must be >= 0, got -0.0001"),
        (["--alpha", "0"], "argument --alpha: must be in (0, 1], got 0.0"),
        (["--alpha", "nan"], "argument --alpha: must be a finite number in (0, 1], got nan"),
        (["--noise", "-0.1"], "argument --noise: must be >= 0, got -0.1"),
        (["--rate-l2", "-1"], "argument --rate-l2: must be >= 0, got -1.0"),
        (["--weight-l2", "inf"], "argument --weight-l2: must be a finite number >= 0"),
        (["--hidden", "0"], "argument --hidden: must be >= 1, got 0"),
        (["--eval-every", "0"], "argument --eval-every: must be >= 1, got 0"),
        (["--checkpoint-every", "-5"], "argument --checkpoint-every: must be >= 1, got -5"),
        (["--seed", "-1"], "argument --seed: must be >= 0, got -1"),
        (["--seed", str(2**64)], "argument --seed: must be < 2**63"),
        (["--task-option", "p_pulse=NaN"],
         "argument --task-option: p_pulse must be finite, got nan"),
        (["--task-option", "p_pulse=2"],
         "argument --task-option: p_pulse must be in (0, 1], got 2"),
        (["--task-option", "n_bits"], "argument --task-option: expected KEY=VALUE, got 'n_bits'"),
    ],
)
def test_invalid_settings_are_refused_before_any_work(args, message, tmp_path, capsys):
    out = tmp_path / "run"
    line = _refused(["train", "--task", "flipflop", *args, "--out", str(out)], capsys)
    assert line.startswith("ctrnn-dyn train: error: ") and message in line, line
    assert not out.exists()


def test_out_naming_a_file_or_under_a_file(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    line = _refused(["train", "--task", "flipflop", "--out", str(afile)], capsys)
    assert f"argument --out: {afile} is a file; expected a directory" in line
    line = _refused(["train", "--task", "flipflop", "--out", str(afile / "sub")], capsys)
    assert f"argument --out: cannot create {afile / 'sub'}: {afile} is a file" in line


def test_resume_without_a_checkpoint_says_how_to_start_fresh(tmp_path, capsys):
    line = _refused(["train", *SMALL, "--out", str(tmp_path / "typo"), "--resume"], capsys)
    assert "argument --resume: nothing to resume: " in line and "does not exist" in line
    assert "drop --resume to start a new run" in line
    assert not (tmp_path / "typo").exists()
    line = _refused(["train", *SMALL, "--out", str(tmp_path), "--resume"], capsys)
    assert f"{tmp_path} has no checkpoint" in line and "drop --resume" in line


def test_existing_run_needs_resume(trained_run, capsys):
    line = _refused(["train", *SMALL, "--steps", "8", "--out", str(trained_run)], capsys)
    assert "argument --out: " in line and "pass --resume to continue" in line


@pytest.mark.parametrize("steps", ["4", "2"])
def test_resume_with_no_steps_left_says_so_and_changes_nothing(trained_run, steps, capsys):
    before = _snapshot(trained_run)
    line = _refused(["train", *SMALL, "--steps", steps, "--out", str(trained_run), "--resume"],
                    capsys)
    assert (f"argument --steps: the run in {trained_run} has already taken 4 steps, so "
            f"--steps {steps} leaves nothing to do (nothing was changed); pass --steps > 4") in line
    assert _snapshot(trained_run) == before


@pytest.mark.parametrize(
    ("args", "flag", "was", "now"),
    [
        (["--hidden", "16"], "--hidden", "8", "16"),
        (["--lr", "0.01"], "--lr", "0.001", "0.01"),
        (["--batch-size", "8"], "--batch-size", "4", "8"),
        (["--seed", "3"], "--seed", "0", "3"),
        (["--clip", "0.5"], "--clip", "1.0", "0.5"),
        (["--weight-decay", "0"], "--weight-decay", "0.0001", "0.0"),
        (["--alpha", "0.25"], "--alpha", "0.5", "0.25"),
        (["--noise", "0.1"], "--noise", "0.0", "0.1"),
        (["--rate-l2", "0.1"], "--rate-l2", "0.0", "0.1"),
        # several differ: the first in the order task, cell, seed, batch, optimiser is named
        (["--lr", "0.01", "--batch-size", "8", "--hidden", "16"], "--hidden", "8", "16"),
    ],
)
def test_resume_refuses_settings_that_change_the_history(trained_run, args, flag, was, now,
                                                         capsys):
    before = _snapshot(trained_run)
    line = _refused(["train", *SMALL, "--steps", "8", "--out", str(trained_run), "--resume",
                     *args], capsys)
    assert (f"argument {flag}: the run in {trained_run} was trained with {flag} {was}, this "
            f"command has {flag} {now}; resuming with another value would change how it is "
            f"trained: pass {flag} {was}, or start a new run with another --out") in line, line
    assert _snapshot(trained_run) == before


def test_resume_refuses_another_task_option(trained_run, capsys):
    line = _refused(["train", *SMALL, "--task-option", "n_bits=2", "--steps", "8", "--out",
                     str(trained_run), "--resume"], capsys)
    assert ("argument --task-option: the run in " in line
            and "was trained with n_bits=3, this command has n_bits=2" in line
            and "pass --task-option n_bits=3" in line), line


def test_resume_of_a_corrupt_checkpoint(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    blob = (trained_run / "checkpoint").read_bytes()
    (run / "checkpoint").write_bytes(blob[: len(blob) // 2])
    argv = ["train", *SMALL, "--steps", "8", "--out", str(run), "--resume"]
    line = _refused(argv, capsys)
    assert (f"argument --resume: cannot resume: checkpoint {run / 'checkpoint'} is truncated "
            "or corrupt (checksum mismatch); delete it to start over") in line
    # --verbose (before or after the subcommand) adds the traceback
    for verbose_argv in (["-v", *argv], [*argv, "--verbose"]):
        with pytest.raises(SystemExit) as err:
            cli.main(verbose_argv)
        assert err.value.code == 2
        text = capsys.readouterr().err
        assert "Traceback" in text and text.strip().splitlines()[-1] == line


def test_resume_of_a_run_stopped_by_a_nonfinite_loss(trained_run, tmp_path, capsys):
    import dataclasses

    run = tmp_path / "run"
    run.mkdir()
    saved = ckpt.load(trained_run)
    ckpt.save(run, dataclasses.replace(saved, nonfinite_step=3))
    line = _refused(["train", *SMALL, "--steps", "8", "--out", str(run), "--resume"], capsys)
    assert "argument --resume: the run in " in line and "non-finite loss at step 3" in line


def test_progress_lines_without_a_terminal(trained_run):
    # SMALL has --no-progress, --checkpoint-every 5: a line at the start and at the end
    text = (trained_run.parent / "log.txt").read_text()
    assert "training CTRNNCell on FlipFlop: steps 1..4" in text
    assert "step 4/4: loss" in text and "held-out loss" in text


# -- the generic handling in main(): any subcommand gets it -------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "line"),
    [
        (cli.UsageError("--name", "must be short"),
         2, "ctrnn-dyn boom: error: argument --name: must be short"),
        (ValueError("x must be > 0"), 2, "ctrnn-dyn boom: error: x must be > 0"),
        (FileNotFoundError("no file at y"), 2, "ctrnn-dyn boom: error: no file at y"),
        (RuntimeError("bug"), 1, "ctrnn-dyn boom: error: RuntimeError: bug (run with --verbose "
                                 "for the traceback)"),
        (KeyboardInterrupt(), 130, "ctrnn-dyn boom: error: interrupted (run with --verbose "
                                   "for the traceback)"),
    ],
)
def test_errors_of_any_subcommand_are_one_line(error, status, line, capsys):
    @cli.subcommand("boom", help="fail")
    def _boom(parser: argparse.ArgumentParser):
        def run(args):
            raise error

        return run

    try:
        with pytest.raises(SystemExit) as err:
            cli.main(["boom"])
        assert err.value.code == status
        assert capsys.readouterr().err.strip().splitlines() == [line]
        with pytest.raises(SystemExit):
            cli.main(["boom", "--verbose"])
        assert "Traceback" in capsys.readouterr().err
    finally:
        del cli.SUBCOMMANDS["boom"]


def test_argparse_errors_are_one_line(capsys):
    line = _refused(["train", "--task", "flipflop"], capsys)
    assert line == ("ctrnn-dyn train: error: the following arguments are required: --out "
                    "(see 'ctrnn-dyn train --help')")
    line = _refused(["trian"], capsys)
    assert "argument COMMAND: invalid choice: 'trian'" in line


# -- help ----------------------------------------------------------------------------------------


def test_help_is_quick_because_nothing_heavy_is_imported():
    # what the parser and the top-level help add to `import ctrnn_dyn` (the package's own
    # imports are tested in test_import.py)
    code = ("import sys, contextlib, io\n"
            "import ctrnn_dyn\n"
            "before = set(sys.modules)\n"
            "from ctrnn_dyn import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()) as f, "
            "contextlib.suppress(SystemExit):\n"
            "    cli.main(['--help'])\n"
            "assert 'train' in f.getvalue() and 'reproduce' in f.getvalue()\n"
            "heavy = sorted(m for m in ('jax', 'flax', 'optax', 'matplotlib', 'pandas',\n"
            "               'ctrnn_dyn.tasks', 'ctrnn_dyn.train') if m in sys.modules\n"
            "               and m not in before)\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_train_help_shows_the_optimiser_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for snippet in ("--lr LR AdamW learning rate > 0 (default 0.001)",
                    "--clip CLIP global-norm gradient clip > 0 (default 1.0)",
                    "--weight-decay WEIGHT_DECAY AdamW weight decay >= 0 (default 0.0001)"):
        assert snippet in text


# -- sweep and reproduce: the same one-line errors -----------------------------------------------


def test_sweep_mistakes_are_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    line = _refused(["sweep", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")],
                    capsys)
    assert line == (f"ctrnn-dyn sweep: error: sweep config {tmp_path / 'missing.toml'} does "
                    "not exist")
    line = _refused(["sweep", str(tmp_path), "--out", str(tmp_path / "o")], capsys)
    assert line == (f"ctrnn-dyn sweep: error: sweep config {tmp_path} is a directory; expected "
                    "a TOML file")
    bad = tmp_path / "bad.toml"
    bad.write_text('task = "flipflop"\n[train]\nclip_norm = -1\n')
    line = _refused(["sweep", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert line == "ctrnn-dyn sweep: error: sweep config: train.clip_norm: must be > 0, got -1"
    assert not (tmp_path / "o").exists()
    line = _refused(["sweep", str(bad), "--out", str(afile)], capsys)
    assert f"argument --out: {afile} is a file; expected a directory" in line


def test_reproduce_mistakes_are_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    line = _refused(["reproduce", "flipflop", "--out", str(afile)], capsys)
    assert f"argument --out: {afile} is a file; expected a directory" in line
    line = _refused(["reproduce", "flipflop", "--seed", "-1", "--out", str(tmp_path)], capsys)
    assert "argument --seed: must be >= 0, got -1" in line
    line = _refused(["reproduce", "flipflopp"], capsys)
    assert "argument NAME: invalid choice: 'flipflopp'" in line


def test_verbose_and_quiet_after_a_subcommand_leave_its_own_flags_alone(capsys):
    @cli.subcommand("flags", help="uses -v itself")
    def _flags(parser: argparse.ArgumentParser):
        parser.add_argument("-v", "--values", default="a")
        return lambda args: print(args.values, args.verbose, args.quiet) or 0

    try:
        assert cli.main(["flags", "-v", "b", "--verbose", "-q"]) == 0
        assert capsys.readouterr().out.split() == ["b", "True", "True"]
        assert cli.main(["flags"]) == 0
        assert capsys.readouterr().out.split() == ["a", "False", "False"]
    finally:
        del cli.SUBCOMMANDS["flags"]
