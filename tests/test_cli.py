"""The ``ctrnn-dyn`` command line: train, resume, errors, adding a subcommand."""

from __future__ import annotations

import argparse
import json

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
        (["--task", "nope"], "unknown task name 'nope'"),
        (["--task", "flipflop", "--steps", "0"], "--steps must be >= 1"),
        (["--task", "flipflop", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["--task", "flipflop", "--alpha", "1.5"], "--alpha must be in (0, 1]"),
        (["--task", "flipflop", "--task-option", "n_bitz=3"], "n_bitz"),
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
