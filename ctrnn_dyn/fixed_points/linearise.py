"""The linearisation of the points found: Jacobians ``∂F/∂x`` (one jitted program, the map
traced), their eigendecomposition on the host (NumPy's LAPACK) and the stability classes."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import jax
import numpy as np
from threadpoolctl import ThreadpoolController

from ctrnn_dyn import linear
from ctrnn_dyn._base import jit_map
from ctrnn_dyn.fixed_points.container import FixedPoints
from ctrnn_dyn.fixed_points.rounds import _bucket
from ctrnn_dyn.fixed_points.solvers import _COMPILE


@jit_map(map_argname="F", compiler_options=_COMPILE)
def _jacobians(x, u, *, F):
    return jax.vmap(partial(linear.jacobian, F))(x, u)


_blas_lock = threading.Lock()
_blas: dict = {"users": 0}  # callers inside one_blas_thread(), their limiter, the controller


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS (NumPy's and SciPy's) held to one thread inside the block, the limit set by the
    first caller in and restored by the last one out: concurrent callers (threaded sweeps) never
    leave it behind. The libraries are looked up once, at the first call (a few ms; a limit then
    costs 20 µs)."""
    with _blas_lock:
        if _blas["users"] == 0:
            if "controller" not in _blas:
                _blas["controller"] = ThreadpoolController()
            _blas["limiter"] = _blas["controller"].limit(limits=1, user_api="blas")
        _blas["users"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas["users"] -= 1
            if _blas["users"] == 0:
                _blas.pop("limiter").restore_original_limits()


#: Smaller matrices are decomposed on the calling thread: 8 of 48 units took 4.6 ms there and
#: 5.3 ms on two threads, of 64 units 9.6 and 5.8 ms, of 128 units 61 and 33 ms.
_EIG_THREADS_MIN_D = 64


def _eig_host(J: np.ndarray, left: bool, workers: int = 1) -> linear.EigenDecomposition:
    """:func:`ctrnn_dyn.linear.eig`'s conventions with NumPy's LAPACK on the host (no compile per
    number of points, no padding), the matrices split over ``workers`` threads (from
    :data:`_EIG_THREADS_MIN_D` units). BLAS is held to one thread (:func:`one_blas_thread`):
    LAPACK's eigensolver gains nothing from more at these sizes, threads of their own
    oversubscribe the cores, and the bits do not depend on ``workers``."""
    with one_blas_thread():
        if workers > 1 and len(J) > 1 and J.shape[-1] >= _EIG_THREADS_MIN_D:
            parts = np.array_split(J, min(workers, len(J)))
            with ThreadPoolExecutor(len(parts)) as pool:
                done = list(pool.map(np.linalg.eig, parts))
            mu = np.concatenate([m.astype(complex) for m, _ in done])
            R = np.concatenate([v.astype(complex) for _, v in done])
        else:
            mu, R = np.linalg.eig(J)
    mu, R = mu.astype(complex), R.astype(complex)
    order = np.argsort(-np.abs(mu), axis=-1, kind="stable")
    mu = np.take_along_axis(mu, order, axis=-1)
    R = np.take_along_axis(R, order[..., None, :], axis=-1)
    L = None
    if left:
        try:
            inv = np.linalg.inv(R)
        except np.linalg.LinAlgError:  # a defective matrix: eigenvectors not a basis
            inv = np.linalg.pinv(R)
        L = np.conj(np.swapaxes(inv, -1, -2))
    return linear.EigenDecomposition(mu, R, L)



def add_linearisation(F, fps, no_input, decompose, left, marginal_tol,
                      workers: int = 1) -> FixedPoints:
    """``fps`` with the Jacobians at its finite points and, with ``decompose``, their
    eigendecompositions (on ``workers`` threads, :func:`_eig_host`) and stability classes."""
    ok = np.all(np.isfinite(fps.x), axis=1)
    n, d = fps.x.shape
    jac = np.full((n, d, d), np.nan, fps.x.dtype)
    fields: dict[str, Any] = {}
    if ok.any():
        idx = np.flatnonzero(ok)
        size = _bucket(idx.size, factor=2)
        pad = np.concatenate([idx, np.full(size - idx.size, idx[0])])
        x = fps.x[pad]
        u = None if no_input else fps.u[pad]
        jac[idx] = np.asarray(_jacobians(x, u, F=F))[: idx.size]
        if decompose:
            eigvals = np.full((n, d), np.nan + 0j)
            eigvecs = np.full((n, d, d), np.nan + 0j)
            lv = np.full((n, d, d), np.nan + 0j)
            good = idx[np.all(np.isfinite(jac[idx]), axis=(1, 2))]
            if good.size:
                dec = _eig_host(jac[good], left, workers)
                eigvals[good], eigvecs[good] = dec.eigvals, dec.eigvecs
                if left:
                    lv[good] = dec.left_eigvecs
            fields.update(eigvals=eigvals, eigvecs=eigvecs)
            if left:
                fields["left_eigvecs"] = lv
    fields["jacobians"] = jac
    if decompose:
        if "eigvals" not in fields:
            fields.update(
                eigvals=np.full((n, d), np.nan + 0j), eigvecs=np.full((n, d, d), np.nan + 0j)
            )
        stab = linear.classify(fields["eigvals"], marginal_tol=marginal_tol)
        fields.update(stability=stab.label, n_unstable=stab.n_unstable)
    return dataclasses.replace(fps, **fields)
