r"""Cognitive tasks as pure, keyed JAX generators (SCIENCE.md §3).

Every task is a small frozen dataclass of its parameters with

* ``sample(key, batch_size) -> Batch(inputs, targets, mask)`` — shapes ``(B, T, m)``,
  ``(B, T, p)``, ``(B, T, p)``; pure JAX, jittable (``batch_size`` static);
* ``input_size`` (``m``), ``output_size`` (``p``), ``n_steps`` (``T``);
* ``accuracy(outputs, batch) -> scalar`` — the task's score on a batch of network outputs
  ``(B, T, p)`` (documented per task), jittable.

Optionally, a task whose inputs are combinations of a few fixed vectors (``inputs = codes @
basis``) also has ``input_basis`` ``(k, m)`` and ``sample_codes(key, batch_size)``: the same
trials as ``sample`` with ``inputs`` replaced by the ``(B, T, k)`` codes. Training then projects
the ``k`` basis vectors through the input kernel once per step instead of every ``(B, T)``
input (:func:`ctrnn_dyn.train.loss_fn`'s ``input_basis``).

Time convention: the CT-RNN reads its output *after* the update, so ``outputs[:, t]`` is the
network's response having seen ``inputs[:, :t+1]``; targets are aligned with that.

Tasks:

* :class:`SineWave` — the seed's sine-wave generator (Sussillo & Barak 2013).
* :class:`FlipFlop` — N-bit flip-flop.
* :class:`ContextIntegration` — Mante et al. (2013) context-dependent integration.
* :class:`PerceptualDecision` — integrate one noisy channel, report its sign.
* :class:`ModuloThree` — the attract-or-oscillate "SET" task (labels by ``a + b + c mod 3``).
* :class:`NeurogymTask` — a neurogym environment's trials (:func:`from_neurogym`; optional
  dependency ``neurogym``).

``get_task(name, **kwargs)`` builds one from the registry ``TASKS`` (used by the CLI).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Batch",
    "SineWave",
    "FlipFlop",
    "ContextIntegration",
    "PerceptualDecision",
    "ModuloThree",
    "FixedTrials",
    "NeurogymTask",
    "from_neurogym",
    "TASKS",
    "get_task",
    "task_config",
    "task_from_config",
    "set_label",
]


class Batch(NamedTuple):
    """One batch of trials.

    Attributes:
        inputs: ``(B, T, m)`` network inputs.
        targets: ``(B, T, p)`` desired outputs.
        mask: ``(B, T, p)`` loss weights (1 where the output is scored, 0 elsewhere).
    """

    inputs: jax.Array
    targets: jax.Array
    mask: jax.Array


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise TypeError(f"batch_size must be an int >= 1, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return int(batch_size)


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int >= {low}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def _check_outputs(task: Any, outputs: jax.Array, batch: Batch) -> None:
    if outputs.shape != batch.targets.shape:
        raise ValueError(
            f"outputs must have the targets' shape (B, T, p) = {batch.targets.shape}, "
            f"got {outputs.shape}"
        )


def _decision_accuracy(outputs: jax.Array, batch: Batch) -> jax.Array:
    """Fraction of trials whose mask-averaged output has the sign of the (±1) label."""
    m = batch.mask
    denom = jnp.maximum(m.sum(axis=(1, 2)), 1.0)
    y = (outputs * m).sum(axis=(1, 2)) / denom
    label = (batch.targets * m).sum(axis=(1, 2)) / denom
    return jnp.mean((jnp.sign(y) == jnp.sign(label)).astype(jnp.float32))


# ---------------------------------------------------------------------------------------------
# Sine wave
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SineWave:
    r"""The seed's sine-wave generator (Sussillo & Barak 2013).

    A static input level :math:`u = 0.25 + (100\omega - 9)/51` selects the frequency
    :math:`\omega` (radians per step); the target is :math:`\sin(\omega t)`, ``t = 0 … T−1``.
    The frequencies are ``np.arange(omega_min, omega_max, omega_step)`` (seed: 0.1 … 0.5 in
    steps of 0.001, 400 frequencies, ``T = 50``). ``sample`` draws frequencies uniformly with
    replacement; :meth:`full_batch` gives every frequency once.

    ``accuracy`` is the seed's score ``clip(1 − MSE/Var(targets), 0, 1)`` over the batch.
    """

    n_steps: int = 50
    omega_min: float = 0.1
    omega_max: float = 0.5
    omega_step: float = 0.001

    input_size: ClassVar[int] = 1
    output_size: ClassVar[int] = 1

    def __post_init__(self) -> None:
        _check_int("n_steps", self.n_steps, 1)
        if not (0 < self.omega_step and self.omega_min < self.omega_max):
            raise ValueError(
                "need omega_step > 0 and omega_min < omega_max, got "
                f"{self.omega_min}, {self.omega_max}, {self.omega_step}"
            )

    @property
    def frequencies(self) -> np.ndarray:
        """All frequencies ``ω`` (rad/step), as the seed builds them (float32)."""
        return np.arange(self.omega_min, self.omega_max, self.omega_step, dtype=np.float32)

    @staticmethod
    def input_level(omega: jax.Array) -> jax.Array:
        """The static input ``0.25 + (100 ω − 9) / 51`` for frequency ``ω``."""
        return 0.25 + (100.0 * omega - 9.0) / 51.0

    def batch_for(self, omegas: jax.Array) -> Batch:
        """Trials for the given frequencies ``omegas`` ``(B,)``."""
        omegas = jnp.asarray(omegas, jnp.float32)
        t = jnp.arange(self.n_steps, dtype=jnp.float32)
        u = jnp.broadcast_to(self.input_level(omegas)[:, None, None], (omegas.shape[0],
                                                                        self.n_steps, 1))
        y = jnp.sin(omegas[:, None] * t[None, :])[..., None]
        return Batch(u, y, jnp.ones_like(y))

    def full_batch(self) -> Batch:
        """Every frequency once, in order: ``B = len(frequencies)``."""
        return self.batch_for(jnp.asarray(self.frequencies))

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        """``batch_size`` trials with frequencies drawn uniformly from :attr:`frequencies`."""
        batch_size = _check_batch_size(batch_size)
        freqs = jnp.asarray(self.frequencies)
        idx = jax.random.randint(key, (batch_size,), 0, freqs.shape[0])
        return self.batch_for(freqs[idx])

    def accuracy(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        """``clip(1 − MSE/Var(targets), 0, 1)`` (masked), the seed's score."""
        _check_outputs(self, outputs, batch)
        m = batch.mask
        n = jnp.maximum(m.sum(), 1.0)
        mse = jnp.sum(m * (outputs - batch.targets) ** 2) / n
        mean = jnp.sum(m * batch.targets) / n
        var = jnp.sum(m * (batch.targets - mean) ** 2) / n
        return jnp.clip(1.0 - mse / var, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Flip-flop
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FlipFlop:
    r"""N-bit flip-flop (Sussillo & Barak 2013; FixedPointFinder's example).

    Each of the ``n_bits`` input channels carries sparse one-step pulses: at every step, with
    probability ``p_pulse``, a pulse of sign ±1 (equally likely). Output ``i`` must hold the sign
    of channel ``i``'s most recent pulse (including a pulse at the current step):

    .. math::

        y^*_{t,i} = u_{s,i},\quad s = \max\{s \le t : u_{s,i} \ne 0\}.

    Before a channel's first pulse the target is 0 and masked out; the ``settle_steps`` steps
    starting at each pulse are also masked (time for a leaky network to switch), so
    ``settle_steps=0`` scores every step from the pulse on.

    ``accuracy`` is the per-bit sign accuracy: the fraction of masked entries with
    ``sign(y) == target``.
    """

    n_bits: int = 3
    n_steps: int = 100
    p_pulse: float = 0.05
    settle_steps: int = 0

    def __post_init__(self) -> None:
        _check_int("n_bits", self.n_bits, 1)
        _check_int("n_steps", self.n_steps, 1)
        _check_int("settle_steps", self.settle_steps, 0)
        if not 0.0 < self.p_pulse <= 1.0:
            raise ValueError(f"p_pulse must be in (0, 1], got {self.p_pulse}")

    @property
    def input_size(self) -> int:
        return self.n_bits

    @property
    def output_size(self) -> int:
        return self.n_bits

    def targets_from_inputs(self, inputs: jax.Array) -> Batch:
        """Targets and mask for given pulse ``inputs`` ``(B, T, n_bits)`` (values in {−1, 0, 1})."""
        T = inputs.shape[1]
        t = jnp.arange(T)[None, :, None]
        last = jax.lax.cummax(jnp.where(inputs != 0, t, -1), axis=1)  # last pulse index or -1
        seen = last >= 0
        held = jnp.take_along_axis(inputs, jnp.maximum(last, 0), axis=1)
        targets = jnp.where(seen, held, 0.0)
        mask = (seen & (t - last >= self.settle_steps)).astype(inputs.dtype)
        return Batch(inputs, targets, mask)

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        """``batch_size`` trials of random pulses; see the class docstring."""
        batch_size = _check_batch_size(batch_size)
        k_pulse, k_sign = jax.random.split(key)
        shape = (batch_size, self.n_steps, self.n_bits)
        pulse = jax.random.bernoulli(k_pulse, self.p_pulse, shape)
        sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, shape), 1.0, -1.0)
        inputs = jnp.where(pulse, sign, 0.0).astype(jnp.float32)
        return self.targets_from_inputs(inputs)

    def accuracy(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        """Per-bit sign accuracy on masked entries."""
        _check_outputs(self, outputs, batch)
        m = batch.mask
        hit = (jnp.sign(outputs) == batch.targets).astype(jnp.float32)
        return jnp.sum(hit * m) / jnp.maximum(m.sum(), 1.0)


# ---------------------------------------------------------------------------------------------
# Evidence integration tasks
# ---------------------------------------------------------------------------------------------


def _evidence_windows(n_steps: int, stim_start: int, stim_steps: int, response_steps: int):
    stim_end = stim_start + stim_steps
    if stim_end + response_steps > n_steps:
        raise ValueError(
            f"stim_start + stim_steps + response_steps = {stim_end + response_steps} must be "
            f"<= n_steps = {n_steps}"
        )
    t = np.arange(n_steps)
    stim = (t >= stim_start) & (t < stim_end)
    response = t >= n_steps - response_steps
    return stim.astype(np.float32), response.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class PerceptualDecision:
    r"""Perceptual decision / integrator: integrate one noisy channel, report its sign.

    Each trial draws a coherence ``c`` uniformly from ``±coherences``; during the stimulus window
    ``[stim_start, stim_start + stim_steps)`` the input is ``c + noise_std · ξ_t`` (zero
    elsewhere). The target is :math:`\mathrm{sign}(\sum_t u_t)` — the sign of the integrated
    evidence actually shown — on the last ``response_steps`` steps, masked elsewhere.

    ``accuracy``: fraction of trials whose mask-averaged output has the target's sign.
    """

    n_steps: int = 60
    stim_start: int = 5
    stim_steps: int = 40
    response_steps: int = 10
    coherences: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
    noise_std: float = 0.5

    input_size: ClassVar[int] = 1
    output_size: ClassVar[int] = 1

    def __post_init__(self) -> None:
        for name in ("n_steps", "stim_steps", "response_steps"):
            _check_int(name, getattr(self, name), 1)
        _check_int("stim_start", self.stim_start, 0)
        _evidence_windows(self.n_steps, self.stim_start, self.stim_steps, self.response_steps)
        if len(self.coherences) == 0:
            raise ValueError("coherences must be a non-empty sequence of evidence strengths")
        if not self.noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std!r}")
        object.__setattr__(self, "coherences", tuple(float(c) for c in self.coherences))

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        """``batch_size`` trials; see the class docstring."""
        batch_size = _check_batch_size(batch_size)
        k_c, k_s, k_n = jax.random.split(key, 3)
        stim, resp = _evidence_windows(
            self.n_steps, self.stim_start, self.stim_steps, self.response_steps
        )
        coh = jnp.asarray(self.coherences, jnp.float32)
        c = coh[jax.random.randint(k_c, (batch_size,), 0, coh.shape[0])]
        c = c * jnp.where(jax.random.bernoulli(k_s, 0.5, (batch_size,)), 1.0, -1.0)
        noise = self.noise_std * jax.random.normal(k_n, (batch_size, self.n_steps))
        u = (c[:, None] + noise) * stim[None, :]
        label = jnp.where(u.sum(axis=1) >= 0, 1.0, -1.0)
        targets = (label[:, None] * resp[None, :])[..., None]
        mask = jnp.broadcast_to(jnp.asarray(resp)[None, :, None], targets.shape)
        return Batch(u[..., None], targets, mask)

    def accuracy(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        """Fraction of trials whose mask-averaged output has the label's sign."""
        _check_outputs(self, outputs, batch)
        return _decision_accuracy(outputs, batch)


@dataclasses.dataclass(frozen=True)
class ContextIntegration:
    r"""Context-dependent integration (Mante, Sussillo, Shenoy & Newsome 2013).

    Inputs ``(B, T, 4)``: two noisy evidence channels ("motion", "colour") and a one-hot context
    cue (channels 2, 3) shown on every step. Each trial draws the two coherences independently
    and uniformly from ``±coherences`` and the context uniformly; during the stimulus window
    channel ``k`` carries ``c_k + noise_std · ξ_{t,k}``. The target on the last
    ``response_steps`` steps is the sign of the *cued* channel's integrated evidence
    :math:`\mathrm{sign}(\sum_t u_{t,k^*})`; elsewhere it is masked.

    ``accuracy``: fraction of trials whose mask-averaged output has the target's sign.
    """

    n_steps: int = 60
    stim_start: int = 5
    stim_steps: int = 40
    response_steps: int = 10
    coherences: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
    noise_std: float = 0.5

    input_size: ClassVar[int] = 4
    output_size: ClassVar[int] = 1

    def __post_init__(self) -> None:
        PerceptualDecision.__post_init__(self)  # same parameter checks

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        """``batch_size`` trials; see the class docstring."""
        batch_size = _check_batch_size(batch_size)
        k_c, k_s, k_ctx, k_n = jax.random.split(key, 4)
        stim, resp = _evidence_windows(
            self.n_steps, self.stim_start, self.stim_steps, self.response_steps
        )
        coh = jnp.asarray(self.coherences, jnp.float32)
        c = coh[jax.random.randint(k_c, (batch_size, 2), 0, coh.shape[0])]
        c = c * jnp.where(jax.random.bernoulli(k_s, 0.5, (batch_size, 2)), 1.0, -1.0)
        ctx = jax.random.randint(k_ctx, (batch_size,), 0, 2)
        noise = self.noise_std * jax.random.normal(k_n, (batch_size, self.n_steps, 2))
        evidence = (c[:, None, :] + noise) * stim[None, :, None]
        cue = jnp.broadcast_to(jax.nn.one_hot(ctx, 2)[:, None, :], (batch_size, self.n_steps, 2))
        inputs = jnp.concatenate([evidence, cue], axis=-1)
        cued = jnp.take_along_axis(evidence.sum(axis=1), ctx[:, None], axis=1)[:, 0]
        label = jnp.where(cued >= 0, 1.0, -1.0)
        targets = (label[:, None] * resp[None, :])[..., None]
        mask = jnp.broadcast_to(jnp.asarray(resp)[None, :, None], targets.shape)
        return Batch(inputs, targets, mask)

    def accuracy(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        """Fraction of trials whose mask-averaged output has the label's sign."""
        _check_outputs(self, outputs, batch)
        return _decision_accuracy(outputs, batch)


# ---------------------------------------------------------------------------------------------
# Modulo-3 "SET" task
# ---------------------------------------------------------------------------------------------

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
            _check_int(name, getattr(self, name), 1)
        _check_int("first_onset", self.first_onset, 0)
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


# ---------------------------------------------------------------------------------------------
# A fixed, finite set of trials
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class FixedTrials:
    r"""A fixed, finite set of trials of ``task``, revisited minibatch by minibatch (training
    on a data set, as the seed author trained the modulo-3 task, instead of fresh trials).

    ``sample(key, B)`` draws ``B`` distinct trials of :attr:`data` uniformly without
    replacement; ``accuracy``, ``input_size``, ``output_size`` and ``n_steps`` are ``task``'s.
    With :attr:`codes` (the same trials with ``task``'s input codes, e.g. from
    :meth:`ModuloThree.sample_codes`) it also offers ``sample_codes`` and ``input_basis``, so
    training projects the basis through the input kernel once per step (see the module
    docstring).

    Attributes:
        data: the trials, a :class:`Batch` ``(N, T, m)``.
        task: the task they were drawn from.
        codes: ``None`` or the same ``N`` trials with inputs ``(N, T, k)`` codes of ``data``'s
            inputs, ``data.inputs = codes.inputs @ task.input_basis``.

    Raises:
        ValueError: ``data`` (or ``codes``) not three arrays with the same ``N`` and ``T``, or
            ``codes`` without a ``task.input_basis``.
    """

    data: Batch
    task: Any
    codes: Batch | None = None

    def __post_init__(self):
        for name in ("data", "codes"):
            b = getattr(self, name)
            if b is None:
                continue
            shapes = [np.shape(a) for a in b]
            if len(shapes) != 3 or any(len(sh) != 3 for sh in shapes) or len(
                    {sh[:2] for sh in shapes}) != 1:
                raise ValueError(f"{name} must be a Batch of (N, T, ·) arrays, got shapes "
                                 f"{shapes}")
        if self.codes is not None:
            if getattr(self.task, "input_basis", None) is None:
                raise ValueError("codes need a task with an input_basis")
            if np.shape(self.codes.inputs)[:2] != np.shape(self.data.inputs)[:2]:
                raise ValueError(f"codes must hold the same (N, T) trials as data, got "
                                 f"{np.shape(self.codes.inputs)[:2]} and "
                                 f"{np.shape(self.data.inputs)[:2]}")

    @property
    def input_size(self) -> int:
        return self.task.input_size

    @property
    def output_size(self) -> int:
        return self.task.output_size

    @property
    def n_steps(self) -> int:
        return self.task.n_steps

    @property
    def input_basis(self) -> np.ndarray | None:
        """``task.input_basis`` when :attr:`codes` are given, else ``None``."""
        return None if self.codes is None else self.task.input_basis

    def _rows(self, key: jax.Array, batch_size: int) -> jax.Array:
        n = self.data.inputs.shape[0]
        if _check_batch_size(batch_size) > n:
            raise ValueError(f"batch_size must be in [1, {n}] (the set's size), got {batch_size}")
        return jax.random.choice(key, n, (batch_size,), replace=False)

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        """``batch_size`` distinct trials of :attr:`data`, uniformly without replacement."""
        idx = self._rows(key, batch_size)
        return Batch(*(a[idx] for a in self.data))

    def sample_codes(self, key: jax.Array, batch_size: int) -> Batch:
        """The trials of ``sample(key, batch_size)`` with inputs their codes."""
        if self.codes is None:
            raise ValueError("sample_codes needs FixedTrials built with codes")
        idx = self._rows(key, batch_size)
        return Batch(*(a[idx] for a in self.codes))

    def accuracy(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        """``task.accuracy``."""
        return self.task.accuracy(outputs, batch)


# ---------------------------------------------------------------------------------------------
# neurogym environments
# ---------------------------------------------------------------------------------------------


def _neurogym_chain(env: Any) -> list[Any]:
    """``env`` and every environment it wraps, outermost first (gymnasium's ``.env`` links)."""
    import gymnasium

    chain = [env]
    while isinstance(chain[-1], gymnasium.Wrapper):
        chain.append(chain[-1].env)
    return chain


def _neurogym_make(name: str, env_kwargs: dict | None) -> Any:
    import warnings

    import gymnasium
    import neurogym

    with warnings.catch_warnings():
        # gymnasium warns that neurogym's metadata lists no render modes; nothing to act on
        warnings.filterwarnings("ignore", message=".*metadata doesn't include `render_modes`")
        try:
            return neurogym.make(name, **(env_kwargs or {}))
        except gymnasium.error.UnregisteredEnv as err:
            raise ValueError(f"env: unknown neurogym environment {name!r}: {err}") from None


@dataclasses.dataclass(frozen=True, eq=False)
class NeurogymTask:
    r"""A neurogym environment's trials as a fixed bank (as :class:`FixedTrials`), so ``train``,
    the CLI, ensembles and sweeps use it like the package's own tasks. Build it with
    :func:`from_neurogym` (or ``get_task("neurogym:ENV_ID", ...)``, CLI
    ``--task neurogym:ENV_ID``).

    The bank: the environment is seeded with neurogym's own ``env.seed(seed)`` (its
    ``numpy.random.RandomState`` and the timing samplers) and ``n_trials`` trials are drawn
    with ``new_trial()``, in order. Trial ``i`` is exactly neurogym's ``env.ob``/``env.gt``
    after the ``i``-th ``new_trial()`` of an environment seeded the same way.

    * ``inputs`` ``(N, T, m)``: the observations ``env.ob`` (flattened to ``m`` per step).
    * ``targets`` ``(N, T, p)``: for a discrete action space, the ground truth ``env.gt`` as a
      one-hot vector over the ``p`` actions (``one_hot=True``, the default), or the action
      index itself (``one_hot=False``, ``p = 1``); for a box action space, ``env.gt`` as given.
    * ``mask`` ``(N, T, p)``: 1 on every step of the trial — neurogym's supervised convention,
      in which the ground truth is defined on every step (the fixation action outside the
      response) and every step is scored — or, with ``periods``, only on the steps of those
      named periods (e.g. ``("decision",)``); 0 on padding.
    * Trials of different lengths are padded at the end to ``T`` (the longest trial, or
      ``pad_to``) with zero inputs, targets and mask; ``n_steps`` is ``T``.

    ``sample(key, B)`` draws ``B`` distinct trials of the bank uniformly without replacement.

    ``accuracy``: for one-hot targets, the fraction of scored steps whose output's argmax is
    the ground-truth action, counted only on steps whose ground truth is not the environment's
    fixation action (its action named ``"fixation"``, if any) — the choices; for other targets
    ``clip(1 − MSE/Var(targets), 0, 1)`` on scored steps.

    Attributes:
        env: the environment id (e.g. ``"PerceptualDecisionMaking-v0"``) or a neurogym
            environment (copied; the caller's is not advanced). Only an id gives a task that
            checkpoints can record and rebuild.
        n_trials: trials in the bank.
        seed: neurogym seed of the bank.
        env_kwargs: keyword arguments of the environment (with an id).
        periods: names of the scored periods; ``None`` scores every step of the trial.
        one_hot: one-hot targets for a discrete action space.
        pad_to: pad every trial to this length (``None``: the longest trial).

    Raises:
        ImportError: neurogym is not installed (``pip install 'ctrnn_dyn[neurogym]'``).
        ValueError: bad sizes, an unknown period, a trial longer than ``pad_to``, or an
            environment without ground truth.
        TypeError: ``env`` neither an id nor a neurogym environment.
    """

    env: Any
    n_trials: int = 1000
    seed: int = 0
    env_kwargs: dict | None = None
    periods: tuple[str, ...] | None = None
    one_hot: bool = True
    pad_to: int | None = None

    def __post_init__(self) -> None:
        _check_int("n_trials", self.n_trials, 1)
        _check_int("seed", self.seed, 0)
        if self.pad_to is not None:
            _check_int("pad_to", self.pad_to, 1)
        if self.periods is not None:
            periods = (self.periods,) if isinstance(self.periods, str) else self.periods
            if not periods or not all(isinstance(p, str) for p in periods):
                raise ValueError(
                    f"periods must be None or a non-empty tuple of period names, got "
                    f"{self.periods!r}"
                )
            object.__setattr__(self, "periods", tuple(periods))
        try:
            import neurogym  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "neurogym tasks need neurogym (pip install 'ctrnn_dyn[neurogym]')"
            ) from err
        import copy

        from neurogym.core import TrialEnv

        if isinstance(self.env, str):
            env = _neurogym_make(self.env, self.env_kwargs)
        else:
            if self.env_kwargs:
                raise ValueError("env_kwargs apply only when env is an environment id")
            env = copy.deepcopy(self.env)
        chain = _neurogym_chain(env)
        if not isinstance(chain[-1], TrialEnv):
            raise TypeError(
                "env must be a neurogym environment id or a neurogym TrialEnv (possibly "
                f"wrapped), got {type(self.env).__name__}"
            )
        object.__setattr__(self, "_build", self._draw(chain))

    def _draw(self, chain: list[Any]) -> dict[str, Any]:
        import gymnasium

        base = chain[-1]
        seeder = next(e for e in chain if hasattr(type(e), "seed"))
        top = next(e for e in chain if hasattr(type(e), "new_trial"))
        seeder.seed(self.seed)
        discrete = isinstance(base.action_space, gymnasium.spaces.Discrete)
        obs, gts, scored = [], [], []
        for i in range(self.n_trials):
            top.new_trial()
            if not getattr(base, "_gt_built", False):
                raise ValueError(f"{type(base).__name__} defines no ground truth (env.gt)")
            ob = np.asarray(base.ob, np.float32)
            obs.append(ob.reshape(ob.shape[0], -1))
            gts.append(np.asarray(base.gt))
            keep = np.ones(ob.shape[0], bool)
            if self.periods is not None:
                keep[:] = False
                for p in self.periods:
                    if p not in base.start_ind:
                        raise ValueError(f"unknown period {p!r}; trial {i} of "
                                         f"{type(base).__name__} has {sorted(base.start_ind)}")
                    keep[base.start_ind[p]:base.end_ind[p]] = True
            scored.append(keep)
        longest = max(len(o) for o in obs)
        T = longest if self.pad_to is None else self.pad_to
        if longest > T:
            raise ValueError(f"pad_to={T} is shorter than the longest trial ({longest} steps)")
        n_act = int(base.action_space.n) if discrete else None
        if discrete and self.one_hot:
            p = n_act
        else:
            p = int(np.prod(gts[0].shape[1:], dtype=int)) if gts[0].ndim > 1 else 1
        m = obs[0].shape[1]
        inputs = np.zeros((self.n_trials, T, m), np.float32)
        targets = np.zeros((self.n_trials, T, p), np.float32)
        mask = np.zeros((self.n_trials, T, p), np.float32)
        for i, (ob, gt, keep) in enumerate(zip(obs, gts, scored, strict=True)):
            L = ob.shape[0]
            inputs[i, :L] = ob
            if discrete and self.one_hot:
                targets[i, np.arange(L), gt.astype(int)] = 1.0
            else:
                targets[i, :L] = gt.reshape(L, -1)
            mask[i, :L] = keep[:, None]
        names = getattr(base.action_space, "name", None)
        fixation = names.get("fixation") if isinstance(names, dict) else None
        return {"data": Batch(jnp.asarray(inputs), jnp.asarray(targets), jnp.asarray(mask)),
                "lengths": np.array([len(o) for o in obs]), "n_steps": T,
                "input_size": m, "output_size": p,
                "fixation": fixation if isinstance(fixation, int) else None,
                "categorical": bool(discrete and self.one_hot)}

    @property
    def data(self) -> Batch:
        """The bank: a :class:`Batch` ``(n_trials, T, ·)``."""
        return self._build["data"]

    @property
    def trial_lengths(self) -> np.ndarray:
        """``(n_trials,)`` steps of each trial before padding."""
        return self._build["lengths"]

    @property
    def input_size(self) -> int:
        return self._build["input_size"]

    @property
    def output_size(self) -> int:
        return self._build["output_size"]

    @property
    def n_steps(self) -> int:
        """``T``: the padded trial length."""
        return self._build["n_steps"]

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        """``batch_size`` distinct trials of the bank, uniformly without replacement."""
        if _check_batch_size(batch_size) > self.n_trials:
            raise ValueError(f"batch_size must be in [1, {self.n_trials}] (n_trials), got "
                             f"{batch_size}")
        idx = jax.random.choice(key, self.n_trials, (batch_size,), replace=False)
        return Batch(*(a[idx] for a in self.data))

    def accuracy(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        """See the class docstring."""
        _check_outputs(self, outputs, batch)
        if not self._build["categorical"]:
            m = batch.mask
            n = jnp.maximum(m.sum(), 1.0)
            mse = jnp.sum(m * (outputs - batch.targets) ** 2) / n
            mean = jnp.sum(m * batch.targets) / n
            var = jnp.sum(m * (batch.targets - mean) ** 2) / n
            return jnp.clip(1.0 - mse / jnp.maximum(var, 1e-12), 0.0, 1.0)
        scored = batch.mask.max(axis=-1)
        truth = jnp.argmax(batch.targets, axis=-1)
        if self._build["fixation"] is not None:
            scored = scored * (truth != self._build["fixation"])
        hit = (jnp.argmax(outputs, axis=-1) == truth).astype(jnp.float32)
        return jnp.sum(hit * scored) / jnp.maximum(scored.sum(), 1.0)


def from_neurogym(
    env_or_name: Any,
    *,
    n_trials: int,
    seed: int = 0,
    env_kwargs: dict | None = None,
    periods: tuple[str, ...] | None = None,
    one_hot: bool = True,
    pad_to: int | None = None,
) -> NeurogymTask:
    """A neurogym environment as a task: ``n_trials`` trials drawn once with neurogym's own
    seeding into a fixed bank (see :class:`NeurogymTask` for targets, mask and padding).

    Args:
        env_or_name: a neurogym environment id (``"PerceptualDecisionMaking-v0"``) or
            environment (copied, not advanced).
        n_trials: trials in the bank (``sample``'s ``batch_size`` is at most this).
        seed: ``env.seed(seed)`` before drawing.
        env_kwargs: environment keyword arguments (with an id), e.g. ``{"dt": 20}``.
        periods: scored periods (``None``: every step of each trial).
        one_hot: one-hot targets for discrete action spaces.
        pad_to: pad trials to this length (default: the longest trial).

    Returns:
        :class:`NeurogymTask`.

    Example:
        >>> task = from_neurogym("PerceptualDecisionMaking-v0", n_trials=64)  # doctest: +SKIP
        >>> task.sample(jax.random.key(0), 16).inputs.shape  # doctest: +SKIP
        (16, 22, 3)
    """
    return NeurogymTask(env_or_name, n_trials=n_trials, seed=seed, env_kwargs=env_kwargs,
                        periods=periods, one_hot=one_hot, pad_to=pad_to)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

TASKS: dict[str, type] = {
    "sine_wave": SineWave,
    "flipflop": FlipFlop,
    "context_integration": ContextIntegration,
    "perceptual_decision": PerceptualDecision,
    "modulo3": ModuloThree,
}


def get_task(name: str, **kwargs: Any) -> Any:
    """Build the task registered as ``name`` (see ``TASKS``) with keyword parameters.

    ``"neurogym:ENV_ID"`` is ``NeurogymTask(env="ENV_ID", **kwargs)`` (see
    :func:`from_neurogym`; ``n_trials`` defaults to 1000), e.g. the CLI's
    ``--task neurogym:PerceptualDecisionMaking-v0``.

    Raises:
        ValueError: unknown ``name`` (the message lists the known ones).
    """
    if name.startswith("neurogym:"):
        if "env" in kwargs:
            raise ValueError(f"give the environment once: {name!r} and env={kwargs['env']!r}")
        return NeurogymTask(env=name.split(":", 1)[1], **kwargs)
    if name not in TASKS:
        raise ValueError(f"unknown task name {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](**kwargs)


def task_config(task: Any) -> dict[str, Any]:
    """JSON-able ``{"name": ..., **fields}`` of a registered task or a neurogym task built from
    an id (name ``"neurogym:ENV_ID"``); inverse: task_from_config."""
    if isinstance(task, NeurogymTask):
        if not isinstance(task.env, str):
            raise TypeError("a NeurogymTask built from an environment object has no config; "
                            "build it from an environment id")
        fields = {f.name: _jsonable(getattr(task, f.name)) for f in dataclasses.fields(task)
                  if f.name != "env"}
        return {"name": f"neurogym:{task.env}", **fields}
    for name, cls in TASKS.items():
        if type(task) is cls:
            fields = {
                f.name: _jsonable(getattr(task, f.name)) for f in dataclasses.fields(task)
            }
            return {"name": name, **fields}
    raise TypeError(f"task must be one of the registered task types, got {type(task).__name__}")


def task_from_config(config: dict[str, Any]) -> Any:
    """Rebuild a task from :func:`task_config`'s dict."""
    config = dict(config)
    name = config.pop("name")
    if isinstance(name, str) and name.startswith("neurogym:"):
        return get_task(name, **{k: _tuplify(v) if isinstance(v, list) else v
                                 for k, v in config.items()})
    cls = TASKS.get(name)
    if cls is None:
        raise ValueError(f"unknown task name {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in config:
            v = config[f.name]
            kwargs[f.name] = _tuplify(v) if isinstance(v, list) else v
    return cls(**kwargs)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value
