"""The seed_dynamics and flipflop reproductions at ``--quick`` size: their files, and each
headline claim re-derived from the saved ``NAME.npz`` with NumPy alone.

The checks below read the arrays (``np.load(..., allow_pickle=False)``) and recompute maps,
Jacobians, eigenvalues and trajectories in NumPy; no ``ctrnn_dyn`` code is used in them, so
they would catch an analysis that is wrong in the package itself. The numbers are then compared
with what the reproduction's JSON states.
"""

from __future__ import annotations

import itertools
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import brentq

from ctrnn_dyn import reproduce

# --------------------------------------------------------------------------- helpers


def _run(tmp_path_factory, name):
    out = tmp_path_factory.mktemp(name)
    return reproduce.get(name)(out, quick=True, seed=0)


def _png_size_and_dpi(path: Path) -> tuple[int, int, float]:
    """Width, height and resolution (from the pHYs chunk) of a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    w, h = struct.unpack(">II", data[16:24])
    i = data.find(b"pHYs")
    assert i > 0, "no pHYs chunk: the PNG does not record its resolution"
    ppm_x, _, unit = struct.unpack(">IIB", data[i + 4:i + 13])
    assert unit == 1  # pixels per metre
    return w, h, ppm_x * 0.0254


def _check_files(result, name) -> tuple[dict, dict]:
    """PNG at >= 200 dpi, a vector PDF, the JSON, and an NPZ of plain arrays under 1 MB."""
    out = result.png.parent
    assert result.png == out / f"{name}.png" and result.json == out / f"{name}.json"
    w, h, dpi = _png_size_and_dpi(result.png)
    assert dpi >= 200 and w >= 1400 and h >= 600
    assert result.pdf == out / f"{name}.pdf" and result.pdf.read_bytes()[:5] == b"%PDF-"
    assert result.npz == out / f"{name}.npz" and result.npz.stat().st_size < 1_000_000
    payload = json.loads(result.json.read_text())
    assert payload["name"] == name and payload["quick"] is True
    assert payload["checks"] == result.checks
    assert payload["all_checks_pass"] == all(result.checks.values())
    rows = payload["claim_results"]  # every claim with its numbers, rule and verdict
    assert {r["claim"]: r["pass"] for r in rows} == payload["checks"]
    assert all("value" in r and r["criterion"] for r in rows)
    with np.load(result.npz, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    assert all(a.dtype != object for a in data.values())
    return payload, data


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ----------------------------------------------------------------------------- flip-flop


@pytest.fixture(scope="module")
def flipflop(tmp_path_factory):
    return _run(tmp_path_factory, "flipflop")


def _flipflop_from_npz(data: dict, eps: float, n_steps: int, tol: float) -> dict:
    """The flip-flop's claims from its saved parameters and fixed points, in NumPy."""
    K, b = data["recurrent_kernel"], data["recurrent_bias"]
    K_out, b_out, a = data["output_kernel"], data["output_bias"], float(data["alpha"])
    x = data["fp/zero_input/x"]
    n = K.shape[0]
    assert K.shape == (n, n) and data["input_kernel"].shape == (3, n) and K_out.shape == (n, 3)

    def F(s):  # zero input; rows of s are states
        return (1 - a) * s + a * (np.tanh(s) @ K + b)

    residual = np.max(np.abs(F(x) - x))
    # J = (1 - a) I + a K^T diag(f'(x)), f = tanh
    mu, V = [], []
    for xi in x:
        J = (1 - a) * np.eye(n) + a * K.T * (1 - np.tanh(xi) ** 2)[None, :]
        m, v = np.linalg.eig(J)
        order = np.argsort(-np.abs(m))
        mu.append(m[order])
        V.append(v[:, order])
    mu = np.array(mu)
    n_unstable = np.sum(np.abs(mu) > 1.0, axis=1)
    stable = np.flatnonzero(n_unstable == 0)
    memories = x[stable]
    patterns = np.where(np.tanh(memories) @ K_out + b_out > 0, 1, -1)
    one = np.flatnonzero(n_unstable == 1)
    starts = []
    for i in one:
        v = np.real(V[i][:, 0])
        v = v / np.linalg.norm(v)
        starts += [x[i] + eps * v, x[i] - eps * v]
    s = np.array(starts).reshape(-1, n)
    for _ in range(n_steps):
        s = F(s)
    edges, one_bit = set(), 0
    for k in range(len(one)):
        ends = []
        for j in (2 * k, 2 * k + 1):
            d = np.linalg.norm(memories - s[j], axis=1)
            ends.append(int(np.argmin(d)) if d.min() <= tol else None)
        if None not in ends and np.sum(patterns[ends[0]] != patterns[ends[1]]) == 1:
            one_bit += 1
            edges.add(frozenset(ends))
    return {"residual": residual, "n_unstable": n_unstable, "n_stable": len(stable),
            "patterns": {tuple(p) for p in patterns}, "n_one_mode": len(one),
            "n_one_bit": one_bit, "n_edges": len(edges)}


def test_flipflop_claims_rederived_from_npz_with_numpy(flipflop):
    payload, data = _check_files(flipflop, "flipflop")
    c, cfg = payload["claims"], payload["settings"]
    assert float(data["saddle_eps"]) == cfg["saddle_eps"]
    got = _flipflop_from_npz(data, cfg["saddle_eps"], int(data["saddle_flow_steps"]),
                             cfg["memory_tolerance"])
    assert got["residual"] < 1e-8  # the saved points are fixed points of the saved network
    np.testing.assert_array_equal(got["n_unstable"], data["fp/zero_input/n_unstable"])
    # the JSON states what NumPy finds
    assert c["n_stable"] == got["n_stable"]
    assert {tuple(1 if ch == "+" else -1 for ch in p) for p in c["stable_bit_patterns"]} == (
        got["patterns"])
    assert c["n_one_mode_saddles"] == got["n_one_mode"]
    assert c["n_one_mode_saddles_joining_one_bit_neighbours"] == got["n_one_bit"]
    assert c["n_cube_edges_joined"] == got["n_edges"]
    # and the mechanism holds: 8 memories with the 8 patterns, 12 one-mode saddles, each
    # joining two memories one bit apart, together all 12 edges of the cube
    assert got["n_stable"] == 8
    assert got["patterns"] == set(itertools.product((-1, 1), repeat=3))
    assert got["n_one_mode"] == 12 and got["n_one_bit"] == 12 and got["n_edges"] == 12
    assert c["test_accuracy"] > 0.95
    assert flipflop.all_checks_pass, flipflop.checks


# ------------------------------------------------------------------------ seed circuits


@pytest.fixture(scope="module")
def seed_dynamics(tmp_path_factory):
    return _run(tmp_path_factory, "seed_dynamics")


def _rate_map(data: dict, name: str):
    """The seed's rate circuit ``h' = (1 - a) h + a sigma(h K + b)`` from the npz, in NumPy."""
    K = data[f"net/{name}/recurrent_kernel"]
    b = data[f"net/{name}/recurrent_bias"]
    a = data[f"net/{name}/alpha"]
    assert K.shape == (len(b), len(b)) and a.shape == b.shape
    return (lambda h: (1 - a) * h + a * _sigmoid(h @ K + b)), K, b, a


def test_seed_switch_rederived_from_npz(seed_dynamics):
    payload, data = _check_files(seed_dynamics, "seed_dynamics")
    F, K, b, a = _rate_map(data, "switch")
    x = data["fp/switch/x"][:, 0]
    assert len(x) == 3
    np.testing.assert_allclose(F(x[:, None])[:, 0], x, atol=1e-12)  # fixed points
    s = _sigmoid(K[0, 0] * x + b[0])
    slope = 1 - a[0] + a[0] * K[0, 0] * s * (1 - s)  # dF/dh: > 1 unstable, < 1 stable
    assert slope[0] < 1 and slope[1] > 1 and slope[2] < 1
    np.testing.assert_allclose(x[1], 0.5, atol=1e-9)
    # the unstable point separates the basins: run every start forward in NumPy
    h = data["switch/basin_starts"].copy()
    for _ in range(payload["settings"]["switch_basin_steps"]):
        h = F(h[:, None])[:, 0]
    np.testing.assert_allclose(h, data["switch/basin_ends"], atol=1e-9)
    starts = data["switch/basin_starts"]
    assert np.all(np.abs(h[starts < x[1]] - x[0]) < 1e-3)
    assert np.all(np.abs(h[starts > x[1]] - x[2]) < 1e-3)
    sw = payload["claims"]["switch"]
    assert sw["stability"] == ["stable node", "unstable node", "stable node"]
    assert sw["basin"]["n_ending_low"] == np.sum(starts < x[1])


def test_seed_switch_fixed_points_match_scipy_roots(seed_dynamics):
    sw = seed_dynamics.claims["switch"]

    def g(h):
        return -h + _sigmoid(8 * h - 4)

    roots = [brentq(g, lo, hi, xtol=1e-14) for lo, hi in ((-0.5, 0.3), (0.3, 0.7), (0.7, 1.5))]
    np.testing.assert_allclose(sw["fixed_points"], roots, atol=1e-9)
    # lambda = -1 + 8 sigma'(8h - 4) per tau (analytic), middle one = +1
    s = _sigmoid(8 * np.array(roots) - 4)
    np.testing.assert_allclose(sw["continuous_eigenvalues"], -1 + 8 * s * (1 - s), atol=1e-9)


def test_seed_oscillator_rederived_from_npz(seed_dynamics):
    payload, data = _check_files(seed_dynamics, "seed_dynamics")
    F, K, b, a = _rate_map(data, "oscillator")
    (focus,) = data["fp/oscillator/x"]
    np.testing.assert_allclose(focus, [0.5, 0.5], atol=1e-9)
    s = _sigmoid(focus @ K + b)
    J = np.diag(1 - a) + (a * s * (1 - s))[:, None] * K.T
    mu = np.linalg.eigvals(J)
    assert np.all(np.abs(mu) > 1) and np.all(np.abs(mu.imag) > 0)  # an unstable focus
    # the saved cycle is an orbit of the map, closes after `period` steps and winds once
    orbit = data["oscillator/cycle_orbit"]
    np.testing.assert_allclose(F(orbit[:-1]), orbit[1:], atol=1e-10)
    P = float(data["oscillator/period_steps"])
    ang = np.unwrap(np.arctan2(orbit[:, 1] - 0.5, orbit[:, 0] - 0.5))
    assert abs(ang[int(P)] - ang[0]) <= 2 * np.pi <= abs(ang[int(P) + 1] - ang[0])
    # starts inside (next to the focus) and outside end on that one cycle
    h = np.array([[0.51, 0.5], [0.0, 0.0]])
    for _ in range(3000):
        h = F(h)
    gaps = np.linalg.norm(orbit[:-1, None] - h[None], axis=2).min(0)
    step = np.linalg.norm(np.diff(orbit, axis=0), axis=1).max()
    assert np.all(gaps < step)
    # period: mean time between upward crossings of h1 = 0.5 (NumPy Euler loop)
    h, crossings = h[1], []
    for t in range(6000):
        h_next = F(h)
        if h[0] < 0.5 <= h_next[0]:
            crossings.append(t + (0.5 - h[0]) / (h_next[0] - h[0]))
        h = h_next
    np.testing.assert_allclose(np.mean(np.diff(crossings)), P, rtol=1e-3)
    lc = payload["claims"]["oscillator"]["limit_cycle"]
    assert lc["period_steps"] == pytest.approx(P) and lc["winding_number_about_the_fixed_point"]
    mu_f = data["oscillator/floquet_multipliers"]
    assert np.sort(np.abs(mu_f))[0] < 0.01  # strongly attracting


def test_seed_chaos_rederived_from_npz(seed_dynamics):
    payload, data = _check_files(seed_dynamics, "seed_dynamics")
    lam, se = data["chaos/lyapunov_exponents"], data["chaos/lyapunov_stderr"]
    assert lam.shape == (3, 3) and np.all(lam[:, 0] > 3 * se[:, 0])
    assert np.all(np.abs(lam[:, 1]) <= 3 * se[:, 1]) and np.all(lam[:, 2] < 0)
    # lambda_1 again in NumPy, from pairs of trajectories (no Jacobians): 32 independent
    # pairs 1e-9 apart, renormalised every 100 steps, for 2000 time units each
    F, *_ = _rate_map(data, "chaos")
    rng = np.random.default_rng(1)
    P = rng.uniform(0.45, 0.55, size=(32, 3))
    for _ in range(20_000):
        P = F(P)
    v = rng.normal(size=P.shape)
    Q = P + 1e-9 * v / np.linalg.norm(v, axis=1, keepdims=True)
    total = np.zeros(len(P))
    for _ in range(200):
        for _ in range(100):
            P, Q = F(P), F(Q)
        d = np.linalg.norm(Q - P, axis=1)
        total += np.log(d / 1e-9)
        Q = P + (Q - P) * (1e-9 / d)[:, None]
    rates = total / (200 * 100 * 0.1)
    rate, rate_se = rates.mean(), rates.std(ddof=1) / np.sqrt(len(rates))
    lam1 = lam[:, 0].mean()
    lam1_se = np.sqrt(np.sum(se[:, 0] ** 2)) / 3
    assert rate > 3 * rate_se
    assert abs(rate - lam1) <= 3 * np.hypot(rate_se, lam1_se), (rate, rate_se, lam1, lam1_se)
    ch = payload["claims"]["chaos"]
    assert ch["largest_mean"] == pytest.approx(lam1)
    labels = payload["claims"]["classification"]
    assert set(labels["switch"]["labels"]) == {"fixed point"}
    assert set(labels["oscillator"]["labels"]) == {"limit cycle"}
    assert set(labels["chaos"]["labels"]) == {"chaotic"}
    assert seed_dynamics.all_checks_pass, seed_dynamics.checks
