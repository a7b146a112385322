"""Checkpoints: round trip, corruption and mismatch errors, atomic writes, resume after kill -9."""

from __future__ import annotations

import dataclasses
import errno
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from ctrnn_dyn import _files
from ctrnn_dyn import checkpoint as ckpt
from ctrnn_dyn.model import CTRNNCell
from ctrnn_dyn.tasks import FlipFlop
from ctrnn_dyn.train import default_optimizer, init_params, train

CELL = dict(hidden_features=8, output_features=3, alpha=0.5, noise_const=0.1)
TASK = dict(n_bits=3, n_steps=12, p_pulse=0.2)


def _leaves_equal(a, b) -> None:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    cell, task = CTRNNCell(**CELL), FlipFlop(**TASK)
    result = train(cell, task, key=jax.random.key(0), steps=6, batch_size=4, checkpoint_dir=d,
                   checkpoint_every=3, progress=False)
    return d, cell, task, result


def test_round_trip(run_dir):
    d, cell, task, result = run_dir
    for path in (d, d / ckpt.CHECKPOINT_NAME):
        c = ckpt.load(path)
        assert c.step == 6 and c.nonfinite_step is None
        _leaves_equal(c.params, result.params)
        np.testing.assert_array_equal(c.history.loss, result.history.loss)
        assert c.history.loss.shape == (6,)
        assert c.cell == cell and c.task == task
        assert isinstance(c.opt_state, dict)  # {pytree path: array} without a template
    opt = default_optimizer()
    c = ckpt.load(d, params_like=result.params, opt_state_like=opt.init(result.params))
    _leaves_equal(c.opt_state, result.opt_state)
    assert jax.tree_util.tree_structure(c.opt_state) == jax.tree_util.tree_structure(
        result.opt_state)
    assert not [p for p in os.listdir(d) if ".tmp" in p]  # no temp files left behind


def test_corrupt_and_foreign_files_raise(run_dir, tmp_path):
    d = run_dir[0]
    blob = (d / ckpt.CHECKPOINT_NAME).read_bytes()
    truncated = tmp_path / "truncated"
    truncated.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        ckpt.load(truncated)
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0xFF
    (tmp_path / "flipped").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="checksum"):
        ckpt.load(tmp_path / "flipped")
    (tmp_path / "pickled").write_bytes(pickle.dumps({"params": 1}))
    with pytest.raises(ValueError, match="not a ctrnn_dyn checkpoint"):
        ckpt.load(tmp_path / "pickled")
    (tmp_path / "tiny").write_bytes(blob[:5])
    with pytest.raises(ValueError, match="truncated"):
        ckpt.load(tmp_path / "tiny")
    with pytest.raises(FileNotFoundError):
        ckpt.load(tmp_path / "missing")


def test_mismatched_checkpoint_raises(run_dir):
    d, cell, task, _ = run_dir
    wide = CTRNNCell(**{**CELL, "hidden_features": 16})
    with pytest.raises(ValueError, match="shape"):
        ckpt.load(d, params_like=init_params(wide, task, key=jax.random.key(0)))
    with pytest.raises(ValueError, match="different cell"):
        train(wide, task, key=jax.random.key(0), steps=8, batch_size=4, checkpoint_dir=d,
              resume=True, progress=False)
    with pytest.raises(ValueError, match="different key"):
        train(cell, task, key=jax.random.key(1), steps=8, batch_size=4, checkpoint_dir=d,
              resume=True, progress=False)


def test_stale_temp_file_is_ignored(run_dir, tmp_path):
    d, _, _, result = run_dir
    target = tmp_path / ckpt.CHECKPOINT_NAME
    target.write_bytes((d / ckpt.CHECKPOINT_NAME).read_bytes())
    (tmp_path / f".{ckpt.CHECKPOINT_NAME}.tmp-999").write_bytes(b"partial write")
    _leaves_equal(ckpt.load(tmp_path).params, result.params)


def _temporaries(d) -> list[str]:
    return sorted(n for n in os.listdir(d) if n.startswith(f".{ckpt.CHECKPOINT_NAME}.tmp-"))


def test_stale_temporaries_are_removed_on_the_next_start(run_dir, tmp_path):
    d, cell, task, result = run_dir
    (tmp_path / ckpt.CHECKPOINT_NAME).write_bytes((d / ckpt.CHECKPOINT_NAME).read_bytes())
    for name in (f".{ckpt.CHECKPOINT_NAME}.tmp-999", f".{ckpt.CHECKPOINT_NAME}.tmp-42-0a1b2c3d"):
        (tmp_path / name).write_bytes(b"x" * 4096)  # a killed writer's partial files
    (tmp_path / ".other.tmp-1").write_bytes(b"not ours")
    live = tmp_path / f".{ckpt.CHECKPOINT_NAME}.tmp-7-feedbeef"
    live.write_bytes(b"being written")
    with open(live, "rb+") as held:  # a writer still at work holds its lock
        _files.fcntl.flock(held.fileno(), _files.fcntl.LOCK_EX)
        # resuming a finished run takes no step: only the start-up work runs
        train(cell, task, key=jax.random.key(0), steps=6, batch_size=4, checkpoint_dir=tmp_path,
              resume=True, progress=False)
        assert _temporaries(tmp_path) == [live.name]
    assert (tmp_path / ".other.tmp-1").exists()
    assert ckpt.remove_stale_temporaries(tmp_path) == [live]  # its writer is gone now
    assert _temporaries(tmp_path) == []
    _leaves_equal(ckpt.load(tmp_path).params, result.params)


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from ctrnn_dyn import _files

    def write(fh):
        fh.write(b"x" * 65536)
        fh.flush()
        print("writing", flush=True)
        time.sleep(600)

    _files.atomic_write(sys.argv[1], write)
    """
)


def test_temporary_of_a_killed_writer_is_removed_only_after_it_died(tmp_path):
    target = tmp_path / ckpt.CHECKPOINT_NAME
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"writing\n", proc.stderr.read().decode()[-2000:]
        assert len(_temporaries(tmp_path)) == 1
        assert ckpt.remove_stale_temporaries(tmp_path) == []  # still being written
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    (stale,) = _temporaries(tmp_path)
    assert (tmp_path / stale).stat().st_size == 65536
    assert ckpt.remove_stale_temporaries(tmp_path) == [tmp_path / stale]
    assert _temporaries(tmp_path) == [] and not target.exists()


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_failed_write_leaves_no_temporary_and_the_previous_checkpoint(
    run_dir, tmp_path, monkeypatch, where
):
    d = run_dir[0]
    before = (d / ckpt.CHECKPOINT_NAME).read_bytes()
    (tmp_path / ckpt.CHECKPOINT_NAME).write_bytes(before)
    state = ckpt.load(tmp_path)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    seen = []

    def fail():
        # the temporary exists and already holds part of the new checkpoint
        (tmp,) = _temporaries(tmp_path)
        seen.append((tmp_path / tmp).stat().st_size)
        raise full

    if where == "write":
        real_fdopen = os.fdopen

        class DiskFills:
            def __init__(self, fh):
                self.fh = fh

            def write(self, data):
                self.fh.write(bytes(data[: len(data) // 2]))
                self.fh.flush()
                fail()

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.fh.close()

            def __getattr__(self, name):
                return getattr(self.fh, name)

        monkeypatch.setattr(_files.os, "fdopen", lambda *a, **k: DiskFills(real_fdopen(*a, **k)))
    else:
        monkeypatch.setattr(_files.os, "fsync", lambda fd: fail())
    with pytest.raises(OSError, match="No space left") as err:
        ckpt.save(tmp_path, dataclasses.replace(state, step=state.step + 1))
    monkeypatch.undo()
    assert err.value.errno == errno.ENOSPC and seen and seen[0] > 0
    assert _temporaries(tmp_path) == []
    assert (tmp_path / ckpt.CHECKPOINT_NAME).read_bytes() == before
    assert ckpt.load(tmp_path).step == state.step


_CHILD = textwrap.dedent(
    """
    import sys
    import jax
    from ctrnn_dyn.model import CTRNNCell
    from ctrnn_dyn.tasks import FlipFlop
    from ctrnn_dyn.train import train

    cell = CTRNNCell(**{cell!r})
    task = FlipFlop(**{task!r})
    train(cell, task, key=jax.random.key(3), steps=10**6, batch_size=4,
          checkpoint_dir=sys.argv[1], checkpoint_every=4, sync_every=4, progress=False)
    """
)


def test_resume_after_kill_9_is_bit_identical(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(cell=CELL, task=TASK))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(script), str(run)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        step = 0
        while step < 12:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "child made no progress"
            time.sleep(0.2)
            if (run / ckpt.CHECKPOINT_NAME).exists():
                step = ckpt.load(run).step
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    saved = ckpt.load(run).step  # whatever the kill left: an intact checkpoint
    assert saved >= 12 and saved % 4 == 0
    total = saved + 6
    cell, task = CTRNNCell(**CELL), FlipFlop(**TASK)
    kw = dict(key=jax.random.key(3), steps=total, batch_size=4, checkpoint_every=4,
              sync_every=4, progress=False)
    resumed = train(cell, task, checkpoint_dir=run, resume=True, **kw)
    straight = train(cell, task, **kw)
    _leaves_equal(resumed.params, straight.params)
    _leaves_equal(resumed.opt_state, straight.opt_state)
    np.testing.assert_array_equal(resumed.history.loss, straight.history.loss)
    assert resumed.history.step.tolist() == list(range(1, total + 1))
