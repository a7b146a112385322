"""Reproductions: files, JSON, and each figure's quantitative claims at ``--quick`` size.

Claims are re-derived here from the numbers in the JSON (not from the module's own booleans) and,
where possible, checked against independent ground truth (SciPy roots, analytic Jacobians, a
NumPy Euler loop for the oscillator's period).
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from ctrnn_dyn import reproduce
from ctrnn_dyn.reproduce import _common

# --------------------------------------------------------------------------- helpers


def _run(tmp_path_factory, name, **kwargs):
    out = tmp_path_factory.mktemp(name)
    return reproduce.get(name)(out, quick=True, seed=0, **kwargs)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def _check_files(result, name):
    assert result.png == result.png.parent / f"{name}.png"
    w, h = _png_size(result.png)
    assert w > 600 and h > 400
    payload = json.loads(result.json.read_text())
    assert payload["name"] == name and payload["quick"] is True and payload["seed"] == 0
    assert payload["wall_time_s"] > 0
    for pkg in ("jax", "flax", "optax", "jaxopt", "numpy", "ctrnn_dyn", "python"):
        assert pkg in payload["versions"]
    assert payload["checks"] == result.checks
    assert payload["all_checks_pass"] == all(result.checks.values())
    assert payload["settings"] == result.settings
    return payload


# --------------------------------------------------------------------- registry and CLI


def test_registry_lists_the_five_figures():
    assert list(reproduce.REPRODUCTIONS) == [
        "seed_dynamics", "flipflop", "sine_wave", "context_integration", "attract_or_oscillate"]
    for name in reproduce.REPRODUCTIONS:
        assert callable(reproduce.get(name))


def test_get_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="flipflop"):
        reproduce.get("nope")


@pytest.mark.parametrize(("kwargs", "err"), [
    ({"quick": "yes"}, TypeError), ({"seed": -1}, ValueError), ({"seed": 1.5}, TypeError),
    ({"forward": "scan"}, ValueError)])
def test_run_validates_arguments(tmp_path, kwargs, err):
    with pytest.raises(err):
        _common.check_run_args(tmp_path, kwargs.get("quick", True), kwargs.get("seed", 0),
                               kwargs.get("forward"))
    with pytest.raises(TypeError, match="out_dir"):
        _common.check_run_args(3, True, 0)


def test_cli_parser_and_dispatch(tmp_path, monkeypatch):
    calls = []

    def fake(name):
        def runner(out_dir, *, quick, seed, forward):
            calls.append((name, Path(out_dir), quick, seed, forward))
            return _common.ReproductionResult(name, {}, {"ok": name != "sine_wave"}, {},
                                              Path("x.png"), Path("x.json"), 0.1)
        return runner

    monkeypatch.setattr(reproduce, "get", fake)
    parser = argparse.ArgumentParser()
    subs = parser.add_subparsers(dest="command")
    reproduce.add_reproduce_parser(subs)
    args = parser.parse_args(["reproduce", "flipflop", "--out", str(tmp_path), "--quick",
                              "--seed", "3", "--forward", "fast"])
    assert reproduce.run_reproduce_command(args) == 0
    assert calls == [("flipflop", tmp_path, True, 3, "fast")]
    args = parser.parse_args(["reproduce", "all"])
    assert args.out == Path("figures") and args.quick is False and args.seed == 0
    assert args.forward is None
    calls.clear()
    assert reproduce.run_reproduce_command(args) == 1  # the fake sine_wave check fails
    assert [c[0] for c in calls] == list(reproduce.REPRODUCTIONS)
    with pytest.raises(SystemExit):
        parser.parse_args(["reproduce", "unknown"])
    with pytest.raises(SystemExit):
        parser.parse_args(["reproduce", "flipflop", "--forward", "scan"])
    p2 = argparse.ArgumentParser()
    assert reproduce.configure_reproduce(p2) is reproduce.run_reproduce_command


def test_module_main_parses(monkeypatch, tmp_path):
    from ctrnn_dyn.reproduce import __main__ as entry

    seen = []
    monkeypatch.setattr(entry, "run_reproduce_command", lambda a: seen.append(a) or 0)
    assert entry.main(["seed_dynamics", "--out", str(tmp_path), "--quick"]) == 0
    assert seen[0].name == "seed_dynamics" and seen[0].quick


def test_jsonable_round_trips_numpy_and_complex():
    out = _common.jsonable({"a": np.float32(1.5), "b": np.arange(3), "c": 1 + 2j,
                            "d": (np.bool_(True), float("nan")), "e": Path("p")})
    assert out == {"a": 1.5, "b": [0, 1, 2], "c": [1.0, 2.0], "d": [True, None], "e": "p"}
    json.dumps(out)
    with pytest.raises(TypeError):
        _common.jsonable(object())


# --------------------------- slower reproductions: full claims are `slow`, a smoke test default


def _tiny(module, monkeypatch, **override):
    original = module.settings

    def tiny(quick):
        cfg = dict(original(True))
        cfg.update(override)
        return cfg

    monkeypatch.setattr(module, "settings", tiny)


def test_sine_wave_pipeline_smoke(tmp_path, monkeypatch):
    """Tiny training: only that the pipeline runs and writes consistent numbers."""
    from ctrnn_dyn.reproduce import sine_wave

    _tiny(sine_wave, monkeypatch, hidden=8, steps=5, trial_steps=20, n_levels=3,
          starts_per_level=4)
    import ctrnn_dyn.train as train_module

    fast_flags, train = [], train_module.train
    monkeypatch.setattr(train_module, "train",
                        lambda *a, **kw: fast_flags.append(kw["fast"]) or train(*a, **kw))
    r = sine_wave.run(tmp_path, quick=True)
    _check_files(r, "sine_wave")
    assert r.claims["n_levels"] == 3 and len(r.claims["levels"]) == 3
    assert 0 <= r.claims["n_levels_papers_mechanism"] <= 3
    # the recorded pass by default; another one on request, written into the settings
    r_fast = sine_wave.run(tmp_path / "fast", quick=True, forward="fast")
    assert fast_flags == [False, True]
    assert r.settings["forward"] == "nn.RNN" and r_fast.settings["forward"] == "fast"
    assert _check_files(r_fast, "sine_wave")["settings"]["forward"] == "fast"


def test_rotation_of_picks_the_unstable_complex_pair():
    from ctrnn_dyn.reproduce.sine_wave import rotation_of

    mu = np.array([1.05 * np.exp(0.3j), 1.05 * np.exp(-0.3j), 1.2, 0.5 * np.exp(1j)])
    rot, mod = rotation_of(mu)
    assert rot == pytest.approx(0.3) and mod == pytest.approx(1.05)
    assert np.isnan(rotation_of(np.array([0.9, 0.5 + 0.1j]))[0])


def test_train_network_trains_through_the_recorded_forward_pass(monkeypatch):
    """Every training reproduction records its forward pass, and it reaches ``train``."""
    import ctrnn_dyn.train as train_module
    from ctrnn_dyn.reproduce import attract_or_oscillate, context_integration, flipflop, sine_wave
    from ctrnn_dyn.tasks import FlipFlop

    for module in (flipflop, sine_wave, context_integration, attract_or_oscillate):
        for quick in (True, False):
            assert module.settings(quick)["forward"] in _common.FORWARD_PASSES
    seen = []
    monkeypatch.setattr(train_module, "train", lambda *a, **kw: seen.append(kw["fast"]) or
                        train_module.TrainResult({"params": {}}, None, None))
    monkeypatch.setattr("ctrnn_dyn.dynamics.one_step_map", lambda cell, params: None)
    task = FlipFlop(n_bits=1, n_steps=5)
    kw = dict(hidden=2, alpha=0.5, noise=0.0, steps=40, learning_rate=1e-3, batch_size=1, key=0)
    for forward in _common.FORWARD_PASSES:
        _common.train_network(task, forward=forward, **kw)
    assert seen == [False, True]
    with pytest.raises(ValueError, match="forward must be one of"):
        _common.train_network(task, forward="scan", **kw)


def test_modulo3_fixed_training_set_is_the_seed_authors():
    """15 trials of each rejecting colour triple, 30 of each accepting one: 540 trials, half of
    them labelled +1; FixedTrials draws distinct trials of that set."""
    import jax

    from ctrnn_dyn.reproduce.attract_or_oscillate import training_trials
    from ctrnn_dyn.tasks import FixedTrials, ModuloThree, set_label

    task = ModuloThree()
    data = training_trials(task, {"rejecting": 15, "accepting": 30}, key=jax.random.PRNGKey(0))
    X, y = np.asarray(data.inputs), np.asarray(data.targets)[:, -1, 0]
    assert X.shape == (540, 50, 100) and np.sum(y > 0) == 270 and np.sum(y < 0) == 270
    colours = np.asarray(task.colours)
    for x, label in zip(X, y, strict=True):
        shown = np.flatnonzero(np.abs(x).sum(1) > 0)
        assert len(shown) == 6  # three 2-step stimuli
        seq = [int(np.argmin(np.abs(colours - x[t]).sum(1))) for t in shown[::2]]
        assert label == set_label(*seq)
    fixed = FixedTrials(data, task)
    b = fixed.sample(jax.random.PRNGKey(1), 64)
    rows = {X_row.tobytes() for X_row in X}
    assert len({x.tobytes() for x in np.asarray(b.inputs)}) == 64
    assert all(x.tobytes() in rows for x in np.asarray(b.inputs))
    with pytest.raises(ValueError, match="batch_size"):
        fixed.sample(jax.random.PRNGKey(1), 541)
    # with codes: the same trials, inputs = codes @ colours (the training fast path)
    codes = training_trials(task, {"rejecting": 15, "accepting": 30}, key=jax.random.PRNGKey(0),
                            codes=True)
    coded = FixedTrials(data, task, codes)
    c = coded.sample_codes(jax.random.PRNGKey(1), 64)
    assert fixed.input_basis is None and coded.input_basis.shape == (3, 100)
    np.testing.assert_array_equal(np.asarray(c.inputs) @ colours, np.asarray(b.inputs))
    np.testing.assert_array_equal(np.asarray(c.targets), np.asarray(b.targets))
    with pytest.raises(ValueError, match="sample_codes needs"):
        fixed.sample_codes(jax.random.PRNGKey(1), 4)
    with pytest.raises(ValueError, match=r"codes must hold the same \(N, T\) trials"):
        FixedTrials(data, task, codes._replace(inputs=codes.inputs[:10], targets=codes.targets[:10],
                                               mask=codes.mask[:10]))
    with pytest.raises(ValueError, match="data must be a Batch"):
        FixedTrials(data._replace(mask=data.mask[:5]), task)
