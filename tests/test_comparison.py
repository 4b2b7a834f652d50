"""Held-out model comparison: the right model ranks first, the table has the k diagnostics."""

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


def test_compare_needs_two_models_on_the_same_trials():
    with pytest.raises(ValueError, match="at least two"):
        compare({"a": elpd(1.2)})
