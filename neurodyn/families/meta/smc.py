"""Per-trial log p(y) of the meta-dynamical model by sequential Monte Carlo.

The held-out quantity is the one importance sampling estimates for this family (see
``neurodyn.families.meta.problem``): the trial's likelihood under the fitted posterior of its
recording's embedding,

    p(y_ij) = int q(e_i) p(y_ij | e_i) de_i,   p(y_ij | e) = int p(z_ij | e) p(y_ij | z_ij) dz_ij.

Each particle carries its own embedding e ~ q(e_i) (drawn once, weight 1: q(e) is the mixing
distribution, not a proposal) and its latent z_{t-1}. Bin t's z_t is drawn from a proposal r
and the incremental weight is

    log N(z_t | f_{theta(e)}(z_{t-1}, u_t), diag q^2) + log p(y_t | z_t) - log r(z_t).

With Gaussian observations r is the locally optimal p(z_t | z_{t-1}, y_t) (Gaussian: a linear
readout of a Gaussian step), whose weight is p(y_t | z_{t-1}) whatever z_t is drawn; with
Poisson observations (or a non-Normal prior of z_1, for the first bin) r is the amortized
guide's Gaussian for the bin, q(z_t | y, e = mean of q(e_i)). Any proposal gives a valid
estimate; the optimal one keeps the particles' weights even when the guide is poor.

Resampling moves particles (and so embeddings) toward those that explain the trial, so the
estimate stays usable on trials where whole-trajectory importance weights degenerate (Pareto k
> 0.7). The estimate of p(y_ij) is unbiased (:mod:`neurodyn.inference.smc`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro import handlers

from ...inference import smc
from ...models import meta as models


@dataclasses.dataclass(frozen=True)
class Trials:
    """Everything the filter needs, flattened over (recording, trial) to L trials.

    y, mask: (L, T, N); loc, scale: (L, T, D) the guide's per-bin proposal; e_loc, e_scale:
    (L, d_e) q(e) of the trial's recording (d_e = 0 without an embedding); rec: (L,) recording
    index into the run's per-recording parameters; u: (L, T, U) known inputs (U = 0 without).
    """

    y: jax.Array
    mask: jax.Array
    loc: jax.Array
    scale: jax.Array
    e_loc: jax.Array
    e_scale: jax.Array
    rec: jax.Array
    u: jax.Array


def guide_proposals(model, guide, params, batch, key) -> Trials:
    """Run the fitted guide on ``batch`` (M, R, T, N): q(e) of each recording, then the latent
    guide's per-bin Gaussians given e = the mean of q(e). Padded trials are dropped."""
    substituted = handlers.substitute(guide, data=params)
    first = handlers.trace(handlers.seed(substituted, key)).get_trace(batch)
    M, R, T, N = batch["y"].shape
    if "embedding" in first:
        q_e = _normal(first["embedding"]["fn"])  # batch (M, 1, d_e)
        e_loc, e_scale = q_e.loc[:, 0], q_e.scale[:, 0]
        given_mean = handlers.condition(substituted, data={"embedding": e_loc[:, None]})
        trace = handlers.trace(handlers.seed(given_mean, key)).get_trace(batch)
    else:
        e_loc = e_scale = jnp.zeros((M, 0))
        trace = first
    q_z = _normal(trace["z"]["fn"])  # batch (M, R, T, D)
    keep = jnp.asarray(batch["trial_mask"]).reshape(-1)

    def flat(x):  # (M, R, ...) -> (L, ...) of the real trials
        return x.reshape(M * R, *x.shape[2:])[keep]

    def per_trial(x):  # (M, ...) -> (L, ...)
        return flat(jnp.broadcast_to(x[:, None], (M, R, *x.shape[1:])))

    return Trials(
        y=flat(batch["y"]),
        mask=flat(batch["mask"]),
        loc=flat(q_z.loc),
        scale=flat(q_z.scale),
        e_loc=per_trial(e_loc),
        e_scale=per_trial(e_scale),
        rec=per_trial(batch["rec"]),
        u=flat(batch["u"]) if "u" in batch else jnp.zeros((int(keep.sum()), T, 0)),
    )


def _normal(fn) -> dist.Normal:
    """The Normal inside a guide site's distribution (under ``to_event`` and masks)."""
    while not isinstance(fn, dist.Normal):
        fn = fn.base_dist
    return fn


def log_marginals(
    spec: models.Spec,
    dynamics,
    adapter,
    params,
    priors,
    trials: Trials,
    num_particles,
    key,
    num_replicates: int | None = None,
) -> smc.SMCEstimate:
    """SMC estimates of log p(y_ij) for every trial (batched :class:`SMCEstimate`, (L,), or
    (R, L) with ``num_replicates`` = R independent runs, each with its own keys).

    dynamics, adapter: the fitted Equinox modules (weights as point values); params: the run's
    parameters (per-recording readouts, noise scales, table offsets); priors: the model's
    resolved priors (``initial``).
    """
    initial = priors["initial"]
    params = jax.tree_util.tree_map(jnp.asarray, params)
    P, D = num_particles, spec.latent_dim

    def process_scale(rec):
        if spec.process_noise == "per-recording":
            return params["process_scale_per_recording"][rec]
        return params["process_scale"]

    def emission(z, y_t, mask_t, rec):  # z (P, D) -> (P,)
        x = z @ params["readout_weight"][rec].T + params["readout_bias"][rec]
        if spec.likelihood == "poisson":
            obs = dist.Poisson(jax.nn.softplus(x) + 1e-4)
        else:
            obs = dist.Normal(x, params["obs_scale"][rec])
        return jnp.where(mask_t, obs.log_prob(y_t), 0.0).sum(-1)

    def one_trial(inputs):
        key, y, mask, loc, scale, e_loc, e_scale, rec, u = inputs
        key_e, key_run = jax.random.split(key)
        e = e_loc + e_scale * jax.random.normal(key_e, (P, e_loc.shape[-1]))
        recs = jnp.full((P,), rec)

        def transition_mean(z_prev, e_p, t):  # (P, D), (P, d_e) -> (P, D)
            with handlers.substitute(data=params):  # table offsets are numpyro.param sites
                f = models.recording_dynamics(
                    spec, dynamics, adapter, e_p if spec.embedding else None, recs
                )
            u_t = jnp.broadcast_to(u[t], (P, 1, u.shape[-1])) if spec.input_dim else None
            return f(z_prev[:, None, :], u_t)[:, 0]

        def draw(key, t):
            z = loc[t] + scale[t] * jax.random.normal(key, (P, D))
            return z, dist.Normal(loc[t], scale[t]).log_prob(z).sum(-1)

        def draw_optimal(key, t, mean, q):
            """Gaussian observations: z_t ~ p(z_t | z_{t-1}, y_t), the locally optimal proposal
            (information form; the precision is the same for every particle)."""
            C, d = params["readout_weight"][rec], params["readout_bias"][rec]  # (N, D), (N,)
            w = mask[t] / params["obs_scale"][rec] ** 2  # (N,) observed precision
            precision = jnp.diag(1.0 / q**2) + (C * w[:, None]).T @ C
            info = mean / q**2 + C.T @ (w * (y[t] - d))  # (P, D)
            cov = jnp.linalg.inv(precision)  # symmetric: rows of info @ cov are cov @ info_p
            proposal = dist.MultivariateNormal(info @ cov, scale_tril=jnp.linalg.cholesky(cov))
            z = proposal.sample(key)
            return z, proposal.log_prob(z)

        def init(key, _):
            if spec.likelihood == "gaussian" and isinstance(initial, dist.Normal):
                prior_loc = jnp.broadcast_to(initial.loc, (P, D))
                z, log_q = draw_optimal(key, 0, prior_loc, jnp.broadcast_to(initial.scale, (D,)))
            else:
                z, log_q = draw(key, 0)
            log_p = initial.log_prob(z).sum(-1) + emission(z, y[0], mask[0], rec)
            return (z, e), log_p - log_q

        def step(key, particles, t):
            z_prev, e_p = particles
            mean, q = transition_mean(z_prev, e_p, t), process_scale(rec)
            if spec.likelihood == "gaussian":
                z, log_q = draw_optimal(key, t, mean, q)
            else:
                z, log_q = draw(key, t)
            move = dist.Normal(mean, q).log_prob(z).sum(-1)
            return (z, e_p), move + emission(z, y[t], mask[t], rec) - log_q

        return smc.log_marginal(key_run, init, step, y.shape[0], P)

    L, R = trials.y.shape[0], num_replicates or 1
    data = (trials.y, trials.mask, trials.loc, trials.scale, trials.e_loc, trials.e_scale)
    data = tuple(jnp.concatenate([x] * R) for x in (*data, trials.rec, trials.u))  # (R * L, ...)
    inputs = (jax.random.split(key, R * L), *data)
    # One trial at a time, vectorised over particles: with an adapter every particle has its
    # own dynamics weights, and all trials at once would hold L x P of them.
    out = jax.jit(lambda xs: jax.lax.map(one_trial, xs))(inputs)
    if num_replicates is None:
        return out
    return jax.tree_util.tree_map(lambda x: x.reshape(R, L, *x.shape[1:]), out)
