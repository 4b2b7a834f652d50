"""Held-out likelihood of a fitted meta-family run: the workflow problem (importance
sampling, ArviZ export, comparison) and sequential Monte Carlo per trial."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from numpyro.primitives import Messenger

from ...data.session import Session
from ...inference import smc
from ...inference.problem import Problem
from . import smc as meta_smc
from .batches import observed_bins, stack_sessions
from .config import GUIDES, priors_of
from .networks import build, fitted_networks
from .predict import at_weight_medians


class _EmbeddingAsGlobal(Messenger):
    """Scores the per-recording embedding as a global site in per-trial workflows: importance
    weights of trial (i, j) are then log p(y_ij, z_ij | e_i) - log q(z_ij | e_i) with e_i drawn
    from q(e_i) (the posterior predictive of the trial under q(e))."""

    def process_message(self, msg):
        if msg["name"] == "embedding":
            msg["cond_indep_stack"] = [f for f in msg["cond_indep_stack"] if f.name != "recordings"]


DIMS = {
    "y": ("recording", "trial", "time", "neuron"),
    "z": ("recording", "trial", "time", "latent"),
    # the embedding site sits in the recordings plate (dim -2): (M, 1, d_e)
    "embedding": ("recording", "embedding_plate", "embedding_dim"),
}


def problem(config: dict, params: dict, sessions: list[Session], *, max_values: int | None = None):
    """The fitted model and guide on ``sessions`` for the workflow (held-out likelihood, ArviZ
    export, comparison): every trial counts once; trials are scored per (recording, trial).

    ``max_values`` (None = no limit) keeps only each recording's first R' trials, with
    R' * M * T * N_max <= max_values: the run folder's ``posterior.nc`` uses it to bound the
    size of its draws of y. Held-out scores and comparisons use every trial.
    """
    model, guide, _, _ = build(config)
    N = max(r["num_neurons"] for r in config["recordings"])
    T = max(s.num_timesteps for s in sessions)
    if max_values is not None:
        keep = max(1, max_values // (len(sessions) * T * N))
        sessions = [s.select(slice(0, keep)) if s.num_trials > keep else s for s in sessions]
    batch = stack_sessions(config, sessions)
    bins = observed_bins(batch)
    return Problem(
        model=_EmbeddingAsGlobal(model),
        guide=_EmbeddingAsGlobal(guide),
        params=jax.tree_util.tree_map(jnp.asarray, params),
        batch=jax.tree_util.tree_map(jnp.asarray, batch),
        model_kwargs={"num_trials": int(batch["num_trials"].max())},
        local_plates=("recordings", "trials"),
        num_observed_bins=bins,
        dims=DIMS,
    )


def supports_smc(config) -> bool:
    """:func:`heldout_smc` applies to every configuration with the package's guides (both give
    a Gaussian per bin), not to user-written guides."""
    return config["guide"] in GUIDES


def heldout_smc(
    config,
    params,
    sessions,
    *,
    num_particles: int | None = None,
    num_replicates: int | None = None,
    seed: int = 0,
):
    """Per-trial held-out log p(y_ij) = log int q(e_i) p(y_ij | e_i) de_i by sequential Monte
    Carlo (:mod:`neurodyn.families.meta.smc`): the quantity importance sampling estimates, with
    a variance that grows about linearly in T instead of degenerating on long trials.
    ``num_replicates`` independent runs of ``num_particles`` (defaults
    :data:`neurodyn.inference.smc.NUM_PARTICLES`, ``NUM_REPLICATES``) are pooled by
    :func:`neurodyn.inference.smc.pool_replicates`.

    Returns (metrics, log_marginals (trials,), mcse (trials,)), the recordings' real trials in
    order; ``metrics`` as in ``pool_replicates`` plus ``smc_proposal`` (``"optimal"`` with
    Gaussian observations, else ``"guide"``). Weights with a prior are taken at their
    posterior median.
    """
    if not supports_smc(config):
        raise ValueError(
            f"SMC needs the package's guides ({', '.join(GUIDES)}), whose per-bin proposals it "
            f"uses; this run's guide is {config['guide']!r}: use importance sampling instead"
        )
    P = num_particles or smc.NUM_PARTICLES
    R = num_replicates or smc.NUM_REPLICATES
    config, params = at_weight_medians(config, params)
    model, guide, spec, nets = build(config)
    batch = jax.tree_util.tree_map(jnp.asarray, stack_sessions(config, sessions))
    key_guide, key_smc = jax.random.split(jax.random.PRNGKey(seed))
    trials = meta_smc.guide_proposals(model, guide, params, batch, key_guide)
    dynamics, adapter = fitted_networks(nets, params)
    priors = priors_of(config)
    estimate = meta_smc.log_marginals(
        spec, dynamics, adapter, params, priors, trials, P, key_smc, R
    )
    pooled = smc.pool_replicates(estimate, P, observed_bins(batch))
    proposal = "optimal" if spec.likelihood == "gaussian" else "guide"
    return {**pooled.metrics, "smc_proposal": proposal}, pooled.log_marginals, pooled.mcse
