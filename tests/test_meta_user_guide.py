"""A user-written guide for the meta family: named by its import path, fitted, evaluated,
adapted and rebuilt from a run folder like the package's guides."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.module import eqx_module
from numpyro.distributions import constraints

from neurodyn.data.simulators.families import simulate_limit_cycles
from neurodyn.families import meta as fam
from neurodyn.guides.meta import readin

PATH = "tests.test_meta_user_guide:fixed_scale_guide"
TINY = dict(hidden=8, steps=6, batch_size=3)


def fixed_scale_guide(batch, *, num_trials=None, spec, nets, priors):
    """q(e_i) a free Gaussian per recording (named like the package's, ``embedding_loc``, so
    that adaptation gives a new recording its own); q(z) the package's encoder means with one
    learned scale per latent dimension (shared by every bin): a guide the package lacks."""
    M, B, T, N = batch["y"].shape
    x = readin(spec, batch)
    encoder = eqx_module("latent_encoder", nets.latent_encoder)
    with numpyro.plate("recordings", M, dim=-2):
        e = None
        if spec.embedding:
            shape = (spec.num_recordings, spec.embedding_dim)
            loc = numpyro.param("embedding_loc", jnp.zeros(shape))[batch["rec"]]
            scale = numpyro.param(
                "embedding_scale", jnp.full(shape, 0.1), constraint=constraints.positive
            )
            e = numpyro.sample(
                "embedding", dist.Normal(loc[:, None], scale[batch["rec"]][:, None]).to_event(1)
            )
            e = e[:, 0]
        with (
            numpyro.plate("trials", B, dim=-1),
            numpyro.handlers.scale(scale=batch["scale"][:, None]),
            numpyro.handlers.mask(mask=batch["trial_mask"]),
        ):
            z_loc, _ = encoder(x, e)
            z_scale = numpyro.param(
                "my_z_scale", jnp.full(spec.latent_dim, 0.1), constraint=constraints.positive
            )
            numpyro.sample("z", dist.Normal(z_loc, z_scale).to_event(2))


@pytest.fixture(scope="module")
def sessions():
    return simulate_limit_cycles(seed=0, num_recordings=3, num_trials=5, num_timesteps=12)


@pytest.mark.parametrize("guide", [PATH, fixed_scale_guide])
def test_user_guide_fits_evaluates_and_adapts(guide, sessions):
    config = fam.make_config("meta-dssm", sessions[:2], options=dict(TINY, guide=guide))
    assert config["guide"] == PATH  # a function is stored by its import path
    params, result = fam.fit(config, sessions[:2], progress=False)
    assert np.isfinite(result.losses).all()
    assert {"embedding_loc", "my_z_scale"} <= set(params)
    metrics = fam.evaluate(config, params, sessions[:2], horizons=(1,), num_samples=2)
    assert np.isfinite(metrics["recon_r2"]) and np.isfinite(metrics["forecast_r2"]["1"])
    assert not fam.supports_smc(config)
    with pytest.raises(ValueError, match="importance sampling"):
        fam.heldout_smc(config, params, sessions[:2])
    _, new_params, adapted = fam.adapt(config, params, sessions[2], trials=3, steps=5)
    assert np.isfinite(adapted.losses).all()
    # per-recording parameters named as in PER_RECORDING get a new row; the rest stay frozen
    assert new_params["embedding_loc"].shape[0] == 3
    np.testing.assert_array_equal(new_params["my_z_scale"], params["my_z_scale"])


def test_unimportable_user_guide_is_a_one_line_error(sessions):
    with pytest.raises(ValueError, match="cannot import guide"):
        fam.make_config("meta-dssm", sessions, options=dict(guide="no_such_module:guide"))
