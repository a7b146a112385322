"""The fast path's noise stream (ctrnn_dyn.noise): Philox4x32-10 against Random123's
known answers and an independent 64-bit NumPy version, the normals against SciPy's inverse
error function, their distribution, and the compiled forward kernel's copy of the stream
against the ``jax.numpy`` one (states and gradients of noisy fast-path runs)."""

from __future__ import annotations

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import noisy_train_grad_hlo
from scipy import special, stats

from ctrnn_dyn import fast_path, native, noise
from ctrnn_dyn.fast_path import fast_forward
from ctrnn_dyn.model import CTRNNCell, rnn
from ctrnn_dyn.tasks import FlipFlop
from ctrnn_dyn.train import init_params, loss_fn

needs_compiler = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "c++")) is None,
                                    reason="no C++ compiler on PATH")

# Random123's kat_vectors for philox4x32 with 10 rounds: (counter, key, output).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def _philox_numpy(counter, key, rounds=10):
    """Philox4x32 with 64-bit NumPy products (the reference)."""
    mask = np.uint64(0xFFFFFFFF)
    c = [np.asarray(w, np.uint64) for w in counter]
    k0, k1 = (np.asarray(w, np.uint64) for w in key)
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + np.uint64(0x9E3779B9)) & mask, (k1 + np.uint64(0xBB67AE85)) & mask
        p0, p1 = np.uint64(0xD2511F53) * c[0], np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & mask, (p0 >> np.uint64(32)) ^ c[3] ^ k1,
             p0 & mask]
    return [w.astype(np.uint32) for w in c]


def _normal_numpy(words, size):
    """The stream's definition in float64: word i % 4 of block i // 4, sqrt(2) erfinv(v)."""
    blocks = -(-size // 4)
    zero = np.zeros(blocks, np.uint64)
    out = _philox_numpy((np.arange(blocks, dtype=np.uint64), zero, zero, zero),
                        tuple(np.uint64(w) for w in np.asarray(words)))
    bits = np.stack(out, axis=-1).reshape(-1)[:size].astype(np.int64)
    v = (2 * (bits >> 8) + 1 - 2**24) / 2.0**24
    return np.sqrt(2.0) * special.erfinv(v)


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_philox_matches_random123_known_answers(counter, key, expected):
    out = noise.philox4x32(tuple(jnp.uint32(w) for w in counter),
                           tuple(jnp.uint32(w) for w in key))
    assert tuple(int(w) for w in out) == expected
    assert tuple(int(w) for w in _philox_numpy(counter, key)) == expected


def test_philox_matches_a_64_bit_numpy_version(key):
    rng = np.random.default_rng(0)
    counter = tuple(rng.integers(0, 2**32, 4096, dtype=np.uint64).astype(np.uint32)
                    for _ in range(4))
    for k in rng.integers(0, 2**32, (5, 2), dtype=np.uint64).astype(np.uint32):
        got = jax.jit(noise.philox4x32)(tuple(jnp.asarray(c) for c in counter),
                                        (jnp.uint32(k[0]), jnp.uint32(k[1])))
        for a, b in zip(got, _philox_numpy(counter, k), strict=True):
            np.testing.assert_array_equal(np.asarray(a), b)
    seven = noise.philox4x32(tuple(jnp.asarray(c) for c in counter), (k[0], k[1]), rounds=7)
    for a, b in zip(seven, _philox_numpy(counter, k, rounds=7), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_normal_is_the_documented_stream(key):
    """Every element as the definition gives it in float64 (SciPy's erfinv), to float32
    accuracy; the key words are those of fold_in(key, STREAM_TAG)."""
    words = noise.stream_words(key)
    np.testing.assert_array_equal(
        np.asarray(words),
        np.asarray(jax.random.key_data(jax.random.fold_in(key, noise.STREAM_TAG)))[:2])
    shape = (37, 11, 13)  # 5291 elements: the last block is partial
    xi = np.asarray(jax.jit(noise.normal, static_argnums=1)(key, shape))
    ref = _normal_numpy(words, int(np.prod(shape))).reshape(shape)
    assert xi.dtype == np.float32 and xi.shape == shape
    assert np.all(np.abs(xi - ref) <= 2e-6 * np.maximum(1.0, np.abs(ref)))
    typed = jax.random.key(3)
    np.testing.assert_array_equal(np.asarray(noise.normal(typed, (10,))),
                                  np.asarray(noise.normal(jax.random.key_data(typed), (10,))))


def test_the_tails_follow_the_definition():
    """The largest |v| (w >= 5, the tail polynomial): the words with the extreme top bits."""
    words = noise.stream_words(jax.random.key(0))
    xi = np.asarray(noise.normal_from_words(words, (2**20,)))
    ref = _normal_numpy(words, 2**20)
    tail = np.abs(ref) > 2.8
    assert tail.sum() > 1000
    assert np.all(np.abs(xi - ref) <= 2e-6 * np.maximum(1.0, np.abs(ref)))


def test_normal_draws_a_standard_normal():
    xi = np.asarray(noise.normal(jax.random.key(11), (1000, 1000)), np.float64).ravel()
    assert abs(xi.mean()) < 5 / 1000  # 5 standard errors
    assert abs(xi.var() - 1) < 5 * np.sqrt(2 / xi.size)
    assert stats.kstest(xi, "norm").pvalue > 1e-3
    assert np.abs(xi).max() < 5.5


def test_keys_give_different_streams_and_shapes_nest():
    a, b = (np.asarray(noise.normal(jax.random.key(s), (64, 50))) for s in (0, 1))
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.05
    # the stream is one sequence: a shape takes its first elements in C order
    np.testing.assert_array_equal(
        np.asarray(noise.normal(jax.random.key(0), (3, 7))).ravel(), a.ravel()[:21])
    assert not np.array_equal(
        np.asarray(noise.normal(jax.random.key(0), (100,))),
        np.asarray(jax.random.normal(jax.random.key(0), (100,))))
    assert noise.normal(jax.random.key(0), (2, 0)).shape == (2, 0)
    assert noise.normal(jax.random.key(0), (4,), jnp.float16).dtype == jnp.float16


def test_bad_keys_and_shapes_are_refused():
    with pytest.raises(TypeError, match="key must be a PRNG key"):
        noise.normal(jnp.zeros(2, jnp.float32), (3,))
    with pytest.raises(TypeError, match="single PRNG key"):
        noise.normal(jax.random.split(jax.random.key(0)), (3,))
    with pytest.raises(ValueError, match="tuple of ints"):
        noise.normal(jax.random.key(0), (3.0,))
    with pytest.raises(ValueError, match="more than 2\\*\\*34"):
        noise.normal(jax.random.key(0), (2**20, 2**15))


# --- the compiled forward kernel's copy of the stream -------------------------------------

# (T, B, n): n and B n not multiples of 4 (blocks straddle rows and steps), several row blocks,
# one row, and the benchmark's width.
SHAPES = [(7, 5, 13), (4, 13, 6), (3, 1, 1), (2, 19, 128)]


@needs_compiler
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_the_kernel_draws_the_stream(shape):
    """With zero weights, state and c, and scale 1, the kernel's states are its noise."""
    assert native.prepare(), native.status()
    T, B, n = shape
    words = noise.stream_words(jax.random.key(5))
    zeros = jnp.zeros((n,), jnp.float32)
    X, _ = jax.jit(fast_path._native_forward_noise, static_argnums=6)(
        jnp.zeros(shape), jnp.zeros((B, n)), jnp.zeros((n, n)), zeros, words, zeros + 1,
        native.TANH)
    xi = noise.normal_from_words(words, shape)
    np.testing.assert_allclose(np.asarray(X), np.asarray(xi), rtol=1e-6, atol=1e-6)


def _noisy(n=13, mode="euler_maruyama", p=2, **kw):
    return CTRNNCell(hidden_features=n, output_features=p, alpha=0.3, noise_const=0.5,
                     noise_mode=mode, **kw)


def _params(cell, B, T, m=3):
    u = jax.random.normal(jax.random.key(1), (B, T, m))
    return rnn(cell).init({"params": jax.random.key(0), "noise_stream": jax.random.key(0)}, u), u


def _both_paths(fn, *args):
    with native.suspended():
        xla = jax.jit(fn)(*args)
    return jax.jit(fn)(*args), xla


@needs_compiler
@pytest.mark.parametrize("mode", ["seed", "euler_maruyama"])
@pytest.mark.parametrize("n,B", [(13, 5), (6, 9)])
def test_kernel_and_xla_loops_run_the_same_noise(mode, n, B, key):
    """A noisy fast_forward from a key: the kernel's states equal the XLA loops' (which draw
    with noise.normal), and both equal fast_forward given noise.normal's array."""
    assert native.prepare(), native.status()
    cell = _noisy(n, mode)
    params, u = _params(cell, B, 11)
    (y_k, r_k), (y_x, r_x) = _both_paths(
        lambda p, u, k: fast_forward(cell, p, u, noise_key=k), params, u, key)
    y_a, r_a = jax.jit(lambda p, u, xi: fast_forward(cell, p, u, noise=xi))(
        params, u, noise.normal(key, (11, B, n)))
    for r in (r_x, r_a):
        np.testing.assert_allclose(np.asarray(r_k), np.asarray(r), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(np.asarray(y_k), np.asarray(y_x), rtol=1e-5, atol=2e-6)
    # the noise is there: another key, other states
    _, r_other = jax.jit(lambda p, u, k: fast_forward(cell, p, u, noise_key=k))(
        params, u, jax.random.key(99))
    assert np.abs(np.asarray(r_other) - np.asarray(r_k)).max() > 1e-2


@needs_compiler
def test_a_float64_cell_casts_the_float32_draws():
    assert native.prepare(), native.status()
    with jax.enable_x64(True):
        cell = _noisy(7, dtype=jnp.float64, param_dtype=jnp.float64)
        params, u = _params(cell, 6, 9)
        k = jax.random.key(3)
        (_, r_k), (_, r_x) = _both_paths(
            lambda p, u, k: fast_forward(cell, p, u, noise_key=k), params, u, k)
        assert r_k.dtype == jnp.float64
        _, r_a = fast_forward(cell, params, u, noise=noise.normal(k, (9, 6, 7), jnp.float64))
        # the draws are float32 (the two paths' logs round differently), the rest float64
        for r in (r_x, r_a):
            np.testing.assert_allclose(np.asarray(r_k), np.asarray(r), rtol=1e-6, atol=1e-7)


@needs_compiler
def test_an_ensemble_under_vmap_draws_each_network_its_own_noise():
    assert native.prepare(), native.status()
    cell = _noisy(6)
    params, u = _params(cell, 5, 8)
    keys = jax.random.split(jax.random.key(4), 3)
    stacked = jax.tree.map(lambda p: jnp.stack([p, 1.1 * p, 0.9 * p]), params)

    def run(ps, u, ks):
        return jax.vmap(lambda p, k: fast_forward(cell, p, u, noise_key=k)[1])(ps, ks)

    r_k, r_x = _both_paths(run, stacked, u, keys)
    np.testing.assert_allclose(np.asarray(r_k), np.asarray(r_x), rtol=1e-5, atol=2e-6)
    for i in range(3):
        one = jax.tree.map(lambda p, i=i: p[i], stacked)
        _, r_i = fast_forward(cell, one, u, noise_key=keys[i])
        np.testing.assert_allclose(np.asarray(r_k[i]), np.asarray(r_i), rtol=1e-5, atol=2e-6)


@needs_compiler
@pytest.mark.parametrize("mode", ["seed", "euler_maruyama"])
def test_noisy_loss_gradients_agree_between_kernels_and_xla_loops(mode, key):
    """loss_fn's fast path draws the stream (not nn.RNN's noise): its loss is the fast path's
    with noise.normal's array, and its gradient is the same on both loop paths."""
    assert native.prepare(), native.status()
    cell = _noisy(12, mode, p=3)
    task = FlipFlop(n_bits=3, n_steps=15)
    params = init_params(cell, task, key=key)
    batch = task.sample(jax.random.key(1), 8)
    k = jax.random.key(2)

    def value_grad(p, k):
        return jax.value_and_grad(lambda p: loss_fn(p, cell, batch, key=k)[0])(p)

    (l_k, g_k), (l_x, g_x) = _both_paths(value_grad, params, k)
    xi = noise.normal(k, (15, 8, 12))
    assert float(l_k) == pytest.approx(float(l_x), rel=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g_k), jax.tree_util.tree_leaves(g_x), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                                   atol=1e-5 * float(np.abs(np.asarray(b)).max()))
    y, _ = fast_forward(cell, params, batch.inputs, noise=xi)
    mse = jnp.sum(batch.mask * (y - batch.targets) ** 2) / jnp.maximum(jnp.sum(batch.mask), 1.0)
    assert float(l_k) == pytest.approx(float(mse), rel=1e-5)
    l_rnn, _ = loss_fn(params, cell, batch, key=k, fast=False)
    assert abs(float(l_rnn) - float(l_k)) > 1e-5 * float(l_k)  # nn.RNN draws other noise


@needs_compiler
def test_the_noisy_train_step_draws_in_the_kernel():
    """The compiled gradient calls the noisy forward kernel and builds no (T, B, n) noise."""
    assert native.prepare(), native.status()
    hlo = noisy_train_grad_hlo()
    assert native.FORWARD_NOISE_TARGET in hlo and native.BACKWARD_TARGET in hlo
    assert "erf_inv" not in hlo and "stablehlo.log" not in hlo


def test_noise_and_noise_key_are_exclusive():
    cell = _noisy(4)
    params, u = _params(cell, 2, 3)
    with pytest.raises(ValueError, match="not both"):
        fast_forward(cell, params, u, noise=jnp.zeros((3, 2, 4)), noise_key=jax.random.key(0))


def test_the_module_example_runs():
    import doctest

    result = doctest.testmod(noise, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
