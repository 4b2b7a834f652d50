"""The program of a config: its networks (seeded by ``config["seed"]``) and the model and guide
bound to them, as a :class:`neurodyn.families.protocol.Program`."""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax

from ...guides import load_guide
from ...guides import meta as guides
from ...guides.weights import weight_guide
from ...models import hypernetwork as hn
from ...models import meta as models
from ..protocol import Program
from .config import priors_of, spec_of


def build(config: dict) -> Program:
    """Program(model, guide, spec, nets) of a config: ``model(batch, *, num_trials=None)`` and
    ``guide(batch, *, num_trials=None)`` with the spec, networks and resolved priors bound."""
    spec = spec_of(config)
    priors = priors_of(config)
    nets = make_networks(spec, key=jax.random.PRNGKey(config["seed"]))
    modules = {"dynamics": nets.dynamics, "adapter": nets.adapter}
    nets = dataclasses.replace(
        nets, weight_guide=weight_guide(modules, models.weight_priors(priors))
    )
    kw = dict(spec=spec, nets=nets, priors=priors)
    guide = config["guide"]
    guide_fn = guides.meta_guide if guide in guides.GUIDES else load_guide(guide)
    return Program(
        functools.partial(models.meta_model, **kw), functools.partial(guide_fn, **kw), spec, nets
    )


def make_networks(spec: models.Spec, *, key) -> models.Networks:
    """All modules of model and guide for ``spec`` (deterministic given ``key``)."""
    k_dyn, k_ad, k_emb, k_lat = jax.random.split(key, 4)
    d_e = spec.embedding_dim if spec.embedding else 0
    dynamics = hn.DynamicsMLP(
        spec.latent_dim,
        spec.hidden,
        extra_input=(d_e if spec.embedding_input else 0) + spec.input_dim,
        residual=spec.residual,
        key=k_dyn,
    )
    shapes = {k: v for k, v in dynamics.layer_shapes().items() if k in spec.adapted_layers}
    adapter = None
    if spec.adapter == "lowrank":
        adapter = hn.LowRankHypernet(d_e, shapes, spec.rank, key=k_ad)
    elif spec.adapter == "linear":
        adapter = hn.LinearAdapter(d_e, shapes, key=k_ad)
    embed_encoder = None
    if spec.embedding and spec.guide != "free":  # user guides may use the encoder too
        embed_encoder = guides.EmbeddingEncoder(
            spec.readin_dim, spec.encoder_hidden, d_e, key=k_emb
        )
    latent_encoder = guides.LatentEncoder(
        spec.readin_dim, spec.encoder_hidden, d_e, spec.latent_dim, key=k_lat
    )
    return models.Networks(dynamics, adapter, embed_encoder, latent_encoder)


def fitted_networks(nets: models.Networks, params: dict):
    """The dynamics and adapter modules with the fitted weights (weights without a prior)."""
    dynamics = eqx.combine(params["dynamics$params"], nets.dynamics)
    adapter = eqx.combine(params["adapter$params"], nets.adapter) if nets.adapter else None
    return dynamics, adapter
