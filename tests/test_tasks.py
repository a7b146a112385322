"""Task generators vs independent NumPy references of SCIENCE.md §3."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

from ctrnn_dyn.tasks import (
    TASKS,
    Batch,
    ContextIntegration,
    FlipFlop,
    ModuloThree,
    PerceptualDecision,
    SineWave,
    get_task,
    set_label,
    task_config,
    task_from_config,
)


@pytest.fixture
def key():
    return jax.random.key(0)


def _np(batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.asarray(a) for a in batch)


# -- shared contract ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TASKS))
def test_shapes_jit_and_determinism(name, key):
    task = get_task(name)
    sample = jax.jit(task.sample, static_argnums=1)
    u, y, m = _np(sample(key, 5))
    assert u.shape == (5, task.n_steps, task.input_size)
    assert y.shape == m.shape == (5, task.n_steps, task.output_size)
    assert u.dtype == y.dtype == np.float32
    np.testing.assert_allclose(u, np.asarray(task.sample(key, 5).inputs), atol=1e-6)  # jit=eager
    assert not np.array_equal(u, np.asarray(task.sample(jax.random.key(1), 5).inputs))
    assert set(np.unique(m)) <= {0.0, 1.0} and m.sum() > 0
    # the target itself scores perfectly; its negation scores zero
    b = task.sample(key, 5)
    assert float(task.accuracy(b.targets, b)) == pytest.approx(1.0)
    if name != "sine_wave":
        assert float(task.accuracy(-b.targets, b)) == pytest.approx(0.0)
    assert task_from_config(task_config(task)) == task


@pytest.mark.parametrize("bad", [0, -3])
def test_bad_batch_size(bad, key):
    with pytest.raises(ValueError, match="batch_size"):
        FlipFlop().sample(key, bad)
    with pytest.raises(TypeError, match="batch_size"):
        FlipFlop().sample(key, 2.5)


def test_unknown_task_name():
    with pytest.raises(ValueError, match="unknown task name 'nope'.*flipflop"):
        get_task("nope")


@pytest.mark.parametrize("cls", [PerceptualDecision, ContextIntegration])
def test_bad_evidence_parameters_name_the_field(cls):
    with pytest.raises(ValueError, match="coherences"):
        cls(coherences=())
    with pytest.raises(ValueError, match="noise_std must be >= 0"):
        cls(noise_std=-0.1)
    with pytest.raises(ValueError, match="noise_std"):
        cls(noise_std=float("nan"))


def test_accuracy_shape_check(key):
    b = FlipFlop().sample(key, 2)
    with pytest.raises(ValueError, match="outputs"):
        FlipFlop().accuracy(b.targets[:, :, :2], b)


# -- sine wave ---------------------------------------------------------------------------------


def test_sine_wave_matches_seed_formula(key):
    task = SineWave()
    omegas = np.arange(0.1, 0.5, 0.001)  # the seed's frequencies
    assert len(task.frequencies) == 400
    np.testing.assert_allclose(task.frequencies, omegas, rtol=0, atol=1e-6)
    u, y, m = _np(task.full_batch())
    t = np.arange(50)
    for i, w in enumerate(task.frequencies.astype(np.float64)):  # the float32 ω, exactly
        np.testing.assert_allclose(u[i, :, 0], 0.25 + (100 * w - 9) / 51, rtol=1e-6)
        # float32 phase ω t <= 25 rad: one ulp there is 2e-6
        np.testing.assert_allclose(y[i, :, 0], np.sin(w * t), atol=3e-6)
    assert m.min() == 1.0
    # random samples: the input level identifies a frequency of the set; target is its sine
    u, y, _ = _np(task.sample(key, 64))
    w = (51 * (u[:, 0, 0] - 0.25) + 9) / 100
    assert np.all(np.min(np.abs(w[:, None] - omegas[None, :]), axis=1) < 1e-4)
    np.testing.assert_allclose(y[..., 0], np.sin(w[:, None] * t[None, :]), atol=1e-4)
    assert np.all(np.ptp(u, axis=1) == 0)  # static input


def test_sine_accuracy_is_seed_score(key):
    task = SineWave()
    b = task.sample(key, 16)
    out = np.asarray(b.targets) * 0.5
    y = np.asarray(b.targets)
    expected = np.clip(1 - np.mean((out - y) ** 2) / np.var(y), 0, 1)
    assert float(task.accuracy(out, b)) == pytest.approx(expected, rel=1e-5)


# -- flip-flop ---------------------------------------------------------------------------------


def _flipflop_reference(u: np.ndarray, settle: int) -> tuple[np.ndarray, np.ndarray]:
    B, T, N = u.shape
    y = np.zeros_like(u)
    m = np.zeros_like(u)
    for b in range(B):
        for i in range(N):
            last, since = 0.0, None
            for t in range(T):
                if u[b, t, i] != 0:
                    last, since = u[b, t, i], 0
                elif since is not None:
                    since += 1
                y[b, t, i] = last
                m[b, t, i] = 1.0 if since is not None and since >= settle else 0.0
    return y, m


@pytest.mark.parametrize("settle", [0, 3])
def test_flipflop_targets_match_numpy_loop(settle, key):
    task = FlipFlop(n_bits=3, n_steps=40, p_pulse=0.1, settle_steps=settle)
    u, y, m = _np(task.sample(key, 16))
    y_ref, m_ref = _flipflop_reference(u, settle)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(m, m_ref)


def test_flipflop_pulse_statistics(key):
    p = 0.07
    u, _, _ = _np(FlipFlop(n_bits=4, n_steps=200, p_pulse=p).sample(key, 256))
    assert set(np.unique(u)) == {-1.0, 0.0, 1.0}
    n = u.size
    rate = np.mean(u != 0)
    assert abs(rate - p) < 5 * np.sqrt(p * (1 - p) / n)
    k = np.sum(u != 0)
    assert abs(np.mean(u[u != 0] > 0) - 0.5) < 5 * np.sqrt(0.25 / k)


def test_flipflop_accuracy_vs_numpy(key):
    task = FlipFlop(n_steps=30, p_pulse=0.2)
    b = task.sample(key, 8)
    out = np.asarray(jax.random.normal(jax.random.key(5), b.targets.shape))
    y, m = np.asarray(b.targets), np.asarray(b.mask)
    expected = np.sum((np.sign(out) == y) * m) / m.sum()
    assert float(task.accuracy(out, b)) == pytest.approx(expected, rel=1e-6)


# -- evidence integration ----------------------------------------------------------------------


def test_perceptual_decision_vs_numpy(key):
    task = PerceptualDecision(n_steps=30, stim_start=4, stim_steps=20, response_steps=5,
                              coherences=(0.1, 0.3), noise_std=0.7)
    u, y, m = _np(task.sample(key, 512))
    t = np.arange(30)
    stim = (t >= 4) & (t < 24)
    assert np.all(u[:, ~stim] == 0)
    label = np.where(u[:, :, 0].sum(axis=1) >= 0, 1.0, -1.0)
    resp = t >= 25
    np.testing.assert_array_equal(m[:, :, 0], np.broadcast_to(resp, (512, 30)).astype(float))
    np.testing.assert_array_equal(y[:, resp, 0], np.broadcast_to(label[:, None], (512, 5)))
    assert np.all(y[:, ~resp] == 0)
    # noise around the trial's coherence: residual std ≈ noise_std (20 samples per trial)
    x = u[:, stim, 0]
    resid = x - x.mean(axis=1, keepdims=True)
    std = np.sqrt(np.sum(resid**2) / (x.shape[0] * (x.shape[1] - 1)))
    assert std == pytest.approx(0.7, rel=0.03)
    # without noise the input is exactly ±c with c from the coherences, both signs present
    u0, y0, _ = _np(PerceptualDecision(noise_std=0.0, coherences=(0.1, 0.3)).sample(key, 256))
    c = u0[:, 10, 0]
    np.testing.assert_allclose(np.unique(np.round(np.abs(c), 6)), [0.1, 0.3], rtol=1e-6)
    assert (c > 0).any() and (c < 0).any()
    np.testing.assert_array_equal(y0[:, -1, 0], np.sign(c))


def test_context_integration_vs_numpy(key):
    task = ContextIntegration(n_steps=30, stim_start=2, stim_steps=20, response_steps=5,
                              noise_std=0.5)
    u, y, m = _np(task.sample(key, 512))
    assert u.shape[-1] == 4
    cue = u[:, :, 2:]
    assert np.all(cue.sum(axis=-1) == 1) and np.all(np.ptp(cue, axis=1) == 0)
    ctx = cue[:, 0].argmax(axis=-1)
    assert 0.4 < ctx.mean() < 0.6
    integrated = u[:, :, :2].sum(axis=1)
    label = np.where(integrated[np.arange(512), ctx] >= 0, 1.0, -1.0)
    np.testing.assert_array_equal(y[:, -1, 0], label)
    assert np.all(m[:, -5:] == 1) and np.all(m[:, :-5] == 0)
    # the irrelevant channel's sign disagrees with the label on about half of the trials
    other = np.where(integrated[np.arange(512), 1 - ctx] >= 0, 1.0, -1.0)
    assert 0.3 < np.mean(other != label) < 0.7


# -- modulo-3 "SET" task -----------------------------------------------------------------------


def test_set_label_rule_all_27_combinations():
    for a, b, c in itertools.product(range(3), repeat=3):
        all_equal_or_all_different = len({a, b, c}) in (1, 3)
        assert set_label(a, b, c) == (1 if all_equal_or_all_different else -1)
    task = ModuloThree()
    combos = np.array(list(itertools.product(range(3), repeat=3)))
    onsets = np.tile([3, 10, 20], (27, 1))
    _, y, _ = _np(task.batch_for(combos, onsets))
    expected = [1.0 if len(set(c)) in (1, 3) else -1.0 for c in combos.tolist()]
    np.testing.assert_array_equal(y[:, -1, 0], expected)
    assert sum(e > 0 for e in expected) == 9


def test_modulo3_trials_vs_numpy(key):
    task = ModuloThree()
    u, y, m = _np(task.sample(key, 200))
    colours = task.colours
    assert colours.shape == (3, 100)
    shown_steps = np.abs(u).sum(axis=-1) > 0
    onset_all = []
    for b in range(200):
        ts = np.flatnonzero(shown_steps[b])
        assert len(ts) == 6  # three stimuli, two steps each
        onsets = ts[::2]
        np.testing.assert_array_equal(ts[1::2], onsets + 1)
        assert np.all(onsets >= 3) and np.all(onsets < 40) and np.all(np.diff(onsets) >= 5)
        seen = [int(np.argmin(np.abs(colours - u[b, t]).sum(axis=1))) for t in onsets]
        for t, k in zip(onsets, seen, strict=True):
            np.testing.assert_allclose(u[b, t], colours[k], atol=1e-6)
        label = 1.0 if len(set(seen)) in (1, 3) else -1.0
        np.testing.assert_array_equal(y[b, -5:, 0], label)
        assert np.all(y[b, :-5] == 0)
        onset_all.append(onsets)
    assert np.all(m[:, -5:] == 1) and np.all(m[:, :-5] == 0)
    onset_all = np.array(onset_all)
    assert onset_all[:, 0].min() == 3 and onset_all[:, 2].max() == 39
    assert 0.2 < np.mean(y[:, -1, 0] > 0) < 0.47  # 9 of 27 combinations are +1


def test_modulo3_codes_are_the_same_trials(key):
    """``sample_codes`` = ``sample`` with one-hot colour codes; codes @ basis = inputs exactly."""
    task = ModuloThree(stimulus_dim=7)
    u, y, m = _np(task.sample(key, 64))
    c, y_c, m_c = _np(task.sample_codes(key, 64))
    assert c.shape == (64, 50, 3)
    np.testing.assert_array_equal(task.input_basis, task.colours)
    assert set(np.unique(c)) <= {0.0, 1.0} and np.all(c.sum(axis=-1) <= 1)
    expected = np.zeros_like(u)  # NumPy: the colour vector of the code that is on, else 0
    for b, t in zip(*np.nonzero(c.sum(axis=-1)), strict=True):
        expected[b, t] = task.colours[int(np.argmax(c[b, t]))]
    np.testing.assert_array_equal(u, expected)
    np.testing.assert_array_equal(y_c, y)
    np.testing.assert_array_equal(m_c, m)
    np.testing.assert_array_equal(np.asarray(task.decode_codes(task.sample_codes(key, 64)).inputs),
                                  expected)


def test_modulo3_train_test_split(key):
    test_combos = ((0, 0, 0), (0, 1, 2), (1, 1, 0))
    train, test = ModuloThree().split(test_combos)
    assert len(train.combinations) == 24 and set(test.combinations) == set(test_combos)
    colours = train.colours
    u, _, _ = _np(train.sample(key, 100))
    for b in range(100):
        rows = u[b][np.abs(u[b]).sum(-1) > 0][::2]
        combo = tuple(int(np.argmin(np.abs(colours - r).sum(axis=1))) for r in rows)
        assert combo not in test_combos
    with pytest.raises(ValueError, match="combinations"):
        ModuloThree(combinations=((0, 1, 5),))
