"""Held-out model comparison: the right model ranks first, the table has the k diagnostics."""

import warnings

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from neurodyn.inference.comparison import compare, heldout_elpd
from neurodyn.inference.importance import summarize, trial_log_weights
from tests.test_importance import SIGMA, C, D, Y, make_guide, model


def elpd(inflate, seed=0):
    lw = trial_log_weights(
        model,
        make_guide(inflate),
        {},
        {"y": Y},
        key=jax.random.PRNGKey(seed),
        num_samples=200,
        model_kwargs={"num_trials": len(Y)},
    )
    return heldout_elpd(summarize(lw))


def test_elpd_fields():
    e = elpd(1.2)
    assert e.n_data_points == len(Y) and e.elpd_i.shape == (len(Y),)
    assert np.isclose(e.elpd, float(e.elpd_i.sum()))


def prior_guide(batch, *, num_trials):
    with numpyro.plate("trials", num_trials):
        numpyro.sample("z", dist.Normal(0, 1).expand([D]).to_event(1))


def noisy_model(batch, *, num_trials):
    """The same model with four times the true noise: misspecified."""
    with numpyro.plate("trials", num_trials):
        z = numpyro.sample("z", dist.Normal(0, 1).expand([D]).to_event(1))
        numpyro.sample("y", dist.Normal(z @ C.T, 4 * SIGMA).to_event(1), obs=batch["y"])


def test_the_true_model_ranks_first():
    lw = trial_log_weights(
        noisy_model,
        prior_guide,
        {},
        {"y": Y},
        key=jax.random.PRNGKey(1),
        num_samples=2000,
        model_kwargs={"num_trials": len(Y)},
    )
    table = compare({"true": elpd(1.2), "misspecified": heldout_elpd(summarize(lw))})
    assert list(table.index) == ["true", "misspecified"]
    assert abs(table.loc["misspecified", "elpd_diff"]) > 2 * table.loc["misspecified", "dse"]
    for column in ("elpd", "se", "elpd_diff", "dse", "weight", "khat_max"):
        assert column in table.columns


def test_a_poor_proposal_is_flagged_by_k():
    # Same model, so both proposals estimate the same elpd; the narrow one is flagged by k.
    table = compare({"good": elpd(1.2), "bad": elpd(0.3)})
    assert table.loc["bad", "khat_max"] > 0.7 > table.loc["good", "khat_max"]


def test_stacking_weights_survive_whole_trial_likelihoods_of_thousands_of_nats():
    """Shifting every model's elpd of a trial by the same amount leaves the weights unchanged;
    at -5000 nats per trial a naive exp underflows, and the weights must not become NaN or a
    fallback."""
    from neurodyn.inference.comparison import smc_elpd

    rng = np.random.default_rng(0)
    base = {
        "a": rng.normal(-3.0, 1.0, 40),
        "b": rng.normal(-3.3, 1.0, 40),
        "c": rng.normal(-4.0, 1.0, 40),
    }
    weights = {}
    for shift in (0.0, -5000.0):
        elpds = {name: smc_elpd(v + shift, 64) for name, v in base.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            weights[shift] = compare(elpds)["weight"].sort_index()
    assert np.isfinite(weights[-5000.0]).all()
    np.testing.assert_allclose(weights[-5000.0], weights[0.0], atol=1e-6)
    assert weights[0.0].sum() == pytest.approx(1.0)
    assert weights[0.0]["a"] > weights[0.0]["c"]


def test_compare_needs_two_models_on_the_same_trials():
    with pytest.raises(ValueError, match="at least two"):
        compare({"a": elpd(1.2)})


# ---------------------------------------------------------------------------------------------
# VI-corrected PSIS-LOO (arviz_stats.loo_approximate_posterior) from the Python API.
# ---------------------------------------------------------------------------------------------

TAU, NOISE = 2.0, 1.0
Y_LOO = (0.7 + NOISE * np.random.default_rng(3).normal(size=(8, 3))).astype(np.float32)


def mean_model(batch, *, num_trials):
    """A global mean shared by every trial: mu ~ N(0, TAU^2), y_ij ~ N(mu, NOISE^2)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, TAU))
    with numpyro.plate("trials", num_trials):
        numpyro.sample("y", dist.Normal(mu, NOISE).expand([3]).to_event(1), obs=batch["y"])


def posterior(y):
    """Exact posterior N(mean, var) of mu given the trials y (n, 3)."""
    precision = 1 / TAU**2 + y.size / NOISE**2
    return y.sum() / NOISE**2 / precision, 1 / precision


def inflated_guide(batch, *, num_trials):
    """The exact posterior twice as wide: the correction by log p - log q has work to do."""
    mean, var = posterior(np.asarray(batch["y"]))
    numpyro.sample("mu", dist.Normal(float(mean), 2 * float(np.sqrt(var))))


def exact_loo():
    """Sum over trials of log p(y_i | y_-i): Gaussian predictive with covariance
    NOISE^2 I + var_-i 11^T."""
    from scipy.stats import multivariate_normal

    total = 0.0
    for i in range(len(Y_LOO)):
        mean, var = posterior(np.delete(Y_LOO, i, 0))
        cov = NOISE**2 * np.eye(3) + var
        total += multivariate_normal(np.full(3, mean), cov).logpdf(Y_LOO[i])
    return total


def loo_problem(guide):
    from neurodyn.inference.workflow import Problem

    return Problem(
        model=mean_model,
        guide=guide,
        params={},
        batch={"y": Y_LOO},
        model_kwargs={"num_trials": len(Y_LOO)},
        local_plates=("trials",),
        num_observed_bins=len(Y_LOO),
    )


def test_vi_corrected_loo_matches_the_exact_leave_one_out_predictive():
    from neurodyn.api.sweeps import approximate_loo

    loo = approximate_loo(loo_problem(inflated_guide), num_samples=4000, seed=0)
    assert loo.approx_posterior and loo.elpd_i.shape == (len(Y_LOO),)
    assert abs(loo.elpd - exact_loo()) < 0.05 * len(Y_LOO)
    assert np.all(np.asarray(loo.pareto_k) < 0.7)


def test_vi_corrected_loo_refuses_per_trial_latents_and_point_estimates():
    from neurodyn.api.sweeps import approximate_loo

    with pytest.raises(ValueError, match="per-trial latents z"):
        approximate_loo(loo_problem_with(model, make_guide(1.2), Y), num_samples=30)

    def map_guide(batch, *, num_trials):
        numpyro.sample("mu", dist.Delta(0.5))

    with pytest.raises(ValueError, match="MAP"):
        approximate_loo(loo_problem(map_guide), num_samples=30)


def loo_problem_with(model_fn, guide, y):
    return loo_problem(guide)._replace(
        model=model_fn,
        batch={"y": y},
        model_kwargs={"num_trials": len(y)},
        num_observed_bins=len(y),
    )


def test_smc_scores_get_mcse_and_ess_columns_and_no_k_columns():
    """SMC scores: no Pareto-k columns (no NaN ones), an mcse and an ESS column; a difference
    whose Monte Carlo error exceeds a quarter of its dse is flagged, a precise one is not."""
    from neurodyn.inference.comparison import HeldoutScore, imprecise_differences, smc_elpd

    rng = np.random.default_rng(1)
    a, b = rng.normal(-3.0, 1.0, 20), rng.normal(-3.5, 1.0, 20)

    def table(mcse):
        scores = {
            name: HeldoutScore(smc_elpd(v, 64), "smc", mcse, 0.3)
            for name, v in {"a": a, "b": b}.items()
        }
        return compare(scores)

    precise = table(0.01)
    assert "khat_max" not in precise and "khat_share_above_0.7" not in precise
    assert list(precise["estimator"]) == ["smc", "smc"]
    assert np.isfinite(precise[["elpd", "se", "dse", "mcse", "ess_fraction_min"]]).all().all()
    assert precise.loc["b", "mcse_diff"] == pytest.approx(np.hypot(0.01, 0.01))
    assert imprecise_differences(precise) == []
    noisy = table(10.0)
    assert imprecise_differences(noisy) == ["b"], noisy[["dse", "mcse_diff"]]
