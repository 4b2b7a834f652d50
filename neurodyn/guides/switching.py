"""Guides for the switching family, with the signature of ``switching_model``.

Every guide is ``global_guide`` (MAP: a ``Delta`` at a ``numpyro.param`` for each global site
with a prior: ``init_probs``, ``transition``, ``process_scale``, ``obs_scale``; the ELBO then
holds their log prior, so fitting is MAP for them) plus, when the model has a continuous latent,
an amortized guide for the whole trajectory ``h`` (trials, T, D), picked by name:

* ``dkf``: q(h | y) = prod_t N(h_t | mu(h_{t-1}, g_t), diag sigma(h_{t-1}, g_t)^2) with g the
  BiGRU features (structured, DKF / SNLDS style). :class:`AutoregressiveGaussian` draws it with a
  ``lax.scan`` (reparameterized) and scores a given h in parallel over bins.
* ``meanfield``: q(h | y) = prod_t N(h_t | mu(g_t), diag sigma(g_t)^2).
* ``delta``: a point estimate h = mu(g_t) (no entropy term: MAP over the trajectory).

``hmm`` has no local latent; its guide is the global part only.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.module import eqx_module
from numpyro.distributions import constraints

from ..models.switching import Spec, global_shapes

GUIDES = ("dkf", "meanfield", "delta")
_CONSTRAINTS = {
    "init_probs": constraints.simplex,
    "transition": constraints.simplex,
    "process_scale": constraints.positive,
    "obs_scale": constraints.positive,
}


def default_global_init(spec: Spec) -> dict:
    """Initial values of the MAP guide's parameters (sticky transitions, small noise)."""
    K = spec.num_states
    init = {
        "init_probs": jnp.full(K, 1.0 / K),
        "transition": 0.9 * jnp.eye(K) + 0.1 / K if K > 1 else jnp.ones((1, 1)),
        "process_scale": 0.1,
        "obs_scale": 0.5,
    }
    return {
        k: jnp.broadcast_to(jnp.asarray(init[k], jnp.float32), s)
        for k, s in global_shapes(spec).items()
    }


def global_guide(spec: Spec, init: Mapping | None = None) -> dict:
    """MAP guide of the global sites: ``Delta`` at ``numpyro.param(site + "_map")``."""
    init = {**default_global_init(spec), **(init or {})}
    values = {}
    for site, shape in global_shapes(spec).items():
        start = jnp.broadcast_to(jnp.asarray(init[site], jnp.float32), shape)
        value = numpyro.param(f"{site}_map", start, constraint=_CONSTRAINTS[site])
        values[site] = numpyro.sample(site, dist.Delta(value, event_dim=len(shape)))
    return values


class AutoregressiveGaussian(dist.Distribution):
    """DKF trajectory distribution, event shape (T, D), batch shape (B,).

    h_t = loc(h_{t-1}, g_t) + scale(h_{t-1}, g_t) * eps_t with h_0 = 0; ``sample`` runs the
    recursion (reparameterized), ``log_prob(h)`` evaluates all bins' Gaussians at once given h.
    """

    arg_constraints = {}
    reparametrized_params = []
    support = constraints.independent(constraints.real, 2)

    def __init__(self, combine, features, latent_dim: int):
        """combine: (h_prev [D], g_t [F]) -> (loc [D], scale [D]); features: [B, T, F]."""
        self.combine, self.features = combine, features
        B, T, _ = features.shape
        super().__init__(batch_shape=(B,), event_shape=(T, latent_dim))

    def sample(self, key, sample_shape=()):
        B, (T, D) = self.batch_shape[0], self.event_shape
        eps = jax.random.normal(key, tuple(sample_shape) + (B, T, D))

        def one(eps, g):  # eps [T, D], g [T, F]
            def step(h_prev, xs):
                loc, scale = self.combine(h_prev, xs[1])
                h = loc + scale * xs[0]
                return h, h

            return jax.lax.scan(step, jnp.zeros(D), (eps, g))[1]

        draw = jax.vmap(one)
        for _ in sample_shape:
            draw = jax.vmap(draw, in_axes=(0, None))
        return draw(eps, self.features)

    def log_prob(self, value):
        h_prev = jnp.concatenate([jnp.zeros_like(value[..., :1, :]), value[..., :-1, :]], -2)
        features = jnp.broadcast_to(self.features, value.shape[:-1] + self.features.shape[-1:])
        step = jax.vmap(self.combine)
        flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731
        loc, scale = step(flat(h_prev), flat(features))
        lp = dist.Normal(loc, scale).log_prob(flat(value)).sum(-1)
        return lp.reshape(value.shape[:-2] + (-1,)).sum(-1)


def trajectory_dist(kind: str, encoder, y, mask, latent_dim: int):
    """q(h | y) of guide ``kind`` for a batch. y, mask: [B, T, N]."""
    features = jax.vmap(encoder.features)(y, mask)  # [B, T, 2H]
    if kind == "dkf":
        return AutoregressiveGaussian(encoder.combine, features, latent_dim)
    loc, scale = jax.vmap(jax.vmap(encoder.per_bin))(features)
    if kind == "meanfield":
        return dist.Normal(loc, scale).to_event(2)
    if kind == "delta":
        return dist.Delta(loc, event_dim=2)
    raise ValueError(f"unknown guide {kind!r}; choose one of {', '.join(GUIDES)}")


def switching_guide(batch, *, num_trials, step=None, spec: Spec, modules, guide: str = "dkf", **_):
    """Guide ``guide`` (one of :data:`GUIDES`) for the switching model; same arguments.

    ``modules["encoder"]`` is the :class:`~neurodyn.guides.encoders.TrajectoryEncoder`;
    ``modules.get("global_init")`` optional initial values of the MAP parameters.
    """
    global_guide(spec, modules.get("global_init"))
    if not spec.has_latent:
        return
    encoder = eqx_module("encoder", modules["encoder"])
    y, mask = batch["y"], batch["mask"]
    with numpyro.plate("trials", num_trials, subsample_size=y.shape[0]):
        numpyro.sample("h", trajectory_dist(guide, encoder, y, mask, spec.latent_dim))
