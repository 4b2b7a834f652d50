"""Bayesian model comparison on held-out trials.

Each model's expected log predictive density (elpd) on held-out trials is the sum over trials of
log p(y_i | training data), estimated per trial by importance sampling with the guide as proposal
and Pareto smoothing (:mod:`neurodyn.inference.importance`). The per-trial values are wrapped as
``arviz_stats.ELPDData`` so that ``arviz_stats.compare`` ranks the models and gives the standard
errors of the differences and the stacking weights.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import xarray as xr
from arviz_stats import ELPDData
from arviz_stats import compare as _arviz_compare

from .importance import KHAT_THRESHOLD, ImportanceEstimate


def heldout_elpd(estimate: ImportanceEstimate) -> ELPDData:
    """ELPD of held-out trials from one model's per-trial importance-sampling estimate.

    ``p`` (an effective number of parameters) has no meaning for held-out data and is NaN.
    """
    elpd_i = np.asarray(estimate.log_marginal_psis, np.float64).ravel()
    khat = np.asarray(estimate.khat, np.float64).ravel()
    n = elpd_i.size
    return ELPDData(
        elpd=float(elpd_i.sum()),
        se=float(np.sqrt(n * np.var(elpd_i))),
        p=float("nan"),
        n_samples=int(estimate.log_weights.shape[0]),
        n_data_points=n,
        scale="log",
        warning=bool(np.any(khat > KHAT_THRESHOLD)),
        good_k=KHAT_THRESHOLD,
        elpd_i=xr.DataArray(elpd_i, dims=["trial"]),
        pareto_k=xr.DataArray(khat, dims=["trial"]),
    )


def smc_elpd(log_marginals, num_particles: int) -> ELPDData:
    """ELPD of held-out trials from per-trial SMC estimates of log p(y_i) (no Pareto k: the
    ``pareto_k`` entries are NaN; SMC's own diagnostic is its effective sample size)."""
    elpd_i = np.asarray(log_marginals, np.float64).ravel()
    n = elpd_i.size
    return ELPDData(
        elpd=float(elpd_i.sum()),
        se=float(np.sqrt(n * np.var(elpd_i))),
        p=float("nan"),
        n_samples=int(num_particles),
        n_data_points=n,
        scale="log",
        warning=False,
        good_k=KHAT_THRESHOLD,
        elpd_i=xr.DataArray(elpd_i, dims=["trial"]),
        pareto_k=xr.DataArray(np.full(n, np.nan), dims=["trial"]),
    )


def compare(elpds: dict[str, ELPDData], method: str = "stacking"):
    """``arviz_stats.compare`` table (rank, elpd, se, elpd_diff, dse, weight, warning) with
    two Pareto-k columns added: the largest k and the share of trials above 0.7."""
    if len(elpds) < 2:
        raise ValueError("comparing needs at least two models")
    sizes = {name: e.n_data_points for name, e in elpds.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"models were scored on different numbers of trials: {sizes}")
    # Stacking exponentiates each trial's elpd, which underflows for whole-trial likelihoods of
    # hundreds of nats (NaN weights, then arviz's fallback to equal ones). The weights do not
    # change when every model's elpd of a trial is shifted by the same amount, so they are
    # computed with each trial's best elpd subtracted; the unshifted table's are discarded.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the underflow, in weights we drop
        table = _arviz_compare(dict(elpds), method=method, round_to="none")
    shifted = _arviz_compare(_shift_per_trial(elpds), method=method, round_to="none")
    table["weight"] = shifted["weight"].reindex(table.index)
    table["khat_max"] = [_nanmax(elpds[name].pareto_k) for name in table.index]
    table["khat_share_above_0.7"] = [_share_above(elpds[name].pareto_k) for name in table.index]
    return table


def _shift_per_trial(elpds: dict[str, ELPDData]) -> dict[str, ELPDData]:
    """The elpds with each trial's largest elpd_i (over models) subtracted from every model's."""
    best = np.max([np.asarray(e.elpd_i) for e in elpds.values()], axis=0)
    out = {}
    for name, e in elpds.items():
        elpd_i = np.asarray(e.elpd_i) - best
        out[name] = dataclasses.replace(
            e, elpd=float(elpd_i.sum()), elpd_i=xr.DataArray(elpd_i, dims=e.elpd_i.dims)
        )
    return out


def _nanmax(x) -> float:
    x = np.asarray(x, np.float64)
    return float(np.nanmax(x)) if (~np.isnan(x)).any() else float("nan")


def _share_above(khat) -> float:
    """Share of trials with k > 0.7; NaN when no trial has a k (SMC estimates)."""
    k = np.asarray(khat, np.float64)
    return float(np.mean(k > KHAT_THRESHOLD)) if (~np.isnan(k)).any() else float("nan")
