r"""From a trained cell to pure maps: the one-step map ``F(x, u)``, the vector field, rollouts.

Every analysis in ctrnn_dyn works on the deterministic one-step map ``F(x, u) -> x_next`` of
*unbatched* arrays ``x: (n,)``, ``u: (m,)``; batching is the caller's ``vmap``. For the CT-RNN

.. math::

    F(x, u) = (1-\alpha) x + \alpha\,(f(x) K_\mathrm{rec} + b_\mathrm{rec} + u K_\mathrm{in}),

and the vector field in units of the time constant is
:math:`\tau\dot x = (F(x,u) - x)/\alpha
= -x + f(x)K_\mathrm{rec} + b_\mathrm{rec} + uK_\mathrm{in}`.
Cells whose carry is a pytree (``LSTMCell``'s ``(c, h)``) are raveled to one flat vector.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.flatten_util import ravel_pytree

from ctrnn_dyn import _checks
from ctrnn_dyn.model import CTRNNCell, RateCTRNNCell

__all__ = [
    "OneStepMap",
    "GaussNewton",
    "one_step_map",
    "vector_field",
    "simulate",
    "cell_params",
    "ctrnn_jacobian",
]

Map = Callable[[jax.Array, jax.Array], jax.Array]


def cell_params(params: Any) -> dict:
    """The cell's own variables ``{"params": ...}`` from ``nn.RNN`` params or the cell's."""
    if not isinstance(params, dict) or "params" not in params:
        raise TypeError(
            "params must be the variables dict from `.init` ({'params': ...}), "
            f"got {type(params).__name__}"
        )
    tree = params["params"]
    if isinstance(tree, dict) and set(tree) == {"cell"}:
        tree = tree["cell"]
    return {"params": tree}


def _input_width(cell: nn.Module, tree: dict) -> int | None:
    if isinstance(cell, CTRNNCell):
        return int(tree["input_kernel"]["kernel"].shape[0])
    if isinstance(cell, RateCTRNNCell):
        return cell.hidden_features
    for name in ("ir", "ii", "i"):  # GRUCell / LSTMCell / SimpleCell input denses
        if isinstance(tree.get(name), dict) and "kernel" in tree[name]:
            return int(tree[name]["kernel"].shape[0])
    return None


def _cast_floats(tree: Any, dtype: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def ctrnn_jacobian(
    K_rec: jax.Array, alpha: jax.Array, x: jax.Array, activation: Callable[[jax.Array], jax.Array]
) -> jax.Array:
    r"""Analytic map Jacobian of the CT-RNN at ``x``: :math:`J = (1-\alpha)I + \alpha K^\top
    \mathrm{diag} f'(x)`, i.e. ``J[j, i] = (1-α_j) δ_ij + α_j K[i, j] f'(x_i)``.

    Args:
        K_rec: ``(n, n)`` recurrent kernel, rows presynaptic.
        alpha: scalar or ``(n,)``.
        x: ``(n,)`` state.
        activation: elementwise ``f``.

    Returns:
        ``(n, n)`` Jacobian ``∂F/∂x``.
    """
    fprime = jax.vmap(jax.grad(activation))(x)
    alpha = jnp.broadcast_to(jnp.asarray(alpha, x.dtype), x.shape)
    return jnp.diag(1.0 - alpha) + alpha[:, None] * (K_rec.T * fprime[None, :])


class _Cell:
    """A cell as a map's static configuration: equal when the fields that define the map are
    equal (arrays by value; ``*_init`` initialisers, which only set starting weights, ignored),
    so two maps of same-shaped networks share one compiled program."""

    __slots__ = ("cell", "_key")

    def __init__(self, cell: nn.Module):
        self.cell = cell
        fields = [f.name for f in dataclasses.fields(cell)
                  if f.name not in ("parent", "name") and not f.name.endswith("_init")]
        self._key = (type(cell), tuple((n, _canonical(getattr(cell, n))) for n in fields))

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Cell) and self._key == other._key


def _canonical(value: Any) -> Any:
    if isinstance(value, jax.Array | np.ndarray | np.generic):
        arr = np.asarray(value)
        return ("array", arr.dtype.str, arr.shape, arr.tobytes())
    try:
        hash(value)
    except TypeError:
        return ("object", id(value))
    return value


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class OneStepMap:
    r"""Deterministic one-step map ``F(x, u) -> x_next`` of a Flax RNN cell (noise off).

    Call it on unbatched arrays ``x: (state_size,)``, ``u: (input_size,)`` (``u=None`` means zero
    input). Parameters are cast to ``x``'s float dtype, so a float64 ``x`` gives a float64 map.

    A pytree: the parameters (and ``alpha``) are its leaves and the cell's configuration is
    static, so every analysis traces the parameters and two networks of the same shapes share
    one compiled program; stacked parameters (a leading network axis) ``vmap`` like any pytree.

    Attributes:
        cell: the cell, with noise switched off.
        params: the cell's variables ``{"params": ...}``.
        state_size: length ``n`` of the flat state.
        input_size: input width ``m`` (``None`` if it cannot be read from the params).
        alpha: the Euler fraction ``dt/τ`` (scalar or ``(n,)``) for CT-RNN cells, ``None`` else.
        carry_spec: the carry's tree structure and leaf shapes (to unflatten ``x``).
    """

    cell: nn.Module
    params: dict
    state_size: int
    input_size: int | None
    alpha: jax.Array | None
    carry_spec: tuple

    def tree_flatten(self) -> tuple[tuple, tuple]:
        return (self.params, self.alpha), (_Cell(self.cell), self.state_size, self.input_size,
                                           self.carry_spec)

    @classmethod
    def tree_unflatten(cls, aux: tuple, children: tuple) -> OneStepMap:
        cell, state_size, input_size, carry_spec = aux
        return cls(cell.cell, children[0], state_size, input_size, children[1], carry_spec)

    def _unravel(self, x: jax.Array) -> Any:
        treedef, shapes = self.carry_spec
        sizes = [int(np.prod(shape)) for shape in shapes]
        parts = jnp.split(x, np.cumsum(sizes)[:-1]) if len(sizes) > 1 else [x]
        return jax.tree_util.tree_unflatten(
            treedef, [p.reshape(shape) for p, shape in zip(parts, shapes, strict=True)])

    def __call__(self, x: jax.Array, u: jax.Array | None = None) -> jax.Array:
        x, u = self._check(x, u)
        params = _cast_floats(self.params, x.dtype)
        new_carry, _ = self.cell.apply(params, self._unravel(x), u)
        return ravel_pytree(new_carry)[0]

    def _check(self, x: jax.Array, u: jax.Array | None) -> tuple[jax.Array, jax.Array]:
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.result_type(float))
        if x.shape != (self.state_size,):
            raise ValueError(
                f"x must have shape (state_size,) = ({self.state_size},), got {x.shape}; "
                "vmap F for a batch"
            )
        if u is None:
            if self.input_size is None:
                raise ValueError("u is required: the input width cannot be read from the params")
            u = jnp.zeros((self.input_size,), x.dtype)
        u = jnp.asarray(u, x.dtype)
        if u.ndim != 1 or (self.input_size is not None and u.shape[0] != self.input_size):
            raise ValueError(
                f"u must have shape (input_size,) = ({self.input_size},), got {u.shape}"
            )
        return x, u

    def jacobian(self, x: jax.Array, u: jax.Array | None = None) -> jax.Array:
        """``∂F/∂x`` ``(n, n)``: analytic for CT-RNN cells, ``jax.jacfwd`` otherwise."""
        x, u = self._check(x, u)
        params = _cast_floats(self.params, x.dtype)
        if isinstance(self.cell, CTRNNCell):
            K = self.cell.recurrent_weights(params)
            return ctrnn_jacobian(K, self.cell.alpha_values(params), x, self.cell.activation_fn)
        if isinstance(self.cell, RateCTRNNCell):
            tree = params["params"]
            K = tree["recurrent_kernel"]["kernel"]
            z = x @ K + tree["recurrent_kernel"]["bias"]
            a = jnp.broadcast_to(self.cell.alpha_values(params).astype(x.dtype), x.shape)
            sprime = jax.vmap(jax.grad(self.cell.activation_fn))(z)
            return jnp.diag(1.0 - a) + (a * sprime)[:, None] * K.T
        return jax.jacfwd(self.__call__)(x, u)

    def gauss_newton(self, dtype: Any) -> GaussNewton | None:
        r"""For a :class:`~ctrnn_dyn.model.CTRNNCell`, the Gauss–Newton matrix of the speed
        :math:`q = \tfrac12\lVert F(x,u) - x\rVert^2`, :math:`(J − I)^\top(J − I)` (Levenberg–
        Marquardt's ``JᵀJ`` for the residual), as its :class:`GaussNewton` parts in ``dtype``:
        built in :math:`O(n^2)` per state instead of the :math:`O(n^3)` of products with ``J``.
        ``None`` for other cells.

        With :math:`J - I = A(K^\top S - I)`, :math:`A = \mathrm{diag}\,\alpha`,
        :math:`S = \mathrm{diag}\,f'(x)` (:func:`ctrnn_jacobian`):

        .. math::

            (J-I)^\top(J-I) = S M S - S P - (S P)^\top + A^2,
            \qquad M = K A^2 K^\top,\quad P = K A^2,

        ``M`` and ``P`` computed once, here (the input enters ``F`` additively: the matrix does
        not depend on ``u``)."""
        if not isinstance(self.cell, CTRNNCell):
            return None
        params = _cast_floats(self.params, dtype)
        K = self.cell.recurrent_weights(params)
        a2 = jnp.broadcast_to(jnp.asarray(self.cell.alpha_values(params), dtype) ** 2,
                              (self.state_size,))
        P = K * a2[None, :]
        return GaussNewton(P @ K.T, P, a2, jax.vmap(jax.grad(self.cell.activation_fn)))


class GaussNewton(NamedTuple):
    r"""A CT-RNN's Gauss–Newton matrix :math:`(J − I)^\top(J − I) = S M S - S P - (S P)^\top +
    \mathrm{diag}(a_2)` in parts (:meth:`OneStepMap.gauss_newton`): ``M`` and ``P`` ``(n, n)``
    and ``a2`` ``(n,)`` of the network, ``S = diag(slopes(x))`` per state. Called, ``G(x, u)``
    returns the ``(n, n)`` matrix."""

    M: jax.Array
    P: jax.Array
    a2: jax.Array
    slopes: Callable[[jax.Array], jax.Array]

    def __call__(self, x: jax.Array, u: Any = None) -> jax.Array:
        s = self.slopes(x)  # (SP)ᵀ = PᵀS
        return (s[:, None] * (self.M * s[None, :] - self.P) - self.P.T * s[None, :]
                + jnp.diag(self.a2))


def one_step_map(cell: nn.Module, params: Any) -> OneStepMap:
    """Turn ``(cell, params)`` into the deterministic map ``F(x, u)`` on unbatched arrays.

    Works for ``CTRNNCell``, ``RateCTRNNCell`` and any Flax Linen RNN cell (``GRUCell``,
    ``LSTMCell``, …). ``params`` may be the variables of ``nn.RNN(cell)`` or of the cell itself.
    Noise is switched off (``noise_const=0``).

    Args:
        cell: a Flax ``RNNCellBase``.
        params: ``{"params": ...}`` as returned by ``.init``.

    Returns:
        ``OneStepMap`` ``F`` with ``F(x: (n,), u: (m,)) -> (n,)``; jit/vmap/grad friendly.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ctrnn_dyn.model import CTRNNCell, rnn
        >>> cell = CTRNNCell(hidden_features=3, output_features=1, alpha=0.2, noise_const=0.1)
        >>> params = rnn(cell).init(jax.random.PRNGKey(0), jnp.ones((1, 4, 2)))
        >>> F = one_step_map(cell, params)
        >>> F(jnp.zeros(3), jnp.ones(2)).shape
        (3,)
    """
    if not isinstance(cell, nn.RNNCellBase):
        raise TypeError(f"cell must be a flax.linen RNNCellBase, got {type(cell).__name__}")
    variables = cell_params(params)
    if isinstance(cell, CTRNNCell):
        cell = cell.clone(noise_const=0.0, parent=None)
    width = _input_width(cell, variables["params"])
    # Only the carry's structure and shapes are used (to ravel it), so any key will do.
    carry = cell.initialize_carry(jax.random.PRNGKey(0), (width or 1,))
    leaves, treedef = jax.tree_util.tree_flatten(carry)
    shapes = tuple(tuple(leaf.shape) for leaf in leaves)
    alpha = cell.alpha_values(variables) if isinstance(cell, CTRNNCell | RateCTRNNCell) else None
    return OneStepMap(cell, variables, sum(int(np.prod(s)) for s in shapes), width, alpha,
                      (treedef, shapes))


def vector_field(cell: nn.Module, params: Any) -> Map:
    r"""The vector field ``f(x, u) = τ dx/dt = (F(x, u) - x) / α`` (units of the time constant).

    For the CT-RNN this is ``-x + f(x) K_rec + b_rec + u K_in``; for the rate cell
    ``-h + σ(hK + b) + u``. For cells without a time constant (GRU, LSTM) ``α = 1``, i.e.
    ``F(x, u) - x``.
    """
    F = one_step_map(cell, params)
    alpha = 1.0 if F.alpha is None else F.alpha

    def f(x: jax.Array, u: jax.Array | None = None) -> jax.Array:
        x = jnp.asarray(x)
        return (F(x, u) - x) / jnp.asarray(alpha, x.dtype)

    return f


def simulate(F: Map, x0: jax.Array, inputs: jax.Array, *, n_steps: int | None = None) -> jax.Array:
    """Roll ``F`` forward with ``lax.scan``: ``x_{t+1} = F(x_t, u_t)``.

    Args:
        F: one-step map on unbatched arrays.
        x0: initial state ``(n,)``.
        inputs: ``(T, m)`` per-step inputs, or ``(m,)`` held constant for ``n_steps`` steps.
        n_steps: number of steps when ``inputs`` is constant.

    Returns:
        States ``(T, n)``: ``x_1 … x_T`` (the state *after* each step, as ``nn.RNN`` reports).

    Raises:
        TypeError: ``n_steps`` not an int.
        ValueError: ``x0`` not 1-D, ``inputs`` of the wrong rank, or ``n_steps`` missing/< 1.
    """
    x0 = jnp.asarray(x0)
    inputs = jnp.asarray(inputs)
    if x0.ndim != 1:
        raise ValueError(f"x0 must have shape (n,), got {x0.shape}; vmap simulate for a batch")
    if n_steps is not None:
        n_steps = _checks.check_int("n_steps", n_steps, 1)
    if inputs.ndim == 1:
        if n_steps is None:
            raise ValueError("n_steps (>= 1) is required when inputs has shape (m,)")
        inputs = jnp.broadcast_to(inputs, (n_steps, inputs.shape[0]))
    elif inputs.ndim != 2:
        raise ValueError(f"inputs must have shape (T, m) or (m,), got {inputs.shape}")
    elif n_steps is not None and n_steps != inputs.shape[0]:
        raise ValueError(f"n_steps={n_steps} disagrees with inputs of length {inputs.shape[0]}")

    def step(x, u):
        x_next = F(x, u)
        return x_next, x_next

    _, states = jax.lax.scan(step, x0, inputs)
    return states
