"""The attract-or-oscillate modulo-3 "SET" task: labels by ``a + b + c mod 3``."""

from __future__ import annotations

import dataclasses
import itertools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn._checks import check_int
from ctrnn_dyn.tasks.base import (
    Batch,
    _check_batch_size,
    _check_outputs,
    _decision_accuracy,
)

__all__ = ["ModuloThree", "set_label", "ALL_COLOUR_COMBINATIONS"]


ALL_COLOUR_COMBINATIONS: tuple[tuple[int, int, int], ...] = tuple(
    itertools.product(range(3), repeat=3)
)


def set_label(a: int, b: int, c: int) -> int:
    """The SET rule: +1 if the three colours are all equal or all different, else −1.

    Equivalent to ``a + b + c ≡ 0 (mod 3)`` for colours in {0, 1, 2}.
    """
    return 1 if (a + b + c) % 3 == 0 else -1


@dataclasses.dataclass(frozen=True)
class ModuloThree:
    r"""The modulo-3 "SET" task (attract-or-oscillate study).

    Three colour stimuli — colour ``k ∈ {0,1,2}`` is a fixed random vector ``v_k`` of length
    ``stimulus_dim`` (standard normal, from ``numpy.random.default_rng(colour_seed)``) — are each
    shown for ``stimulus_steps`` steps, starting at sorted positions ``t_1 < t_2 < t_3`` in
    ``[first_onset, last_onset)`` at least ``min_gap`` apart, drawn uniformly among all such
    triples, in a trial of ``n_steps`` steps. The label is ``+1`` if ``a + b + c ≡ 0 (mod 3)``
    (all equal or all different) and ``−1`` otherwise; the target is the label on the last
    ``response_steps`` steps (masked elsewhere). Defaults: 100-d colours, 2-step stimuli in
    ``[3, 40)``, gap 5, 50 steps, 5 response steps.

    ``combinations`` restricts the ordered colour triples drawn (uniformly) — the train/test
    split; see :meth:`split`. ``accuracy``: fraction of trials whose mask-averaged output has
    the label's sign.
    """

    n_steps: int = 50
    stimulus_dim: int = 100
    stimulus_steps: int = 2
    first_onset: int = 3
    last_onset: int = 40
    min_gap: int = 5
    response_steps: int = 5
    colour_seed: int = 0
    combinations: tuple[tuple[int, int, int], ...] = ALL_COLOUR_COMBINATIONS

    output_size: ClassVar[int] = 1

    def __post_init__(self) -> None:
        for name in ("n_steps", "stimulus_dim", "stimulus_steps", "response_steps", "min_gap"):
            check_int(name, getattr(self, name), 1)
        check_int("first_onset", self.first_onset, 0)
        combos = tuple(tuple(int(v) for v in c) for c in self.combinations)
        if not combos or any(len(c) != 3 or not all(0 <= v < 3 for v in c) for c in combos):
            raise ValueError(
                "combinations must be a non-empty sequence of colour triples in {0,1,2}^3"
            )
        object.__setattr__(self, "combinations", combos)
        if self.min_gap < self.stimulus_steps:
            raise ValueError(
                f"min_gap ({self.min_gap}) must be >= stimulus_steps ({self.stimulus_steps})"
            )
        if self._n_slots < 3:
            raise ValueError(
                f"onset range [{self.first_onset}, {self.last_onset}) is too short for three "
                f"onsets {self.min_gap} apart"
            )
        last_stim_end = self.last_onset - 1 + self.stimulus_steps
        if last_stim_end > self.n_steps - self.response_steps:
            raise ValueError(
                "stimuli must end before the response window: last_onset - 1 + stimulus_steps "
                f"= {last_stim_end} > n_steps - response_steps = "
                f"{self.n_steps - self.response_steps}"
            )

    @property
    def input_size(self) -> int:
        return self.stimulus_dim

    @property
    def _n_slots(self) -> int:
        # onsets t_k = first_onset + s_k + k (min_gap - 1) with s_1 < s_2 < s_3 in [0, n_slots)
        return self.last_onset - self.first_onset - 2 * (self.min_gap - 1)

    @property
    def colours(self) -> np.ndarray:
        """The three colour vectors ``(3, stimulus_dim)`` (float32)."""
        rng = np.random.default_rng(self.colour_seed)
        return rng.standard_normal((3, self.stimulus_dim)).astype(np.float32)

    def split(
        self, test_combinations: tuple[tuple[int, int, int], ...]
    ) -> tuple[ModuloThree, ModuloThree]:
        """(train task, test task) with the given colour triples held out for testing."""
        test = tuple(tuple(int(v) for v in c) for c in test_combinations)
        train = tuple(c for c in ALL_COLOUR_COMBINATIONS if c not in set(test))
        return (dataclasses.replace(self, combinations=train),
                dataclasses.replace(self, combinations=test))

    @property
    def input_basis(self) -> np.ndarray:
        """``(3, stimulus_dim)``: the colour vectors; ``inputs = codes @ input_basis``."""
        return self.colours

    def codes_for(self, colours: jax.Array, onsets: jax.Array) -> Batch:
        """As :meth:`batch_for` with ``inputs`` the ``(B, T, 3)`` one-hot colour codes."""
        colours = jnp.asarray(colours)
        onsets = jnp.asarray(onsets)
        t = jnp.arange(self.n_steps)
        shown = (t[None, None, :] >= onsets[..., None]) & (
            t[None, None, :] < onsets[..., None] + self.stimulus_steps
        )  # (B, 3, T): stimulus k on at time t
        which = jax.nn.one_hot(colours, 3, dtype=jnp.float32)  # (B, 3 stimuli, 3 colours)
        codes = jnp.einsum("bkt,bkc->btc", shown.astype(jnp.float32), which)
        label = jnp.where(colours.sum(axis=1) % 3 == 0, 1.0, -1.0)
        resp = (t >= self.n_steps - self.response_steps).astype(jnp.float32)
        targets = (label[:, None] * resp[None, :])[..., None]
        mask = jnp.broadcast_to(resp[None, :, None], targets.shape)
        return Batch(codes, targets, mask)

    def batch_for(self, colours: jax.Array, onsets: jax.Array) -> Batch:
        """Trials for given colour triples ``(B, 3)`` (ints) and onsets ``(B, 3)``."""
        return self.decode_codes(self.codes_for(colours, onsets))

    def decode_codes(self, coded: Batch) -> Batch:
        """``coded`` (inputs ``(B, T, 3)`` colour codes) with inputs ``codes @ input_basis``
        ``(B, T, stimulus_dim)``."""
        # stimuli never overlap (min_gap >= stimulus_steps): each code row has at most one 1,
        # so this product is exact
        inputs = jnp.einsum("btc,cd->btd", coded.inputs, jnp.asarray(self.input_basis))
        return coded._replace(inputs=inputs)

    def sample_codes(self, key: jax.Array, batch_size: int) -> Batch:
        """The trials of ``sample(key, batch_size)`` with ``inputs`` the ``(B, T, 3)`` codes."""
        return self.codes_for(*self._draw(key, _check_batch_size(batch_size)))

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        """``batch_size`` trials; see the class docstring."""
        return self.batch_for(*self._draw(key, _check_batch_size(batch_size)))

    def _draw(self, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
        """Colour triples ``(B, 3)`` and sorted onsets ``(B, 3)``."""
        k_c, k_t = jax.random.split(key)
        combos = jnp.asarray(self.combinations, jnp.int32)
        colours = combos[jax.random.randint(k_c, (batch_size,), 0, combos.shape[0])]
        keys = jax.random.split(k_t, batch_size)
        slots = jax.vmap(
            lambda k: jnp.sort(jax.random.choice(k, self._n_slots, (3,), replace=False))
        )(keys)
        onsets = self.first_onset + slots + jnp.arange(3) * (self.min_gap - 1)
        return colours, onsets

    def accuracy(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        """Fraction of trials whose mask-averaged output has the label's sign."""
        _check_outputs(self, outputs, batch)
        return _decision_accuracy(outputs, batch)
