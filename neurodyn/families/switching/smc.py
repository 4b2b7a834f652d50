"""Held-out log p(y) of a switching run by sequential Monte Carlo (the core of
:mod:`neurodyn.inference.smc` with this family's proposals)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from ...inference import smc
from ...models.switching import dynamics_means, log_transitions, observation_dist
from .config import fitted_session, spec_of
from .predict import Fitted
from .program import batch_of, for_prediction

SMC_GUIDES = ("dkf", "meanfield")
SMC_PROPOSALS = ("auto", "optimal", "mixture", "guide")
DEFENSIVE_WEIGHT = 0.5  # share of the model's transition prior in the "mixture" proposal
ESS_THRESHOLD = 0.5  # resample when the effective sample size falls below this share


def optimal_applies(spec) -> bool:
    """Whether the fully adapted proposal is exact for ``spec``: a continuous latent, Gaussian
    observations and a linear readout (any dynamics: h_t given h_{t-1} and s_t is Gaussian)."""
    return spec.has_latent and spec.likelihood == "gaussian" and spec.readout == "linear"


def smc_proposal(fitted: Fitted, proposal: str = "auto") -> str:
    """The proposal :func:`smc_log_marginals` uses: ``"optimal"`` where it is exact
    (:func:`optimal_applies`), else ``"mixture"`` (the guide's per-bin Gaussian with the
    transition prior as a defensive component); ``ValueError`` when none applies."""
    spec, guide = fitted.spec, fitted.config["guide"]
    if proposal not in SMC_PROPOSALS:
        raise ValueError(f"unknown SMC proposal {proposal!r}; choose one of {SMC_PROPOSALS}")
    if not spec.has_latent:
        raise ValueError("hmm has no continuous latent: its log p(y) is exact (forward algorithm)")
    if proposal == "auto":
        proposal = "optimal" if optimal_applies(spec) else "mixture"
    if proposal == "optimal" and not optimal_applies(spec):
        raise ValueError("the optimal proposal needs Gaussian observations and a linear readout")
    if proposal in ("mixture", "guide") and guide not in SMC_GUIDES:
        raise ValueError(
            f"SMC with a {spec.likelihood} likelihood and a {spec.readout} readout needs a guide "
            f"with a Gaussian per bin ({', '.join(SMC_GUIDES)}); this run's guide is "
            f"{getattr(guide, 'name', guide)!r}: use importance sampling instead"
        )
    return proposal


def smc_log_marginals(
    fitted: Fitted,
    y,
    mask,
    num_particles: int,
    key,
    num_replicates: int | None = None,
    proposal: str = "auto",
    u=None,
) -> smc.SMCEstimate:
    """Per-trial log p(y) by SMC (batched :class:`~neurodyn.inference.smc.SMCEstimate`: [B], or
    [R, B] with ``num_replicates`` = R independent runs, each with its own keys).

    Particles carry h_{t-1} and the filtered state distribution log p(s_{t-1} | h_{1:t-1}), so
    the discrete states stay summed out exactly. Bin t's h_t is drawn from a proposal r and the
    incremental weight of a particle is

        log sum_k p(s_t = k, h_t | h_{1:t-1}) + log p(y_t | h_t) - log r(h_t),

    which multiplies out to p(h_{1:T}, y) / r(h_{1:T}) as in importance sampling. Proposals
    (``proposal``; ``"auto"``: see :func:`smc_proposal`):

    * ``"optimal"`` (Gaussian observations, linear readout y = C^T h + d): the fully adapted
      r(h_t) = p(h_t | h_{t-1}, alpha_{t-1}, y_t), a mixture over k of Gaussians with weights
      pred_k N(y_t; C^T f_k(h_{t-1}) + d, C^T Q_k C + R) on the observed neurons (pred_k =
      p(s_t = k | h_{1:t-1}), the filtered states pushed through the possibly recurrent
      transitions), in information form so that masked neurons drop out and a fully masked bin
      is the prior step. The incremental weight is the mixture's normaliser log sum_k pred_k
      N(y_t; ...), whatever h_t is drawn. The first bin is the same step from the model's
      initial distribution when that is Normal (else it is drawn as in ``"mixture"``).
    * ``"mixture"``: r = a q(h_t | ...) + (1 - a) p(h_t | h_{1:t-1}), the guide's per-bin
      Gaussian (``dkf``: given h_{t-1}; ``meanfield``: given the bin's features) with the
      transition prior as a defensive component, a = 1 - :data:`DEFENSIVE_WEIGHT` (the first
      bin: the guide mixed with the initial distribution).
    * ``"guide"``: the guide's per-bin Gaussian alone.

    y, mask: [B, T, N]; u: [B, T, U] inputs or None. The fitted globals (MAP values) are held
    fixed; a run with weight priors is evaluated at their posterior median (see
    :func:`~.program.for_prediction`).
    """
    spec, g = fitted.spec, fitted.g
    proposal = smc_proposal(fitted, proposal)
    guide = fitted.config["guide"]
    encoder = fitted.encoder
    K, D = spec.num_states, spec.latent_dim
    if proposal == "optimal" and not isinstance(g.initial, dist.Normal) and guide not in SMC_GUIDES:
        raise ValueError(
            "the first bin needs a Normal initial_state prior or a dkf/meanfield guide"
        )
    use_guide = proposal != "optimal" or not isinstance(g.initial, dist.Normal)
    features = jax.vmap(encoder.features)(y, mask) if use_guide else jnp.zeros(y.shape[:2] + (0,))
    a = 1.0 if proposal == "guide" else 1.0 - DEFENSIVE_WEIGHT

    def guide_dist(h_prev, f_t):  # [P, D] -> Normal with batch [P, D]
        if guide == "dkf":
            loc, scale = jax.vmap(encoder.combine, (0, None))(h_prev, f_t)
        else:
            loc, scale = encoder.per_bin(f_t)
            loc, scale = jnp.broadcast_to(loc, h_prev.shape), jnp.broadcast_to(scale, h_prev.shape)
        return dist.Normal(loc, scale)

    def emission(h, y_t, mask_t):  # [P, D] -> [P]
        lp = observation_dist(spec, jax.vmap(g.readout)(h), g.obs_scale).log_prob(y_t)
        return jnp.where(mask_t, lp, 0.0).sum(-1)

    def prior_log_prob(h, means, log_pred, scale):  # [P, D], [P, K, D], [P, K], [K, D]
        """log p(h_t | past) = log sum_k pred_k N(h_t; f_k, Q_k) [P], and p(s_t | h_{1:t})."""
        joint = log_pred + dist.Normal(means, scale).log_prob(h[:, None, :]).sum(-1)
        log_state = jax.nn.logsumexp(joint, axis=-1)
        return log_state, joint - log_state[:, None]

    def adapted(key, means, log_pred, scale, y_t, mask_t):
        """The fully adapted step (see above): (h [P, D], log normaliser [P])."""
        C, d = g.readout.C, g.readout.d  # [D, N], [N]
        w = jnp.where(mask_t, 1.0 / g.obs_scale**2, 0.0)  # [N] observed precisions
        precision = jax.vmap(jnp.diag)(1.0 / scale**2) + (C * w) @ C.T  # [K', D, D]
        cov = jnp.linalg.inv(precision)
        cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
        resid = jnp.where(mask_t, y_t - d, 0.0) - means @ C  # [P, K', N]
        info = (resid * w) @ C.T  # [P, K', D]: C W r
        shift = jnp.einsum("kij,pkj->pki", cov, info)  # Lambda^{-1} C W r
        log_det = jnp.linalg.slogdet(precision)[1]  # [K']
        quad = (resid**2 * w).sum(-1) - (info * shift).sum(-1)  # [P, K']
        n_obs = mask_t.sum()
        log_norm = -0.5 * (
            n_obs * jnp.log(2 * jnp.pi)
            + jnp.where(mask_t, jnp.log(g.obs_scale**2), 0.0).sum()
            + jnp.log(scale**2).sum(-1)
            + log_det
            + quad
        )  # [P, K']: log N(y_t; C^T f_k + d, C^T Q_k C + R) on the observed neurons
        log_mix = log_pred + log_norm
        k_state, k_h = jax.random.split(key)
        k = jax.random.categorical(k_state, log_mix)  # [P]
        P = means.shape[0]
        chol = jnp.linalg.cholesky(cov)[k]  # [P, D, D]
        mean = (means + shift)[jnp.arange(P), k]
        h = mean + jnp.einsum("pij,pj->pi", chol, jax.random.normal(k_h, (P, D)))
        return h, jax.nn.logsumexp(log_mix, axis=-1)

    def mixed(key, q, means, log_pred, scale):
        """Draw from a q + (1 - a) prior: (h [P, D], log p(h | past) [P], log r(h) [P], new
        log p(s_t | h_{1:t}) [P, K])."""
        P = means.shape[0]
        k_pick, k_state, k_q, k_p = jax.random.split(key, 4)
        from_q = q.sample(k_q)
        k = jax.random.categorical(k_state, log_pred)
        eps = jax.random.normal(k_p, (P, D))
        from_prior = means[jnp.arange(P), k] + scale[k] * eps
        h = jnp.where(jax.random.uniform(k_pick, (P, 1)) < a, from_q, from_prior)
        log_prior, log_alpha = prior_log_prob(h, means, log_pred, scale)
        return h, log_prior, mixture_log_prob(q.log_prob(h).sum(-1), log_prior), log_alpha

    def mixture_log_prob(log_q, log_prior):  # [P], [P] -> log r(h) [P]
        if a == 1.0:
            return log_q
        return jnp.logaddexp(jnp.log(a) + log_q, jnp.log1p(-a) + log_prior)

    u = jnp.zeros(y.shape[:2] + (0,)) if u is None else u

    def one_trial(key, y, mask, features, u):
        def init(key, P):
            log_alpha = jnp.broadcast_to(g.log_init, (P, K))  # h_1 says nothing of s_1
            if not use_guide:
                means = jnp.broadcast_to(g.initial.loc, (P, 1, D))
                scale = jnp.broadcast_to(g.initial.scale, (1, D))
                h, log_w = adapted(key, means, jnp.zeros((P, 1)), scale, y[0], mask[0])
                return (h, log_alpha), log_w
            q = guide_dist(jnp.zeros((P, D)), features[0])
            k_pick, k_q, k_p = jax.random.split(key, 3)
            h = jnp.where(
                jax.random.uniform(k_pick, (P, 1)) < a, q.sample(k_q), g.initial.sample(k_p, (P, D))
            )
            log_prior = g.initial.log_prob(h).sum(-1)
            log_r = mixture_log_prob(q.log_prob(h).sum(-1), log_prior)
            return (h, log_alpha), log_prior + emission(h, y[0], mask[0]) - log_r

        def step(key, particles, t):
            h_prev, log_alpha = particles
            u_t = (
                None if u.shape[-1] == 0 else jnp.broadcast_to(u[t], (h_prev.shape[0], u.shape[-1]))
            )
            log_trans = log_transitions(g, h_prev, u_t)  # [P, K, K] or [K, K]
            log_pred = jax.nn.logsumexp(log_alpha[..., :, None] + log_trans, axis=-2)  # [P, K]
            means = dynamics_means(g, h_prev, u_t)  # [P, K, D]
            if proposal == "optimal":
                h, log_w = adapted(key, means, log_pred, g.process_scale, y[t], mask[t])
                log_alpha = prior_log_prob(h, means, log_pred, g.process_scale)[1]
                return (h, log_alpha), log_w
            q = guide_dist(h_prev, features[t])
            h, log_prior, log_r, log_alpha = mixed(key, q, means, log_pred, g.process_scale)
            return (h, log_alpha), log_prior + emission(h, y[t], mask[t]) - log_r

        return smc.log_marginal(key, init, step, y.shape[0], num_particles, ESS_THRESHOLD)

    B = y.shape[0]
    run = jax.vmap(one_trial)
    if num_replicates is None:
        return jax.jit(run)(jax.random.split(key, B), y, mask, features, u)
    keys = jax.random.split(key, num_replicates * B).reshape(num_replicates, B, -1)
    return jax.jit(jax.vmap(run, (0, None, None, None, None)))(keys, y, mask, features, u)


def heldout_smc(
    config,
    params,
    sessions,
    *,
    num_particles: int | None = None,
    num_replicates: int | None = None,
    seed: int = 0,
    proposal: str = "auto",
):
    """Per-trial held-out log p(y_i) by sequential Monte Carlo
    (:func:`smc_log_marginals`): the fully adapted
    proposal where it is exact (Gaussian, linear readout), else the guide's per-bin Gaussian
    with a defensive prior component; ``num_replicates`` independent runs of ``num_particles``
    (defaults :data:`neurodyn.inference.smc.NUM_PARTICLES`, ``NUM_REPLICATES``) pooled by
    :func:`neurodyn.inference.smc.pool_replicates`.

    Returns (metrics, log_marginals [trials], mcse [trials]): ``metrics`` as in
    ``pool_replicates`` plus ``smc_proposal``. ``ValueError`` for ``hmm`` (exact already) and
    where no proposal applies (a Poisson or MLP readout with a ``delta`` or user guide).
    """
    P = num_particles or smc.NUM_PARTICLES
    R = num_replicates or smc.NUM_REPLICATES
    session = fitted_session(config, sessions)
    predict, point_params = for_prediction(config, params)
    fitted = Fitted(predict, point_params)
    used = smc_proposal(fitted, proposal)
    batch = batch_of(session)
    estimate = smc_log_marginals(
        fitted, batch["y"], batch["mask"], P, jax.random.PRNGKey(seed), R, used, batch.get("u")
    )
    pooled = smc.pool_replicates(estimate, P, session.bin_mask.sum())
    return {**pooled.metrics, "smc_proposal": used}, pooled.log_marginals, pooled.mcse


def supports_smc(config) -> bool:
    """Whether :func:`heldout_smc` applies to runs of ``config``: a continuous latent, and
    either Gaussian observations with a linear readout (the fully adapted proposal needs no
    guide) or a guide with a Gaussian per bin."""
    spec = spec_of(config)
    if not spec.has_latent:
        return False
    return optimal_applies(spec) or config["guide"] in SMC_GUIDES
