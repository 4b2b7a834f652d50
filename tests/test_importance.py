"""Importance-sampled per-trial log-likelihood against the exact linear-Gaussian value."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from scipy.stats import multivariate_normal

from neurodyn.inference.importance import heldout_metrics, summarize, trial_log_weights

D, N, SIGMA = 2, 5, 0.5
rng = np.random.default_rng(0)
C = rng.normal(size=(N, D)).astype(np.float32)
Y = (rng.normal(size=(6, D)) @ C.T + SIGMA * rng.normal(size=(6, N))).astype(np.float32)


def model(batch, *, num_trials):
    with numpyro.plate("trials", num_trials):
        z = numpyro.sample("z", dist.Normal(0, 1).expand([D]).to_event(1))
        numpyro.sample("y", dist.Normal(z @ C.T, SIGMA).to_event(1), obs=batch["y"])


def exact_posterior(y):
    precision = np.eye(D) + C.T @ C / SIGMA**2
    cov = np.linalg.inv(precision)
    return y @ (C @ cov) / SIGMA**2, cov


def make_guide(inflate):
    """The exact posterior with its scale multiplied by ``inflate`` (1 = exact)."""

    def guide(batch, *, num_trials):
        mean, cov = exact_posterior(np.asarray(batch["y"]))
        chol = np.linalg.cholesky(cov) * inflate
        with numpyro.plate("trials", num_trials):
            numpyro.sample("z", dist.MultivariateNormal(jnp.asarray(mean), scale_tril=chol))

    return guide


def exact_log_marginal():
    cov = C @ C.T + SIGMA**2 * np.eye(N)
    return multivariate_normal(np.zeros(N), cov).logpdf(Y)


def estimate(inflate, num_samples, seed=0):
    lw = trial_log_weights(
        model,
        make_guide(inflate),
        {},
        {"y": Y},
        key=jax.random.PRNGKey(seed),
        num_samples=num_samples,
        model_kwargs={"num_trials": len(Y)},
    )
    assert lw.shape == (num_samples, len(Y))
    return summarize(lw)


def test_exact_guide_gives_the_exact_marginal_with_zero_variance():
    est = estimate(1.0, 32)
    np.testing.assert_allclose(est.log_marginal, exact_log_marginal(), atol=1e-3)
    np.testing.assert_allclose(np.ptp(est.log_weights, axis=0), 0, atol=1e-3)


def test_wider_guide_is_unbiased_within_monte_carlo_error_and_tightens():
    truth = exact_log_marginal()
    errors = []
    for num_samples in (16, 1024):
        runs = np.stack([estimate(1.6, num_samples, seed).log_marginal for seed in range(4)])
        errors.append(np.abs(runs - truth).mean())
    assert errors[1] < 0.05
    assert errors[1] < errors[0]


def test_narrow_guide_is_flagged_by_khat():
    good, bad = estimate(1.3, 400), estimate(0.3, 400)
    assert good.khat.max() < 0.7 < bad.khat.max()
    metrics = heldout_metrics(bad, num_observed_bins=len(Y))
    assert metrics["psis_khat"]["share_above_0.7"] > 0


def test_psis_estimate_agrees_with_raw_when_weights_are_tame():
    est = estimate(1.3, 400)
    np.testing.assert_allclose(est.log_marginal_psis, est.log_marginal, atol=0.02)
