import os
import shutil

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


@pytest.fixture(scope="session")
def native_kernels() -> None:
    """The compiled kernels built and loaded (the test is skipped where no C++ compiler is on
    ``PATH``; a failing build fails it, with the reason)."""
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler on PATH")
    from ctrnn_dyn import native

    assert native.prepare(), native.status()
