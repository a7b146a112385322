"""TrajectoryPCA against scikit-learn's PCA on the flattened array."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.decomposition import PCA

from ctrnn_dyn.pca import TrajectoryPCA


@pytest.fixture
def states():
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(3, 8))
    z = rng.normal(size=(5, 40, 3)) * np.array([3.0, 1.0, 0.3])
    return z @ mix + 0.01 * rng.normal(size=(5, 40, 8)) + 2.0


def test_transform_equals_sklearn_on_flattened(states):
    pca = TrajectoryPCA(3)
    z = pca.fit_transform(states)
    ref = PCA(3).fit(states.reshape(-1, 8))
    assert z.shape == (5, 40, 3)
    # sign of each component is sklearn's convention in both (same solver family)
    np.testing.assert_allclose(z.reshape(-1, 3), ref.transform(states.reshape(-1, 8)),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(pca.explained_variance_ratio_, ref.explained_variance_ratio_,
                               rtol=1e-10)
    np.testing.assert_allclose(pca.cumulative_variance_ratio_,
                               np.cumsum(ref.explained_variance_ratio_), rtol=1e-10)
    assert pca.cumulative_variance_ratio_[-1] > 0.99  # three latent factors
    np.testing.assert_allclose(pca.mean_, states.reshape(-1, 8).mean(0), rtol=1e-12)


def test_shapes_points_single_state_and_jax_input(states):
    pca = TrajectoryPCA(2).fit(jnp.asarray(states))
    assert pca.n_components_ == 2 and pca.n_features_ == 8
    assert pca.transform(states[0]).shape == (40, 2)
    assert pca.transform(states[0, 0]).shape == (2,)
    np.testing.assert_allclose(pca.transform(states[0, 0]), pca.transform(states)[0, 0])
    # (N, n) fit gives the same axes as (B, T, n)
    flat = TrajectoryPCA(2).fit(states.reshape(-1, 8))
    np.testing.assert_allclose(np.abs(flat.components_), np.abs(pca.components_), atol=1e-10)
    back = pca.inverse_transform(pca.transform(states))
    assert back.shape == states.shape


def test_directions_are_not_centred(states):
    pca = TrajectoryPCA(3).fit(states)
    C = pca.components_
    v = np.random.default_rng(1).normal(size=(4, 8))
    np.testing.assert_allclose(pca.transform_directions(v), v @ C.T, rtol=1e-12)
    # transform of x + v minus transform of x = direction's projection
    x = states[0, :4]
    np.testing.assert_allclose(pca.transform(x + v) - pca.transform(x),
                               pca.transform_directions(v), atol=1e-10)
    vc = v + 1j * v[::-1]  # complex eigenvectors
    out = pca.transform_directions(vc)
    assert np.iscomplexobj(out)
    np.testing.assert_allclose(out.imag, v[::-1] @ C.T, rtol=1e-12)


def test_fractional_n_components(states):
    pca = TrajectoryPCA(0.95).fit(states)
    ref = PCA(0.95, svd_solver="full").fit(states.reshape(-1, 8))
    assert pca.n_components_ == ref.n_components_


def test_bad_inputs_name_the_argument(states):
    with pytest.raises(ValueError, match="n_components"):
        TrajectoryPCA(0)
    with pytest.raises(ValueError, match="n_components"):
        TrajectoryPCA(1.5)
    with pytest.raises(TypeError, match="n_components"):
        TrajectoryPCA("3")
    with pytest.raises(ValueError, match="n_components=9 is larger than the data allows"):
        TrajectoryPCA(9).fit(states)
    with pytest.raises(ValueError, match="n_components=5 is larger"):
        TrajectoryPCA(5).fit(states[0, :4])
    with pytest.raises(ValueError, match="states must have shape"):
        TrajectoryPCA(2).fit(states[0, 0])
    bad = states.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="states contains non-finite"):
        TrajectoryPCA(2).fit(bad)
    pca = TrajectoryPCA(2)
    with pytest.raises(RuntimeError, match="not fitted"):
        pca.transform(states)
    pca.fit(states)
    with pytest.raises(ValueError, match="last axis of length n = 8"):
        pca.transform(states[..., :5])
    with pytest.raises(ValueError, match="directions"):
        pca.transform_directions(np.ones(3))
    with pytest.raises(TypeError, match="states must be a real numeric array"):
        pca.transform(np.array(["a", "b"]))
