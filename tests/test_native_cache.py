"""The compiled kernels' cache: nothing is loaded from a directory someone else could write,
nothing unverified is loaded, nothing is built inside a trace, and every run says which path
trained it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from ctrnn_dyn import native
from ctrnn_dyn.model import CTRNNCell
from ctrnn_dyn.tasks import FlipFlop
from ctrnn_dyn.train import train

needs_compiler = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "c++")) is None,
                                    reason="no C++ compiler on PATH")

# A stand-in compiler: answers --version, writes its "library" (the text in $FAKE_LIB_TEXT) to
# the -o path (an object, with -c) and counts its builds (links: calls without -c) in
# $FAKE_COUNT; sleeps $FAKE_SLEEP seconds first.
# With $FAKE_LOG set it appends each call's arguments there; a call with the argument
# $FAKE_FAIL fails.
FAKE_CXX = """#!/bin/sh
if [ "$1" = --version ]; then echo fake-c++ 1.0; exit 0; fi
sleep "${FAKE_SLEEP:-0}"
[ -n "$FAKE_LOG" ] && echo "$*" >> "$FAKE_LOG"
out=""
object=""
while [ $# -gt 0 ]; do
  [ "$1" = -o ] && out="$2"; [ "$1" = -c ] && object=1
  [ -n "$FAKE_FAIL" ] && [ "$1" = "$FAKE_FAIL" ] && { echo "fake: $1 refused" >&2; exit 1; }
  shift
done
printf '%s' "${FAKE_LIB_TEXT:-library v1}" > "$out"
[ -z "$object" ] && echo x >> "$FAKE_COUNT"
exit 0
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fake compiler and an empty cache; returns ``(cxx, cache, builds)``."""
    cxx = tmp_path / "fake-c++"
    cxx.write_text(FAKE_CXX)
    cxx.chmod(0o755)
    count = tmp_path / "count"
    count.write_text("")
    monkeypatch.setenv("FAKE_COUNT", str(count))
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path / "cache"))
    # the builds _resolve makes outside an untrusted cache go here, not into the system's /tmp
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def builds() -> int:
        return len(count.read_text().split())

    return str(cxx), tmp_path / "cache", builds


def _key_dir(cache: Path, cxx: str) -> Path:
    return cache / "native" / native._key(cxx)[:16]


def test_the_cache_is_created_private_whatever_the_umask(fake):
    cxx, cache, builds = fake
    old = os.umask(0)
    try:
        lib, key, where = native._resolve(cxx)
    finally:
        os.umask(old)
    assert where == "built" and builds() == 1
    for path in (cache, cache / "native", lib.parent):
        assert path.stat().st_mode & 0o777 == 0o700, path
    for path in (lib, lib.parent / native.MANIFEST):
        assert path.stat().st_mode & 0o077 == 0, path
    record = json.loads((lib.parent / native.MANIFEST).read_text())
    assert record["key"] == key and record["library"] == lib.name
    # a second call verifies and reuses the library
    assert native._resolve(cxx) == (lib, key, "cache") and builds() == 1


@pytest.mark.parametrize("damage", ["corrupt", "truncate", "stale"])
def test_a_damaged_or_swapped_library_is_rebuilt_not_loaded(fake, damage, caplog):
    cxx, cache, builds = fake
    lib, _, _ = native._resolve(cxx)
    good = lib.read_bytes()
    if damage == "corrupt":
        lib.write_bytes(b"X" + good[1:])
    elif damage == "truncate":
        lib.write_bytes(good[: len(good) // 2])
    else:  # a library of another build put in its place (an older commit, another source)
        lib.write_bytes(b"library from an older build")
    with caplog.at_level(logging.WARNING, logger="ctrnn_dyn.native"):
        again, _, where = native._resolve(cxx)
    assert where == "built" and builds() == 2
    assert again.read_bytes() == good
    assert "does not match the hash recorded" in caplog.text


def test_a_manifest_for_another_key_is_not_trusted(fake):
    cxx, cache, builds = fake
    lib, _, _ = native._resolve(cxx)
    manifest = lib.parent / native.MANIFEST
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**record, "key": "0" * 64}))
    assert native._resolve(cxx)[2] == "built" and builds() == 2


def _plant(key_dir: Path, text: bytes) -> Path:
    """A library with a matching manifest, as someone else could leave it in a shared cache."""
    import hashlib

    key_dir.mkdir(parents=True, exist_ok=True)
    lib = key_dir / "libkernels-planted.so"
    lib.write_bytes(text)
    (key_dir / native.MANIFEST).write_text(json.dumps({
        "key": native._key(os.environ["CXX"]), "sha256": hashlib.sha256(text).hexdigest(),
        "library": lib.name}))
    return lib


def test_a_private_cache_with_a_matching_manifest_is_used(fake, monkeypatch):
    """The control for the two tests below: the same planting in a private cache is used."""
    cxx, cache, builds = fake
    monkeypatch.setenv("CXX", cxx)
    key_dir = _key_dir(cache, cxx)
    planted = _plant(key_dir, b"planted")
    for path in (cache, cache / "native", key_dir):
        path.chmod(0o700)
    planted.chmod(0o600)
    assert native._resolve(cxx)[::2] == (planted, "cache") and builds() == 0


@pytest.mark.parametrize("where", ["root", "key_dir", "library"])
def test_nothing_is_taken_from_a_cache_others_can_write(fake, monkeypatch, where, caplog):
    cxx, cache, builds = fake
    monkeypatch.setenv("CXX", cxx)
    key_dir = _key_dir(cache, cxx)
    planted = _plant(key_dir, b"planted")
    for path in (cache, cache / "native", key_dir):
        path.chmod(0o700)
    planted.chmod(0o600)
    target = {"root": cache, "key_dir": key_dir, "library": planted}[where]
    target.chmod(0o775 if target.is_dir() else 0o664)  # group-writable
    with caplog.at_level(logging.WARNING, logger="ctrnn_dyn.native"):
        lib, _, how = native._resolve(cxx)
    assert lib != planted and not lib.is_relative_to(cache)
    assert how.startswith("built in a temporary directory") and builds() == 1
    assert lib.read_bytes() == b"library v1"
    assert "writable by group or others" in caplog.text


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory to another user")
def test_nothing_is_taken_from_a_cache_owned_by_someone_else(fake, monkeypatch, caplog):
    cxx, cache, builds = fake
    monkeypatch.setenv("CXX", cxx)
    planted = _plant(_key_dir(cache, cxx), b"planted")
    for path in (cache, cache / "native", planted.parent):
        path.chmod(0o700)
    planted.chmod(0o600)
    os.chown(cache, 12345, 12345)
    with caplog.at_level(logging.WARNING, logger="ctrnn_dyn.native"):
        lib, _, how = native._resolve(cxx)
    assert lib != planted and how.startswith("built in a temporary directory")
    assert "owned by uid 12345" in caplog.text


def test_each_source_compiles_on_its_own_and_a_failed_link_falls_back(fake, monkeypatch,
                                                                        tmp_path):
    cxx, _, builds = fake
    log = tmp_path / "calls"
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_FAIL", "-lmvec")  # no libmvec: the first attempt's link fails
    native._resolve(cxx)
    calls = [line.split() for line in log.read_text().splitlines()]
    compiles = [c for c in calls if "-c" in c]
    links = [c for c in calls if "-c" not in c]
    n = len(native.SOURCES)
    assert len(compiles) == 2 * n and len(links) == 2 and builds() == 1
    for attempt, macro in ((compiles[:n], True), (compiles[n:], False)):
        assert sorted(c[c.index("-c") + 1] for c in attempt) == sorted(map(str, native.SOURCES))
        assert all(("-DCTRNN_DYN_LIBMVEC" in c) == macro and "-lmvec" not in c for c in attempt)
    assert "-lmvec" in links[0] and "-shared" in links[0]
    assert "-lmvec" not in links[1] and "-march=native" in compiles[-1]
    objects = {c[c.index("-o") + 1] for c in compiles[n:]}  # the link takes its attempt's
    assert objects <= set(links[1]) and len(objects) == n


def test_a_compiler_that_fails_every_attempt_says_why(fake, monkeypatch):
    cxx, _, builds = fake
    monkeypatch.setenv("FAKE_FAIL", "-c")
    with pytest.raises(RuntimeError, match="fake: -c refused"):
        native._resolve(cxx)
    assert builds() == 0


def test_a_hanging_compiler_times_out(fake, monkeypatch):
    cxx, _, builds = fake
    monkeypatch.setenv("FAKE_SLEEP", "30")
    monkeypatch.setenv(native.BUILD_TIMEOUT_ENV, "1")
    with pytest.raises(RuntimeError, match="ran longer than 1 s"):
        native._resolve(cxx)
    assert builds() == 0


def _fresh_python(code: str, env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=300, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return out.stdout


TRAIN_TINY = """
import jax
from ctrnn_dyn import native
from ctrnn_dyn.model import CTRNNCell
from ctrnn_dyn.tasks import FlipFlop
from ctrnn_dyn.train import train
cell = CTRNNCell(hidden_features=8, output_features=2, alpha=0.2, noise_const=0.1)
res = train(cell, FlipFlop(n_bits=2, n_steps=6), key=jax.random.key(0), steps=2, batch_size=4,
            progress=False)
print("PATH", res.forward_path)
print("STATUS", native.status())
"""

# A stand-in compiler for the end-to-end runs of the cache's decisions: a compile (-c) writes an
# empty object, a link copies the real kernels ($REAL_LIB, this process's verified build) to its
# -o path. The library it "builds" is a real one in a few milliseconds, where each real build
# takes 20 s on 2 cores (the session's own build, tests/conftest.py's native_kernels, is the
# real one: on a fresh machine, or after any kernel source changes, its key is new).
COPYING_CXX = """#!/bin/sh
if [ "$1" = --version ]; then echo copying-c++ 1.0; exit 0; fi
out=""
object=""
while [ $# -gt 0 ]; do
  [ "$1" = -o ] && out="$2"; [ "$1" = -c ] && object=1
  shift
done
if [ -n "$object" ]; then : > "$out"; else cp "$REAL_LIB" "$out"; fi
"""


@pytest.fixture
def copying_cxx(tmp_path, monkeypatch, native_kernels) -> dict[str, str]:
    """The environment of a fresh process whose compiler is :data:`COPYING_CXX`."""
    cxx = tmp_path / "copying-c++"
    cxx.write_text(COPYING_CXX)
    cxx.chmod(0o755)
    # verified, from the cache (where the cache is not private, a build of this process's own:
    # into tmp_path, not the system's /tmp)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    real, _, _ = native._resolve(native._compiler())
    return {"CXX": str(cxx), "REAL_LIB": str(real)}


PLANT_REAL = r"""
import hashlib, json, os, subprocess, pathlib
from ctrnn_dyn import native
cxx = native._compiler()
key = native._key(cxx)
key_dir = native.cache_root() / "native" / key[:16]
key_dir.mkdir(parents=True)
src = key_dir / "planted.c"
src.write_text('#include <stdio.h>\n#include <stdlib.h>\n'
               '__attribute__((constructor)) static void run(void) {'
               ' FILE *f = fopen(getenv("MARKER"), "w"); if (f) fclose(f); }\n')
lib = key_dir / "libkernels-planted.so"
subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
(key_dir / "manifest.json").write_text(json.dumps({
    "key": key, "sha256": hashlib.sha256(lib.read_bytes()).hexdigest(), "library": lib.name}))
for p in (native.cache_root(), key_dir.parent, key_dir):
    os.chmod(p, 0o777)  # as a shared cache directory created under umask 000
"""


def test_a_planted_library_never_runs_and_training_goes_on(tmp_path, copying_cxx):
    """A real library with a constructor, at the predictable path of a world-writable cache,
    with a manifest that matches it: its constructor never runs, and training still gets
    freshly built kernels (built in a private temporary directory, by :data:`COPYING_CXX`)."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {native.CACHE_ENV: str(tmp_path / "cache"), "MARKER": str(tmp_path / "marker"),
           "TMPDIR": str(scratch), **copying_cxx}
    _fresh_python(PLANT_REAL, env)
    out = _fresh_python(TRAIN_TINY, env)
    assert not (tmp_path / "marker").exists()
    assert "PATH fast_path/kernels:" in out
    assert "built in a temporary directory, removed once loaded (cache not private)" in out
    # the process's private build folder is gone once the library is loaded: runs on a shared
    # cache do not fill /tmp
    assert not list(scratch.glob("ctrnn_dyn-kernels-*"))


def test_a_truncated_library_in_the_cache_is_rebuilt_and_training_goes_on(tmp_path,
                                                                          copying_cxx):
    env = {native.CACHE_ENV: str(tmp_path / "cache"), **copying_cxx}
    first = _fresh_python(TRAIN_TINY, env)
    assert "(built)" in first
    (lib,) = (tmp_path / "cache").glob("native/*/libkernels-*.so")
    lib.write_bytes(lib.read_bytes()[:4096])  # as a full disk or a killed copy leaves it
    again = _fresh_python(TRAIN_TINY, env)
    assert "PATH fast_path/kernels:" in again and "(built)" in again


NO_BUILD_IN_TRACE = """
import jax
from ctrnn_dyn import native
from ctrnn_dyn.model import CTRNNCell
from ctrnn_dyn.tasks import FlipFlop
from ctrnn_dyn.train import init_params, loss_fn
cell = CTRNNCell(hidden_features=8, output_features=2, alpha=0.2, noise_const=0.1)
task = FlipFlop(n_bits=2, n_steps=5)
params = init_params(cell, task, key=jax.random.key(0))
batch = task.sample(jax.random.key(1), 3)
grad = jax.jit(jax.grad(lambda p: loss_fn(p, cell, batch, key=jax.random.key(2))[0]))
hlo = grad.lower(params).as_text()
print(native.FORWARD_TARGET in hlo, native.status())
"""


def test_tracing_never_builds_the_kernels(tmp_path):
    out = _fresh_python(NO_BUILD_IN_TRACE, {native.CACHE_ENV: str(tmp_path / "cache")})
    assert out.split() == ["False", "not", "prepared"]
    assert not (tmp_path / "cache").exists()


@needs_compiler
def test_resuming_on_the_other_path_says_so(tmp_path, caplog):
    """A checkpoint records the path that trained it; resuming through the XLA loops (as on a
    machine without a compiler) warns before it continues."""
    assert native.prepare(), native.status()
    cell = CTRNNCell(hidden_features=8, output_features=2, alpha=0.2, noise_const=0.1)
    task = FlipFlop(n_bits=2, n_steps=6)
    kw = dict(key=jax.random.key(0), batch_size=4, checkpoint_dir=tmp_path, progress=False)
    first = train(cell, task, steps=2, **kw)
    assert first.forward_path == f"fast_path/kernels:{native.kernel_key()}"
    with native.suspended(), caplog.at_level(logging.WARNING, logger="ctrnn_dyn.train"):
        resumed = train(cell, task, steps=4, resume=True, **kw)
    assert resumed.forward_path == "fast_path/xla-loops" and resumed.step == 4
    assert (f"was trained through fast_path/kernels:{native.kernel_key()}; it continues through "
            "fast_path/xla-loops") in caplog.text
    assert np.isfinite(resumed.history.loss).all()
