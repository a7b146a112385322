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
