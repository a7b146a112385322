r"""Many networks at once: ``vmap`` over params, optimiser states and keys; device sharding.

An ensemble is ``E`` independent networks that share a cell *architecture* and a task. Each
network ``i`` is trained exactly as :func:`ctrnn_dyn.train.train` would train it alone with
``key = keys[i]`` — same key split ``(init, data, eval) = split(key, 3)``, same per-step batches
``fold_in(data_key, step)``, same loss and optimiser step (the per-network step of
:func:`ctrnn_dyn.train.make_train_step`, vectorised with :func:`jax.vmap`) — so its result
equals the single-network run up to float32 round-off.

Per-network hyper-parameters (``hparams``) carry the network axis where the maths allows it:

* ``alpha``, ``noise_const`` — fields of the cell; the cell is rebuilt inside the vectorised step
  with the network's (traced) value;
* ``learning_rate``, ``weight_decay``, ``clip_norm``, ``b1``, ``b2`` — hyper-parameters of
  :func:`~ctrnn_dyn.train.default_optimizer`, injected into the optimiser *state* with
  :func:`optax.inject_hyperparams` so that each network's state holds its own value.

Everything else (sizes, ``steps``, ``batch_size``, the loss and its regularisers) is shared.

Layout and speed. The ``E`` networks are trained in chunks of ``chunk_size``; each chunk is one
compiled program that runs ``block_steps`` steps of the vectorised step inside a
``lax.fori_loop`` (one host round-trip per block). With several devices (the default
``devices="auto"``) the network axis of every chunk is sharded over them with
:mod:`jax.sharding`, and the block is written per device with :func:`jax.shard_map`: each
device steps only its own networks, with no communication (a ``lax.map`` over a sharded axis
left to the SPMD partitioner is all-gathered, so every device would train every network).

Where the speed comes from on a CPU (measured with ``benchmarks/ensemble.py``: 100 units, 100
inputs, T = 50, batch 256). One network's step is a chain of small dependent matmuls — per time
step one ``(B, n) × (n, n)`` forward and one backward — that XLA:CPU runs on one core at about
the speed of a loop of the same matmuls; vectorising them (``vmap``) turns them into batched
matmuls of the same per-network cost and multiplies every ``(T, B, ·)`` intermediate ``E``-fold,
so on one device an ensemble is only about as fast as a compiled loop (1.0–1.2×). The gains are
(1) parallelism: independent networks on separate cores, which one small network cannot use —
expose the cores as devices before JAX starts
(``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>``) and the default
``devices="auto"`` shards the chunk over them, each core looping over its networks at about the
speed of a single-network process on that core (on 2 cores 1.1× a compiled loop of the default
fast step, whose compiled recurrence kernels already use both cores, and 2.2× a loop through
``nn.RNN``); (2)
less work per network: a task with an ``input_basis`` (the modulo-3 task's three colour vectors)
is trained on its ``(B, T, 3)`` codes with ``basis @ K_in`` as the input kernel
(:func:`ctrnn_dyn.train.loss_fn`), removing a third of the step's arithmetic for ensemble and
loop alike. ``vmap_size`` bounds the number of networks vectorised together on a device
(``"auto"``: one at a time for large networks on a CPU); on a GPU, vectorise everything (on one
H200 an ensemble of 1024 trains 26× more networks per hour than a compiled loop:
``benchmarks/results/ensemble_h200.txt``).
"""

from __future__ import annotations

from ctrnn_dyn.ensemble.result import EnsembleHistory as EnsembleHistory
from ctrnn_dyn.ensemble.result import EnsembleResult as EnsembleResult
from ctrnn_dyn.ensemble.result import network_params as network_params
from ctrnn_dyn.ensemble.training import train_ensemble as train_ensemble
from ctrnn_dyn.ensemble.validation import CELL_HPARAMS as CELL_HPARAMS
from ctrnn_dyn.ensemble.validation import OPTIMIZER_HPARAMS as OPTIMIZER_HPARAMS

__all__ = [
    "CELL_HPARAMS",
    "OPTIMIZER_HPARAMS",
    "EnsembleHistory",
    "EnsembleResult",
    "train_ensemble",
    "network_params",
]
