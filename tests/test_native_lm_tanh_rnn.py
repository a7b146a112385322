"""The solver's whole run on the compiled kernel for one-layer tanh RNNs
(:mod:`ctrnn_dyn.fixed_points.native_lm`) against the same Levenberg–Marquardt iteration written
in NumPy, and the finder on it against the finder on the XLA loop."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest

from ctrnn_dyn import _checks, native
from ctrnn_dyn.fixed_points import find_fixed_points, find_fixed_points_batch
from ctrnn_dyn.fixed_points.native_lm import PATH_SUFFIX, _run, applies
from ctrnn_dyn.interop import TorchMap

pytestmark = pytest.mark.usefixtures("native_kernels")


def _network(d, m=2, seed=0, gain=1.8):
    rng = np.random.default_rng(seed)
    w_hh = gain * rng.normal(size=(d, d)) / np.sqrt(d)
    w_ih, b_ih, b_hh = rng.normal(size=(d, m)), 0.3 * rng.normal(size=d), 0.3 * rng.normal(size=d)
    return TorchMap("rnn_tanh", ((w_ih, w_hh, b_ih, b_hh),), d, m, 1)


def _numpy_lm(W, c, x, damping, tol_q, tol_grad, grad_rtol, max_iters):
    """The iteration the kernel runs, step by step in NumPy (jaxopt's Levenberg–Marquardt with
    the finder's damping cap and stop rule): end point and iterations."""
    eye = np.eye(len(x))

    def linearise(x):
        h = np.tanh(W @ x + c)
        J = (1.0 - h**2)[:, None] * W - eye
        r = h - x
        return r, J.T @ r, J.T @ J

    r, g, A = linearise(x)
    mu, nu, q, it = damping * np.max(np.abs(A.sum(1))), 2.0, 0.5 * r @ r, 0
    while not (q <= tol_q or np.linalg.norm(g) <= max(tol_grad, grad_rtol * np.sqrt(2 * q))
               or it >= max_iters):
        it += 1
        try:
            v = np.linalg.solve(A + mu * eye, g)
        except np.linalg.LinAlgError:
            break
        xt = x - v
        rt = np.tanh(W @ xt + c) - xt
        qt = 0.5 * rt @ rt
        gain = (q - qt) / (0.5 * v @ (mu * v + g))
        if gain > 0:
            nxt = mu * max(1 / 3, 1 - (2 * gain - 1) ** 3)
            if qt / q < 1:
                nxt = min(nxt, max(2 * qt, mu * qt / q))
            mu, nu, x, q = nxt, 2.0, xt, qt
            r, g, A = linearise(x)
        else:
            mu, nu = min(mu * nu, 2.0**32), min(2 * nu, 2.0**32)
    return x, it


# d = 5 and 37 run the kernel's general loops, 16 its unrolled ones
@pytest.mark.parametrize("d", [5, 16, 37])
@pytest.mark.parametrize("damping", [1e-6, 1e-2])
def test_the_kernel_takes_the_steps_of_the_iteration_written_in_numpy(d, damping):
    F = _network(d, seed=d)
    w_ih, w_hh, b_ih, b_hh = F.weights[0]
    rng = np.random.default_rng(1)
    n = 48
    x0 = rng.uniform(-1, 1, size=(n, d))
    u = rng.normal(size=(n, 2))
    c = u @ w_ih.T + b_ih + b_hh
    active = np.arange(n) % 7 != 3
    settings = dict(damping=damping, tol_q=1e-20, tol_grad=1e-14, grad_rtol=1e-8, max_iters=60)
    with _checks.precision_context(np.float64):
        x, its = (np.asarray(a)[0] for a in _run(w_hh[None], c[None], x0[None], active[None],
                                                  **settings))
    assert np.array_equal(x[~active], x0[~active]) and np.all(its[~active] == 0)
    ends = [_numpy_lm(w_hh, c[j], x0[j], **settings) for j in np.flatnonzero(active)]
    dist = np.linalg.norm(x[active] - np.array([e[0] for e in ends]), axis=1)
    same = its[active] == np.array([e[1] for e in ends])
    # every run ends where NumPy's does; the starts that crawl along a flat valley of q (30-60
    # iterations on these networks) may take a step more or less, where rounding decides the
    # sign of a gain ratio, and end within 1e-7 of each other
    assert np.all(dist < 1e-6)
    assert np.all(dist[same] < 1e-7) and same.mean() >= 0.6
    assert np.all(its[active] <= 60) and np.any(its[active] > 3)


def test_the_kernel_names_what_is_wrong_with_its_arrays():
    d, n = 4, 3
    W, c, x0 = np.zeros((1, d, d)), np.zeros((1, n, d)), np.zeros((1, n, d))
    on = np.ones((1, n), bool)
    settings = dict(damping=1e-6, tol_q=1e-20, tol_grad=1e-14, grad_rtol=1e-8, max_iters=5)
    with _checks.precision_context(np.float64):
        for args, message in (((W[0], c, x0, on), "x0 must be (E, n, d) and W (E, d, d)"),
                              ((np.zeros((2, d, d)), c, x0, on), "W must be (E, d, d)"),
                              ((W, c[:, :2], x0, on), "c and x must be (E, n, d)"),
                              ((W, c, x0, on[:, :2]), "active and iters (E, n)"),
                              ((W.astype(np.float32), c, x0, on), "must share one dtype")):
            with pytest.raises(jax.errors.JaxRuntimeError, match=re.escape(message)):
                jax.block_until_ready(_run(*args, **settings))


def test_only_one_layer_tanh_rnns_take_the_kernel():
    F = _network(8)
    assert applies(F)
    assert not applies(TorchMap("rnn_relu", F.weights, 8, 2, 1))
    assert not applies(TorchMap("rnn_tanh", F.weights * 2, 8, 2, 2))
    assert not applies(lambda x, u: x)


@pytest.mark.parametrize("per_start_inputs", [False, True])
def test_the_finder_on_the_kernel_finds_what_it_finds_on_the_xla_loop(per_start_inputs):
    d, n = 12, 200
    F = _network(d, seed=3, gain=2.2)
    rng = np.random.default_rng(4)
    starts = rng.uniform(-1, 1, size=(n, d))
    u = rng.normal(size=(n, 2)) * 0.1 if per_start_inputs else np.array([0.2, -0.1])
    on = find_fixed_points(F, starts, u)
    with native.suspended():
        off = find_fixed_points(F, starts, u)
    assert on.solver_path == f"kernels:{native.kernel_key()}{PATH_SUFFIX}"
    assert off.solver_path == "xla"
    a, b = on.fixed, off.fixed
    assert len(a) == len(b) > 1
    dist = np.linalg.norm(a.x[:, None] - b.x[None], axis=-1)
    assert np.all(dist.min(1) < 1e-8) and np.all(dist.min(0) < 1e-8)
    # each a root of the map written in NumPy
    w_ih, w_hh, b_ih, b_hh = F.weights[0]
    uu = np.broadcast_to(u, (n, 2))
    for x, ui in zip(a.x, on.fixed.u if per_start_inputs else [uu[0]] * len(a), strict=True):
        # a fixed point has q <= tol_q = 1e-20: |r| <= sqrt(2e-20), to rounding
        assert np.linalg.norm(np.tanh(w_hh @ x + w_ih @ ui + b_ih + b_hh) - x) < 1.5e-10


def test_float32_runs_on_the_kernel_and_finds_the_float64_roots():
    F = _network(10, seed=5, gain=2.0)
    starts = np.random.default_rng(6).uniform(-1, 1, size=(128, 10))
    lo = find_fixed_points(F, starts.astype(np.float32), dtype=np.float32)
    hi = find_fixed_points(F, starts)
    assert lo.solver_path.endswith(PATH_SUFFIX) and lo.x.dtype == np.float32
    dist = np.linalg.norm(lo.fixed.x[:, None].astype(np.float64) - hi.fixed.x[None], axis=-1)
    assert len(lo.fixed) and np.all(dist.min(1) < 1e-4)


def test_networks_in_a_batch_get_what_each_gets_alone():
    maps = [_network(9, seed=s, gain=2.0) for s in (7, 8, 9)]
    rng = np.random.default_rng(10)
    starts = rng.uniform(-1, 1, size=(3, 64, 9))
    u = [rng.normal(size=(64, 2)) * 0.1 for _ in maps]
    batch = find_fixed_points_batch(maps, starts, u)
    for F, s, ui, got in zip(maps, starts, u, batch, strict=True):
        alone = find_fixed_points(F, s, ui)
        assert got.solver_path == alone.solver_path and got.solver_path.endswith(PATH_SUFFIX)
        assert len(got) == len(alone) and np.allclose(got.x, alone.x, atol=1e-12)
        assert np.array_equal(got.n_iters, alone.n_iters)
