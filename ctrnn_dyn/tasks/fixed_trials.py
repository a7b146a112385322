"""A fixed, finite set of trials of a task, revisited minibatch by minibatch."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from ctrnn_dyn.tasks.base import Batch, _check_batch_size

__all__ = ["FixedTrials"]


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
