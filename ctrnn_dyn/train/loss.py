r"""The forward pass (the fast path or ``nn.RNN``) and the training loss :func:`loss_fn` of a
batch (see :mod:`ctrnn_dyn.train` for the equation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from ctrnn_dyn import native
from ctrnn_dyn.fast_path import fast_forward, loop_path, supports_fast_path
from ctrnn_dyn.model import CTRNNCell, rnn
from ctrnn_dyn.tasks import Batch

__all__ = [
    "LossKind",
    "LossAux",
    "forward",
    "use_fast_path",
    "forward_path",
    "uses_input_basis",
    "loss_fn",
]


LossKind = Literal["mse", "cross_entropy"]


class LossAux(NamedTuple):
    """Auxiliary outputs of :func:`loss_fn`.

    Attributes:
        mse: masked data term (MSE or cross-entropy), scalar.
        outputs: network outputs ``(B, T, p)``.
    """

    mse: jax.Array
    outputs: jax.Array


def forward(cell: nn.Module, params: Any, inputs: jax.Array, *, key: jax.Array | None):
    """Generic forward pass through ``nn.RNN(cell)``: returns ``(outputs, rates)`` ``(B,T,·)``.

    For cells that return a single array (``RateCTRNNCell``), outputs and rates are the same.
    """
    rngs = {"noise_stream": key} if key is not None else {}
    out = rnn(cell).apply(params, inputs, rngs=rngs)
    if isinstance(out, tuple):
        return out[0], out[1]
    return out, out


def use_fast_path(cell: nn.Module, fast: bool | None) -> bool:
    """Resolve ``fast`` (``None``: where supported) and, for the fast path on the CPU, build and
    load its compiled kernels now, before anything is traced (:func:`ctrnn_dyn.native.prepare`).
    """
    if fast is None:
        fast = supports_fast_path(cell)
    if fast and not supports_fast_path(cell):
        raise ValueError("fast=True needs a CTRNNCell with train_alpha=False")
    if fast:
        native.prepare()
    return bool(fast)


def forward_path(cell: nn.Module, fast: bool | None = None) -> str:
    """The code that runs ``cell``'s forward pass in programs traced now: ``"nn.RNN"``,
    ``"fast_path/kernels:<key>"`` or ``"fast_path/xla-loops"``. Checkpoints record it: the paths
    compute the same model but round differently, so training diverges between them."""
    if not use_fast_path(cell, fast):
        return "nn.RNN"
    return f"fast_path/{loop_path(cell)}"


def _has_noise(cell: nn.Module) -> bool:
    sigma = getattr(cell, "noise_const", 0.0)
    return not (isinstance(sigma, int | float) and sigma == 0)


def _kernels(params: Any) -> list[jax.Array]:
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return [
        v for path, v in leaves
        if getattr(path[-1], "key", None) == "kernel"
    ]


def uses_input_basis(cell: nn.Module, task: Any) -> bool:
    """True when training samples ``task.sample_codes`` and projects ``task.input_basis``
    (a :class:`CTRNNCell` and a task that has both; see :mod:`ctrnn_dyn.tasks`)."""
    return (isinstance(cell, CTRNNCell) and getattr(task, "input_basis", None) is not None
            and hasattr(task, "sample_codes"))


def _project_input_kernel(cell: nn.Module, params: Any, basis: jax.Array) -> Any:
    """``params`` with the input kernel ``K_in`` ``(m, n)`` replaced by ``basis @ K_in``
    ``(k, n)``."""
    if not isinstance(cell, CTRNNCell):
        raise ValueError(f"input_basis needs a CTRNNCell, got {type(cell).__name__}")
    tree = params["params"]["cell"]
    k_in = tree["input_kernel"]["kernel"]
    basis = jnp.asarray(basis, k_in.dtype)
    if basis.ndim != 2 or basis.shape[1] != k_in.shape[0]:
        raise ValueError(f"input_basis must have shape (k, {k_in.shape[0]}), got {basis.shape}")
    cell_tree = {**tree, "input_kernel": {**tree["input_kernel"], "kernel": basis @ k_in}}
    return {**params, "params": {**params["params"], "cell": cell_tree}}


def _sampler(cell: nn.Module, task: Any) -> tuple[Callable, Any]:
    """``(sample, input_basis)``: the task's code sampler and basis when
    :func:`uses_input_basis`, else ``(task.sample, None)``."""
    if uses_input_basis(cell, task):
        return task.sample_codes, np.asarray(task.input_basis)
    return task.sample, None


def loss_fn(
    params: Any,
    cell: nn.Module,
    batch: Batch,
    *,
    key: jax.Array | None,
    rate_l2: float = 0.0,
    weight_l2: float = 0.0,
    loss: LossKind = "mse",
    fast: bool | None = None,
    input_basis: jax.Array | None = None,
) -> tuple[jax.Array, LossAux]:
    r"""Masked loss of ``cell`` with ``params`` on ``batch`` (see the module docstring).

    Args:
        params: ``nn.RNN`` variables ``{"params": {"cell": ...}}``.
        cell: the RNN cell.
        batch: :class:`~ctrnn_dyn.tasks.Batch` with ``(B,T,m)``, ``(B,T,p)``, ``(B,T,p)``.
        key: PRNG key of the noise (``None`` only if the cell has no noise). ``nn.RNN`` draws
            its noise per step with ``jax.random.normal``; the fast path draws the stream of
            :mod:`ctrnn_dyn.noise` instead (inside its forward kernel on the CPU), so the two
            paths see different noise for the same key, from the same distribution.
        rate_l2: weight of the mean squared rate.
        weight_l2: weight of the summed squared kernels.
        loss: ``"mse"`` or ``"cross_entropy"`` (logistic loss on ±1 targets).
        fast: ``None`` (default): :func:`~ctrnn_dyn.fast_path.fast_forward` when the cell
            supports it (:func:`~ctrnn_dyn.fast_path.supports_fast_path`), else ``nn.RNN``;
            ``True``: the fast path (an error if unsupported); ``False``: ``nn.RNN``.
        input_basis: ``(k, m)``: ``batch.inputs`` are ``(B, T, k)`` codes of the inputs
            ``codes @ input_basis`` (a task's ``sample_codes``); the forward pass then uses
            ``codes @ (input_basis @ K_in)`` — the same drive, with ``k`` instead of ``B·T``
            rows projected through ``K_in``. Needs a :class:`CTRNNCell`.

    Returns:
        ``(loss, LossAux(mse, outputs))``.
    """
    if fast is None:
        fast = supports_fast_path(cell)
    if fast and not supports_fast_path(cell):
        raise ValueError("fast=True needs a CTRNNCell with train_alpha=False")
    if key is None and _has_noise(cell):
        raise ValueError("key is required: the cell has noise (noise_const != 0)")
    net_params = params if input_basis is None else _project_input_kernel(cell, params,
                                                                          input_basis)
    if fast:
        # the fast path's own noise stream (ctrnn_dyn.noise), drawn inside the forward kernel
        noise_key = key if _has_noise(cell) else None
        outputs, rates = fast_forward(cell, net_params, batch.inputs, noise_key=noise_key)
    else:
        outputs, rates = forward(cell, net_params, batch.inputs, key=key)
    mask = batch.mask
    denom = jnp.maximum(jnp.sum(mask), 1.0)
    if loss == "mse":
        data = jnp.sum(mask * (outputs - batch.targets) ** 2) / denom
    elif loss == "cross_entropy":
        data = jnp.sum(mask * jax.nn.softplus(-batch.targets * outputs)) / denom
    else:
        raise ValueError(f"loss must be 'mse' or 'cross_entropy', got {loss!r}")
    total = data
    if rate_l2:
        total = total + rate_l2 * jnp.mean(rates**2)
    if weight_l2:
        total = total + weight_l2 * sum(jnp.sum(k**2) for k in _kernels(params))
    return total, LossAux(data, outputs)
