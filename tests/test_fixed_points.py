"""ctrnn_dyn.fixed_points against independent ground truth (solve, brentq, scipy root, NumPy F)."""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import stat
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from flax import linen as nn
from helpers import count_compiles

from ctrnn_dyn import linear
from ctrnn_dyn.dynamics import one_step_map
from ctrnn_dyn.fixed_points import FixedPoints, find_fixed_points, sample_initial_states
from ctrnn_dyn.model import CTRNNCell
from ctrnn_dyn.systems import OSCILLATOR, SWITCH

# --------------------------------------------------------------------------------------------
# shared maps (module scope: each F compiles once)
# --------------------------------------------------------------------------------------------

ALPHA = 0.2


@pytest.fixture(scope="module")
def switch_map():
    return SWITCH.map()


@dataclasses.dataclass(frozen=True)
class LinearNet:
    """F(x) = (1 − α) x + α (K x + b) as a plain user function (no analytic .jacobian)."""

    K: tuple
    b: tuple
    alpha: float = ALPHA

    def __call__(self, x, u=None):
        K = jnp.asarray(self.K, x.dtype)
        b = jnp.asarray(self.b, x.dtype)
        return (1.0 - self.alpha) * x + self.alpha * (K @ x + b)


def _f32(a: np.ndarray) -> np.ndarray:
    """Round to float32: the map's params are float32, so the NumPy F must use the same values."""
    return np.asarray(a, np.float32).astype(np.float64)


def _ctrnn(K: np.ndarray, K_in: np.ndarray, b: np.ndarray, alpha: float):
    n = K.shape[0]
    cell = CTRNNCell(hidden_features=n, output_features=1, alpha=alpha, noise_const=0.0)
    params = {
        "params": {
            "recurrent_kernel": {"kernel": jnp.asarray(K), "bias": jnp.asarray(b)},
            "input_kernel": {"kernel": jnp.asarray(K_in)},
            "output_kernel": {"kernel": jnp.zeros((n, 1)), "bias": jnp.zeros(1)},
        }
    }
    return one_step_map(cell, params)


def _np_ctrnn(K, K_in, b, alpha):
    """Independent NumPy F of SCIENCE.md §1 (float64)."""

    def F(x, u):
        return (1.0 - alpha) * x + alpha * (np.tanh(x) @ K + b + u @ K_in)

    return F


H_PAT = 12


@pytest.fixture(scope="module")
def pattern_net():
    rng = np.random.default_rng(7)
    xi = rng.choice([-1.0, 1.0], size=(2, H_PAT))
    K = _f32((2.0 / H_PAT) * xi.T @ xi + rng.normal(0.0, 0.1 / np.sqrt(H_PAT), (H_PAT, H_PAT)))
    K_in = _f32(rng.normal(size=(1, H_PAT)))
    b = np.zeros(H_PAT)
    return _ctrnn(K, K_in, b, ALPHA), _np_ctrnn(K, K_in, b, ALPHA), K


@pytest.fixture(scope="module")
def random_net():
    rng = np.random.default_rng(11)
    K = _f32(rng.normal(0.0, 1.5 / np.sqrt(H_PAT), (H_PAT, H_PAT)))
    K_in = _f32(rng.normal(size=(1, H_PAT)))
    b = _f32(rng.normal(0.0, 0.1, H_PAT))
    return _ctrnn(K, K_in, b, ALPHA), _np_ctrnn(K, K_in, b, ALPHA), K


# --------------------------------------------------------------------------------------------
# ground truth: linear network, Beer's switch, the oscillator
# --------------------------------------------------------------------------------------------


def test_linear_network_fixed_point_is_solve_and_eigenvalues_are_numpys():
    rng = np.random.default_rng(0)
    K = rng.normal(0.0, 0.4, (3, 3))
    b = rng.normal(size=3)
    F = LinearNet(tuple(map(tuple, K)), tuple(b))
    starts = rng.normal(0.0, 2.0, (10, 3))
    fps = find_fixed_points(F, starts, left_eigvecs=True)
    x_star = np.linalg.solve(np.eye(3) - K, b)
    assert len(fps) == 1 and fps.converged.all()
    np.testing.assert_allclose(fps.x[0], x_star, rtol=1e-12, atol=1e-12)
    J_np = (1.0 - ALPHA) * np.eye(3) + ALPHA * K
    np.testing.assert_allclose(fps.jacobians[0], J_np, rtol=1e-12, atol=1e-14)
    ref = np.linalg.eigvals(J_np)
    for m in ref:
        assert np.min(np.abs(fps.eigvals[0] - m)) < 1e-12
    np.testing.assert_allclose(
        np.sort(np.abs(fps.eigvals[0]))[::-1], np.sort(np.abs(ref))[::-1], rtol=1e-12
    )
    L, R = fps.left_eigvecs[0], fps.eigvecs[0]
    np.testing.assert_allclose(L.conj().T @ R, np.eye(3), atol=1e-10)
    assert fps.u.shape == (1, 0)  # a user map without inputs


def test_switch_has_exactly_three_fixed_points_matching_brentq(switch_map):
    # SCIENCE.md §2: h = σ(8h − 4) at a fixed point of the rate switch.
    def g(h):
        return 1.0 / (1.0 + np.exp(-(8.0 * h - 4.0))) - h

    brackets = ((-1, 0.3), (0.3, 0.7), (0.7, 2))
    roots = [scipy.optimize.brentq(g, a, b, xtol=1e-15) for a, b in brackets]
    starts = np.linspace(-0.5, 1.5, 21)[:, None]
    fps = find_fixed_points(switch_map, starts)
    assert len(fps) == 3 and fps.converged.all() and len(fps.slow) == 0
    order = np.argsort(fps.x[:, 0])
    np.testing.assert_allclose(fps.x[order, 0], roots, atol=1e-10)
    np.testing.assert_array_equal(fps.n_unstable[order], [0, 1, 0])
    assert list(fps.stability[order]) == ["stable node", "unstable node", "stable node"]
    assert len(fps.stable) == 2
    assert np.all(fps.q <= 1e-20)
    # continuous time: λ = (μ − 1)/α = −1 + 8 σ'(8h − 4) for the rate switch (τ = 1)
    # (the map holds dt/τ = 0.01 in float32, 2.2e-8 relative off, hence rtol 1e-7)
    s = 1.0 / (1.0 + np.exp(-(8.0 * fps.x[order, 0] - 4.0)))
    np.testing.assert_allclose(
        fps.continuous_eigvals[order, 0].real, -1.0 + 8.0 * s * (1.0 - s), rtol=1e-7
    )


def test_oscillator_has_one_unstable_focus_at_half_half():
    rng = np.random.default_rng(1)
    fps = find_fixed_points(OSCILLATOR.map(), rng.uniform(-0.5, 1.5, (40, 2)))
    fixed = fps.fixed
    assert len(fixed) == 1
    np.testing.assert_allclose(fixed.x[0], [0.5, 0.5], atol=1e-10)
    assert fixed.stability[0] == "unstable focus" and fixed.n_unstable[0] == 2


# --------------------------------------------------------------------------------------------
# random and pattern networks vs an independent NumPy F and a scipy Newton multistart
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("net", ["pattern_net", "random_net"])
def test_networks_against_numpy_and_scipy_multistart(net, request):
    F, F_np, K = request.getfixturevalue(net)
    rng = np.random.default_rng(5)
    starts = rng.normal(0.0, 1.5, (32, H_PAT))
    u = np.array([0.3])
    fps = find_fixed_points(F, starts, u)
    fixed = fps.fixed
    assert len(fixed) >= 1
    for x in fixed.x:  # re-evaluated by an independent NumPy F
        r = F_np(x, u) - x
        assert 0.5 * r @ r <= 1e-20
    # scipy Newton (MINPACK hybrd) from the same starts
    centroid = starts.mean(0)
    scale = 10.0 * np.linalg.norm(starts - centroid, axis=1).mean()
    scipy_roots = []
    for x0 in starts:
        sol = scipy.optimize.root(lambda x: F_np(x, u) - x, x0, method="hybr", tol=1e-14)
        r = F_np(sol.x, u) - sol.x
        if 0.5 * r @ r < 1e-20 and np.linalg.norm(sol.x - centroid) <= scale:
            scipy_roots.append(sol.x)
    assert scipy_roots, "scipy found nothing: a broken test setup"
    for root in scipy_roots:
        assert np.min(np.linalg.norm(fixed.x - root, axis=1)) < 1e-8, "a fixed point we missed"
    # Jacobians equal jax.jacfwd and the analytic form at every returned point
    with jax.enable_x64(True):
        for x, J in zip(fixed.x, fixed.jacobians, strict=True):
            J_fwd = jax.jacfwd(lambda v: F.__call__(v, jnp.asarray(u)))(jnp.asarray(x))
            np.testing.assert_allclose(J, np.asarray(J_fwd), rtol=1e-12, atol=1e-13)
            J_np = (1 - ALPHA) * np.eye(H_PAT) + ALPHA * K.T * (1 - np.tanh(x) ** 2)[None, :]
            np.testing.assert_allclose(J, J_np, rtol=1e-12, atol=1e-13)


def test_the_gauss_newton_matrix_of_a_ctrnn_takes_every_start_where_products_with_j_do(
        random_net, monkeypatch):
    """The exact LM step built from the map's O(n²) Gauss–Newton matrix moves every start as
    the step built from d products with JᵀJ does: the same iterations, end points and roots."""
    from ctrnn_dyn.dynamics import OneStepMap

    F, F_np, _ = random_net
    starts = np.random.default_rng(3).normal(0.0, 1.5, (48, H_PAT))
    u = np.array([0.3])
    kw = dict(tol_unique=None, outlier_distance_scale=None, compute_jacobians=False,
              linear_solver="dense")
    built = find_fixed_points(F, starts, u, **kw)
    monkeypatch.setattr(OneStepMap, "gauss_newton", lambda self, dtype: None)
    jax.clear_caches()  # the solver's programs are traced again, without the matrix
    products = find_fixed_points(F, starts, u, **kw)
    np.testing.assert_array_equal(built.n_iters, products.n_iters)
    np.testing.assert_array_equal(built.converged, products.converged)
    np.testing.assert_allclose(built.x, products.x, rtol=0, atol=1e-10)
    assert built.converged.sum() >= 40
    for x in built.x[built.converged]:  # roots of an independent NumPy F
        r = F_np(x, u) - x
        assert 0.5 * r @ r <= 1e-20


# --------------------------------------------------------------------------------------------
# classification through the finder: hand-made 2-D maps of every class
# --------------------------------------------------------------------------------------------


def _rot(r, theta):
    return r * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


CLASS_MAPS = {
    "stable node": np.diag([0.5, 0.8]),
    "stable focus": _rot(0.9, 0.4),
    "saddle": np.array([[1.3, 0.2], [0.0, 0.6]]),
    "unstable node": np.diag([1.2, 1.5]),
    "unstable focus": _rot(1.1, 0.3),
    "marginal": np.diag([1.0, 0.5]),
}
CENTRE = np.array([0.3, -0.2])


def quad_map(x, u):
    """F(x) = c + A (x − c) + 0.05 (x − c)^3 with A = u.reshape(2, 2): a fixed point at c whose
    Jacobian is A (one compiled map for every class)."""
    c = jnp.asarray(CENTRE, x.dtype)
    A = u.reshape(2, 2)
    return c + A @ (x - c) + 0.05 * (x - c) ** 3


def test_classification_of_hand_made_maps_of_each_class():
    labels = list(CLASS_MAPS)
    # regular roots are found from an offset start; at the marginal map the root is degenerate
    # along the neutral direction (residual O(δ³)), so that one starts on it
    starts = np.tile(CENTRE + np.array([[0.05, -0.03]]), (len(labels), 1))
    starts[labels.index("marginal")] = CENTRE
    inputs = np.stack([CLASS_MAPS[k].ravel() for k in labels])
    fps = find_fixed_points(quad_map, starts, inputs, tol_unique=None)
    assert fps.converged.all()
    np.testing.assert_allclose(fps.x, np.tile(CENTRE, (len(labels), 1)), atol=1e-10)
    for i, label in enumerate(labels):
        np.testing.assert_allclose(fps.jacobians[i], CLASS_MAPS[label], atol=1e-12)
        assert fps.stability[i] == label
    np.testing.assert_array_equal(fps.n_unstable, [0, 0, 1, 2, 2, 0])
    assert set(np.flatnonzero(np.isin(fps.stability, ["stable node", "stable focus"]))) == {0, 1}


# --------------------------------------------------------------------------------------------
# Flax GRU / LSTM, pytree carries
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell_cls", [nn.GRUCell, nn.LSTMCell])
def test_flax_gru_and_lstm_through_one_step_map(cell_cls):
    cell = cell_cls(features=4)
    carry = cell.initialize_carry(jax.random.PRNGKey(0), (2,))
    params = cell.init(jax.random.PRNGKey(1), carry, jnp.ones(2))
    F = one_step_map(cell, params)
    d = F.state_size
    starts = np.random.default_rng(2).normal(0.0, 0.5, (8, d))
    u = np.array([0.2, -0.4])
    fps = find_fixed_points(F, starts, u)
    assert len(fps.fixed) >= 1
    with jax.enable_x64(True):
        for x in fps.fixed.x:
            x_next = np.asarray(F(jnp.asarray(x), jnp.asarray(u)))
            assert 0.5 * np.sum((x_next - x) ** 2) <= 1e-20


@pytest.mark.slow
def test_lstm_pytree_carry_is_raveled():
    """A user map on the LSTM's ``(c, h)`` carry gives the same points as ``one_step_map``."""
    cell = nn.LSTMCell(features=4)
    carry = cell.initialize_carry(jax.random.PRNGKey(0), (2,))
    params = cell.init(jax.random.PRNGKey(1), carry, jnp.ones(2))
    F = one_step_map(cell, params)
    starts = np.random.default_rng(2).normal(0.0, 0.5, (8, F.state_size))
    u = np.array([0.2, -0.4])
    fps = find_fixed_points(F, starts, u)

    def F_carry(c_h, u):
        cast = jax.tree_util.tree_map(lambda a: a.astype(c_h[0].dtype), params)
        new, _ = cell.apply(cast, c_h, u)
        return new

    fps2 = find_fixed_points(F_carry, (starts[:, :4], starts[:, 4:]), u)
    assert len(fps2.fixed) == len(fps.fixed) >= 1
    np.testing.assert_allclose(
        fps2.fixed.x[np.lexsort(fps2.fixed.x.T)],
        fps.fixed.x[np.lexsort(fps.fixed.x.T)],
        atol=1e-9,
    )


# --------------------------------------------------------------------------------------------
# container: indexing, unique, concatenate, pytree, save/load, summary
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def switch_all(switch_map):
    starts = np.linspace(-0.5, 1.5, 21)[:, None]
    return find_fixed_points(switch_map, starts, tol_unique=None, left_eigvecs=True)


def test_all_starts_returned_in_order_and_unique_keeps_lowest_q(switch_all):
    fps = switch_all
    assert len(fps) == 21
    np.testing.assert_array_equal(fps.x_init[:, 0], np.linspace(-0.5, 1.5, 21))
    assert fps.converged.all() and np.all(fps.n_iters >= 0)
    u = fps.unique(1e-3)
    assert len(u) == 3
    for x, q in zip(u.x, u.q, strict=True):
        members = np.linalg.norm(fps.x - x, axis=1) <= 1e-3
        assert q == fps.q[members].min()


def test_indexing_masks_and_subsets(switch_all):
    fps = switch_all
    assert len(fps[0]) == 1 and fps[0].x.shape == (1, 1)
    assert len(fps[2:5]) == 3
    assert len(fps[[0, 3, 4]]) == 3
    mask = fps.x[:, 0] > 0.5
    sub = fps[mask]
    assert len(sub) == int(mask.sum()) and sub.jacobians.shape == (len(sub), 1, 1)
    with pytest.raises(IndexError):
        fps[np.ones(3, bool)]
    with pytest.raises(IndexError):
        fps[21]
    assert len(fps.fixed) == 21 and len(fps.slow) == 0
    assert set(fps.stable.stability) == {"stable node"}


def test_concatenate_and_pytree(switch_all):
    fps = switch_all
    both = FixedPoints.concatenate([fps[:3], fps[3:]])
    for name in ("x", "q", "converged", "jacobians", "eigvals", "stability", "n_unstable"):
        np.testing.assert_array_equal(getattr(both, name), getattr(fps, name))
    leaves, treedef = jax.tree_util.tree_flatten(fps)
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    np.testing.assert_array_equal(back.stability, fps.stability)
    doubled = jax.tree_util.tree_map(lambda a: a, fps)
    np.testing.assert_array_equal(doubled.x, fps.x)
    no_jac = dataclasses.replace(fps[:2], jacobians=None)
    assert FixedPoints.concatenate([no_jac, fps[2:]]).jacobians is None
    with pytest.raises(ValueError, match="non-empty"):
        FixedPoints.concatenate([])


def test_save_load_round_trip_exact_and_corrupt_file_errors(switch_all, tmp_path):
    fps = switch_all
    path = tmp_path / "fps.npz"
    fps.save(path)
    back = FixedPoints.load(path)
    for name in (
        "x",
        "u",
        "q",
        "converged",
        "n_iters",
        "x_init",
        "jacobians",
        "eigvals",
        "eigvecs",
        "left_eigvecs",
        "n_unstable",
        "stability",
        "alpha",
    ):
        a, b = getattr(fps, name), getattr(back, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b)
    raw = path.read_bytes()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="not a valid FixedPoints"):
        FixedPoints.load(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match="not a valid FixedPoints"):
        FixedPoints.load(junk)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.ones(3))
    with pytest.raises(ValueError, match="missing fields"):
        FixedPoints.load(other)
    with pytest.raises(FileNotFoundError):
        FixedPoints.load(tmp_path / "absent.npz")


# --------------------------------------------------------------------------------------------
# FixedPoints files: every field validated before use, durable writes
# --------------------------------------------------------------------------------------------


def _good_fields() -> dict[str, np.ndarray]:
    """A valid file's arrays: N = 3 points of d = 5, no input, the linearisation included."""
    rng = np.random.default_rng(0)
    n, d = 3, 5
    return {
        "x": rng.normal(size=(n, d)),
        "u": np.zeros((n, 0)),
        "q": np.array([1e-20, 1e-3, np.nan]),
        "converged": np.array([True, False, False]),
        "n_iters": np.array([4, 100, 0], np.int64),
        "x_init": rng.normal(size=(n, d)),
        "jacobians": rng.normal(size=(n, d, d)),
        "eigvals": rng.normal(size=(n, d)) + 0j,
        "eigvecs": rng.normal(size=(n, d, d)) + 0j,
        "left_eigvecs": rng.normal(size=(n, d, d)) + 0j,
        "n_unstable": np.array([0, 2, 0], np.int64),
        "stability": np.array(["stable node", "saddle", ""]),
        "alpha": np.asarray(0.2),
        "format_version": np.asarray(1),
    }


def test_synthetic_file_loads_as_written(tmp_path):
    fields = _good_fields()
    np.savez(tmp_path / "ok.npz", **fields)
    fps = FixedPoints.load(tmp_path / "ok.npz")
    for name, value in fields.items():
        if name != "format_version":
            np.testing.assert_array_equal(getattr(fps, name), value)
    np.testing.assert_array_equal(fps.fixed.x, fields["x"][:1])
    np.savez_compressed(tmp_path / "zipped.npz", **fields)  # deflated members are read too
    np.testing.assert_array_equal(FixedPoints.load(tmp_path / "zipped.npz").x, fields["x"])


def _huge_x_header(path):
    """An npz whose x declares (40000, 30000) float64 = 9.6 GB and holds 120 bytes."""
    fields = _good_fields()
    del fields["x"]
    np.savez(path, **fields)
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        member, {"descr": "<f8", "fortran_order": False, "shape": (40000, 30000)}
    )
    member.write(np.zeros(15).tobytes())
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("x.npy", member.getvalue())


def _replaced(**changes):
    def make(path):
        np.savez(path, **{**_good_fields(), **changes})

    return make


def _converged_nan(path):
    fields = _good_fields()
    fields["converged"] = np.array([True, False, True])  # entry 2 has q = nan
    np.savez(path, **fields)


_STR = np.array([["a"] * 5] * 3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        # the cases FixedPoints.load used to accept or crash on
        (_replaced(x_init=np.zeros((3, 2))),
         r"field 'x_init' must have shape \(N, d\) = \(3, 5\) for x of shape \(3, 5\), "
         r"got \(3, 2\)"),
        (_replaced(jacobians=np.zeros((3, 4, 7))),
         r"field 'jacobians' must have shape \(N, d, d\) = \(3, 5, 5\) .* got \(3, 4, 7\)"),
        (_replaced(x=_STR), r"field 'x' must be a float array, got dtype <U1"),
        (_replaced(converged=np.array([1, 0, 0])),
         r"field 'converged' must be a bool array, got dtype int64"),
        (_replaced(x=np.zeros(3)), r"field 'x' must have shape \(N, d\) with d >= 1, got \(3,\)"),
        (_huge_x_header,
         r"field 'x' declares shape \(40000, 30000\) dtype float64 \(9600000000 bytes\) but "
         r"holds 120 bytes of data"),
        # the other fields
        (_replaced(u=np.zeros((2, 0))),
         r"field 'u' must have shape \(N, m\) = \(3, m\) .* got \(2, 0\)"),
        (_replaced(u=np.full((3, 1), np.inf)), r"field 'u' must be finite"),
        (_replaced(q=np.array([0, 1, 2])), r"field 'q' must be a float array, got dtype int64"),
        (_replaced(q=np.array([1e-20, -1.0, np.nan])), r"field 'q' must be >= 0"),
        (_replaced(n_iters=np.array([4.0, 1.0, 0.0])),
         r"field 'n_iters' must be an integer array, got dtype float64"),
        (_replaced(n_iters=np.array([4, -1, 0])), r"field 'n_iters' must be >= 0"),
        (_replaced(eigvals=np.zeros((3, 4), complex)),
         r"field 'eigvals' must have shape \(N, d\) = \(3, 5\)"),
        (_replaced(eigvecs=np.zeros((3, 5), complex)),
         r"field 'eigvecs' must have shape \(N, d, d\) = \(3, 5, 5\)"),
        (_replaced(left_eigvecs=np.zeros((3, 5, 5), bool)),
         r"field 'left_eigvecs' must be a float or complex array, got dtype bool"),
        (_replaced(n_unstable=np.array([0, 6, 0])), r"field 'n_unstable' must be in \[0, 5\]"),
        (_replaced(stability=np.array(["stable node", "wobbly", ""])),
         r"field 'stability' has unknown classes \['wobbly'\]"),
        (_replaced(stability=np.array([1, 2, 3])),
         r"field 'stability' must be a string array, got dtype int64"),
        (_replaced(alpha=np.array([0.1, 0.2])),
         r"field 'alpha' must have shape \(\) or \(d,\) = \(5,\), got \(2,\)"),
        (_replaced(alpha=np.asarray(-0.5)), r"field 'alpha' must be finite and > 0"),
        (_converged_nan, r"field 'converged' is true at entries \[2\] whose x or q is not finite"),
        (_replaced(x=np.array([[None] * 5] * 3, dtype=object)),
         r"field 'x' has dtype object holding Python objects"),
        (_replaced(format_version=np.array("1")),
         r"field 'format_version' must be an integer scalar"),
    ],
)
def test_load_rejects_bad_fields_naming_the_field(tmp_path, make, message):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(ValueError, match=f"is not a valid FixedPoints file: {message}") as err:
        FixedPoints.load(path)
    assert type(err.value) is ValueError


def test_save_is_durable_and_a_failed_save_leaves_the_old_file(switch_all, tmp_path, monkeypatch):
    path = tmp_path / "fps.npz"
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_mode),
                                                 real_fsync(fd)))
    switch_all.save(path)
    monkeypatch.undo()
    assert [stat.S_ISREG(m) for m in synced] == [True, False]  # the file, then its directory
    assert stat.S_ISDIR(synced[1])
    before = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        switch_all[:2].save(path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["fps.npz"]  # no temporary file left
    assert path.read_bytes() == before
    assert len(FixedPoints.load(path)) == len(switch_all)


def test_summary_table(switch_all):
    text = switch_all.unique(1e-3).summary()
    assert "unstable node" in text and "stable node" in text
    assert len(text.splitlines()) == 3 + 3


# --------------------------------------------------------------------------------------------
# options, validation, compile cache
# --------------------------------------------------------------------------------------------


def test_non_finite_starts_are_never_converged(switch_map):
    starts = np.array([[0.1], [np.nan], [np.inf], [0.9]])
    fps = find_fixed_points(switch_map, starts, tol_unique=None)
    np.testing.assert_array_equal(fps.converged, [True, False, False, True])
    assert np.isnan(fps.q[1]) and np.isnan(fps.q[2])
    assert len(find_fixed_points(switch_map, starts)) == 2


def test_bad_inputs_raise_clear_errors(switch_map, pattern_net):
    F = pattern_net[0]
    with pytest.raises(ValueError, match="initial_states must have shape"):
        find_fixed_points(switch_map, np.ones(3))
    with pytest.raises(ValueError, match="initial_states must have shape"):
        find_fixed_points(switch_map, np.ones((2, 1, 1)))
    with pytest.raises(ValueError, match="initial_states has width 3"):
        find_fixed_points(F, np.ones((4, 3)))
    with pytest.raises(ValueError, match="inputs has width 2"):
        find_fixed_points(F, np.ones((4, H_PAT)), np.ones(2))
    with pytest.raises(ValueError, match="inputs must have shape"):
        find_fixed_points(F, np.ones((4, H_PAT)), np.ones((3, 1)))
    with pytest.raises(ValueError, match="method must be one of"):
        find_fixed_points(switch_map, np.ones((2, 1)), method="adam")
    with pytest.raises(TypeError, match="dtype"):
        find_fixed_points(switch_map, np.ones((2, 1)), dtype=np.int32)
    with pytest.raises(ValueError, match="F must map a state"):
        find_fixed_points(lambda x, u: x[:1], np.ones((2, 2)))
    with pytest.raises(ValueError, match="tol_unique"):
        find_fixed_points(switch_map, np.ones((2, 1)), tol_unique=0.0)
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="coverage_damping must be > 0 or None"):
            find_fixed_points(switch_map, np.ones((2, 1)), coverage_damping=bad)
    with pytest.raises(TypeError, match="coverage_damping must be a float"):
        find_fixed_points(switch_map, np.ones((2, 1)), coverage_damping="0.01")
    for bad in (0.0, -1.0, np.inf):
        with pytest.raises(ValueError, match="damping must be > 0, got"):
            find_fixed_points(switch_map, np.ones((2, 1)), damping=bad)
    for bad in (None, True, "0.01"):
        with pytest.raises(TypeError, match="damping must be a float > 0, got"):
            find_fixed_points(switch_map, np.ones((2, 1)), damping=bad)


def test_second_call_with_same_shapes_compiles_nothing(switch_map):
    starts = np.linspace(-0.5, 1.5, 21)[:, None]
    find_fixed_points(switch_map, starts)
    with count_compiles() as events:
        fps = find_fixed_points(switch_map, starts + 1e-3)
    assert events == [] and len(fps) == 3


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"method": "lbfgs"}, marks=pytest.mark.slow),
        {"method": "gd"},
        {"method": "lm", "linear_solver": "cholesky"},
        {"method": "lm", "linear_solver": "dense"},
        {"method": "lm", "linear_solver": "cg"},
        {"method": "lm", "linear_solver": "cg", "mixed_precision": False},
    ],
)
def test_other_solvers_find_the_switch(switch_map, options):
    fps = find_fixed_points(switch_map, np.linspace(-0.5, 1.5, 21)[:, None], **options)
    assert len(fps.fixed) == 3 and np.all(fps.fixed.q <= 1e-20)
    with pytest.raises(ValueError, match="linear_solver"):
        find_fixed_points(switch_map, np.ones((2, 1)), linear_solver="qr")


def test_float32_on_request(switch_map):
    fps = find_fixed_points(switch_map, np.linspace(-0.5, 1.5, 11)[:, None], dtype=np.float32)
    assert fps.x.dtype == np.float32
    assert len(fps.fixed) == 3 and np.all(fps.fixed.q <= 1e-12)


def test_outliers_dropped(switch_map):
    # starts near the middle root 0.5 and one at 1.4 (which ends on the upper root ≈ 0.979)
    starts = np.concatenate([np.linspace(0.45, 0.55, 8)[:, None], [[1.4]]])
    keep = find_fixed_points(switch_map, starts, outlier_distance_scale=None, tol_unique=None)
    assert len(keep) == len(starts)
    # FixedPointFinder's rule by hand: distance to the starts' centroid over their mean distance
    centroid = starts.mean()
    ratio = np.abs(keep.x[:, 0] - centroid) / np.abs(starts[:, 0] - centroid).mean()
    scale = 0.5 * (ratio[-1] + ratio[:-1].max())  # between the upper root and the rest
    assert ratio[-1] > ratio[:-1].max()
    fps = find_fixed_points(switch_map, starts, outlier_distance_scale=scale, tol_unique=None)
    np.testing.assert_array_equal(fps.x_init, starts[:-1])


def test_slow_points_are_labelled_not_converged():
    # F(x) = x − 0.1 (x² + 0.01): no root, q has a local minimum at x = 0 with q = 5e-7
    def F(x, u):
        return x - 0.1 * (x**2 + 0.01)

    fps = find_fixed_points(F, np.array([[0.3], [-0.2]]), max_iters=50)
    assert len(fps.fixed) == 0 and len(fps.slow) == 1
    np.testing.assert_allclose(fps.slow.x[0], [0.0], atol=1e-6)
    np.testing.assert_allclose(fps.slow.q[0], 0.5 * 1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="stability was not computed"):
        _ = dataclasses.replace(fps, stability=None).stable


def test_sample_initial_states(key):
    states = jnp.arange(2 * 5 * 3, dtype=jnp.float32).reshape(2, 5, 3)
    s0 = sample_initial_states(states, 7, noise_scale=0.0, key=key)
    flat = np.asarray(states).reshape(-1, 3)
    assert s0.shape == (7, 3)
    for row in np.asarray(s0):
        assert np.any(np.all(flat == row, axis=1))
    s1 = sample_initial_states(states, 7, noise_scale=0.5, key=key)
    s2 = sample_initial_states(states, 7, noise_scale=0.5, key=key)
    np.testing.assert_array_equal(np.asarray(s1), np.asarray(s2))
    assert not np.allclose(np.asarray(s1), np.asarray(s0))
    with pytest.raises(ValueError, match="states must have shape"):
        sample_initial_states(jnp.ones(3), 2, noise_scale=0.1, key=key)
    with pytest.raises(ValueError, match="n must be"):
        sample_initial_states(states, 0, noise_scale=0.1, key=key)
    with pytest.raises(ValueError, match="noise_scale"):
        sample_initial_states(states, 2, noise_scale=-1.0, key=key)


def test_linear_classify_is_consistent_with_container(switch_all):
    res = linear.classify(switch_all.eigvals)
    np.testing.assert_array_equal(res.label, switch_all.stability)
