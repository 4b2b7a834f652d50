"""posterior.nc: readable by xarray and ArviZ, accepted by arviz_stats.loo without reshaping."""

import arviz
import arviz_stats
import jax
import numpy as np
import xarray as xr

from neurodyn.inference.arviz_export import save, to_datatree
from tests.test_importance import Y, make_guide, model


def export(tmp_path, num_samples=200):
    tree = to_datatree(
        model,
        make_guide(1.3),
        {},
        {"y": Y},
        key=jax.random.PRNGKey(0),
        num_samples=num_samples,
        model_kwargs={"num_trials": len(Y)},
        losses=np.linspace(10, 1, 50),
    )
    save(tree, tmp_path / "posterior.nc")
    return tree


def test_groups_dims_and_round_trip(tmp_path):
    tree = export(tmp_path)
    for group in (
        "posterior",
        "posterior_predictive",
        "log_likelihood",
        "observed_data",
        "sample_stats",
    ):
        assert group in tree.children
    assert tree["log_likelihood"]["y"].dims == ("chain", "draw", "trial")
    assert tree["posterior"]["z"].shape == (1, 200, len(Y), 2)
    assert tree["posterior_predictive"]["y"].shape == (1, 200, *Y.shape)
    back = xr.open_datatree(tmp_path / "posterior.nc")
    np.testing.assert_allclose(
        back["log_likelihood"]["y"].values, tree["log_likelihood"]["y"].values
    )
    assert "posterior" in arviz.from_netcdf(tmp_path / "posterior.nc").children


def test_log_likelihood_is_the_observation_density_per_trial(tmp_path):
    from scipy.stats import norm

    from tests.test_importance import SIGMA, C

    tree = export(tmp_path, num_samples=5)
    z = tree["posterior"]["z"].values[0]  # (draws, trials, D)
    expected = norm(z @ C.T, SIGMA).logpdf(Y).sum(-1)
    np.testing.assert_allclose(tree["log_likelihood"]["y"].values[0], expected, rtol=1e-4)


def test_arviz_stats_accepts_it_unchanged(tmp_path):
    tree = export(tmp_path)
    loo = arviz_stats.loo(tree)
    assert np.isfinite(loo.elpd) and loo.pareto_k.shape == (len(Y),)
    approx = arviz_stats.loo_approximate_posterior(
        tree, tree["sample_stats"]["log_p"], tree["sample_stats"]["log_q"]
    )
    assert np.isfinite(approx.elpd)
    table = arviz_stats.compare({"a": tree, "b": export(tmp_path)})
    assert len(table) == 2


def test_predictive_and_observed_share_dimension_names(tmp_path):
    tree = export(tmp_path, num_samples=5)
    observed = tree["observed_data"]["y"].dims
    assert tree["posterior_predictive"]["y"].dims == ("chain", "draw", *observed)
