"""neurogym environments as tasks: a bank of trials drawn once with neurogym's own seeding
(optional dependency ``neurogym``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ctrnn_dyn._checks import check_int
from ctrnn_dyn.tasks.base import Batch, _check_batch_size, _check_outputs

__all__ = ["NeurogymTask", "from_neurogym"]


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
        check_int("n_trials", self.n_trials, 1)
        check_int("seed", self.seed, 0)
        if self.pad_to is not None:
            check_int("pad_to", self.pad_to, 1)
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
