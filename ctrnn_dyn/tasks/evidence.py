"""Evidence integration: a perceptual decision and Mante et al. (2013) context-dependent
integration."""

from __future__ import annotations

import dataclasses
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

__all__ = ["PerceptualDecision", "ContextIntegration"]


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
            check_int(name, getattr(self, name), 1)
        check_int("stim_start", self.stim_start, 0)
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
