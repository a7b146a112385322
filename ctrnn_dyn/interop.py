r"""Networks trained elsewhere, as one-step maps every analysis accepts.

:func:`from_torch` turns a PyTorch ``torch.nn.RNN`` (tanh or relu), ``torch.nn.GRU`` or
``torch.nn.LSTM`` — any number of layers — or one of the single-layer cells ``RNNCell``,
``GRUCell``, ``LSTMCell`` into a :class:`TorchMap` ``F(x, u) -> x_next`` with the same weights,
so ``find_fixed_points``, :mod:`ctrnn_dyn.linear`, ``simulate`` and the plots work on it as on a
:class:`~ctrnn_dyn.dynamics.OneStepMap`. PyTorch is imported only inside :func:`from_torch`.

The state is the layers' hidden states concatenated, layer 0 first, as FixedPointFinder does:
``x = [h^{(0)}, …, h^{(L-1)}]`` of length ``L·H``. For the LSTM it is ``x = [h, c]``
(all layers' ``h``, then all layers' ``c``; length ``2·L·H``); the LSTM map also accepts the
carry as a pytree ``(h, c)`` of two ``(L·H,)`` arrays and then returns ``(h', c')``.

With :math:`W_{i\cdot}, W_{h\cdot}` and :math:`b_{i\cdot}, b_{h\cdot}` PyTorch's
``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` (row blocks in
PyTorch's gate order), layer ``k`` reads :math:`v` (the input ``u`` for layer 0, the layer
below's *new* state otherwise) and updates

* RNN: :math:`h' = f(W_i v + b_i + W_h h + b_h)`, ``f`` tanh or relu;
* GRU: :math:`r = \sigma(W_{ir}v + b_{ir} + W_{hr}h + b_{hr})`,
  :math:`z = \sigma(W_{iz}v + b_{iz} + W_{hz}h + b_{hz})`,
  :math:`n = \tanh(W_{in}v + b_{in} + r\odot(W_{hn}h + b_{hn}))`,
  :math:`h' = (1-z)\odot n + z\odot h`;
* LSTM: :math:`(i, f, g, o) = (\sigma, \sigma, \tanh, \sigma)(W_i v + b_i + W_h h + b_h)`,
  :math:`c' = f\odot c + i\odot g`, :math:`h' = o\odot\tanh(c')`.

Dropout between layers is a training-time operation and is not part of the map (PyTorch's
``eval()`` forward pass). The readout (e.g. an ``nn.Linear`` after the RNN) is the user's own.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["TorchMap", "from_torch"]

_KINDS = ("rnn_tanh", "rnn_relu", "gru", "lstm")
_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "gru": 3, "lstm": 4}


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class TorchMap:
    r"""One-step map ``F(x, u) -> x_next`` of a PyTorch recurrent network (see the module
    docstring for the equations and the state layout).

    Call it on unbatched arrays ``x: (state_size,)``, ``u: (input_size,)`` (``u=None`` means
    zero input); ``vmap`` it for a batch. The weights are kept in the module's precision (NumPy)
    and cast to ``x``'s float dtype at each call, so a float64 ``x`` gives a float64 map — exact
    for a float32 module too. A pytree (weights are its leaves); equality and hashing are by
    identity, so the same object reuses compiled solvers when passed as a static argument.

    Attributes:
        kind: ``"rnn_tanh"``, ``"rnn_relu"``, ``"gru"`` or ``"lstm"``.
        weights: per layer ``(W_ih (G·H, m_k), W_hh (G·H, H), b_ih (G·H,), b_hh (G·H,))`` with
            ``G`` gates (1, 3 or 4) and ``m_k`` the layer's input width.
        hidden_size: ``H``.
        input_size: ``m``.
        num_layers: ``L``.
    """

    kind: str
    weights: tuple[tuple[Any, Any, Any, Any], ...]
    hidden_size: int
    input_size: int
    num_layers: int

    # -- pytree -------------------------------------------------------------------------------

    def tree_flatten(self) -> tuple[tuple, tuple]:
        return (self.weights,), (self.kind, self.hidden_size, self.input_size, self.num_layers)

    @classmethod
    def tree_unflatten(cls, aux: tuple, children: tuple) -> TorchMap:
        kind, hidden, width, layers = aux
        return cls(kind, children[0], hidden, width, layers)

    # -- shape --------------------------------------------------------------------------------

    @property
    def state_size(self) -> int:
        """Length of the flat state: ``L·H`` (``2·L·H`` for the LSTM)."""
        return (2 if self.kind == "lstm" else 1) * self.num_layers * self.hidden_size

    @property
    def alpha(self) -> None:
        """``None``: a discrete-time network has no Euler fraction (analyses use 1)."""
        return None

    def state_from_torch(self, hx: Any) -> np.ndarray:
        """Flat state(s) from a PyTorch module's hidden state ``h_n`` (``(h_n, c_n)``).

        Args:
            hx: ``h`` of shape ``(L, H)`` or ``(L, B, H)`` (RNN/GRU), or ``(h, c)`` of those
                shapes (LSTM); tensors or arrays. (A cell's ``(B, H)`` state is already the
                flat state of an RNN/GRU cell; an LSTM cell's is ``concatenate([h, c], -1)``.)

        Returns:
            ``(state_size,)`` or ``(B, state_size)`` NumPy array in the layout of the map.

        Raises:
            TypeError: an LSTM's ``hx`` not an ``(h, c)`` pair.
            ValueError: shapes other than ``(L, H)`` / ``(L, B, H)``.
        """
        if self.kind == "lstm" and not (isinstance(hx, tuple | list) and len(hx) == 2):
            raise TypeError("hx must be the LSTM's (h, c) pair")
        parts = hx if self.kind == "lstm" else (hx,)
        flat = []
        for p in parts:
            a = _to_numpy(p)
            if a.ndim not in (2, 3) or a.shape[0] != self.num_layers or (
                    a.shape[-1] != self.hidden_size):
                raise ValueError(
                    f"hx must have shape (L, H) or (L, B, H) with L={self.num_layers}, "
                    f"H={self.hidden_size}, got {a.shape}"
                )
            # (L, H) -> (L*H,);  (L, B, H) -> (B, L*H), layer 0 first
            flat.append(a.reshape(-1) if a.ndim == 2
                        else np.transpose(a, (1, 0, 2)).reshape(a.shape[1], -1))
        return np.concatenate(flat, axis=-1)

    # -- the map ------------------------------------------------------------------------------

    def __call__(self, x: Any, u: jax.Array | None = None) -> Any:
        pytree = isinstance(x, tuple | list)
        n = self.num_layers * self.hidden_size
        if pytree:
            if self.kind != "lstm" or len(x) != 2:
                raise ValueError(
                    "a pytree state is the LSTM's (h, c); other maps take x of shape "
                    f"({self.state_size},)"
                )
            h, c = (_as_float(a) for a in x)
            if h.shape != (n,) or c.shape != (n,):
                raise ValueError(f"(h, c) must both have shape ({n},), got {h.shape}, {c.shape}")
            dtype = jnp.result_type(h, c)
            h, c = h.astype(dtype), c.astype(dtype)
        else:
            x = _as_float(x)
            if x.shape != (self.state_size,):
                raise ValueError(
                    f"x must have shape (state_size,) = ({self.state_size},), got {x.shape}; "
                    "vmap F for a batch"
                )
            dtype = x.dtype
            h, c = (x[:n], x[n:]) if self.kind == "lstm" else (x, None)
        if u is None:
            u = jnp.zeros((self.input_size,), dtype)
        u = jnp.asarray(u, dtype)
        if u.shape != (self.input_size,):
            raise ValueError(
                f"u must have shape (input_size,) = ({self.input_size},), got {u.shape}"
            )
        H = self.hidden_size
        v = u
        hs, cs = [], []
        for k, layer in enumerate(self.weights):
            w_ih, w_hh, b_ih, b_hh = (jnp.asarray(w, dtype) for w in layer)
            hk = h[k * H:(k + 1) * H]
            gi = w_ih @ v + b_ih
            gh = w_hh @ hk + b_hh
            if self.kind == "rnn_tanh":
                v = jnp.tanh(gi + gh)
            elif self.kind == "rnn_relu":
                v = jax.nn.relu(gi + gh)
            elif self.kind == "gru":
                r = jax.nn.sigmoid(gi[:H] + gh[:H])
                z = jax.nn.sigmoid(gi[H:2 * H] + gh[H:2 * H])
                cand = jnp.tanh(gi[2 * H:] + r * gh[2 * H:])
                v = (1.0 - z) * cand + z * hk
            else:
                g = gi + gh
                i_g, f_g = jax.nn.sigmoid(g[:H]), jax.nn.sigmoid(g[H:2 * H])
                g_g, o_g = jnp.tanh(g[2 * H:3 * H]), jax.nn.sigmoid(g[3 * H:])
                ck = f_g * c[k * H:(k + 1) * H] + i_g * g_g
                cs.append(ck)
                v = o_g * jnp.tanh(ck)
            hs.append(v)
        h_new = jnp.concatenate(hs)
        if self.kind != "lstm":
            return h_new
        c_new = jnp.concatenate(cs)
        return (h_new, c_new) if pytree else jnp.concatenate([h_new, c_new])


def _as_float(x: Any) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def _to_numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().cpu()
        if not a.dtype.is_floating_point or a.dtype.itemsize < 4:
            a = a.double()
        return a.numpy()
    return np.asarray(a)


def from_torch(module: Any) -> TorchMap:
    """The one-step map ``F(x, u)`` of a PyTorch recurrent module, with its weights.

    Supported: ``torch.nn.RNN`` (``nonlinearity`` tanh or relu), ``torch.nn.GRU``,
    ``torch.nn.LSTM`` with any ``num_layers``, with or without biases, ``batch_first`` either
    way (it changes only the layout of PyTorch's sequences, not the map), and the single-layer
    ``torch.nn.RNNCell``, ``GRUCell``, ``LSTMCell``. The weights are copied (detached, on the
    CPU; float16/bfloat16 widened to float64), so later training of ``module`` does not change
    the map. See the module docstring for the state layout.

    Args:
        module: the PyTorch module.

    Returns:
        :class:`TorchMap` ``F`` with ``F(x: (state_size,), u: (input_size,)) -> (state_size,)``.

    Raises:
        ImportError: PyTorch is not installed.
        TypeError: ``module`` is not one of the supported module types (the message names it).
        ValueError: a bidirectional module or one with ``proj_size > 0`` (no one-step map of
            that form).

    Example:
        >>> import torch
        >>> rnn = torch.nn.RNN(3, 16, batch_first=True)
        >>> F = from_torch(rnn)
        >>> F.state_size, F.input_size
        (16, 3)
    """
    try:
        import torch
    except ImportError as err:  # pragma: no cover - exercised only without torch
        raise ImportError("from_torch needs PyTorch (pip install 'ctrnn_dyn[torch]')") from err

    nn = torch.nn
    supported = (nn.RNN, nn.GRU, nn.LSTM, nn.RNNCell, nn.GRUCell, nn.LSTMCell)
    if not isinstance(module, supported):
        raise TypeError(
            "module must be a torch.nn.RNN, GRU, LSTM, RNNCell, GRUCell or LSTMCell, got "
            f"{type(module).__module__}.{type(module).__qualname__}"
        )
    if isinstance(module, nn.RNNCell | nn.GRUCell | nn.LSTMCell):
        kind = {nn.GRUCell: "gru", nn.LSTMCell: "lstm"}.get(type(module))
        if kind is None:
            kind = "rnn_" + module.nonlinearity
        names = [("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        layers = 1
    else:
        if module.bidirectional:
            raise ValueError(
                f"module is a bidirectional {type(module).__name__}: a bidirectional network "
                "reads its input backwards in time and has no one-step map; use "
                "bidirectional=False"
            )
        if getattr(module, "proj_size", 0):
            raise ValueError(
                f"module has proj_size={module.proj_size}: projected LSTMs are not supported "
                "(use proj_size=0)"
            )
        kind = {"RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu", "GRU": "gru",
                "LSTM": "lstm"}.get(module.mode)
        if kind is None:  # pragma: no cover - torch's own modes are all covered
            raise TypeError(f"module has an unsupported mode {module.mode!r}")
        layers = int(module.num_layers)
        names = [(f"weight_ih_l{k}", f"weight_hh_l{k}", f"bias_ih_l{k}", f"bias_hh_l{k}")
                 for k in range(layers)]
    H = int(module.hidden_size)
    G = _GATES[kind]
    weights = []
    for k, (wi, wh, bi, bh) in enumerate(names):
        w_ih, w_hh = _to_numpy(getattr(module, wi)), _to_numpy(getattr(module, wh))
        dtype = np.result_type(w_ih, w_hh)
        if getattr(module, "bias", True):
            b_ih, b_hh = _to_numpy(getattr(module, bi)), _to_numpy(getattr(module, bh))
        else:
            b_ih = b_hh = np.zeros((G * H,), dtype)
        width = int(module.input_size) if k == 0 else H
        if w_ih.shape != (G * H, width) or w_hh.shape != (G * H, H):
            raise ValueError(  # pragma: no cover - guards against torch layout changes
                f"unexpected weight shapes {w_ih.shape}, {w_hh.shape} in layer {k}"
            )
        weights.append(tuple(np.array(a, copy=True) for a in (w_ih, w_hh, b_ih, b_hh)))
    return TorchMap(kind, tuple(weights), H, int(module.input_size), layers)
