r"""Flax Linen CT-RNN cells: the seed's voltage cell, its rate-form cell, and an ``nn.RNN`` helper.

The voltage cell (``CTRNNCell``) integrates

.. math::

    \tau \dot x = -x + K_\mathrm{rec}^\top f(x) + K_\mathrm{in}^\top u + b_\mathrm{rec}
                  + \text{noise}

with one Euler step of size :math:`\alpha = \Delta t / \tau`:

.. math::

    x_{t+1} = (1-\alpha)\,x_t + \alpha\,\bigl(f(x_t) K_\mathrm{rec} + b_\mathrm{rec}
              + u_t K_\mathrm{in} + \sigma\,\xi_t\bigr),\qquad
    r_{t+1} = f(x_{t+1}),\qquad y_{t+1} = r_{t+1} K_\mathrm{out} + b_\mathrm{out}.

Flax's ``Dense`` computes ``v @ kernel``, so ``kernel[i, j]`` is the weight from unit ``i`` to
unit ``j`` (rows are presynaptic).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.linen import initializers
from flax.typing import Dtype, Initializer, PRNGKey

from ctrnn_dyn._checks import check_int

__all__ = [
    "CTRNNCell", "RateCTRNNCell", "CheckedRNN", "rnn", "step_noise", "NOISE_MODES", "SPLIT_RNGS",
    "dale_signs",
]

NOISE_MODES = ("seed", "euler_maruyama")
#: ``nn.RNN``'s rng splitting in the seed: shared params, a fresh noise key per time step.
SPLIT_RNGS = {"params": False, "noise_stream": True}


def _is_concrete(value: Any) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(value))


def _check_rate(name: str, value: Any, n: int, *, upper: float | None) -> None:
    """Check a scalar or per-neuron positive rate (``alpha``/``dt``/``tau``); skip traced values."""
    if not _is_concrete(value):
        return
    arr = np.asarray(value, dtype=float)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != n):
        raise ValueError(
            f"{name} must be a scalar or have shape ({n},) (one per neuron), got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if np.any(arr <= 0) or (upper is not None and np.any(arr > upper)):
        bound = f"in (0, {upper}]" if upper is not None else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


def _check_input(name: str, value: jax.Array, width: int | None, what: str) -> None:
    if value.ndim < 1:
        raise ValueError(f"{name} must have a feature axis (shape (..., {what})), got a scalar")
    if width is not None and value.shape[-1] != width:
        raise ValueError(
            f"{name} has width {value.shape[-1]} but the parameters expect {width} "
            f"(shape (..., {what}={width}))"
        )


def _as_array(value: Any, dtype: Dtype) -> jax.Array:
    return jnp.asarray(value, dtype=dtype)


def dale_signs(hidden_features: int, excitatory_fraction: float) -> np.ndarray:
    """Signs of each presynaptic unit under Dale's law: the first ``round(f·n)`` are +1, rest −1."""
    n_exc = int(round(excitatory_fraction * hidden_features))
    return np.where(np.arange(hidden_features) < n_exc, 1.0, -1.0)


class _VectorCell(nn.RNNCellBase):
    """Shared by the CT-RNN cells: a flat ``(*batch, n)`` carry and per-neuron parameters."""

    @nn.nowrap
    def initialize_carry(self, rng: PRNGKey, input_shape: tuple[int, ...]) -> jax.Array:
        """Initial state ``(*batch, n)`` from ``carry_init`` (seed: ones for the voltage cell,
        zeros for the rate cell)."""
        return self.carry_init(
            rng, tuple(input_shape[:-1]) + (self.hidden_features,), self.param_dtype
        )

    @property
    def num_feature_axes(self) -> int:
        return 1

    def _per_neuron_param(self, name: str, value: Any) -> jax.Array:
        """A trainable ``(n,)`` parameter initialised from a scalar or per-neuron ``value``."""
        return self.param(
            name,
            lambda _key, shape: jnp.broadcast_to(jnp.asarray(value, self.param_dtype), shape),
            (self.hidden_features,),
        )


class CTRNNCell(_VectorCell):
    r"""The seed's (ctrnn-jax) continuous-time RNN cell, Euler-discretised.

    One call maps the voltage ``x_t`` and the input ``u_t`` to

    .. math::

        x_{t+1} = (1-\alpha) x_t + \alpha\,(f(x_t) K_\mathrm{rec} + b_\mathrm{rec}
                  + u_t K_\mathrm{in} + \sigma \xi_t)

    and returns ``(x_{t+1}, (y_{t+1}, r_{t+1}))`` with ``r_{t+1} = f(x_{t+1})`` and
    ``y_{t+1} = r_{t+1} K_out + b_out``. Outputs and rates are read from the *updated* state, as
    the seed's code does (its README writes ``y_t = W_out f(x_t)``).

    Noise: in ``noise_mode="seed"`` the noise ``σ ξ_t`` sits inside the bracket, so its per-step
    standard deviation on ``x`` is ``α σ`` (it changes with the step size). In
    ``noise_mode="euler_maruyama"`` the step adds ``sqrt(2 α) σ ξ_t`` outside the bracket
    (PsychRNN's convention), so the stationary noise does not depend on ``dt``. Noise is drawn
    with ``self.make_rng("noise_stream")``; with ``noise_const == 0`` (a Python number) no rng is
    needed.

    Attributes:
        hidden_features: number of recurrent units ``n``.
        output_features: number of readout units ``p``.
        alpha: ``dt / tau`` in ``(0, 1]``; a scalar or one value per neuron (shape ``(n,)``).
        noise_const: noise scale ``σ >= 0``.
        activation_fn: rate nonlinearity ``f`` (default ``tanh``).
        kernel_init, bias_init: initialisers (seed: ``glorot_normal``, zeros).
        dtype, param_dtype: computation and parameter dtypes.
        carry_init: initialiser of the voltage (seed: ones).
        noise_mode: ``"seed"`` or ``"euler_maruyama"``.
        train_alpha: make ``alpha`` a parameter ``params["alpha"]`` of shape ``(n,)`` (initialised
            from ``alpha``; clipped to ``[1e-4, 1]`` when used).
        connectivity_mask: fixed ``(n, n)`` 0/1 mask multiplied into ``K_rec`` (rows presynaptic).
        excitatory_fraction: if set, Dale's law: ``K_rec = |K| * s[:, None]`` with ``s = +1`` for
            the first ``round(fraction · n)`` units and ``−1`` for the rest.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> cell = CTRNNCell(hidden_features=2, output_features=1, alpha=0.1, noise_const=0.1)
        >>> net = rnn(cell)
        >>> params = net.init(jax.random.PRNGKey(0), jnp.ones([1, 5, 1]))
        >>> rngs = {"noise_stream": jax.random.PRNGKey(0)}
        >>> y, r = net.apply(params, jnp.ones([1, 5, 1]), rngs=rngs)
        >>> y.shape, r.shape
        ((1, 5, 1), (1, 5, 2))
    """

    hidden_features: int
    output_features: int
    alpha: Any
    noise_const: Any
    activation_fn: Callable[..., Any] = nn.tanh
    kernel_init: Initializer = initializers.glorot_normal()
    bias_init: Initializer = initializers.zeros_init()
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    carry_init: Initializer = initializers.ones_init()
    noise_mode: Literal["seed", "euler_maruyama"] = "seed"
    train_alpha: bool = False
    connectivity_mask: Any = None
    excitatory_fraction: float | None = None

    def __post_init__(self) -> None:
        check_int("hidden_features", self.hidden_features)
        check_int("output_features", self.output_features)
        _check_rate("alpha", self.alpha, self.hidden_features, upper=1.0)
        if _is_concrete(self.noise_const):
            sigma = np.asarray(self.noise_const, dtype=float)
            if sigma.ndim != 0 or not np.isfinite(sigma) or sigma < 0:
                raise ValueError(
                    f"noise_const must be a finite scalar >= 0, got {self.noise_const!r}"
                )
        if self.noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {self.noise_mode!r}")
        if self.connectivity_mask is not None:
            shape = np.shape(self.connectivity_mask)
            n = self.hidden_features
            if shape != (n, n):
                raise ValueError(f"connectivity_mask must have shape ({n}, {n}), got {shape}")
        if self.excitatory_fraction is not None and not 0.0 <= self.excitatory_fraction <= 1.0:
            raise ValueError(
                f"excitatory_fraction must be in [0, 1], got {self.excitatory_fraction!r}"
            )
        super().__post_init__()

    # -- pieces shared by the cell and by the analysis (``dynamics``/``linear``) ---------------

    def recurrent_weights(self, params: Any) -> jax.Array:
        """Effective ``K_rec`` ``(n, n)`` (mask and Dale's law applied) from a params tree."""
        tree = params.get("params", params)
        return self._constrain(tree["recurrent_kernel"]["kernel"])

    def alpha_values(self, params: Any) -> jax.Array:
        """``alpha`` as used in the update: a scalar or shape ``(n,)``, from a params tree."""
        tree = params.get("params", params)
        if self.train_alpha:
            return jnp.clip(tree["alpha"], 1e-4, 1.0)
        return jnp.asarray(self.alpha)

    def _constrain(self, kernel: jax.Array) -> jax.Array:
        if self.excitatory_fraction is not None:
            signs = dale_signs(self.hidden_features, self.excitatory_fraction)
            kernel = jnp.abs(kernel) * jnp.asarray(signs, kernel.dtype)[:, None]
        if self.connectivity_mask is not None:
            kernel = kernel * jnp.asarray(self.connectivity_mask, kernel.dtype)
        return kernel

    @nn.compact
    def __call__(self, carry: jax.Array, task_input: jax.Array):
        """One Euler step.

        Args:
            carry: voltage ``x_t``, shape ``(..., n)``.
            task_input: input ``u_t``, shape ``(..., m)``.

        Returns:
            ``(x_{t+1}, (y_{t+1}, r_{t+1}))`` with shapes ``(..., n)``, ``(..., p)``, ``(..., n)``.

        Raises:
            ValueError: ``carry`` not of width ``n`` or ``task_input`` not of the params' width.
        """
        existing = self.variables.get("params", {})
        in_width = (
            existing["input_kernel"]["kernel"].shape[0] if "input_kernel" in existing else None
        )
        _check_input("carry", carry, self.hidden_features, "hidden_features")
        _check_input("task_input", task_input, in_width, "input_features")

        dense = partial(
            nn.Dense,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        recurrent = dense(features=self.hidden_features, use_bias=True, name="recurrent_kernel")
        rates_in = self.activation_fn(carry)
        recurrent_input = recurrent(rates_in)
        if self.excitatory_fraction is not None or self.connectivity_mask is not None:
            # The Dense call above creates the seed's param layout; XLA drops its unused product.
            weights = recurrent.variables["params"]
            kernel = self._constrain(weights["kernel"])
            recurrent_input = rates_in @ kernel.astype(recurrent_input.dtype) + weights["bias"]
        hidden_input = recurrent_input + dense(
            features=self.hidden_features, use_bias=False, name="input_kernel"
        )(task_input)

        if self.train_alpha:
            alpha = jnp.clip(self._per_neuron_param("alpha", self.alpha), 1e-4, 1.0)
        else:
            alpha = _as_array(self.alpha, hidden_input.dtype)

        noise = self._noise(carry.shape, hidden_input.dtype)
        if self.noise_mode == "seed":
            x_next = (1.0 - alpha) * carry + alpha * (hidden_input + noise)
        else:
            x_next = (1.0 - alpha) * carry + alpha * hidden_input + jnp.sqrt(2.0 * alpha) * noise

        rates = self.activation_fn(x_next)
        outputs = dense(features=self.output_features, use_bias=True, name="output_kernel")(rates)
        return x_next, (outputs, rates)

    def _noise(self, shape: tuple[int, ...], dtype: Any) -> jax.Array | float:
        if isinstance(self.noise_const, int | float) and self.noise_const == 0:
            return 0.0
        key = self.make_rng("noise_stream")
        return jnp.asarray(self.noise_const, dtype) * jax.random.normal(key, shape, dtype)


class RateCTRNNCell(_VectorCell):
    r"""The seed's rate-form CT-RNN (its ``SimpleCTRNNCell``; Beer 1995's circuits).

    .. math::

        h_{t+1} = \Bigl(1 - \frac{\Delta t}{\tau}\Bigr) h_t
                  + \frac{\Delta t}{\tau}\bigl(\sigma(h_t K + b) + u_t\bigr)

    with the sigmoid ``σ`` inside and the input outside the nonlinearity (so the input width
    equals ``hidden_features``). Returns ``(h_{t+1}, h_{t+1})``. Unlike the seed, whose carry is
    the tuple ``(h, tau)``, the carry here is ``h`` alone; ``tau`` is a field (fixed) or, with
    ``train_tau=True``, the parameter ``params["tau"]`` of shape ``(n,)``.

    Attributes:
        hidden_features: number of units ``n``.
        dt: Euler step ``Δt > 0``.
        tau: time constants, a scalar or shape ``(n,)``, with ``Δt/τ <= 1``.
        train_tau: learn ``tau`` (kept ``>= dt``).
        activation_fn: nonlinearity (seed: sigmoid).
        kernel_init, bias_init, dtype, param_dtype: as for ``CTRNNCell``.
        carry_init: initial ``h`` (seed: zeros).
    """

    hidden_features: int
    dt: Any
    tau: Any = 1.0
    train_tau: bool = False
    activation_fn: Callable[..., Any] = nn.sigmoid
    kernel_init: Initializer = initializers.glorot_normal()
    bias_init: Initializer = initializers.zeros_init()
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    carry_init: Initializer = initializers.zeros_init()

    def __post_init__(self) -> None:
        check_int("hidden_features", self.hidden_features)
        _check_rate("dt", self.dt, 1, upper=None)
        _check_rate("tau", self.tau, self.hidden_features, upper=None)
        if _is_concrete((self.dt, self.tau)) and np.any(
            np.asarray(self.dt, float) / np.asarray(self.tau, float) > 1.0
        ):
            raise ValueError(f"dt / tau must be <= 1, got dt={self.dt!r}, tau={self.tau!r}")
        super().__post_init__()

    def recurrent_weights(self, params: Any) -> jax.Array:
        """``K`` ``(n, n)`` from a params tree (rows presynaptic)."""
        return params.get("params", params)["recurrent_kernel"]["kernel"]

    def alpha_values(self, params: Any) -> jax.Array:
        """``dt / tau``: a scalar or shape ``(n,)``."""
        return jnp.asarray(self.dt) / self._tau(params.get("params", params))

    def _tau(self, tree: Any) -> jax.Array:
        if self.train_tau:
            return jnp.maximum(tree["tau"], jnp.asarray(self.dt))
        return jnp.asarray(self.tau)

    @nn.compact
    def __call__(self, carry: jax.Array, task_input: jax.Array):
        """One Euler step: ``carry`` ``(..., n)``, ``task_input`` ``(..., n)`` → ``(h, h)``."""
        _check_input("carry", carry, self.hidden_features, "hidden_features")
        _check_input("task_input", task_input, self.hidden_features, "hidden_features")
        if self.train_tau:
            tau = jnp.maximum(self._per_neuron_param("tau", self.tau), jnp.asarray(self.dt))
        else:
            tau = jnp.asarray(self.tau)
        dt_tau = jnp.asarray(self.dt) / tau
        drive = self.activation_fn(
            nn.Dense(
                self.hidden_features,
                use_bias=True,
                kernel_init=self.kernel_init,
                bias_init=self.bias_init,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name="recurrent_kernel",
            )(carry)
        )
        h_next = (1.0 - dt_tau) * carry + dt_tau * (drive + task_input)
        return h_next, h_next


class CheckedRNN(nn.RNN):
    """``nn.RNN`` that rejects inputs without ``(time, features)`` axes with a clear error."""

    def __call__(self, inputs: jax.Array, **kwargs: Any):
        inputs = jnp.asarray(inputs)
        if inputs.ndim < 2:
            raise ValueError(
                "inputs must have shape (batch, time, features) or (time, features), "
                f"got {inputs.shape}"
            )
        return super().__call__(inputs, **kwargs)


def rnn(cell: nn.RNNCellBase, **rnn_kwargs: Any) -> nn.RNN:
    """Wrap ``cell`` in ``nn.RNN`` with the seed's rng splitting.

    Parameters are shared across time steps while ``"noise_stream"`` gets a fresh key per step:
    ``nn.RNN(cell, split_rngs={"params": False, "noise_stream": True})``. Inputs are
    ``(batch, time, features)``; extra keyword arguments go to ``nn.RNN`` (``return_carry``,
    ``unroll``, …). Params are laid out as ``{"params": {"cell": ...}}``, exactly as the seed's.
    """
    if not isinstance(cell, nn.RNNCellBase):
        raise TypeError(f"cell must be a flax.linen RNNCellBase, got {type(cell).__name__}")
    rnn_kwargs.setdefault("split_rngs", dict(SPLIT_RNGS))
    return CheckedRNN(cell, **rnn_kwargs)


class _StepKeys(nn.RNNCellBase):
    """Yields the key that a cell in ``nn.RNN``'s ``"cell"`` slot gets from its first
    ``make_rng("noise_stream")`` at each time step (the raw key data, shape ``(2,)``)."""

    @nn.compact
    def __call__(self, carry: jax.Array, _: jax.Array):
        key = self.make_rng("noise_stream")
        typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        return carry, jax.random.key_data(key) if typed else key

    @nn.nowrap
    def initialize_carry(self, rng: PRNGKey, input_shape: tuple[int, ...]) -> jax.Array:
        return jnp.zeros(())

    @property
    def num_feature_axes(self) -> int:
        return 1


def step_noise(
    key: jax.Array, n_steps: int, shape: tuple[int, ...], dtype: Dtype = jnp.float32
) -> jax.Array:
    r"""The standard-normal ``ξ_t`` that ``rnn(CTRNNCell(...))`` draws with ``key``, all at once.

    ``rnn(cell).apply(params, u, rngs={"noise_stream": key})`` draws, at step ``t``,
    ``ξ_t = normal(k_t, (*batch, n))`` with ``k_t`` the step's ``make_rng("noise_stream")`` key.
    This derives the ``n_steps`` keys ``k_t`` with the same ``nn.RNN`` rng splitting (a scan
    over keys only) and draws every ``ξ_t`` in one vectorised call (threefry keys, the default;
    other key implementations draw step by step, since their vectorised draws differ). The
    values are bit-identical to the cell's (tested), so a forward pass that takes its noise as
    an array (:func:`ctrnn_dyn.fast_path.fast_forward`) reproduces ``nn.RNN``'s run. (Training
    on the fast path draws a cheaper stream of its own instead, :mod:`ctrnn_dyn.noise`.)

    Args:
        key: the ``noise_stream`` key (typed or raw).
        n_steps: number of time steps ``T``.
        shape: the per-step noise shape ``(*batch, n)``.
        dtype: float dtype of ``ξ``.

    Returns:
        ``ξ`` of shape ``(T, *batch, n)`` (time-major).

    Raises:
        ValueError / TypeError: ``key`` not a PRNG key (typed, or raw ``uint32`` of shape
            ``(2,)``), ``n_steps < 1``, ``shape`` not a tuple of ints ``>= 0``.
    """
    check_int("n_steps", n_steps)
    typed = jnp.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key)
    if not typed and (getattr(key, "dtype", None) != jnp.uint32 or np.shape(key) != (2,)):
        raise TypeError(
            f"key must be a PRNG key (jax.random.key(...) or a uint32 array of shape (2,)), "
            f"got {type(key).__name__} with shape {np.shape(key)}"
        )
    if not isinstance(shape, tuple | list) or not all(
        isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise ValueError(f"shape must be a tuple of ints >= 0 (*batch, n), got {shape!r}")
    impl = jax.random.key_impl(key) if typed else None
    scan = nn.RNN(_StepKeys(), split_rngs=dict(SPLIT_RNGS), time_major=True)
    data = scan.apply({}, jnp.zeros((n_steps, 1)), rngs={"noise_stream": key})  # (T, *key)

    def draw(d: jax.Array) -> jax.Array:
        k = jax.random.wrap_key_data(d, impl=impl) if typed else d
        return jax.random.normal(k, tuple(shape), dtype)

    name = str(impl) if typed else jax.config.jax_default_prng_impl
    if "threefry" in name:  # threefry draws are the same vectorised or not
        return jax.vmap(draw)(data)
    return jax.lax.map(draw, data)  # rbg-style draws may differ under vmap
