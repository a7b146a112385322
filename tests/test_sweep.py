"""Sweeps: config validation, chunk planning, Dask runs with a killed worker, resume, failures,
the SLURM job script, and the argparse entry points."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import stat
import threading
import time
import tomllib
import tracemalloc
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from ctrnn_dyn import checkpoint as ckpt
from ctrnn_dyn import sweep
from ctrnn_dyn import train as tr
from ctrnn_dyn.model import CTRNNCell
from ctrnn_dyn.tasks import FlipFlop

SMALL = """
task = "flipflop"
seeds = 3
chunk_size = 3

[task_options]
n_bits = 1
n_steps = 8

[cell]
hidden_features = 4
alpha = 0.2

[train]
steps = 40
batch_size = 8
learning_rate = 0.01
block_steps = 40
eval_batches = 1

[grid]
"cell.alpha" = [0.2, 0.5]

[scheduler]
n_workers = 2
retries = 1
"""


def _write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctrnn-dyn")
    sweep.add_sweep_parser(parser.add_subparsers(dest="command"))
    return parser


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda t: 'bogus = 1\n' + t, "bogus"),
        (lambda t: t.replace("hidden_features = 4", "hidden_features = 4\nwidth = 3"),
         "cell.width"),
        (lambda t: t.replace('"cell.alpha" = [0.2, 0.5]', '"cell.alpha" = []'),
         "grid.cell.alpha"),
        (lambda t: t.replace('"cell.alpha" = [0.2, 0.5]', '"cell.beta" = [1]'),
         "grid.cell.beta"),
        (lambda t: t.replace("steps = 40", "steps = 0"), "train.steps"),
        (lambda t: t.replace("batch_size = 8", "batch_size = -2"), "train.batch_size"),
        (lambda t: t.replace("chunk_size = 3", "chunk_size = 0"), "chunk_size"),
        (lambda t: t.replace("seeds = 3", "seeds = 0"), "seeds"),
        (lambda t: t.replace("seeds = 3", "seeds = []"), "seeds"),
        (lambda t: t.replace("hidden_features = 4", "hidden_features = 0"),
         "cell.hidden_features"),
        (lambda t: t.replace("n_workers = 2", 'n_workers = 2\nkind = "pbs"'), "scheduler.kind"),
        (lambda t: t.replace('task = "flipflop"', 'task = "nope"'), "task"),
        (lambda t: t.replace("n_bits = 1", "n_bits = 1\ncolour = 2"), "task_options.colour"),
        (lambda t: t.replace('"cell.alpha" = [0.2, 0.5]', '"cell.alpha" = [0.2, 1.5]'),
         r"grid.cell.alpha: must be in \(0, 1\], got 1.5"),
        # hyper-parameters: types, finiteness and ranges (the rules train() applies too)
        (lambda t: t.replace("learning_rate = 0.01", "learning_rate = 0.01\nclip_norm = -1"),
         r"train.clip_norm: must be > 0, got -1"),
        (lambda t: t.replace("learning_rate = 0.01", "learning_rate = 0.01\nb1 = 5.0"),
         r"train.b1: must be in \[0, 1\), got 5.0"),
        (lambda t: t.replace("learning_rate = 0.01", 'learning_rate = 0.01\nb2 = "x"'),
         r"train.b2: must be a number in \[0, 1\), got str 'x'"),
        (lambda t: t.replace("alpha = 0.2", 'alpha = "0.1"'),
         r"cell.alpha: must be a number in \(0, 1\], got str '0.1'"),
        (lambda t: t.replace("learning_rate = 0.01", 'learning_rate = "fast"'),
         r"train.learning_rate: must be a number > 0, got str 'fast'"),
        (lambda t: t.replace("learning_rate = 0.01", "learning_rate = nan"),
         r"train.learning_rate: must be a finite number > 0, got nan"),
        (lambda t: t.replace("learning_rate = 0.01", "learning_rate = 0.01\nweight_decay = -1e-4"),
         r"train.weight_decay: must be >= 0"),
        (lambda t: t.replace("learning_rate = 0.01", "learning_rate = true"),
         r"train.learning_rate: must be a number > 0, got bool True"),
        (lambda t: t.replace('"cell.alpha" = [0.2, 0.5]', '"train.learning_rate" = [0.1, 0]'),
         r"grid.train.learning_rate: must be > 0, got 0"),
        (lambda t: t.replace("n_steps = 8", "n_steps = 8\np_pulse = inf"),
         r"task_options.p_pulse: must be finite, got inf"),
        (lambda t: t.replace('"cell.alpha" = [0.2, 0.5]', '"task.p_pulse" = [0.5, nan]'),
         r"grid.task.p_pulse: must be finite, got nan"),
    ],
)
def test_bad_config_names_the_field_before_any_work(tmp_path, edit, field):
    path = _write(tmp_path, edit(SMALL))
    out = tmp_path / "out"
    args = _parser().parse_args(["sweep", str(path), "--out", str(out)])
    with pytest.raises(ValueError, match=f"sweep config: {field}"):
        args.func(args)
    assert not out.exists()  # nothing was started


def test_unknown_scheduler_on_the_command_line(tmp_path):
    path = _write(tmp_path, SMALL)
    args = _parser().parse_args(["sweep", str(path), "--out", str(tmp_path / "o"),
                                 "--scheduler", "kubernetes"])
    with pytest.raises(ValueError, match="scheduler.kind"):
        sweep.run_sweep_command(args)


def test_cli_registry_form(tmp_path):
    """``configure_sweep_parser`` plugs into ctrnn_dyn.cli's (parser -> handler) registry."""
    parser = argparse.ArgumentParser(prog="ctrnn-dyn")
    sub = parser.add_subparsers(dest="command").add_parser("sweep")
    handler = sweep.configure_sweep_parser(sub)
    args = parser.parse_args(["sweep", "x.toml", "--out", "o", "--scheduler", "slurm"])
    assert handler is sweep.run_sweep_command
    assert (args.config, args.out, args.scheduler) == ("x.toml", "o", "slurm")
    with pytest.raises(FileNotFoundError, match="x.toml"):
        handler(args)


def test_plan_chunks_covers_every_network_once(tmp_path):
    cfg = sweep.load_config(_write(tmp_path, SMALL.replace("chunk_size = 3", "chunk_size = 4")))
    chunks = sweep.plan_chunks(cfg)
    nets = [n for c in chunks for n in c.networks]
    assert sorted(nets) == [(i, c, s) for i, (c, s) in
                            enumerate((c, s) for c in range(2) for s in range(3))]
    # alpha varies inside the (single) group: every chunk passes it per network
    assert [len(c.networks) for c in chunks] == [4, 2]
    assert all(list(c.varying) == ["cell.alpha"] for c in chunks)
    assert chunks[0].varying["cell.alpha"] == [0.2, 0.2, 0.2, 0.5]
    # deterministic names
    assert [c.chunk_id for c in chunks] == [c.chunk_id for c in sweep.plan_chunks(cfg)]
    # a non-batchable grid key splits the networks into groups
    cfg2 = sweep.load_config(_write(tmp_path, SMALL.replace(
        '"cell.alpha" = [0.2, 0.5]', '"cell.hidden_features" = [3, 5]'), "b.toml"))
    chunks2 = sweep.plan_chunks(cfg2)
    assert [c.static["cell"]["hidden_features"] for c in chunks2] == [3, 5]
    assert all(c.varying == {} for c in chunks2)


def test_slurm_job_script():
    script = sweep.slurm_job_script({
        "cores": 4, "memory": "8GB", "walltime": "02:00:00", "queue": "gpu",
        "account": "lab42", "job_extra_directives": ["--exclusive"],
    }, "tcp://10.0.0.1:8786")
    assert script.startswith("#!/")
    for line in ("#SBATCH -p gpu", "#SBATCH -A lab42", "#SBATCH -n 1", "#SBATCH --cpus-per-task=4",
                 "#SBATCH -t 02:00:00", "#SBATCH --exclusive"):
        assert line in script, script
    assert "--nthreads 4" in script or "--nworkers 1" in script
    assert "distributed.cli.dask_worker" in script or "dask-worker" in script
    assert "tcp://10.0.0.1:8786" in script


def test_slurm_script_keeps_paths_with_variables_and_constraint_expressions():
    sched = {"python": "$HOME/venv/bin/python", "local_directory": "${TMPDIR}/dask",
             "job_extra_directives": ["--gres=gpu:1", "-C a100|h100", "--output=logs/%j.out"],
             "walltime": 90, "memory": 2**33}
    doc = tomllib.loads(SMALL)
    doc["scheduler"].update(sched, kind="slurm")
    assert sweep.validate_config(doc).scheduler["python"] == "$HOME/venv/bin/python"
    script = sweep.slurm_job_script(sched)
    for line in ("#SBATCH --gres=gpu:1", "#SBATCH -C a100|h100", "#SBATCH --output=logs/%j.out",
                 "#SBATCH -t 90\n", "#SBATCH --mem=8G\n",
                 "\n$HOME/venv/bin/python -m ", "--local-directory ${TMPDIR}/dask\n"):
        assert line in script, script


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("python", "/usr/bin/python; rm -rf ~",
         r"scheduler.python: is not a path: .* contains characters the batch script would "
         r"interpret"),
        ("python", "python\nrm -rf ~", r"scheduler.python: must be a single line"),
        ("python", "$(curl example.org)", r"scheduler.python: is not a path"),
        ("python", "`id`", r"scheduler.python: is not a path"),
        ("python", 3, r"scheduler.python: must be a string \(a path"),
        ("local_directory", "/scratch && id", r"scheduler.local_directory: is not a path"),
        ("local_directory", "/scratch > /etc/x", r"scheduler.local_directory: is not a path"),
        ("local_directory", "--help", r"scheduler.local_directory: must not start with '-'"),
        ("job_extra_directives", ["--exclusive", "--qos=x\nrm -rf ~"],
         r"scheduler.job_extra_directives\[1\]: must be a single line"),
        ("job_extra_directives", ["--comment=$(id)"],
         r"scheduler.job_extra_directives\[0\]: is not one sbatch option"),
        ("job_extra_directives", ["echo hi"],
         r"scheduler.job_extra_directives\[0\]: is not one sbatch option"),
        ("job_extra_directives", ["--mem=4G --wrap 'id'"],
         r"scheduler.job_extra_directives\[0\]: is not one sbatch option"),
        ("job_extra_directives", "--exclusive",
         r"scheduler.job_extra_directives: must be a list of sbatch options"),
        ("job_extra_directives", [7], r"scheduler.job_extra_directives\[0\]: must be a string"),
        ("queue", "gpu\n#SBATCH --uid=0", r"scheduler.queue: must be a single line"),
        ("account", "lab;id", r"scheduler.account: is not a Slurm name"),
        ("walltime", "01:00:00 && id", r"scheduler.walltime: is not a Slurm time"),
        ("memory", "4GB`id`", r"scheduler.memory: is not a size"),
        ("memory", -4, r"scheduler.memory: must be a string \(a size"),
    ],
)
def test_slurm_fields_cannot_carry_shell_text(field, value, message):
    doc = tomllib.loads(SMALL)
    doc["scheduler"][field] = value
    with pytest.raises(ValueError, match=f"^sweep config: {message}"):
        sweep.validate_config(doc)
    with pytest.raises(ValueError, match=f"^sweep config: {message}"):  # also when called directly
        sweep.slurm_job_script({field: value})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"grid": {f"train.{k}": list(range(1, 101)) for k in
                   ("steps", "batch_size", "block_steps", "eval_batches")}
          | {"cell.hidden_features": list(range(1, 101)), "task.n_steps": list(range(1, 101))}},
         r"grid: 1000000000000 configurations \(100 \(cell.hidden_features\) x 100 "
         r"\(task.n_steps\) x .* exceed the limit of 100000"),
        ({"grid": {"cell.hidden_features": list(range(1, 1001))},
          "configs": [{"cell.alpha": 0.1}] * 200},
         r"grid: 200000 configurations \(1000 \(cell.hidden_features\) x 200 \(\[\[configs\]\]\)\)"
         r" exceed the limit of 100000"),
        ({"grid": {"cell.hidden_features": list(range(1, 1001))}, "seeds": 2000},
         r"grid: 1000 configurations x 2000 seeds = 2000000 networks exceed the limit of "
         r"1000000"),
        ({"seeds": 10**12}, r"seeds: 1000000000000 seeds exceed the limit of 1000000 networks"),
    ],
)
def test_grid_size_is_checked_before_anything_is_allocated(edit, message):
    doc = {**tomllib.loads(SMALL), **edit}
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=f"^sweep config: {message}"):
            sweep.validate_config(doc)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 5.0
    assert peak < 20 * 2**20, peak  # bytes: nothing of the grid's size was built


def test_parquet_outputs_are_durable_and_a_failed_write_leaves_the_old_table(tmp_path,
                                                                            monkeypatch):
    path = tmp_path / "chunks" / "00000-abc.parquet"
    old = pd.DataFrame({"network": [0, 1], "loss": [0.5, 0.25]})
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_mode),
                                                 real_fsync(fd)))
    sweep.tables._atomic_write_parquet(old, path)
    monkeypatch.undo()
    assert [stat.S_ISREG(m) for m in synced] == [True, False]  # the file, then its directory
    assert stat.S_ISDIR(synced[1])

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        sweep.tables._atomic_write_parquet(old.assign(loss=[9.0, 9.0]), path)
    monkeypatch.undo()
    assert os.listdir(path.parent) == [path.name]  # no temporary file left
    pd.testing.assert_frame_equal(pd.read_parquet(path), old)


def _reference_losses(alpha: float, seeds: list[int]) -> dict[int, tuple[float, float]]:
    """(final train loss, eval loss) of each seed trained alone: the train() conventions with
    one jitted single-network step (keys split into init/data/eval)."""
    task = FlipFlop(n_bits=1, n_steps=8)
    cell = CTRNNCell(hidden_features=4, output_features=1, alpha=alpha, noise_const=0.0)
    opt = tr.default_optimizer(0.01)
    step = jax.jit(tr.make_train_step(cell, task, opt, batch_size=8))
    ev = jax.jit(tr.make_eval_fn(cell, task, batch_size=8, n_batches=1))
    out = {}
    for seed in seeds:
        k_init, k_data, k_eval = jax.random.split(jax.random.key(seed), 3)
        state = tr.init_state(cell, task, opt, key=k_init)
        for _ in range(40):
            state, m = step(state, k_data)
        out[seed] = (float(m.loss), float(ev(state.params, k_eval)[0]))
    return out


def test_sweep_survives_a_killed_worker_and_resumes(tmp_path):
    """2 configurations x 3 seeds on a 2-worker LocalCluster (processes); one worker is killed
    while it trains: the table still has exactly 6 correct rows; a re-run runs nothing."""
    from distributed import Client, LocalCluster

    path = _write(tmp_path, SMALL)
    out = tmp_path / "out"
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    client = Client(cluster)
    result: dict = {}
    try:
        thread = threading.Thread(
            target=lambda: result.update(r=sweep.run_sweep(path, out, client=client,
                                                           progress=False)))
        thread.start()
        killed = None
        deadline = time.time() + 120
        while killed is None and time.time() < deadline and thread.is_alive():
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                time.sleep(1.0)  # let it get going (compiling / training)
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed = pid
            time.sleep(0.1)
        thread.join(timeout=240)
        assert not thread.is_alive()
    finally:
        client.close()
        cluster.close()
    assert killed is not None
    r = result["r"]
    assert r.failed == {}
    assert r.n_chunks == 2 and len(r.ran) == 2
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 6
    assert sorted(zip(df["config_id"], df["seed"], strict=True)) == [
        (c, s) for c in range(2) for s in range(3)]
    assert (df["status"] == "ok").all()
    assert df["network"].tolist() == list(range(6))
    for alpha, group in df.groupby("cell.alpha"):
        ref = _reference_losses(float(alpha), group["seed"].tolist())
        for _, row in group.iterrows():
            np.testing.assert_allclose(row["final_loss"], ref[row["seed"]][0], rtol=1e-4)
            np.testing.assert_allclose(row["eval_loss"], ref[row["seed"]][1], rtol=1e-4)
    assert (df["best_loss"] <= df["final_loss"] + 1e-7).all()
    # checkpoints per chunk, the network axis first
    saved = ckpt.load(df["checkpoint"].iloc[0])
    leaf = saved.params["params"]["cell"]["recurrent_kernel"]["kernel"]
    assert leaf.shape == (3, 4, 4)

    again = sweep.run_sweep(path, out, progress=False)  # no cluster is even started
    assert again.ran == () and len(again.skipped) == 2
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), df)


def test_failing_chunk_is_retried_then_recorded(tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    log = tmp_path / "attempts.txt"

    def boom(spec, out_dir):  # serialised to the worker: count attempts in a file
        with open(log, "a") as fh:
            fh.write(spec.chunk_id + "\n")
        raise RuntimeError("solver exploded")

    monkeypatch.setattr(sweep.driver, "run_chunk", boom)
    path = _write(tmp_path, SMALL.replace("seeds = 3", "seeds = 1").replace(
        "chunk_size = 3", "chunk_size = 2").replace("retries = 1", "retries = 2"))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        r = sweep.run_sweep(path, tmp_path / "out", client=client, progress=False)
    assert len(log.read_text().split()) == 3  # first try + 2 retries
    assert list(r.failed) == [sweep.plan_chunks(sweep.load_config(path))[0].chunk_id]
    df = r.read()
    assert len(df) == 2 and (df["status"] == "failed").all()
    assert df["error"].str.contains("solver exploded").all()
    assert df["final_loss"].isna().all()


def test_a_neurogym_task_is_a_valid_sweep_task_and_its_options_are_checked():
    doc = tomllib.loads(SMALL)
    doc["task"] = "neurogym:PerceptualDecisionMaking-v0"
    doc["task_options"] = {"n_trials": 16, "seed": 3}
    assert sweep.validate_config(doc).task == "neurogym:PerceptualDecisionMaking-v0"
    doc["task_options"] = {"n_trails": 16}
    with pytest.raises(ValueError, match="n_trails"):
        sweep.validate_config(doc)
    doc["task"] = "neurogym_PerceptualDecisionMaking"
    with pytest.raises(ValueError, match="unknown task 'neurogym_Perc.*neurogym:ENV_ID"):
        sweep.validate_config(doc)
