"""CTRNNCell / RateCTRNNCell against NumPy loops of SCIENCE.md §1–2, noise, validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from helpers import NP_ACTIVATIONS, numpy_ctrnn_rollout, numpy_rate_rollout

from ctrnn_dyn.model import CTRNNCell, RateCTRNNCell, dale_signs, rnn, step_noise
from ctrnn_dyn.systems import SYSTEMS

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "sigmoid": nn.sigmoid}


def _unpack(params):
    p = params["params"]["cell"]
    return (
        p["recurrent_kernel"]["kernel"],
        p["recurrent_kernel"]["bias"],
        p["input_kernel"]["kernel"],
        p["output_kernel"]["kernel"],
        p["output_kernel"]["bias"],
    )


@pytest.mark.parametrize("n, m, p", [(1, 1, 1), (3, 2, 2), (16, 4, 3)])
@pytest.mark.parametrize("alpha_kind", ["scalar", "per_neuron"])
@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
def test_ctrnn_rollout_matches_numpy_loop(key, n, m, p, alpha_kind, act):
    alpha = 0.2 if alpha_kind == "scalar" else tuple(np.linspace(0.05, 1.0, n))
    cell = CTRNNCell(n, p, alpha=alpha, noise_const=0.0, activation_fn=ACTIVATIONS[act])
    k_init, k_b, k_in = jax.random.split(key, 3)
    inputs = jax.random.normal(k_in, (3, 7, m))
    net = rnn(cell)
    params = net.init(k_init, inputs)
    # Non-zero biases so the bias path is exercised.
    params["params"]["cell"]["recurrent_kernel"]["bias"] = jax.random.normal(k_b, (n,))
    outputs, rates = net.apply(params, inputs)
    carry, _ = net.apply(params, inputs, return_carry=True)

    states, ref_out, ref_rates = numpy_ctrnn_rollout(
        *_unpack(params), alpha, np.ones(n), inputs, f=NP_ACTIVATIONS[act]
    )
    np.testing.assert_allclose(outputs, ref_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rates, ref_rates, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry, states[:, -1], rtol=1e-5, atol=1e-6)


def test_seed_readme_snippet_runs_unchanged():
    # The seed's README usage, with only the import changed.
    import jax.numpy as jnp
    from flax import linen as nn
    from jax import random

    from ctrnn_dyn.model import CTRNNCell

    ctrnn = nn.RNN(
        CTRNNCell(
            hidden_features=2,
            output_features=1,
            alpha=jnp.float32(0.1),
            noise_const=jnp.float32(0.1),
        ),
        split_rngs={"params": False, "noise_stream": True},
    )
    params = ctrnn.init(random.PRNGKey(0), jnp.ones([1, 5, 1]))
    output, rates = ctrnn.apply(
        params, jnp.ones([1, 5, 1]), rngs={"noise_stream": random.PRNGKey(0)}
    )
    assert output.shape == (1, 5, 1) and rates.shape == (1, 5, 2)
    assert jax.tree_util.tree_map(jnp.shape, params) == {
        "params": {
            "cell": {
                "input_kernel": {"kernel": (1, 2)},
                "output_kernel": {"bias": (1,), "kernel": (2, 1)},
                "recurrent_kernel": {"bias": (2,), "kernel": (2, 2)},
            }
        }
    }


def test_params_laid_out_by_the_seed_load_and_run():
    # A params tree written by hand in the seed's layout (plain NumPy, as msgpack would restore it).
    rng = np.random.default_rng(0)
    seed_params = {
        "params": {
            "cell": {
                "recurrent_kernel": {
                    "kernel": rng.normal(size=(4, 4)).astype(np.float32),
                    "bias": rng.normal(size=4).astype(np.float32),
                },
                "input_kernel": {"kernel": rng.normal(size=(2, 4)).astype(np.float32)},
                "output_kernel": {
                    "kernel": rng.normal(size=(4, 3)).astype(np.float32),
                    "bias": rng.normal(size=3).astype(np.float32),
                },
            }
        }
    }
    inputs = rng.normal(size=(2, 6, 2)).astype(np.float32)
    net = rnn(CTRNNCell(4, 3, alpha=0.3, noise_const=0.0))
    outputs, _ = net.apply(seed_params, inputs)
    _, ref_out, _ = numpy_ctrnn_rollout(*_unpack(seed_params), 0.3, np.ones(4), inputs)
    np.testing.assert_allclose(outputs, ref_out, rtol=1e-5, atol=1e-6)


def _zero_params(n, m, p):
    z = np.zeros
    return {
        "params": {
            "cell": {
                "recurrent_kernel": {"kernel": z((n, n), np.float32), "bias": z(n, np.float32)},
                "input_kernel": {"kernel": z((m, n), np.float32)},
                "output_kernel": {"kernel": z((n, p), np.float32), "bias": z(p, np.float32)},
            }
        }
    }


@pytest.mark.parametrize(
    "mode, expected",
    [("seed", lambda a, s: a * s), ("euler_maruyama", lambda a, s: np.sqrt(2 * a) * s)],
)
def test_noise_per_step_std(key, mode, expected):
    alpha, sigma, batch = 0.25, 0.8, 4000
    cell = CTRNNCell(
        8,
        1,
        alpha=alpha,
        noise_const=sigma,
        noise_mode=mode,
        carry_init=nn.initializers.zeros_init(),
    )
    net = rnn(cell, return_carry=True)
    # Zero weights and a zero start: after one step x = (noise term) exactly.
    carry, _ = net.apply(
        _zero_params(8, 1, 1), jnp.zeros((batch, 1, 1)), rngs={"noise_stream": key}
    )
    samples = np.asarray(carry).ravel()
    target = expected(alpha, sigma)
    # std of a sample std with N = 32000 normal draws is target/sqrt(2N) ~ 0.4%: allow 3%.
    assert abs(samples.std() / target - 1.0) < 0.03
    assert abs(samples.mean()) < 4 * target / np.sqrt(samples.size)


def test_noise_same_key_same_rollout_different_key_different(key):
    net = rnn(CTRNNCell(5, 2, alpha=0.1, noise_const=0.3))
    inputs = jnp.ones((2, 10, 3))
    params = net.init(key, inputs)
    k1, k2 = jax.random.split(key)
    a = net.apply(params, inputs, rngs={"noise_stream": k1})[0]
    b = net.apply(params, inputs, rngs={"noise_stream": k1})[0]
    c = net.apply(params, inputs, rngs={"noise_stream": k2})[0]
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(np.asarray(a) - np.asarray(c))) > 1e-4


@pytest.mark.parametrize(
    "make_key",
    [lambda: jax.random.key(11), lambda: jax.random.PRNGKey(11),
     lambda: jax.random.key(11, impl="rbg")],
    ids=["threefry", "raw", "rbg"],
)
def test_step_noise_is_the_cells_noise_bit_for_bit(make_key):
    """With zero weights, alpha = 1, sigma = 1 and the identity as f, the rates the cell returns
    are its noise draws exactly: ``x_{t+1} = 0·x_t + 1·(0 + 1·ξ_t)``."""
    B, T, n = 5, 7, 4
    cell = CTRNNCell(n, 1, alpha=1.0, noise_const=1.0, activation_fn=lambda x: x)
    key = make_key()
    _, rates = rnn(cell).apply(_zero_params(n, 2, 1), jnp.zeros((B, T, 2)),
                               rngs={"noise_stream": key})
    xi = step_noise(key, T, (B, n))
    assert xi.shape == (T, B, n)
    np.testing.assert_array_equal(np.asarray(rates), np.swapaxes(np.asarray(xi), 0, 1))
    np.testing.assert_array_equal(np.asarray(jax.jit(step_noise, static_argnums=(1, 2))(
        key, T, (B, n))), np.asarray(xi))
    other = step_noise(jax.random.fold_in(key, 1), T, (B, n))
    assert not np.array_equal(np.asarray(other), np.asarray(xi))
    with pytest.raises(ValueError, match="n_steps must be >= 1"):
        step_noise(key, 0, (B, n))


@pytest.mark.parametrize(
    "args, error, match",
    [((7, 3, (2, 4)), TypeError, "key must be a PRNG key"),
     ((np.zeros(3, np.uint32), 3, (2, 4)), TypeError, r"key must be a PRNG key.*shape \(3,\)"),
     ((None, 3, (2, 4)), TypeError, "key must be a PRNG key"),
     ((jax.random.key(0), 3, 4), ValueError, r"shape must be a tuple of ints >= 0"),
     ((jax.random.key(0), 3, (2, -1)), ValueError, r"shape must be a tuple of ints >= 0"),
     ((jax.random.key(0), 3, (2, 4.0)), ValueError, r"shape must be a tuple of ints >= 0")],
)
def test_step_noise_rejects_bad_input_naming_the_argument(args, error, match):
    with pytest.raises(error, match=match):
        step_noise(*args)


def test_dale_and_mask_constrain_the_effective_kernel(key):
    n = 6
    mask = np.ones((n, n)) - np.eye(n)
    cell = CTRNNCell(
        n,
        1,
        alpha=0.5,
        noise_const=0.0,
        excitatory_fraction=0.5,
        connectivity_mask=tuple(map(tuple, mask)),
    )
    inputs = jax.random.normal(key, (2, 5, 2))
    net = rnn(cell)
    params = net.init(key, inputs)
    K = np.asarray(cell.recurrent_weights(params["params"]["cell"]))
    signs = dale_signs(n, 0.5)
    assert np.all(K[signs > 0] >= 0) and np.all(K[signs < 0] <= 0)
    assert np.all(np.diag(K) == 0)
    raw = params["params"]["cell"]["recurrent_kernel"]["kernel"]
    np.testing.assert_allclose(K, np.abs(raw) * signs[:, None] * mask, rtol=0)
    outputs, _ = net.apply(params, inputs)
    _, _, K_in, K_out, b_out = _unpack(params)
    _, ref, _ = numpy_ctrnn_rollout(K, np.zeros(n), K_in, K_out, b_out, 0.5, np.ones(n), inputs)
    np.testing.assert_allclose(outputs, ref, rtol=1e-5, atol=1e-6)


def test_trainable_alpha_is_a_parameter_and_gets_gradients(key):
    cell = CTRNNCell(3, 1, alpha=(0.1, 0.2, 0.3), noise_const=0.0, train_alpha=True)
    net = rnn(cell)
    inputs = jnp.ones((1, 4, 2))
    params = net.init(key, inputs)
    np.testing.assert_allclose(params["params"]["cell"]["alpha"], [0.1, 0.2, 0.3], rtol=1e-6)
    grads = jax.grad(lambda p: jnp.sum(net.apply(p, inputs)[0] ** 2))(params)
    assert np.all(np.isfinite(grads["params"]["cell"]["alpha"]))
    assert np.any(grads["params"]["cell"]["alpha"] != 0)


@pytest.mark.parametrize("train_tau", [False, True])
def test_rate_cell_matches_numpy_loop(key, train_tau):
    tau = (1.0, 2.5, 1.5)
    cell = RateCTRNNCell(
        3, dt=0.1, tau=tau, train_tau=train_tau, carry_init=nn.initializers.constant(0.3)
    )
    inputs = 0.1 * jax.random.normal(key, (2, 20, 3))
    net = rnn(cell)
    params = net.init(key, inputs)
    if train_tau:
        np.testing.assert_allclose(params["params"]["cell"]["tau"], tau, rtol=1e-6)
    states = net.apply(params, inputs)
    rk = params["params"]["cell"]["recurrent_kernel"]
    ref = numpy_rate_rollout(rk["kernel"], rk["bias"], tau, 0.1, 0.3, inputs)
    np.testing.assert_allclose(states, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_systems_trajectories_match_numpy_loop(name):
    system = SYSTEMS[name]
    steps = min(system.n_steps, 600)
    states = system.simulate(n_steps=steps)
    assert states.shape == (len(system.starts), steps, system.n)
    ref = numpy_rate_rollout(
        system.K,
        system.b,
        system.tau,
        system.dt,
        np.asarray(system.starts)[:, None],
        np.zeros((len(system.starts), steps, system.n)),
    )
    # float32 vs float64 over up to 600 steps of a contracting/oscillating map.
    np.testing.assert_allclose(states, ref, rtol=1e-4, atol=1e-5)


def test_system_parameters_are_the_published_ones():
    assert SYSTEMS["switch"].K == ((8.0,),) and SYSTEMS["switch"].b == (-4.0,)
    assert SYSTEMS["oscillator"].K == ((4.5, -1.0), (1.0, 4.5))
    assert SYSTEMS["chaos"].tau == (1.0, 2.5, 1.0)
    assert SYSTEMS["chaos"].K[2] == (2.750, 1.210, 3.885)
    assert SYSTEMS["chaos"].b == (-4.108, -2.787, -1.114)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"alpha": (0.1, 0.2)}, "alpha"),
        ({"noise_const": -1.0}, "noise_const"),
        ({"hidden_features": 0}, "hidden_features"),
        ({"output_features": 0}, "output_features"),
        ({"noise_mode": "ito"}, "noise_mode"),
        ({"excitatory_fraction": 1.5}, "excitatory_fraction"),
        ({"connectivity_mask": ((1.0,),)}, "connectivity_mask"),
    ],
)
def test_bad_cell_arguments_raise_naming_the_argument(kwargs, match):
    base = {"hidden_features": 3, "output_features": 1, "alpha": 0.1, "noise_const": 0.1}
    with pytest.raises(ValueError, match=match):
        CTRNNCell(**{**base, **kwargs})


def test_bad_feature_type_raises_type_error():
    with pytest.raises(TypeError, match="hidden_features"):
        CTRNNCell(hidden_features=2.5, output_features=1, alpha=0.1, noise_const=0.0)


def test_bad_rate_cell_arguments():
    with pytest.raises(ValueError, match="dt"):
        RateCTRNNCell(2, dt=-0.1)
    with pytest.raises(ValueError, match="tau"):
        RateCTRNNCell(2, dt=0.1, tau=(1.0, 0.0))
    with pytest.raises(ValueError, match="dt / tau"):
        RateCTRNNCell(2, dt=2.0, tau=1.0)


def test_input_width_and_rank_errors_are_clear(key):
    net = rnn(CTRNNCell(3, 1, alpha=0.1, noise_const=0.0))
    params = net.init(key, jnp.ones((1, 4, 2)))
    with pytest.raises(ValueError, match="task_input has width 5"):
        net.apply(params, jnp.ones((1, 4, 5)))
    with pytest.raises(ValueError, match="inputs must have shape"):
        net.apply(params, jnp.ones(2))
    rate = rnn(RateCTRNNCell(3, dt=0.1))
    with pytest.raises(ValueError, match="task_input"):
        rate.init(key, jnp.ones((1, 4, 2)))
    with pytest.raises(TypeError, match="cell"):
        rnn("not a cell")
