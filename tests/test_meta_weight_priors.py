"""Weight priors in the meta family: the shared dynamics and the hypernetwork as random
variables with an AutoNormal guide of their own, combined with the amortized guide."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro import handlers

from neurodyn.data.simulators.families import simulate_limit_cycles
from neurodyn.families import meta as fam
from neurodyn.models.meta import PER_RECORDING
from neurodyn.models.weights import weight_sites

TINY = dict(hidden=8, steps=6, batch_size=3)
BOTH = {"dynamics_weights": "Normal(0, 2)", "hypernetwork_weights": "Laplace(0, 1)"}


@pytest.fixture(scope="module")
def sessions():
    return simulate_limit_cycles(seed=0, num_recordings=3, num_trials=5, num_timesteps=12)


def traces(config, sessions):
    model, guide, _, _ = fam.build(config)
    batch = jax.tree_util.tree_map(jnp.asarray, fam.stack_sessions(config, sessions))
    with handlers.seed(rng_seed=0):
        guide_trace = handlers.trace(guide).get_trace(batch)
        model_trace = handlers.trace(handlers.replay(model, guide_trace)).get_trace(batch)
    return model_trace, guide_trace


def test_weight_priors_make_sample_sites_covered_by_an_autonormal(sessions):
    config = fam.make_config("meta-dssm", sessions[:2], options=dict(TINY, priors=BOTH))
    _, _, _, nets = fam.build(config)
    modules = {"dynamics": nets.dynamics, "adapter": nets.adapter}
    priors = {"dynamics": dist.Normal(0.0, 2.0), "adapter": dist.Laplace(0.0, 1.0)}
    sites = set(weight_sites(modules, priors))
    assert any(s.startswith("dynamics.") for s in sites)
    assert any(s.startswith("adapter.") for s in sites)
    model_trace, guide_trace = traces(config, sessions[:2])
    for name in sites:
        site = model_trace[name]
        assert site["type"] == "sample" and not site["cond_indep_stack"]  # global, unplated
        prior = priors[name.split(".")[0]]
        np.testing.assert_allclose(
            site["fn"].log_prob(site["value"]), prior.log_prob(site["value"]).sum(), rtol=1e-5
        )
    guide_sites = {k for k, v in guide_trace.items() if v["type"] == "sample"}
    assert guide_sites - sites == {"embedding", "z"}
    assert {k.removesuffix("_auto_loc") for k in guide_trace if k.endswith("_auto_loc")} == sites
    # without weight priors the networks stay parameters
    plain, _ = traces(fam.make_config("meta-dssm", sessions[:2], options=TINY), sessions[:2])
    assert not any(k.startswith(("dynamics.", "adapter.")) for k in plain)


@pytest.mark.parametrize(
    "model, priors, message",
    [
        ("shared-dynamics", {"hypernetwork_weights": "Normal(0, 1)"}, "no prior site"),
        ("meta-dssm", {"dynamics_weights": "Gamma(2, 1)"}, "real line"),
        ("meta-dssm", {"dynamics_weights": "Dirichlet([1, 1])"}, "scalar"),
    ],
)
def test_bad_weight_priors_raise(model, priors, message, sessions):
    with pytest.raises(ValueError, match=message):
        fam.make_config(model, sessions[:2], options=dict(TINY, priors=priors))


def test_a_tighter_weight_prior_shrinks_the_fitted_weights(sessions):
    """The KL term pulls q(weights) toward the prior: after the same steps from the same start,
    Normal(0, 0.01) leaves the dynamics weights much closer to 0 than Normal(0, 10)."""
    norms = {}
    for scale in (0.01, 10.0):
        options = dict(TINY, steps=40, learning_rate=5e-2)
        options["priors"] = {"dynamics_weights": f"Normal(0, {scale})"}
        config = fam.make_config("shared-dynamics", sessions[:2], options=options)
        params, result = fam.fit(config, sessions[:2], progress=False)
        assert np.isfinite(result.losses).all()
        norms[scale] = np.sqrt(
            sum(
                float((np.asarray(v) ** 2).sum())
                for k, v in params.items()
                if k.startswith("dynamics.") and k.endswith("_auto_loc")
            )
        )
    assert norms[0.01] < 0.5 * norms[10.0]


def test_adapt_with_weight_priors_freezes_their_posterior(sessions):
    config = fam.make_config("meta-dssm", sessions[:2], options=dict(TINY, priors=BOTH))
    params, _ = fam.fit(config, sessions[:2], progress=False)
    new_config, new_params, result = fam.adapt(config, params, sessions[2], trials=3, steps=5)
    assert np.isfinite(result.losses).all()
    shared = [k for k in params if k not in PER_RECORDING]
    assert any(k.endswith("_auto_loc") for k in shared)
    for name in shared:
        for a, b in zip(
            jax.tree_util.tree_leaves(params[name]),
            jax.tree_util.tree_leaves(new_params[name]),
            strict=True,
        ):
            assert np.array_equal(np.asarray(a), np.asarray(b)), name
    metrics = fam.evaluate(new_config, new_params, [sessions[2]], horizons=(1,), num_samples=2)
    assert np.isfinite(metrics["recon_r2"])
