"""Predictions of a fitted switching model: states, trajectories, reconstructions, forecasts.

Everything here takes a run's ``config`` and constrained ``params``, rebuilds the model's global
quantities and the guide's trajectory distribution (:class:`Fitted`), then works with pure JAX
functions:

* :func:`trajectory_samples`: draws of h from the guide, [S, B, T, D];
* :func:`smoothed_states`, :func:`viterbi_states`, :func:`sample_states`: the core's smoothed
  marginals, Viterbi path and posterior draws of s given a trajectory;
* :func:`reconstruct`: posterior-mean predicted mean of y;
* :func:`forecast`: k-step forecasts (the guide sees the first T0 bins; the core's filtered
  state at the last seen bin starts Monte Carlo roll-outs of the model);
* :func:`simulate_trials`: trials (s, h, y) simulated from the fitted model;
* :func:`evaluate` and :func:`most_likely_states`: the family's metrics and states.

For ``hmm`` (no continuous latent) the same functions work on the emission likelihoods.
Predictions of a run with weight priors use the weights' posterior median (the AutoNormal's
loc) as point estimates (:func:`~.program.for_prediction`); its ``elbo_per_bin`` draws the
weights from their guide.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.contrib.module import eqx_module
from numpyro.infer import Trace_ELBO

from ...guides.switching import global_guide, trajectory_dist
from ...inference import hmm
from ...inference.metrics import (
    forecast_origins,
    forecast_targets,
    r2_variance_weighted,
    state_scores,
)
from ...models.switching import (
    hmm_log_lik,
    observation_dist,
    predicted_mean,
    roll_forward,
    sample_globals,
    state_potentials,
)
from ...models.switching import simulate as simulate_trial
from .config import fitted_session
from .program import batch_of, build, for_prediction


class Fitted:
    """A fitted switching model: ``spec``, globals ``g``, ``encoder`` (None for hmm), and the
    bound ``model``/``guide`` (for ELBO estimates). ``config``, ``params`` as
    :func:`~.program.for_prediction` returns them."""

    def __init__(self, config, params):
        params = jax.tree_util.tree_map(jnp.asarray, params)
        self.config, self.params = config, params
        program = build(config)
        self.spec, self.model, self.guide = program.spec, program.model, program.guide
        priors = program.model.keywords["priors"]
        with handlers.seed(rng_seed=0), handlers.substitute(data=params):
            values = global_guide(self.spec, priors=priors)
        with handlers.seed(rng_seed=0), handlers.substitute(data={**params, **values}):
            self.g = sample_globals(self.spec, program.nets, priors)
        self.encoder = None
        if self.spec.has_latent:
            with handlers.substitute(data=params):
                self.encoder = eqx_module("encoder", program.nets["encoder"])


def trajectory_samples(fitted: Fitted, y, mask, num_samples: int, key):
    """Draws from q(h | y): [S, B, T, D]. y, mask: [B, T, N]."""
    q = trajectory_dist(fitted.config["guide"], fitted.encoder, y, mask, fitted.spec.latent_dim)
    return q.sample(key, (num_samples,))


def simulate_trials(fitted: Fitted, key, num_trials: int, num_timesteps: int):
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


def _potentials(fitted: Fitted, h=None, y=None, mask=None, u=None):
    """Batched chain potentials: from trajectories h [B, T, D] (with inputs u [B, T, U] or
    None), or (hmm) from y, mask."""
    g = fitted.g
    if h is not None:
        if u is None:
            return jax.vmap(lambda h: state_potentials(g, h))(h) + (None,)
        return jax.vmap(lambda h, u: state_potentials(g, h, u))(h, u) + (None,)
    log_lik = hmm_log_lik(fitted.spec, g, y, mask)
    B = y.shape[0]
    return (
        jnp.broadcast_to(g.log_init, (B,) + g.log_init.shape),
        jnp.broadcast_to(g.log_A, (B,) + g.log_A.shape),
        log_lik,
        mask.any(-1),
    )


def smoothed_states(fitted: Fitted, h=None, y=None, mask=None, u=None):
    """p(s_t | h) (or p(s_t | y) for hmm): [B, T, K]."""
    pots = _potentials(fitted, h, y, mask, u)
    return jax.vmap(lambda a, b, c, m: hmm.smooth(a, b, c, m).marginals)(*pots)


def viterbi_states(fitted: Fitted, h=None, y=None, mask=None, u=None):
    """Most likely state path per trial: int [B, T]."""
    return jax.vmap(hmm.viterbi)(*_potentials(fitted, h, y, mask, u))


def sample_states(fitted: Fitted, key, num_samples: int, h=None, y=None, mask=None, u=None):
    """Posterior draws of state paths: int [B, S, T]."""
    pots = _potentials(fitted, h, y, mask, u)
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


def forecast(fitted: Fitted, y, mask, horizons, num_samples: int, key, origins=None, u=None):
    """k-step forecasts of E[y] from each trial's first T0_i bins.

    The guide sees bins 0..T0_i - 1 of trial i (later bins are masked out); the core's filtered
    state at bin T0_i - 1 starts Monte Carlo roll-outs of the model. y, mask: [B, T, N];
    origins: int [B] T0_i (None: T - max(horizons) for every trial; see
    :func:`forecast_origins`); u: [B, T', U] inputs (T' >= T; bins past T' count as zero
    input) or None. Returns {k: [B, N]} predictions of bin T0_i - 1 + k (0-based), i.e. k bins
    after the last bin the guide saw.
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

    u_seen = None if u is None else u[:, :T]

    def filtered_at_origin(hs):  # [B, T, D] -> [B, K]: only bins before T0_i count
        log_init, log_trans, log_lik = _potentials(fitted, hs, u=u_seen)[:3]
        post = jax.vmap(hmm.smooth)(log_init, log_trans, log_lik, seen)
        return post.marginals[rows, last]

    filtered = jax.vmap(filtered_at_origin)(h)  # [S, B, K]
    h_last = h[:, rows, last]  # [S, B, D]

    def roll(key, h_last, p_last, u_next):
        return roll_forward(g, key, h_last, jnp.log(p_last + 1e-30), steps, u_next)[1]

    u_next = None  # the inputs of bins T0_i .. T0_i + steps - 1 of each trial: [B, steps, U]
    if u is not None:
        padded = jnp.pad(u, ((0, 0), (0, steps), (0, 0)))
        u_next = jax.vmap(lambda x, t: jax.lax.dynamic_slice_in_dim(x, t, steps))(padded, origins)
    keys = jax.random.split(k_roll, S * B).reshape(S, B, -1)
    rolled = jax.vmap(jax.vmap(roll), (0, 0, 0, None))
    future = rolled(keys, h_last, filtered, u_next)  # [S, B, steps, D]
    mean_y = predicted_mean(spec, jax.vmap(jax.vmap(jax.vmap(g.readout)))(future)).mean(0)
    return {k: mean_y[:, k - 1] for k in horizons}


def elbo(model, guide, params, batch, num_samples: int, key) -> float:
    """ELBO estimate of a bound ``model`` and ``guide`` on ``batch`` (every trial once,
    num_particles = num_samples)."""
    params = jax.tree_util.tree_map(jnp.asarray, params)

    def loss(key, batch):
        return Trace_ELBO(num_particles=num_samples).loss(
            key, params, model, guide, batch, num_trials=batch["y"].shape[0]
        )

    return -float(jax.jit(loss)(key, batch))


def _jit(fn, fitted, *static):
    """``fn(fitted, y, mask, *static, key)`` as a jitted function of (y, mask, key)."""
    return jax.jit(lambda y, mask, key: fn(fitted, y, mask, *static, key))


def evaluate(config, params, sessions, *, horizons=(1, 5, 10), num_samples=16, seed=0) -> dict:
    """Metrics of a fitted run on ``sessions``: recon_r2 (observed entries only),
    forecast_r2 {k: r2} with forecast_trials {k: trials scored}, state_accuracy and
    state_balanced_error (with ``states``; observed bins only), elbo_per_bin.

    Forecast horizons count from each trial's own last observed bin (:func:`forecast_origins`);
    a trial whose target bin is unobserved or past its end is left out of that horizon. A
    horizon that no trial (or a single one) can score has forecast_r2 NaN and a reason in
    ``forecast_r2_note`` {k: text}.
    """
    session = fitted_session(config, sessions)
    predict, point_params = for_prediction(config, params)
    fitted = Fitted(predict, point_params)
    y, mask, u = jnp.asarray(session.y), jnp.asarray(session.mask), inputs_of(session)
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    y_hat, h_mean = _jit(reconstruct, fitted, num_samples)(y, mask, keys[0])
    metrics = {"recon_r2": r2_variance_weighted(session.y, np.asarray(y_hat), session.mask)}
    horizons = tuple(int(k) for k in horizons or ())
    horizons = tuple(k for k in horizons if 0 < k < session.num_timesteps)
    if horizons:
        metrics.update(_forecast_scores(fitted, session, horizons, num_samples, keys[1]))
    if session.states is not None:
        path = jax.jit(functools.partial(viterbi_states, fitted))(h_mean, y, mask, u)
        metrics.update(state_scores(np.asarray(path), session.states, session.bin_mask))
    model, guide, at = fitted.model, fitted.guide, fitted.params
    if predict["priors"] != config["priors"]:  # weight priors: the fit's own ELBO
        model, guide, _, _ = build(config)
        at = params
    value = elbo(model, guide, at, batch_of(session), num_samples, keys[2])
    metrics["elbo_per_bin"] = value / float(session.bin_mask.sum())
    return metrics


def predicted_means(config, params, sessions, *, num_samples=16, seed=0) -> list[np.ndarray]:
    """The posterior-mean predicted mean of y (rates under Poisson) of each session, given its
    observed entries only: a list of float (trials, T, N), one per session."""
    session = fitted_session(config, sessions)
    predict, point_params = for_prediction(config, params)
    fitted = Fitted(predict, point_params)
    y, mask = jnp.asarray(session.y), jnp.asarray(session.mask)
    y_hat, _ = _jit(reconstruct, fitted, num_samples)(y, mask, jax.random.PRNGKey(seed))
    y_hat, out, start = np.asarray(y_hat), [], 0
    for s in sessions:  # fitted_session pads every session to the longest trials
        out.append(y_hat[start : start + s.num_trials, : s.num_timesteps])
        start += s.num_trials
    return out


def _forecast_scores(fitted: Fitted, session, horizons, num_samples: int, key) -> dict:
    """forecast_r2, forecast_trials (and forecast_r2_note) of :func:`evaluate`."""
    bins = session.bin_mask
    origins = forecast_origins(bins, horizons)
    # the guide never sees past the latest origin: crop there (equal-length trials: T - max k)
    T_seen = int(origins.max())
    y, mask = jnp.asarray(session.y[:, :T_seen]), jnp.asarray(session.mask[:, :T_seen])
    preds = jax.jit(
        lambda y, mask, origins, key, u: forecast(
            fitted, y, mask, horizons, num_samples, key, origins, u
        )
    )(y, mask, jnp.asarray(origins), key, inputs_of(session))
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


def most_likely_states(config, params, sessions, *, num_samples=16, seed=0) -> np.ndarray:
    """Viterbi path given the guide's posterior-mean trajectory (hmm: given y), int
    (trials, T)."""
    session = fitted_session(config, sessions)
    fitted = Fitted(*for_prediction(config, params))
    return viterbi_path(
        fitted,
        jnp.asarray(session.y),
        jnp.asarray(session.mask),
        num_samples,
        seed,
        u=inputs_of(session),
    )


def viterbi_path(
    fitted: Fitted, y, mask, num_samples: int = 16, seed: int = 0, u=None
) -> np.ndarray:
    """:func:`most_likely_states` of a :class:`Fitted` on y, mask [B, T, N] (inputs u
    [B, T, U] or None): int [B, T]."""
    _, h_mean = _jit(reconstruct, fitted, num_samples)(y, mask, jax.random.PRNGKey(seed))
    return np.asarray(jax.jit(functools.partial(viterbi_states, fitted))(h_mean, y, mask, u))


def inputs_of(session):
    """The session's inputs as a JAX array [B, T, U], or None."""
    return None if session.inputs is None else jnp.asarray(session.inputs)
