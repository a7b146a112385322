"""From a trained run to its analysis: ``load_run`` and ``ctrnn-dyn analyze``."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctrnn_dyn import checkpoint, cli
from ctrnn_dyn.dynamics import one_step_map, simulate
from ctrnn_dyn.fixed_points import FixedPoints, find_fixed_points, sample_initial_states
from ctrnn_dyn.model import CTRNNCell, rnn
from ctrnn_dyn.runs import Run, load_run
from ctrnn_dyn.tasks import FlipFlop, task_config
from ctrnn_dyn.train import History


def test_load_run_returns_what_was_saved(tmp_path):
    task = FlipFlop(n_bits=2, n_steps=10)
    cell = CTRNNCell(hidden_features=5, output_features=2, alpha=0.3, noise_const=0.05)
    params = rnn(cell).init(jax.random.PRNGKey(3), jnp.ones((1, 4, 2)))
    history = History.empty()._replace(step=np.arange(1, 8), loss=np.linspace(1, 0.5, 7))
    checkpoint.save(tmp_path, checkpoint.Checkpoint(
        params=params, opt_state={}, step=7, history=history,
        cell_config=checkpoint.cell_config(cell), task_config=task_config(task),
        extra={"batch_size": 4, "note": "x"}))
    for path in (tmp_path, tmp_path / "checkpoint", str(tmp_path)):
        run = load_run(path)
        assert isinstance(run, Run)
        assert run.path == tmp_path / "checkpoint"
        assert run.cell == cell and run.task == task
        assert run.step == 7 and run.nonfinite_step is None
        assert run.config == {"batch_size": 4, "note": "x"}
        np.testing.assert_array_equal(run.history.loss, history.loss)
        for a, b in zip(jax.tree_util.tree_leaves(run.params), jax.tree_util.tree_leaves(params),
                        strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the map is the saved network's, noise off: x + alpha (-x + tanh(x) K + b + u K_in)
    F = run.map()
    tree = params["params"]["cell"]
    x, u = np.linspace(-1, 1, 5), np.array([1.0, -1.0])
    expected = x + 0.3 * (-x + np.tanh(x) @ np.asarray(tree["recurrent_kernel"]["kernel"])
                          + np.asarray(tree["recurrent_kernel"]["bias"])
                          + u @ np.asarray(tree["input_kernel"]["kernel"]))
    np.testing.assert_allclose(np.asarray(F(jnp.asarray(x, jnp.float32), u)), expected,
                               rtol=1e-5, atol=1e-6)


def test_load_run_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_run(tmp_path / "missing")
    with pytest.raises(TypeError, match="path"):
        load_run(3)
    (tmp_path / "checkpoint").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a ctrnn_dyn checkpoint"):
        load_run(tmp_path)


def test_analyze_run_keeps_the_linearisation_on(tmp_path):
    from ctrnn_dyn.report import analyze_run

    with pytest.raises(ValueError, match="decompose"):
        analyze_run(tmp_path, decompose=False)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ff")
    assert cli.main(["train", "--task", "flipflop", "--hidden", "8", "--steps", "60",
                     "--lr", "1e-2", "--eval-every", "60", "--out", str(out),
                     "--no-progress"]) == 0
    return out


def test_train_then_analyze_matches_find_fixed_points(small_run, tmp_path, capsys):
    out = tmp_path / "report"
    capsys.readouterr()
    assert cli.main(["analyze", str(small_run), "--out", str(out), "--starts", "64",
                     "--trials", "8", "--seed", "1", "--inputs", "0,0,0", "0.5,0,0"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    numbers = json.loads((out / "analysis.json").read_text())
    assert (out / "analysis.png").stat().st_size > 10_000
    assert printed["verdict"] == numbers["verdict"]["label"]
    assert [n["u"] for n in numbers["inputs"]] == [[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]]
    report = numbers["inputs"][0]

    # The documented procedure, from the public API: trials and starts from seed 1, then the
    # fixed-point search under zero input on the loaded map.
    run = load_run(small_run)
    F = one_step_map(run.cell, run.params)
    k_trials, k_starts = jax.random.split(jax.random.PRNGKey(1))
    batch = run.task.sample(k_trials, 8)
    x0 = jnp.ones(8)  # the cell's initial state
    states = jax.vmap(lambda u: simulate(F, x0, u))(batch.inputs)
    starts = sample_initial_states(states, 64, noise_scale=0.5, key=k_starts)
    direct = find_fixed_points(F, starts, jnp.zeros(3))

    fixed = direct.fixed
    assert report["n_fixed"] == len(fixed) >= 1
    assert report["n_slow"] == len(direct.slow)
    assert report["n_stable"] == len(fixed.stable)
    assert report["stability_counts"] == {
        str(k): int(v) for k, v in zip(*np.unique(fixed.stability, return_counts=True),
                                       strict=True)}
    assert report["n_unstable_counts"] == {
        str(k): int(v) for k, v in zip(*np.unique(fixed.n_unstable, return_counts=True),
                                       strict=True)}
    q_report = np.array([p["q"] for p in report["fixed_points"]])
    np.testing.assert_array_equal(q_report, fixed.q)
    assert np.all(q_report <= 1e-20)
    assert [p["stability"] for p in report["fixed_points"]] == list(fixed.stability)

    # The .npz holds the same points; its indices are those of the JSON.
    saved = FixedPoints.load(out / "fixed_points.npz")
    idx = [p["index"] for p in report["fixed_points"]]
    np.testing.assert_array_equal(saved.x[idx], fixed.x)
    np.testing.assert_array_equal(saved.q[idx], fixed.q)
    # Stability in the continuous-time sense, from the saved Jacobians with NumPy:
    # Re eig((J - I) / alpha) < 0 for every eigenvalue.
    lam = np.linalg.eigvals((saved.jacobians[idx] - np.eye(8)) / 0.5)
    n_unstable_ct = np.sum(lam.real > 0, axis=1)
    assert [p["n_unstable_continuous"] for p in report["fixed_points"]] == list(n_unstable_ct)
    assert report["n_stable_continuous"] == int(np.sum(n_unstable_ct == 0))
    # readouts: f(x) K_out + b_out
    tree = run.params["params"]["cell"]
    y = np.tanh(fixed.x) @ np.asarray(tree["output_kernel"]["kernel"], np.float64) + np.asarray(
        tree["output_kernel"]["bias"], np.float64)
    np.testing.assert_allclose([p["readout"] for p in report["fixed_points"]], y, rtol=1e-6,
                               atol=1e-7)
    dyn = report["dynamics"]
    assert dyn["n_starts"] == 8 and sum(dyn["labels"].values()) == 8
    # every input's entries are in the .npz, tagged with their input
    assert len(saved) == sum(n["n_fixed"] + n["n_slow"] + n["n_other"]
                             for n in numbers["inputs"])
    for n in numbers["inputs"]:
        for p in n["fixed_points"]:
            np.testing.assert_array_equal(saved.u[p["index"]], n["u"])


@pytest.mark.parametrize(("extra", "message"), [
    (["--inputs", "0,0"], "--inputs: inputs must have shape (3,)"),
    (["--inputs", "a,b,c"], "--inputs: expected comma-separated numbers"),
    (["--starts", "0"], "--starts: must be >= 1"),
    (["--noise-scale", "nan"], "--noise-scale: must be finite"),
])
def test_analyze_bad_arguments_exit_2(small_run, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(["analyze", str(small_run), "--out", str(tmp_path / "r"), *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_analyze_bad_paths_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["analyze", str(tmp_path / "nothing")])
    assert exc.value.code == 2
    assert "RUN_DIR: no checkpoint" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit) as exc:
        cli.main(["analyze", str(tmp_path), "--out", str(tmp_path / "afile")])
    assert exc.value.code == 2
    assert "--out" in capsys.readouterr().err
