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
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax


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
