"""Simulation-based calibration: the exact posterior of a linear Gaussian model passes, a guide
ten times too narrow (or wide) is flagged, and ``neurodyn check`` runs end to end."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from neurodyn.data import make_session
from neurodyn.families import switching
from neurodyn.inference import calibration

from .conftest import strict_json

A = 0.95 * np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
Q, SIGMA = 0.3, 0.5
C = np.array([[1.0, 0.5, -0.3, 0.8], [-0.4, 1.0, 0.6, 0.2]])  # [D, N]: y = h @ C + noise


@pytest.fixture(scope="module")
def lds_run():
    """An ``lds`` run (K = 1, D = 2, N = 4) with known parameters put into its params."""
    y = np.random.default_rng(0).normal(size=(2, 10, 4))
    config = switching.make_config(
        "lds", [make_session(y)], options=dict(latent_dim=2, likelihood="gaussian")
    )
    params = dict(switching.param_template(config))
    dyn = params["dynamics$params"]
    params["dynamics$params"] = eqx.tree_at(
        lambda m: (m.W, m.b), dyn, (jnp.asarray(A[None], jnp.float32), jnp.zeros((1, 2)))
    )
    params["readout$params"] = eqx.tree_at(
        lambda m: (m.C, m.d),
        params["readout$params"],
        (jnp.asarray(C, jnp.float32), jnp.zeros(4)),
    )
    params["process_scale_map"] = jnp.full((1, 2), Q, jnp.float32)
    params["obs_scale_map"] = jnp.full(4, SIGMA, jnp.float32)
    return config, params


def rts_smoother(y):
    """Exact posterior marginals of the LDS above (h_1 ~ N(0, I)): means and variances
    [B, T, D] by the Kalman filter and the Rauch-Tung-Striebel smoother. y: [B, T, N]."""
    B, T, _ = y.shape
    D = A.shape[0]
    R, Qm, H = SIGMA**2 * np.eye(C.shape[1]), Q**2 * np.eye(D), C.T  # y_t = H h_t + noise
    m_f, P_f = np.zeros((B, T, D)), np.zeros((T, D, D))
    m_p, P_p = np.zeros((B, D)), np.eye(D)
    preds = []
    for t in range(T):
        if t > 0:
            m_p, P_p = m_f[:, t - 1] @ A.T, A @ P_f[t - 1] @ A.T + Qm
        preds.append(P_p)
        S = H @ P_p @ H.T + R
        K = P_p @ H.T @ np.linalg.inv(S)
        m_f[:, t] = m_p + (y[:, t] - m_p @ H.T) @ K.T
        P_f[t] = (np.eye(D) - K @ H) @ P_p
    m_s, P_s = m_f.copy(), P_f.copy()
    for t in range(T - 2, -1, -1):
        G = P_f[t] @ A.T @ np.linalg.inv(preds[t + 1])
        m_s[:, t] = m_f[:, t] + (m_s[:, t + 1] - m_f[:, t] @ A.T) @ G.T
        P_s[t] = P_f[t] + G @ (P_s[t + 1] - preds[t + 1]) @ G.T
    var = np.broadcast_to(np.diagonal(P_s, axis1=1, axis2=2), m_s.shape)
    return m_s, var


@pytest.fixture(scope="module")
def exact(lds_run):
    """(true h [B, T, D], posterior means, posterior sds) on trials simulated from the run."""
    config, params = lds_run
    session = switching.simulate(config, params, num_trials=300, num_timesteps=20, seed=0)
    mean, var = rts_smoother(session.y.astype(np.float64))
    return session.latents.astype(np.float64), mean, np.sqrt(var)


def summary_of(exact, scale=1.0, shift=0.0, L=99):
    h, mean, sd = exact
    eps = np.random.default_rng(1).normal(size=(L,) + h.shape)
    draws = mean + shift * sd + scale * sd * eps
    return calibration.summarize(h, draws, every=5)


def test_the_exact_posterior_is_calibrated(exact):
    s = summary_of(exact)
    assert s["num_ranks"] == 300 * 4
    assert s["nominal_90"] == pytest.approx(0.9) and s["nominal_50"] == pytest.approx(0.5)
    assert abs(s["coverage_90"] - 0.9) < 0.03 and abs(s["coverage_50"] - 0.5) < 0.05
    for dim in s["per_dimension"]:
        assert abs(dim["coverage_90"] - 0.9) < 0.04
        assert dim["p_value"] > 0.01
    assert s["verdict"] == "calibrated"


def test_a_guide_ten_times_too_narrow_is_over_confident(exact):
    s = summary_of(exact, scale=0.1)
    assert s["coverage_90"] < 0.3 and s["coverage_50"] < 0.15
    assert all(dim["p_value"] < 1e-6 for dim in s["per_dimension"])
    assert s["verdict"] == "over-confident"


def test_a_guide_ten_times_too_wide_is_under_confident(exact):
    s = summary_of(exact, scale=10.0)
    assert s["coverage_90"] > 0.99 and s["verdict"] == "under-confident"


def test_a_shifted_guide_is_biased_or_worse(exact):
    s = summary_of(exact, shift=0.5)
    assert min(dim["p_value"] for dim in s["per_dimension"]) < 1e-6
    assert s["verdict"] != "calibrated"


def test_ranks_coverage_and_ties():
    draws = np.arange(99.0)[:, None] * np.ones((99, 3))
    r = calibration.ranks(np.array([-1.0, 49.5, 200.0]), draws)
    assert r.tolist() == [0, 50, 99]
    assert calibration.coverage(np.arange(100), 99, 0.9) == pytest.approx(0.9)
    tied = calibration.ranks(np.zeros(2000), np.zeros((9, 2000)), np.random.default_rng(0))
    counts = np.bincount(tied, minlength=10)
    assert counts.min() > 120  # ties spread over all 10 rank values (200 each on average)


def test_state_probabilities_that_match_the_truth_are_calibrated():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(400, 10))  # [B, T, K]
    states = (rng.uniform(size=(400, 10, 1)) > np.cumsum(probs, -1)).sum(-1)
    pit = calibration.state_pit(states, probs, rng)
    ranks = np.minimum((pit * 100).astype(int), 99)
    assert calibration.uniformity_test(ranks.ravel(), 99)["p_value"] > 0.01
    assert calibration.reliability(states, probs)["ece"] < 0.03
    sharp = probs**4 / (probs**4).sum(-1, keepdims=True)  # over-confident probabilities
    pit = calibration.state_pit(states, sharp, rng)
    ranks = np.minimum((pit * 100).astype(int), 99)
    assert calibration.uniformity_test(ranks.ravel(), 99)["p_value"] < 1e-6
    assert calibration.reliability(states, sharp)["ece"] > 0.1


# ---------------------------------------------------------------------------------------------
# neurodyn check on a tiny fit
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from neurodyn.cli import main

    root = tmp_path_factory.mktemp("check")
    data = str(root / "train.npz")
    args = ["--trials", "6", "--timesteps", "30", "--neurons", "4"]
    assert main(["simulate", "lorenz", "--out", data, *args]) == 0
    for model in ("srnn", "hmm"):
        out = str(root / model)
        assert main(["fit", model, data, "--out", out, "--steps", "20", "--quiet"]) == 0
    return root


def test_check_end_to_end(runs, capsys):
    from neurodyn.cli import main

    out, figures = runs / "check.json", runs / "figures"
    argv = ["check", str(runs / "srnn"), "--simulations", "10", "--draws", "19"]
    assert main([*argv, "--json", str(out), "--out", str(figures)]) == 0
    printed = capsys.readouterr().out
    assert "verdict:" in printed
    numbers = strict_json(out.read_text())
    assert numbers["num_trials"] == 10 and numbers["num_timesteps"] == 30  # T of the fitted data
    assert numbers["verdict"] in ("calibrated", "over-confident", "under-confident", "biased")
    assert len(numbers["per_dimension"]) == 3 and 0 <= numbers["coverage_90"] <= 1
    assert numbers["states"]["num_states"] == 2 and "ranks" not in numbers
    assert (figures / "rank_histograms.png").stat().st_size > 0


def test_check_refuses_hmm_in_one_line(runs, capsys):
    from neurodyn.cli import main

    assert main(["check", str(runs / "hmm"), "--simulations", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: check: hmm") and err.count("\n") == 1


def test_check_refuses_the_meta_family_in_one_line(monkeypatch, capsys, tmp_path):
    from neurodyn import api, cli
    from neurodyn.families import meta

    fake = api.Run(tmp_path, meta, {"model": "meta-dssm"}, {})
    monkeypatch.setattr(api, "load", lambda run: fake)
    assert cli.main(["check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "switching family" in err and err.count("\n") == 1
