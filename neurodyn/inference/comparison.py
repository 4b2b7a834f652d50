"""Bayesian model comparison on held-out trials.

Each model's expected log predictive density (elpd) on held-out trials is the sum over trials of
log p(y_i | training data), estimated per trial by sequential Monte Carlo
(:mod:`neurodyn.inference.smc`) or by importance sampling with the guide as proposal and Pareto
smoothing (:mod:`neurodyn.inference.importance`). The per-trial values are wrapped as
``arviz_stats.ELPDData`` so that ``arviz_stats.compare`` ranks the models and gives the standard
errors of the differences and the stacking weights; a :class:`HeldoutScore` adds how the elpd
was estimated and its Monte Carlo standard error.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import NamedTuple

import numpy as np
import xarray as xr
from arviz_stats import ELPDData
from arviz_stats import compare as _arviz_compare

from .importance import KHAT_THRESHOLD, ImportanceEstimate, log_mean_mcse


class HeldoutScore(NamedTuple):
    """One model's held-out elpd and how it was estimated.

    Attributes:
        elpd: the ``ELPDData`` (``elpd_i``: [trials]).
        estimator: ``"smc"``, ``"importance"`` or ``"exact"`` (importance weights all equal:
            no latent left to sample, e.g. hmm).
        mcse: Monte Carlo standard error of ``elpd.elpd`` in nats (0 when exact).
        ess_fraction: SMC's ``smc_min_ess_fraction`` (None for the other estimators).
    """

    elpd: ELPDData
    estimator: str
    mcse: float
    ess_fraction: float | None = None


def importance_score(estimate: ImportanceEstimate) -> HeldoutScore:
    """:class:`HeldoutScore` of a per-trial importance-sampling estimate; its MCSE is
    sqrt(sum_i mcse_i^2) with :func:`~neurodyn.inference.importance.log_mean_mcse`."""
    exact = bool(np.all(np.isneginf(np.asarray(estimate.khat))))
    mcse = float(np.sqrt(np.sum(log_mean_mcse(estimate.log_weights) ** 2)))
    return HeldoutScore(heldout_elpd(estimate), "exact" if exact else "importance", mcse)


def smc_score(log_marginals, mcse, metrics: dict) -> HeldoutScore:
    """:class:`HeldoutScore` of a family's ``heldout_smc`` result (log_marginals, mcse:
    [trials]; ``metrics`` with ``smc_particles``, ``smc_min_ess_fraction``)."""
    elpd_mcse = float(np.sqrt(np.sum(np.asarray(mcse, np.float64) ** 2)))
    elpd = smc_elpd(log_marginals, metrics["smc_particles"])
    return HeldoutScore(elpd, "smc", elpd_mcse, metrics["smc_min_ess_fraction"])


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


def compare(elpds, method: str = "stacking"):
    """``arviz_stats.compare`` table (rank, elpd, se, elpd_diff, dse, weight, warning) of
    {name: ``ELPDData`` or :class:`HeldoutScore`}, with the columns that apply added:
    ``estimator`` and ``mcse`` (Monte Carlo standard error of elpd, nats; None where unknown),
    ``mcse_diff`` (sqrt(mcse^2 + mcse of the top model^2): the Monte Carlo error of elpd_diff),
    the Pareto-k columns ``khat_max`` and ``khat_share_above_0.7`` only when some model was
    scored by importance sampling (not exactly), and ``ess_fraction_min`` only when some model
    was scored by SMC."""
    scores = {name: _as_score(e) for name, e in elpds.items()}
    elpds = {name: score.elpd for name, score in scores.items()}
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
    names = list(table.index)
    table["estimator"] = [scores[name].estimator for name in names]
    table["mcse"] = [scores[name].mcse for name in names]
    top = scores[names[0]].mcse
    table["mcse_diff"] = [
        None if top is None or scores[n].mcse is None else float(np.hypot(scores[n].mcse, top))
        for n in names
    ]
    if any(score.estimator == "importance" for score in scores.values()):
        table["khat_max"] = [_nanmax(elpds[name].pareto_k) for name in names]
        table["khat_share_above_0.7"] = [_share_above(elpds[name].pareto_k) for name in names]
    if any(score.ess_fraction is not None for score in scores.values()):
        table["ess_fraction_min"] = [scores[name].ess_fraction for name in names]
    return table


def imprecise_differences(table) -> list[str]:
    """Models (not the top one) of a :func:`compare` table whose elpd_diff has a Monte Carlo
    error above a quarter of its ``dse``: the ranking between them and the top model may be
    Monte Carlo noise rather than a difference between the models."""
    rows = table.iloc[1:]
    return [
        str(name)
        for name, row in rows.iterrows()
        if row["mcse_diff"] is not None
        and np.isfinite(row["mcse_diff"])
        and row["mcse_diff"] > row["dse"] / 4
    ]


def _as_score(e) -> HeldoutScore:
    if isinstance(e, HeldoutScore):
        return e
    has_k = (~np.isnan(np.asarray(e.pareto_k, np.float64))).any()
    return HeldoutScore(e, "importance" if has_k else "smc", None)


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
