"""The compiled Gram–Schmidt kernel of Benettin's QR iteration against NumPy's QR, and the
Lyapunov spectra and classifications on it against the same runs in XLA."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_classify_batch import _maps

from ctrnn_dyn import _checks, native
from ctrnn_dyn.attractors import (
    classify_dynamics,
    classify_dynamics_batch,
    lyapunov_spectrum,
    lyapunov_spectrum_batch,
)
from ctrnn_dyn.attractors.lyapunov import _GRAM_SCHMIDT_MAX_K, _orthonormalise, qr_path

pytestmark = pytest.mark.usefixtures("native_kernels")


def _kernel(a, spread=True):
    call = jax.ffi.ffi_call(native.GRAM_SCHMIDT_TARGET,
                            (jax.ShapeDtypeStruct(a.shape, a.dtype),
                             jax.ShapeDtypeStruct(a.shape[:-1], a.dtype)))
    q, r = call(jnp.asarray(a), spread=spread)
    return np.asarray(q), np.asarray(r)


def _numpy_qr(a):
    """Rows of ``Q`` with ``R``'s diagonal made positive, and ``|diag R|``, per basis."""
    Q, R = np.linalg.qr(np.swapaxes(a.astype(np.float64), -1, -2))
    sign = np.sign(np.diagonal(R, axis1=-2, axis2=-1))
    return np.swapaxes(Q * sign[..., None, :], -1, -2), np.abs(np.diagonal(R, axis1=-2, axis2=-1))


# n = 1, 7, 37: shorter than, and not a multiple of, the kernel's two vector registers
@pytest.mark.parametrize("k, n", [(1, 1), (3, 7), (4, 37), (4, 100), (8, 33), (5, 5)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_kernel_orthonormalises_as_numpy_qr_does(k, n, dtype):
    eps = np.finfo(dtype).eps
    rng = np.random.default_rng(k * 100 + n)
    with _checks.precision_context(dtype):
        a = rng.normal(size=(3, 5, k, n)).astype(dtype)
        q, r = _kernel(a)
    q_ref, r_ref = _numpy_qr(a)
    np.testing.assert_allclose(r, r_ref, rtol=50 * eps * np.sqrt(n), atol=0)
    np.testing.assert_allclose(q, q_ref, atol=100 * eps * np.sqrt(n))
    gram = np.einsum("...in,...jn->...ij", q.astype(np.float64), q.astype(np.float64))
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(k), gram.shape), atol=10 * eps * k)


def test_a_dependent_row_has_nothing_left_and_stays_zero():
    """A row in the span of the ones before it: ``|R_jj|`` at rounding level and the other rows
    as NumPy's; an all-zero row gives exactly zero, not NaN."""
    with _checks.precision_context(np.float64):
        rng = np.random.default_rng(1)
        a = rng.normal(size=(2, 4, 50))
        a[0, 2] = 2.0 * a[0, 0] - 0.5 * a[0, 1]
        a[1, 3] = 0.0
        q, r = _kernel(a)
    assert r[0, 2] < 1e-13 * np.linalg.norm(a[0, 2])
    np.testing.assert_array_equal(q[1, 3], 0.0)
    assert r[1, 3] == 0.0
    q_ref, r_ref = _numpy_qr(a[1, :3])
    np.testing.assert_allclose(q[1, :3], q_ref, atol=1e-14)


@pytest.mark.parametrize("batch", [1, 7, 2000])
def test_the_calling_thread_alone_gives_the_same_bits_as_the_pool(batch):
    with _checks.precision_context(np.float64):
        a = np.random.default_rng(batch).normal(size=(batch, 4, 100))
        spread, inline = _kernel(a, spread=True), _kernel(a, spread=False)
    for x, y in zip(spread, inline, strict=True):
        np.testing.assert_array_equal(x, y)


def test_under_nested_vmap_the_kernel_equals_xla():
    with _checks.precision_context(np.float64):
        a = jnp.asarray(np.random.default_rng(2).normal(size=(3, 6, 4, 40)))

        def run(kernels):
            return jax.jit(jax.vmap(jax.vmap(lambda m: _orthonormalise(m, kernels=kernels))))(a)

        (q1, r1), (q0, r0) = run(True), run(False)
    np.testing.assert_allclose(np.asarray(q1), np.asarray(q0), atol=1e-14)
    np.testing.assert_allclose(np.asarray(r1), np.asarray(r0), rtol=1e-14)


def test_the_path_follows_the_number_of_exponents_and_suspension():
    assert qr_path(4) == f"kernels:{native.kernel_key()}"
    assert qr_path(_GRAM_SCHMIDT_MAX_K + 1) == "xla"  # LAPACK's Householder QR
    with native.suspended():
        assert qr_path(4) == "xla"


#: 6-unit CT-RNNs from contracting to chaotic (gains 0.5 to 4), starts and an input
_, _, MAPS = _maps(4, 0)
STARTS = np.random.default_rng(0).normal(size=(4, 3, 6))
U = np.array([0.3, -0.2])


def test_lyapunov_spectra_on_the_kernel_equal_xla_and_say_which_path_ran():
    F, starts = MAPS[-1], STARTS[-1]
    on = lyapunov_spectrum(F, starts, U, n_steps=400, n_transient=50, n_exponents=4)
    with native.suspended():
        off = lyapunov_spectrum(F, starts, U, n_steps=400, n_transient=50, n_exponents=4)
    assert on.qr_path == f"kernels:{native.kernel_key()}" and off.qr_path == "xla"
    np.testing.assert_allclose(on.exponents, off.exponents, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(on.final_state, off.final_state, rtol=1e-12, atol=1e-12)
    (batch,) = lyapunov_spectrum_batch([F], starts[None], U, n_steps=400, n_transient=50,
                                       n_exponents=4)
    assert batch.qr_path == on.qr_path
    np.testing.assert_allclose(batch.exponents, on.exponents, rtol=1e-10, atol=1e-12)


def test_classifications_on_the_kernel_equal_xla_and_say_which_path_ran():
    kw = dict(n_transient=100, n_steps=600, n_exponents=3)
    on = classify_dynamics_batch(MAPS, STARTS, U, devices=None, **kw)
    with native.suspended():
        off = [classify_dynamics(F, s, U, **kw) for F, s in zip(MAPS, STARTS, strict=True)]
    assert len({label for c in on for label in c.labels}) > 1  # the networks differ
    for a, b in zip(on, off, strict=True):
        assert a.qr_path == f"kernels:{native.kernel_key()}" and b.qr_path == "xla"
        assert a.labels == b.labels
        np.testing.assert_allclose(a.lyapunov, b.lyapunov, rtol=1e-9, atol=1e-12)
