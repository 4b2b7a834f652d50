"""Predictions of a fitted switching model: states, trajectories, reconstructions, forecasts.

Everything here takes a run's ``config`` and constrained ``params`` and rebuilds the model's
global quantities (:func:`globals_at`) and the guide's trajectory distribution, then works with
pure JAX functions:

* :func:`trajectory_samples`: draws of h from the guide, [S, B, T, D];
* :func:`smoothed_states`, :func:`viterbi_states`, :func:`sample_states`: the core's smoothed
  marginals, Viterbi path and posterior draws of s given a trajectory;
* :func:`reconstruct`: posterior-mean predicted mean of y;
* :func:`forecast`: k-step forecasts (the guide sees the first T0 bins; the core's filtered
  state at the last seen bin starts Monte Carlo roll-outs of the model);
* :func:`simulate`: trials (s, h, y) simulated from the fitted model;
* :func:`smc_log_marginals`: per-trial log p(y) by sequential Monte Carlo, with the fully
  adapted proposal where it is exact (:mod:`neurodyn.inference.smc`);
* :func:`evaluate` and :func:`report`: the family's metrics and figures.

For ``hmm`` (no continuous latent) the same functions work on the emission likelihoods.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.contrib.module import eqx_module
from numpyro.infer import Trace_ELBO

from ..guides.switching import global_guide, trajectory_dist
from ..models.switching import (
    dynamics_means,
    hmm_log_lik,
    log_transitions,
    observation_dist,
    predicted_mean,
    resolve_priors,
    roll_forward,
    sample_globals,
    state_potentials,
)
from ..models.switching import simulate as simulate_trial
from . import hmm, smc
from .metrics import (
    forecast_origins,
    forecast_targets,
    match_labels,
    r2_variance_weighted,
    state_scores,
)


class Fitted:
    """A fitted switching model: ``spec``, globals ``g``, ``encoder`` (None for hmm), and the
    bound ``model``/``guide`` (for ELBO estimates)."""

    def __init__(self, config, params):
        from ..families.switching import build

        params = jax.tree_util.tree_map(jnp.asarray, params)
        self.config, self.params = config, params
        self.spec, self.model, self.guide = build(config)
        modules = self.model.keywords["modules"]
        priors = resolve_priors(self.spec, config["priors"])
        with handlers.seed(rng_seed=0), handlers.substitute(data=params):
            values = global_guide(self.spec, priors=priors)
        with handlers.seed(rng_seed=0), handlers.substitute(data={**params, **values}):
            self.g = sample_globals(self.spec, modules, priors)
        self.encoder = None
        if self.spec.has_latent:
            with handlers.substitute(data=params):
                self.encoder = eqx_module("encoder", modules["encoder"])


def trajectory_samples(fitted: Fitted, y, mask, num_samples: int, key):
    """Draws from q(h | y): [S, B, T, D]. y, mask: [B, T, N]."""
    q = trajectory_dist(fitted.config["guide"], fitted.encoder, y, mask, fitted.spec.latent_dim)
    return q.sample(key, (num_samples,))


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

    y, mask: [B, T, N]. The fitted globals (MAP values) are held fixed; a run with weight priors
    is evaluated at their posterior median (see ``_for_prediction`` of the family).
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

    def one_trial(key, y, mask, features):
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
            log_trans = log_transitions(g, h_prev)  # [P, K, K] or [K, K]
            log_pred = jax.nn.logsumexp(log_alpha[..., :, None] + log_trans, axis=-2)  # [P, K]
            means = dynamics_means(g, h_prev)  # [P, K, D]
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
        return jax.jit(run)(jax.random.split(key, B), y, mask, features)
    keys = jax.random.split(key, num_replicates * B).reshape(num_replicates, B, -1)
    return jax.jit(jax.vmap(run, (0, None, None, None)))(keys, y, mask, features)


def simulate(fitted: Fitted, key, num_trials: int, num_timesteps: int):
    """Trials simulated from the fitted model (its globals, the generative story): s_1 ~ pi,
    h_1 ~ p_0, s_t | s_{t-1}, h_{t-1}, h_t ~ N(f_{s_t}(h_{t-1}), q_{s_t}^2), y_t ~ p(y | h_t).

    Returns (s int32 [B, T], h [B, T, D], y [B, T, N]) with B = num_trials, T = num_timesteps.
    """
    spec, g = fitted.spec, fitted.g
    if not spec.has_latent:
        raise ValueError("hmm has no continuous latent to simulate")
    k_path, k_obs = jax.random.split(key)
    s, h = jax.vmap(lambda k: simulate_trial(g, k, num_timesteps))(
        jax.random.split(k_path, num_trials)
    )
    drive = jax.vmap(jax.vmap(g.readout))(h)
    y = observation_dist(spec, drive, g.obs_scale).sample(k_obs)
    return s, h, y


def _potentials(fitted: Fitted, h=None, y=None, mask=None):
    """Batched chain potentials: from trajectories h [B, T, D], or (hmm) from y, mask."""
    g = fitted.g
    if h is not None:
        return jax.vmap(lambda h: state_potentials(g, h))(h) + (None,)
    log_lik = hmm_log_lik(fitted.spec, g, y, mask)
    B = y.shape[0]
    return (
        jnp.broadcast_to(g.log_init, (B,) + g.log_init.shape),
        jnp.broadcast_to(g.log_A, (B,) + g.log_A.shape),
        log_lik,
        mask.any(-1),
    )


def smoothed_states(fitted: Fitted, h=None, y=None, mask=None):
    """p(s_t | h) (or p(s_t | y) for hmm): [B, T, K]."""
    pots = _potentials(fitted, h, y, mask)
    return jax.vmap(lambda a, b, c, m: hmm.smooth(a, b, c, m).marginals)(*pots)


def viterbi_states(fitted: Fitted, h=None, y=None, mask=None):
    """Most likely state path per trial: int [B, T]."""
    return jax.vmap(hmm.viterbi)(*_potentials(fitted, h, y, mask))


def sample_states(fitted: Fitted, key, num_samples: int, h=None, y=None, mask=None):
    """Posterior draws of state paths: int [B, S, T]."""
    pots = _potentials(fitted, h, y, mask)
    keys = jax.random.split(key, pots[0].shape[0])
    return jax.vmap(lambda k, a, b, c, m: hmm.sample(k, a, b, c, m, num_samples))(keys, *pots)


def reconstruct(fitted: Fitted, y, mask, num_samples: int, key):
    """Posterior-mean predicted mean of y [B, T, N], and the mean trajectory [B, T, D] (None
    for hmm)."""
    spec, g = fitted.spec, fitted.g
    if not spec.has_latent:
        probs = smoothed_states(fitted, y=y, mask=mask)
        return probs @ predicted_mean(spec, g.readout), None
    h = trajectory_samples(fitted, y, mask, num_samples, key)
    drive = jax.vmap(jax.vmap(jax.vmap(g.readout)))(h)
    return predicted_mean(spec, drive).mean(0), h.mean(0)


def forecast(fitted: Fitted, y, mask, horizons, num_samples: int, key, origins=None):
    """k-step forecasts of E[y] from each trial's first T0_i bins.

    The guide sees bins 0..T0_i - 1 of trial i (later bins are masked out); the core's filtered
    state at bin T0_i - 1 starts Monte Carlo roll-outs of the model. y, mask: [B, T, N];
    origins: int [B] T0_i (None: T - max(horizons) for every trial; see
    :func:`forecast_origins`). Returns {k: [B, N]} predictions of bin T0_i - 1 + k (0-based),
    i.e. k bins after the last bin the guide saw.
    """
    spec, g = fitted.spec, fitted.g
    B, T = y.shape[:2]
    steps = max(horizons)
    if origins is None:
        origins = jnp.full((B,), T - steps, jnp.int32)
    origins = jnp.asarray(origins, jnp.int32)
    seen = jnp.arange(T)[None, :] < origins[:, None]  # [B, T]
    m0 = mask & seen[..., None]
    last = origins - 1  # [B]
    rows = jnp.arange(B)
    if not spec.has_latent:
        # future bins carry no likelihood, so the smoothed marginals at T0_i - 1 are filtered
        filtered = smoothed_states(fitted, y=y, mask=m0)[rows, last]  # [B, K]
        A = jnp.exp(g.log_A)
        out, p = {}, filtered
        for k in range(1, steps + 1):
            p = p @ A
            if k in horizons:
                out[k] = p @ predicted_mean(spec, g.readout)
        return out
    k_h, k_roll = jax.random.split(key)
    h = trajectory_samples(fitted, y, m0, num_samples, k_h)  # [S, B, T, D]
    S = h.shape[0]

    def filtered_at_origin(hs):  # [B, T, D] -> [B, K]: only bins before T0_i count
        log_init, log_trans, log_lik = jax.vmap(lambda h: state_potentials(g, h))(hs)
        post = jax.vmap(hmm.smooth)(log_init, log_trans, log_lik, seen)
        return post.marginals[rows, last]

    filtered = jax.vmap(filtered_at_origin)(h)  # [S, B, K]
    h_last = h[:, rows, last]  # [S, B, D]

    def roll(key, h_last, p_last):
        return roll_forward(g, key, h_last, jnp.log(p_last + 1e-30), steps)[1]

    keys = jax.random.split(k_roll, S * B).reshape(S, B, -1)
    future = jax.vmap(jax.vmap(roll))(keys, h_last, filtered)  # [S, B, steps, D]
    mean_y = predicted_mean(spec, jax.vmap(jax.vmap(jax.vmap(g.readout)))(future)).mean(0)
    return {k: mean_y[:, k - 1] for k in horizons}


def elbo(fitted: Fitted, batch, num_samples: int, key) -> float:
    """ELBO estimate (full-data scale, num_particles = num_samples, no warm-start pull)."""

    def loss(key, batch):
        return Trace_ELBO(num_particles=num_samples).loss(
            key, fitted.params, fitted.model, fitted.guide, batch, num_trials=batch["y"].shape[0]
        )

    return -float(jax.jit(loss)(key, batch))


def _jit(fn, fitted, *static):
    """``fn(fitted, y, mask, *static, key)`` as a jitted function of (y, mask, key)."""
    return jax.jit(lambda y, mask, key: fn(fitted, y, mask, *static, key))


def evaluate(config, params, session, *, horizons=(1, 5, 10), num_samples=16, seed=0) -> dict:
    """Metrics of a fitted run on ``session``: recon_r2 (observed entries only),
    forecast_r2 {k: r2} with forecast_trials {k: trials scored}, state_accuracy and
    state_balanced_error (with ``states``; observed bins only), elbo_per_bin.

    Forecast horizons count from each trial's own last observed bin (:func:`forecast_origins`);
    a trial whose target bin is unobserved or past its end is left out of that horizon. A
    horizon that no trial (or a single one) can score has forecast_r2 NaN and a reason in
    ``forecast_r2_note`` {k: text}.
    """
    fitted = Fitted(config, params)
    y, mask = jnp.asarray(session.y), jnp.asarray(session.mask)
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    y_hat, h_mean = _jit(reconstruct, fitted, num_samples)(y, mask, keys[0])
    metrics = {"recon_r2": r2_variance_weighted(session.y, np.asarray(y_hat), session.mask)}
    horizons = tuple(int(k) for k in horizons or ())
    horizons = tuple(k for k in horizons if 0 < k < session.num_timesteps)
    if horizons:
        metrics.update(_forecast_scores(fitted, session, horizons, num_samples, keys[1]))
    if session.states is not None:
        path = jax.jit(functools.partial(viterbi_states, fitted))(h_mean, y, mask)
        metrics.update(state_scores(np.asarray(path), session.states, session.bin_mask))
    batch = {"y": y, "mask": mask}
    metrics["elbo_per_bin"] = elbo(fitted, batch, num_samples, keys[2]) / float(
        session.bin_mask.sum()
    )
    return metrics


def _forecast_scores(fitted: Fitted, session, horizons, num_samples: int, key) -> dict:
    """forecast_r2, forecast_trials (and forecast_r2_note) of :func:`evaluate`."""
    bins = session.bin_mask
    origins = forecast_origins(bins, horizons)
    # the guide never sees past the latest origin: crop there (equal-length trials: T - max k)
    T_seen = int(origins.max())
    y, mask = jnp.asarray(session.y[:, :T_seen]), jnp.asarray(session.mask[:, :T_seen])
    preds = jax.jit(
        lambda y, mask, origins, key: forecast(fitted, y, mask, horizons, num_samples, key, origins)
    )(y, mask, jnp.asarray(origins), key)
    rows = np.arange(session.num_trials)
    r2, scored, notes = {}, {}, {}
    for k, p in preds.items():
        keep = forecast_targets(bins, origins, k)
        t = np.minimum(origins - 1 + k, session.num_timesteps - 1)
        scored[str(k)] = int(keep.sum())
        if keep.sum() < 2:
            r2[str(k)] = float("nan")
            notes[str(k)] = (
                f"{int(keep.sum())} trial(s) long enough for a {k}-bin forecast; r2 needs 2"
            )
            continue
        r2[str(k)] = r2_variance_weighted(
            session.y[rows, t][keep], np.asarray(p)[keep], session.mask[rows, t][keep]
        )
    out = {"forecast_r2": r2, "forecast_trials": scored}
    if notes:
        out["forecast_r2_note"] = notes
    return out


def most_likely_states(config, params, session, *, num_samples=16, seed=0) -> np.ndarray:
    """Viterbi path given the guide's posterior-mean trajectory, int (trials, T)."""
    fitted = Fitted(config, params)
    y, mask = jnp.asarray(session.y), jnp.asarray(session.mask)
    _, h_mean = _jit(reconstruct, fitted, num_samples)(y, mask, jax.random.PRNGKey(seed))
    return np.asarray(jax.jit(functools.partial(viterbi_states, fitted))(h_mean, y, mask))


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def report(config, params, session, out_dir, *, num_samples=16, seed=0) -> list[Path]:
    """PNGs: ``states.png`` (Viterbi vs reference), ``reconstruction.png`` (a few neurons),
    ``flow_fields.png`` (per-state flows in the first two latent dimensions).

    Only observed data are drawn: bins without any observed neuron are blank in the state
    rasters and left out of the flow fields' trajectories, and masked entries are gaps in the
    reconstruction's data and model curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fitted = Fitted(config, params)
    y, mask = jnp.asarray(session.y), jnp.asarray(session.mask)
    y_hat, h_mean = _jit(reconstruct, fitted, num_samples)(y, mask, jax.random.PRNGKey(seed))
    path = np.asarray(jax.jit(functools.partial(viterbi_states, fitted))(h_mean, y, mask))
    K = fitted.spec.num_states
    bins = session.bin_mask  # [R, T]
    if session.states is not None:
        path = path.copy()
        path[bins] = match_labels(path[bins], session.states[bins], K)
    files = []

    trials = min(4, session.num_trials)
    rows = 2 if session.states is not None else 1
    fig, axes = plt.subplots(trials, 1, figsize=(8, 0.6 * rows * trials + 0.8), squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        raster = [path[i]] if rows == 1 else [session.states[i], path[i]]
        raster = np.where(bins[i], np.array(raster, float), np.nan)  # padding drawn blank
        ax.imshow(raster, aspect="auto", cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
        ax.set_yticks(range(rows), ["model"] if rows == 1 else ["truth", "model"])
        ax.set_ylabel(f"trial {i}", rotation=0, ha="right", va="center")
    axes[-1, 0].set_xlabel("bin")
    fig.suptitle("Viterbi states" + (" vs reference" if rows == 2 else ""))
    files.append(_save(fig, out_dir / "states.png"))

    neurons = min(4, session.num_neurons)
    fig, axes = plt.subplots(neurons, 1, figsize=(8, 1.5 * neurons), sharex=True, squeeze=False)
    seen = np.asarray(session.mask[0], bool)  # [T, N]
    for n, ax in enumerate(axes[:, 0]):
        ax.plot(np.where(seen[:, n], session.y[0, :, n], np.nan), color="0.6", lw=1, label="data")
        model_n = np.where(seen[:, n], np.asarray(y_hat)[0, :, n], np.nan)
        ax.plot(model_n, color="C3", lw=1.2, label="model")
        ax.set_ylabel(f"neuron {n}")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("bin")
    fig.suptitle("reconstruction (trial 0)")
    files.append(_save(fig, out_dir / "reconstruction.png"))

    if h_mean is not None and fitted.spec.latent_dim >= 2:
        files.append(_flow_fields(plt, fitted, np.asarray(h_mean), path, bins, out_dir))
    return files


def _flow_fields(plt, fitted: Fitted, h, path, bins, out_dir: Path) -> Path:
    """Arrows f_k(h) - h on a grid over dims 0, 1 (others at their mean), per state, over the
    observed bins' trajectories. h: [R, T, D]; path: int [R, T]; bins: bool [R, T]."""
    K = fitted.spec.num_states
    h = np.where(bins[..., None], h, np.nan)  # padding breaks the trajectories' lines
    flat = h.reshape(-1, h.shape[-1])
    observed = bins.reshape(-1)
    lo, hi = flat[observed, :2].min(0), flat[observed, :2].max(0)
    pad = 0.1 * (hi - lo)
    gx, gy = np.meshgrid(*(np.linspace(lo[i] - pad[i], hi[i] + pad[i], 15) for i in range(2)))
    grid = np.tile(flat[observed].mean(0), (gx.size, 1))
    grid[:, 0], grid[:, 1] = gx.ravel(), gy.ravel()
    steps = np.asarray(jax.vmap(fitted.g.dynamics)(jnp.asarray(grid, jnp.float32))) - grid[:, None]
    fig, axes = plt.subplots(1, K, figsize=(4 * K, 4), squeeze=False)
    for k, ax in enumerate(axes[0]):
        ax.quiver(
            gx,
            gy,
            steps[:, k, 0].reshape(gx.shape),
            steps[:, k, 1].reshape(gx.shape),
            color=f"C{k}",
            alpha=0.8,
        )
        on = (path.ravel() == k) & observed
        ax.plot(flat[:, 0], flat[:, 1], color="0.85", lw=0.5, zorder=0)
        ax.scatter(flat[on, 0], flat[on, 1], s=2, color=f"C{k}", alpha=0.4)
        ax.set_title(f"state {k}")
        ax.set_xlabel("h[0]")
    axes[0, 0].set_ylabel("h[1]")
    fig.suptitle("per-state flow fields (posterior-mean trajectories, Viterbi colours)")
    return _save(fig, out_dir / "flow_fields.png")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
