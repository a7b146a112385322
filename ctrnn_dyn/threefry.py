r"""JAX's Threefry-2x32 hash lowered as straight-line code on the CPU: the same bits, faster.

Every random draw in JAX (``jax.random.normal``, ``split``, ``fold_in``, and so the cell's noise)
goes through the Threefry-2x32 hash of Salmon et al. (2011): 20 rounds of add / rotate / xor on
pairs of ``uint32`` words, with the key injected every four rounds. On the CPU, JAX lowers it as
a rolled loop (five iterations of four rounds), which keeps compile times short but stops XLA
from fusing the hash with the draw that consumes it. Measured on a 2-core CPU, a ``(200, 64,
128)`` normal draw takes about 4.5 ms unrolled against 9 ms rolled (the noise line of
``benchmarks/train_step.py``'s floor), and the whole noisy train step through ``nn.RNN`` at
H = 128, B = 64, T = 200 about 42 against 61 ms; compiling that step takes the same 1.8–2.1 s
either way.

Importing :mod:`ctrnn_dyn` registers :func:`threefry2x32` (the unrolled hash) as the CPU
lowering of ``jax.extend.random.threefry2x32_p``. It is the same function, bit for bit: tested
against Random123's known answers, an independent NumPy implementation, and JAX's own
lowering in a fresh process. Only the speed of CPU programs compiled afterwards changes; other
platforms are untouched. Set ``CTRNN_DYN_UNROLLED_THREEFRY=0`` before importing to keep JAX's
lowering.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax import lax
from jax.extend.random import threefry2x32_p
from jax.interpreters import mlir

__all__ = ["threefry2x32", "install_cpu_lowering", "cpu_lowering_installed", "ENV_SWITCH"]

#: Environment variable: ``0`` keeps JAX's rolled CPU lowering.
ENV_SWITCH = "CTRNN_DYN_UNROLLED_THREEFRY"

_installed = False

# Rotation constants of Threefry-2x32 (Salmon et al. 2011, table 4), alternating by group.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_KEY_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, r: int) -> jax.Array:
    return lax.shift_left(x, np.uint32(r)) | lax.shift_right_logical(x, np.uint32(32 - r))


def threefry2x32(
    k1: jax.Array, k2: jax.Array, x1: jax.Array, x2: jax.Array
) -> tuple[jax.Array, jax.Array]:
    r"""Threefry-2x32 with 20 rounds, unrolled: key ``(k1, k2)``, counters ``(x1, x2)``.

    All arguments are ``uint32`` arrays of broadcast-compatible shapes. With
    ``k_3 = k_1 ⊕ k_2 ⊕ \mathtt{0x1BD11BDA}``, the counters get ``(k_1, k_2)`` added, then five
    groups of four rounds ``x_1 ← x_1 + x_2;\ x_2 ← \mathrm{rotl}(x_2, r) ⊕ x_1`` each end
    with the key injection ``x_1 += k_{(i+1) \bmod 3},\ x_2 += k_{(i+2) \bmod 3} + i + 1``.

    Returns:
        The two ``uint32`` output words, in the broadcast shape.
    """
    ks = (k1, k2, k1 ^ k2 ^ _KEY_PARITY)
    x1 = x1 + ks[0]
    x2 = x2 + ks[1]
    for group in range(5):
        for r in _ROTATIONS[group % 2]:
            x1 = x1 + x2
            x2 = _rotate_left(x2, r) ^ x1
        x1 = x1 + ks[(group + 1) % 3]
        x2 = x2 + ks[(group + 2) % 3] + np.uint32(group + 1)
    return x1, x2


def install_cpu_lowering() -> None:
    """Lower ``threefry2x32_p`` with :func:`threefry2x32` on the CPU (idempotent).

    Affects programs compiled after the call; nothing changes in their values.
    """
    global _installed
    mlir.register_lowering(
        threefry2x32_p, mlir.lower_fun(threefry2x32, multiple_results=True), platform="cpu"
    )
    _installed = True


def cpu_lowering_installed() -> bool:
    """Whether :func:`install_cpu_lowering` ran in this process."""
    return _installed


def _install_unless_disabled() -> None:
    if os.environ.get(ENV_SWITCH, "1").strip() != "0":
        install_cpu_lowering()
