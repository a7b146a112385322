"""The ``ctrnn-dyn`` command's persistent compilation cache: a second process compiles nothing
the first compiled, and the cache is used only from a private directory."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from ctrnn_dyn import compile_cache

# A subcommand registered in a fresh process, run through ``cli.main`` (which turns the cache
# on): it finds the switch's fixed points and prints how many programs were compiled and how
# many of those compile requests the persistent cache answered.
PROBE = textwrap.dedent(
    """
    import json
    import jax
    import numpy as np
    from ctrnn_dyn import cli

    counts = {"requests": 0, "hits": 0}

    def on_event(event, **kwargs):
        if event == "/jax/compilation_cache/compile_requests_use_cache":
            counts["requests"] += 1
        elif event == "/jax/compilation_cache/cache_hits":
            counts["hits"] += 1

    jax.monitoring.register_event_listener(on_event)

    @cli.subcommand("probe", help="find the switch's fixed points")
    def _probe(parser):
        def run(args):
            from ctrnn_dyn.fixed_points import find_fixed_points
            from ctrnn_dyn.systems import SWITCH

            fps = find_fixed_points(SWITCH.map(), np.linspace(-0.5, 1.5, 21)[:, None])
            counts["fixed"] = len(fps.fixed)
            counts["dir"] = jax.config.jax_compilation_cache_dir
            print(json.dumps(counts))
            return 0
        return run

    raise SystemExit(cli.main(["probe"]))
    """
)


def _probe(cache_root, **env) -> dict:
    # the compiled kernels off: under this fresh cache root each probe would build them first
    # (20 s on 2 cores), and it is XLA's programs whose caching is under test
    environ = {**os.environ, "CTRNN_DYN_CACHE": str(cache_root),
               "CTRNN_DYN_COMPILE_CACHE": "1", "CTRNN_DYN_NATIVE": "0", **env}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         env=environ, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_compiles_nothing(tmp_path):
    first = _probe(tmp_path)
    second = _probe(tmp_path)
    assert first["fixed"] == second["fixed"] == 3
    assert first["dir"] == second["dir"] == str(tmp_path / "xla")
    assert first["requests"] > 0 and first["hits"] == 0
    assert second["requests"] == first["requests"]
    assert second["hits"] == second["requests"]  # every program came from the cache
    assert os.stat(tmp_path / "xla").st_mode & 0o777 == 0o700


def test_switched_off_leaves_jax_alone(tmp_path):
    off = _probe(tmp_path, CTRNN_DYN_COMPILE_CACHE="0")
    assert off["dir"] is None and off["hits"] == 0
    assert not (tmp_path / "xla").exists()


def test_group_writable_cache_is_not_used(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CTRNN_DYN_CACHE", str(tmp_path))
    monkeypatch.setenv(compile_cache.ENV_SWITCH, "1")
    (tmp_path / "xla").mkdir(mode=0o700)
    os.chmod(tmp_path / "xla", 0o770)
    with caplog.at_level(logging.WARNING):
        assert compile_cache.enable() is None
    assert "writable by group or others" in caplog.text


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_entry_owned_by_someone_else_is_not_used(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CTRNN_DYN_CACHE", str(tmp_path))
    monkeypatch.setenv(compile_cache.ENV_SWITCH, "1")
    planted = tmp_path / "xla" / "jit_f-0123-cache"
    planted.parent.mkdir(mode=0o700)
    planted.write_bytes(b"\0" * 64)
    os.chown(planted, 12345, 12345)
    with caplog.at_level(logging.WARNING):
        assert compile_cache.enable() is None
    assert "owned by uid 12345" in caplog.text


def test_entries_written_under_a_permissive_umask_are_made_private(tmp_path, monkeypatch):
    # the check runs before JAX is configured; calling it directly leaves JAX untouched
    directory = tmp_path / "xla"
    directory.mkdir(mode=0o700)
    entry = directory / "jit_f-0123-cache"
    entry.write_bytes(b"x")
    os.chmod(entry, 0o666)
    compile_cache._check_entries(directory)
    assert os.stat(entry).st_mode & 0o777 == 0o644
