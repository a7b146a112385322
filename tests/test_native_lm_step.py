"""The compiled kernel of Levenberg–Marquardt's exact step against NumPy, and the fixed-point
finder on it against the finder on XLA's LAPACK calls."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctrnn_dyn import _checks, native
from ctrnn_dyn.dynamics import GaussNewton
from ctrnn_dyn.fixed_points import FixedPoints, find_fixed_points
from ctrnn_dyn.fixed_points.solvers import _gauss_newton_solve, _ridge_solve, linear_solve_path

pytestmark = pytest.mark.usefixtures("native_kernels")


def _systems(batch, d, dtype, seed=0, rank=None, normal=False):
    """``A = MᵀM`` (``M (d, d)`` of rank ``rank``, default ``d``: its other rows zero), ``b``, a
    ridge from 1e-6 to 1 of the largest diagonal entry; ``normal``: ``M`` in place of ``A``."""
    rng = np.random.default_rng(seed)
    M = np.zeros((*batch, d, d))
    M[..., : rank or d, :] = rng.normal(size=(*batch, rank or d, d))
    A = np.swapaxes(M, -1, -2) @ M
    b = rng.normal(size=(*batch, d))
    scale = np.max(np.diagonal(A, axis1=-2, axis2=-1), axis=-1)
    ridge = scale * 10.0 ** rng.uniform(-6, 0, size=batch)
    return (M if normal else A).astype(dtype), b.astype(dtype), ridge.astype(dtype)


def _kernel(A, b, ridge, spread=True, normal=False):
    call = jax.ffi.ffi_call(native.RIDGE_SOLVE_TARGET, jax.ShapeDtypeStruct(b.shape, b.dtype))
    return np.asarray(call(A, b, ridge, spread=spread, normal=normal))


# d <= 256: systems solved 8 (float32: 16) at a time across vector lanes (a batch of 12 leaves
# lanes empty; d = 37 and 101 leave rows of 4 incomplete), a group less than half full (a batch of
# 1; of 5 in float32) one by one along rows, as every system of d = 257
@pytest.mark.parametrize("d", [1, 5, 16, 37, 101, 257])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("normal", [False, True], ids=["JtJ", "J"])
def test_the_step_kernel_solves_the_ridge_systems_as_numpy_does(d, dtype, normal):
    eps = np.finfo(dtype).eps
    with _checks.precision_context(dtype):
        for batch, rank in (((3, 4), d), ((3, 4), max(1, d // 2)), ((1,), d), ((5,), d)):
            # full rank, and JᵀJ of a rank-deficient J
            given, b, ridge = _systems(batch, d, dtype, seed=d + rank, rank=rank, normal=normal)
            x = _kernel(jnp.asarray(given), jnp.asarray(b), jnp.asarray(ridge), normal=normal)
            M = given.astype(np.float64)
            A = np.swapaxes(M, -1, -2) @ M if normal else M
            assert x.dtype == dtype and x.shape == b.shape
            K = A.astype(np.float64) + ridge[..., None, None] * np.eye(d)
            xs = np.linalg.solve(K, b.astype(np.float64)[..., None])[..., 0]
            # backward stable (a small residual whatever the conditioning), and forward error
            # within the condition number
            residual = np.linalg.norm(np.einsum("...ij,...j->...i", K, x) - b, axis=-1)
            bound = 20 * d * eps * np.linalg.norm(K, 2, axis=(-2, -1)) * np.linalg.norm(x, axis=-1)
            assert np.all(residual <= bound + 10 * eps * np.linalg.norm(b, axis=-1))
            cond = np.linalg.cond(K)
            err = np.linalg.norm(x - xs, axis=-1) / np.linalg.norm(xs, axis=-1)
            assert np.all(err <= 20 * d * eps * cond)


@pytest.mark.parametrize(("batch", "d"), [(64, 120), (1000, 40), (8, 260)])
def test_the_calling_thread_alone_gives_the_same_bits_as_the_pool(batch, d):
    with _checks.precision_context(np.float64):
        A, b, ridge = _systems((batch,), d, np.float64, seed=3)
        spread = _kernel(jnp.asarray(A), jnp.asarray(b), jnp.asarray(ridge), spread=True)
        inline = _kernel(jnp.asarray(A), jnp.asarray(b), jnp.asarray(ridge), spread=False)
    np.testing.assert_array_equal(spread, inline)


def test_a_matrix_that_is_not_positive_definite_gives_nans_only_for_itself():
    with _checks.precision_context(np.float64):
        A, b, ridge = _systems((4,), 6, np.float64, seed=4)
        A[1] -= 1e3 * np.eye(6)  # indefinite
        A[2, 3, 3] = np.nan
        x = _kernel(jnp.asarray(A), jnp.asarray(b), jnp.asarray(ridge))
        xla = np.asarray(jax.vmap(_ridge_solve)(jnp.asarray(A), jnp.asarray(b),
                                                 jnp.asarray(ridge)))
    assert np.all(np.isnan(x[1])) and np.all(np.isnan(x[2]))
    assert np.all(np.isnan(xla[1]))  # as XLA's Cholesky does
    np.testing.assert_allclose(x[[0, 3]], xla[[0, 3]], rtol=1e-10)


@pytest.mark.parametrize("d", [16, 300])  # in lanes, and one by one
def test_a_system_with_a_negative_ridge_is_skipped_and_the_others_solved_as_alone(d):
    """Rows a loop has stopped pass ridge -1: their solution is zero, and the live systems get
    the bits they get without them (the live ones regrouped into lanes)."""
    with _checks.precision_context(np.float64):
        A, b, ridge = _systems((20,), d, np.float64, seed=9)
        stopped = np.zeros(20, bool)
        stopped[[0, 3, 4, 5, 11, 19]] = True
        x = _kernel(jnp.asarray(A), jnp.asarray(b), jnp.asarray(np.where(stopped, -1.0, ridge)))
        live = _kernel(jnp.asarray(A[~stopped]), jnp.asarray(b[~stopped]),
                       jnp.asarray(ridge[~stopped]))
        none = _kernel(jnp.asarray(A[:2]), jnp.asarray(b[:2]), -jnp.ones(2))
    np.testing.assert_array_equal(x[stopped], 0.0)
    np.testing.assert_array_equal(x[~stopped], live)
    np.testing.assert_array_equal(none, 0.0)
    K = A[~stopped] + ridge[~stopped, None, None] * np.eye(d)
    np.testing.assert_allclose(live, np.linalg.solve(K, b[~stopped][..., None])[..., 0],
                               rtol=1e-6)


@pytest.mark.parametrize("normal", [False, True], ids=["JtJ", "J"])
def test_under_vmap_the_kernel_path_equals_lapack(normal):
    with _checks.precision_context(np.float64):
        A, b, ridge = _systems((2, 32), 16, np.float64, seed=5, normal=normal)
        args = tuple(map(jnp.asarray, (A, b, ridge)))

        def solve(kernels):
            one = jax.vmap(lambda a, v, r: _ridge_solve(a, v, r, normal=normal,
                                                         kernels=kernels))
            return np.asarray(jax.jit(jax.vmap(one))(*args))

        np.testing.assert_allclose(solve(True), solve(False), rtol=1e-9)


def _gauss_newton_parts(d, seed, networks=None):
    """A CT-RNN's Gauss–Newton parts ``M = K A² Kᵀ``, ``P = K A²``, ``a2 = α²`` (per neuron),
    with a leading axis of ``networks`` if given, as NumPy float64."""
    rng = np.random.default_rng(seed)
    shape = () if networks is None else (networks,)
    K = 1.5 / np.sqrt(d) * rng.normal(size=(*shape, d, d))
    a2 = rng.uniform(0.05, 1.0, size=(*shape, d)) ** 2
    P = K * a2[..., None, :]
    return P @ np.swapaxes(K, -1, -2), P, a2


def _gauss_newton_matrix(M, P, a2, s):
    """``S M S − S P − (S P)ᵀ + diag(a2)`` in NumPy, batched over leading axes."""
    SP = s[..., :, None] * P
    return (s[..., :, None] * M * s[..., None, :] - SP - np.swapaxes(SP, -1, -2)
            + a2[..., :, None] * np.eye(M.shape[-1]))


def _gn_kernel(M, P, a2, s, b, ridge, spread=True):
    call = jax.ffi.ffi_call(native.GAUSS_NEWTON_SOLVE_TARGET,
                            jax.ShapeDtypeStruct(np.broadcast_shapes(b.shape, s.shape), b.dtype))
    return np.asarray(call(*map(jnp.asarray, (M, P, a2, s, b, ridge)), spread=spread))


# d = 16 and 100 in vector lanes (12 systems leave lanes empty), d = 257 one by one
@pytest.mark.parametrize("d", [16, 100, 257])
def test_the_gauss_newton_kernel_solves_the_ctrnn_step_as_numpy_does(d):
    rng = np.random.default_rng(d)
    M, P, a2 = _gauss_newton_parts(d, seed=d)
    s = rng.uniform(0.0, 1.0, size=(12, d))  # tanh's slopes, some near 0
    b = rng.normal(size=(12, d))
    ridge = 10.0 ** rng.uniform(-8, -1, size=12)
    with _checks.precision_context(np.float64):
        # the network's parts shared by every state (how vmap passes them), and the call
        # outside any vmap (no batch axes at all)
        x = _gn_kernel(M[None], P[None], a2[None], s, b, ridge)
        one = _gn_kernel(M, P, a2, s[3], b[3], ridge[3])
    K = _gauss_newton_matrix(M, P, a2, s) + ridge[:, None, None] * np.eye(d)
    expected = np.linalg.solve(K, b[..., None])[..., 0]
    err = np.linalg.norm(x - expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert np.all(err <= 1e3 * d * np.finfo(float).eps * np.linalg.cond(K)), err.max()
    np.testing.assert_allclose(one, x[3], rtol=1e-12, atol=0)


def test_the_gauss_newton_kernel_under_vmap_over_networks_and_states_equals_xla():
    """Parts batched over networks, slopes over networks and states: the kernel reads each
    network's parts for its states, as XLA's matrix and LAPACK solve do."""
    d, E, B = 12, 3, 10
    M, P, a2 = _gauss_newton_parts(d, seed=7, networks=E)
    rng = np.random.default_rng(8)
    xs = rng.normal(size=(E, B, d))
    b = rng.normal(size=(E, B, d))
    ridge = 10.0 ** rng.uniform(-6, 0, size=(E, B))
    slopes = jax.vmap(jax.grad(jnp.tanh))

    def solve(kernels):
        def one(M, P, a2, x, v, r):
            return _gauss_newton_solve(GaussNewton(M, P, a2, slopes), x, v, r, kernels=kernels)

        per_state = jax.vmap(one, in_axes=(None, None, None, 0, 0, 0))
        return np.asarray(jax.jit(jax.vmap(per_state))(*map(jnp.asarray,
                                                            (M, P, a2, xs, b, ridge))))

    with _checks.precision_context(np.float64):
        on, off = solve(True), solve(False)
    np.testing.assert_allclose(on, off, rtol=1e-9)
    K = (_gauss_newton_matrix(M[:, None], P[:, None], a2[:, None], 1.0 - np.tanh(xs) ** 2)
         + ridge[..., None, None] * np.eye(d))
    expected = np.linalg.solve(K, b[..., None])[..., 0]
    err = np.linalg.norm(on - expected, axis=-1) / np.linalg.norm(expected, axis=-1)
    assert np.all(err <= 1e3 * d * np.finfo(float).eps * np.linalg.cond(K)), err.max()


def test_the_gauss_newton_kernel_rejects_parts_of_another_batch():
    M, P, a2 = _gauss_newton_parts(4, seed=1, networks=3)
    with _checks.precision_context(np.float64), pytest.raises(Exception, match="leading"):
        _gn_kernel(M, P, a2, np.ones((2, 4)), np.ones((2, 4)), np.ones(2))


def _gain_two_ctrnn(d=16, seed=0):
    """A random tanh CT-RNN map at α = 1 with gain 2 (many fixed points), and its NumPy twin."""
    rng = np.random.default_rng(seed)
    W = 2.0 / np.sqrt(d) * rng.normal(size=(d, d))
    b = 0.1 * rng.normal(size=d)

    def F(x, u=None):
        return jnp.tanh(x @ W + b)

    return F, (lambda x: np.tanh(x @ W + b)), rng.normal(size=(256, d))


def test_the_finder_on_the_kernel_finds_what_it_finds_on_lapack_and_says_so():
    F, f_np, starts = _gain_two_ctrnn()
    on = find_fixed_points(F, starts, tol_unique=None, compute_jacobians=False,
                           coverage_damping=None)
    with native.suspended():
        off = find_fixed_points(F, starts, tol_unique=None, compute_jacobians=False,
                                coverage_damping=None)
    assert on.solver_path == f"kernels:{native.kernel_key()}" and off.solver_path == "xla"
    same = np.all(np.abs(on.x - off.x) < 1e-8, axis=1)
    assert same.mean() >= 0.98, same.mean()  # a step's rounding may tip a start elsewhere
    assert abs(int(on.n_iters.sum()) - int(off.n_iters.sum())) <= 0.02 * off.n_iters.sum()
    for fps in (on, off):
        fixed = fps.x[fps.converged]
        assert len(fixed) > 0.9 * len(starts)
        assert np.max(np.linalg.norm(f_np(fixed) - fixed, axis=1)) < 1e-9
    a = np.unique(np.round(on.unique(1e-3).fixed.x, 5), axis=0)
    b = np.unique(np.round(off.unique(1e-3).fixed.x, 5), axis=0)
    assert len(a) == len(b) > 1


def test_the_path_is_recorded_saved_and_combined(tmp_path):
    F, _, starts = _gain_two_ctrnn(d=4, seed=1)
    fps = find_fixed_points(F, starts[:32])
    assert fps.solver_path.startswith("kernels:")
    assert "solved by kernels:" in fps.summary().splitlines()[0]
    fps.save(tmp_path / "fps.npz")
    assert FixedPoints.load(tmp_path / "fps.npz").solver_path == fps.solver_path
    xla = find_fixed_points(F, starts[:32], linear_solver="cg")  # no exact steps: XLA's CG
    assert xla.solver_path == "xla"
    assert FixedPoints.concatenate([fps, fps]).solver_path == fps.solver_path
    assert FixedPoints.concatenate([fps, xla]).solver_path is None
    assert linear_solve_path("lbfgs", "dense") == "xla"
    with native.suspended():
        assert linear_solve_path("lm", "dense") == "xla"
