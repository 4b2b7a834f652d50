"""Held-out likelihoods with known precision: SMC against exact values, its Monte Carlo error
against the spread over seeds, and strict JSON from ``evaluate``."""

import itertools
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurodyn.cli import main
from neurodyn.data import make_session, save_session
from neurodyn.families import switching as family
from neurodyn.families.switching.predict import Fitted
from neurodyn.families.switching.smc import smc_log_marginals
from neurodyn.inference import runs, smc
from neurodyn.models.switching import log_transitions

from .conftest import strict_json


def kalman(y, mask, path, A, b, q, C, d, r):
    """log p(y | s = path) of a linear-Gaussian model, float64: h_1 ~ N(0, I), h_t = A[s_t]
    h_{t-1} + b[s_t] + N(0, diag q[s_t]^2), y_t = C^T h_t + d + N(0, diag r^2) on the neurons
    where ``mask`` is True. y, mask: [T, N]; A: [K, D, D]; b, q: [K, D]; C: [D, N]."""
    D = A.shape[-1]
    m, P, ll = np.zeros(D), np.eye(D), 0.0
    for t, k in enumerate(path):
        if t > 0:
            m, P = A[k] @ m + b[k], A[k] @ P @ A[k].T + np.diag(q[k] ** 2)
        o = mask[t]
        if not o.any():
            continue
        H = C[:, o].T  # [n, D]
        S = H @ P @ H.T + np.diag(r[o] ** 2)
        e = y[t, o] - H @ m - d[o]
        ll += -0.5 * (o.sum() * np.log(2 * np.pi) + np.linalg.slogdet(S)[1])
        ll += -0.5 * e @ np.linalg.solve(S, e)
        G = P @ H.T @ np.linalg.inv(S)
        m, P = m + G @ e, P - G @ H @ P
    return ll


def _set(module, **values):
    for k, v in values.items():
        module = eqx.tree_at(lambda m, k=k: getattr(m, k), module, jnp.asarray(v, jnp.float32))
    return module


def linear_run(model, y, mask, A, b, q, C, d, r, pi=None, trans=None, guide="dkf"):
    """(session, config, params) of a linear ``model`` run (lds or slds) with the given
    parameters."""
    session = make_session(y, mask)
    K, D = A.shape[0], A.shape[-1]
    options = dict(latent_dim=D, likelihood="gaussian", guide=guide)
    options.update({"states": K} if K > 1 else {})
    config = family.make_config(model, [session], options=options)
    params = family.param_template(config)
    params["dynamics$params"] = _set(params["dynamics$params"], W=A, b=b)
    params["readout$params"] = _set(params["readout$params"], C=C, d=d)
    params["process_scale_map"] = q.astype(np.float32)
    params["obs_scale_map"] = r.astype(np.float32)
    if K > 1:
        params["init_probs_map"] = pi.astype(np.float32)
        params["transition_map"] = trans.astype(np.float32)
    return session, config, params


def simulate(rng, B, T, A, b, q, C, d, r, pi=None, trans=None):
    """y [B, T, N] from the linear model (see :func:`kalman`), with a Markov state path
    (pi, trans) when K > 1; mask [B, T, N] with some neurons off and one bin fully off."""
    K, D = A.shape[0], A.shape[-1]
    y = np.zeros((B, T, C.shape[1]), np.float32)
    for i in range(B):
        k = rng.choice(K, p=pi) if K > 1 else 0
        h = rng.normal(size=D)
        for t in range(T):
            if t > 0:
                k = rng.choice(K, p=trans[k]) if K > 1 else 0
                h = A[k] @ h + b[k] + q[k] * rng.normal(size=D)
            y[i, t] = h @ C + d + r * rng.normal(size=C.shape[1])
    mask = rng.random(y.shape) > 0.2
    mask[0, 2] = False
    return y, mask


def test_lds_smc_matches_the_kalman_filter_with_missing_neurons():
    """K = 1: the fully adapted proposal, with masked neurons and a fully masked bin. It needs
    no guide: SMC applies to a run with a delta guide."""
    rng = np.random.default_rng(0)
    D, N = 2, 4
    A = np.array([[[0.95, -0.2], [0.2, 0.95]]])
    b, q = np.array([[0.1, -0.05]]), np.array([[0.3, 0.2]])
    C, d, r = rng.normal(size=(D, N)), rng.normal(size=N), np.full(N, 0.4)
    y, mask = simulate(rng, 3, 40, A, b, q, C, d, r)
    session, config, params = linear_run("lds", y, mask, A, b, q, C, d, r, guide="delta")
    assert family.supports_smc(config)
    pooled = family.heldout_smc(config, params, [session], num_particles=64, seed=0)[1]
    exact = np.array([kalman(y[i], mask[i], [0] * 40, A, b, q, C, d, r) for i in range(3)])
    assert np.all(np.abs(pooled - exact) < 0.5), (pooled, exact)


def test_slds_smc_matches_the_sum_over_state_paths_with_missing_neurons():
    """K = 2, T = 7: exact log p(y) = logsumexp over the 2^T paths of log p(path) + the
    path's Kalman log-likelihood; the particles' filtered states must be right for this."""
    rng = np.random.default_rng(1)
    T, D, N = 7, 2, 3
    A = np.stack([0.9 * np.eye(D), np.array([[0.6, -0.5], [0.5, 0.6]])])
    b = np.array([[0.4, 0.0], [-0.3, 0.2]])
    q = np.array([[0.3, 0.3], [0.5, 0.4]])
    C, d, r = rng.normal(size=(D, N)), np.zeros(N), np.full(N, 0.5)
    pi, trans = np.array([0.6, 0.4]), np.array([[0.8, 0.2], [0.3, 0.7]])
    y, mask = simulate(rng, 2, T, A, b, q, C, d, r, pi, trans)
    session, config, params = linear_run("slds", y, mask, A, b, q, C, d, r, pi, trans)
    exact = []
    for yi, mi in zip(y, mask, strict=True):
        terms = [
            np.log(pi[p[0]])
            + sum(np.log(trans[i, j]) for i, j in itertools.pairwise(p))
            + kalman(yi, mi, p, A, b, q, C, d, r)
            for p in itertools.product(range(2), repeat=T)
        ]
        exact.append(np.logaddexp.reduce(terms))
    pooled = family.heldout_smc(config, params, [session], num_particles=128, seed=0)[1]
    assert np.all(np.abs(pooled - np.array(exact)) < 0.5), (pooled, exact)
    # the guide + defensive prior mixture (the proposal for Poisson / MLP readouts) is valid too
    fitted = Fitted(config, params)
    est = smc_log_marginals(
        fitted, jnp.asarray(y), jnp.asarray(mask), 2048, jax.random.PRNGKey(0), 2, "mixture"
    )
    mixture = smc.pool_replicates(est, 2048, mask.any(-1).sum()).log_marginals
    assert np.all(np.abs(mixture - np.array(exact)) < 0.5), (mixture, exact)


def grid_log_marginal(g, y, mask, u, grid):
    """Exact log p(y) of a one-dimensional switching model with nonlinear dynamics and
    recurrent transitions driven by inputs, by the forward algorithm over (s_t, h_t) with h on
    a fine ``grid`` [G] (float64). y, mask: [T, N]; u: [T, U]."""
    x = jnp.asarray(grid[:, None], jnp.float32)
    q = np.asarray(g.process_scale, np.float64)[:, 0]
    C, d = np.asarray(g.readout.C, np.float64)[0], np.asarray(g.readout.d, np.float64)
    r = np.asarray(g.obs_scale, np.float64)
    step = grid[1] - grid[0]

    def emission(t):  # [G]
        e = -0.5 * (((y[t] - grid[:, None] * C - d) / r) ** 2 + np.log(2 * np.pi * r**2))
        return np.where(mask[t], e, 0.0).sum(-1)

    loc, scale = float(g.initial.loc), float(g.initial.scale)
    start = -0.5 * (((grid - loc) / scale) ** 2 + np.log(2 * np.pi * scale**2))
    log_alpha = np.asarray(g.log_init, np.float64)[:, None] + start + emission(0)  # [K, G]
    for t in range(1, len(y)):
        u_t = jnp.broadcast_to(jnp.asarray(u[t]), (len(grid), u.shape[-1]))
        f = np.asarray(jax.vmap(g.dynamics)(x, u_t), np.float64)[..., 0]  # [G, K]: f_k(x, u_t)
        log_trans = np.asarray(log_transitions(g, x, u_t), np.float64)  # [G, K, K]
        # log N(x'; f_k(x), q_k) + log dx: [G(x), K, G(x')]
        move = -0.5 * (((grid[None, None] - f[:, :, None]) / q[None, :, None]) ** 2)
        move = move - 0.5 * np.log(2 * np.pi * q**2)[None, :, None] + np.log(step)
        joint = log_alpha.T[:, :, None, None] + log_trans[:, :, :, None] + move[:, None]
        log_alpha = np.logaddexp.reduce(joint, axis=(0, 1)) + emission(t)  # [K, G]
    return np.logaddexp.reduce(log_alpha, axis=None) + np.log(step)


def test_srnn_smc_matches_the_forward_algorithm_on_a_grid():
    """srnn with D = 1 and one input (f_k(h, u) = h + tanh(W_k h + U_k u + b_k), transitions
    that depend on h and u): the lookahead proposal linearises both, and its estimate must
    still be exact in expectation; the one-step proposal too. Masked neurons and a fully
    masked bin."""
    rng = np.random.default_rng(4)
    B, T, N = 2, 6, 2
    y = rng.normal(size=(B, T, N)).astype(np.float32)
    u = rng.normal(size=(B, T, 1)).astype(np.float32)
    mask = rng.random(y.shape) > 0.2
    mask[1, 3] = False
    session = make_session(y, mask, inputs=u)
    options = dict(states=2, latent_dim=1, likelihood="gaussian")
    config = family.make_config("srnn", [session], options=options)
    params = family.param_template(config)
    params["dynamics$params"] = _set(
        params["dynamics$params"], W=[[[2.0]], [[-1.5]]], U=[[[0.8]], [[-0.5]]], b=[[0.5], [-0.3]]
    )
    params["readout$params"] = _set(params["readout$params"], C=[[1.0, -0.7]], d=[0.1, 0.0])
    params["process_scale_map"] = np.array([[0.3], [0.2]], np.float32)
    params["obs_scale_map"] = np.array([0.3, 0.4], np.float32)
    params["init_probs_map"] = np.array([0.5, 0.5], np.float32)
    params["transition_map"] = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    params["transition_weights"] = np.array([[2.0, -2.0], [1.0, -1.0]], np.float32)
    fitted = Fitted(config, params)
    grid = np.linspace(-8.0, 8.0, 1601)
    exact = np.array([grid_log_marginal(fitted.g, y[i], mask[i], u[i], grid) for i in range(B)])
    for proposal in ("lookahead", "optimal"):
        est = smc_log_marginals(
            fitted,
            jnp.asarray(y),
            jnp.asarray(mask),
            256,
            jax.random.PRNGKey(0),
            4,
            proposal,
            jnp.asarray(u),
        )
        pooled = smc.pool_replicates(est, 256, mask.any(-1).sum()).log_marginals
        assert np.all(np.abs(pooled - exact) < 0.5), (proposal, pooled, exact)


def test_lookahead_weights_are_equal_where_the_proposal_is_exact():
    """slds (linear, non-recurrent): the lookahead proposal is the exact
    p(h_1 | y_1, y_2), so every particle's first weight is log p(y_1, y_2) and the first ESS
    is P. A mistake in the pair weights, the linearisation or the next bin's normaliser would
    make them differ."""
    rng = np.random.default_rng(5)
    T, D, N = 5, 2, 3
    A = np.stack([0.9 * np.eye(D), np.array([[0.6, -0.5], [0.5, 0.6]])])
    b = np.array([[0.4, 0.0], [-0.3, 0.2]])
    q = np.array([[0.3, 0.3], [0.5, 0.4]])
    C, d, r = rng.normal(size=(D, N)), rng.normal(size=N), np.full(N, 0.1)
    pi, trans = np.array([0.6, 0.4]), np.array([[0.95, 0.05], [0.4, 0.6]])
    y, mask = simulate(rng, 2, T, A, b, q, C, d, r, pi, trans)
    _, config, params = linear_run("slds", y, mask, A, b, q, C, d, r, pi, trans)
    fitted = Fitted(config, params)
    for proposal, exact in (("lookahead", True), ("mixture", False)):
        est = smc_log_marginals(
            fitted, jnp.asarray(y), jnp.asarray(mask), 64, jax.random.PRNGKey(0), None, proposal
        )
        first = np.asarray(est.ess)[:, 0] / 64
        assert np.all(first > 1 - 1e-6) == exact, (proposal, 1 - first)  # float32 rounding


def test_mcse_matches_the_spread_over_seeds():
    """The MCSE reported from R replicates against the standard deviation of the pooled elpd
    over 12 independent seeds: the same within a factor of 2 (the spread of a standard
    deviation estimated from 12 draws is about 20%)."""
    rng = np.random.default_rng(2)
    T, D, N = 30, 2, 3
    A = np.stack([0.9 * np.eye(D), np.array([[0.6, -0.5], [0.5, 0.6]])])
    b = np.array([[0.4, 0.0], [-0.3, 0.2]])
    q = np.array([[0.3, 0.3], [0.5, 0.4]])
    C, d, r = rng.normal(size=(D, N)), np.zeros(N), np.full(N, 0.3)
    pi, trans = np.array([0.6, 0.4]), np.array([[0.8, 0.2], [0.3, 0.7]])
    y, mask = simulate(rng, 3, T, A, b, q, C, d, r, pi, trans)
    _, config, params = linear_run("slds", y, mask, A, b, q, C, d, r, pi, trans)
    seeds, R, P = 12, 8, 4
    est = smc_log_marginals(
        Fitted(config, params),
        jnp.asarray(y),
        jnp.asarray(mask),
        P,
        jax.random.PRNGKey(0),
        R * seeds,
    )
    elpds, mcses = [], []
    for s in range(seeds):
        part = jax.tree_util.tree_map(lambda x, s=s: x[s * R : (s + 1) * R], est)
        pooled = smc.pool_replicates(part, P, 3 * T)
        elpds.append(pooled.log_marginals.sum())
        mcses.append(pooled.metrics["elpd_mcse_smc"])
    spread, reported = np.std(elpds, ddof=1), np.sqrt(np.mean(np.square(mcses)))
    assert spread > 0.05, spread  # a spread worth measuring
    assert 0.5 < reported / spread < 2.0, (reported, spread)


def test_evaluate_json_is_strict_with_null_and_a_note(tmp_path, capsys):
    """Constant data: r^2 is undefined. ``evaluate`` writes and prints null with a note, never
    NaN; the held-out score is still there, with its error."""
    rng = np.random.default_rng(3)
    D, N = 2, 3
    A, b, q = np.eye(D)[None], np.zeros((1, D)), np.full((1, D), 0.2)
    C, d, r = rng.normal(size=(D, N)), np.zeros(N), np.full(N, 0.5)
    # each neuron constant (a different value each, so the recording itself is accepted)
    y = np.broadcast_to(np.arange(N, dtype=np.float32), (2, 12, N)).copy()
    session, config, params = linear_run("lds", y, None, A, b, q, C, d, r)
    run = tmp_path / "run"
    run.mkdir()
    runs.write_json(run / runs.CONFIG, config)
    runs.save_params(run / runs.PARAMS, params)
    save_session(tmp_path / "flat.npz", session)
    out = tmp_path / "m.json"
    args = ["evaluate", str(run), str(tmp_path / "flat.npz"), "--horizon", "2", "--json", str(out)]
    assert main(args + ["--samples", "4", "--particles", "16"]) == 0
    printed = strict_json(capsys.readouterr().out)
    metrics = strict_json(out.read_text())
    assert printed == metrics
    assert metrics["recon_r2"] is None and "variance" in metrics["recon_r2_note"]
    assert metrics["forecast_r2"]["2"] is None and "variance" in metrics["forecast_r2"]["2_note"]
    assert np.isfinite(metrics["heldout_loglik_per_bin"]) and metrics["heldout_loglik_mcse"] >= 0
    with pytest.raises(ValueError, match="non-strict"):
        strict_json('{"a": NaN}')


def test_write_json_turns_any_non_finite_number_into_null_with_a_note(tmp_path):
    path = tmp_path / "x.json"
    runs.write_json(path, {"a": float("nan"), "b": [1.0, np.inf], "c": np.float32(2), "c_note": 1})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    got = json.loads(text)
    assert got["a"] is None and "nan" in got["a_note"]
    assert got["b"] == [1.0, None] and "inf" in got["b_note"]
    assert got["c"] == 2.0 and got["c_note"] == 1  # a producer's own note is kept
