r"""Benettin's QR iteration of a CT-RNN map on the compiled kernel of :mod:`ctrnn_dyn.native`.

For a :class:`~ctrnn_dyn.model.CTRNNCell` map with ``tanh`` or ``relu`` the map and its tangent
map are

.. math::

    F(x) = c \odot x + f(x)\,W + d,\qquad DF(x)\,q = c \odot q + (f'(x) \odot q)\,W,

with :math:`W = K_\mathrm{rec}\,\mathrm{diag}\,\alpha`, :math:`c = 1 - \alpha` and
:math:`d = \alpha \odot (b_\mathrm{rec} + u K_\mathrm{in})`, so a start's state and its ``k``
tangent vectors are rows of one product with ``W``. XLA runs them as separate products of a
few rows each (about 15 GFLOP/s a core here); the kernel steps the state and the basis of several
starts as one register-tiled product and re-orthonormalises the basis while it is in cache: the
same iteration as :func:`~ctrnn_dyn.attractors.lyapunov._lyap_core`, its results equal to
floating-point reassociation.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn import native
from ctrnn_dyn.dynamics import OneStepMap, _cast_floats
from ctrnn_dyn.fast_path import _native_activation
from ctrnn_dyn.model import CTRNNCell


def _activation_code(F: Any) -> int | None:
    """The kernel's activation code of a CT-RNN map ``F``, or ``None`` where the kernel does not
    compute ``F`` (another map or cell, another activation, a cell of a fixed dtype)."""
    if not isinstance(F, OneStepMap) or type(F.cell) is not CTRNNCell or F.cell.dtype is not None:
        return None
    return _native_activation(F.cell.activation_fn)


def on_kernel(F: Any) -> bool:
    """Whether Benettin's iteration of ``F`` can run on the kernel in programs traced now (the
    kernels loaded, on the CPU; decided on the host, from ``F``'s static parts)."""
    return (_activation_code(F) is not None and jax.default_backend() == "cpu"
            and native.prepare() and native.available())


def _parts(F: OneStepMap, u: jax.Array | None, dtype: Any) -> tuple[jax.Array, ...]:
    """``(W (n, n), c (n,), d (n,))`` of ``F(x) = c ⊙ x + f(x) W + d`` at the input ``u``."""
    params = _cast_floats(F.params, dtype)
    tree = params.get("params", params)
    n = F.state_size
    alpha = jnp.broadcast_to(jnp.asarray(F.cell.alpha_values(params), dtype), (n,))
    drive = tree["recurrent_kernel"]["bias"]
    if u is not None:
        drive = drive + u.astype(dtype) @ tree["input_kernel"]["kernel"]
    return F.cell.recurrent_weights(params) * alpha[None, :], 1.0 - alpha, alpha * drive


def benettin(F: OneStepMap, x0s: jax.Array, u: jax.Array | None, *, n_transient: int,
             n_blocks: int, block: int, k: int, steps_per_qr: int, serial: bool,
             n_recur: int = 0) -> tuple[jax.Array, ...]:
    """``(x_end (B, n), sums (B, n_blocks, k), maxabs (B, n_blocks), dist (B, n_recur))`` of
    Benettin's iteration from the starts ``x0s (B, n)``, as
    :func:`~ctrnn_dyn.attractors.lyapunov._lyap_core_batch`, and the distances
    ``‖F^j(x_end) − x_end‖``, ``j = 1..n_recur``, of the orbit that follows (a classification's
    test for an exact return). ``serial``: on the calling thread, for programs of several host
    devices. Only where :func:`on_kernel` said so."""
    B, n = x0s.shape
    W, c, d = _parts(F, u, x0s.dtype)
    call = jax.ffi.ffi_call(
        native.BENETTIN_TARGET,
        (jax.ShapeDtypeStruct((B, n), x0s.dtype),
         jax.ShapeDtypeStruct((B, n_blocks, k), x0s.dtype),
         jax.ShapeDtypeStruct((B, n_blocks), x0s.dtype),
         jax.ShapeDtypeStruct((B, n_recur), x0s.dtype)),
        vmap_method="broadcast_all")
    return tuple(call(x0s, W, c, d, activation=np.int32(_activation_code(F)), k=np.int64(k),
                      n_transient=np.int64(n_transient), n_blocks=np.int64(n_blocks),
                      block=np.int64(block), steps_per_qr=np.int64(steps_per_qr),
                      n_recur=np.int64(n_recur), spread=not serial))
