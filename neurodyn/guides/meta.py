"""Guides of the meta-dynamical model: read-ins, the embedding guide and the latent guide.

    x_ijt      = tanh(Omega_i^T (m_ijt * y_ijt) + b_i)          per-recording read-in into R^P
    q(e_i)     = N(mu(pool_j h_ij), sigma(pool_j h_ij))          ``amortized``: GRU over each
                                                                trial, mean-pooled over trials
               = N(mu(pool_j h_ij) + delta_i, sigma(...))       amortized and *refined* (a
                                                                recording adapted with
                                                                ``refine_embedding``)
               = N(mu_i, sigma_i)                                ``free``: one Gaussian each
    q(z_ij | y_ij, e_i) = prod_t N(z_ijt | m_t, s_t)            DKF-style (Krishnan et al. 2017,
                                                                mean-field bidirectional RNN)
                                                                on [x_ijt, e_i]
    q(weights) = AutoNormal                                     only for weights with a prior
                                                                (``dynamics_weights``, ...)

Read-in weights are stored padded, (num_recordings, N_max, P); padded neurons have y = 0 and
mask = False, so they contribute nothing. The guides have the model's signature.

**User-written guides.** Any function ``fn(batch, *, num_trials=None, spec, nets, priors)``
(the signature of :func:`meta_guide`; ``priors`` holds the model's resolved priors), passed
as the ``guide`` option or named by its import path (``--guide mypkg.guides:fn``), can be the
guide. It must draw ``embedding``
(models with an embedding) inside ``numpyro.plate("recordings", M, dim=-2)`` with batch shape
(M, 1) and event shape (d_e,) from a distribution with a ``mean`` (predictions read it as
q(e)'s mean), then ``z`` (M, B, T, D) inside ``numpyro.plate("trials", B, dim=-1)`` with the
``batch["scale"]`` and ``batch["trial_mask"]`` handlers as :func:`meta_guide` applies them, and
call ``nets.weight_guide()`` when it is not None. :func:`readin`, :func:`embedding_posterior`
and the networks in ``nets`` (``embed_encoder``, ``latent_encoder``; bind them with
``eqx_module``) are free to use. Per-recording parameters must carry a name from
``neurodyn.models.meta.PER_RECORDING`` (e.g. ``embedding_loc``, indexed by ``batch["rec"]``):
few-shot adaptation fits a new row of those and freezes every other parameter. Held-out scores
of such runs use importance sampling (SMC needs the package's per-bin proposals).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.module import eqx_module
from numpyro.distributions import constraints

from ..inference import long_scan
from ..models.meta import Networks, Spec

GUIDES = ("amortized", "free")


def run_gru(cell: eqx.nn.GRUCell, xs, reverse=False):
    """Hidden states of ``cell`` over time: xs (K, T, P) -> (K, T, H)."""
    h0 = jnp.zeros((xs.shape[0], cell.hidden_size))

    def step(h, x):
        h = jax.vmap(cell)(x, h)
        return h, h

    _, hs = long_scan.scan(step, h0, jnp.swapaxes(xs, 0, 1), reverse=reverse)
    return jnp.swapaxes(hs, 0, 1)


class EmbeddingEncoder(eqx.Module):
    """Per-trial GRU summaries, mean-pooled over a recording's trials, to q(e_i) = N(loc, scale)."""

    gru: eqx.nn.GRUCell
    head: eqx.nn.MLP

    def __init__(self, readin_dim, hidden, embedding_dim, *, key):
        k1, k2 = jax.random.split(key)
        self.gru = eqx.nn.GRUCell(readin_dim, hidden, key=k1)
        self.head = eqx.nn.MLP(hidden, 2 * embedding_dim, hidden, 1, jax.nn.tanh, key=k2)

    def __call__(self, x, trial_mask):
        """x: (M, B, T, P) read-in features; trial_mask: (M, B) -> loc, scale (M, d_e)."""
        M, B, T, P = x.shape
        h = run_gru(self.gru, x.reshape(M * B, T, P))[:, -1].reshape(M, B, -1)
        w = trial_mask[..., None].astype(x.dtype)
        pooled = (w * h).sum(1) / jnp.maximum(w.sum(1), 1.0)
        loc, raw = jnp.split(jax.vmap(self.head)(pooled), 2, -1)
        return loc, jax.nn.softplus(raw - 2.0) + 1e-3


class LatentEncoder(eqx.Module):
    """Bidirectional GRU over [x_t, e] to the mean and scale of each z_t."""

    forward: eqx.nn.GRUCell
    backward: eqx.nn.GRUCell
    out: eqx.nn.Linear

    def __init__(self, readin_dim, hidden, embedding_dim, latent_dim, *, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.forward = eqx.nn.GRUCell(readin_dim + embedding_dim, hidden, key=k1)
        self.backward = eqx.nn.GRUCell(readin_dim + embedding_dim, hidden, key=k2)
        self.out = eqx.nn.Linear(2 * hidden, 2 * latent_dim, key=k3)

    def __call__(self, x, e=None):
        """x: (M, B, T, P); e: (M, d_e) or None -> loc, scale (M, B, T, D)."""
        M, B, T, P = x.shape
        if e is not None:
            x = jnp.concatenate([x, jnp.broadcast_to(e[:, None, None], (M, B, T, e.shape[-1]))], -1)
        flat = x.reshape(M * B, T, -1)
        h = jnp.concatenate([run_gru(self.forward, flat), run_gru(self.backward, flat, True)], -1)
        loc, raw = jnp.split(h @ self.out.weight.T + self.out.bias, 2, -1)
        D = loc.shape[-1]
        return loc.reshape(M, B, T, D), (jax.nn.softplus(raw - 2.0) + 1e-3).reshape(M, B, T, D)


def readin(spec: Spec, batch):
    """Per-recording read-in: (M, B, T, N) -> (M, B, T, P)."""
    rec = batch["rec"]
    shape = (spec.num_recordings, spec.max_neurons, spec.readin_dim)
    init_scale = 1.0 / jnp.sqrt(spec.max_neurons)
    W = numpyro.param("readin_weight", lambda key: jax.random.normal(key, shape) * init_scale)[rec]
    b = numpyro.param("readin_bias", jnp.zeros((spec.num_recordings, spec.readin_dim)))[rec]
    y = jnp.where(batch["mask"], batch["y"], 0.0)
    x = jnp.einsum("mbtn,mnp->mbtp", y, W) + b[:, None, None, :]
    return jnp.tanh(x)


def embedding_posterior(spec: Spec, nets: Networks, batch, x):
    """loc, scale (M, d_e) of q(e_i): amortized (pooled encoder) or free (one per recording).

    With ``spec.embedding_refined`` the amortized mean gets a per-recording shift
    ``embedding_shift`` (M, d_e): zero for recordings the encoder serves as it is, fitted by the
    ELBO for a recording adapted with ``refine_embedding`` (the encoder's guess, refined on that
    recording's trials while the encoder itself stays frozen).
    """
    if spec.guide == "free":
        shape = (spec.num_recordings, spec.embedding_dim)
        loc = numpyro.param("embedding_loc", jnp.zeros(shape))
        scale = numpyro.param(
            "embedding_scale", jnp.full(shape, 0.1), constraint=constraints.positive
        )
        return loc[batch["rec"]], scale[batch["rec"]]
    encoder = eqx_module("embed_encoder", nets.embed_encoder)
    loc, scale = encoder(x, batch["trial_mask"])
    if spec.embedding_refined:
        shape = (spec.num_recordings, spec.embedding_dim)
        loc = loc + numpyro.param("embedding_shift", jnp.zeros(shape))[batch["rec"]]
    return loc, scale


def meta_guide(batch, *, num_trials=None, spec: Spec, nets: Networks, priors: dict):
    """q(e) q(z | y, e) with the model's signature (``priors`` is not used), and
    q(weights) (``nets.weight_guide``, an AutoNormal) when the model's weights have a prior."""
    M, B, T, N = batch["y"].shape
    if nets.weight_guide is not None:
        nets.weight_guide()
    x = readin(spec, batch)
    latent_encoder = eqx_module("latent_encoder", nets.latent_encoder)
    with numpyro.plate("recordings", M, dim=-2):
        e = None
        if spec.embedding:
            loc, scale = embedding_posterior(spec, nets, batch, x)
            q_e = dist.Normal(loc[:, None], scale[:, None]).to_event(1)  # batch (M, 1)
            e = numpyro.sample("embedding", q_e)[:, 0]
        with (
            numpyro.plate("trials", B, dim=-1),
            numpyro.handlers.scale(scale=batch["scale"][:, None]),
            numpyro.handlers.mask(mask=batch["trial_mask"]),
        ):
            z_loc, z_scale = latent_encoder(x, e)
            numpyro.sample("z", dist.Normal(z_loc, z_scale).to_event(2))
