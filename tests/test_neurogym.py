"""neurogym environments as tasks: the bank equals neurogym's own trials; train, CLI, ensembles."""

from __future__ import annotations

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ngym = pytest.importorskip("neurogym")

from ctrnn_dyn import checkpoint as ckpt  # noqa: E402
from ctrnn_dyn import cli  # noqa: E402
from ctrnn_dyn.ensemble import train_ensemble  # noqa: E402
from ctrnn_dyn.model import CTRNNCell  # noqa: E402
from ctrnn_dyn.tasks import (  # noqa: E402
    NeurogymTask,
    from_neurogym,
    get_task,
    task_config,
    task_from_config,
)
from ctrnn_dyn.train import train  # noqa: E402

PDM = "PerceptualDecisionMaking-v0"
RSG = "ReadySetGo-v0"  # trials of different lengths


def _make(name, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ngym.make(name, **kwargs)


def _neurogym_trials(name, seed, n, **kwargs):
    """neurogym's own trials: seed the environment, call new_trial() n times."""
    env = _make(name, **kwargs).unwrapped
    env.seed(seed)
    out = []
    for _ in range(n):
        env.new_trial()
        out.append((env.ob.copy(), env.gt.copy(), dict(env.start_ind), dict(env.end_ind)))
    return out


@pytest.mark.parametrize("name,kwargs", [(PDM, {}), (RSG, {}), ("DelayMatchSample-v0",
                                                                {"dt": 50})])
def test_bank_equals_neurogyms_own_trials(name, kwargs):
    n, seed = 25, 11
    task = from_neurogym(name, n_trials=n, seed=seed, env_kwargs=kwargs or None)
    ref = _neurogym_trials(name, seed, n, **kwargs)
    inputs, targets, mask = (np.asarray(a) for a in task.data)
    lengths = [len(ob) for ob, *_ in ref]
    assert task.n_steps == max(lengths) == inputs.shape[1]
    np.testing.assert_array_equal(task.trial_lengths, lengths)
    n_actions = _make(name, **kwargs).unwrapped.action_space.n
    assert task.output_size == n_actions and task.input_size == ref[0][0].shape[1]
    for i, (ob, gt, _, _) in enumerate(ref):
        L = len(ob)
        np.testing.assert_array_equal(inputs[i, :L], ob)
        np.testing.assert_array_equal(targets[i, :L], np.eye(n_actions)[gt])
        assert (mask[i, :L] == 1).all()
        # padding: zeros everywhere, never scored
        assert not inputs[i, L:].any() and not targets[i, L:].any() and not mask[i, L:].any()
    if name == RSG:
        assert len(set(lengths)) > 1  # the padding was exercised


def test_another_seed_gives_other_trials_and_the_same_seed_the_same():
    a = from_neurogym(PDM, n_trials=10, seed=0).data.inputs
    b = from_neurogym(PDM, n_trials=10, seed=0).data.inputs
    c = from_neurogym(PDM, n_trials=10, seed=1).data.inputs
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_periods_mask_only_those_steps():
    task = from_neurogym(PDM, n_trials=6, seed=2, periods=("decision",))
    ref = _neurogym_trials(PDM, 2, 6)
    mask = np.asarray(task.data.mask)
    for i, (_, _, start, end) in enumerate(ref):
        want = np.zeros(task.n_steps)
        want[start["decision"]:end["decision"]] = 1
        np.testing.assert_array_equal(mask[i, :, 0], want)
        assert (mask[i] == mask[i, :, :1]).all()
    with pytest.raises(ValueError, match="unknown period 'response'"):
        from_neurogym(PDM, n_trials=2, periods=("response",))


def test_environment_object_is_copied_and_gives_the_same_bank():
    env = _make(PDM)
    state = env.unwrapped.rng.get_state()[1].copy()
    task = from_neurogym(env, n_trials=8, seed=4)
    np.testing.assert_array_equal(env.unwrapped.rng.get_state()[1], state)  # not advanced
    np.testing.assert_array_equal(task.data.inputs,
                                  from_neurogym(PDM, n_trials=8, seed=4).data.inputs)
    with pytest.raises(TypeError, match="environment object has no config"):
        task_config(task)
    assert ckpt.task_config_or_none(task) is None


def test_labels_and_padding_options():
    task = from_neurogym(PDM, n_trials=5, seed=0, one_hot=False, pad_to=30)
    ref = _neurogym_trials(PDM, 0, 5)
    assert task.output_size == 1 and task.n_steps == 30
    np.testing.assert_array_equal(np.asarray(task.data.targets)[:, :22, 0],
                                  np.stack([gt for _, gt, _, _ in ref]))
    with pytest.raises(ValueError, match="pad_to=10 is shorter than the longest trial"):
        from_neurogym(PDM, n_trials=2, pad_to=10)


def test_invalid_arguments():
    with pytest.raises(TypeError, match="neurogym environment id or a neurogym TrialEnv"):
        from_neurogym(_make(PDM).unwrapped.action_space, n_trials=2)
    with pytest.raises(ValueError, match="unknown neurogym environment 'Nope-v0'"):
        get_task("neurogym:Nope-v0", n_trials=2)
    with pytest.raises(ValueError, match="n_trials must be >= 1"):
        from_neurogym(PDM, n_trials=0)
    with pytest.raises(ValueError, match="env_kwargs apply only"):
        from_neurogym(_make(PDM), n_trials=2, env_kwargs={"dt": 10})
    task = from_neurogym(PDM, n_trials=4)
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, 4\]"):
        task.sample(jax.random.key(0), 5)


def test_sample_draws_distinct_trials_of_the_bank():
    task = from_neurogym(PDM, n_trials=16, seed=0)
    b = task.sample(jax.random.key(3), 16)
    bank = np.asarray(task.data.inputs).reshape(16, -1)
    rows = [int(np.flatnonzero((bank == r).all(axis=1))[0])
            for r in np.asarray(b.inputs).reshape(16, -1)]
    assert sorted(rows) == list(range(16))


def test_accuracy_is_the_choice_accuracy():
    task = from_neurogym(PDM, n_trials=8, seed=0)
    batch = task.sample(jax.random.key(0), 8)
    rng = np.random.default_rng(0)
    out = rng.normal(size=batch.targets.shape).astype(np.float32)
    # NumPy loop: steps scored and whose ground truth is not fixation (action 0)
    hits = total = 0
    for b in range(8):
        for t in range(task.n_steps):
            gt = int(np.argmax(batch.targets[b, t]))
            if batch.mask[b, t].max() > 0 and gt != 0:
                total += 1
                hits += int(np.argmax(out[b, t]) == gt)
    assert total > 0
    np.testing.assert_allclose(float(task.accuracy(jnp.asarray(out), batch)), hits / total,
                               rtol=1e-6)
    assert float(task.accuracy(batch.targets, batch)) == 1.0


def test_config_round_trip_and_get_task_prefix():
    task = get_task(f"neurogym:{PDM}", n_trials=12, seed=5, periods=["decision", "stimulus"],
                    env_kwargs={"timing": {"stimulus": 500}})
    assert isinstance(task, NeurogymTask) and task.n_steps == 1 + 5 + 0 + 1
    config = json.loads(json.dumps(task_config(task)))
    assert config["name"] == f"neurogym:{PDM}" and "env" not in config
    again = task_from_config(config)
    assert task_config(again) == config
    for a, b in zip(again.data, task.data, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="give the environment once"):
        get_task(f"neurogym:{PDM}", env=PDM)


def test_trains_through_train():
    task = from_neurogym(PDM, n_trials=32, seed=0)
    cell = CTRNNCell(hidden_features=8, output_features=task.output_size, alpha=0.5,
                     noise_const=0.0)
    result = train(cell, task, key=jax.random.key(0), steps=6, batch_size=8,
                   learning_rate=1e-2, progress=False)
    assert result.step == 6 and np.isfinite(result.history.loss).all()
    assert result.history.loss[-1] < result.history.loss[0]


def test_trains_as_an_ensemble():
    task = from_neurogym(PDM, n_trials=16, seed=0)
    cell = CTRNNCell(hidden_features=6, output_features=task.output_size, alpha=0.5,
                     noise_const=0.0)
    res = train_ensemble(cell, task, keys=jax.random.split(jax.random.key(1), 2), steps=3,
                         batch_size=4, block_steps=3)
    assert np.isfinite(np.asarray(res.history.loss)).all()


def test_trains_through_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--task", f"neurogym:{PDM}", "--task-option", "n_trials=32",
            "--task-option", "seed=3", "--hidden", "8", "--batch-size", "8",
            "--checkpoint-every", "4", "--eval-every", "4", "--no-progress", "--out", str(out)]
    assert cli.main([*args, "--steps", "4"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 4 and summary["nonfinite_step"] is None
    c = ckpt.load(out)
    assert c.task_config["name"] == f"neurogym:{PDM}" and c.task_config["seed"] == 3
    np.testing.assert_array_equal(c.task.data.inputs,
                                  from_neurogym(PDM, n_trials=32, seed=3).data.inputs)
    assert cli.main([*args, "--steps", "6", "--resume"]) == 0
    assert ckpt.load(out).step == 6
    # a resumed run must keep the bank's options
    with pytest.raises(SystemExit):
        cli.main([*args[:5], "--task-option", "seed=4", *args[7:], "--steps", "8", "--resume"])
    assert "seed" in capsys.readouterr().err
