r"""The CT-RNN forward pass with a hand-written VJP: the same numbers as ``nn.RNN(CTRNNCell)``,
fewer passes over memory.

For a :class:`~ctrnn_dyn.model.CTRNNCell` with a fixed ``alpha`` (scalar or one per neuron),
:func:`fast_forward` computes the cell's equation over a whole batch of sequences:

.. math::

    x_{t+1} = c\,x_t + \alpha\bigl(f(x_t) K + E_t\bigr),\quad
    E_t = u_t K_\mathrm{in} + b + s\,\xi_t,\quad
    y_t = f(x_t) K_\mathrm{out} + b_\mathrm{out},\qquad c = 1 - \alpha

(``s = σ`` in the seed's noise mode, ``s = sqrt(2/α) σ`` in Euler–Maruyama mode), and its
gradient by the adjoint recursion, with :math:`\mu_t = \alpha\lambda_{t+1}` (``λ_t`` the total
cotangent of ``x_t``, ``g_t`` that of the rate ``r_t = f(x_t)`` including the readout's):

.. math::

    \mu_{t-1} = \alpha f'(x_t)\bigl(g_t + \mu_t K^\top\bigr) + c\,\mu_t,\qquad
    \frac{\partial L}{\partial K} = \sum_t f(x_t)^\top \mu_t,\quad
    \frac{\partial L}{\partial K_\mathrm{in}} = \sum_t u_t^\top \mu_t,\quad
    \frac{\partial L}{\partial b} = \sum_t \mu_t .

Why it is faster than differentiating ``nn.RNN`` (measured with ``benchmarks/train_step.py``):

- each time step writes its state in place into one ``(T, B, n)`` buffer that already holds
  ``α E`` (no carry copies, no stacked outputs), and the reverse loop does the same for ``μ``;
  a loop step is one small matmul and a few fused elementwise kernels;
- the input projection, the noise and the bias are one fused pass before the loop (for up to
  :data:`SMALL_WIDTH` inputs the projection is written as broadcast multiply-adds, which fuse,
  instead of a thin matmul, which does not);
- the rates ``f(x_0..x_T)`` are computed once and serve the readout, the rate penalty and the
  backward pass; the weight gradients are whole-sequence matmuls after the reverse loop, and
  ``K_in`` and ``b`` share one;
- buffers have ``T + 1`` rows so that every big matmul reads whole buffers (slices are copies);
- on the CPU, for tanh and relu, both loops run in compiled kernels (:mod:`ctrnn_dyn.native`)
  once :func:`ctrnn_dyn.native.prepare` has loaded them (training does, before it traces): each
  worker of XLA's thread pool runs whole sequences for a block of batch rows, so the loops use
  every core without synchronising per step and without XLA's per-kernel launch cost; elsewhere
  (other activations, other platforms, no C++ compiler, not prepared) they are XLA loops.
  :func:`loop_path` says which.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from ctrnn_dyn import native
from ctrnn_dyn.model import CTRNNCell

__all__ = ["fast_forward", "supports_fast_path", "loop_path", "SMALL_WIDTH"]

#: Widths up to which ``v @ W`` is written as broadcast multiply-adds (fusable with neighbours).
SMALL_WIDTH = 8


def supports_fast_path(cell: nn.Module) -> bool:
    """True for a :class:`CTRNNCell` with a fixed (non-trainable) ``alpha``."""
    return isinstance(cell, CTRNNCell) and not cell.train_alpha


def loop_path(cell: CTRNNCell) -> str:
    """Which code runs the fast path's two loops for ``cell`` in programs traced from now on:
    ``"kernels:<key>"`` (the compiled kernels of :mod:`ctrnn_dyn.native`, on the CPU, after
    :func:`ctrnn_dyn.native.prepare`) or ``"xla-loops"``."""
    if _use_native(_native_activation(cell.activation_fn)) and jax.default_backend() == "cpu":
        return f"kernels:{native.kernel_key()}"
    return "xla-loops"


def _staging() -> bool:
    """Whether JAX is tracing a program now (under ``jit`` every new array is a tracer)."""
    return isinstance(jnp.zeros(()), jax.core.Tracer)


def _is_tanh(fn: Callable) -> bool:
    return fn is jnp.tanh or fn is nn.tanh


def _row(buf: jax.Array, i: jax.Array) -> jax.Array:
    return lax.dynamic_index_in_dim(buf, i, 0, keepdims=False, allow_negative_indices=False)


def _set_row(buf: jax.Array, row: jax.Array, i: jax.Array | int) -> jax.Array:
    return lax.dynamic_update_index_in_dim(buf, row, i, 0)


def _affine(v: jax.Array, w: jax.Array, b: jax.Array | float) -> jax.Array:
    """``v @ w + b``; as broadcast multiply-adds when ``v`` is at most :data:`SMALL_WIDTH` wide."""
    if v.shape[-1] > SMALL_WIDTH:
        return v @ w + b
    out = b
    for k in range(v.shape[-1]):
        out = out + v[..., k:k + 1] * w[k]
    return out


def _native_activation(fn: Callable) -> int | None:
    """The compiled kernels' code of ``fn`` (:data:`native.TANH`, :data:`native.RELU`), or
    ``None`` for activations they do not cover."""
    if _is_tanh(fn):
        return native.TANH
    if fn is jax.nn.relu or fn is nn.relu:
        return native.RELU
    return None


def _rate_derivative(code: int | None, act: Callable, R: jax.Array, X: jax.Array) -> jax.Array:
    """``f'(x)`` from the rates for tanh (``1 - r²``) and relu (``[r > 0]``), else by JVP."""
    if code == native.TANH:
        return 1.0 - R * R
    if code == native.RELU:
        return (R > 0).astype(R.dtype)
    return jax.jvp(act, (X,), (jnp.ones_like(X),))[1]


def _xla_forward(X, x0, K_alpha, c, act):
    """``X`` holds ``α E`` (``T`` rows) and becomes ``x_1..x_T`` in place, by an XLA loop of
    ``x_t = c x_{t-1} + f(x_{t-1}) K_alpha + α E_{t-1}``; returns ``(X, f([x_0; X]))``."""
    X = _set_row(X, X[0] + c * x0 + act(x0) @ K_alpha, 0)

    def step(t, X):
        x = _row(X, t - 1)
        return _set_row(X, _row(X, t) + (c * x + act(x) @ K_alpha), t)

    X = lax.fori_loop(1, X.shape[0], step, X)
    return X, act(jnp.concatenate([x0[None], X], axis=0))


def _native_forward(X, x0, K_alpha, c, code):
    """:func:`_xla_forward` in the compiled kernel (``X`` is updated in place)."""
    rates = X.shape[:-3] + (X.shape[-3] + 1,) + X.shape[-2:]
    call = jax.ffi.ffi_call(
        native.FORWARD_TARGET,
        (jax.ShapeDtypeStruct(X.shape, X.dtype), jax.ShapeDtypeStruct(rates, X.dtype)),
        vmap_method="broadcast_all", input_output_aliases={0: 0})
    return tuple(call(X, x0, K_alpha, jnp.broadcast_to(c, X.shape[-1:]),
                      activation=np.int32(code)))


def _xla_backward(mu, R, KT, c, alpha, fprime):
    """``mu[t-1] += c mu[t] + α f'(x_t) (mu[t] Kᵀ)`` for ``t = T-1..1`` as an XLA loop;
    ``fprime(t)`` gives ``f'(x_t)``."""
    T = mu.shape[0] - 1

    def step(k, mu):
        t = T - 1 - k
        m_t = _row(mu, t)
        return _set_row(mu, _row(mu, t - 1) + (c * m_t + alpha * fprime(t) * (m_t @ KT)), t - 1)

    return lax.fori_loop(0, T - 1, step, mu)


def _native_backward(mu, R, KT, c, alpha, code):
    n = mu.shape[-1]
    call = jax.ffi.ffi_call(native.BACKWARD_TARGET, jax.ShapeDtypeStruct(mu.shape, mu.dtype),
                            vmap_method="broadcast_all", input_output_aliases={0: 0})
    return call(mu, R, KT, jnp.broadcast_to(c, (n,)), jnp.broadcast_to(alpha, (n,)),
                activation=np.int32(code))


def _use_native(code: int | None) -> bool:
    """Loaded kernels that cover this activation; tracing never builds them."""
    return code is not None and native.available()


def _run_loop(code: int | None, native_loop: Callable, xla_loop: Callable, *args):
    """``native_loop(*args)`` where the compiled kernels can run it (CPU; tanh or relu; built),
    else ``xla_loop(*args)``."""
    if _use_native(code):
        return lax.platform_dependent(*args, cpu=native_loop, default=xla_loop)
    return xla_loop(*args)


@functools.partial(jax.custom_vjp, nondiff_argnums=(9,))
def _layer(K, K_in, b, K_out, b_out, x0, u, E0, alpha, act):
    """``(Y, R)``, both with ``T + 1`` time rows: ``R[t] = f(x_t)``, ``Y[t] = R[t] K_out + b_out``
    for ``t = 0..T``. ``u`` ``(T, B, m)``, ``x0`` ``(B, n)``, ``E0`` ``(T, B, n)`` or ``None``
    (the noise term ``s ξ``), ``alpha`` a scalar or ``(n,)``."""
    return _layer_fwd(K, K_in, b, K_out, b_out, x0, u, E0, alpha, act)[0]


def _layer_fwd(K, K_in, b, K_out, b_out, x0, u, E0, alpha, act):
    c = 1.0 - alpha
    K_alpha = K * alpha  # (f(x) K) α == f(x) (K α), for scalar and per-neuron α
    E = _affine(u, K_in, b)
    if E0 is not None:
        E = E + E0
    code = _native_activation(act)
    # Row t of α E becomes x_{t+1} in place. (Writing x_0 into the same buffer as a first row,
    # a concatenation, made LLVM's vectoriser run for ever on some fused batch samplers.)
    X, R = _run_loop(code, functools.partial(_native_forward, code=code),
                     functools.partial(_xla_forward, act=act), alpha * E, x0, K_alpha, c)
    Y = R @ K_out + b_out
    # tanh' and relu' follow from the rates; other activations keep the states.
    saved = None if code is not None else jnp.concatenate([x0[None], X], axis=0)
    return (Y, R), (K, K_in, K_out, u, R, saved, alpha, E0 is not None)


def _layer_bwd(act, res, cotangents):
    gY, gR = cotangents
    K, K_in, K_out, u, R, X, alpha, has_noise = res
    c = 1.0 - alpha
    T, B, m = u.shape
    n, p = K_out.shape
    code = _native_activation(act)
    F = _rate_derivative(code, act, R, X)
    KT = K.T
    g = gR + _affine(gY, K_out.T, 0.0)  # total cotangent of the rates, (T+1, B, n)
    # mu[t] = α λ_{t+1} for t = 0..T-1; row T stays 0 so that mu pairs row by row with R.
    mu = jnp.concatenate([alpha * F[1:] * g[1:], jnp.zeros_like(g[:1])], axis=0)
    if code is None:
        def fprime(t):
            return _row(F, t)
    else:  # recomputed per row inside the loop: no (T+1, B, n) buffer of f'
        def fprime(t):
            return _rate_derivative(code, act, _row(R, t), None)

    mu = _run_loop(code, functools.partial(_native_backward, code=code),
                   functools.partial(_xla_backward, fprime=fprime), mu, R, KT, c, alpha)
    dx0 = F[0] * (g[0] + mu[0] @ KT) + (c / alpha) * mu[0]
    mu2, R2 = mu.reshape(-1, n), R.reshape(-1, n)
    dK = R2.T @ mu2
    u_one = jnp.concatenate([u, jnp.ones((T, B, 1), u.dtype)], axis=-1)  # [u, 1]: K_in and b
    u_one = jnp.concatenate([u_one, jnp.zeros((1, B, m + 1), u.dtype)], axis=0)
    d_in = u_one.reshape(-1, m + 1).T @ mu2
    gY2 = gY.reshape(-1, p)
    dK_out = (gY2.T @ R2).T
    mu_T = mu[:T]
    return (dK, d_in[:m], d_in[m], dK_out, jnp.sum(gY2, axis=0), dx0, mu_T @ K_in.T,
            mu_T if has_noise else None, jnp.zeros_like(alpha))


_layer.defvjp(_layer_fwd, _layer_bwd)


def fast_forward(
    cell: CTRNNCell, params: Any, inputs: jax.Array, *, noise: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    r"""Fast forward pass of ``nn.RNN(CTRNNCell)``: ``(outputs (B,T,p), rates (B,T,n))``.

    Computes exactly the cell's equation (module docstring) with the carry initialised as
    ``nn.RNN`` does (``cell.initialize_carry``), differentiable in reverse mode (``jax.grad``,
    ``jax.vjp``) by a hand-written VJP; for forward-mode derivatives (``jax.jvp``,
    ``jax.jacfwd``) differentiate ``nn.RNN`` instead (``loss_fn(..., fast=False)``).

    Args:
        cell: a ``CTRNNCell`` with ``train_alpha=False``.
        params: ``nn.RNN`` variables ``{"params": {"cell": ...}}`` (or the cell's own).
        inputs: ``(B, T, m)``.
        noise: standard-normal ``ξ`` of shape ``(T, B, n)`` (time-major; the draws of
            :func:`ctrnn_dyn.model.step_noise` reproduce ``nn.RNN``'s), or ``None``.

    Returns:
        ``(outputs, rates)`` with shapes ``(B, T, p)`` and ``(B, T, n)``.
    """
    if not supports_fast_path(cell):
        raise TypeError("fast_forward needs a CTRNNCell with train_alpha=False")
    if not _staging():  # an eager call: building the kernels now is safe
        native.prepare()
    tree = params["params"]
    tree = tree.get("cell", tree)
    if inputs.ndim != 3:
        raise ValueError(f"inputs must have shape (B, T, m), got {inputs.shape}")
    B, T, m = inputs.shape
    dtype = cell.dtype or tree["recurrent_kernel"]["kernel"].dtype
    K = cell.recurrent_weights({"params": tree}).astype(dtype)
    K_in = tree["input_kernel"]["kernel"].astype(dtype)
    if K_in.shape[0] != m:
        raise ValueError(f"inputs have width {m} but the params expect {K_in.shape[0]} (m)")
    n = K.shape[0]
    if noise is not None and noise.shape != (T, B, n):
        raise ValueError(f"noise must have shape (T, B, n) = {(T, B, n)}, got {noise.shape}")
    alpha = jnp.asarray(cell.alpha, dtype)
    E0 = None
    if noise is not None:
        sigma = jnp.asarray(cell.noise_const, dtype)
        scale = sigma if cell.noise_mode == "seed" else jnp.sqrt(2.0 / alpha) * sigma
        E0 = scale * noise.astype(dtype)
    x0 = cell.initialize_carry(jax.random.key(0), (B, m)).astype(dtype)
    Y, R = _layer(
        K, K_in, tree["recurrent_kernel"]["bias"].astype(dtype),
        tree["output_kernel"]["kernel"].astype(dtype), tree["output_kernel"]["bias"].astype(dtype),
        x0, jnp.swapaxes(inputs.astype(dtype), 0, 1), E0, alpha, cell.activation_fn,
    )
    return jnp.swapaxes(Y[1:], 0, 1), jnp.swapaxes(R[1:], 0, 1)
