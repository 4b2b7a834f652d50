"""Held-out log p(y) of the meta family by SMC, against the Kalman filter where it is exact."""

import warnings

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from neurodyn.data.session import Session
from neurodyn.data.simulators.families import simulate_limit_cycles
from neurodyn.families import meta as fam
from neurodyn.inference import workflow
from tests.test_switching_model import kalman_log_lik_and_means


@pytest.fixture(scope="module")
def random_walk_run():
    """A fitted meta-dssm whose dynamics output layer is then zeroed: f(z) = z for every
    embedding (the adapter changes only the input and hidden layers), so the model is
    linear-Gaussian and the Kalman filter gives log p(y_ij) exactly. The held-out trials are
    drawn from that model (through each recording's fitted readout and noise)."""
    fit_on = simulate_limit_cycles(seed=0, num_recordings=2, num_trials=6, num_timesteps=15)
    config = fam.make_config("meta-dssm", fit_on, options=dict(hidden=8, steps=50))
    params, _ = fam.fit(config, fit_on, progress=False)
    params = dict(params)
    params["dynamics$params"] = eqx.tree_at(
        lambda m: (m.weights[2], m.biases[2]),
        params["dynamics$params"],
        replace_fn=jnp.zeros_like,
    )
    rng = np.random.default_rng(0)
    q = np.asarray(params["process_scale"], np.float64)
    A, b = np.eye(len(q)), np.zeros(len(q))
    sessions, exact = [], []
    for i, s in enumerate(fit_on):
        n, (R, T) = s.num_neurons, s.y.shape[:2]
        C = np.asarray(params["readout_weight"][i, :n], np.float64).T  # (D, N)
        d = np.asarray(params["readout_bias"][i, :n], np.float64)
        r = np.asarray(params["obs_scale"][i, :n], np.float64)
        z = np.cumsum(
            np.concatenate(
                [rng.normal(size=(R, 1, len(q))), q * rng.normal(size=(R, T - 1, len(q)))], 1
            ),
            1,
        )
        y = z @ C + d + r * rng.normal(size=(R, T, n))
        sessions.append(Session(y=y.astype(np.float32), mask=s.mask, name=s.name, dt=s.dt))
        exact += [kalman_log_lik_and_means(yi, A, b, q, C, d, r)[0] for yi in y]
    return config, params, sessions, np.array(exact)


def test_smc_matches_the_kalman_filter_and_tightens_with_particles(random_walk_run):
    config, params, sessions, exact = random_walk_run
    errors = {}
    for particles in (64, 2048):
        metrics, log_marginals, _ = fam.heldout_smc(
            config, params, sessions, num_particles=particles, num_replicates=1, seed=1
        )
        assert log_marginals.shape == exact.shape
        assert 0 < metrics["smc_min_ess_fraction"] <= 1
        errors[particles] = log_marginals - exact
    # nats per 15-bin trial: unbiased (errors of both signs) and within Monte Carlo error
    assert np.abs(errors[2048]).mean() < 0.15, errors[2048]
    assert abs(errors[2048].mean()) < 0.1, errors[2048]
    assert np.abs(errors[2048]).mean() < np.abs(errors[64]).mean(), errors
    bins = sum(int(s.bin_mask.sum()) for s in sessions)
    np.testing.assert_allclose(
        metrics["heldout_loglik_per_bin_smc"], log_marginals.sum() / bins, rtol=1e-6
    )


def test_smc_is_closer_to_exact_than_importance_sampling(random_walk_run):
    config, params, sessions, exact = random_walk_run
    _, smc, _ = fam.heldout_smc(
        config, params, sessions, num_particles=1024, num_replicates=1, seed=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problem = fam.problem(config, params, sessions)
        importance = workflow.heldout(problem, num_samples=1024, seed=0)[1]
    is_error = np.ravel(importance.log_marginal_psis) - exact
    assert np.abs(smc - exact).mean() < np.abs(is_error).mean()


@pytest.mark.parametrize(
    "model, guide, likelihood",
    [(m, "amortized", "gaussian") for m in fam.MODELS if m != "meta-dssm"]
    + [("meta-dssm", "free", "gaussian"), ("meta-dssm", "amortized", "poisson")],
)
def test_every_meta_configuration_supports_smc(model, guide, likelihood):
    """Every configuration, both guides, both likelihoods (Poisson: the guide's proposals)."""
    sessions = simulate_limit_cycles(
        seed=1, num_recordings=2, num_trials=3, num_timesteps=8, likelihood=likelihood
    )
    options = dict(hidden=4, steps=1, guide=guide, likelihood=likelihood)
    config = fam.make_config(model, sessions, options=options)
    assert fam.supports_smc(config)
    params, _ = fam.fit(config, sessions, progress=False)
    metrics, log_marginals, mcse = fam.heldout_smc(config, params, sessions, num_particles=8)
    assert np.isfinite(log_marginals).all() and log_marginals.shape == (6,)
    assert np.isfinite(metrics["heldout_loglik_per_bin_smc"])
    assert np.isfinite(mcse).all() and mcse.shape == (6,)
