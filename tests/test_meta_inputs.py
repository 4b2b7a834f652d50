"""Known inputs in the meta-dynamical family: the dynamics f(z_{t-1}, u_t) in the model, its
samples, forecasts and SMC, the one-line errors, and (slow) a measured benefit."""

import dataclasses
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy

import neurodyn
from neurodyn.data.session import SessionError
from neurodyn.data.simulators.families import simulate_input_limit_cycles
from neurodyn.families import meta as fam
from neurodyn.families.meta.networks import build, fitted_networks
from neurodyn.families.meta.predict import rollout
from neurodyn.models.meta import MarkovGaussian, recording_dynamics


def _transition(z, u=None):
    """A nonlinear map whose input term makes an off-by-one bin visible."""
    return 0.9 * jnp.tanh(z) + (0.0 if u is None else 2.0 * u[..., :1])


def test_markov_gaussian_with_inputs_matches_sequential_sum():
    """The input of bin t drives the step into bin t, in log_prob and in sample."""
    u = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 6, 1))
    q = jnp.full((2, 1, 2), 0.3)
    d = MarkovGaussian(dist.Normal(0.0, 1.0), _transition, q, (2, 3, 6, 2), u)
    z = d.sample(jax.random.PRNGKey(0))
    want = jax.scipy.stats.norm.logpdf(z[:, :, 0]).sum(-1)
    for t in range(1, 6):
        mean = _transition(z[:, :, t - 1], u[:, :, t])
        want += jax.scipy.stats.norm.logpdf(z[:, :, t], mean, 0.3).sum(-1)
    np.testing.assert_allclose(d.log_prob(z), want, rtol=1e-5)
    # with (almost) no noise the samples follow the inputs of the bins they enter
    quiet = MarkovGaussian(dist.Normal(0.0, 1.0), _transition, q * 1e-6, (2, 3, 6, 2), u)
    z = quiet.sample(jax.random.PRNGKey(2))
    for t in range(1, 6):
        np.testing.assert_allclose(z[:, :, t], _transition(z[:, :, t - 1], u[:, :, t]), atol=1e-4)


def test_rollout_reads_the_inputs_of_the_forecast_bins():
    z0 = jnp.ones((2, 3, 2))
    u = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 4, 1))
    out = rollout(_transition, z0, 4, u)
    z = z0
    for k in range(4):
        z = _transition(z, u[:, :, k])
        np.testing.assert_allclose(out[:, :, k], z, rtol=1e-5)


def test_input_limit_cycles_kick_the_latent_at_the_pulse_bin():
    sims = simulate_input_limit_cycles(
        seed=3, num_recordings=2, num_trials=20, num_timesteps=50, process_noise=0.0
    )
    for s in sims:
        assert s.inputs.shape == (20, 50, 1)
        pulse = s.inputs[..., 0].argmax(1)
        assert ((s.inputs[..., 0] != 0).sum(1) == 1).all() and (pulse >= 10).all()
        rows = np.arange(20)
        jump = s.latents[rows, pulse] - s.latents[rows, pulse - 1]
        before = s.latents[rows, pulse - 1] - s.latents[rows, pulse - 2]
        # the kick (1.5, 0) on top of one bin of drift (the bin before shows the drift alone)
        np.testing.assert_allclose(jump - before, np.tile([1.5, 0.0], (20, 1)), atol=0.2)


def _fit_tiny(model, *, seed, num_trials, num_timesteps, num_neurons, **options):
    """(config, params, sessions) of ``model`` fitted briefly to two input-driven recordings."""
    sessions = simulate_input_limit_cycles(
        seed=seed,
        num_recordings=2,
        num_trials=num_trials,
        num_timesteps=num_timesteps,
        num_neurons=num_neurons,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = fam.make_config(model, sessions, options=options)
    params, _ = fam.fit(config, sessions, progress=False)
    return config, params, sessions


@pytest.fixture(scope="module")
def input_run():
    """A short shared-dynamics fit on input-driven limit cycles, its input weights then scaled
    up so that the inputs move the dynamics strongly (an off-by-one bin would show)."""
    config, params, sessions = _fit_tiny(
        "shared-dynamics", seed=0, num_trials=4, num_timesteps=6, num_neurons=6, hidden=8, steps=20
    )
    params = dict(params)
    D = config["latent_dim"]
    params["dynamics$params"] = eqx.tree_at(
        lambda m: (m.weights[0], m.weights[2]),
        params["dynamics$params"],
        (
            jnp.asarray(params["dynamics$params"].weights[0]).at[:, D:].multiply(5.0),  # inputs
            10 * jnp.asarray(params["dynamics$params"].weights[2]),  # the output layer
        ),
    )
    return config, params, sessions


def test_config_records_the_input_channels_and_says_so(input_run, capsys):
    config, _, sessions = input_run
    assert config["input_dim"] == 1 and fam.spec_of(config).input_dim == 1
    fam.make_config("shared-dynamics", sessions, options=dict(steps=1))
    assert "1 input channel(s) drive the shared-dynamics dynamics" in capsys.readouterr().err
    mixed = [sessions[0], dataclasses.replace(sessions[1], inputs=None)]
    with pytest.raises(SessionError, match="lack the 'inputs'"):
        fam.make_config("meta-dssm", mixed)


def test_predictions_need_the_fitted_input_channels(input_run):
    config, params, sessions = input_run
    stripped = [dataclasses.replace(s, inputs=None) for s in sessions]
    fitted_with_one = "has 0 input channel\\(s\\), but the run was fitted with 1"
    with pytest.raises(ValueError, match=fitted_with_one):
        fam.evaluate(config, params, stripped)
    wider = [dataclasses.replace(s, inputs=np.concatenate([s.inputs] * 2, -1)) for s in sessions]
    with pytest.raises(ValueError, match="has 2 input channel"):
        fam.heldout_smc(config, params, wider)


def test_inputs_change_the_fitted_model_s_predictions(input_run):
    """The same observations with the pulses moved give other forecasts: the inputs are used."""
    config, params, sessions = input_run
    moved = [dataclasses.replace(s, inputs=np.roll(s.inputs, 1, axis=1)) for s in sessions]
    a = fam.forecast_r2(config, params, sessions, horizons=(1, 2), num_samples=2)
    b = fam.forecast_r2(config, params, moved, horizons=(1, 2), num_samples=2)
    assert a["forecast_r2"] != b["forecast_r2"]


def _exact_two_bin_log_lik(config, params, session, rec):
    """log p(y_1, y_2) of each two-bin trial by quadrature over z_1 (D = 2): given z_1,
    y_2 is Gaussian, N(C f(z_1, u_2) + d, C Q C^T + R), so only z_1 is integrated."""
    spec = fam.spec_of(config)
    dynamics, _ = fitted_networks(build(config).nets, params)
    f = recording_dynamics(spec, dynamics, None, None, jnp.asarray([rec]))
    n = session.num_neurons
    C = np.asarray(params["readout_weight"][rec, :n], np.float64)  # (n, D)
    d = np.asarray(params["readout_bias"][rec, :n], np.float64)
    r2 = np.asarray(params["obs_scale"][rec, :n], np.float64) ** 2
    q2 = np.asarray(params["process_scale"], np.float64) ** 2
    grid = np.linspace(-6, 6, 601)
    Z = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)  # (G, 2)
    cell = (grid[1] - grid[0]) ** 2
    S = C @ np.diag(q2) @ C.T + np.diag(r2)
    out = []
    for y, u in zip(session.y, session.inputs, strict=True):
        u_next = jnp.broadcast_to(jnp.asarray(u[1], jnp.float32), (1, len(Z), 1))
        mean2 = np.asarray(f(jnp.asarray(Z[None], jnp.float32), u_next)[0], np.float64) @ C.T + d
        log_f = (
            scipy.stats.norm.logpdf(Z).sum(-1)
            + scipy.stats.norm.logpdf(y[0], Z @ C.T + d, np.sqrt(r2)).sum(-1)
            + scipy.stats.multivariate_normal(np.zeros(n), S).logpdf(y[1] - mean2)
        )
        out.append(scipy.special.logsumexp(log_f) + np.log(cell))
    return np.array(out)


def test_smc_with_inputs_matches_quadrature(input_run):
    """Two-bin trials, where log p(y) is a 2-D integral: SMC, which steps the dynamics itself,
    matches it; read one bin off (the input of bin 0 instead of bin 1) it does not."""
    config, params, sessions = input_run
    rng = np.random.default_rng(0)
    two_bins = [
        dataclasses.replace(
            s.select(slice(0, 3)),
            y=s.y[:3, :2],
            mask=s.mask[:3, :2],
            inputs=(2.0 * rng.choice([-1, 1], (3, 1, 1)) * [[[-1], [1]]]).astype(np.float32),
            latents=None,
        )
        for s in sessions
    ]
    exact = np.concatenate(
        [_exact_two_bin_log_lik(config, params, s, i) for i, s in enumerate(two_bins)]
    )
    _, smc, mcse = fam.heldout_smc(
        config, params, two_bins, num_particles=4096, num_replicates=4, seed=0
    )
    assert (np.abs(smc - exact) < 4 * mcse + 0.05).all(), (smc, exact, mcse)
    swapped = [dataclasses.replace(s, inputs=s.inputs[:, ::-1].copy()) for s in two_bins]
    _, off, _ = fam.heldout_smc(config, params, swapped, num_particles=4096, num_replicates=4)
    assert np.abs(off - exact).mean() > 1.0, (off, exact)


def test_meta_dssm_runs_with_inputs():
    """The embedding and hypernetwork path with inputs: fit, forecast and SMC run."""
    config, params, sessions = _fit_tiny(
        "meta-dssm", seed=1, num_trials=3, num_timesteps=8, num_neurons=5, hidden=4, steps=2
    )
    scores = fam.forecast_r2(config, params, sessions, horizons=(1,), num_samples=1)
    assert set(scores["forecast_r2"]) == {"1"}
    metrics, log_marginals, _ = fam.heldout_smc(config, params, sessions, num_particles=8)
    assert log_marginals.shape == (6,) and np.isfinite(log_marginals).all()


@pytest.mark.slow
def test_inputs_make_meta_dssm_forecast_the_kick(tmp_path):
    """Input-driven limit cycles, trials whose pulse falls in the forecast window: meta-dssm
    with the inputs forecasts them better and scores a higher held-out likelihood than without
    (measured in docs/results/inputs.md)."""
    sims = simulate_input_limit_cycles(
        seed=0, num_recordings=4, num_trials=48, num_timesteps=60, num_neurons=30
    )
    train, test = [], []
    for s in sims:
        late = s.inputs[..., 0].argmax(1) >= 50  # the kick comes after the forecast origin
        train.append(s.select(~late))
        test.append(s.select(late))
    scores = {}
    for name, strip in (("with", False), ("without", True)):
        tr, te = (
            [dataclasses.replace(s, inputs=None) if strip else s for s in part]
            for part in (train, test)
        )
        run = neurodyn.fit("meta-dssm", tr, out=tmp_path / name, progress=False)
        scores[name] = run.evaluate(te, num_samples=16, particles=256, replicates=4)
        fit = run.metrics["fit"]
        keys = ("recon_r2", "forecast_r2", "heldout_loglik_per_bin", "heldout_loglik_mcse")
        print(name, {k: fit.get(k) for k in ("converged", "steps", "seconds")})
        print(name, {k: scores[name][k] for k in keys})
    with_, without = scores["with"], scores["without"]
    for k in ("5", "10"):
        assert with_["forecast_r2"][k] > without["forecast_r2"][k] + 0.2
    gain = with_["heldout_loglik_per_bin"] - without["heldout_loglik_per_bin"]
    assert gain > 10 * (with_["heldout_loglik_mcse"] + without["heldout_loglik_mcse"])
