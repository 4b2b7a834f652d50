"""Guides for the switching family, with the signature of ``switching_model``.

Every guide is :func:`guide_globals` plus, when the model has a continuous latent, an amortized
guide for the whole trajectory ``h`` (trials, T, D). :func:`guide_globals` is

* :func:`global_guide`, MAP: a ``Delta`` at a ``numpyro.param`` (``site + "_map"``) for each
  global site with a prior: ``init_probs``, ``transition``, ``process_scale``, ``obs_scale``, and
  ``transition_stickiness`` when it has a hyperprior; the ELBO then holds their log prior, so
  fitting is MAP for them;
* with weight priors (``dynamics_weights``, ``readout_weights``), an ``AutoNormal`` over exactly
  the weight sites (:func:`weight_guide`; parameters ``"<site>_auto_loc"``,
  ``"<site>_auto_scale"``, e.g. ``"dynamics.W_auto_loc"``), started at the modules' initial
  weights with scale 0.01, so the weights get a Gaussian posterior rather than a point estimate.

The trajectory guide is picked by name (:data:`GUIDES`):

* ``dkf``: q(h | y) = prod_t N(h_t | mu(h_{t-1}, g_t), diag sigma(h_{t-1}, g_t)^2) with g the
  BiGRU features (structured, DKF / SNLDS style). :class:`AutoregressiveGaussian` draws it with a
  ``lax.scan`` (reparameterized) and scores a given h in parallel over bins.
* ``meanfield``: q(h | y) = prod_t N(h_t | mu(g_t), diag sigma(g_t)^2).
* ``delta``: a point estimate h = mu(g_t) (no entropy term: MAP over the trajectory).

``hmm`` has no local latent; its guide is the global part only.

**User-written guides.** Any function ``fn(batch, *, num_trials, spec, modules, priors)`` (the
signature of :func:`switching_guide` less ``guide``) can be the guide: pass it, or its
import path ``"module:function"``, as the ``guide`` option (``--guide mypkg.guides:fn``). It
must

* draw every global site of the model: call ``guide_globals(spec, modules, priors)`` to
  delegate them (predictions, ``evaluate`` and ``report``, read the MAP values from
  :func:`global_guide`'s ``"<site>_map"`` parameters, so keep that delegation);
* when ``spec.has_latent``, draw ``h`` of shape (B, T, D) inside
  ``numpyro.plate("trials", num_trials, subsample_size=B)`` from any distribution with a
  ``log_prob`` (reparameterized for low-variance gradients).

``modules["encoder"]`` is the package's :class:`~neurodyn.guides.encoders.TrajectoryEncoder`
(bind it with ``eqx_module("encoder", ...)``), free to use or ignore; ``batch`` holds ``y`` and
``mask`` [B, T, N]. Predictions draw ``h`` by running the guide itself (:class:`GuideTrajectories`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.contrib.module import eqx_module
from numpyro.distributions import constraints
from numpyro.infer.autoguide import AutoNormal

from ..inference import long_scan
from ..models.switching import (
    DEFAULT_STICKINESS,
    WEIGHT_PRIORS,
    Spec,
    global_shapes,
    resolve_priors,
)
from . import weights

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


def global_guide(spec: Spec, init: Mapping | None = None, priors: Mapping | None = None) -> dict:
    """MAP guide of the global sites: ``Delta`` at ``numpyro.param(site + "_map")``.

    ``priors`` (resolved or as given to the model) adds ``transition_stickiness`` when it has a
    hyperprior; its MAP starts at the hyperprior's mean (10 if infinite), within its support.
    """
    init = {**default_global_init(spec), **(init or {})}
    values = {}
    kappa = _stickiness_hyperprior(spec, priors)
    if kappa is not None:
        mean = jnp.asarray(kappa.mean, jnp.float32)
        start = jnp.where(jnp.isfinite(mean), mean, DEFAULT_STICKINESS)
        value = numpyro.param("transition_stickiness_map", start, constraint=kappa.support)
        values["transition_stickiness"] = numpyro.sample("transition_stickiness", dist.Delta(value))
    for site, shape in global_shapes(spec).items():
        start = jnp.broadcast_to(jnp.asarray(init[site], jnp.float32), shape)
        value = numpyro.param(f"{site}_map", start, constraint=_CONSTRAINTS[site])
        values[site] = numpyro.sample(site, dist.Delta(value, event_dim=len(shape)))
    return values


def _stickiness_hyperprior(spec: Spec, priors: Mapping | None):
    kappa = _prior(spec, priors, "transition_stickiness") if spec.num_states > 1 else None
    return None if isinstance(kappa, dist.Delta) else kappa


def _prior(spec: Spec, priors: Mapping | None, site: str):
    """The distribution of ``site`` in ``priors`` (user choices or resolved), or None."""
    value = (priors or {}).get(site)
    if value is None or isinstance(value, dist.Distribution):
        return value
    return resolve_priors(spec, {site: value})[site]


def weight_guide(spec: Spec, modules: Mapping, priors: Mapping | None) -> AutoNormal | None:
    """``AutoNormal`` over the weight sites of ``priors``' weight priors (None without any),
    started at the modules' current weights (:func:`neurodyn.guides.weights.weight_guide`)."""
    chosen = {m: _prior(spec, priors, site) for site, m in WEIGHT_PRIORS.items()}
    return weights.weight_guide(modules, chosen)


def guide_globals(spec: Spec, modules: Mapping, priors: Mapping | None = None) -> dict:
    """Every global site of the model: :func:`global_guide` (MAP) and, with weight priors, the
    weights' ``AutoNormal`` (``modules["weight_guide"]`` if the family built it, else a new one).
    Returns {site: value}."""
    values = global_guide(spec, modules.get("global_init"), priors)
    auto = modules.get("weight_guide")
    if auto is None:
        auto = weight_guide(spec, modules, priors)
    if auto is not None:
        values.update(auto())
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

            return long_scan.scan(step, jnp.zeros(D), (eps, g))[1]

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


def trajectory_dist(kind, encoder, y, mask, latent_dim: int):
    """q(h | y) of guide ``kind`` for a batch. y, mask: [B, T, N].

    ``kind`` is a name of :data:`GUIDES`, or a :class:`GuideTrajectories` (a fitted user guide).
    """
    if isinstance(kind, GuideTrajectories):
        return kind(y, mask, latent_dim)
    features = jax.vmap(encoder.features)(y, mask)  # [B, T, 2H]
    if kind == "dkf":
        return AutoregressiveGaussian(encoder.combine, features, latent_dim)
    loc, scale = jax.vmap(jax.vmap(encoder.per_bin))(features)
    if kind == "meanfield":
        return dist.Normal(loc, scale).to_event(2)
    if kind == "delta":
        return dist.Delta(loc, event_dim=2)
    raise ValueError(f"unknown guide {kind!r}; choose one of {', '.join(GUIDES)}")


def switching_guide(batch, *, num_trials, spec: Spec, modules, guide: str = "dkf", priors=None):
    """Guide ``guide`` (one of :data:`GUIDES`) for the switching model; same arguments.

    ``modules["encoder"]`` is the :class:`~neurodyn.guides.encoders.TrajectoryEncoder`;
    ``modules.get("global_init")`` optional initial values of the MAP parameters;
    ``modules.get("weight_guide")`` the weights' ``AutoNormal`` (:func:`weight_guide`).
    """
    guide_globals(spec, modules, priors)
    if not spec.has_latent:
        return
    encoder = eqx_module("encoder", modules["encoder"])
    y, mask = batch["y"], batch["mask"]
    with numpyro.plate("trials", num_trials, subsample_size=y.shape[0]):
        numpyro.sample("h", trajectory_dist(guide, encoder, y, mask, spec.latent_dim))


class GuideTrajectories:
    """How predictions see a fitted user-written guide: ``(y, mask, latent_dim) -> q(h | y)``
    whose draws run the bound ``guide(batch, num_trials=B)`` with the fitted ``params`` and
    read its ``h`` site. ``name`` is the guide's import path (as in the run's config)."""

    def __init__(self, name: str, guide, params):
        self.name, self.guide, self.params = name, guide, params

    def __call__(self, y, mask, latent_dim: int):
        return _GuideDraws(self.guide, self.params, y, mask, latent_dim)


class _GuideDraws(dist.Distribution):
    """Draws of ``h`` (event (T, D), batch (B,)) from a guide program; no ``log_prob``."""

    arg_constraints = {}
    support = constraints.independent(constraints.real, 2)

    def __init__(self, guide, params, y, mask, latent_dim: int):
        self.guide, self.params, self.batch = guide, params, {"y": y, "mask": mask}
        B, T, _ = y.shape
        super().__init__(batch_shape=(B,), event_shape=(T, latent_dim))

    def sample(self, key, sample_shape=()):
        guide = handlers.substitute(self.guide, data=self.params)
        B = self.batch_shape[0]

        def one(key):
            trace = handlers.trace(handlers.seed(guide, key)).get_trace(self.batch, num_trials=B)
            return trace["h"]["value"]

        keys = jax.random.split(key, max(1, math.prod(sample_shape)))
        draws = jax.vmap(one)(keys)
        return draws.reshape(tuple(sample_shape) + self.batch_shape + self.event_shape)
