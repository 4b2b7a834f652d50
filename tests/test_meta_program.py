"""The meta program as plain NumPyro: every configuration simulates under ``Predictive`` with
y=None and fits with a plain SVI loop; counts default to a Poisson likelihood; the posterior
DataTree has the contract's dims."""

import functools
import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from numpyro import handlers
from numpyro.infer import SVI, Predictive, Trace_ELBO
from numpyro.optim import optax_to_numpyro

from neurodyn.data.likelihood import COUNTS_NOTE, default_likelihood, is_counts
from neurodyn.data.session import make_session
from neurodyn.families import meta as fam
from neurodyn.families.protocol import ADAPT, EMBEDDINGS, Program
from neurodyn.models import meta as models

TINY = dict(hidden=8, steps=3, batch_size=3)


def _sessions(neurons=(4, 6), trials=(3, 4), T=(7, 5), seed=0, counts=False):
    rng = np.random.default_rng(seed)
    out = []
    for i, (n, r, t) in enumerate(zip(neurons, trials, T, strict=True)):
        y = rng.poisson(3.0, (r, t, n)).astype(float) if counts else rng.normal(size=(r, t, n))
        out.append(make_session(y, name=f"rec{i}"))
    return out


def _batch(config, sessions):
    return jax.tree_util.tree_map(jnp.asarray, fam.stack_sessions(config, sessions))


def test_family_constants_and_build_returns_a_program():
    assert fam.NAME == "meta" and fam.CAPABILITIES == frozenset({ADAPT, EMBEDDINGS})
    config = fam.make_config("meta-dssm", _sessions(), options=TINY)
    program = fam.build(config)
    assert isinstance(program, Program) and isinstance(program.spec, models.Spec)
    # Priors are resolved once, when the program is built: the model gets distributions.
    priors = program.model.keywords["priors"]
    assert priors["initial"].mean.shape == () and priors["dynamics_weights"] is None
    params = inspect.signature(models.meta_model).parameters
    assert "forecast" not in params
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in params.values())


@pytest.mark.parametrize("model", fam.MODELS)
def test_every_configuration_simulates_with_y_none_and_fits_with_plain_svi(model):
    sessions = _sessions()
    config = fam.make_config(model, sessions, options=TINY)
    program = fam.build(config)
    batch = _batch(config, sessions)
    M, R, T, N = batch["y"].shape

    prior = Predictive(program.model, num_samples=2)
    draws = prior(jax.random.PRNGKey(0), {k: v for k, v in batch.items() if k != "y"})
    assert draws["y"].shape == (2, M, R, T, N) and np.isfinite(draws["y"]).all()
    assert draws["z"].shape == (2, M, R, T, config["latent_dim"])
    assert ("embedding" in draws) == config["embedding"]

    svi = SVI(program.model, program.guide, optax_to_numpyro(optax.adam(1e-3)), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(1), batch)
    for _ in range(3):
        state, loss = svi.update(state, batch)
        assert np.isfinite(float(loss))


def test_simulated_y_follows_the_likelihood_around_its_mean():
    """With y=None the model draws y ~ N(y_mean, obs_scale): standardised residuals have unit
    spread (obs_scale starts at 1), so the observation site really is sampled."""
    sessions = _sessions(neurons=(5,), trials=(40,), T=(12,))
    config = fam.make_config("shared-dynamics", sessions, options=TINY)
    program = fam.build(config)
    batch = _batch(config, sessions)
    draws = Predictive(program.model, num_samples=1)(jax.random.PRNGKey(2), dict(batch, y=None))
    resid = np.asarray(draws["y"] - draws["y_mean"])
    assert abs(resid.std() - 1.0) < 0.05
    assert abs(resid.mean()) < 0.05


def test_poisson_configuration_simulates_counts():
    sessions = _sessions(counts=True)
    config = fam.make_config("meta-dssm", sessions, options=TINY)
    program = fam.build(config)
    batch = _batch(config, sessions)
    draws = Predictive(program.model, num_samples=1)(jax.random.PRNGKey(3), dict(batch, y=None))
    y = np.asarray(draws["y"])
    assert (y >= 0).all() and np.allclose(y, np.round(y))


def test_counts_default_to_poisson_with_a_note(capsys):
    config = fam.make_config("meta-dssm", _sessions(counts=True), options=TINY)
    assert config["likelihood"] == "poisson"
    assert capsys.readouterr().err.strip() == COUNTS_NOTE


@pytest.mark.parametrize(
    ("counts", "options", "expected"),
    [(False, {}, "gaussian"), (True, {"likelihood": "gaussian"}, "gaussian")],
)
def test_no_note_when_gaussian_is_the_default_or_chosen(capsys, counts, options, expected):
    config = fam.make_config("meta-dssm", _sessions(counts=counts), options={**TINY, **options})
    assert config["likelihood"] == expected
    assert capsys.readouterr().err == ""


def test_default_likelihood_rule(capsys):
    assert is_counts(np.array([0.0, 2.0, 5.0]))
    assert not is_counts(np.array([0.0, 1.0, 1.0]))  # binary: not counts
    assert not is_counts(np.array([0.0, 2.5]))
    assert not is_counts(np.array([-1.0, 3.0]))
    assert not is_counts(np.array([]))
    assert default_likelihood(np.array([0.0, 3.0]), note=False) == "poisson"
    assert capsys.readouterr().err == ""


def test_bad_likelihood_is_refused_in_one_line():
    with pytest.raises(ValueError, match="unknown likelihood 'binomial'; choose gaussian or"):
        fam.make_config("meta-dssm", _sessions(), options={**TINY, "likelihood": "binomial"})


def test_posterior_has_the_contract_dims():
    sessions = _sessions(neurons=(4, 6), trials=(3, 4), T=(7, 5))
    config = fam.make_config("meta-dssm", sessions, options=TINY)
    params = fam.param_template(config)
    params = jax.tree_util.tree_map(lambda x: x + 0.1, params)  # positive scales
    tree = fam.posterior(config, params, sessions, num_samples=4, seed=0)
    post = tree["posterior"].dataset
    D, d_e = config["latent_dim"], config["embedding_dim"]
    assert post["x"].dims == ("chain", "draw", "trial", "time", "latent")
    assert post["x"].shape == (1, 4, 7, 7, D)
    assert post["observed"].dims == ("trial", "time") and post["observed"].dtype == bool
    # rec1 has 5 bins of 7: its trials are observed only there.
    assert post["observed"].values[:3].all()
    assert post["observed"].values[3:, :5].all() and not post["observed"].values[3:, 5:].any()
    assert post["embedding"].dims == ("chain", "draw", "recording", "embedding_dim")
    assert post["embedding"].shape == (1, 4, 2, d_e)
    assert post["embedding_mean"].dims == ("recording", "embedding_dim")
    assert list(post["recording"].values) == ["rec0", "rec1"]
    assert list(post["trial_recording"].values) == ["rec0"] * 3 + ["rec1"] * 4
    assert list(post["trial"].values) == list(range(7))
    assert post.attrs["draws_kept"] == 4
    assert np.isfinite(post["x"].values).all()


def test_posterior_of_a_model_without_embedding_and_of_an_unknown_recording():
    sessions = _sessions()
    config = fam.make_config("shared-dynamics", sessions, options=TINY)
    params = jax.tree_util.tree_map(lambda x: x + 0.1, fam.param_template(config))
    post = fam.posterior(config, params, sessions[:1], num_samples=2)["posterior"].dataset
    assert "embedding" not in post and post["x"].shape[:3] == (1, 2, 3)
    stranger = make_session(np.zeros((2, 5, 4)) + np.arange(4), name="stranger")
    with pytest.raises(ValueError, match="recording 'stranger' is not part of this run"):
        fam.posterior(config, params, [stranger], num_samples=2)


def test_forecast_rolls_the_fitted_dynamics_forward_from_the_last_latent():
    """Oracle: with the output layer's weights at zero the residual dynamics is a constant
    drift, f(z) = z + 0.1 b, so the k-step forecast is C (z0 + 0.1 k b) + d."""
    sessions = _sessions(neurons=(4,), trials=(3,), T=(7,))
    config = fam.make_config("shared-dynamics", sessions, options=TINY)
    program = fam.build(config)
    params = jax.tree_util.tree_map(jnp.asarray, fam.param_template(config))
    rng = np.random.default_rng(4)
    D, N = config["latent_dim"], 4
    b = jnp.asarray(rng.normal(size=D), jnp.float32)
    dyn = params["dynamics$params"]
    dyn = eqx.tree_at(lambda m: m.biases[2], dyn, b)
    C = jnp.asarray(rng.normal(size=(1, N, D)), jnp.float32)
    d = jnp.asarray(rng.normal(size=(1, N)), jnp.float32)
    params = {**params, "dynamics$params": dyn, "readout_weight": C, "readout_bias": d}
    z0 = jnp.asarray(rng.normal(size=(1, 3, D)), jnp.float32)
    priors = fam.priors_of(config)
    roll = functools.partial(
        fam.predict.forecast_mean, spec=program.spec, nets=program.nets, priors=priors
    )
    y = handlers.substitute(roll, data=params)(jnp.zeros(1, jnp.int32), None, z0, 4)
    steps = jnp.arange(1, 5)[:, None]
    z = z0[:, :, None, :] + 0.1 * steps * b  # (1, 3, 4, D)
    expected = jnp.einsum("mbtd,mnd->mbtn", z, C) + d[:, None, None, :]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
