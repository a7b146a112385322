r"""Principal components of network states (scikit-learn's PCA over trajectory arrays).

States from a rollout come as ``(batch, time, hidden)``; PCA needs ``(samples, hidden)``.
:class:`TrajectoryPCA` flattens the leading axes to fit, and restores them when it
transforms, so trajectories, fixed points ``(N, n)`` and single states ``(n,)`` all go through
the same projection

.. math::

    z = (x - \bar x)\,C^\top, \qquad C \in \mathbb{R}^{k\times n}\ \text{(rows = components)}.

Directions (eigenvectors, unstable modes, readout weights) are *not* centred:
:math:`z_v = v\,C^\top` (see :meth:`TrajectoryPCA.transform_directions`).

Example:
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(4, 50, 10))
    >>> pca = TrajectoryPCA(3).fit(X)
    >>> pca.transform(X).shape
    (4, 50, 3)
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sklearn.decomposition import PCA

__all__ = ["TrajectoryPCA"]


def _as_states(states, name: str, n_features: int | None = None) -> np.ndarray:
    """Validate a real state array ``(..., n)``; return it as a float NumPy array."""
    try:
        arr = np.asarray(states)
    except Exception as exc:  # re-raised with the argument's name
        raise TypeError(f"{name} must be an array of shape (..., n), got {type(states)}") from exc
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim < 1:
        raise ValueError(f"{name} must have shape (..., n), got a scalar")
    if n_features is not None and arr.shape[-1] != n_features:
        raise ValueError(
            f"{name} must have last axis of length n = {n_features} (the fitted width), "
            f"got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return arr.astype(np.float64, copy=False)


class TrajectoryPCA:
    """PCA of states shaped ``(B, T, n)`` or ``(N, n)`` that keeps the leading shape.

    A thin wrapper over :class:`sklearn.decomposition.PCA` (fitted in float64): ``fit`` flattens
    every axis but the last, ``transform`` maps ``(..., n) -> (..., k)``.

    Args:
        n_components: number of components ``k`` (an int ``1 <= k <= min(samples, n)``), or a
            float in ``(0, 1)``: keep enough components to explain that fraction of variance.
        whiten: passed to sklearn (default ``False``).

    Attributes (after ``fit``):
        components_: ``(k, n)`` principal axes (rows, unit norm).
        mean_: ``(n,)`` mean state.
        explained_variance_: ``(k,)`` variance along each axis.
        explained_variance_ratio_: ``(k,)`` fraction of total variance along each axis.
        cumulative_variance_ratio_: ``(k,)`` running sum of ``explained_variance_ratio_``.
        n_features_: ``n``.
        sklearn_pca: the fitted sklearn estimator.
    """

    def __init__(self, n_components: int | float = 3, *, whiten: bool = False) -> None:
        if isinstance(n_components, bool) or not isinstance(n_components, numbers.Real):
            raise TypeError(
                f"n_components must be an int >= 1 or a float in (0, 1), got {n_components!r}"
            )
        if isinstance(n_components, numbers.Integral):
            if n_components < 1:
                raise ValueError(f"n_components must be >= 1, got {n_components}")
            n_components = int(n_components)
        elif not 0.0 < float(n_components) < 1.0:
            raise ValueError(
                f"n_components as a float must lie in (0, 1) (variance to keep), "
                f"got {n_components}"
            )
        self.n_components = n_components
        self.whiten = whiten
        self.sklearn_pca: PCA | None = None

    # ----------------------------------------------------------------------------- fitting
    def fit(self, states) -> TrajectoryPCA:
        """Fit on states ``(B, T, n)``, ``(N, n)`` (any ``(..., n)`` with >= 2 axes).

        Raises:
            ValueError: ``states`` has fewer than 2 axes, non-finite values, or
                ``n_components`` exceeds ``min(samples, n)``.
        """
        arr = _as_states(states, "states")
        if arr.ndim < 2:
            raise ValueError(
                f"states must have shape (B, T, n) or (N, n), got {arr.shape}"
            )
        flat = arr.reshape(-1, arr.shape[-1])
        n_samples, n_features = flat.shape
        if isinstance(self.n_components, int) and self.n_components > min(n_samples, n_features):
            raise ValueError(
                f"n_components={self.n_components} is larger than the data allows: "
                f"min(samples, n) = min({n_samples}, {n_features}) = {min(n_samples, n_features)}"
            )
        from sklearn.decomposition import PCA  # imported on first fit: it costs ~2 s

        pca = PCA(n_components=self.n_components, whiten=self.whiten, svd_solver="full")
        pca.fit(flat)
        self.sklearn_pca = pca
        return self

    def fit_transform(self, states) -> np.ndarray:
        """``fit(states)`` then ``transform(states)``: ``(..., n) -> (..., k)``."""
        return self.fit(states).transform(states)

    def _check_fitted(self) -> PCA:
        if self.sklearn_pca is None:
            raise RuntimeError("TrajectoryPCA is not fitted yet: call fit(states) first")
        return self.sklearn_pca

    # ----------------------------------------------------------------------------- mapping
    def transform(self, states) -> np.ndarray:
        r"""Project states: :math:`z = (x - \bar x) C^\top`, ``(..., n) -> (..., k)``.

        Works for trajectories ``(B, T, n)``, fixed points ``(N, n)`` and one state ``(n,)``.
        """
        pca = self._check_fitted()
        arr = _as_states(states, "states", pca.n_features_in_)
        flat = arr.reshape(-1, arr.shape[-1])
        return pca.transform(flat).reshape(*arr.shape[:-1], pca.n_components_)

    def inverse_transform(self, z) -> np.ndarray:
        r"""Lift PCA coordinates back to state space: :math:`x = z C + \bar x`, ``(..., k) ->
        (..., n)`` (exact only on the fitted subspace)."""
        pca = self._check_fitted()
        arr = _as_states(z, "z", pca.n_components_)
        flat = arr.reshape(-1, arr.shape[-1])
        return pca.inverse_transform(flat).reshape(*arr.shape[:-1], pca.n_features_in_)

    def transform_directions(self, directions) -> np.ndarray:
        r"""Project directions without centring: :math:`z_v = v\,C^\top`, ``(..., n) -> (..., k)``.

        For eigenvectors, unstable modes and readout weights. Complex directions (eigenvectors
        of complex eigenvalues) project to complex coordinates (real and imaginary parts
        separately). Whitening, if on, is not applied.
        """
        pca = self._check_fitted()
        arr = np.asarray(directions)
        if arr.ndim < 1 or arr.shape[-1] != pca.n_features_in_:
            raise ValueError(
                f"directions must have shape (..., n) with n = {pca.n_features_in_}, "
                f"got {arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError("directions contains non-finite values (nan or inf)")
        return arr @ pca.components_.T

    # ----------------------------------------------------------------------------- results
    @property
    def components_(self) -> np.ndarray:
        return self._check_fitted().components_

    @property
    def mean_(self) -> np.ndarray:
        return self._check_fitted().mean_

    @property
    def n_components_(self) -> int:
        return int(self._check_fitted().n_components_)

    @property
    def n_features_(self) -> int:
        return int(self._check_fitted().n_features_in_)

    @property
    def explained_variance_(self) -> np.ndarray:
        return self._check_fitted().explained_variance_

    @property
    def explained_variance_ratio_(self) -> np.ndarray:
        return self._check_fitted().explained_variance_ratio_

    @property
    def cumulative_variance_ratio_(self) -> np.ndarray:
        return np.cumsum(self._check_fitted().explained_variance_ratio_)

    def __repr__(self) -> str:
        fitted = "fitted" if self.sklearn_pca is not None else "unfitted"
        return f"TrajectoryPCA(n_components={self.n_components!r}, {fitted})"
