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


# -- FixedPointFinder's flip-flop example, trained in PyTorch ---------------------------------


def _flipflop_numpy(rng, n_trials, n_steps, n_bits=3, p_pulse=0.2):
    """3-bit flip-flop trials in NumPy (as a PyTorch user would make them): sparse ±1 pulses;
    each output holds its channel's last pulse, scored from that channel's first pulse on."""
    pulse = rng.random((n_trials, n_steps, n_bits)) < p_pulse
    u = np.where(pulse, rng.choice([-1.0, 1.0], size=pulse.shape), 0.0)
    y = np.zeros_like(u)
    held = np.zeros((n_trials, n_bits))
    for t in range(n_steps):
        held = np.where(pulse[:, t], u[:, t], held)
        y[:, t] = held
    return u.astype(np.float32), y.astype(np.float32), (y != 0).astype(np.float32)


def test_flipflop_trained_in_torch_fixed_points_match_a_numpy_newton():
    from scipy.optimize import root

    from ctrnn_dyn.fixed_points import sample_initial_states

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        rnn = torch.nn.RNN(3, 16, batch_first=True)  # FixedPointFinder's example: 16 tanh units
        readout = torch.nn.Linear(16, 3)
        opt = torch.optim.Adam([*rnn.parameters(), *readout.parameters()], lr=1e-2)
        rng = np.random.default_rng(0)
        U, Y, Mk = (torch.from_numpy(a) for a in _flipflop_numpy(rng, 200 * 64, 32))
        for s in range(200):
            u, y, m = (a[s * 64:(s + 1) * 64] for a in (U, Y, Mk))
            h, _ = rnn(u)
            loss = (((readout(h) - y) ** 2) * m).sum() / m.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        u, y, m = (torch.from_numpy(a) for a in _flipflop_numpy(rng, 32, 64, p_pulse=0.1))
        with torch.no_grad():
            h, _ = rnn(u)
            correct = ((torch.sign(readout(h)) == y).float() * m).sum() / m.sum()
    finally:
        torch.set_num_threads(threads)
    assert float(correct) > 0.99  # it learned the task

    F = from_torch(rnn)
    starts = np.asarray(sample_initial_states(h.numpy(), 128, noise_scale=0.5,
                                              key=jax.random.key(1)), np.float64)
    fps = find_fixed_points(F, starts, tol_unique=None, outlier_distance_scale=None)
    assert fps.converged.all()

    # the independent float64 NumPy map (biases summed in float64) and scipy's Newton (MINPACK
    # hybrid) from the same starts
    W = rnn.weight_hh_l0.detach().double().numpy()
    b = rnn.bias_ih_l0.detach().double().numpy() + rnn.bias_hh_l0.detach().double().numpy()

    def residual(x):
        return np.tanh(W @ x + b) - x

    def jac(x):  # of the map: diag(1 - tanh^2) W
        return (1.0 - np.tanh(W @ x + b) ** 2)[:, None] * W

    sols = [root(residual, x0, jac=lambda x: jac(x) - np.eye(16), method="hybr",
                 options={"xtol": 1e-13}) for x0 in starts]
    assert all(s.success and np.linalg.norm(residual(s.x)) < 1e-12 for s in sols)
    newton = np.array([s.x for s in sols])
    for x in fps.x:  # every point found is a root of the NumPy map
        assert np.linalg.norm(residual(x)) < 1e-9
    # from a start where both land on the same fixed point they agree to the solvers' precision
    same = np.linalg.norm(newton - fps.x, axis=1) < 1e-6
    assert same.sum() >= 32
    np.testing.assert_allclose(fps.x[same], newton[same], atol=1e-8)

    def unique(X):
        out = []
        for x in X:
            if all(np.linalg.norm(x - v) > 1e-6 for v in out):
                out.append(x)
        return np.array(out)

    ours, theirs = unique(fps.x), unique(newton)
    # stability: the NumPy Jacobian's spectrum at each point
    radius = np.array([np.abs(np.linalg.eigvals(jac(x))).max() for x in ours])
    stable_ours = ours[radius < 1]
    uniq_fps = fps.unique(1e-6)
    np.testing.assert_allclose(np.sort(np.abs(uniq_fps.eigvals).max(axis=1)), np.sort(radius),
                               rtol=1e-7)
    stable_theirs = theirs[[np.abs(np.linalg.eigvals(jac(x))).max() < 1 for x in theirs]]
    assert len(stable_ours) == len(stable_theirs) == 8  # one attractor per stored pattern
    assert all(np.min(np.linalg.norm(stable_theirs - x, axis=1)) < 1e-8 for x in stable_ours)
    K, c = readout.weight.detach().double().numpy(), readout.bias.detach().double().numpy()
    patterns = {tuple(np.sign(K @ x + c)) for x in stable_ours}
    assert len(patterns) == 8
