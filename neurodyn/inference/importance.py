"""Per-trial importance sampling with the guide as proposal, and its PSIS diagnostic.

For a held-out trial i with local latents z_i (trajectories, embeddings...) and the guide's draw
of any global sites g:

    log w_si = log p(y_i, z_si | g_s) - log q(z_si | y_i, g_s),   (z_si, g_s) ~ q

and log p(y_i) is estimated by log-mean-exp over s (Yao et al. 2018, "Yes, but did it work?").
With global sites drawn from their guide, the estimate is the posterior predictive of the trial
under q(g). The Pareto k of the weights says whether the guide is a usable proposal
(k > 0.7: the estimate is unreliable).

This works for any model/guide pair of the package: it reads per-trial log densities off the
NumPyro traces, keeping the plate dimensions named in ``local_plates`` and summing the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from arviz_stats.base import array_stats
from numpyro import handlers

KHAT_THRESHOLD = 0.7
MIN_PSIS_SAMPLES = 25
MAX_VALUES_AT_ONCE = 50_000_000


class ImportanceEstimate(NamedTuple):
    """Per-trial estimates.

    Attributes:
        log_weights: float (S, *plates) raw log importance weights.
        log_marginal: float (*plates) log-mean-exp of the raw weights.
        log_marginal_psis: float (*plates) the same with Pareto-smoothed weights.
        khat: float (*plates) Pareto k of each trial's weights (-inf for identical weights,
            NaN with fewer than ``MIN_PSIS_SAMPLES`` draws).
    """

    log_weights: np.ndarray
    log_marginal: np.ndarray
    log_marginal_psis: np.ndarray
    khat: np.ndarray


def _plate_sum(log_prob, site, local_plates: Sequence[str]):
    """Sum ``log_prob`` over all dims but those of ``local_plates``; returns those dims in the
    order of the plates' ``dim`` (outermost first). Sites outside every local plate are global."""
    frames = {f.name: f.dim for f in site["cond_indep_stack"]}
    if not any(name in frames for name in local_plates):
        return None
    dims = [frames[name] for name in local_plates if name in frames]
    if len(dims) != len(local_plates):
        raise ValueError(
            f"site {site['name']!r} sits in some but not all of the plates {list(local_plates)}"
        )
    log_prob = jnp.asarray(log_prob)
    order = sorted(dims)  # e.g. [-2, -1]: recordings, trials
    axes = [log_prob.ndim + d for d in order]
    moved = jnp.moveaxis(log_prob, axes, list(range(len(axes))))
    return moved.reshape(moved.shape[: len(axes)] + (-1,)).sum(-1)


def _local_log_density(trace, local_plates):
    total = None
    for site in trace.values():
        if site["type"] != "sample":
            continue
        lp = site["fn"].log_prob(site["value"])
        part = _plate_sum(lp, site, local_plates)
        if part is None:
            continue
        total = part if total is None else total + part
    return total  # None when no site is local (e.g. a guide with nothing per trial)


def joint_traces(model, guide, params, batch, kwargs, key):
    """(guide trace, model trace replayed on the guide's draws) with fitted ``params``."""
    guide_key, model_key = jax.random.split(key)
    g = handlers.seed(handlers.substitute(guide, data=params), guide_key)
    guide_trace = handlers.trace(g).get_trace(batch, **kwargs)
    m = handlers.seed(handlers.substitute(model, data=params), model_key)
    replayed = handlers.trace(handlers.replay(m, trace=guide_trace))
    return guide_trace, replayed.get_trace(batch, **kwargs)


def trial_log_weights(
    model: Callable,
    guide: Callable,
    params: Mapping[str, Any],
    batch: Mapping[str, Any],
    *,
    key,
    num_samples: int,
    model_kwargs: Mapping[str, Any] | None = None,
    local_plates: Sequence[str] = ("trials",),
    chunk: int = 16,
) -> np.ndarray:
    """Raw log importance weights, float (num_samples, *plate sizes).

    ``model`` and ``guide`` are called as ``fn(batch, **model_kwargs)``; pass the kwargs that
    make every trial of ``batch`` count once (e.g. ``num_trials`` = the batch's trial count).
    """
    kwargs = dict(model_kwargs or {})

    def one(k):
        guide_trace, model_trace = joint_traces(model, guide, params, batch, kwargs, k)
        log_p = _local_log_density(model_trace, local_plates)
        if log_p is None:
            raise ValueError(f"no sample site of the model lies in the plates {list(local_plates)}")
        log_q = _local_log_density(guide_trace, local_plates)
        return log_p if log_q is None else log_p - log_q

    run = jax.jit(jax.vmap(one))
    keys = jax.random.split(key, num_samples)
    # Each draw holds latents the size of the batch: bound the draws evaluated at once.
    batch_values = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(batch))
    chunk = int(np.clip(MAX_VALUES_AT_ONCE // max(batch_values, 1), 1, chunk))
    parts = [np.asarray(run(keys[i : i + chunk])) for i in range(0, num_samples, chunk)]
    return np.concatenate(parts)


def summarize(log_weights: np.ndarray) -> ImportanceEstimate:
    """Log-mean-exp estimates, raw and Pareto-smoothed, and k-hat per trial.

    Smoothing only changes the largest weights, so the scale of the smoothed weights follows
    from any body weight: the smallest raw weight j has smoothed normalised weight
    w~_j = w_j / Z, hence log Z = log w_j - log w~_j.
    """
    lw = np.asarray(log_weights, np.float64)
    S = lw.shape[0]
    raw = np.moveaxis(lw, 0, -1)  # (*plates, S)
    log_marginal = _logsumexp(raw) - np.log(S)
    log_marginal_psis = log_marginal.copy()
    khat = np.full(log_marginal.shape, np.nan)
    # Trials whose weights are all equal (an exact proposal) have no tail to fit: they keep the
    # raw estimate and k = -inf. PSIS needs at least MIN_PSIS_SAMPLES draws for its tail.
    flat = np.ptp(raw, axis=-1) < 1e-3
    khat[flat] = -np.inf
    fit = ~flat if S >= MIN_PSIS_SAMPLES else np.zeros_like(flat)
    if fit.any():
        body = raw[fit]
        log_z, k = _smoothed_log_sum(body)
        log_marginal_psis[fit] = log_z - np.log(S)
        khat[fit] = k
    return ImportanceEstimate(
        log_weights=lw,
        log_marginal=log_marginal,
        log_marginal_psis=log_marginal_psis,
        khat=khat,
    )


def _smoothed_log_sum(body: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PSIS of each row of ``body`` (rows, S): (log of the smoothed weights' sum, k-hat).

    A row whose largest weights tie (a discrete latent whose likeliest paths the proposal draws
    again and again) has no tail for the Pareto fit to see, and arviz_stats raises on it; such a
    row's top is bounded, so it keeps its raw sum and k = -inf, like an exact proposal.
    """
    try:
        smoothed, k = array_stats.psislw(-body, axis=-1)  # psislw smooths exp(-ary): negate
    except ValueError:
        if body.shape[0] == 1:
            return _logsumexp(body), np.array([-np.inf])
        rows = [_smoothed_log_sum(row[None]) for row in body]
        return np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])
    # Smoothing changes only the largest weights: scale back from the smallest one.
    j = np.argmin(body, axis=-1)[:, None]
    smallest = np.take_along_axis(body, j, -1)[:, 0]
    return smallest - np.take_along_axis(np.asarray(smoothed), j, -1)[:, 0], np.asarray(k)


def _logsumexp(x):
    m = np.max(x, axis=-1, keepdims=True)
    return (m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True)))[..., 0]


def log_mean_mcse(log_weights: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of each trial's log-mean-exp estimate, float (*plates).

    With S draws of weights w_s (``log_weights``: (S, *plates)) and their mean wbar, the delta
    method gives sd(log wbar) ~= sd_s(w_s / wbar) / sqrt(S) (sample sd, ddof = 1): 0 for an
    exact proposal (equal weights). It cannot exceed 1 nat with S draws, however heavy the
    tail, so it is meaningful only where Pareto k is below 0.7.
    """
    lw = np.asarray(log_weights, np.float64)
    S = lw.shape[0]
    if S < 2:
        return np.full(lw.shape[1:], np.nan)
    w = np.exp(lw - lw.max(0))
    w = w / w.mean(0)
    return w.std(0, ddof=1) / np.sqrt(S)


def heldout_metrics(estimate: ImportanceEstimate, num_observed_bins: int) -> dict:
    """The metrics ``heldout_loglik_per_bin`` and ``psis_khat`` (max, share > 0.7),
    and ``heldout_loglik_mcse``: the Monte Carlo standard error of the held-out elpd
    (sqrt of the sum over trials of :func:`log_mean_mcse` squared) per observed bin, in the
    units of ``heldout_loglik_per_bin``."""
    khat = np.asarray(estimate.khat).ravel()
    khat = np.where(np.isneginf(khat), 0.0, khat)
    mcse = float(np.sqrt(np.sum(log_mean_mcse(estimate.log_weights) ** 2)))
    return {
        "heldout_loglik_per_bin": float(np.sum(estimate.log_marginal_psis) / num_observed_bins),
        "heldout_loglik_mcse": mcse / num_observed_bins,
        "psis_khat": {
            "max": float(np.max(khat)),
            "share_above_0.7": float(np.mean(khat > KHAT_THRESHOLD)),
        },
    }
