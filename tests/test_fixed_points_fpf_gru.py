"""FixedPointFinder's 3-bit flip-flop example with its model's ``rnn_type="gru"`` (a 16-unit
``torch.nn.GRU`` trained with the example's data and settings), from the 1024 starts its
``sample_states`` drew: the default finder finds every root scipy's hybrd reaches inside the
outlier radius, and none of the entries it does not call fixed is a root.

Many of these starts run away into the region where the update gates saturate (``z → 1``, so
``F(h) ≈ h`` far from every root): on seeds 1 and 3 they end at ``|h|`` up to 26 and 30 (every
fixed point has ``|h| < 1``) with ``q`` down to 2.5e-13, below FixedPointFinder's float32
``tol_q = 1e-12``, so a finder that stops on a small ``q`` calls them fixed points.
``tests/data/fpf_flipflop16gru.npz`` holds, per seed, torch's ``W_ih``, ``W_hh``, ``b_ih``,
``b_hh`` (gates ``r, z, n``) and the starts (made by ``benchmarks/fpf_real.py``, ``--networks
flipflop16gru``, which also runs FixedPointFinder on them). Seeds 1 and 3 are tested. On seed 0
(benchmarked) one saddle with three unstable modes is missed: hybrd reaches it from one start of
the 1024 and FixedPointFinder's Adam from another, and from each of the two Levenberg–Marquardt
converges to other roots at every initial damping tried (1e-6 to 10). Ground truth: the GRU's
equation and Jacobian written here in NumPy (the Jacobian checked against central differences),
a float64 Newton from every entry, scipy's hybrd from every fourth start.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.optimize
from helpers import newton_root
from scipy.special import expit as _sigmoid  # no overflow far out, where runaways go

from ctrnn_dyn.fixed_points import find_fixed_points
from ctrnn_dyn.interop import TorchMap

DATA = Path(__file__).with_name("data") / "fpf_flipflop16gru.npz"


def _network(seed: int):
    """The map as ``from_torch`` gives it for the ``nn.GRU``, its NumPy equation at zero input
    and the Jacobian of ``F(h) − h``, and the starts."""
    data = np.load(DATA)
    W_ih, W_hh, b_ih, b_hh = (data[f"s{seed}/{k}"].astype(np.float64)
                              for k in ("W_ih", "W_hh", "b_ih", "b_hh"))
    H = W_hh.shape[1]
    F = TorchMap("gru", ((W_ih, W_hh, b_ih, b_hh),), H, W_ih.shape[1], 1)

    def gates(h):
        gh = W_hh @ h + b_hh
        r = _sigmoid(b_ih[:H] + gh[:H])
        z = _sigmoid(b_ih[H:2 * H] + gh[H:2 * H])
        n = np.tanh(b_ih[2 * H:] + r * gh[2 * H:])
        return gh, r, z, n

    def F_np(h):
        _, r, z, n = gates(h)
        return (1.0 - z) * n + z * h

    def J_np(h):
        gh, r, z, n = gates(h)
        dr = (r * (1.0 - r))[:, None] * W_hh[:H]
        dz = (z * (1.0 - z))[:, None] * W_hh[H:2 * H]
        dn = (1.0 - n**2)[:, None] * (gh[2 * H:, None] * dr + r[:, None] * W_hh[2 * H:])
        return (1.0 - z)[:, None] * dn + (h - n)[:, None] * dz + np.diag(z) - np.eye(H)

    return F, F_np, J_np, data[f"s{seed}/starts"].astype(np.float64)


def test_the_numpy_jacobian_is_that_of_the_numpy_map():
    _, F_np, J_np, starts = _network(1)
    h, eps = starts[0], 1e-6
    fd = np.stack([(F_np(h + eps * e) - F_np(h - eps * e)) / (2 * eps)
                   for e in np.eye(h.size)], axis=1) - np.eye(h.size)
    np.testing.assert_allclose(J_np(h), fd, rtol=0, atol=1e-8)


@pytest.mark.parametrize(("seed", "n_stable"), [(1, 8), (3, 7)])
def test_default_finds_every_root_hybrd_reaches_and_calls_no_runaway_a_fixed_point(seed, n_stable):
    """``n_stable``: the stable roots scipy's multistart reaches (``benchmarks/fpf_real.py``)."""
    F, F_np, J_np, starts = _network(seed)
    fps = find_fixed_points(F, starts)
    fixed, other = fps.fixed, fps[~fps.converged]
    for x in fixed.x:  # each is a root of the independent NumPy map, to float64 rounding
        assert newton_root(F_np, J_np, x) is not None
    # the runaways are there, and none of them is a root Newton finishes from where it stopped
    assert np.max(np.abs(other.x)) > 5.0
    assert all(newton_root(F_np, J_np, x) is None for x in other.x)
    # no entry that is not fixed sits on a fixed point (it would have been merged into it)
    dist = np.linalg.norm(other.x[:, None] - fixed.x[None], axis=2)
    assert dist.min() > 1e-3
    # FixedPointFinder's outlier radius: 10 mean distances of the starts from their centroid
    centre = starts.mean(0)
    radius = 10.0 * np.linalg.norm(starts - centre, axis=1).mean()
    reached = 0
    for x0 in starts[::4]:
        sol = scipy.optimize.root(lambda x: F_np(x) - x, x0, jac=J_np, method="hybr", tol=1e-14)
        ok = np.linalg.norm(F_np(sol.x) - sol.x) < 1e-10
        if ok and np.linalg.norm(sol.x - centre) <= radius:
            reached += 1
            assert np.min(np.linalg.norm(fixed.x - sol.x, axis=1)) < 1e-8
    assert reached > 100
    # the stability of each: unstable multipliers of the NumPy Jacobian
    eye = np.eye(starts.shape[1])
    mu = [np.abs(np.linalg.eigvals(J_np(x) + eye)) for x in fixed.x]
    np.testing.assert_array_equal(fixed.n_unstable, [np.sum(m > 1.0 + 1e-3) for m in mu])
    assert np.sum(fixed.n_unstable == 0) == n_stable
