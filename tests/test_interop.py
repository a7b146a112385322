"""``from_torch``: PyTorch recurrent modules as one-step maps, checked against their own forward."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ctrnn_dyn import linear  # noqa: E402
from ctrnn_dyn.dynamics import simulate  # noqa: E402
from ctrnn_dyn.fixed_points import find_fixed_points  # noqa: E402
from ctrnn_dyn.interop import TorchMap, from_torch  # noqa: E402

M, H, B, T = 4, 5, 3, 7


def _module(kind: str, layers: int, batch_first: bool, bias: bool = True):
    torch.manual_seed(layers * 10 + len(kind) + int(batch_first) + 2 * int(bias))
    common = dict(num_layers=layers, batch_first=batch_first, bias=bias)
    if kind in ("tanh", "relu"):
        mod = torch.nn.RNN(M, H, nonlinearity=kind, **common)
    elif kind == "gru":
        mod = torch.nn.GRU(M, H, **common)
    else:
        mod = torch.nn.LSTM(M, H, **common)
    with torch.no_grad():  # larger weights than the default init: every gate away from 0.5
        for p in mod.parameters():
            p.mul_(2.5)
    return mod.double().eval()


def _torch_run(mod, kind, u, h0, c0, batch_first):
    x = torch.from_numpy(u if batch_first else np.swapaxes(u, 0, 1).copy())
    hx = (torch.from_numpy(h0), torch.from_numpy(c0)) if kind == "lstm" else torch.from_numpy(h0)
    with torch.no_grad():
        out, hn = mod(x, hx)
    out = out.numpy() if batch_first else np.swapaxes(out.numpy(), 0, 1)
    return out, hn


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kind,layers", [("tanh", 1), ("tanh", 3), ("relu", 2), ("gru", 1),
                                         ("gru", 2), ("lstm", 1), ("lstm", 3)])
def test_round_trip_matches_torch_forward(kind, layers, batch_first):
    mod = _module(kind, layers, batch_first)
    F = from_torch(mod)
    rng = np.random.default_rng(3)
    u = rng.normal(size=(B, T, M))
    h0 = rng.normal(scale=0.5, size=(layers, B, H))
    c0 = rng.normal(scale=0.5, size=(layers, B, H))
    out, hn = _torch_run(mod, kind, u, h0, c0, batch_first)

    x0 = F.state_from_torch((h0, c0) if kind == "lstm" else h0)  # (B, n)
    assert x0.shape == (B, F.state_size)
    with jax.enable_x64(True):
        states = np.asarray(jax.vmap(lambda x, v: simulate(F, x, v))(x0, jnp.asarray(u)))
    assert states.dtype == np.float64
    top = slice((layers - 1) * H, layers * H)  # the top layer's h: torch's output sequence
    np.testing.assert_allclose(states[:, :, top], out, rtol=1e-12, atol=1e-13)
    final = F.state_from_torch(tuple(t.numpy() for t in hn) if kind == "lstm" else hn.numpy())
    np.testing.assert_allclose(states[:, -1], final, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", ["tanh", "gru", "lstm"])
def test_round_trip_without_biases(kind):
    mod = _module(kind, 2, True, bias=False)
    F = from_torch(mod)
    rng = np.random.default_rng(4)
    u = rng.normal(size=(B, T, M))
    h0 = rng.normal(size=(2, B, H))
    c0 = rng.normal(size=(2, B, H))
    out, _ = _torch_run(mod, kind, u, h0, c0, True)
    x0 = F.state_from_torch((h0, c0) if kind == "lstm" else h0)
    with jax.enable_x64(True):
        states = np.asarray(jax.vmap(lambda x, v: simulate(F, x, v))(x0, jnp.asarray(u)))
    np.testing.assert_allclose(states[:, :, H:2 * H], out, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", ["tanh", "relu", "gru", "lstm"])
def test_cells_match_torch_cells(kind):
    torch.manual_seed(7)
    cls = {"gru": torch.nn.GRUCell, "lstm": torch.nn.LSTMCell}.get(kind, torch.nn.RNNCell)
    cell = (cls(M, H, nonlinearity=kind) if cls is torch.nn.RNNCell else cls(M, H)).double()
    F = from_torch(cell)
    rng = np.random.default_rng(5)
    u, h, c = rng.normal(size=M), rng.normal(size=H), rng.normal(size=H)
    with torch.no_grad():
        if kind == "lstm":
            h1, c1 = cell(torch.from_numpy(u), (torch.from_numpy(h), torch.from_numpy(c)))
            want = np.concatenate([h1.numpy(), c1.numpy()])
            x = np.concatenate([h, c])
        else:
            want = cell(torch.from_numpy(u), torch.from_numpy(h)).numpy()
            x = h
    with jax.enable_x64(True):
        got = np.asarray(F(jnp.asarray(x), jnp.asarray(u)))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_lstm_pytree_carry_and_flat_state_agree():
    F = from_torch(_module("lstm", 2, False))
    rng = np.random.default_rng(6)
    h, c, u = rng.normal(size=2 * H), rng.normal(size=2 * H), rng.normal(size=M)
    with jax.enable_x64(True):
        h1, c1 = F((jnp.asarray(h), jnp.asarray(c)), jnp.asarray(u))
        flat = F(jnp.concatenate([h, c]), jnp.asarray(u))
    np.testing.assert_array_equal(np.concatenate([h1, c1]), np.asarray(flat))
    assert F.state_size == 4 * H


def test_float32_module_is_exact_in_float64():
    torch.manual_seed(0)
    mod = torch.nn.GRU(M, H)  # float32 weights
    F = from_torch(mod)
    assert F.weights[0][0].dtype == np.float32
    rng = np.random.default_rng(0)
    h, u = rng.normal(size=H), rng.normal(size=M)
    with torch.no_grad():
        want = mod.double()(torch.from_numpy(u)[None], torch.from_numpy(h)[None])[1][0].numpy()
    with jax.enable_x64(True):
        got = np.asarray(F(jnp.asarray(h), jnp.asarray(u)))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    # float32 in, float32 out
    assert F(jnp.zeros(H, jnp.float32), jnp.zeros(M, jnp.float32)).dtype == jnp.float32


def test_weights_are_copied():
    mod = torch.nn.RNN(M, H)
    F = from_torch(mod)
    before = F.weights[0][0].copy()
    with torch.no_grad():
        mod.weight_ih_l0.add_(1.0)
    np.testing.assert_array_equal(F.weights[0][0], before)


def test_map_is_a_pytree_and_works_under_jit_and_analyses():
    F = from_torch(_module("gru", 2, True))
    leaves = jax.tree_util.tree_leaves(F)
    assert len(leaves) == 8
    G = jax.tree_util.tree_map(lambda a: a, F)
    assert isinstance(G, TorchMap) and G.state_size == F.state_size
    x = jnp.linspace(-0.5, 0.5, F.state_size)
    u = jnp.ones(M)
    jitted = jax.jit(lambda Fm, x, u: Fm(x, u))(F, x, u)
    np.testing.assert_allclose(jitted, F(x, u), rtol=1e-6)
    J = linear.jacobian(F, x, u)
    assert J.shape == (F.state_size, F.state_size)


def test_find_fixed_points_accepts_the_map():
    torch.manual_seed(1)
    mod = torch.nn.RNN(2, 6).double()
    with torch.no_grad():
        mod.weight_hh_l0.mul_(0.3)  # contracting: one fixed point
    F = from_torch(mod)
    starts = np.random.default_rng(0).normal(size=(8, 6))
    fps = find_fixed_points(F, starts)
    assert fps.converged.all()
    x = fps.x[0]
    # independent check in NumPy: tanh(W_ih 0 + b_ih + W_hh x + b_hh) = x
    w = {k: v.detach().numpy() for k, v in mod.named_parameters()}
    np.testing.assert_allclose(np.tanh(w["weight_hh_l0"] @ x + w["bias_ih_l0"] + w["bias_hh_l0"]),
                               x, atol=1e-12)


def test_lstm_fixed_points_from_a_pytree_of_starts():
    torch.manual_seed(2)
    F = from_torch(torch.nn.LSTM(2, 4).double())
    rng = np.random.default_rng(1)
    starts = (rng.normal(size=(6, 4)) * 0.1, rng.normal(size=(6, 4)) * 0.1)
    fps = find_fixed_points(F, starts)
    assert fps.x.shape[1] == 8 and fps.converged.any()


def test_invalid_modules():
    with pytest.raises(TypeError, match="torch.nn.modules.linear.Linear"):
        from_torch(torch.nn.Linear(3, 3))
    with pytest.raises(TypeError, match="ndarray"):
        from_torch(np.zeros(3))
    with pytest.raises(ValueError, match="bidirectional"):
        from_torch(torch.nn.GRU(3, 4, bidirectional=True))
    with pytest.raises(ValueError, match="proj_size"):
        from_torch(torch.nn.LSTM(3, 4, proj_size=2))


def test_invalid_states():
    F = from_torch(torch.nn.RNN(M, H, num_layers=2))
    with pytest.raises(ValueError, match=r"\(state_size,\) = \(10,\)"):
        F(jnp.zeros(H), jnp.zeros(M))
    with pytest.raises(ValueError, match="input_size"):
        F(jnp.zeros(2 * H), jnp.zeros(M + 1))
    with pytest.raises(ValueError, match="LSTM"):
        F((jnp.zeros(2 * H), jnp.zeros(2 * H)), jnp.zeros(M))
    with pytest.raises(ValueError, match="L=2"):
        F.state_from_torch(np.zeros((3, H)))
    G = from_torch(torch.nn.LSTM(M, H))
    with pytest.raises(TypeError, match=r"\(h, c\)"):
        G.state_from_torch(np.zeros((1, H)))
