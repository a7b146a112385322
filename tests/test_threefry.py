"""The unrolled CPU lowering of Threefry-2x32 gives JAX's bits: known answers, NumPy, fresh JAX."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from ctrnn_dyn import threefry
from ctrnn_dyn.model import CTRNNCell, rnn

# Random123's known-answer vectors for threefry2x32_20: (key, counter) -> output.
KNOWN_ANSWERS = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


def _numpy_threefry(key, x):
    """Threefry-2x32, 20 rounds, written from Salmon et al. (2011) with Python integers."""
    mask = 0xFFFFFFFF
    rot = [13, 15, 26, 6, 17, 29, 16, 24]
    ks = [key[0], key[1], key[0] ^ key[1] ^ 0x1BD11BDA]
    x0, x1 = (x[0] + ks[0]) & mask, (x[1] + ks[1]) & mask
    for rnd in range(20):
        x0 = (x0 + x1) & mask
        r = rot[rnd % 8]
        x1 = (((x1 << r) | (x1 >> (32 - r))) & mask) ^ x0
        if rnd % 4 == 3:
            s = rnd // 4 + 1
            x0 = (x0 + ks[s % 3]) & mask
            x1 = (x1 + ks[(s + 1) % 3] + s) & mask
    return x0, x1


def test_the_package_installs_the_unrolled_lowering():
    assert threefry.cpu_lowering_installed()
    hlo = jax.jit(lambda k: jax.random.bits(k, (64,))).lower(jax.random.key(0)).compile()
    assert "while" not in hlo.as_text()  # JAX's rolled lowering is a 5-trip while loop


@pytest.mark.parametrize("key, count, expected", KNOWN_ANSWERS)
def test_known_answers(key, count, expected):
    out = threefry_2x32(np.uint32(key), np.uint32(count))  # through the installed lowering
    assert [int(v) for v in np.asarray(out)] == list(expected)
    assert _numpy_threefry(key, count) == expected
    direct = threefry.threefry2x32(*(jnp.uint32(v) for v in (*key, *count)))
    assert tuple(int(v) for v in direct) == expected


def test_matches_numpy_on_random_words_with_broadcasting():
    rng = np.random.default_rng(0)
    k = rng.integers(0, 2**32, size=2, dtype=np.uint64).astype(np.uint32)
    x1, x2 = (rng.integers(0, 2**32, size=(3, 50), dtype=np.uint64).astype(np.uint32)
              for _ in range(2))
    y1, y2 = jax.jit(threefry.threefry2x32)(k[0], k[1], x1, x2)  # scalar key, (3, 50) words
    ref = np.array([_numpy_threefry((int(k[0]), int(k[1])), (int(a), int(b)))
                    for a, b in zip(x1.ravel(), x2.ravel(), strict=True)])
    np.testing.assert_array_equal(np.asarray(y1).ravel(), ref[:, 0])
    np.testing.assert_array_equal(np.asarray(y2).ravel(), ref[:, 1])


_FRESH_JAX = """
import json, sys, jax, jax.numpy as jnp, numpy as np
assert "ctrnn_dyn" not in sys.modules
k = jax.random.key(7)
out = {
    "normal": np.asarray(jax.jit(lambda k: jax.random.normal(k, (33, 17)))(k)).tolist(),
    "split": np.asarray(jax.random.key_data(jax.random.split(k, 5))).tolist(),
    "fold_in": np.asarray(jax.random.key_data(jax.random.fold_in(k, 123))).tolist(),
    "bits": np.asarray(jax.random.bits(jax.random.PRNGKey(3), (1001,))).tolist(),
}
print(json.dumps(out))
"""


def test_draws_equal_jax_own_lowering_in_a_fresh_process():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", _FRESH_JAX], capture_output=True, text=True,
                          env=env, check=True, timeout=300)
    ref = json.loads(done.stdout)
    k = jax.random.key(7)
    np.testing.assert_array_equal(
        np.asarray(jax.jit(lambda k: jax.random.normal(k, (33, 17)))(k)),
        np.asarray(ref["normal"], np.float32))
    np.testing.assert_array_equal(np.asarray(jax.random.key_data(jax.random.split(k, 5))),
                                  np.asarray(ref["split"], np.uint32))
    np.testing.assert_array_equal(np.asarray(jax.random.key_data(jax.random.fold_in(k, 123))),
                                  np.asarray(ref["fold_in"], np.uint32))
    np.testing.assert_array_equal(np.asarray(jax.random.bits(jax.random.PRNGKey(3), (1001,))),
                                  np.asarray(ref["bits"], np.uint32))


_SWITCHED_OFF = """
import jax, ctrnn_dyn
from ctrnn_dyn.model import CTRNNCell, rnn
import jax.numpy as jnp, numpy as np
hlo = jax.jit(lambda k: jax.random.bits(k, (64,))).lower(jax.random.key(0)).compile().as_text()
net = rnn(CTRNNCell(4, 1, alpha=0.5, noise_const=0.3))
u = jnp.ones((2, 6, 3))
p = net.init(jax.random.key(0), u)
y, _ = net.apply(p, u, rngs={"noise_stream": jax.random.key(1)})
assert not ctrnn_dyn.threefry.cpu_lowering_installed()
print("while" in hlo, np.asarray(y).tobytes().hex())
"""


def test_switch_keeps_jax_lowering_and_the_cell_noise_is_unchanged():
    env = {**os.environ, "JAX_PLATFORMS": "cpu", threefry.ENV_SWITCH: "0"}
    done = subprocess.run([sys.executable, "-c", _SWITCHED_OFF], capture_output=True,
                          text=True, env=env, check=True, timeout=300)
    rolled, outputs = done.stdout.split()
    assert rolled == "True"
    net = rnn(CTRNNCell(4, 1, alpha=0.5, noise_const=0.3))
    u = jnp.ones((2, 6, 3))
    p = net.init(jax.random.key(0), u)
    y, _ = net.apply(p, u, rngs={"noise_stream": jax.random.key(1)})
    assert np.asarray(y).tobytes().hex() == outputs
