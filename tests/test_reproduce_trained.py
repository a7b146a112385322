"""The trained-network reproductions (sine_wave, context_integration, attract_or_oscillate) at
``--quick`` size: each headline claim re-derived from the figure's ``NAME.npz`` with NumPy alone.

The checks below use only NumPy on the saved arrays: the map
:math:`F(x, u) = (1-\\alpha)x + \\alpha(\\tanh(x) W + b + u K_\\mathrm{in})`, its Jacobian
:math:`J = (1-\\alpha)I + \\alpha\\,W^\\top \\mathrm{diag}(1 - \\tanh^2 x)`, ``np.linalg.eig``
and trigonometric interpolation. They must reproduce the numbers the JSON states (the quick
networks are trained too briefly for every claim to *hold*; the full-size claims are in
``figures/`` and ``test_reproduce.py``'s slow tests).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctrnn_dyn import reproduce

# ------------------------------------------------------------------- NumPy-only helpers


def _load(result):
    with np.load(result.npz, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    payload = json.loads(result.json.read_text())
    return data, payload


def _net(data, prefix=""):
    return {k: np.asarray(data[prefix + k], np.float64) for k in (
        "recurrent_kernel", "recurrent_bias", "input_kernel", "output_kernel", "output_bias",
        "alpha")}


def _F(net, x, u):
    a = net["alpha"]
    return (1 - a) * x + a * (np.tanh(x) @ net["recurrent_kernel"] + net["recurrent_bias"]
                              + u @ net["input_kernel"])


def _J(net, x):
    a = net["alpha"]
    d = 1.0 - np.tanh(x) ** 2
    return (1 - a) * np.eye(len(x)) + a * (net["recurrent_kernel"].T * d[None, :])


def _run(tmp_path_factory, name):
    out = tmp_path_factory.mktemp(name)
    return reproduce.get(name)(out, quick=True, seed=0)


# ------------------------------------------------------------------------------ sine wave


@pytest.fixture(scope="module")
def sine_wave(tmp_path_factory):
    return _run(tmp_path_factory, "sine_wave")


def test_sine_wave_mechanism_count_from_npz(sine_wave):
    """Per level: the saved fixed point is one (NumPy map), its leading complex pair names the
    mechanism, and the count of levels with an unstable focus rotating within 15 % of ω is the
    JSON's headline number."""
    data, payload = _load(sine_wave)
    cfg, claims = payload["settings"], payload["claims"]
    net = _net(data)
    omega, found = data["omega"], data["found"]
    assert len(omega) == claims["n_levels"] == cfg["n_levels"]
    levels = data["fixed_point_level"]
    np.testing.assert_array_equal(levels, np.flatnonzero(found))
    X, U = data["fp/levels/x"], data["fp/levels/u"]
    assert X.shape == (len(levels), cfg["hidden"])
    np.testing.assert_allclose(U[:, 0], data["input_level"][levels])
    n_paper, mech = 0, []
    for x, u, i in zip(X, U, levels, strict=True):
        assert np.max(np.abs(_F(net, x, u) - x)) < 1e-6  # a fixed point
        mu = np.linalg.eigvals(_J(net, x))
        cplx = mu[np.abs(mu.imag) > 1e-9]
        lead = cplx[np.argmax(np.abs(cplx))]
        rot, mod = abs(np.angle(lead)), abs(lead)
        if mod > 1 + cfg["marginal_tol"]:
            m = ("unstable focus at ω" if abs(rot / omega[i] - 1) <= cfg["rotation_tolerance"]
                 else "unstable focus off ω")
        else:
            m = "marginal focus" if mod >= 1 - cfg["marginal_tol"] else "stable focus"
        mech.append(m)
        n_paper += m == "unstable focus at ω"
        lv = claims["levels"][i]
        assert lv["mechanism"] == m
        np.testing.assert_allclose([lv["pair_rotation_per_step"], lv["pair_modulus"]],
                                   [rot, mod], rtol=1e-6)
    assert n_paper == claims["n_levels_papers_mechanism"]
    assert list(data["mechanism"][levels]) == mech
    assert all(m == "no fixed point" for m in data["mechanism"][~found])
    key = f"all_{len(omega)}_levels_unstable_focus_rotating_within_15pct_of_target"
    assert payload["checks"][key] == (n_paper == len(omega))
    assert sine_wave.pdf.exists() and sine_wave.png.exists()


def test_sine_wave_mechanism_labels():
    from ctrnn_dyn.reproduce.sine_wave import leading_pair, mechanism_of, rotation_of

    kw = {"rotation_tolerance": 0.15, "marginal_tol": 1e-3}
    assert mechanism_of(0.21, 1.01, 0.2, **kw) == "unstable focus at ω"
    assert mechanism_of(0.31, 1.01, 0.2, **kw) == "unstable focus off ω"
    assert mechanism_of(0.2, 1.0005, 0.2, **kw) == "marginal focus"
    assert mechanism_of(0.2, 0.99, 0.2, **kw) == "stable focus"
    assert mechanism_of(np.nan, np.nan, 0.2, **kw) == "no complex pair"
    mu = np.array([0.98 * np.exp(0.3j), 0.98 * np.exp(-0.3j), 0.5])
    assert leading_pair(mu) == pytest.approx((0.3, 0.98))
    assert np.isnan(rotation_of(mu)[0])  # no *unstable* pair


# -------------------------------------------------------------------- context integration


@pytest.fixture(scope="module")
def context_integration(tmp_path_factory):
    return _run(tmp_path_factory, "context_integration")


def test_context_integration_slow_modes_and_selection_from_npz(context_integration):
    """Per context, from the saved slow points and parameters: the signed slow multiplier, its
    time constant against the stimulus, the next mode's speed ratio and the selection ratio
    (left eigenvector of the slow mode against the input columns) are the JSON's."""
    data, payload = _load(context_integration)
    net = _net(data)
    S = int(data["stim_steps"])
    for c, name in enumerate(("motion", "colour")):
        cc = payload["claims"]["contexts"][name]
        if f"fp/{name}/x" not in data:
            assert cc["n_points"] == 0
            continue
        X, U = data[f"fp/{name}/x"], data[f"fp/{name}/u"]
        assert len(X) == cc["n_points"]
        mu1s, taus, ratios, sel = [], [], [], []
        cue = np.zeros(4)
        cue[2 + c] = 1.0
        for x, u in zip(X, U, strict=True):
            np.testing.assert_array_equal(u, cue)  # the cue alone, no evidence
            assert 0.5 * np.sum((_F(net, x, u) - x) ** 2) <= payload["settings"]["slow_q_max"]
            J = _J(net, x)
            mu, R = np.linalg.eig(J)
            order = np.argsort(np.abs(mu - 1), kind="stable")
            k1 = order[0]
            k2 = order[1]
            if abs(mu[k1].imag) > 0 and np.isclose(mu[k2], np.conj(mu[k1]), rtol=0, atol=1e-12):
                k2 = order[2]
            mu1s.append(mu[k1].real - 1)
            taus.append(1 / abs(mu[k1] - 1))
            ratios.append(abs(mu[k2] - 1) / abs(mu[k1] - 1))
            lam, Lv = np.linalg.eig(J.T)
            v = Lv[:, np.argmin(np.abs(lam - mu[k1]))]
            b = net["alpha"] * net["input_kernel"][:2]  # (2, n): dF/du for motion, colour
            g = np.abs(b @ v) / abs(v @ R[:, k1])
            sel.append(g[c] / g[1 - c])
        taus = np.asarray(taus)
        np.testing.assert_allclose(np.median(mu1s), cc["slow_mu_minus_1_median"], rtol=1e-5,
                                   atol=1e-9)
        np.testing.assert_allclose(np.mean(np.asarray(mu1s) > 0),
                                   cc["fraction_repelling_mu_above_1"], atol=1.01 / len(X))
        np.testing.assert_allclose(np.mean(taus >= S),
                                   cc[f"fraction_time_constant_at_least_{S}_steps"],
                                   atol=1.01 / len(X))
        np.testing.assert_allclose(np.mean(np.asarray(ratios) >= 10),
                                   cc["fraction_next_mode_at_least_10x_faster"],
                                   atol=1.01 / len(X))
        np.testing.assert_allclose(np.median(sel), cc["selection_ratio_median"], rtol=1e-4)
        checks = payload["checks"]
        ok = cc["n_points"] >= 3
        assert checks[f"{name}_selection_ratio_cued_over_other_at_least_5"] == (
            ok and cc["selection_ratio_median"] >= 5)
        assert checks[f"{name}_slow_mode_time_constant_at_least_{S}_steps_at_most_points"] == (
            ok and cc[f"fraction_time_constant_at_least_{S}_steps"] > 0.5)


def test_slow_modes_skips_the_conjugate():
    from ctrnn_dyn.reproduce.context_integration import slow_modes

    mu = np.array([[0.5, 0.99 + 0.001j, 0.99 - 0.001j, 0.9], [1.002, 0.7, 0.95, 0.2]])
    mu1, mu2 = slow_modes(mu)
    np.testing.assert_allclose(mu1, [0.99 + 0.001j, 1.002])
    np.testing.assert_allclose(mu2, [0.9, 0.95])


# ------------------------------------------------------------------- attract or oscillate


@pytest.fixture(scope="module")
def attract_or_oscillate(tmp_path_factory):
    return _run(tmp_path_factory, "attract_or_oscillate")


def _trig_eval(nodes, theta):
    N = len(nodes)
    k = np.fft.fftfreq(N, 1.0 / N)
    return (np.exp(1j * np.outer(theta, k)) @ (np.fft.fft(nodes, axis=0) / N)).real


def test_attract_or_oscillate_claims_from_npz(attract_or_oscillate):
    """Every network is in the file and tallied; for each analysed one the stable fixed points,
    the attractor each post-stimulus state lands on (by running sum), and for an oscillating
    one the invariant circle's residual and the phase code are re-derived with NumPy."""
    data, payload = _load(attract_or_oscillate)
    cfg = payload["settings"]
    for a in cfg["alphas"]:
        c = payload["claims"][f"alpha_{a}"]
        assert c["n_networks"] == cfg["networks"][str(a)] == len(c["networks"])
        assert c["n_trained"] + c["n_memorised"] + c["n_not_trained"] == c["n_networks"]
        for j, n in enumerate(c["networks"]):
            name = f"alpha_{a}_net{j}"
            net = _net(data, f"net/{name}/")
            assert float(net["alpha"]) == pytest.approx(a, rel=1e-6)
            assert str(data[f"{name}/status"]) == n["status"]
            good = cfg["trained_accuracy"]
            assert n["status"] == ("trained" if n["accuracy"] > good else "memorised"
                                   if n["train_set_accuracy"] > good else "not trained")
            if f"{name}/running_sums" not in data:  # not analysed
                assert n["status"] != "trained" and not cfg["analyse_untrained"]
                continue
            m = net["recurrent_kernel"].shape[0]
            zero = np.zeros(net["input_kernel"].shape[0])
            stable = np.zeros((0, m))
            if f"fp/{name}/x" in data:
                X = data[f"fp/{name}/x"]
                assert all(np.max(np.abs(_F(net, x, zero) - x)) < 1e-6 for x in X)
                is_stable = [np.max(np.abs(np.linalg.eigvals(_J(net, x)))) < 1 for x in X]
                stable = X[np.asarray(is_stable, bool)]
            assert len(stable) == n["n_stable_fixed_points_zero_input"]
            sums = data[f"{name}/running_sums"]
            purity = []
            for k in range(3):
                if len(stable) == 0:  # nothing to land on; the states are not saved
                    assert f"{name}/relaxed_states" not in data
                    purity.append(0.0)
                    continue
                relaxed = data[f"{name}/relaxed_states"].astype(np.float64)
                d = np.linalg.norm(relaxed[:, k, None, :] - stable[None], axis=-1)
                idx = np.where(d.min(-1) <= cfg["attractor_radius"], d.argmin(-1), -1)
                hit = sum(np.bincount(sums[idx == s, k], minlength=3).max()
                          for s in range(len(stable)) if np.any(idx == s))
                purity.append(hit / len(relaxed))
            np.testing.assert_allclose(purity, n["attractor_of_running_sum_fraction_per_stimulus"],
                                       atol=1e-12)
            if f"{name}/circle_nodes" in data:
                K, rho = data[f"{name}/circle_nodes"], float(data[f"{name}/circle_rotation"])
                theta = 2 * np.pi * np.arange(len(K)) / len(K)
                res = np.max(np.abs(np.stack([_F(net, x, zero) for x in K])
                                    - _trig_eval(K, theta + rho)))
                assert n["circle"]["solved"] and res <= cfg["circle_tol"] * 1.01
            else:
                assert n["circle"] is None or not n["circle"].get("solved", False)
            if f"{name}/phase_after_stimulus" in data:
                dph = data[f"{name}/phase_after_stimulus"]
                acc = []
                for k in range(3):
                    cents = np.array([np.angle(np.mean(np.exp(1j * dph[sums[:, k] == s, k])))
                                      for s in range(3)])
                    dist = np.abs(np.angle(np.exp(1j * (dph[:, k, None] - cents[None]))))
                    acc.append(np.mean(dist.argmin(1) == sums[:, k]))
                np.testing.assert_allclose(
                    acc, n["phase_codes_running_sum_accuracy_per_stimulus"], atol=1e-12)
            else:
                assert n["phase_codes_running_sum_accuracy_per_stimulus"] is None


def test_invariant_circle_of_a_rotating_contracting_map():
    """A map that rotates by 0.3 rad per step and attracts onto the unit circle of the first
    two coordinates (the third decays): Newton finds that circle and that rotation."""
    from ctrnn_dyn.reproduce.attract_or_oscillate import circle_phase, solve_invariant_circle

    rho = 0.3
    c, s = np.cos(rho), np.sin(rho)

    def F(x, u):
        r2 = x[0] ** 2 + x[1] ** 2
        g = 1 + 0.3 * (1 - r2)
        return jnp.stack([g * (c * x[0] - s * x[1]), g * (s * x[0] + c * x[1]), 0.5 * x[2]])

    x = np.array([0.7, 0.1, 0.3])
    orbit = []
    for _ in range(300):
        x = np.asarray(F(jnp.asarray(x), None))
        orbit.append(x)
    orbit = np.asarray(orbit[200:])
    with jax.enable_x64(True):
        sol = solve_invariant_circle(F, orbit, np.zeros(1), rho * 1.01, n_points=(9, 15), tol=1e-11)
    assert sol["converged"] and sol["residual"] <= 1e-11
    assert sol["rotation"] == pytest.approx(rho, abs=1e-10)
    np.testing.assert_allclose(np.hypot(sol["nodes"][:, 0], sol["nodes"][:, 1]), 1.0, atol=1e-9)
    np.testing.assert_allclose(sol["nodes"][:, 2], 0.0, atol=1e-9)
    assert sol["midpoint_residual"] < 1e-9
    th, d = circle_phase(sol["nodes"], np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]))
    assert np.all(d < 1e-2)
    assert np.angle(np.exp(1j * (th[1] - th[0]))) == pytest.approx(np.pi / 2, abs=1e-2)


def test_coding_accuracy_nearest_centroid():
    from ctrnn_dyn.reproduce.attract_or_oscillate import coding_accuracy

    sums = np.array([0, 0, 1, 1, 2, 2])
    assert coding_accuracy(np.array([0.0, 0.1, 2.0, 2.1, -2.0, -2.1]), sums, circular=True) == 1
    # across the branch cut: -3.1 and 3.1 are neighbours on the circle
    assert coding_accuracy(np.array([3.1, -3.1, 1.0, 1.1, -1.0, -1.1]), sums, circular=True) == 1
    assert coding_accuracy(np.array([0.0, 0.1, 2.0, 0.05, -2.0, -2.1]), sums,
                           circular=True) == pytest.approx(5 / 6)
