r"""The fast path's noise stream: Philox4x32-10 counters and an inverse-CDF normal.

:func:`ctrnn_dyn.train.loss_fn` on the fast path (:mod:`ctrnn_dyn.fast_path`) draws the
cell's noise :math:`\xi \sim N(0, I)` of a whole ``(T, B, n)`` batch from this stream, not
with ``jax.random.normal`` (whose Threefry bits and inverse error function took most of a noisy
train step) and not step by step as ``nn.RNN`` does. It is a stream of its own: for the same
key its values differ from ``nn.RNN``'s noise (:func:`ctrnn_dyn.model.step_noise`), so a noisy
network trained on the fast path is not the one ``nn.RNN`` would train, only one drawn from the
same distribution. It is used inside this package's own programs only; nothing in JAX changes.
On the CPU the compiled forward kernel (:mod:`ctrnn_dyn.native`) generates the same stream
inside each time step, while the step's rows are in cache, so no ``(T, B, n)`` noise array is
written or read; :func:`normal` is its twin in ``jax.numpy`` (the XLA loops, other platforms).

**Bits.** The stream's key is the pair of ``uint32`` words ``(k₀, k₁)``, the first two words of
``key_data(fold_in(key, STREAM_TAG))`` (:func:`stream_words`; the tag keeps the stream from
reusing the words of ``key`` itself). Element ``i`` of the flattened (C order) output takes
word ``i mod 4`` of Philox4x32-10 (Salmon et al. 2011, the counter-based generator of
Random123, cuRAND and PyTorch's CUDA backend) at the counter ``(⌊i/4⌋, 0, 0, 0)`` under
``(k₀, k₁)``; an output therefore has at most ``2³⁴`` elements. In ``jax.numpy`` the 32×32 →
64-bit products are formed from 16-bit halves, which needs no 64-bit integers; the result is
checked against Random123's known-answer vectors and against an independent 64-bit version.

**Normal.** The top 24 bits ``k = word >> 8`` give the uniform ``v = (2k + 1 − 2²⁴) 2⁻²⁴`` in
``(−1, 1)`` (exact in float32, symmetric, never ±1), and :math:`\xi = \sqrt2\,
\mathrm{erf}^{-1}(v)`, so ``|ξ| <= 5.42``, with ``erf⁻¹`` by Giles' single-precision
approximation (M. Giles, "Approximating the erfinv function", GPU Computing Gems, 2011),
written out here and in the kernel alike, in float32:

.. math::

    w = -\log\bigl((1 - v)(1 + v)\bigr),\qquad
    \mathrm{erf}^{-1}(v) = v\,P(w),\qquad
    P(w) = \begin{cases} p_1(w - 2.5) & w < 5 \\ p_2(\sqrt{w} - 3) & w \ge 5 \end{cases}

with :math:`p_1, p_2` the degree-8 polynomials of :data:`_P_CENTRAL` and :data:`_P_TAIL`
(Horner), and :math:`\xi = \sqrt2 \cdot (v P(w))`. The kernel and :func:`normal` differ only
in how their ``log`` (and the contraction of a multiply-add into an FMA) rounds: a few float32
ulps.

Example::

    >>> import jax
    >>> from ctrnn_dyn import noise
    >>> noise.normal(jax.random.key(0), (200, 64, 128)).shape
    (200, 64, 128)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["philox4x32", "normal", "normal_from_words", "stream_words", "STREAM_TAG",
           "MAX_SIZE"]

#: ``fold_in`` tag that separates this stream from others drawn with the same key ("nois").
STREAM_TAG = 0x6E6F6973
#: The most elements one draw can have: ``2³²`` Philox blocks of four words.
MAX_SIZE = 4 * 2**32

_M0, _M1 = 0xD2511F53, 0xCD9E8D57  # Philox4x32 multipliers
_W0, _W1 = 0x9E3779B9, 0xBB67AE85  # Weyl key increments
_ROUNDS = 10
#: Giles' coefficients of ``erf⁻¹(v) / v`` in ``w - 2.5`` (``w < 5``), highest power first.
_P_CENTRAL = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
              -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
#: ... and in ``sqrt(w) - 3`` (``w >= 5``).
_P_TAIL = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
           -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)


def _mulhilo(m: int, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(hi, lo)`` words of the 64-bit product of the constant ``m`` and ``uint32`` ``x``."""
    u32 = jnp.uint32
    m0, m1 = u32(m & 0xFFFF), u32(m >> 16)
    x0, x1 = x & u32(0xFFFF), x >> 16
    p00, p01, p10, p11 = x0 * m0, x0 * m1, x1 * m0, x1 * m1
    mid = (p00 >> 16) + (p01 & u32(0xFFFF)) + (p10 & u32(0xFFFF))
    hi = p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16)
    return hi, x * u32(m)


def _round(c: tuple[jax.Array, ...], k0: jax.Array, k1: jax.Array) -> tuple[jax.Array, ...]:
    c0, c1, c2, c3 = c
    hi0, lo0 = _mulhilo(_M0, c0)
    hi1, lo1 = _mulhilo(_M1, c2)
    return hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0


def philox4x32(counter: tuple[jax.Array, ...], key: tuple[jax.Array, jax.Array],
               rounds: int = _ROUNDS) -> tuple[jax.Array, ...]:
    """Philox4x32-``rounds`` of four ``uint32`` counter words (any one shape) under a two-word
    ``uint32`` key; returns the four output words.

    The rounds run in a ``fori_loop`` of two rounds per iteration (an even ``rounds``): fully
    unrolled, XLA fuses the whole chain into each consumer of the four words and computes it
    once per consumer.
    """
    k0, k1 = (jnp.asarray(k, jnp.uint32) for k in key)
    c = tuple(jnp.asarray(w, jnp.uint32) for w in counter)
    if rounds % 2:
        c = _round(c, k0, k1)
        k0, k1 = k0 + jnp.uint32(_W0), k1 + jnp.uint32(_W1)

    def two_rounds(i, c):
        r = (2 * i).astype(jnp.uint32)
        a0, a1 = k0 + r * jnp.uint32(_W0), k1 + r * jnp.uint32(_W1)
        c = _round(c, a0, a1)
        return _round(c, a0 + jnp.uint32(_W0), a1 + jnp.uint32(_W1))

    return lax.fori_loop(0, rounds // 2, two_rounds, c)


def stream_words(key: jax.Array) -> jax.Array:
    """The stream's two ``uint32`` key words for a PRNG key (module docstring), shape ``(2,)``.

    Raises:
        TypeError: ``key`` is not a PRNG key (typed, or raw ``uint32`` of shape ``(2,)``).
    """
    typed = jnp.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key)
    if not typed and (getattr(key, "dtype", None) != jnp.uint32 or np.shape(key) != (2,)):
        raise TypeError(
            f"key must be a PRNG key (jax.random.key(...) or a uint32 array of shape (2,)), "
            f"got {type(key).__name__} with shape {np.shape(key)}"
        )
    if typed and np.shape(key) != ():
        raise TypeError(f"key must be a single PRNG key, got shape {np.shape(key)}")
    words = jax.random.key_data(jax.random.fold_in(key, STREAM_TAG)).reshape(-1)
    return words[:2].astype(jnp.uint32)


def _check_shape(shape: Any) -> int:
    if not isinstance(shape, tuple | list) or not all(
        isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise ValueError(f"shape must be a tuple of ints >= 0, got {shape!r}")
    size = int(np.prod(shape, dtype=np.int64))
    if size > MAX_SIZE:
        raise ValueError(f"shape {tuple(shape)} has more than 2**34 elements")
    return size


def _horner(coefficients: tuple[float, ...], w: jax.Array) -> jax.Array:
    p = jnp.full_like(w, coefficients[0])
    for a in coefficients[1:]:
        p = jnp.float32(a) + p * w
    return p


def normal_from_words(words: jax.Array, shape: tuple[int, ...],
                      dtype: Any = jnp.float32) -> jax.Array:
    r"""Standard-normal draws of ``shape`` under the stream key ``words`` (``uint32`` ``(2,)``,
    from :func:`stream_words`): the function behind :func:`normal`.

    Raises:
        ValueError: ``shape`` is not a tuple of ints ``>= 0``, or has more than ``2³⁴``
            elements.
    """
    size = _check_shape(shape)
    blocks = -(-size // 4)
    zero = jnp.zeros((blocks,), jnp.uint32)
    counter = (lax.iota(jnp.uint32, blocks), zero, zero, zero)
    out = philox4x32(counter, (words[0], words[1]))
    bits = jnp.stack(out, axis=-1).reshape(-1)[:size]
    top = (bits >> 8).astype(jnp.int32)  # k < 2**24
    v = (2 * top + (1 - 2**24)).astype(jnp.float32) * jnp.float32(2.0**-24)
    w = -jnp.log((jnp.float32(1) - v) * (jnp.float32(1) + v))
    central = w < 5
    p = jnp.where(central, _horner(_P_CENTRAL, w - jnp.float32(2.5)),
                  _horner(_P_TAIL, jnp.sqrt(w) - jnp.float32(3)))
    xi = jnp.float32(np.sqrt(2.0)) * (p * v)
    return xi.reshape(shape).astype(dtype)


def normal(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    r"""Standard-normal draws of ``shape`` from this module's stream (module docstring).

    Args:
        key: a PRNG key (typed, or raw ``uint32`` of shape ``(2,)``).
        shape: output shape (at most ``2³⁴`` elements).
        dtype: float dtype of the result (the values are computed in float32).

    Returns:
        ``ξ`` of ``shape``.

    Raises:
        TypeError: ``key`` is not a PRNG key.
        ValueError: ``shape`` is not a tuple of ints ``>= 0``, or too large.
    """
    _check_shape(shape)
    return normal_from_words(stream_words(key), shape, dtype)
