"""The meta-dynamical program: low-rank changes, the embedding-free special case, padding."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density

from neurodyn.data.session import make_session
from neurodyn.families import meta as fam
from neurodyn.models import hypernetwork as hn
from neurodyn.models.meta import PER_RECORDING, MarkovGaussian

TINY = dict(hidden=8, steps=5, batch_size=4)


def _sessions(neurons=(5, 8), trials=(3, 5), T=6, seed=0):
    rng = np.random.default_rng(seed)
    return [
        make_session(rng.normal(size=(r, T, n)), name=f"rec{i}")
        for i, (n, r) in enumerate(zip(neurons, trials, strict=True))
    ]


def _random_params(config, seed=0):
    """The template with every leaf replaced by random values (positive where needed)."""
    leaves, tree = jax.tree_util.tree_flatten(fam.param_template(config))
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    new = [0.5 * jax.random.normal(k, np.shape(x)) for k, x in zip(keys, leaves, strict=True)]
    params = jax.tree_util.tree_unflatten(tree, new)
    for name in ("obs_scale", "process_scale", "embedding_scale"):
        if name in params:
            params[name] = jnp.abs(params[name]) + 0.1
    return params


def _latents(config, batch, seed=1):
    """Values for z (M, B, T, D) and the embedding (M, 1, d_e)."""
    M, B, T, _ = batch["y"].shape
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    values = {"z": jax.random.normal(k1, (M, B, T, config["latent_dim"]))}
    if config["embedding"]:
        values["embedding"] = jax.random.normal(k2, (M, 1, config["embedding_dim"]))
    return values


def _log_joint(config, params, batch, values):
    model, _, _, _ = fam.build(config)
    batch = jax.tree_util.tree_map(jnp.asarray, batch)
    density = jax.jit(lambda p, b: log_density(model, (b,), {}, p)[0])
    return float(density({**params, **values}, batch))


def test_low_rank_change_equals_explicit_matrix():
    k = jax.random.split(jax.random.PRNGKey(0), 5)
    W, b = jax.random.normal(k[0], (7, 4)), jax.random.normal(k[1], (7,))
    U, V = jax.random.normal(k[2], (3, 7, 2)), jax.random.normal(k[3], (3, 4, 2))
    x = jax.random.normal(k[4], (3, 5, 4))
    explicit = hn.explicit_weight(W, (U, V))
    np.testing.assert_allclose(explicit, W + U @ jnp.swapaxes(V, 1, 2), rtol=1e-6)
    want = jnp.einsum("mki,moi->mko", x, explicit) + b
    np.testing.assert_allclose(hn.apply_layer(x, W, b, (U, V)), want, rtol=1e-5, atol=1e-5)


def test_dynamics_with_hypernetwork_equals_explicit_mlp():
    key = jax.random.PRNGKey(2)
    dyn = hn.DynamicsMLP(2, 6, key=key)
    hyper = hn.LowRankHypernet(1, dyn.layer_shapes(), rank=2, key=jax.random.PRNGKey(3))
    e = jnp.array([[0.5], [-1.0]])
    z = jax.random.normal(key, (2, 4, 2))
    deltas = {k: v for k, v in hyper(e).items() if k in ("input", "hidden")}
    got = dyn(z, deltas)
    for m in range(2):
        x = z[m]
        for i, name in enumerate(hn.LAYERS):
            W = dyn.weights[i]
            if name in deltas:
                U, V = deltas[name]
                W = W + U[m] @ V[m].T
            x = x @ W.T + dyn.biases[i]
            x = jnp.tanh(x) if name != "output" else x
        np.testing.assert_allclose(got[m], z[m] + 0.1 * x, rtol=1e-5, atol=1e-6)


def test_shared_dynamics_is_the_embedding_free_special_case():
    sessions = _sessions()
    meta_cfg = fam.make_config("meta-dssm", sessions, options=TINY)
    shared_cfg = fam.make_config("shared-dynamics", sessions, options=TINY)
    params = _random_params(meta_cfg)
    # A hypernetwork whose output is zero: every recording has the shared dynamics.
    params["adapter$params"] = jax.tree_util.tree_map(jnp.zeros_like, params["adapter$params"])
    shared_params = {k: v for k, v in params.items() if k in fam.param_template(shared_cfg)}
    batch = fam.stack_sessions(meta_cfg, sessions)
    values = _latents(meta_cfg, batch)
    e = values["embedding"]
    log_prior_e = float(jax.scipy.stats.norm.logpdf(e).sum())
    with_e = _log_joint(meta_cfg, params, batch, values)
    without = _log_joint(shared_cfg, shared_params, batch, {"z": values["z"]})
    np.testing.assert_allclose(with_e - log_prior_e, without, rtol=1e-6)


@pytest.mark.parametrize("model", ["meta-dssm", "single-session"])
def test_padding_neurons_and_trials_leaves_log_density_unchanged(model):
    sessions = _sessions(neurons=(5, 8), trials=(3, 5))
    config = fam.make_config(model, sessions, options=TINY)
    params = _random_params(config)
    batch = fam.stack_sessions(config, sessions)  # (2, 5, T, 8): padded trials and neurons
    values = _latents(config, batch)
    joint = _log_joint(config, params, batch, values)
    # Garbage in padded entries changes nothing.
    noisy = dict(batch, y=np.where(batch["mask"], batch["y"], 1e3).astype(np.float32))
    assert _log_joint(config, params, noisy, values) == pytest.approx(joint, rel=1e-6)
    # The sum over recordings fitted alone, each with its own unpadded sizes.
    total = 0.0
    for i, s in enumerate(sessions):
        alone = fam.make_config(model, [s], options=TINY)
        p = {}
        for name, v in params.items():
            if name in PER_RECORDING:
                v = v[i : i + 1]
                p[name] = v[:, : s.num_neurons] if name in fam.NEURON_AXIS else v
            else:
                p[name] = v
        b = fam.stack_sessions(alone, [s])
        vals = {"z": values["z"][i : i + 1, : s.num_trials]}
        if "embedding" in values:
            vals["embedding"] = values["embedding"][i : i + 1]
        total += _log_joint(alone, p, b, vals)
    assert joint == pytest.approx(total, rel=1e-5)


def test_markov_gaussian_log_prob_matches_sequential_sum():
    f = lambda z, u=None: 0.9 * z + 0.1  # noqa: E731
    q = jnp.full((2, 1, 3), 0.3)
    d = MarkovGaussian(dist.Normal(0.0, 1.0), f, q, (2, 4, 5, 3))
    z = d.sample(jax.random.PRNGKey(0))
    assert z.shape == (2, 4, 5, 3)
    want = jax.scipy.stats.norm.logpdf(z[:, :, 0]).sum(-1)
    for t in range(1, 5):
        want += jax.scipy.stats.norm.logpdf(z[:, :, t], f(z[:, :, t - 1]), 0.3).sum(-1)
    np.testing.assert_allclose(d.log_prob(z), want, rtol=1e-5)


def test_sampler_draws_per_recording_and_scales_to_full_data():
    sessions = _sessions(neurons=(5, 8), trials=(3, 7))
    config = fam.make_config("meta-dssm", sessions, options=TINY)
    data = jax.tree_util.tree_map(jnp.asarray, fam.stack_sessions(config, sessions))
    batch = jax.jit(fam.recording_sampler(4))(jax.random.PRNGKey(0), data)
    assert batch["y"].shape == (2, 4, 6, 8)
    np.testing.assert_array_equal(batch["trial_mask"], [[1, 1, 1, 0], [1, 1, 1, 1]])
    np.testing.assert_allclose(batch["scale"], [1.0, 7 / 4])
