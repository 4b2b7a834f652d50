"""The switching family's contract: configs, fits of every configuration, run round trips."""

import json

import jax
import numpy as np
import pytest

from neurodyn.data import make_session
from neurodyn.families import switching as family
from neurodyn.inference import runs
from neurodyn.models.priors import PriorError


def small_session(poisson=False, trials=3, T=12, N=4, seed=0):
    rng = np.random.default_rng(seed)
    states = (np.arange(T) // 4 % 2)[None].repeat(trials, 0)
    y = rng.normal(size=(trials, T, N)) + 2.0 * states[..., None]
    if poisson:
        y = rng.poisson(np.exp(0.5 * y.clip(-2, 2)))
    return make_session(y.astype(np.float32), states=states)


@pytest.mark.parametrize("model", ["srnn", "slds", "rslds", "hmm", "lds", "rnn"])
def test_each_configuration_fits_without_nan(model, tmp_path):
    session = small_session()
    options = dict(steps=6, latent_dim=2 if model != "hmm" else None)
    config = family.make_config(model, [session], options=options)
    params, result = family.fit(config, [session], out_dir=tmp_path, progress=False)
    assert np.isfinite(result.losses).all()
    metrics = family.evaluate(config, params, [session], horizons=(1, 2), num_samples=2)
    assert set(metrics) >= {"recon_r2", "forecast_r2", "state_accuracy", "elbo_per_bin"}
    assert np.isfinite(metrics["elbo_per_bin"])


def test_poisson_fit_and_run_round_trip(tmp_path):
    session = small_session(poisson=True)
    config = family.make_config("srnn", [session], options=dict(steps=5, latent_dim=2))
    assert config["likelihood"] == "poisson"
    json.dumps(config)
    params, result = family.fit(config, [session], progress=False)
    assert np.isfinite(result.losses).all()
    runs.save_params(tmp_path / "params.npz", params)
    loaded = runs.load_params(tmp_path / "params.npz", family.param_template(config))
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(params)
    figures = family.report(config, loaded, [session], tmp_path / "fig")
    assert all(f.exists() and f.suffix == ".png" for f in figures)


def test_unknown_prior_site_raises():
    with pytest.raises(PriorError, match="no prior site named 'nope'"):
        family.make_config("srnn", [small_session()], options=dict(priors={"nope": "Normal(0, 1)"}))


def test_prior_override_is_used():
    config = family.make_config(
        "slds", [small_session()], options=dict(priors={"process_scale": "Gamma(2, 20)"})
    )
    assert config["priors"] == {"process_scale": "Gamma(2, 20)"}


@pytest.mark.parametrize(
    "model, options, message",
    [
        ("srnn", dict(embedding_dim=2), "does not apply to model srnn"),
        ("srnn", dict(rank=2), "does not apply to model srnn"),
        ("srnn", dict(guide="nope"), "unknown guide"),
        ("srnn", dict(likelihood="binomial"), "unknown likelihood"),
        ("srnn", dict(states=0), "positive integer"),
        ("lds", dict(states=3), "has 1 state"),
        ("hmm", dict(latent_dim=3), "does not apply to model hmm"),
        ("nope", {}, "unknown model"),
    ],
)
def test_bad_options_raise_value_error(model, options, message):
    with pytest.raises(ValueError, match=message):
        family.make_config(model, [small_session()], options=options)


def test_sessions_must_share_neuron_count():
    with pytest.raises(ValueError, match="neuron count"):
        family.make_config("srnn", [small_session(N=4), small_session(N=5)], options={})


def test_none_options_mean_defaults():
    config = family.make_config("srnn", [small_session()], options=dict(states=None, steps=None))
    assert config["spec"]["num_states"] == 2 and config["steps"] == family.DEFAULTS["steps"]
