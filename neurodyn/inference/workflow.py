"""The Bayesian workflow on a fitted run, for any family.

A family's ``problem(config, params, sessions)`` returns a :class:`Problem`: the bound model and
guide, the fitted parameters, one batch holding every trial to score, and the keyword arguments
that make each trial count once with annealed auxiliary terms switched off. From it:

- :func:`heldout`: per-trial importance-sampled log p(y_i) with PSIS k-hat
  (``heldout_loglik_per_bin``, ``psis_khat``);
- :func:`posterior_tree`: the ArviZ ``DataTree`` written as ``posterior.nc``;
- :func:`heldout_score`: the held-out score of a run by the estimator that applies (SMC where
  the family supports it, else importance sampling, which is exact when no latent is left),
  as ``evaluate`` and ``compare`` report it;
- :func:`compare_runs`: held-out elpd of several runs on the same data, ranked by
  ``arviz_stats.compare``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from . import arviz_export, comparison, importance, smc
from .problem import Problem

HELDOUT_SAMPLES = 200  # importance samples per trial, where importance sampling is used
ESTIMATORS = ("auto", "smc", "importance")
SMC_KEYS = (
    "smc_min_ess_fraction",
    "smc_ess_fraction_median_trial_min",
    "smc_particles",
    "smc_replicates",
    "smc_proposal",
)


def heldout(problem: Problem, *, num_samples: int = 100, seed: int = 0):
    """(metrics, estimate): ``heldout_loglik_per_bin`` and ``psis_khat``, with a warning when
    some trial's k exceeds 0.7 (the guide is then a poor proposal for it)."""
    lw = importance.trial_log_weights(
        problem.model,
        problem.guide,
        problem.params,
        problem.batch,
        key=jax.random.PRNGKey(seed),
        num_samples=num_samples,
        model_kwargs=problem.model_kwargs,
        local_plates=problem.local_plates,
    )
    estimate = importance.summarize(lw)
    metrics = importance.heldout_metrics(estimate, problem.num_observed_bins)
    share = metrics["psis_khat"]["share_above_0.7"]
    if share > 0:
        warnings.warn(
            f"Pareto k > {importance.KHAT_THRESHOLD} for {share:.0%} of trials: the importance "
            "sampling estimate of the held-out likelihood is unreliable there (the guide is a "
            "poor proposal); use more samples or a better guide",
            stacklevel=2,
        )
    return metrics, estimate


def posterior_tree(problem: Problem, *, num_samples: int = 100, seed: int = 0, losses=None):
    """The run's ArviZ ``DataTree`` (see :mod:`neurodyn.inference.arviz_export`)."""
    return arviz_export.to_datatree(
        problem.model,
        problem.guide,
        problem.params,
        problem.batch,
        key=jax.random.PRNGKey(seed),
        num_samples=num_samples,
        model_kwargs=problem.model_kwargs,
        losses=None if losses is None else np.asarray(losses),
        local_plates=problem.local_plates,
        dims=problem.dims,
    )


def heldout_score(
    family,
    config,
    params,
    sessions,
    *,
    estimator: str = "auto",
    seed: int = 0,
    num_particles: int | None = None,
    num_replicates: int | None = None,
    num_samples: int = HELDOUT_SAMPLES,
):
    """A run's held-out score: (metrics, :class:`~neurodyn.inference.comparison.HeldoutScore`).

    ``estimator``: ``"auto"`` (SMC where ``family.supports_smc(config)``, else importance
    sampling), ``"smc"`` (``ValueError`` where it does not apply) or ``"importance"``. The
    metrics are ``heldout_estimator`` (``"smc"``, ``"importance"``, or ``"exact"`` when every
    importance weight is equal: no latent left to sample, as for hmm, whose value is the
    forward algorithm's), ``heldout_loglik_per_bin`` and ``heldout_loglik_mcse`` (its Monte
    Carlo standard error, per observed bin like it), and the estimator's diagnostics: SMC's
    ``smc_min_ess_fraction``, ``smc_ess_fraction_median_trial_min``, ``smc_particles``,
    ``smc_replicates``, ``smc_proposal`` (see :func:`neurodyn.inference.smc.pool_replicates`),
    or importance sampling's ``psis_khat``. The same arguments give the same numbers.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")
    supported = family.supports_smc(config)
    if estimator == "smc" and not supported:
        raise ValueError(
            f"--estimator smc does not apply to this {config.get('model')} run (SMC needs a "
            "continuous latent, and Gaussian observations with a linear readout or a guide with "
            "a Gaussian per bin; hmm is exact already): use --estimator importance or auto"
        )
    if estimator == "smc" or (estimator == "auto" and supported):
        found, log_marginals, mcse = family.heldout_smc(
            config,
            params,
            sessions,
            num_particles=num_particles or smc.NUM_PARTICLES,
            num_replicates=num_replicates or smc.NUM_REPLICATES,
            seed=seed,
        )
        metrics = {
            "heldout_estimator": "smc",
            "heldout_loglik_per_bin": found["heldout_loglik_per_bin_smc"],
            "heldout_loglik_mcse": found["heldout_loglik_mcse_smc"],
            **{key: found[key] for key in SMC_KEYS},
        }
        if not np.isfinite(metrics["heldout_loglik_mcse"]):
            metrics["heldout_loglik_mcse_note"] = (
                "one replicate: no spread to estimate the Monte Carlo error from (use 2 or more)"
            )
        return metrics, comparison.smc_score(log_marginals, mcse, found)
    problem = family.problem(config, params, sessions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k is reported in the metrics (heldout_warnings)
        found, estimate = heldout(problem, num_samples=num_samples, seed=seed)
    score = comparison.importance_score(estimate)
    return {"heldout_estimator": score.estimator, **found}, score


def heldout_warnings(metrics: Mapping[str, Any]) -> list[str]:
    """One line per reason to distrust :func:`heldout_score`'s metrics: SMC's particles
    collapsing (``smc_min_ess_fraction`` < ``smc.MIN_ESS_FRACTION``) or Pareto k > 0.7."""
    lines = []
    ess = metrics.get("smc_min_ess_fraction")
    if ess is not None and ess < smc.MIN_ESS_FRACTION:
        lines.append(
            f"SMC's effective sample size fell to {ess:.3f} of its particles (below "
            f"{smc.MIN_ESS_FRACTION}): check heldout_loglik_mcse, or use more particles"
        )
    khat = metrics.get("psis_khat")
    if khat and khat["share_above_0.7"] > 0:
        lines.append(
            f"Pareto k > {importance.KHAT_THRESHOLD} for {khat['share_above_0.7']:.0%} of trials: "
            "the importance sampling estimate of the held-out likelihood is unreliable there"
        )
    return lines


def compare_runs(problems: Mapping[str, Problem], *, num_samples: int = 200, seed: int = 0):
    """``arviz_stats.compare`` table of held-out elpd (PSIS-smoothed importance sampling),
    with Pareto-k and MCSE columns; all runs must be scored on the same trials."""
    scores = {}
    for name, problem in problems.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # k is reported in the table instead
            _, estimate = heldout(problem, num_samples=num_samples, seed=seed)
        scores[name] = comparison.importance_score(estimate)
    return comparison.compare(scores)
