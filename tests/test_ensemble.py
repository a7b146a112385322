"""Ensembles: vmapped training equals single-network training; sharding; analysis per network."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctrnn_dyn import ensemble, ensemble_analysis
from ctrnn_dyn.model import CTRNNCell, rnn
from ctrnn_dyn.tasks import FlipFlop
from ctrnn_dyn.train import train

TASK = FlipFlop(n_bits=2, n_steps=12)


def _cell(alpha=0.2, noise=0.05):
    return CTRNNCell(hidden_features=6, output_features=2, alpha=alpha, noise_const=noise)


def test_ensemble_equals_single_network_runs():
    """Per-network lr and alpha, noise on, a padded last chunk, a short last block: each
    network equals ``train`` with its key and its hyper-parameters (float32 round-off)."""
    keys = jax.random.split(jax.random.key(3), 3)
    lrs = np.array([1e-2, 3e-3, 2e-2], np.float32)
    alphas = np.array([0.1, 0.2, 0.5], np.float32)
    res = ensemble.train_ensemble(
        _cell(), TASK, keys=keys, steps=7, batch_size=8, chunk_size=2, block_steps=3,
        hparams={"learning_rate": lrs, "alpha": alphas}, eval_batches=2,
    )
    assert len(res) == 3
    assert res.history.loss.shape == (3, 7)
    assert jax.tree_util.tree_leaves(res.params)[0].shape[0] == 3
    for i in (2,):  # network 2 sits in the padded second chunk (one compile per alpha)
        single = train(_cell(alpha=float(alphas[i])), TASK, key=keys[i], steps=7, batch_size=8,
                       learning_rate=float(lrs[i]), eval_batches=2, progress=False)
        mine = res.network(i)
        np.testing.assert_allclose(mine.history.loss, single.history.loss, rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(mine.history.accuracy, single.history.accuracy, atol=1e-6)
        np.testing.assert_allclose(mine.history.eval_loss, single.history.eval_loss, rtol=2e-5)
        np.testing.assert_array_equal(mine.history.step, single.history.step)
        for a, b in zip(jax.tree_util.tree_leaves(mine.params),
                        jax.tree_util.tree_leaves(single.params), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    # the networks really differ (different keys and hyper-parameters)
    assert not np.allclose(res.history.loss[0], res.history.loss[1])
    # a compiled loop over the chunk's networks (vmap_size=1, the CPU default for large
    # networks) gives the same ensemble
    looped = ensemble.train_ensemble(
        _cell(), TASK, keys=keys, steps=7, batch_size=8, chunk_size=2, block_steps=3,
        hparams={"learning_rate": lrs, "alpha": alphas}, eval_batches=2, vmap_size=1,
    )
    np.testing.assert_allclose(looped.history.loss, res.history.loss, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(looped.history.eval_loss, res.history.eval_loss, rtol=2e-5)


def test_ensemble_validation():
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="keys"):
        ensemble.train_ensemble(_cell(), TASK, keys=jnp.zeros((2, 3), jnp.uint32), steps=1,
                                batch_size=2)
    with pytest.raises(ValueError, match="unknown per-network"):
        ensemble.train_ensemble(_cell(), TASK, keys=keys, steps=1, batch_size=2,
                                hparams={"momentum": [0.1, 0.2]})
    with pytest.raises(ValueError, match=r"hparams\['alpha'\].*\(2, \.\.\.\)"):
        ensemble.train_ensemble(_cell(), TASK, keys=keys, steps=1, batch_size=2,
                                hparams={"alpha": [0.1, 0.2, 0.3]})
    with pytest.raises(ValueError, match="alpha"):
        ensemble.train_ensemble(_cell(), TASK, keys=keys, steps=1, batch_size=2,
                                hparams={"alpha": [0.1, 1.5]})
    with pytest.raises(ValueError, match="steps"):
        ensemble.train_ensemble(_cell(), TASK, keys=keys, steps=0, batch_size=2)
    with pytest.raises(ValueError, match="optimizer=None"):
        import optax

        ensemble.train_ensemble(_cell(), TASK, keys=keys, steps=1, batch_size=2,
                                optimizer=optax.sgd(1e-2), hparams={"learning_rate": [1, 2]})
    with pytest.raises(ValueError, match="devices must be 'auto'"):
        ensemble.train_ensemble(_cell(), TASK, keys=keys, steps=1, batch_size=2, devices="gpu")
    with pytest.raises(ValueError, match="multiple of the number of devices"):
        ensemble.train_ensemble(_cell(), TASK, keys=keys, steps=1, batch_size=2, chunk_size=1,
                                devices=[jax.devices()[0], jax.devices()[0]])


_SHARDED = textwrap.dedent("""
    import jax, numpy as np
    assert len(jax.devices()) == 2, jax.devices()
    from ctrnn_dyn.ensemble import train_ensemble
    from ctrnn_dyn.model import CTRNNCell
    from ctrnn_dyn.tasks import FlipFlop
    task = FlipFlop(n_bits=2, n_steps=10)
    cell = CTRNNCell(hidden_features=5, output_features=2, alpha=0.2, noise_const=0.05)
    keys = jax.random.split(jax.random.key(7), 4)
    kw = dict(keys=keys, steps=4, batch_size=8, block_steps=2, eval_batches=1,
              hparams={"learning_rate": [1e-2, 2e-2, 5e-3, 1e-3]})
    plain = train_ensemble(cell, task, devices=None, **kw)
    sharded = train_ensemble(cell, task, devices=jax.devices(), **kw)
    # default devices="auto": all devices; chunk_size 3 is rounded up to 4 (one padding network)
    auto = train_ensemble(cell, task, chunk_size=3, **kw)
    # each device loops over its own networks (shard_map + lax.map), singly and in pairs
    looped = train_ensemble(cell, task, devices=jax.devices(), vmap_size=1, **kw)
    paired = train_ensemble(cell, task, devices=jax.devices(), vmap_size=2, **kw)
    for other in (sharded, auto, looped, paired):
        np.testing.assert_allclose(other.history.loss, plain.history.loss, rtol=1e-5, atol=1e-7)
        for a, b in zip(jax.tree_util.tree_leaves(other.params),
                        jax.tree_util.tree_leaves(plain.params)):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # each device trains only its own networks: the block program has no collectives (a
    # lax.map over the sharded axis, partitioned by SPMD, all-gathers and trains every network
    # on every device)
    import re, jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from ctrnn_dyn import ensemble
    programs = list(ensemble.programs._PROGRAMS.values())[-1]  # the looped, vmap_size=2 run's
    net = NamedSharding(Mesh(np.asarray(jax.devices()), ("networks",)), PartitionSpec("networks"))
    lrs = jax.device_put(np.ones(4, np.float32), net)
    states, k_data, _ = programs.init(jax.device_put(keys, net), {"learning_rate": lrs})
    hlo = programs.block.lower(states, k_data, {}, jnp.asarray(2, jnp.int32), size=2).compile()
    found = re.findall(r"all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter",
                       hlo.as_text())
    assert not found, found
    print("SHARDED-OK")
""")


def test_sharded_ensemble_equals_unsharded():
    """Network axis sharded over 2 forced host devices == one device (subprocess: the flag
    must be set before jax is imported)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        " --xla_force_host_platform_device_count=2").strip()
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run([sys.executable, "-c", _SHARDED], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "SHARDED-OK" in out.stdout


def _contracting_params(key, n, m, scale):
    """Stacked params of 2 networks whose fixed point (zero input) is unique: ||K|| < 1."""
    cell = CTRNNCell(hidden_features=n, output_features=1, alpha=0.5, noise_const=0.0)
    p = [rnn(cell).init(k, jnp.zeros((1, 3, m))) for k in jax.random.split(key, 2)]
    p = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *p)
    tree = p["params"]["cell"]
    K = tree["recurrent_kernel"]["kernel"]
    K = scale * K / jnp.linalg.norm(K, ord=2, axis=(1, 2))[:, None, None]
    tree["recurrent_kernel"]["kernel"] = K
    tree["recurrent_kernel"]["bias"] = jnp.array([[0.3, -0.2, 0.1], [-0.4, 0.2, 0.5]])
    return cell, p


def test_fixed_points_and_dynamics_over_an_ensemble():
    """One call per ensemble; each network's fixed point equals a NumPy fixed-point iteration."""
    cell, params = _contracting_params(jax.random.key(1), 3, 2, 0.5)
    starts = np.random.default_rng(0).normal(size=(6, 3))
    fps = ensemble_analysis.find_fixed_points_ensemble(cell, params, starts)
    assert len(fps) == 2
    for i, fp in enumerate(fps):
        tree = jax.tree_util.tree_map(lambda a, i=i: np.asarray(a[i], np.float64),
                                      params)["params"]["cell"]
        K, b = tree["recurrent_kernel"]["kernel"], tree["recurrent_kernel"]["bias"]
        x = np.zeros(3)
        for _ in range(200):  # contraction: x = tanh(x) K + b
            x = np.tanh(x) @ K + b
        fixed = fp.fixed
        assert len(fixed) == 1
        np.testing.assert_allclose(fixed.x[0], x, atol=1e-8)
        assert len(fixed.stable) == 1
    classes = ensemble_analysis.classify_dynamics_ensemble(cell, params, starts[:2],
                                                           n_transient=200, n_steps=400)
    assert [set(c.labels) for c in classes] == [{"fixed point"}, {"fixed point"}]
