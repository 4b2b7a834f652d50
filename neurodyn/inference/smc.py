"""Sequential Monte Carlo estimates of log p(y) for one sequence (pure JAX, ``vmap``-able).

Plain importance sampling of a whole trajectory h_{1:T} with the guide as proposal has log
weights whose variance grows with T x D: on trials of a few hundred bins every weight but one
vanishes (Pareto k well above 0.7) and log-mean-exp is biased low by an amount that depends on
how well each model's guide fits. SMC uses the same proposal one bin at a time and resamples
when the particles' weights degenerate, so the variance of its estimate grows about linearly
in T; its estimate of p(y) is unbiased (Del Moral 2004; Doucet & Johansen 2009).

A model is described to :func:`log_marginal` by two functions of particles (any pytree with a
leading particle axis):

* ``init(key, num_particles) -> (particles, log_w)``: draws for the first bin and their log
  weights ``log p(z_1, y_1) - log q(z_1)``;
* ``step(key, particles, t) -> (particles, log_w)``: draws for bin ``t`` given each particle's
  past and the incremental log weights ``log p(z_t, y_t | z_{1:t-1}, y_{1:t-1}) - log q(z_t |
  z_{t-1}, ...)``.

Resampling is systematic, and happens when the effective sample size falls below
``ess_threshold * num_particles`` (adaptive resampling), a choice made per sequence with
``jnp.where`` so that it stays inside ``vmap`` and ``lax.scan``.

Held-out scores pool R independent runs per trial (:func:`pool_replicates`), which gives each
estimate a Monte Carlo standard error and an effective sample size as a fraction of particles.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Defaults of every held-out SMC score (``evaluate``, ``compare``, sweeps): R replicates of P
# particles; docs/results/heldout_likelihood.md has the measurements behind them.
NUM_PARTICLES = 256
NUM_REPLICATES = 4
MIN_ESS_FRACTION = 0.1  # below it the CLI warns: the particles collapse somewhere


class Pooled(NamedTuple):
    """Per-trial scores pooled over replicates (:func:`pool_replicates`).

    log_marginals: [L] pooled log p(y_i); mcse: [L] their Monte Carlo standard errors (NaN with
    one replicate); metrics: the summary dict (see :func:`pool_replicates`).
    """

    log_marginals: np.ndarray
    mcse: np.ndarray
    metrics: dict


def pool_replicates(estimate: SMCEstimate, num_particles: int, num_observed_bins) -> Pooled:
    """Pool R independent SMC runs of L trials into one estimate per trial, with its error.

    Args:
        estimate: :class:`SMCEstimate` with arrays [R, L] (``ess``: [R, L, T]); the R runs
            must use independent keys.
        num_particles: P, particles per run.
        num_observed_bins: bins with an observed neuron over all L trials (per-bin units).

    Each run r gives log Z_ri, an unbiased estimate of p(y_i) on the Z scale. The pooled
    estimate is ``log Zbar_i = log (1/R) sum_r Z_ri``, unbiased on the Z scale like each run
    (the log's bias is -Var(log Z)/(2R) to first order). Its Monte Carlo standard error is

        mcse_i = sd_r(log Z_ri) / sqrt(R)          (sample sd, ddof = 1),

    the delta method for log Zbar when log Z_ri is close to normal, which SMC's central limit
    theorem gives (the delta method on Z itself, sd_r(Z_ri / Zbar_i) / sqrt(R), can never exceed
    1 nat with R runs, however far apart they are, so it is not used). The trials' runs are
    independent, so the error of the elpd sum_i log Zbar_i is

        mcse_elpd = sqrt(sum_i mcse_i^2).

    Returns :class:`Pooled` whose ``metrics`` hold ``heldout_loglik_per_bin_smc`` (sum_i log
    Zbar_i / bins), ``heldout_loglik_mcse_smc`` (mcse_elpd / bins, per-bin units like the
    former), ``elpd_mcse_smc`` (mcse_elpd, nats), ``smc_min_ess_fraction`` (the smallest ESS /
    P of any run, trial and bin), ``smc_ess_fraction_median_trial_min`` (the median over trials
    of each trial's smallest ESS / P over runs and bins: less pessimistic when one trial is
    hard), ``smc_particles`` and ``smc_replicates``.
    """
    log_z = np.asarray(estimate.log_marginal, np.float64)
    if log_z.ndim != 2:
        raise ValueError(f"expected [replicates, trials] estimates, got shape {log_z.shape}")
    R = log_z.shape[0]
    peak = log_z.max(0)
    finite = np.isfinite(peak)
    safe = np.where(finite, peak, 0.0)
    pooled = np.where(finite, safe + np.log(np.mean(np.exp(log_z - safe), 0)), peak)
    mcse = log_z.std(0, ddof=1) / np.sqrt(R) if R > 1 else np.full(log_z.shape[1], np.nan)
    ess = np.asarray(estimate.ess, np.float64) / num_particles  # [R, L, T]
    per_trial = ess.min(axis=(0, 2))
    bins = float(num_observed_bins)
    elpd_mcse = float(np.sqrt(np.sum(mcse**2)))
    metrics = {
        "heldout_loglik_per_bin_smc": float(pooled.sum() / bins),
        "heldout_loglik_mcse_smc": elpd_mcse / bins,
        "elpd_mcse_smc": elpd_mcse,
        "smc_min_ess_fraction": float(per_trial.min()),
        "smc_ess_fraction_median_trial_min": float(np.median(per_trial)),
        "smc_particles": int(num_particles),
        "smc_replicates": int(R),
    }
    return Pooled(pooled, mcse, metrics)


class SMCEstimate(NamedTuple):
    """``log_marginal``: scalar estimate of log p(y); ``ess``: [T] effective sample size of the
    weights at each bin, before any resampling there; ``resampled``: [T] bool."""

    log_marginal: jax.Array
    ess: jax.Array
    resampled: jax.Array


def log_marginal(key, init, step, num_steps: int, num_particles: int, ess_threshold=0.5):
    """SMC estimate of log p(y_{1:T}) with adaptive systematic resampling (see module docs)."""
    P = num_particles
    key_init, key_run = jax.random.split(key)
    particles, log_w = init(key_init, P)

    def advance(carry, inputs):
        particles, log_w, log_z = carry
        key, t = inputs
        key_resample, key_step = jax.random.split(key)
        ess = effective_sample_size(log_w)
        resample = ess < ess_threshold * P
        # Resampling closes an epoch: its mean weight enters the estimate, the weights reset.
        log_z = log_z + jnp.where(resample, _log_mean_exp(log_w), 0.0)
        index = jnp.where(resample, systematic(key_resample, log_w), jnp.arange(P))
        particles = jax.tree_util.tree_map(lambda x: x[index], particles)
        log_w = jnp.where(resample, jnp.zeros_like(log_w), log_w)
        particles, increment = step(key_step, particles, t)
        return (particles, log_w + increment, log_z), (ess, resample)

    keys = jax.random.split(key_run, max(num_steps - 1, 1))[: num_steps - 1]
    (_, log_w, log_z), (ess, resampled) = lax.scan(
        advance, (particles, log_w, jnp.zeros(())), (keys, jnp.arange(1, num_steps))
    )
    last_ess = effective_sample_size(log_w)
    return SMCEstimate(
        log_marginal=log_z + _log_mean_exp(log_w),
        ess=jnp.concatenate([ess, last_ess[None]]),
        resampled=jnp.concatenate([resampled, jnp.zeros(1, bool)]),
    )


def effective_sample_size(log_w):
    """(sum w)^2 / sum w^2 of unnormalized log weights [P]; 0 when every weight is zero."""
    log_w = jnp.where(jnp.isnan(log_w), -jnp.inf, log_w)
    peak = lax.stop_gradient(jnp.max(log_w))
    peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
    w = jnp.exp(log_w - peak)
    total = w.sum()
    return jnp.where(total > 0, total**2 / jnp.maximum((w**2).sum(), 1e-30), 0.0)


def systematic(key, log_w):
    """Systematic resampling: indices [P] with expected counts P * w_i / sum w."""
    P = log_w.shape[0]
    weights = jax.nn.softmax(log_w)
    cumulative = jnp.cumsum(weights)
    cumulative = cumulative.at[-1].set(1.0)  # guard the last bin against rounding
    points = (jax.random.uniform(key) + jnp.arange(P)) / P
    return jnp.clip(jnp.searchsorted(cumulative, points), 0, P - 1)


def _log_mean_exp(log_w):
    return jax.nn.logsumexp(log_w) - jnp.log(log_w.shape[0])
