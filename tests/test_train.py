"""Training: the fast CT-RNN path vs nn.RNN and a NumPy loop, the step, the loop, the NaN guard."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

from ctrnn_dyn.model import CTRNNCell, step_noise
from ctrnn_dyn.tasks import Batch, FlipFlop, ModuloThree, PerceptualDecision
from ctrnn_dyn.train import (
    History,
    default_optimizer,
    fast_forward,
    init_params,
    init_state,
    loss_fn,
    make_train_step,
    train,
    uses_input_basis,
)

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@pytest.fixture
def key():
    return jax.random.key(0)


def _small_task(T: int = 12) -> FlipFlop:
    return FlipFlop(n_bits=3, n_steps=T, p_pulse=0.2)


def _max_rel(a, b) -> float:
    return float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))


def _numpy_forward(cell: CTRNNCell, params, u: np.ndarray, xi: np.ndarray | None):
    """Independent float64 NumPy loop of SCIENCE.md §1 (time-major noise ``xi`` (T,B,n))."""
    tree = params["params"]["cell"]
    K = np.asarray(cell.recurrent_weights({"params": tree}), np.float64)
    K_in = np.asarray(tree["input_kernel"]["kernel"], np.float64)
    b = np.asarray(tree["recurrent_kernel"]["bias"], np.float64)
    K_out = np.asarray(tree["output_kernel"]["kernel"], np.float64)
    b_out = np.asarray(tree["output_kernel"]["bias"], np.float64)
    a = np.asarray(cell.alpha, np.float64)
    s = float(cell.noise_const)
    B, T, _ = u.shape
    x = np.ones((B, K.shape[0]))
    ys, rs = [], []
    f = np.tanh
    for t in range(T):
        noise = 0.0 if xi is None else xi[t]
        drive = f(x) @ K + b + u[:, t] @ K_in
        if cell.noise_mode == "seed":
            x = (1 - a) * x + a * (drive + s * noise)
        else:
            x = (1 - a) * x + a * drive + np.sqrt(2 * a) * s * noise
        r = f(x)
        rs.append(r)
        ys.append(r @ K_out + b_out)
    return np.stack(ys, 1), np.stack(rs, 1)


# -- the fast path is the same model ------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        dict(alpha=0.2),
        dict(alpha=np.linspace(0.05, 1.0, 8).astype(np.float32)),
        dict(alpha=0.3, excitatory_fraction=0.75),
        dict(alpha=0.5, activation_fn=nn.relu),
    ],
    ids=["scalar_alpha", "per_neuron_alpha", "dale", "relu"],
)
def test_fast_loss_and_grad_equal_nn_rnn(kw, key):
    cell = CTRNNCell(hidden_features=8, output_features=3, noise_const=0.0, **kw)
    task = _small_task()
    params = init_params(cell, task, key=key)
    batch = task.sample(jax.random.key(1), 5)

    def value_grad(fast):
        return jax.value_and_grad(
            lambda p: loss_fn(p, cell, batch, key=None, rate_l2=0.1, weight_l2=0.01,
                              fast=fast)[0]
        )(params)

    (l_fast, g_fast), (l_ref, g_ref) = value_grad(True), value_grad(False)
    assert float(l_fast) == pytest.approx(float(l_ref), rel=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(g_fast), jax.tree_util.tree_leaves(g_ref),
                    strict=True):
        assert _max_rel(a, b) < 1e-5


@pytest.mark.parametrize("fast", [False, True])
def test_input_basis_loss_and_grad_equal_full_inputs(fast, key):
    """Codes through ``basis @ K_in`` give the loss and gradient of the full inputs."""
    task = ModuloThree(stimulus_dim=20, n_steps=30, last_onset=20)
    cell = CTRNNCell(hidden_features=12, output_features=1, alpha=0.3, noise_const=0.0)
    assert uses_input_basis(cell, task) and not uses_input_basis(cell, _small_task())
    params = init_params(cell, task, key=key)
    full, coded = task.sample(jax.random.key(1), 16), task.sample_codes(jax.random.key(1), 16)

    def value_grad(batch, basis):
        return jax.value_and_grad(
            lambda p: loss_fn(p, cell, batch, key=None, rate_l2=0.1, weight_l2=0.01, fast=fast,
                              input_basis=basis)[0]
        )(params)

    (l_c, g_c), (l_f, g_f) = value_grad(coded, task.input_basis), value_grad(full, None)
    assert float(l_c) == pytest.approx(float(l_f), rel=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(g_c), jax.tree_util.tree_leaves(g_f), strict=True):
        assert a.shape == b.shape and _max_rel(a, b) < 1e-5
    with pytest.raises(ValueError, match=r"input_basis must have shape \(k, 20\)"):
        loss_fn(params, cell, coded, key=None, input_basis=np.ones((3, 19)))


@pytest.mark.parametrize("mode", ["seed", "euler_maruyama"])
def test_fast_forward_with_noise_matches_numpy_loop(mode, key):
    cell = CTRNNCell(hidden_features=6, output_features=2, alpha=0.3, noise_const=0.4,
                     noise_mode=mode)
    u = np.asarray(jax.random.normal(jax.random.key(1), (4, 9, 3)))
    params = rnn_init(cell, u, key)
    xi = np.asarray(jax.random.normal(jax.random.key(2), (9, 4, 6)))
    y, r = fast_forward(cell, params, jnp.asarray(u), noise=jnp.asarray(xi))
    y_ref, r_ref = _numpy_forward(cell, params, u, xi)
    np.testing.assert_allclose(np.asarray(y), y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(r), r_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["seed", "euler_maruyama"])
def test_fast_path_given_nn_rnns_noise_equals_nn_rnn(mode, key):
    """Given the noise nn.RNN draws with a key (step_noise), the fast path's loss and gradient
    equal nn.RNN's with noise on. (loss_fn's fast path draws its own stream: tests/test_noise.py.)
    """
    cell = CTRNNCell(hidden_features=12, output_features=3, alpha=0.3, noise_const=0.5,
                     noise_mode=mode)
    task = _small_task(T=15)
    params = init_params(cell, task, key=key)
    batch = task.sample(jax.random.key(1), 8)

    def fast_loss(p, xi):
        y, _ = fast_forward(cell, p, batch.inputs, noise=xi)
        return jnp.sum(batch.mask * (y - batch.targets) ** 2) / jnp.sum(batch.mask)

    l_ref, g_ref = jax.value_and_grad(
        lambda p: loss_fn(p, cell, batch, key=key, fast=False)[0])(params)
    l_fast, g_fast = jax.value_and_grad(fast_loss)(params, step_noise(key, 15, (8, 12)))
    assert float(l_fast) == pytest.approx(float(l_ref), rel=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(g_fast), jax.tree_util.tree_leaves(g_ref),
                    strict=True):
        assert _max_rel(a, b) < 1e-5
    l_other = fast_loss(params, step_noise(jax.random.key(5), 15, (8, 12)))
    assert abs(float(l_other) - float(l_ref)) > 1e-4 * float(l_ref)  # the noise matters


def rnn_init(cell, u, key):
    from ctrnn_dyn.model import rnn

    return rnn(cell).init({"params": key, "noise_stream": key}, jnp.asarray(u))


def test_fast_grad_matches_finite_differences(key):
    with jax.enable_x64(True):
        cell = CTRNNCell(hidden_features=5, output_features=2, alpha=0.4, noise_const=0.0,
                         param_dtype=jnp.float64)
        u = jax.random.normal(jax.random.key(1), (3, 7, 2), jnp.float64)
        params = rnn_init(cell, u, key)
        y_star = jax.random.normal(jax.random.key(2), (3, 7, 2), jnp.float64)
        batch = Batch(u, y_star, jnp.ones_like(y_star))
        f = lambda p: loss_fn(p, cell, batch, key=None, fast=True)[0]  # noqa: E731
        g = jax.grad(f)(params)
        direction = jax.tree_util.tree_map(
            lambda a: jax.random.normal(jax.random.key(3), a.shape, a.dtype), params
        )
        eps = 1e-6
        plus = jax.tree_util.tree_map(lambda a, d: a + eps * d, params, direction)
        minus = jax.tree_util.tree_map(lambda a, d: a - eps * d, params, direction)
        fd = (f(plus) - f(minus)) / (2 * eps)
        an = sum(jnp.sum(a * d) for a, d in zip(jax.tree_util.tree_leaves(g),
                                                jax.tree_util.tree_leaves(direction),
                                                strict=True))
        assert float(an) == pytest.approx(float(fd), rel=1e-6)


def test_masked_mse_vs_numpy(key):
    cell = CTRNNCell(hidden_features=4, output_features=3, alpha=0.5, noise_const=0.0)
    task = _small_task()
    params = init_params(cell, task, key=key)
    batch = task.sample(jax.random.key(4), 6)
    loss, aux = loss_fn(params, cell, batch, key=None)
    y, _ = _numpy_forward(cell, params, np.asarray(batch.inputs), None)
    m, t = np.asarray(batch.mask), np.asarray(batch.targets)
    expected = np.sum(m * (y - t) ** 2) / m.sum()
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(aux.mse) == pytest.approx(expected, rel=1e-5)


# -- the step ----------------------------------------------------------------------------------


def test_step_is_vmappable_and_never_recompiles(key):
    cell = CTRNNCell(hidden_features=8, output_features=3, alpha=0.5, noise_const=0.1)
    task = _small_task()
    opt = default_optimizer(1e-2)
    step = make_train_step(cell, task, opt, batch_size=4)
    keys = jax.random.split(key, 2)
    states = [init_state(cell, task, opt, key=k) for k in keys]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states)
    vstep = jax.jit(jax.vmap(step))
    jstep = jax.jit(step)
    data_keys = jax.random.split(jax.random.key(9), 2)
    for _ in range(2):
        stacked, vm = vstep(stacked, data_keys)
        for i in range(2):
            states[i], m = jstep(states[i], data_keys[i])
            assert float(m.loss) == pytest.approx(float(vm.loss[i]), rel=1e-5)
    for i in range(2):
        for a, b in zip(jax.tree_util.tree_leaves(states[i].params),
                        jax.tree_util.tree_leaves(stacked.params), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b[i]), rtol=1e-5, atol=1e-6)
    assert jstep._cache_size() == 1 and vstep._cache_size() == 1


def _count_compiles(fn) -> int:
    count = 0

    def listener(event: str, duration: float, **kwargs) -> None:
        nonlocal count
        if event == BACKEND_COMPILE_EVENT:
            count += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        fn()
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    return count


def test_same_key_same_run_and_history_and_no_recompiles(key):
    cell = CTRNNCell(hidden_features=8, output_features=3, alpha=0.5, noise_const=0.2)
    task = _small_task()
    kw = dict(batch_size=4, eval_every=5, progress=False, sync_every=4)
    a = train(cell, task, key=key, steps=12, **kw)
    runs = {}
    # the second and third runs compile the same number of programs although they take 12 and
    # 5 steps: the jitted step compiles once, not per step
    n_b = _count_compiles(lambda: runs.setdefault("b", train(cell, task, key=key, steps=12, **kw)))
    n_c = _count_compiles(
        lambda: runs.setdefault("c", train(cell, task, key=jax.random.key(1), steps=5, **kw))
    )
    assert n_b == n_c
    b, c = runs["b"], runs["c"]
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for f in History._fields:
        np.testing.assert_array_equal(getattr(a.history, f), getattr(b.history, f))
    assert not np.array_equal(a.history.loss[:5], c.history.loss)
    assert a.history.step.tolist() == list(range(1, 13))
    assert a.history.eval_step.tolist() == [5, 10, 12]
    df = a.history.to_dataframe()
    assert list(df.columns) == ["step", "loss", "mse", "grad_norm", "accuracy", "eval_loss",
                                "eval_accuracy"]
    assert len(df) == 12 and df["eval_loss"].notna().sum() == 3
    assert np.all(a.history.grad_norm > 0)


def test_nan_guard_stops_and_keeps_last_good_params(key, caplog):
    cell = CTRNNCell(hidden_features=8, output_features=3, alpha=0.5, noise_const=0.0)
    task = _small_task()
    bad = optax.adam(lambda count: jnp.where(count >= 3, jnp.nan, 1e-2))
    good = optax.adam(1e-2)
    r = train(cell, task, key=key, steps=10, batch_size=4, optimizer=bad, progress=False)
    ref = train(cell, task, key=key, steps=3, batch_size=4, optimizer=good, progress=False)
    assert r.nonfinite_step == 3 and r.step == 3
    assert "non-finite loss at step 3" in caplog.text
    assert len(r.history.loss) == 3 and np.all(np.isfinite(r.history.loss))
    for x, y in zip(jax.tree_util.tree_leaves(r.params), jax.tree_util.tree_leaves(ref.params),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_bad_arguments_name_the_argument(key):
    cell = CTRNNCell(hidden_features=8, output_features=3, alpha=0.5, noise_const=0.0)
    task = _small_task()
    with pytest.raises(ValueError, match="batch_size"):
        train(cell, task, key=key, steps=3, batch_size=0)
    with pytest.raises(ValueError, match="steps"):
        train(cell, task, key=key, steps=0, batch_size=2)
    with pytest.raises(ValueError, match="output_features"):
        train(CTRNNCell(hidden_features=8, output_features=2, alpha=0.5, noise_const=0.0),
              task, key=key, steps=3, batch_size=2)
    with pytest.raises(ValueError, match="input_size"):
        params = init_params(cell, _small_task(), key=key)
        train(cell, FlipFlop(n_bits=3, n_steps=12).__class__(n_bits=3), key=key, steps=1,
              batch_size=2, params=_widen_input(params))
    with pytest.raises(ValueError, match="key"):
        train(cell, task, key=None, steps=3, batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        make_train_step(cell, task, default_optimizer(), batch_size=0)


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        (dict(learning_rate=0.0), ValueError, "learning_rate must be > 0, got 0.0"),
        (dict(learning_rate=-1e-3), ValueError, "learning_rate must be > 0"),
        (dict(learning_rate=float("nan")), ValueError, "learning_rate must be a finite number"),
        (dict(learning_rate="fast"), TypeError, "learning_rate must be a number > 0, got str"),
        (dict(learning_rate=True), TypeError, "learning_rate must be a number > 0, got bool"),
        (dict(rate_l2=-1.0), ValueError, "rate_l2 must be >= 0, got -1.0"),
        (dict(weight_l2=float("inf")), ValueError, "weight_l2 must be a finite number >= 0"),
        (dict(loss="l1"), ValueError, "loss must be 'mse' or 'cross_entropy', got 'l1'"),
    ],
)
def test_train_validates_its_hyperparameters_before_any_work(key, kwargs, exc, message):
    cell = CTRNNCell(hidden_features=4, output_features=3, alpha=0.5, noise_const=0.0)
    with pytest.raises(exc) as err:
        train(cell, _small_task(), key=key, steps=1, batch_size=2, **kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        (dict(clip_norm=-1.0), ValueError, "clip_norm must be > 0, got -1.0"),
        (dict(clip_norm=0), ValueError, "clip_norm must be > 0, got 0"),
        (dict(b1=5.0), ValueError, "b1 must be in [0, 1), got 5.0"),
        (dict(b2=1.0), ValueError, "b2 must be in [0, 1), got 1.0"),
        (dict(b2="x"), TypeError, "b2 must be a number in [0, 1), got str 'x'"),
        (dict(weight_decay=-1e-4), ValueError, "weight_decay must be >= 0"),
        (dict(learning_rate=None), TypeError, "learning_rate must be a number > 0, got NoneType"),
    ],
)
def test_default_optimizer_validates(kwargs, exc, message):
    with pytest.raises(exc) as err:
        default_optimizer(**kwargs)
    assert message in str(err.value)


def test_default_optimizer_leaves_schedules_and_injected_arrays_alone():
    params = {"w": jnp.ones(3)}
    schedule = optax.linear_schedule(1e-2, 1e-3, 10)
    default_optimizer(schedule).init(params)
    opt = optax.inject_hyperparams(default_optimizer)(learning_rate=1e-3, clip_norm=0.5)
    state = jax.jit(opt.init)(params)  # traced hyper-parameters are not checked
    assert float(state.hyperparams["clip_norm"]) == 0.5


def test_flax_cell_without_a_readout_is_refused_up_front(key):
    with pytest.raises(ValueError) as err:
        train(nn.GRUCell(features=16), FlipFlop(n_bits=3), key=key, steps=1, batch_size=2)
    message = str(err.value)
    assert "GRUCell has no readout" in message and "task.output_size = 3" in message
    assert "CTRNNCell(hidden_features=16, output_features=3)" in message


def test_flax_cell_whose_outputs_fit_the_task_trains(key):
    task = FlipFlop(n_bits=3, n_steps=6, p_pulse=0.3)
    r = train(nn.GRUCell(features=3), task, key=key, steps=2, batch_size=2, progress=False)
    assert r.step == 2 and np.all(np.isfinite(r.history.loss))


def test_resume_refuses_settings_that_change_the_history(key, tmp_path):
    cell = CTRNNCell(hidden_features=4, output_features=3, alpha=0.5, noise_const=0.0)
    task = FlipFlop(n_bits=3, n_steps=6, p_pulse=0.3)
    kw = dict(steps=2, batch_size=2, checkpoint_dir=tmp_path, progress=False)
    train(cell, task, key=key, **kw)
    before = (tmp_path / "checkpoint").read_bytes()
    cases = [
        (dict(kw, batch_size=3), "batch_size=2, this call has batch_size=3"),
        (dict(kw, learning_rate=1e-2), "learning_rate=0.001, this call has learning_rate=0.01"),
        (dict(kw, rate_l2=0.5), "rate_l2=0.0, this call has rate_l2=0.5"),
        (dict(kw, loss="cross_entropy"), "loss='mse', this call has loss='cross_entropy'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError) as err:
            train(cell, task, key=key, resume=True, **{**kwargs, "steps": 4})
        assert message in str(err.value), str(err.value)
    with pytest.raises(ValueError, match="written with a different key"):
        train(cell, task, key=jax.random.key(1), resume=True, **{**kw, "steps": 4})
    with pytest.raises(ValueError, match="written for a different cell: cell.hidden_features=4, "
                                         "this call has cell.hidden_features=5"):
        train(CTRNNCell(hidden_features=5, output_features=3, alpha=0.5, noise_const=0.0),
              task, key=key, resume=True, **{**kw, "steps": 4})
    with pytest.raises(ValueError, match="written for a different task: task.p_pulse=0.3, "
                                         "this call has task.p_pulse=0.5"):
        train(cell, FlipFlop(n_bits=3, n_steps=6, p_pulse=0.5), key=key, resume=True,
              **{**kw, "steps": 4})
    assert (tmp_path / "checkpoint").read_bytes() == before
    r = train(cell, task, key=key, resume=True, **{**kw, "steps": 3})  # same settings: continues
    assert r.step == 3


def _widen_input(params):
    tree = jax.tree_util.tree_map(lambda a: a, params)
    k = tree["params"]["cell"]["input_kernel"]["kernel"]
    tree["params"]["cell"]["input_kernel"]["kernel"] = jnp.concatenate([k, k], axis=0)
    return tree


def test_small_flipflop_learns(key):
    cell = CTRNNCell(hidden_features=32, output_features=3, alpha=0.5, noise_const=0.0)
    task = FlipFlop(n_bits=3, n_steps=30, p_pulse=0.1)
    r = train(cell, task, key=key, steps=250, batch_size=32, learning_rate=1e-2,
              progress=False, eval_batches=2)
    assert r.history.loss[-20:].mean() < 0.5 * r.history.loss[:20].mean()
    assert r.history.eval_accuracy[-1] > 0.9


@pytest.mark.slow
def test_decision_task_trains_with_cross_entropy(key):
    cell = CTRNNCell(hidden_features=16, output_features=1, alpha=0.5, noise_const=0.0)
    task = PerceptualDecision(n_steps=20, stim_start=2, stim_steps=10, response_steps=4,
                              coherences=(0.3, 0.6), noise_std=0.3)
    r = train(cell, task, key=key, steps=150, batch_size=32, learning_rate=1e-2,
              loss="cross_entropy", progress=False)
    assert r.history.eval_accuracy[-1] > 0.85
