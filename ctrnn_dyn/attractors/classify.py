"""Per-start verdicts on the long-run dynamics: fixed point, limit cycle, quasi-periodic,
chaotic, divergent."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn._base import jit_map
from ctrnn_dyn._batch import serial_lapack, vmap_over_maps
from ctrnn_dyn._checks import per_item, renamed
from ctrnn_dyn.attractors._benettin import benettin
from ctrnn_dyn.attractors._common import (
    Map,
    _as_u,
    _check_F,
    _check_nonneg_int,
    _check_positive,
    _check_state,
    _checked_maps,
    _known_options,
    _orbit,
    _precision,
    _run_batch,
    _same_shape,
)
from ctrnn_dyn.attractors.lyapunov import (
    _STEPS_PER_QR,
    _lyap_core_batch,
    _paths,
    _summarise_lyap,
)

logger = logging.getLogger(__name__)

#: Labels of :func:`classify_dynamics`, indexed by its ``codes``.
LABELS: tuple[str, ...] = ("fixed point", "limit cycle", "quasi-periodic", "chaotic", "divergent")


class DynamicsClassification(NamedTuple):
    r"""Per-start verdicts of :func:`classify_dynamics` and the numbers behind them.

    Attributes:
        labels: ``B`` strings from :data:`LABELS`.
        codes: ``(B,)`` indices into :data:`LABELS`.
        lyapunov: ``(B, k)`` leading Lyapunov exponents per unit time, descending.
        lyapunov_stderr: ``(B, k)`` their block standard errors.
        n_zero: ``(B,)`` exponents with :math:`|\lambda| \le` ``zero_tol``.
        zero_tol: ``(B,)`` the tolerance used per start (per unit time).
        speed: ``(B,)`` final speed :math:`\|F(x) - x\|/dt`.
        period: ``(B,)`` exact integer return time of the map (0 if none within the window).
        max_abs: ``(B,)`` largest :math:`|x_i|` seen.
        final_state: ``(B, n)``.
        qr_path: the code that re-orthonormalised the Lyapunov tangent basis
            (:func:`~ctrnn_dyn.attractors.lyapunov.qr_path`; ``""`` where not recorded).
        tangent_path: the code that stepped the state and the tangent basis
            (:func:`~ctrnn_dyn.attractors.lyapunov.tangent_path`; ``""`` where not recorded).
    """

    labels: tuple[str, ...]
    codes: np.ndarray
    lyapunov: np.ndarray
    lyapunov_stderr: np.ndarray
    n_zero: np.ndarray
    zero_tol: np.ndarray
    speed: np.ndarray
    period: np.ndarray
    max_abs: np.ndarray
    final_state: np.ndarray
    qr_path: str = ""
    tangent_path: str = ""


def _measure(F, xs, u, *, n_transient, n_blocks, block, k, n_recur, serial=False,
             kernels=False, tangents=False):
    """Device part of a verdict for starts ``xs (B, n)``: final states, the Lyapunov block sums,
    the largest ``|x|`` per block, the final step and the distances of the next ``n_recur``
    states from the final one (``serial``, ``kernels``: see
    :func:`~ctrnn_dyn.attractors.lyapunov._orthonormalise`; ``tangents``: all of it, the orbit
    included, on the compiled kernel of :mod:`~ctrnn_dyn.attractors._benettin`, where
    :func:`~ctrnn_dyn.attractors.lyapunov.tangent_path` said so)."""
    if tangents:  # the orbit that follows on the kernel too
        x_end, sums, maxabs, dist = benettin(
            F, xs, u, n_transient=n_transient, n_blocks=n_blocks, block=block, k=k,
            steps_per_qr=_STEPS_PER_QR, serial=serial, n_recur=n_recur)
        return x_end, sums, maxabs, dist[:, 0], dist
    x_end, sums, maxabs = _lyap_core_batch(F, xs, u, n_transient, n_blocks, block, k, serial,
                                           kernels)

    def recurrence(x):
        dist = jnp.linalg.norm(_orbit(F, x, u, n_recur)[1:] - x, axis=1)
        return dist[0], dist

    step_norm, dist = jax.vmap(recurrence)(x_end)
    return x_end, sums, maxabs, step_norm, dist


_STATIC = ("n_transient", "n_blocks", "block", "k", "n_recur", "kernels", "tangents")
_measure_one = jit_map(_measure, static_argnames=(*_STATIC, "serial"))


@jit_map(static_argnames=(*_STATIC, "mesh"))
def _measure_stacked(F, xs, u, *, n_transient, n_blocks, block, k, n_recur, kernels, tangents,
                     mesh):
    """:func:`_measure` for a stacked map (array leaves ``(E, ...)``), ``xs (E, B, n)`` and
    ``u (E, m)`` (or ``None``): every network in one program, split over ``mesh``'s devices
    (``None``: one device; ``E`` a multiple of their number)."""
    return vmap_over_maps(partial(_measure, n_transient=n_transient, n_blocks=n_blocks,
                                  block=block, k=k, n_recur=n_recur,
                                  serial=serial_lapack(mesh), kernels=kernels,
                                  tangents=tangents), mesh)(F, xs, u)


@renamed(starts="initial_states", u="inputs", precision="dtype")
def classify_dynamics(
    F: Map,
    initial_states: Any,
    inputs: Any = None,
    *,
    dt: float = 1.0,
    n_transient: int = 2000,
    n_steps: int = 20000,
    n_exponents: int | None = None,
    n_blocks: int = 20,
    zero_tol: float | None = None,
    speed_tol: float = 1e-6,
    recurrence_tol: float = 1e-7,
    n_recur: int = 1000,
    divergence_bound: float = 1e6,
    dtype: Any = np.float64,
) -> DynamicsClassification:
    r"""Name the long-run behaviour from each start.

    After ``n_transient`` steps, the leading Lyapunov exponents :math:`\lambda_1 \ge \dots` are
    measured over ``n_steps`` (QR method, all starts at once under ``vmap``), and then, in order:

    * **divergent** — non-finite states or :math:`\max|x| >` ``divergence_bound``;
    * **fixed point** — final speed :math:`\|F(x)-x\|/dt <` ``speed_tol`` (an unstable fixed
      point the run sits on exactly is still a fixed point; its exponents say it is unstable);
    * **chaotic** — :math:`\lambda_1 >` ``zero_tol``;
    * **limit cycle** — exactly one exponent with :math:`|\lambda| \le` ``zero_tol`` (the
      direction along the orbit), or :math:`\lambda_1 < -` ``zero_tol`` with an exact integer
      return :math:`F^P(x) = x` (a stable periodic orbit of the map);
    * **quasi-periodic** — two or more exponents with :math:`|\lambda| \le` ``zero_tol``;
    * otherwise **fixed point** (still converging: all exponents negative).

    ``zero_tol`` defaults to :math:`\max(10/(N\,dt),\ 4\,\mathrm{stderr}(\lambda_1))`: a zero
    exponent of a finite run of duration :math:`N\,dt` is only resolved to :math:`O(1/(N dt))`.
    Chaos with a small :math:`\lambda_1` needs a long enough run to be told from a cycle.

    Args:
        F: one-step map ``F(x, u)``.
        initial_states: ``(B, n)`` initial states (or ``(n,)`` for one).
        inputs: constant input ``(m,)`` or ``None``.
        dt: time per step.
        n_transient: steps discarded first.
        n_steps: steps over which exponents are measured.
        n_exponents: leading exponents to compute (default ``min(n, 4)``).
        n_blocks: blocks for the exponents' standard error.
        zero_tol: tolerance for a zero exponent, per unit time (default above).
        speed_tol: speed below which the state is at rest (per unit time).
        recurrence_tol: tolerance for an exact integer return of the map.
        n_recur: window searched for integer returns.
        divergence_bound: states larger than this count as divergent.
        dtype: ``np.float64`` (default, switched on locally) or ``np.float32`` (JAX's dtypes and
            the strings ``"float64"``/``"float32"`` also work).

    Returns:
        :class:`DynamicsClassification`.

    Raises:
        TypeError / ValueError: naming the bad argument.

    Example:
        >>> from ctrnn_dyn import systems
        >>> F = systems.SWITCH.map()
        >>> classify_dynamics(F, [[0.2], [0.9]], dt=0.01, n_steps=2000).labels
        ('fixed point', 'fixed point')
    """
    _check_F(F)
    arr, settings, verdict = _settings(initial_states, dt, n_transient, n_steps, n_exponents,
                                       n_blocks, zero_tol, speed_tol, recurrence_tol, n_recur,
                                       divergence_bound)
    paths = _paths(F, settings["k"])
    context, dtype = _precision(dtype)
    with context:
        raw = _measure_one(F, jnp.asarray(arr, dtype), _as_u(inputs, dtype), **settings,
                           kernels=paths[0] != "xla", tangents=paths[1] != "xla")
        raw = [np.asarray(a, np.float64) for a in raw]
    return _verdicts(*raw, **verdict, paths=paths)


def classify_dynamics_batch(
    maps: Sequence[Map],
    initial_states: Any,
    inputs: Any = None,
    *,
    devices: Any = "auto",
    **options: Any,
) -> list[DynamicsClassification]:
    r""":func:`classify_dynamics` for many maps of one shape (e.g. an ensemble's networks), all
    of them in one compiled program: their parameters are stacked along a leading network axis
    and the measurement is ``vmap`` -ped over it (maps whose static parts differ, e.g. cells with
    different Python ``alpha`` s, form one group and one program each).

    Args:
        maps: ``E`` one-step maps; pytree maps (:class:`~ctrnn_dyn.dynamics.OneStepMap`) are
            stacked, plain functions each form their own group.
        initial_states: ``(E, B, n)``, a list of ``E`` ``(B, n)`` arrays, or ``(B, n)`` shared.
        inputs: ``None``, ``(m,)`` shared, or ``(E, m)`` / a list of ``E`` ``(m,)`` per map.
        devices: split each group's networks over these devices (``shard_map``; the group is
            padded to a multiple of their number): ``"auto"`` (default: all devices when there
            are several), ``None``, a sequence of devices or a 1-axis ``Mesh``
            (:func:`ctrnn_dyn._batch.network_mesh`). On a CPU the cores are devices only when
            JAX starts with ``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>``.
        **options: as for :func:`classify_dynamics` (the same for every map).

    Returns:
        ``E`` :class:`DynamicsClassification` s, in the order of ``maps``; each equals what
        :func:`classify_dynamics` returns for that map (to floating-point reassociation).

    Raises:
        TypeError / ValueError: naming the bad argument.
    """
    maps = _checked_maps(maps)
    E = len(maps)
    starts = per_item(initial_states, E, "initial_states", ndim=2, item="map")
    us = per_item(inputs, E, "inputs", ndim=1, item="map")
    dtype = options.pop("dtype", np.float64)
    _known_options(options, _OPTIONS, "classify_dynamics_batch")
    arrs = []
    for x in starts:
        arr, settings, verdict = _settings(x, **{**_DEFAULTS, **options})
        arrs.append(arr)
    _same_shape(arrs, "initial_states")
    k = settings["k"]

    def run(F, xs, u, mesh):
        qr, tangents = _paths(F, k)  # the group's (its maps' static parts are the same)
        return _measure_stacked(F, xs, u, mesh=mesh, **settings, kernels=qr != "xla",
                                tangents=tangents != "xla")

    raw = _run_batch(maps, arrs, us, dtype, devices, run)
    return [_verdicts(*(np.asarray(a, np.float64) for a in r), **verdict, paths=_paths(F, k))
            for r, F in zip(raw, maps, strict=True)]


_DEFAULTS = dict(dt=1.0, n_transient=2000, n_steps=20000, n_exponents=None, n_blocks=20,
                 zero_tol=None, speed_tol=1e-6, recurrence_tol=1e-7, n_recur=1000,
                 divergence_bound=1e6)
_OPTIONS = tuple(_DEFAULTS)


def _settings(initial_states, dt, n_transient, n_steps, n_exponents, n_blocks, zero_tol,
              speed_tol, recurrence_tol, n_recur, divergence_bound):
    """Checked ``(starts (B, n), device settings, verdict settings)``."""
    arr = _check_state(initial_states, "initial_states", ndim=(1, 2))
    arr = arr.reshape(-1, arr.shape[-1])
    _check_positive(dt, "dt")
    _check_positive(n_steps, "n_steps", integer=True)
    _check_nonneg_int(n_transient, "n_transient")
    _check_positive(n_recur, "n_recur", integer=True)
    _check_positive(speed_tol, "speed_tol")
    _check_positive(divergence_bound, "divergence_bound")
    if zero_tol is not None:
        _check_positive(zero_tol, "zero_tol")
    n = arr.shape[1]
    k = min(n, 4) if n_exponents is None else n_exponents
    _check_positive(k, "n_exponents", integer=True)
    if k > n:
        raise ValueError(f"n_exponents must be <= n = {n}, got {k}")
    n_blocks = min(n_blocks, n_steps)
    block = n_steps // n_blocks
    settings = dict(n_transient=n_transient, n_blocks=n_blocks, block=block, k=k,
                    n_recur=n_recur)
    verdict = dict(block=block, n_blocks=n_blocks, dt=float(dt), zero_tol=zero_tol,
                   speed_tol=speed_tol, recurrence_tol=recurrence_tol,
                   divergence_bound=divergence_bound)
    return arr, settings, verdict


def _verdicts(x_end, sums, maxabs, step_norm, dist, *, block, n_blocks, dt, zero_tol,
              speed_tol, recurrence_tol, divergence_bound, paths) -> DynamicsClassification:
    """The verdicts from :func:`_measure`'s arrays (host NumPy, float64)."""
    maxabs = maxabs.max(axis=1)
    exponents, stderr, _ = _summarise_lyap(sums, block, dt)
    if zero_tol is None:
        zt = np.maximum(10.0 / (block * n_blocks * dt), 4.0 * np.nan_to_num(stderr[:, 0]))
    else:
        zt = np.full(x_end.shape[0], float(zero_tol))
    speed = step_norm / dt
    scale = np.maximum(1.0, np.abs(x_end).max(axis=1))
    hits = dist < recurrence_tol * scale[:, None]
    period = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    n_zero = np.sum(np.abs(exponents) <= zt[:, None], axis=1)

    lam1 = exponents[:, 0]
    finite = np.all(np.isfinite(x_end), axis=1) & np.all(np.isfinite(exponents), axis=1)
    # First matching verdict wins: divergent, fixed point, chaotic, cycle/torus on a zero mode;
    # otherwise contracting onto a periodic orbit of the map or a fixed point.
    codes = np.select(
        [~finite | (maxabs > divergence_bound), speed < speed_tol, lam1 > zt, lam1 >= -zt],
        [4, 0, 3, np.where(n_zero == 1, 1, 2)],
        default=np.where(period > 1, 1, 0),
    ).astype(np.int64)
    labels = tuple(LABELS[c] for c in codes)
    return DynamicsClassification(
        labels=labels,
        codes=codes,
        lyapunov=exponents,
        lyapunov_stderr=stderr,
        n_zero=n_zero,
        zero_tol=zt,
        speed=speed,
        period=period,
        max_abs=maxabs,
        final_state=x_end,
        qr_path=paths[0],
        tangent_path=paths[1],
    )
