"""The Bayesian workflow on a fitted run, for any family.

A family's ``problem(config, params, sessions)`` returns a :class:`Problem`: the bound model and
guide, the fitted parameters, one batch holding every trial to score, and the keyword arguments
that make each trial count once with annealed auxiliary terms switched off. From it:

- :func:`heldout`: per-trial importance-sampled log p(y_i) with PSIS k-hat
  (``heldout_loglik_per_bin``, ``psis_khat`` of DESIGN.md);
- :func:`posterior_tree`: the ArviZ ``DataTree`` written as ``posterior.nc``;
- :func:`compare_runs`: held-out elpd of several runs on the same data, ranked by
  ``arviz_stats.compare``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from . import arviz_export, comparison, importance

LATE_STEP = importance.LATE_STEP


class Problem(NamedTuple):
    """What the workflow needs of a fitted run on some sessions.

    Attributes:
        model, guide: NumPyro functions ``fn(batch, **model_kwargs)``.
        params: constrained parameters of the fit.
        batch: arrays of every trial to score (leading trial axis, or recordings x trials).
        model_kwargs: e.g. ``num_trials`` = the batch's trial count and a late ``step``.
        local_plates: the plates whose entries are scored separately (("trials",) usually).
        num_observed_bins: bins with at least one observed neuron.
    """

    model: Callable
    guide: Callable
    params: Mapping[str, Any]
    batch: Mapping[str, Any]
    model_kwargs: Mapping[str, Any]
    local_plates: Sequence[str]
    num_observed_bins: int


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
    )


def compare_runs(problems: Mapping[str, Problem], *, num_samples: int = 200, seed: int = 0):
    """``arviz_stats.compare`` table of held-out elpd (PSIS-smoothed importance sampling),
    with Pareto-k columns; all runs must be scored on the same trials."""
    elpds = {}
    for name, problem in problems.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # k is reported in the table instead
            _, estimate = heldout(problem, num_samples=num_samples, seed=seed)
        elpds[name] = comparison.heldout_elpd(estimate)
    return comparison.compare(elpds)
