"""The compiled recurrence kernels against NumPy loops of the two recurrences."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from ctrnn_dyn import fast_path, native

needs_compiler = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "c++")) is None,
                                    reason="no C++ compiler on PATH")
TANH, RELU = native.TANH, native.RELU


def _f(code, x):
    return np.tanh(x) if code == TANH else np.maximum(x, 0.0)


def _f_prime_from_rates(code, r):
    return 1.0 - r * r if code == TANH else (r > 0).astype(r.dtype)


def _numpy_forward(X, x0, W, c, code):
    """x_t = X[t-1] + c x_{t-1} + f(x_{t-1}) W for t = 1..T; returns (x_1..x_T, f(x_0..x_T)),
    float64."""
    X, prev = np.array(X, np.float64), np.array(x0, np.float64)
    R = np.empty((X.shape[0] + 1,) + X.shape[1:])
    for t in range(X.shape[0]):
        R[t] = _f(code, prev)
        X[t] += c * prev + R[t] @ W
        prev = X[t]
    R[-1] = _f(code, prev)
    return X, R


def _numpy_backward(M, R, W, c, a, code):
    """M[t-1] += c M[t] + a f'(x_t) (M[t] W) for t = T-1..1, float64."""
    M = np.array(M, np.float64)
    for t in range(M.shape[0] - 2, 0, -1):
        M[t - 1] += c * M[t] + a * _f_prime_from_rates(code, R[t]) * (M[t] @ W)
    return M


def _draw(shape, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=shape).astype(dtype)
    W = (0.9 / np.sqrt(n) * rng.normal(size=(n, n))).astype(dtype)
    c = rng.uniform(0.5, 0.95, size=n).astype(dtype)
    return X, W, c


@needs_compiler
def test_kernels_build_and_load_here():
    assert native.prepare(), native.status()
    assert native.status().startswith("loaded from")


# (T, B, n): a single step, tails of every tile shape (rows not a multiple of 8 or 4, widths
# below and between vector widths), and the benchmark's size.
SHAPES = [(1, 1, 1), (4, 3, 7), (8, 13, 37), (3, 17, 100), (5, 64, 128)]


@needs_compiler
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-5)],
                         ids=["float64", "float32"])
@pytest.mark.parametrize("code", [TANH, RELU], ids=["tanh", "relu"])
@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_forward_and_backward_match_numpy_loops(shape, code, dtype, rtol):
    assert native.prepare(), native.status()
    T, B, n = shape
    X, W, c = _draw(shape, n, dtype)
    x0 = _draw((B, n), n, dtype, seed=2)[0]
    a = (1.0 - c).astype(dtype)
    with jax.enable_x64(dtype == np.float64):
        Xk, Rk = jax.jit(fast_path._native_forward, static_argnums=4)(X, x0, W, c, code)
        X_ref, R_ref = _numpy_forward(X, x0, W, c, code)
        np.testing.assert_allclose(Xk, X_ref, rtol=rtol, atol=rtol * np.abs(X_ref).max())
        np.testing.assert_allclose(Rk, R_ref, rtol=rtol, atol=rtol)
        # the adjoint runs over T + 1 rows, paired with the rates
        M = _draw((T + 1, B, n), n, dtype, seed=1)[0]
        R = R_ref.astype(dtype)
        Mk = jax.jit(fast_path._native_backward, static_argnums=5)(M, R, W.T, c, a, code)
        M_ref = _numpy_backward(M, R, W.T, c, a, code)
        np.testing.assert_allclose(Mk, M_ref, rtol=rtol, atol=rtol * np.abs(M_ref).max())


@needs_compiler
def test_vmap_over_networks_runs_each_network_with_its_own_weights():
    """Leading (network) axes: two nested vmaps, every network against its own NumPy loop."""
    assert native.prepare(), native.status()
    with jax.enable_x64(True):
        T, B, n = 6, 10, 20
        X = np.stack([np.stack([_draw((T, B, n), n, np.float64, seed=3 * i + j)[0]
                                for j in range(3)]) for i in range(2)])
        W = np.stack([np.stack([_draw((1,), n, np.float64, seed=10 + 3 * i + j)[1]
                                for j in range(3)]) for i in range(2)])
        x0 = _draw((B, n), n, np.float64, seed=20)[0]  # shared: broadcast by the vmaps
        c = np.full(n, 0.8)
        run = jax.vmap(jax.vmap(lambda X, W: fast_path._native_forward(X, x0, W, c, TANH)))
        Xk, Rk = jax.jit(run)(X, W)
        for i in range(2):
            for j in range(3):
                X_ref, R_ref = _numpy_forward(X[i, j], x0, W[i, j], c, TANH)
                np.testing.assert_allclose(Xk[i, j], X_ref, rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(Rk[i, j], R_ref, rtol=1e-12, atol=1e-12)


@needs_compiler
def test_the_train_step_calls_the_kernels():
    """The compiled gradient of the default loss contains both FFI targets."""
    from helpers import noisy_train_grad_hlo

    hlo = noisy_train_grad_hlo()
    assert native.FORWARD_TARGET in hlo and native.BACKWARD_TARGET in hlo


def _fresh_python(env: dict[str, str], code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


FALLBACK_CHECK = """
import jax, jax.numpy as jnp, numpy as np
from ctrnn_dyn import native
from ctrnn_dyn.model import CTRNNCell
from ctrnn_dyn.tasks import FlipFlop
from ctrnn_dyn.train import init_params, loss_fn
cell = CTRNNCell(hidden_features=8, output_features=2, alpha=0.2, noise_const=0.0)
task = FlipFlop(n_bits=2, n_steps=5)
params = init_params(cell, task, key=jax.random.key(0))
batch = task.sample(jax.random.key(1), 3)
native.prepare()
g = jax.grad(lambda p: loss_fn(p, cell, batch, key=None)[0])(params)
assert all(np.isfinite(x).all() for x in jax.tree.leaves(g))
print(native.available(), native.status())
"""


def test_switched_off_or_without_a_compiler_the_xla_loops_run(tmp_path):
    off = _fresh_python({native.ENV_SWITCH: "0"}, FALLBACK_CHECK)
    assert off.startswith("False off (CTRNN_DYN_NATIVE=0)")
    no_cxx = _fresh_python({"CXX": "no-such-compiler-ctrnn", "CTRNN_DYN_CACHE": str(tmp_path)},
                           FALLBACK_CHECK)
    assert no_cxx.startswith("False no C++ compiler on PATH")


@needs_compiler
def test_a_failing_build_falls_back_and_says_why(tmp_path):
    fake = tmp_path / "fake-c++"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo fake 1.0; exit 0; fi\n"
                    "echo 'error: not a compiler' >&2; exit 1\n")
    fake.chmod(0o755)
    out = _fresh_python({"CXX": str(fake), "CTRNN_DYN_CACHE": str(tmp_path / "cache")},
                        FALLBACK_CHECK)
    assert out.startswith("False build or load failed") and "not a compiler" in out


def test_other_platforms_compile_the_xla_loops():
    """Lowered for a GPU (no GPU needed to lower), the gradient has no call into the CPU kernels
    and runs the recurrences as XLA while loops."""
    from jax import export

    from ctrnn_dyn.model import CTRNNCell
    from ctrnn_dyn.tasks import FlipFlop
    from ctrnn_dyn.train import init_params, loss_fn

    cell = CTRNNCell(hidden_features=8, output_features=2, alpha=0.2, noise_const=0.1)
    task = FlipFlop(n_bits=2, n_steps=5)
    params = init_params(cell, task, key=jax.random.key(0))
    batch = task.sample(jax.random.key(1), 3)
    grad = jax.jit(jax.grad(lambda p: loss_fn(p, cell, batch, key=jax.random.key(2))[0]))
    text = export.export(grad, platforms=["cuda"])(params).mlir_module()
    assert native.FORWARD_TARGET not in text and native.BACKWARD_TARGET not in text
    assert text.count("stablehlo.while") >= 2
