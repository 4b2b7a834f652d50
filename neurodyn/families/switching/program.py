"""A config's NumPyro program (:func:`build`) and what the generic engine needs of a fitted run:
the batch a step sees, the parameter template and the workflow's :class:`Problem`."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from numpy import ndarray
from numpyro import handlers

from ...guides import load_guide
from ...guides.switching import GUIDES, GuideTrajectories, switching_guide, weight_guide
from ...inference.problem import Problem
from ...models.switching import WEIGHT_PRIORS, resolve_priors, switching_model
from ...models.weights import posterior_median_weights
from ..protocol import Program
from .config import fitted_session, spec_of
from .nets import nets


def build(config, init: Mapping | None = None) -> Program:
    """The config's :class:`~neurodyn.families.protocol.Program`: ``model(batch, *,
    num_trials)`` and ``guide(batch, *, num_trials)`` with the spec, networks and priors
    (resolved here, once) bound; ``nets`` the networks (warm-started from ``init``)."""
    spec = spec_of(config)
    modules = nets(spec, config["encoder_hidden"], config["seed"], init)
    priors = resolve_priors(spec, config["priors"])
    auto = weight_guide(spec, modules, priors) if spec.has_latent else None
    if auto is not None:
        modules["weight_guide"] = auto
    kw = dict(spec=spec, modules=modules, priors=priors)
    model = functools.partial(switching_model, **kw)
    kind = config["guide"]
    if isinstance(kind, GuideTrajectories):  # a prediction config (see for_prediction)
        kind = kind.name
    if kind in GUIDES:
        guide = functools.partial(switching_guide, **kw, guide=kind)
    else:
        guide = functools.partial(load_guide(kind), **kw)
    return Program(model, guide, spec, modules)


def batch_of(session, warm=None) -> dict:
    """The arrays a step sees: y [R, T, N], mask [R, T, N], u [R, T, U] when the session has
    inputs (and warm-start labels int [R, T],
    -1 on bins without any observed neuron, where the pull is off)."""
    batch = {"y": jnp.asarray(session.y), "mask": jnp.asarray(session.mask)}
    if session.inputs is not None:
        batch["u"] = jnp.asarray(session.inputs)
    if warm is not None:
        batch["warm"] = jnp.asarray(warm, jnp.int32)
    return batch


def param_template(config):
    """A params pytree with the structure and shapes of a fit of ``config``."""
    program = build(config)
    T, N = 3, program.spec.num_neurons
    batch = {"y": jnp.zeros((1, T, N)), "mask": jnp.ones((1, T, N), bool)}
    if program.spec.input_dim:
        batch["u"] = jnp.zeros((1, T, program.spec.input_dim))
    params = {}
    for fn in (program.guide, program.model):
        with handlers.trace() as tr, handlers.seed(rng_seed=0):
            with handlers.substitute(data=params):
                fn(batch, num_trials=1)
        params.update({k: v["value"] for k, v in tr.items() if v["type"] == "param"})
    return jax.device_get(params)


DIMS = {"y": ("trial", "time", "neuron"), "h": ("trial", "time", "latent")}


def problem(config, params, sessions, *, max_values: int | None = None) -> Problem:
    """The fitted model and guide on ``sessions``, for the workflow (held-out likelihood, ArviZ
    export, comparison): every trial counts once.

    ``max_values`` (None = no limit) keeps only the first trials, as many as fit
    trials * T * N <= max_values (the run folder's ``posterior.nc`` uses it to bound its size).
    """
    session = fitted_session(config, sessions)
    if max_values is not None:
        per_trial = session.num_timesteps * session.num_neurons
        keep = max(1, max_values // per_trial)
        if keep < session.num_trials:
            session = session.select(slice(0, keep))
    program = build(config)
    return Problem(
        model=program.model,
        guide=program.guide,
        params=jax.tree_util.tree_map(jnp.asarray, params),
        batch=batch_of(session),
        model_kwargs={"num_trials": session.num_trials},
        local_plates=("trials",),
        num_observed_bins=int(session.bin_mask.sum()),
        dims=DIMS,
    )


def for_prediction(config, params) -> tuple[dict, dict[str, ndarray]]:
    """(config, params) as the prediction code reads them: weights with a prior at their
    posterior median (the AutoNormal's loc; their priors live on the real line), and a
    user-written guide's trajectory draws as :class:`GuideTrajectories`. Runs with neither are
    returned as they are."""
    weights = [site for site in WEIGHT_PRIORS if site in config["priors"]]
    user_guide = config["guide"] not in GUIDES
    if not weights and not user_guide:
        return config, params
    params = dict(jax.tree_util.tree_map(jnp.asarray, params))
    predict = {**config, "priors": {k: v for k, v in config["priors"].items() if k not in weights}}
    if user_guide:
        predict["guide"] = GuideTrajectories(config["guide"], build(config).guide, params)
    params = posterior_median_weights(params, [WEIGHT_PRIORS[site] for site in weights])
    return predict, params
