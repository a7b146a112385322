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
