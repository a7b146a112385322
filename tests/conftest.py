import os

import jax
import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def key() -> jax.Array:
    """A fixed PRNG key so every test is reproducible."""
    return jax.random.PRNGKey(20131)

# The ``ctrnn-dyn`` command turns on XLA's persistent compilation cache, a process-wide JAX
# setting; the command's tests run in this process and must not change JAX for the others
# (tests/test_compile_cache.py runs it, on, in fresh processes).
os.environ.setdefault("CTRNN_DYN_COMPILE_CACHE", "0")
