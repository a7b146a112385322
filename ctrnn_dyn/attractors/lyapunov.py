r"""Lyapunov spectra by Benettin's QR method: :math:`Q_{t+1}R_{t+1} = DF(x_t)\,Q_t`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ctrnn_dyn import native
from ctrnn_dyn._base import jit_map
from ctrnn_dyn._batch import serial_lapack, serial_when, vmap_over_maps
from ctrnn_dyn._checks import per_item, renamed
from ctrnn_dyn.attractors._benettin import benettin, on_kernel
from ctrnn_dyn.attractors._common import (
    Map,
    _as_u,
    _check_F,
    _check_nonneg_int,
    _check_positive,
    _check_state,
    _checked_maps,
    _known_options,
    _precision,
    _run_batch,
    _same_shape,
)

logger = logging.getLogger(__name__)


class LyapunovSpectrum(NamedTuple):
    r"""Lyapunov exponents by the QR (Benettin) method.

    Leading axis ``B`` present only when several starts were given.

    Attributes:
        exponents: ``([B,] k)`` exponents per unit time, descending.
        stderr: ``([B,] k)`` standard error from ``n_blocks`` block estimates (a convergence
            estimate; blocks are not independent, so read it as an order of magnitude).
        history: ``([B,] n_blocks, k)`` running estimate after each block (convergence plot).
        final_state: ``([B,] n)`` state at the end of the run.
        n_steps: steps averaged over (after ``n_transient``).
        dt: time per step.
        qr_path: the code that re-orthonormalised the tangent basis (:func:`qr_path`; ``""``
            where not recorded).
        tangent_path: the code that stepped the state and the tangent basis
            (:func:`tangent_path`; ``""`` where not recorded).
    """

    exponents: np.ndarray
    stderr: np.ndarray
    history: np.ndarray
    final_state: np.ndarray
    n_steps: int
    dt: float
    qr_path: str = ""
    tangent_path: str = ""

    @property
    def largest(self) -> np.ndarray:
        """``([B])`` the largest exponent."""
        return self.exponents[..., 0]

    @property
    def total(self) -> np.ndarray:
        """``([B])`` sum of the exponents (phase-space contraction rate when ``k = n``)."""
        return self.exponents.sum(-1)

    @property
    def kaplan_yorke_dimension(self) -> np.ndarray:
        r"""``([B])`` :math:`D_{KY} = j + \sum_{i\le j}\lambda_i / |\lambda_{j+1}|`, ``j`` the
        largest index with a non-negative partial sum."""
        lam = np.atleast_2d(self.exponents)
        out = np.empty(lam.shape[0])
        for b, row in enumerate(lam):
            csum = np.cumsum(row)
            j = int(np.sum(csum >= 0))
            if j == 0:
                out[b] = 0.0
            elif j == row.size:
                out[b] = float(row.size)
            else:
                out[b] = j + csum[j - 1] / abs(row[j])
        return out if self.exponents.ndim == 2 else out[0]


#: Up to this many exponents the tangent basis is re-orthonormalised by Gram–Schmidt in plain
#: vector operations (unrolled over the vectors), above it by LAPACK's Householder QR: under
#: ``vmap`` over starts and networks LAPACK is one call per small matrix (4 exponents, 100 units:
#: a classification of 64 networks on two host devices took 4.9 s with it, 3.9 s without).
_GRAM_SCHMIDT_MAX_K = 8

#: Benettin steps per re-orthonormalisation (and per iteration of the compiled loops): the QR of
#: a product of tangent maps equals the QR of each factor in turn (the diagonals of ``R``
#: multiply), so the basis need only be re-orthonormalised before its vectors lose their
#: independence; over two steps of the maps analysed here that is far away (their one-step
#: stretch ratios are O(10)). Half the Gram–Schmidt passes took a classification of 64 networks
#: of 100 units on two host devices from 3.14 to 2.78 s (medians of 3; the exponents agree to
#: 1e-15); four steps (2.61 s) were left for safety.
_STEPS_PER_QR = 2


def qr_path(k: int) -> str:
    """Which code re-orthonormalises Benettin's basis of ``k`` vectors: ``"kernels:<key>"``
    where Gram–Schmidt runs on the compiled kernel of :mod:`ctrnn_dyn.native` (``k <=``
    :data:`_GRAM_SCHMIDT_MAX_K`, on the CPU, once :func:`~ctrnn_dyn.native.prepare` — called
    here, on the host, before anything is traced — has built and loaded it; not inside
    :func:`~ctrnn_dyn.native.suspended`), else ``"xla"``."""
    if k <= _GRAM_SCHMIDT_MAX_K and native.prepare() and native.available():
        return f"kernels:{native.kernel_key()}"
    return "xla"


def tangent_path(F: Map, k: int) -> str:
    """Which code steps the state and the tangent basis of ``k`` vectors of Benettin's iteration
    for the map ``F``: ``"kernels:<key>"`` where the whole iteration (steps, tangents and their
    Gram–Schmidt) runs on the compiled kernel of :mod:`ctrnn_dyn.native`
    (:mod:`~ctrnn_dyn.attractors._benettin`: a :class:`~ctrnn_dyn.model.CTRNNCell` map with
    ``tanh`` or ``relu``, ``k <=`` :data:`_GRAM_SCHMIDT_MAX_K`, on the CPU, the kernels loaded and
    not :func:`~ctrnn_dyn.native.suspended`; decided on the host before tracing), else ``"xla"``
    (:func:`_lyap_core`). On the kernel :func:`qr_path` says the same."""
    if k <= _GRAM_SCHMIDT_MAX_K and on_kernel(F):
        return f"kernels:{native.kernel_key()}"
    return "xla"


def _paths(F: Map, k: int) -> tuple[str, str]:
    """``(qr_path, tangent_path)`` of Benettin's iteration of ``F`` with ``k`` vectors."""
    tangents = tangent_path(F, k)
    return (tangents if tangents != "xla" else qr_path(k)), tangents


def _orthonormalise(a, serial: bool = False, kernels: bool = False):
    r"""``(Q, |diag R|)`` of the thin QR of the ``k`` vectors ``a (k, n)`` (rows), ``Q (k, n)``.

    For ``k <=`` :data:`_GRAM_SCHMIDT_MAX_K`: classical Gram–Schmidt with every vector projected
    twice ("twice is enough": orthogonal to rounding while the vectors are not numerically
    dependent, as Benettin's basis, re-orthonormalised every :data:`_STEPS_PER_QR` steps, is
    not),

    .. math::

        v \leftarrow v - \sum_{i<j} (q_i^\top v)\, q_i \ \text{(twice)},\qquad
        |R_{jj}| = \lVert v \rVert,\qquad q_j = v / \lVert v \rVert,

    starting from :math:`v = a_j`; a vector with nothing left stays zero
    (:math:`|R_{jj}| = 0`); ``kernels``: by the compiled kernel of :mod:`ctrnn_dyn.native`
    (the batch of a ``vmap`` in one call, each basis finished in cache; spread over XLA's thread
    pool, or with ``serial`` on the calling thread). Above it LAPACK's QR, ``serial``: one call
    per matrix under ``vmap`` (:func:`ctrnn_dyn._batch.serial_lapack`)."""
    k = a.shape[0]
    if k > _GRAM_SCHMIDT_MAX_K:
        Q, R = serial_when(serial, lambda m: tuple(jnp.linalg.qr(m)))(a.T)
        return Q.T, jnp.abs(jnp.diagonal(R))
    if kernels:
        call = jax.ffi.ffi_call(native.GRAM_SCHMIDT_TARGET,
                                (jax.ShapeDtypeStruct(a.shape, a.dtype),
                                 jax.ShapeDtypeStruct(a.shape[:1], a.dtype)),
                                vmap_method="broadcast_all")
        return tuple(call(a, spread=not serial))
    rows, norms = [], []
    for j in range(k):
        v = a[j]
        for _ in range(2 if rows else 0):  # classical: every projection of the same v
            done = jnp.stack(rows)
            v = v - (done @ v) @ done
        norm = jnp.linalg.norm(v)
        rows.append(v / jnp.where(norm > 0, norm, 1.0))
        norms.append(norm)
    return jnp.stack(rows), jnp.stack(norms)


def _lyap_core(F, x0, u, n_transient: int, n_blocks: int, block: int, k: int,
               serial: bool = False, kernels: bool = False):
    """Benettin's QR iteration from ``x0``, the tangent basis held as rows ``(k, n)``;
    ``serial``, ``kernels``: see :func:`_orthonormalise`."""

    def advance(carry, n_steps):
        """``n_steps`` steps of the state and of the tangent rows, then one re-orthonormalisation:
        ``(carry, log |diag R|)``."""
        x, Q = carry
        for _ in range(n_steps):
            # DF(x) Q as k Jacobian-vector products: no (n, n) Jacobian is materialised per
            # step (under vmap over starts and networks it would not stay in cache)
            x, tangent = jax.linearize(lambda y: F(y, u), x)
            Q = jax.vmap(tangent)(Q)
        Q, r = _orthonormalise(Q, serial, kernels)
        return (x, Q), jnp.log(r)

    def run(carry, n_steps):
        """``n_steps`` steps in groups of :data:`_STEPS_PER_QR`: ``(carry, Σ log |diag R|)``."""
        groups, rest = divmod(n_steps, _STEPS_PER_QR)
        carry, logs = lax.scan(lambda c, _: advance(c, _STEPS_PER_QR), carry, None,
                               length=groups)
        total = logs.sum(0)
        if rest:
            carry, last = advance(carry, rest)
            total = total + last
        return carry, total

    # the transient settles the state *and* the tangent basis (Benettin's own transient)
    Q = jnp.eye(k, x0.shape[0], dtype=x0.dtype)
    carry, _ = run((x0, Q), n_transient)

    def block_fn(carry, _):
        carry, total = run(carry, block)
        return carry, (total, jnp.max(jnp.abs(carry[0])))

    (x, _), (sums, maxabs) = lax.scan(block_fn, carry, None, length=n_blocks)
    return x, sums, maxabs


def _lyap_core_batch(F, x0s, u, n_transient: int, n_blocks: int, block: int, k: int,
                     serial: bool = False, kernels: bool = False, tangents: bool = False):
    """:func:`_lyap_core` from the starts ``x0s (B, n)``; ``tangents``: all of it on the compiled
    kernel (where :func:`tangent_path` said so)."""
    if tangents:
        return benettin(F, x0s, u, n_transient=n_transient, n_blocks=n_blocks, block=block, k=k,
                        steps_per_qr=_STEPS_PER_QR, serial=serial)[:3]
    return jax.vmap(lambda x: _lyap_core(F, x, u, n_transient, n_blocks, block, k, serial,
                                         kernels))(x0s)


@jit_map(static_argnames=("n_transient", "n_blocks", "block", "k", "kernels", "tangents"))
def _lyap_batch(F, x0s, u, *, n_transient, n_blocks, block, k, kernels, tangents):
    return _lyap_core_batch(F, x0s, u, n_transient, n_blocks, block, k, kernels=kernels,
                            tangents=tangents)


def _summarise_lyap(sums: np.ndarray, block: int, dt: float):
    """``sums`` ``(B, n_blocks, k)`` of log|R_ii| per block → sorted rates, stderr, history."""
    n_blocks = sums.shape[1]
    rates = sums / (block * dt)  # per-block estimates
    history = np.cumsum(sums, axis=1) / (
        block * dt * np.arange(1, n_blocks + 1)[None, :, None]
    )
    exponents = history[:, -1]
    if n_blocks > 1:
        stderr = rates.std(axis=1, ddof=1) / np.sqrt(n_blocks)
    else:
        stderr = np.full_like(exponents, np.nan)
    order = np.argsort(-np.where(np.isnan(exponents), -np.inf, exponents), axis=1)
    exponents = np.take_along_axis(exponents, order, axis=1)
    stderr = np.take_along_axis(stderr, order, axis=1)
    history = np.take_along_axis(history, order[:, None, :], axis=2)
    return exponents, stderr, history


@renamed(u="inputs", precision="dtype")
def lyapunov_spectrum(
    F: Map,
    x0: Any,
    inputs: Any = None,
    *,
    n_steps: int,
    dt: float = 1.0,
    n_transient: int = 1000,
    n_exponents: int | None = None,
    n_blocks: int = 20,
    dtype: Any = np.float64,
) -> LyapunovSpectrum:
    r"""Lyapunov spectrum of the map ``F`` by Benettin's QR method, per unit time.

    .. math::

        Q_{t+1} R_{t+1} = DF(x_t)\,Q_t,\qquad
        \lambda_i = \frac{1}{N\,\Delta t}\sum_{t=1}^{N} \log |(R_t)_{ii}|,

    after ``n_transient`` steps to settle on the attractor (computed with one QR every second
    step: the QR of a product of two tangent maps, whose ``R``'s diagonal is the product of the
    two steps'). For a map sampled from a flow with
    step ``dt`` these are the flow's exponents (up to the discretisation error of the map);
    a limit cycle or chaotic flow has one exponent ≈ 0 along the flow direction.

    Args:
        F: one-step map ``F(x, u) -> x_next`` on unbatched arrays (``F.jacobian`` is used if
            present, else ``jax.jacfwd``).
        x0: start ``(n,)``, or ``(B, n)`` for several starts (vmapped).
        inputs: constant input ``(m,)`` or ``None`` (passed to ``F`` as is).
        n_steps: steps to average over (rounded down to a multiple of ``n_blocks``).
        dt: time per step; exponents are divided by it.
        n_transient: steps discarded first.
        n_exponents: how many leading exponents ``k`` (default all ``n``).
        n_blocks: blocks for the running history and the standard error.
        dtype: ``np.float64`` (default, switched on locally) or ``np.float32`` (JAX's dtypes and
            the strings ``"float64"``/``"float32"`` also work).

    Returns:
        :class:`LyapunovSpectrum` (exponents descending, with ``stderr`` and ``history``).

    Raises:
        TypeError / ValueError: naming the bad argument (shape, non-finite start, counts).

    Example:
        >>> import jax.numpy as jnp
        >>> F = lambda x, u: jnp.array([[0.5, 0.0], [0.0, 0.8]]) @ x
        >>> lyapunov_spectrum(F, jnp.ones(2), n_steps=100, n_blocks=10).exponents.round(4)
        array([-0.2231, -0.6931])
    """
    _check_F(F)
    arr, settings = _lyap_settings(x0, n_steps, dt, n_transient, n_exponents, n_blocks)
    paths = _paths(F, settings["k"])
    context, dtype = _precision(dtype)
    with context:
        xs = jnp.asarray(arr.reshape(-1, arr.shape[-1]), dtype)
        x_end, sums, _ = _lyap_batch(F, xs, _as_u(inputs, dtype), **settings,
                                     kernels=paths[0] != "xla", tangents=paths[1] != "xla")
        sums, x_end = np.asarray(sums, np.float64), np.asarray(x_end)
    return _spectrum(sums, x_end, arr.ndim == 1, settings, float(dt), paths)


def lyapunov_spectrum_batch(
    maps: Sequence[Map],
    x0: Any,
    inputs: Any = None,
    *,
    devices: Any = "auto",
    **options: Any,
) -> list[LyapunovSpectrum]:
    """:func:`lyapunov_spectrum` for many maps of one shape (e.g. an ensemble's networks) in one
    compiled program: their parameters stacked along a leading network axis, the QR iteration
    ``vmap`` -ped over it and split over ``devices`` (maps whose static parts differ form a
    group and a program each).

    Args:
        maps: ``E`` one-step maps (:class:`~ctrnn_dyn.dynamics.OneStepMap` s are stacked; a
            plain function is a group of its own).
        x0: ``(E, n)`` (a start per map) or ``(E, B, n)`` (``B`` per map), a list of ``E``
            starts of one shape, or ``(n,)``, one start shared by all maps.
        inputs: ``None``, ``(m,)`` shared, or ``(E, m)`` / a list of ``E`` ``(m,)`` per map.
        devices: as for :func:`~ctrnn_dyn.attractors.classify_dynamics_batch`.
        **options: as for :func:`lyapunov_spectrum` (``n_steps`` required), the same for all.

    Returns:
        ``E`` :class:`LyapunovSpectrum` s in the order of ``maps``; each what
        :func:`lyapunov_spectrum` returns for that map (to floating-point reassociation).

    Raises:
        TypeError / ValueError: naming the bad argument.
    """
    maps = _checked_maps(maps)
    _known_options(options, ("n_steps", "dt", "n_transient", "n_exponents", "n_blocks",
                             "dtype"), "lyapunov_spectrum_batch")
    if "n_steps" not in options:
        raise TypeError("lyapunov_spectrum_batch needs n_steps")
    E = len(maps)
    if isinstance(x0, list | tuple):
        starts = per_item(x0, E, "x0", item="map")
    else:
        arr = np.asarray(x0)
        if arr.ndim not in (1, 2, 3) or (arr.ndim > 1 and arr.shape[0] != E):
            raise ValueError(f"x0 must have shape (n,), ({E}, n) or ({E}, B, n), or be a list "
                             f"of {E} starts, got shape {arr.shape}")
        starts = [arr] * E if arr.ndim == 1 else list(arr)
    dt = options.get("dt", 1.0)
    kw = {k: options.get(k, d) for k, d in (("n_transient", 1000), ("n_exponents", None),
                                              ("n_blocks", 20))}
    arrs = []
    for x in starts:
        arr, settings = _lyap_settings(x, options["n_steps"], dt, **kw)
        arrs.append(arr)
    _same_shape(arrs, "x0")
    k = settings["k"]

    def run(F, xs, u, mesh):
        qr, tangents = _paths(F, k)  # the group's (its maps' static parts are the same)
        return _lyap_stacked(F, xs, u, mesh=mesh, **settings, kernels=qr != "xla",
                             tangents=tangents != "xla")[:2]

    raw = _run_batch(maps, [a.reshape(-1, a.shape[-1]) for a in arrs],
                     per_item(inputs, E, "inputs", ndim=1, item="map"),
                     options.get("dtype", np.float64), devices, run)
    return [_spectrum(np.asarray(sums, np.float64), x_end, a.ndim == 1, settings, float(dt),
                      _paths(F, k))
            for (x_end, sums), a, F in zip(raw, arrs, maps, strict=True)]


@jit_map(static_argnames=("n_transient", "n_blocks", "block", "k", "mesh", "kernels",
                          "tangents"))
def _lyap_stacked(F, xs, u, *, n_transient, n_blocks, block, k, mesh, kernels, tangents):
    """:func:`_lyap_core_batch` for a stacked map, ``xs (E, B, n)``, ``u (E, m)`` or ``None``,
    split over ``mesh`` (``None``: one device)."""
    return vmap_over_maps(partial(_lyap_core_batch, n_transient=n_transient, n_blocks=n_blocks,
                                  block=block, k=k, serial=serial_lapack(mesh), kernels=kernels,
                                  tangents=tangents),
                          mesh)(F, xs, u)


def _lyap_settings(x0, n_steps, dt, n_transient, n_exponents, n_blocks):
    """Checked ``(starts (n,) or (B, n), device settings)``."""
    arr = _check_state(x0, "x0", ndim=(1, 2))
    _check_positive(n_steps, "n_steps", integer=True)
    _check_positive(dt, "dt")
    _check_nonneg_int(n_transient, "n_transient")
    _check_positive(n_blocks, "n_blocks", integer=True)
    n = arr.shape[-1]
    k = n if n_exponents is None else n_exponents
    _check_positive(k, "n_exponents", integer=True)
    if k > n:
        raise ValueError(f"n_exponents must be <= n = {n}, got {k}")
    n_blocks = min(n_blocks, n_steps)
    return arr, dict(n_transient=n_transient, n_blocks=n_blocks, block=n_steps // n_blocks, k=k)


def _spectrum(sums, x_end, single, settings, dt, paths) -> LyapunovSpectrum:
    """The :class:`LyapunovSpectrum` of block sums ``(B, n_blocks, k)`` and end states;
    ``paths``: :func:`_paths`."""
    block, n_blocks = settings["block"], settings["n_blocks"]
    exponents, stderr, history = _summarise_lyap(sums, block, dt)
    if single:
        exponents, stderr, history, x_end = exponents[0], stderr[0], history[0], x_end[0]
    return LyapunovSpectrum(exponents, stderr, history, x_end, block * n_blocks, dt, *paths)
