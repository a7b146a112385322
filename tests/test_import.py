"""Importing the package changes nothing in JAX, and costs nothing until a name is used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ctrnn_dyn

# Jitted draws with compile-time-constant keys (the cases a replaced lowering rule changed),
# printed bit for bit; then JAX's configuration. ``IMPORT`` is replaced by the import under test.
DRAWS = """
import hashlib, json
import jax, jax.numpy as jnp
import numpy as np
IMPORT

def digest(x):
    return hashlib.sha256(np.asarray(x).tobytes()).hexdigest()[:16]

out = {
    "uniform": float(jax.jit(lambda: jax.random.uniform(
        jax.random.key(42), (), minval=-2.0, maxval=3.0))()),
    "normal": digest(jax.jit(lambda: jax.random.normal(jax.random.key(0), (200, 64, 128)))()),
    "bits": digest(jax.jit(lambda: jax.random.bits(jax.random.key(7), (1000,)))()),
    "randint": digest(jax.jit(lambda: jax.random.randint(jax.random.key(3), (99,), 0, 10))()),
    "split": digest(jax.jit(lambda: jax.random.key_data(jax.random.split(jax.random.key(5), 9)))()),
    "raw_key": digest(jax.jit(lambda: jax.random.normal(jax.random.PRNGKey(1), (17,)))()),
}
with jax.enable_x64(True):
    out["normal64"] = digest(jax.jit(lambda: jax.random.normal(
        jax.random.key(11), (5,), jnp.float64))())
    out["uniform64"] = digest(jax.jit(lambda: jax.random.uniform(
        jax.random.key(12), (3,), jnp.float64, -1.0, 2.0))())
out["config"] = {k: repr(v) for k, v in sorted(jax.config.values.items())}
print(json.dumps(out))
"""

EVERYTHING = """
import ctrnn_dyn
for name in ctrnn_dyn.__all__:
    getattr(ctrnn_dyn, name)
import ctrnn_dyn.plot, ctrnn_dyn.reproduce, ctrnn_dyn.sweep, ctrnn_dyn.cli, ctrnn_dyn.checkpoint
from ctrnn_dyn import native
native.prepare()
"""


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_package_leaves_every_jax_draw_and_setting_unchanged():
    """Two fresh processes, one without the package and one that imports every module of it
    (and loads the compiled kernels) before compiling the same draws."""
    without = _run(DRAWS.replace("IMPORT", ""))
    with_package = _run(DRAWS.replace("IMPORT", EVERYTHING))
    assert with_package == without
    # the example: a replaced lowering gave 0.44354772567749023 here
    assert without["uniform"] == 0.4435478448867798


def test_importing_the_package_loads_no_library():
    code = ("import sys, json, ctrnn_dyn; print(json.dumps(sorted(m for m in "
            "('jax', 'flax', 'optax', 'jaxopt', 'sklearn', 'matplotlib', 'pandas', 'scipy') "
            "if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_no_lowering_rule_is_replaced_anywhere_in_the_package():
    package = Path(ctrnn_dyn.__file__).parent
    offenders = [str(p) for p in package.rglob("*.py") if "register_lowering" in p.read_text()]
    assert offenders == []


def test_every_public_name_resolves_and_unknown_names_raise():
    for name in ctrnn_dyn.__all__:
        assert getattr(ctrnn_dyn, name) is not None
    assert set(ctrnn_dyn.__all__) <= set(dir(ctrnn_dyn))
    try:
        ctrnn_dyn.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
