"""Guides of the switching family: the DKF trajectory distribution and guide interchange."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurodyn.data import make_session
from neurodyn.families import switching as family
from neurodyn.guides.encoders import TrajectoryEncoder
from neurodyn.guides.switching import AutoregressiveGaussian, trajectory_dist


def test_dkf_parallel_log_prob_matches_sequential_sampling():
    enc = TrajectoryEncoder(3, 2, key=jax.random.PRNGKey(0), hidden_size=8)
    y = jax.random.normal(jax.random.PRNGKey(1), (2, 7, 3))
    mask = jnp.ones((2, 7, 3), bool).at[0, 3].set(False)
    q = trajectory_dist("dkf", enc, y, mask, 2)
    assert isinstance(q, AutoregressiveGaussian) and q.has_rsample
    eps_key = jax.random.PRNGKey(2)
    h = q.sample(eps_key)
    eps = jax.random.normal(eps_key, (2, 7, 2))
    # log q(h) = sum_t log N(eps_t) - sum_t log scale_t: rebuild the scales sequentially.
    features = jax.vmap(enc.features)(y, mask)
    log_det = 0.0
    for b in range(2):
        h_prev = jnp.zeros(2)
        for t in range(7):
            loc, scale = enc.combine(h_prev, features[b, t])
            np.testing.assert_allclose(h[b, t], loc + scale * eps[b, t], rtol=1e-5, atol=1e-5)
            log_det += jnp.log(scale).sum()
            h_prev = h[b, t]
    want = jax.scipy.stats.norm.logpdf(eps).sum() - log_det
    np.testing.assert_allclose(q.log_prob(h).sum(), want, rtol=1e-4)
    assert q.sample(eps_key, (3,)).shape == (3, 2, 7, 2)


def test_masked_entries_do_not_change_features():
    enc = TrajectoryEncoder(3, 2, key=jax.random.PRNGKey(0), hidden_size=8)
    y = jax.random.normal(jax.random.PRNGKey(1), (7, 3))
    mask = jnp.ones((7, 3), bool).at[2, 1].set(False)
    a = enc.features(y, mask)
    b = enc.features(y.at[2, 1].set(1e6), mask)
    np.testing.assert_allclose(a, b)


@pytest.mark.parametrize("guide", ["meanfield", "delta"])
def test_other_guides_fit_without_nan(guide):
    rng = np.random.default_rng(0)
    session = make_session(rng.normal(size=(3, 10, 4)).astype(np.float32))
    config = family.make_config("srnn", [session], options=dict(steps=5, guide=guide, latent_dim=2))
    params, result = family.fit(config, [session], progress=False)
    assert np.isfinite(result.losses).all()
    assert np.isfinite(family.evaluate(config, params, [session], horizons=())["recon_r2"])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["srnn", "slds", "rslds", "hmm", "lds", "rnn"])
@pytest.mark.parametrize(
    "guide", ["meanfield", "delta", "tests.test_switching_priors:meanfield_guide"]
)
def test_every_configuration_with_every_guide(model, guide):
    """The cross product with the family's fit and metrics (dkf is covered for every
    configuration by the default suite; test_switching_priors.py runs the same cross product
    for a few steps in the default suite)."""
    rng = np.random.default_rng(1)
    session = make_session(rng.normal(size=(3, 10, 4)).astype(np.float32))
    latent_dim = 2 if model != "hmm" else None
    options = dict(steps=4, guide=guide, latent_dim=latent_dim)
    config = family.make_config(model, [session], options=options)
    params, result = family.fit(config, [session], progress=False)
    assert np.isfinite(result.losses).all()
    assert np.isfinite(family.evaluate(config, params, [session], horizons=(1,))["recon_r2"])
