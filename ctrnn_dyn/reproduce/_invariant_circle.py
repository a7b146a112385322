r"""The invariant circle of a map, found by Newton on its Fourier parameterisation
(:func:`solve_invariant_circle`), and the phase of states on it (:func:`circle_phase`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn._checks import renamed

__all__ = ["solve_invariant_circle", "circle_phase"]


def _resample(K: np.ndarray, n_points: int) -> np.ndarray:
    """Values of the trigonometric interpolant of nodes ``K`` ``(N, n)`` at ``n_points``
    equally spaced phases (zero-padding or truncating its spectrum)."""
    N = len(K)
    C = np.fft.fft(K, axis=0) / N
    k = np.fft.fftfreq(N, 1.0 / N)
    th = 2 * np.pi * np.arange(n_points) / n_points
    return (np.exp(1j * np.outer(th, k)) @ C).real


@renamed(u="inputs")
def solve_invariant_circle(F, orbit: np.ndarray, inputs: np.ndarray, rotation: float, *,
                           n_points: tuple[int, ...] = (33, 65, 129), max_iters: int = 15,
                           tol: float = 1e-9, gmres_tol: float = 1e-12) -> dict:
    r"""Solve an attracting closed curve of a map as an invariant circle, by Newton.

    A discrete map's oscillation need not close after a whole number of steps: it is an
    *invariant circle* :math:`K(\theta)` on which the map is a rotation by :math:`\rho`,
    :math:`F(K(\theta), u) = K(\theta + \rho)`. With ``K`` represented by its values at ``N``
    nodes :math:`\theta_j = 2\pi j/N` (trigonometric interpolation), Newton solves the ``N·n``
    equations at the nodes and one phase condition :math:`\sum_j \langle K_j - K^0_j,
    \partial_\theta K^0_j\rangle = 0` for the ``N·n + 1`` unknowns ``(K, ρ)``; each Newton
    step is solved matrix-free by GMRES (the Jacobian is block-diagonal ``DF(K_j)`` minus a
    shift in ``θ``). ``K^0`` is fitted to ``orbit`` (phases :math:`\rho t`) with the first
    ``n_points[0]`` nodes; the solution on each node count starts the next one. The residual
    is also evaluated halfway between the final nodes (``midpoint_residual``): small there
    too means the interpolant is the circle, not only the nodes; a circle counts as solved
    when both are at most ``tol``.

    Args:
        F: one-step map ``F(x, u)`` (float64-traceable).
        orbit: ``(M, n)`` consecutive states on the circle.
        inputs: ``(m,)`` constant input ``u``.
        rotation: first guess of ``ρ`` (radians per step, e.g. from
            :func:`~ctrnn_dyn.attractors.circle_rotation`).
        n_points: node counts ``N`` (odd), refined in turn.
        max_iters: Newton iterations per node count.
        tol: converged when ``max |F(K_j) − K(θ_j + ρ)| <= tol`` at the nodes and between them.
        gmres_tol: relative tolerance of each GMRES solve.

    Returns:
        ``{"converged", "rotation", "nodes" (N, n), "residual", "midpoint_residual",
        "iterations", "n_points"}``.
    """
    from scipy.sparse.linalg import LinearOperator, gmres

    if any(N % 2 == 0 or N < 3 for N in n_points):
        raise ValueError(f"n_points must be odd and >= 3, got {n_points}")
    orbit = np.asarray(orbit, np.float64)
    M, n = orbit.shape
    N0 = n_points[0]
    theta = np.mod(rotation * np.arange(M), 2 * np.pi)
    harm = np.arange(1, (N0 - 1) // 2 + 1)
    basis = np.column_stack([np.ones(M), np.cos(np.outer(theta, harm)),
                             np.sin(np.outer(theta, harm))])
    coef, *_ = np.linalg.lstsq(basis, orbit, rcond=None)
    nodes = 2 * np.pi * np.arange(N0) / N0
    K = np.column_stack([np.ones(N0), np.cos(np.outer(nodes, harm)),
                         np.sin(np.outer(nodes, harm))]) @ coef
    rho, iterations = float(rotation), 0

    def shift(V, s, deriv=False):
        k = np.fft.fftfreq(len(V), 1.0 / len(V))
        fac = np.exp(1j * k * s) * (1j * k if deriv else 1.0)
        return np.fft.ifft(np.fft.fft(V, axis=0) * fac[:, None], axis=0).real

    with jax.enable_x64(True):
        uj = jnp.asarray(inputs, jnp.float64)
        f = jax.jit(jax.vmap(lambda x: F(x, uj)))
        jac = jax.jit(jax.vmap(jax.jacfwd(lambda x: F(x, uj))))
        for N in n_points:
            K = _resample(K, N) if len(K) != N else K
            K0, dK0 = K.copy(), shift(K, 0.0, deriv=True)
            for _ in range(max_iters):
                R = np.asarray(f(jnp.asarray(K))) - shift(K, rho)
                if not np.all(np.isfinite(R)) or np.max(np.abs(R)) <= tol:
                    break
                iterations += 1
                DF = np.asarray(jac(jnp.asarray(K)))  # (N, n, n)
                dSK = shift(K, rho, deriv=True)

                def matvec(v, DF=DF, dSK=dSK, dK0=dK0, N=N, rho=rho):
                    dK, dr = v[:-1].reshape(N, n), v[-1]
                    top = np.einsum("jab,jb->ja", DF, dK) - shift(dK, rho) - dr * dSK
                    return np.concatenate([top.ravel(), [np.sum(dK0 * dK)]])

                A = LinearOperator((N * n + 1, N * n + 1), matvec=matvec, dtype=np.float64)
                rhs = -np.concatenate([R.ravel(), [np.sum((K - K0) * dK0)]])
                step, _ = gmres(A, rhs, rtol=gmres_tol, atol=0.0, restart=100, maxiter=5)
                K = K + step[:-1].reshape(N, n)
                rho += float(step[-1])
        res = float(np.max(np.abs(np.asarray(f(jnp.asarray(K))) - shift(K, rho))))
        half = np.pi / len(K)
        mid = shift(K, half)
        mid_res = float(np.max(np.abs(np.asarray(f(jnp.asarray(mid))) - shift(K, half + rho))))
    ok = bool(np.isfinite(res) and res <= tol and mid_res <= tol)
    return {"converged": ok, "rotation": rho, "nodes": K, "residual": res,
            "midpoint_residual": mid_res, "iterations": iterations, "n_points": len(K)}


def circle_phase(nodes: np.ndarray, X: np.ndarray, n_fine: int = 2048) -> tuple[np.ndarray,
                                                                                   np.ndarray]:
    """Phase ``θ ∈ [0, 2π)`` of the circle point nearest each state, and that distance.

    Args:
        nodes: ``(N, n)`` the circle's values at ``θ_j = 2πj/N``.
        X: ``(B, n)`` states.
        n_fine: points of the circle searched.

    Returns:
        ``(theta (B,), distance (B,))``.
    """
    N = len(nodes)
    k = np.fft.fftfreq(N, 1.0 / N)
    C = np.fft.fft(nodes, axis=0) / N  # (N, n)
    th = 2 * np.pi * np.arange(n_fine) / n_fine
    fine = (np.exp(1j * np.outer(th, k)) @ C).real  # (n_fine, n)
    d2 = (np.sum(X**2, 1)[:, None] - 2 * X @ fine.T + np.sum(fine**2, 1)[None, :])
    j = np.argmin(d2, axis=1)
    return th[j], np.sqrt(np.maximum(d2[np.arange(len(X)), j], 0.0))
