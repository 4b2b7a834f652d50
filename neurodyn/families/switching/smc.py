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
SMC_PROPOSALS = ("auto", "lookahead", "optimal", "mixture", "guide")
DEFENSIVE_WEIGHT = 0.5  # share of the model's transition prior in the "mixture" proposal
ESS_THRESHOLD = 0.5  # resample when the effective sample size falls below this share


def optimal_applies(spec) -> bool:
    """Whether the fully adapted proposal is exact for ``spec``: a continuous latent, Gaussian
    observations and a linear readout (any dynamics: h_t given h_{t-1} and s_t is Gaussian)."""
    return spec.has_latent and spec.likelihood == "gaussian" and spec.readout == "linear"


def smc_proposal(fitted: Fitted, proposal: str = "auto") -> str:
    """The proposal :func:`smc_log_marginals` uses: where the fully adapted step is exact
    (:func:`optimal_applies`), ``"lookahead"`` (it also sees the next bin; needs a Normal
    initial distribution) or else ``"optimal"``; otherwise ``"mixture"`` (the guide's per-bin
    Gaussian with the transition prior as a defensive component). ``ValueError`` when the
    requested one does not apply."""
    spec, guide = fitted.spec, fitted.config["guide"]
    if proposal not in SMC_PROPOSALS:
        raise ValueError(f"unknown SMC proposal {proposal!r}; choose one of {SMC_PROPOSALS}")
    if not spec.has_latent:
        raise ValueError("hmm has no continuous latent: its log p(y) is exact (forward algorithm)")
    if proposal == "auto":
        normal_start = isinstance(fitted.g.initial, dist.Normal)
        proposal = (
            ("lookahead" if normal_start else "optimal") if optimal_applies(spec) else "mixture"
        )
    if proposal in ("lookahead", "optimal") and not optimal_applies(spec):
        raise ValueError(
            f"the {proposal} proposal needs Gaussian observations and a linear readout"
        )
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

    * ``"lookahead"`` (Gaussian observations, linear readout, Normal initial distribution):
      r(h_t) = p(h_t | h_{1:t-1}, y_t, y_{t+1}), a mixture over the state pairs (s_t, s_{t+1})
      of Gaussians (exact for linear, non-recurrent dynamics; f_k and the recurrent
      transitions are linearised at the one-step posterior mean otherwise). The weight also
      gains L_{t+1} - L_t, L_{t+1} = log p(y_{t+1} | h_{1:t}) (the next bin's fully adapted
      normaliser), so after bin t the particles target p(h_{1:t} | y_{1:t+1}) and are
      resampled already knowing y_{t+1}; the L's cancel over the trial, the estimate of p(y)
      stays unbiased. This is a one-bin lookahead (block) sampler (Lin, Chen & Liu 2013;
      Doucet, Briers & Senecal 2006): where y_{t+1} reveals a switch of the discrete state,
      the one-step proposal below has already committed h_t and the weights collapse there.

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
    if proposal == "lookahead" and not isinstance(g.initial, dist.Normal):
        raise ValueError("the lookahead proposal needs a Normal initial_state prior")
    if proposal == "optimal" and not isinstance(g.initial, dist.Normal) and guide not in SMC_GUIDES:
        raise ValueError(
            "the first bin needs a Normal initial_state prior or a dkf/meanfield guide"
        )
    use_guide = proposal not in ("lookahead", "optimal") or not isinstance(g.initial, dist.Normal)
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

    C, d = (g.readout.C, g.readout.d) if optimal_applies(spec) else (None, None)  # [D, N], [N]

    def observed(y_t, mask_t):
        """A bin's observed neurons in information form: (C W C^T [D, D], C W (y_t - d) [D],
        sum over them of w (y - d)^2 + log(2 pi r^2)), W = diag(w), w = 1/r^2 or 0 if masked."""
        w = jnp.where(mask_t, 1.0 / g.obs_scale**2, 0.0)
        resid = jnp.where(mask_t, y_t - d, 0.0)
        const = jnp.where(mask_t, resid**2 * w + jnp.log(2 * jnp.pi * g.obs_scale**2), 0.0)
        return (C * w) @ C.T, (C * w) @ resid, const.sum()

    def adapted_terms(means, log_pred, scale, y_t, mask_t):
        """The fully adapted step's mixture over k: each component's posterior mean [P, K, D],
        covariance [K, D, D] and log weight log pred_k + log N(y_t; C^T f_k + d, C^T Q_k C + R)
        [P, K] (on the observed neurons)."""
        CWC, CWy, const = observed(y_t, mask_t)
        precision = jax.vmap(jnp.diag)(1.0 / scale**2) + CWC  # [K, D, D]
        cov = jnp.linalg.inv(precision)
        cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
        info = CWy - jnp.einsum("ij,pkj->pki", CWC, means)  # [P, K, D]: C W (y - d - C^T f_k)
        shift = jnp.einsum("kij,pkj->pki", cov, info)
        quad = (  # W-weighted squared residual of y - d - C^T f_k, minus the information's part
            const
            - 2 * (means * CWy).sum(-1)
            + jnp.einsum("pki,ij,pkj->pk", means, CWC, means)
            - (info * shift).sum(-1)
        )
        log_norm = -0.5 * (
            jnp.log(scale**2).sum(-1) + jnp.linalg.slogdet(precision)[1] + quad
        )  # [P, K]: log N(y_t; C^T f_k + d, C^T Q_k C + R) on the observed neurons
        return means + shift, cov, log_pred + log_norm

    def adapted(key, means, log_pred, scale, y_t, mask_t):
        """The fully adapted step (see above): (h [P, D], log normaliser [P])."""
        mean, cov, log_mix = adapted_terms(means, log_pred, scale, y_t, mask_t)
        k_state, k_h = jax.random.split(key)
        k = jax.random.categorical(k_state, log_mix)  # [P]
        P = means.shape[0]
        chol = jnp.linalg.cholesky(cov)[k]  # [P, D, D]
        h = mean[jnp.arange(P), k] + jnp.einsum("pij,pj->pi", chol, jax.random.normal(k_h, (P, D)))
        return h, jax.nn.logsumexp(log_mix, axis=-1)

    def ahead(h, log_alpha, u_next):
        """What bin t+1 sees of particles at h_t [P, D]: f_k(h_t, u_{t+1}) [P, K, D] and
        log p(s_{t+1} = k | h_{1:t}) [P, K] (u_next: [U] or None)."""
        u_next = None if u_next is None else jnp.broadcast_to(u_next, (h.shape[0],) + u_next.shape)
        log_trans = log_transitions(g, h, u_next)  # [P, K, K] or [K, K]
        log_pred = jax.nn.logsumexp(log_alpha[..., :, None] + log_trans, axis=-2)
        return dynamics_means(g, h, u_next), log_pred

    def lookahead(key, means, log_pred, scale, y_t, mask_t, y_next, mask_next, u_next):
        """Draw h_t from r(h_t) = p(h_t | h_{1:t-1}, y_t, y_{t+1}) as a mixture over state pairs
        (j, k) = (s_t, s_{t+1}): (h [P, D], log r(h) [P]).

        Given (j, k), h_t ~ N(f_j(h_{t-1}), Q_j) and h_{t+1} ~ N(f_k(h_t), Q_k) are jointly
        Gaussian with y_t and y_{t+1} once f_k is linearised at the one-step posterior mean of
        h_t under j, where p(s_{t+1} = k | s_t = j, h_t) is evaluated too (both exact for
        linear, non-recurrent dynamics). The pair's weight is pred_j p(k | j) times the
        integral of that joint over (h_t, h_{t+1}); its draw is h_t's conditional.
        means: [P, K, D] f_j(h_{t-1}); log_pred: [P, K]; scale: [K, D]; u_next: [U] or None."""
        P = means.shape[0]
        center = adapted_terms(means, log_pred, scale, y_t, mask_t)[0].reshape(P * K, D)
        if u_next is None:
            jac = jax.vmap(jax.jacfwd(g.dynamics))(center)  # [P K, K, D, D]
            f_center = jax.vmap(g.dynamics)(center)  # [P K, K, D]
            log_trans = log_transitions(g, center)
        else:
            u_rep = jnp.broadcast_to(u_next, (P * K,) + u_next.shape)
            jac = jax.vmap(jax.jacfwd(g.dynamics))(center, u_rep)
            f_center = jax.vmap(g.dynamics)(center, u_rep)
            log_trans = log_transitions(g, center, u_rep)
        A = jac.reshape(P, K, K, D, D)  # [p, j, k, out, in]
        b = f_center.reshape(P, K, K, D) - jnp.einsum("pjkei,pji->pjke", A, center.reshape(P, K, D))
        if log_trans.ndim == 2:  # p(k | j), the same everywhere
            row = jnp.broadcast_to(log_trans, (P, K, K))
        else:  # row j of the transitions at particle p's centre under j
            row = jnp.einsum("pjjk->pjk", log_trans.reshape(P, K, K, K))
        CWC_t, CWy_t, const_t = observed(y_t, mask_t)
        CWC_n, CWy_n, const_n = observed(y_next, mask_next)
        prior_prec = 1.0 / scale**2  # [K(j), D]
        q_prec = 1.0 / g.process_scale**2  # [K(k), D]
        # Given (j, k), integrating h_{t+1} ~ N(A h_t + b, Q_k) out against y_{t+1} adds
        # A^T S_k A to h_t's precision and A^T G_k (C W (y_{t+1} - d) - C W C^T b) to its
        # information, with B_k = Q_k^-1 + C W C^T, G_k = Q_k^-1 B_k^-1 and S_k = G_k C W C^T
        # (= Q_k^-1 - Q_k^-1 B_k^-1 Q_k^-1, written without that difference's cancellation:
        # the precision stays positive definite in float32).
        B = jax.vmap(jnp.diag)(q_prec) + CWC_n  # [K, D, D]
        B_inv = jnp.linalg.inv(B)
        G = q_prec[:, :, None] * B_inv  # [K, D, D]
        S = G @ CWC_n
        S = 0.5 * (S + jnp.swapaxes(S, -1, -2))
        precision = (jax.vmap(jnp.diag)(prior_prec) + CWC_t)[None, :, None] + jnp.einsum(
            "pjkei,kef,pjkfg->pjkig", A, S, A
        )
        resid_next = CWy_n - jnp.einsum("ef,pjkf->pjke", CWC_n, b)  # [P, K, K, D]
        info = (means * prior_prec + CWy_t)[:, :, None] + jnp.einsum(
            "pjkei,kef,pjkf->pjki", A, G, resid_next
        )
        info_next = b * q_prec + CWy_n  # [P, K, K, D]: h_{t+1}'s information without h_t
        const = (
            ((means**2) * prior_prec + jnp.log(2 * jnp.pi * scale**2)).sum(-1)[:, :, None]
            + ((b**2) * q_prec).sum(-1)
            + jnp.log(2 * jnp.pi * g.process_scale**2).sum(-1)
            + const_t
            + const_n
        )  # [P, K, K]
        chol = jnp.linalg.cholesky(precision)  # of h_t's precision given (j, k), y_t, y_{t+1}
        mean = jax.scipy.linalg.cho_solve((chol, True), info[..., None])[..., 0]
        half_log_det = jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)
        log_integral = D * jnp.log(2 * jnp.pi) - 0.5 * (
            const
            - jnp.einsum("pjke,kef,pjkf->pjk", info_next, B_inv, info_next)
            - (info * mean).sum(-1)
            + jnp.linalg.slogdet(B)[1]
            + 2 * half_log_det
        )
        log_mix = (log_pred[:, :, None] + row + log_integral).reshape(P, K * K)
        chol, mean = chol.reshape(P, K * K, D, D), mean.reshape(P, K * K, D)
        k_pair, k_h = jax.random.split(key)
        pair = jax.random.categorical(k_pair, log_mix)  # [P]
        noise = jax.scipy.linalg.solve_triangular(  # L^-T z has covariance (L L^T)^-1
            jnp.swapaxes(chol[jnp.arange(P), pair], -1, -2),
            jax.random.normal(k_h, (P, D, 1)),
            lower=False,
        )[..., 0]
        h = mean[jnp.arange(P), pair] + noise
        white = jnp.einsum("pcij,pci->pcj", chol, h[:, None, :] - mean)  # L^T (h - mean)
        log_density = (
            jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)
            - 0.5 * (white**2).sum(-1)
            - 0.5 * D * jnp.log(2 * jnp.pi)
        )  # [P, K K]
        log_r = jax.nn.logsumexp(jax.nn.log_softmax(log_mix, -1) + log_density, -1)
        return h, log_r

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
        T = y.shape[0]
        no_inputs = u.shape[-1] == 0

        def looked_ahead(key, means, log_pred, scale, t, look_before):
            """The lookahead step into bin t: (particles, incremental log weight). The weight
            multiplies in L_{t+1} = log p(y_{t+1} | h_{1:t}) and divides out L_t, so the
            particles after bin t target p(h_{1:t} | y_{1:t+1}); the L's cancel over a
            trial (the last bin has none ahead)."""
            t_next = jnp.minimum(t + 1, T - 1)
            mask_next = mask[t_next] & (t + 1 < T)
            u_next = None if no_inputs else u[t_next]
            h, log_r = lookahead(
                key, means, log_pred, scale, y[t], mask[t], y[t_next], mask_next, u_next
            )
            log_prior, log_alpha = prior_log_prob(h, means, log_pred, scale)
            means_next, pred_next = ahead(h, log_alpha, u_next)
            look = jax.nn.logsumexp(
                adapted_terms(means_next, pred_next, g.process_scale, y[t_next], mask_next)[2], -1
            )
            log_w = log_prior + emission(h, y[t], mask[t]) - log_r + look - look_before
            return (h, log_alpha, look), log_w

        def init(key, P):
            log_alpha = jnp.broadcast_to(g.log_init, (P, K))  # h_1 says nothing of s_1
            none_ahead = jnp.zeros(P)
            if proposal == "lookahead":  # every state starts from the initial distribution
                means = jnp.broadcast_to(g.initial.loc, (P, K, D))
                scale = jnp.broadcast_to(g.initial.scale, (K, D))
                return looked_ahead(key, means, log_alpha, scale, 0, none_ahead)
            if not use_guide:
                means = jnp.broadcast_to(g.initial.loc, (P, 1, D))
                scale = jnp.broadcast_to(g.initial.scale, (1, D))
                h, log_w = adapted(key, means, jnp.zeros((P, 1)), scale, y[0], mask[0])
                return (h, log_alpha, none_ahead), log_w
            q = guide_dist(jnp.zeros((P, D)), features[0])
            k_pick, k_q, k_p = jax.random.split(key, 3)
            h = jnp.where(
                jax.random.uniform(k_pick, (P, 1)) < a, q.sample(k_q), g.initial.sample(k_p, (P, D))
            )
            log_prior = g.initial.log_prob(h).sum(-1)
            log_r = mixture_log_prob(q.log_prob(h).sum(-1), log_prior)
            return (h, log_alpha, none_ahead), log_prior + emission(h, y[0], mask[0]) - log_r

        def step(key, particles, t):
            h_prev, log_alpha, look = particles
            means, log_pred = ahead(h_prev, log_alpha, None if no_inputs else u[t])
            if proposal == "lookahead":
                return looked_ahead(key, means, log_pred, g.process_scale, t, look)
            if proposal == "optimal":
                h, log_w = adapted(key, means, log_pred, g.process_scale, y[t], mask[t])
                log_alpha = prior_log_prob(h, means, log_pred, g.process_scale)[1]
                return (h, log_alpha, look), log_w
            q = guide_dist(h_prev, features[t])
            h, log_prior, log_r, log_alpha = mixed(key, q, means, log_pred, g.process_scale)
            return (h, log_alpha, look), log_prior + emission(h, y[t], mask[t]) - log_r

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
