r"""Linearisation of a one-step map: Jacobians, eigen-decomposition, stability classes.

At a point :math:`x^*` of the map ``F(x, u)`` the linearisation is
:math:`\delta x_{t+1} = J\,\delta x_t` with :math:`J = \partial F/\partial x`. For the CT-RNN

.. math::

    J = (1-\alpha) I + \alpha\, K_\mathrm{rec}^\top \operatorname{diag} f'(x^*),

and the continuous-time Jacobian is :math:`A = (J - I)/\alpha` (units of :math:`1/\tau`), so
each map multiplier :math:`\mu` of ``J`` gives a continuous eigenvalue
:math:`\lambda = (\mu - 1)/\alpha`.
Discrete stability means every :math:`|\mu| < 1`; continuous stability every
:math:`\operatorname{Re}\lambda < 0`; they agree only as :math:`\alpha \to 0`.

Everything here is plain JAX on unbatched arrays (``vmap`` at the call site), except
:func:`classify`, which returns strings and therefore works on host NumPy arrays. This module does
not import Flax: any ``F`` with a ``jacobian(x, u)`` method (such as
:class:`ctrnn_dyn.dynamics.OneStepMap`, whose CT-RNN Jacobian is analytic) uses that method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn._checks import renamed

__all__ = [
    "STABILITY_CLASSES",
    "EigenDecomposition",
    "Stability",
    "jacobian",
    "input_jacobian",
    "eig",
    "continuous_eigvals",
    "classify",
]

STABILITY_CLASSES = (
    "stable node",
    "stable focus",
    "saddle",
    "unstable node",
    "unstable focus",
    "marginal",
)

Map = Callable[..., jax.Array]


def _as_float(x: Any) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


@renamed(u="inputs")
def jacobian(F: Map, x: jax.Array, inputs: jax.Array | None = None) -> jax.Array:
    r"""Map Jacobian :math:`J = \partial F(x, u)/\partial x` at one state.

    Uses ``F.jacobian(x, u)`` when ``F`` has one (``OneStepMap``: the analytic CT-RNN form of
    SCIENCE.md §1, ``jax.jacfwd`` for other cells), else ``jax.jacfwd``.

    Args:
        F: one-step map on unbatched arrays.
        x: state ``(n,)``.
        inputs: input ``u`` ``(m,)`` (``None``: the map's default, zero input for a
            ``OneStepMap``).

    Returns:
        ``(n, n)`` Jacobian, ``J[i, j] = ∂F_i/∂x_j``.

    Raises:
        ValueError: ``x`` is not 1-D.
    """
    x = _as_float(x)
    if x.ndim != 1:
        raise ValueError(f"x must have shape (n,), got {x.shape}; vmap jacobian for a batch")
    analytic = getattr(F, "jacobian", None)
    if callable(analytic):
        return analytic(x, inputs)
    return jax.jacfwd(lambda v: F(v, inputs))(x)


@renamed(u="inputs")
def input_jacobian(F: Map, x: jax.Array, inputs: jax.Array) -> jax.Array:
    r"""Input Jacobian :math:`B = \partial F(x, u)/\partial u` (``jax.jacfwd``).

    For the CT-RNN :math:`B = \alpha K_\mathrm{in}^\top`.

    Args:
        F: one-step map.
        x: state ``(n,)``.
        inputs: input ``u`` ``(m,)``.

    Returns:
        ``(n, m)`` Jacobian ``B[i, k] = ∂F_i/∂u_k``.

    Raises:
        ValueError: ``x`` or ``inputs`` is not 1-D.
    """
    x = _as_float(x)
    u = jnp.asarray(inputs, x.dtype)
    if x.ndim != 1:
        raise ValueError(f"x must have shape (n,), got {x.shape}")
    if u.ndim != 1:
        raise ValueError(f"inputs must have shape (m,), got {u.shape}")
    return jax.jacfwd(lambda w: F(x, w))(u)


class EigenDecomposition(NamedTuple):
    r"""Eigen-decomposition :math:`J = R \operatorname{diag}(\mu) L^H`, by ``|μ|`` descending.

    Attributes:
        eigvals: ``(..., n)`` complex multipliers ``μ``.
        eigvecs: ``(..., n, n)`` right eigenvectors, column ``k`` for ``μ_k`` (unit norm).
        left_eigvecs: ``(..., n, n)`` left eigenvectors, column ``k`` for ``μ_k``, normalised so
            that ``L^H R = I`` (``L = R^{-H}``): ``left_eigvecs[:, k].conj() @ δx`` is the
            amplitude of mode ``k`` in a perturbation ``δx``.
    """

    eigvals: jax.Array
    eigvecs: jax.Array
    left_eigvecs: jax.Array


def eig(J: jax.Array, *, left: bool = True) -> EigenDecomposition:
    """Eigenvalues with right and left eigenvectors of ``J`` (or a stack ``(..., n, n)``).

    Sorted by modulus, largest first (the slowest / least stable mode first). Uses
    ``jnp.linalg.eig`` (CPU backend in JAX).

    Args:
        J: ``(..., n, n)`` real or complex matrix.
        left: compute the left eigenvectors (``R^{-H}``); ``False`` leaves them ``None``.

    Returns:
        ``EigenDecomposition(eigvals, eigvecs, left_eigvecs)``.

    Raises:
        ValueError: ``J`` is not square.
    """
    J = _as_float(J)
    if J.ndim < 2 or J.shape[-1] != J.shape[-2]:
        raise ValueError(f"J must have shape (..., n, n), got {J.shape}")
    mu, R = jnp.linalg.eig(J)
    order = jnp.argsort(-jnp.abs(mu), axis=-1, stable=True)
    mu = jnp.take_along_axis(mu, order, axis=-1)
    R = jnp.take_along_axis(R, order[..., None, :], axis=-1)
    L = jnp.conj(jnp.swapaxes(jnp.linalg.inv(R), -1, -2)) if left else None
    return EigenDecomposition(mu, R, L)


def continuous_eigvals(mu: jax.Array, alpha: Any) -> jax.Array:
    r"""Continuous-time eigenvalues :math:`\lambda = (\mu - 1)/\alpha` (units of ``1/τ``).

    Exact for the eigenvalues of :math:`A = (J - I)/\alpha` when ``alpha`` is a scalar; for a
    per-neuron ``alpha`` the map and flow Jacobians have different eigenvectors, so compute
    ``eig((J - I) / alpha[:, None])`` instead (this function then raises).

    Args:
        mu: map multipliers ``(..., n)``.
        alpha: scalar Euler fraction ``dt/τ``.

    Returns:
        ``(..., n)`` ``λ`` (a NumPy array for NumPy input, keeping its precision).

    Raises:
        ValueError: ``alpha`` is not a positive scalar.
    """
    a = np.asarray(alpha, dtype=float) if not isinstance(alpha, jax.core.Tracer) else None
    if a is not None:
        if a.ndim != 0 and not np.all(a == a.reshape(-1)[0]):
            raise ValueError(
                "alpha must be a scalar (per-neuron alpha: take eig((J - I) / alpha[:, None]))"
            )
        if np.any(a <= 0):
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        alpha = float(a.reshape(-1)[0])
    if isinstance(mu, jax.Array):
        return (mu - 1.0) / alpha
    return (np.asarray(mu) - 1.0) / alpha


class Stability(NamedTuple):
    """Stability class of a fixed point from its map multipliers.

    Attributes:
        label: one of :data:`STABILITY_CLASSES` (a ``str`` for one point, a NumPy string array
            ``(N,)`` for a stack).
        n_unstable: number of multipliers with ``|μ| > 1 + marginal_tol`` (``int`` or ``(N,)``).
    """

    label: Any
    n_unstable: Any


def classify(eigvals: Any, *, marginal_tol: float = 1e-3, imag_tol: float = 1e-9) -> Stability:
    r"""Classify fixed points of a map by their multipliers ``μ`` (discrete-time sense).

    With ``k`` the number of multipliers with :math:`|\mu| > 1 + \text{marginal\_tol}`:

    - ``"marginal"``: some :math:`\bigl||\mu| - 1\bigr| \le` ``marginal_tol`` — a neutral
      direction (a real ``μ ≈ 1`` is a line-attractor direction, a complex one a centre);
      checked first.
    - ``"stable node"`` / ``"stable focus"``: ``k = 0``; focus when the leading (largest-``|μ|``)
      multiplier is complex (``|Im μ| > imag_tol``), i.e. the slowest approach spirals.
    - ``"unstable node"`` / ``"unstable focus"``: ``k = n``; focus when the leading multiplier is
      complex.
    - ``"saddle"``: ``0 < k < n`` (``k`` unstable modes).

    For the continuous-time sense use :func:`continuous_eigvals` (``Re λ`` vs 0); for small
    ``α`` the two agree, with ``|μ| − 1 ≈ α Re λ`` (so ``marginal_tol`` is ``≈ α · tol_λ``).

    Args:
        eigvals: ``(n,)`` multipliers of one point or ``(N, n)`` of a stack (any order).
        marginal_tol: half-width of the band around the unit circle counted as marginal.
        imag_tol: imaginary parts at most this are treated as real.

    Returns:
        ``Stability(label, n_unstable)``.

    Raises:
        ValueError: ``eigvals`` is not 1-D/2-D, is empty, or ``marginal_tol < 0``.
    """
    mu = np.asarray(eigvals)
    if mu.ndim not in (1, 2) or mu.shape[-1] == 0:
        raise ValueError(f"eigvals must have shape (n,) or (N, n) with n >= 1, got {mu.shape}")
    if not marginal_tol >= 0:
        raise ValueError(f"marginal_tol must be >= 0, got {marginal_tol!r}")
    single = mu.ndim == 1
    mu = np.atleast_2d(mu).astype(complex)
    mod = np.abs(mu)
    n = mu.shape[-1]
    marginal = np.any(np.abs(mod - 1.0) <= marginal_tol, axis=-1)
    n_unstable = np.sum(mod > 1.0 + marginal_tol, axis=-1)
    lead = mu[np.arange(mu.shape[0]), np.argmax(mod, axis=-1)]
    spiral = np.abs(lead.imag) > imag_tol
    finite = np.all(np.isfinite(mu), axis=-1)
    label = np.where(
        marginal,
        "marginal",
        np.where(
            n_unstable == 0,
            np.where(spiral, "stable focus", "stable node"),
            np.where(
                n_unstable == n,
                np.where(spiral, "unstable focus", "unstable node"),
                "saddle",
            ),
        ),
    ).astype("<U14")
    label = np.where(finite, label, "")
    if single:
        return Stability(str(label[0]), int(n_unstable[0]))
    return Stability(label, n_unstable.astype(np.int64))
