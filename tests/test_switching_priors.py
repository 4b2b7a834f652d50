"""Swappable priors and guides of the switching family: the sticky transition prior and its
hyperprior, priors on network weights, user-written guides, and every configuration with every
guide."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.contrib.module import eqx_module

from neurodyn.cli import main
from neurodyn.data import make_session, save_session
from neurodyn.families import switching as family
from neurodyn.guides.switching import guide_globals
from neurodyn.inference import runs, svi, workflow
from neurodyn.inference.importance import joint_traces, trial_log_weights
from neurodyn.models.priors import PriorError
from neurodyn.models.switching import Spec, resolve_priors, weight_sites

USER_GUIDE = "tests.test_switching_priors:meanfield_guide"


def meanfield_guide(batch, *, num_trials, step=None, spec, modules, priors=None, **_):
    """A user-written guide: every global site delegated to ``guide_globals``, and a mean-field
    q(h | y) from the package's encoder (the same program as the built-in ``meanfield``)."""
    guide_globals(spec, modules, priors)
    if not spec.has_latent:
        return
    encoder = eqx_module("encoder", modules["encoder"])
    y, mask = batch["y"], batch["mask"]
    features = jax.vmap(encoder.features)(y, mask)
    loc, scale = jax.vmap(jax.vmap(encoder.per_bin))(features)
    with numpyro.plate("trials", num_trials, subsample_size=y.shape[0]):
        numpyro.sample("h", dist.Normal(loc, scale).to_event(2))


def tiny_session(trials=2, T=5, N=3, seed=1):
    rng = np.random.default_rng(seed)
    return make_session(rng.normal(size=(trials, T, N)).astype(np.float32))


def two_state_session(trials=6, T=60, N=3, p_stay=0.9, seed=0):
    """A 2-state HMM with overlapping Gaussian emissions (means -0.6 / +0.6, sd 1)."""
    rng = np.random.default_rng(seed)
    s = np.zeros((trials, T), int)
    s[:, 0] = rng.integers(2, size=trials)
    for t in range(1, T):
        s[:, t] = np.where(rng.random(trials) < p_stay, s[:, t - 1], 1 - s[:, t - 1])
    y = rng.normal(size=(trials, T, N)) + np.where(s[..., None] == 1, 0.6, -0.6)
    return make_session(y.astype(np.float32), states=s)


SPEC = Spec(model="srnn", num_states=3, latent_dim=2, num_neurons=4)


def model_and_guide_traces(config, batch):
    model, guide, _, _ = family.build(config)
    params = family.param_template(config)
    with handlers.seed(rng_seed=0):
        guide_trace = handlers.trace(handlers.substitute(guide, data=params)).get_trace(
            batch, num_trials=batch["y"].shape[0]
        )
        model_trace = handlers.trace(
            handlers.replay(handlers.substitute(model, data=params), trace=guide_trace)
        ).get_trace(batch, num_trials=batch["y"].shape[0])
    return model_trace, guide_trace


# ----------------------------------------------------------------------------------------------
# transition_stickiness
# ----------------------------------------------------------------------------------------------


def test_stickier_prior_gives_a_stickier_fit_with_fewer_switches():
    session = two_state_session()
    fits = {}
    for kappa in ("0", "1e4"):
        options = dict(steps=200, learning_rate=0.05, priors={"transition_stickiness": kappa})
        config = family.make_config("hmm", [session], options=options)
        params, result = family.fit(config, [session], progress=False)
        assert np.isfinite(result.losses).all()
        path = family.most_likely_states(config, params, [session])
        fits[kappa] = (np.diag(np.asarray(params["transition_map"])), np.sum(np.diff(path) != 0))
    (loose_diag, loose_switches), (sticky_diag, sticky_switches) = fits["0"], fits["1e4"]
    assert (sticky_diag > loose_diag).all(), fits
    assert sticky_diag.min() > 0.99  # the MAP under Dirichlet(1 + 1e4 e_k) rows
    assert sticky_switches < loose_switches, fits


def test_a_number_fixes_kappa_and_the_default_is_ten():
    K = SPEC.num_states
    default = resolve_priors(SPEC)
    assert isinstance(default["transition_stickiness"], dist.Delta)
    np.testing.assert_array_equal(default["transition"].concentration, 1 + 10 * np.eye(K))
    fixed = resolve_priors(SPEC, {"transition_stickiness": "1000"})
    np.testing.assert_array_equal(fixed["transition"].concentration, 1 + 1000 * np.eye(K))
    # a Python number works like its spec, and 0 is a flat Dirichlet
    flat = resolve_priors(SPEC, {"transition_stickiness": 0})
    np.testing.assert_array_equal(flat["transition"].concentration, np.ones((K, K)))


def test_a_hyperprior_makes_kappa_a_global_site_fitted_by_map():
    session = tiny_session(N=4)
    config = family.make_config(
        "slds",
        [session],
        options=dict(latent_dim=2, priors={"transition_stickiness": "Gamma(10, 1)"}),
    )
    model_trace, guide_trace = model_and_guide_traces(config, family.batch_of(session))
    site = model_trace["transition_stickiness"]
    kappa = site["value"]
    np.testing.assert_allclose(kappa, 10.0)  # the guide's MAP starts at the hyperprior's mean
    np.testing.assert_allclose(site["fn"].log_prob(kappa), dist.Gamma(10.0, 1.0).log_prob(kappa))
    assert isinstance(guide_trace["transition_stickiness"]["fn"], dist.Delta)
    rows = model_trace["transition"]["fn"].base_dist.concentration
    np.testing.assert_allclose(rows, 1 + kappa * np.eye(2))
    assert (
        "transition_stickiness"
        not in model_and_guide_traces(
            family.make_config("slds", [session], options=dict(latent_dim=2)),
            family.batch_of(session),
        )[0]
    )


@pytest.mark.parametrize(
    "priors, message",
    [
        ({"transition": "Dirichlet([1, 1, 1])", "transition_stickiness": "5"}, "not both"),
        ({"transition_stickiness": "-1"}, "must be >= 0"),
        ({"transition_stickiness": "Normal(0, 1)"}, "non-negative numbers"),
        ({"transition_stickiness": "Dirichlet([1, 1])"}, "scalar"),
        ({"obs_scale": "0.5"}, "must be a distribution"),
        ({"dynamics_weights": "HalfNormal(1)"}, "real line"),
        ({"dynamics_weights": "3"}, "must be a distribution"),
        ({"transition_stickiness": "1e999"}, "finite"),
    ],
)
def test_bad_prior_choices_are_named(priors, message):
    with pytest.raises(PriorError, match=message):
        resolve_priors(SPEC, priors)


def test_models_without_the_site_reject_it():
    with pytest.raises(PriorError, match="no prior site named 'transition_stickiness'"):
        resolve_priors(
            Spec(model="lds", num_states=1, latent_dim=2, num_neurons=4),
            {"transition_stickiness": "5"},
        )
    with pytest.raises(PriorError, match="no prior site named 'readout_weights'"):
        resolve_priors(
            Spec(model="hmm", num_states=2, latent_dim=0, num_neurons=4),
            {"readout_weights": "Normal(0, 1)"},
        )


# ----------------------------------------------------------------------------------------------
# Weight priors
# ----------------------------------------------------------------------------------------------


def test_weight_priors_make_sample_sites_covered_by_an_autonormal():
    session = tiny_session(N=4)
    priors = {"dynamics_weights": "Normal(0, 2)", "readout_weights": "Laplace(0, 1)"}
    config = family.make_config("srnn", [session], options=dict(latent_dim=2, priors=priors))
    program = family.build(config)
    sites = set(
        weight_sites(
            family.spec_of(config),
            program.nets,
            resolve_priors(family.spec_of(config), priors),
        )
    )
    # U (inputs) is empty without inputs and gets no site
    assert sites == {"dynamics.W", "dynamics.b", "readout.C", "readout.d"}
    model_trace, guide_trace = model_and_guide_traces(config, family.batch_of(session))
    model_sites = {k for k, v in model_trace.items() if v["type"] == "sample"}
    assert sites <= model_sites
    for name in sites:
        value = model_trace[name]["value"]
        prior = dist.Normal(0.0, 2.0) if name.startswith("dynamics") else dist.Laplace(0.0, 1.0)
        np.testing.assert_allclose(
            model_trace[name]["fn"].log_prob(value), prior.log_prob(value).sum(), rtol=1e-5
        )
    # the guide: MAP globals, the trajectory, and the AutoNormal over exactly the weight sites
    guide_sites = {k for k, v in guide_trace.items() if v["type"] == "sample"}
    assert guide_sites - sites == {"init_probs", "transition", "process_scale", "obs_scale", "h"}
    autonormal = {k.removesuffix("_auto_loc") for k in guide_trace if k.endswith("_auto_loc")}
    assert autonormal == sites
    # without weight priors the networks stay parameters
    plain, _ = model_and_guide_traces(
        family.make_config("srnn", [session], options=dict(latent_dim=2)), family.batch_of(session)
    )
    assert not any(k.startswith(("dynamics.", "readout.")) for k in plain)


def test_heldout_weights_score_local_sites_only():
    """Per-trial importance weights hold no global term: with one trial and one draw, the
    weight is log p(y, h | globals) - log q(h | y), not the full ELBO integrand."""
    session = tiny_session(trials=1, N=4)
    config = family.make_config(
        "slds", [session], options=dict(latent_dim=2, priors={"readout_weights": "Normal(0, 1)"})
    )
    problem = family.problem(config, family.param_template(config), [session])
    key = jax.random.PRNGKey(3)
    lw = trial_log_weights(
        problem.model,
        problem.guide,
        problem.params,
        problem.batch,
        key=key,
        num_samples=1,
        model_kwargs=problem.model_kwargs,
    )
    guide_trace, model_trace = joint_traces(
        problem.model,
        problem.guide,
        problem.params,
        problem.batch,
        problem.model_kwargs,
        jax.random.split(key, 1)[0],
    )

    def log_density(trace, names):
        return sum(float(jnp.sum(trace[n]["fn"].log_prob(trace[n]["value"]))) for n in names)

    local = log_density(model_trace, ["h", "y"]) - log_density(guide_trace, ["h"])
    np.testing.assert_allclose(lw[0, 0], local, rtol=1e-5)
    weights = log_density(model_trace, ["readout.C"]) - log_density(guide_trace, ["readout.C"])
    assert abs(weights) > 1.0  # the global terms are large: including them would show


# ----------------------------------------------------------------------------------------------
# User-written guides
# ----------------------------------------------------------------------------------------------


def test_a_user_guide_is_stored_by_path_and_fits_like_the_builtin_one():
    session = two_state_session(trials=3, T=12, N=4)
    options = dict(steps=4, latent_dim=2, encoder_hidden=8)
    config = family.make_config("slds", [session], options={**options, "guide": meanfield_guide})
    assert config["guide"] == USER_GUIDE and json.loads(json.dumps(config)) == config
    builtin = family.make_config("slds", [session], options={**options, "guide": "meanfield"})
    params, result = family.fit(config, [session], progress=False)
    _, reference = family.fit(builtin, [session], progress=False)
    np.testing.assert_allclose(result.losses, reference.losses, rtol=1e-5)
    metrics = family.evaluate(config, params, [session], horizons=(1,), num_samples=4)
    assert np.isfinite([metrics["recon_r2"], metrics["elbo_per_bin"]]).all()
    assert "state_accuracy" in metrics
    heldout, _ = workflow.heldout(family.problem(config, params, [session]), num_samples=4)
    assert np.isfinite(heldout["heldout_loglik_per_bin"])


@pytest.mark.parametrize(
    "guide, message",
    [
        ("nope", "unknown guide 'nope'"),
        ("no_such_module_xyz:fn", "cannot import guide"),
        ("tests.test_switching_priors:no_such_fn", "has no no_such_fn"),
        ("tests.test_switching_priors:USER_GUIDE", "not a function"),
        (lambda batch, **kw: None, "cannot be saved"),
    ],
)
def test_bad_user_guides_are_named(guide, message):
    with pytest.raises(ValueError, match=message):
        family.make_config("srnn", [tiny_session()], options=dict(guide=guide))


# ----------------------------------------------------------------------------------------------
# Every configuration with every guide
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, guide",
    [
        (model, guide)
        for model in ("srnn", "slds", "rslds", "lds", "rnn")
        for guide in ("meanfield", "delta", USER_GUIDE)
    ]
    + [("hmm", USER_GUIDE)],
)
def test_every_configuration_with_every_guide(model, guide):
    """A few SVI steps and the held-out likelihood on a tiny problem. With the default suite's
    ``dkf`` fit of every configuration (test_switching_family.py) this covers the cross product
    (hmm has no trajectory: its built-in guides are all the MAP globals)."""
    session = tiny_session()
    options = dict(guide=guide, latent_dim=2 if model != "hmm" else None, encoder_hidden=4)
    config = family.make_config(model, [session], options=options)
    model_fn, guide_fn, _, _ = family.build(config)
    result = svi.fit(model_fn, guide_fn, family.batch_of(session), num_steps=3, progress=False)
    assert np.isfinite(result.losses).all()
    heldout, _ = workflow.heldout(family.problem(config, result.params, [session]), num_samples=2)
    assert np.isfinite(heldout["heldout_loglik_per_bin"])


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def test_cli_fits_evaluates_and_reloads_with_new_priors_and_a_user_guide(tmp_path, capsys):
    data = tmp_path / "data.npz"
    save_session(data, two_state_session(trials=3, T=12, N=4))
    run = tmp_path / "run"
    status = main(
        [
            "fit",
            "srnn",
            str(data),
            "--out",
            str(run),
            "--steps",
            "3",
            "--latent-dim",
            "2",
            "--prior",
            "transition_stickiness=1000",
            "--prior",
            "dynamics_weights=Normal(0, 1)",
            "--guide",
            USER_GUIDE,
            "--quiet",
        ]
    )
    assert status == 0, capsys.readouterr().err
    config = runs.read_config(run)
    assert config["guide"] == USER_GUIDE
    assert config["priors"] == {"transition_stickiness": "1000", "dynamics_weights": "Normal(0, 1)"}
    with np.load(run / runs.PARAMS) as saved:
        assert "['dynamics.W_auto_loc']" in saved.files
    out = tmp_path / "metrics.json"
    status = main(
        ["evaluate", str(run), str(data), "--samples", "2", "--horizon", "1", "--json", str(out)]
    )
    assert status == 0, capsys.readouterr().err
    metrics = json.loads(out.read_text())
    assert np.isfinite([metrics["recon_r2"], metrics["heldout_loglik_per_bin"]]).all()


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--prior", "transition_stickiness=-5"], "must be >= 0"),
        (["--prior", "transition_stickiness=Normal(0, 1)"], "non-negative numbers"),
        (["--prior", "transition_stickiness=Gamma(1"], "cannot parse"),
        (
            ["--prior", "transition=Dirichlet([1, 1])", "--prior", "transition_stickiness=3"],
            "not both",
        ),
        (["--guide", "no_such_module_xyz:fn"], "cannot import guide"),
    ],
)
def test_cli_bad_priors_and_guides_are_one_line_errors(tmp_path, capsys, extra, needle):
    data = tmp_path / "data.npz"
    save_session(data, tiny_session())
    out = tmp_path / "run"
    status = main(["fit", "srnn", str(data), "--out", str(out), *extra])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert needle in err, err
    assert not out.exists()
