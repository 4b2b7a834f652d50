"""Predictions of a fitted meta-family run: posterior means of y, k-step forecasts, the
held-out metrics of ``neurodyn evaluate``, embeddings and vector fields.

Shapes: a stacked batch holds y, mask (M, R, T, N_max), trial_mask (M, R) and rec (M,)
(:func:`neurodyn.families.meta.batches.stack_sessions`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import handlers
from numpyro.infer import Trace_ELBO

from ...data.session import Session
from ...inference.metrics import forecast_origins, forecast_targets, ridge_decode_r2
from ...models import meta as models
from ...models import weights
from ...models.weights import posterior_median_weights
from .batches import observed_bins, stack_sessions
from .config import priors_of
from .networks import build, fitted_networks


def rollout(transition, z0, steps: int, u=None):
    """Noise-free roll-forward: z0 (M, B, D) -> (M, B, steps, D) of f(z0, u_1), f(f(z0, u_1),
    u_2), ...; u: (M, B, steps, U) the inputs of the bins rolled into, or None."""
    M, B, D = z0.shape
    u = jnp.zeros((M, B, steps, 0)) if u is None else u

    def step(z, u_t):
        z = transition(z, u_t if u_t.shape[-1] else None).reshape(M, B, D)
        return z, z

    _, zs = jax.lax.scan(step, z0, jnp.moveaxis(u, 2, 0))
    return jnp.moveaxis(zs, 0, 2)


def forecast_mean(rec, e, z0, steps: int, u=None, *, spec, nets, priors):
    """Predicted mean of y rolled forward noise-free from ``z0`` (M, B, D): (M, B, steps, N).

    rec: (M,) recording indices; e: (M, d_e) embeddings or None; u: (M, B, steps, U) inputs of
    the forecast bins, or None (a run without inputs). Run it with the fitted params
    substituted and the guide's draws conditioned (weights with a prior are drawn at the
    guide's values), as the model would see them.
    """
    dynamics = weights.bind_network("dynamics", nets.dynamics, priors["dynamics_weights"])
    adapter = None
    if nets.adapter is not None:
        adapter = weights.bind_network("adapter", nets.adapter, priors["hypernetwork_weights"])
    f = models.recording_dynamics(spec, dynamics, adapter, e, rec)
    C = numpyro.param("readout_weight")[rec]
    d = numpyro.param("readout_bias")[rec]
    return models.readout_mean(spec, rollout(f, z0, steps, u), C, d)


def _predictor(config: dict, forecast: int):
    """jitted (params, batch, key) -> (y_mean (M,R,T,N), y_forecast (M,R,forecast,N) or None,
    embedding loc (M, d_e) or None): one draw of the guide and the model given it. A forecast
    of a run with inputs reads the forecast bins' inputs from ``batch["u_next"]``
    (M, R, forecast, U)."""
    model, guide, spec, nets = build(config)
    roll = functools.partial(forecast_mean, spec=spec, nets=nets, priors=priors_of(config))

    def run(fn, params, values, key):
        return handlers.seed(handlers.substitute(handlers.condition(fn, values), params), key)

    @jax.jit
    def predict(params, batch, key):
        g = handlers.trace(handlers.seed(handlers.substitute(guide, data=params), key))
        guide_trace = g.get_trace(batch)
        values = {k: v["value"] for k, v in guide_trace.items() if v["type"] == "sample"}
        model_trace = handlers.trace(run(model, params, values, key)).get_trace(batch)
        e = values["embedding"][:, 0] if spec.embedding else None
        y_forecast = None
        if forecast:
            z_last = values["z"][:, :, -1]
            u_next = batch.get("u_next")
            y_forecast = run(roll, params, values, key)(batch["rec"], e, z_last, forecast, u_next)
        e_loc = guide_trace["embedding"]["fn"].mean[:, 0] if spec.embedding else None
        return model_trace["y_mean"]["value"], y_forecast, e_loc

    return predict


def posterior_means(config, params, batch, *, forecast=0, num_samples=8, seed=0):
    predict = _predictor(config, forecast)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    batch = jax.tree_util.tree_map(jnp.asarray, batch)
    total_y = total_f = None
    for s in range(num_samples):
        y_mean, y_fore, e_loc = predict(params, batch, jax.random.PRNGKey(seed * 7919 + s))
        total_y = y_mean if total_y is None else total_y + y_mean
        if forecast:
            total_f = y_fore if total_f is None else total_f + y_fore
    mean_f = None if total_f is None else np.asarray(total_f) / num_samples
    return np.asarray(total_y) / num_samples, mean_f, e_loc


def sse_sst(y, pred, mask):
    """(SSE, SST) per recording-neuron pooled; y, pred: (R, T, N), mask (R, T, N)."""
    w = mask.astype(np.float64)
    count = np.maximum(w.sum((0, 1)), 1)
    mean = (w * y).sum((0, 1)) / count
    return float((w * (y - pred) ** 2).sum()), float((w * (y - mean) ** 2).sum())


def evaluate(config, params, sessions, *, horizons=(1, 5, 10), num_samples=32, seed=0) -> dict:
    """``recon_r2``, ``forecast_r2`` {k: r2}, ``elbo_per_bin``, ``behavior_r2`` (with behavior),
    and the same per recording under ``per_recording``."""
    batch = stack_sessions(config, sessions)
    y, mask = batch["y"], batch["mask"] & batch["trial_mask"][..., None, None]
    y_mean, _, _ = posterior_means(config, params, batch, num_samples=num_samples, seed=seed)
    per = {s.name: {} for s in sessions}
    sums = [sse_sst(y[i], y_mean[i], mask[i]) for i in range(len(sessions))]
    for s, (sse, sst) in zip(sessions, sums, strict=True):
        per[s.name]["recon_r2"] = 1 - sse / sst if sst > 0 else float("nan")
    metrics = {"recon_r2": 1 - sum(a for a, _ in sums) / max(sum(b for _, b in sums), 1e-12)}

    horizons = tuple(sorted(set(int(h) for h in horizons)))
    if horizons:
        overall, by_rec, scored = _forecast(
            config, params, sessions, batch, horizons, num_samples, seed
        )
        metrics["forecast_r2"] = overall
        metrics["forecast_trials"] = scored
        for name, scores in by_rec.items():
            per[name]["forecast_r2"] = scores

    metrics["elbo_per_bin"] = _elbo_per_bin(config, params, batch, min(num_samples, 4), seed)
    behaved = [i for i, s in enumerate(sessions) if s.behavior is not None and s.num_trials >= 2]
    if behaved:
        scores = []
        for i in behaved:
            s = sessions[i]
            r2 = ridge_decode_r2(
                y_mean[i, : s.num_trials, : s.num_timesteps, : s.num_neurons],
                s.behavior,
                s.bin_mask,
            )
            per[s.name]["behavior_r2"] = r2
            scores.append(r2)
        metrics["behavior_r2"] = float(np.nanmean(scores))
    metrics["per_recording"] = per
    return metrics


def predicted_means(config, params, sessions, *, num_samples=32, seed=0) -> list[np.ndarray]:
    """The posterior-mean predicted mean of y (rates under Poisson) of each session, given its
    observed entries only: a list of float (trials, T, N), one per session."""
    batch = stack_sessions(config, sessions)
    y_mean, _, _ = posterior_means(config, params, batch, num_samples=num_samples, seed=seed)
    return [
        np.asarray(y_mean[i, : s.num_trials, : s.num_timesteps, : s.num_neurons])
        for i, s in enumerate(sessions)
    ]


def forecast_r2(config, params, sessions, *, horizons=(1, 5, 10), num_samples=32, seed=0) -> dict:
    """Only the ``forecast_r2`` part of :func:`evaluate` (no reconstruction or ELBO passes):
    {"forecast_r2": {k: r2}, "forecast_trials": {k: trials scored}, "per_recording": {name:
    {k: r2}}}."""
    batch = stack_sessions(config, sessions)
    horizons = tuple(sorted(set(int(h) for h in horizons)))
    overall, by_rec, scored = _forecast(
        config, params, sessions, batch, horizons, num_samples, seed
    )
    return {"forecast_r2": overall, "forecast_trials": scored, "per_recording": by_rec}


def _forecast(config, params, sessions, batch, horizons, num_samples, seed):
    """k-step forecast r^2 (pooled over recordings, and per recording) and the trials scored.

    Horizons count from each trial's own last observed bin (:func:`forecast_origins`): the
    guide sees bins 0..T0_i - 1 of trial i (its later bins masked out), the model rolls forward
    noise-free, and the predicted mean of y at bin T0_i - 1 + k is scored against the observed y
    over the trials whose target bin is observed (:func:`forecast_targets`). Trials are run in
    groups of equal T0_i (one compilation per group). Returns (overall {k: r2},
    per recording {name: {k: r2}}, trials scored {k: count}).
    """
    y, mask = batch["y"], batch["mask"] & batch["trial_mask"][..., None, None]
    M, R, T, N = y.shape
    K = max(horizons)
    if K >= T:
        raise ValueError(f"forecast horizon {K} needs trials longer than {T} bins")
    bins = mask.any(-1).reshape(M * R, T)
    origins = forecast_origins(bins, horizons)  # [M * R]
    real = bins.any(1)
    seen_mask = batch["mask"] & (np.arange(T) < origins.reshape(M, R, 1))[..., None]
    y_fore = np.zeros((M * R, K, N))
    for t0 in np.unique(origins[real]):
        group = dict(batch, y=y[:, :, :t0], mask=seen_mask[:, :, :t0])
        if "u" in batch:  # the guide sees bins < t0; the roll-forward the inputs of t0..t0+K-1
            u = np.pad(batch["u"], [(0, 0), (0, 0), (0, K), (0, 0)])  # zero past the end
            group.update(u=batch["u"][:, :, :t0], u_next=u[:, :, t0 : t0 + K])
        _, fore, _ = posterior_means(
            config, params, group, forecast=K, num_samples=num_samples, seed=seed
        )
        rows = origins == t0
        y_fore[rows] = fore.reshape(M * R, K, N)[rows]
    y_fore = y_fore.reshape(M, R, K, N)
    overall, per, scored = {}, {s.name: {} for s in sessions}, {}
    for k in horizons:
        keep = (forecast_targets(bins, origins, k) & real).reshape(M, R)
        t = np.minimum(origins - 1 + k, T - 1).reshape(M, R)
        y_t = np.take_along_axis(y, t[..., None, None], 2)  # [M, R, 1, N]
        m_t = np.take_along_axis(mask, t[..., None, None], 2) & keep[..., None, None]
        parts = [sse_sst(y_t[i], y_fore[i, :, k - 1 : k], m_t[i]) for i in range(M)]
        scored[str(k)] = int(keep.sum())
        total_sst = sum(b for _, b in parts)
        overall[str(k)] = 1 - sum(a for a, _ in parts) / total_sst if total_sst > 0 else np.nan
        for s, (sse, sst) in zip(sessions, parts, strict=True):
            per[s.name][str(k)] = 1 - sse / sst if sst > 0 else float("nan")
    return overall, per, scored


def _elbo_per_bin(config, params, batch, num_samples, seed) -> float:
    model, guide, _, _ = build(config)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    loss = jax.jit(lambda p, b, k: Trace_ELBO().loss(k, p, model, guide, b))
    batch = jax.tree_util.tree_map(jnp.asarray, batch)
    values = [float(loss(params, batch, jax.random.PRNGKey(seed + s))) for s in range(num_samples)]
    return -float(np.mean(values)) / observed_bins(batch)


def embeddings(config: dict, params: dict, sessions: list[Session]) -> dict[str, list[float]]:
    """Recording name -> mean of q(e) (from the encoder on all of the session's trials, or the
    free Gaussian's mean); empty for models without an embedding."""
    if not config["embedding"]:
        return {}
    _, _, e_loc = posterior_means(config, params, stack_sessions(config, sessions), num_samples=1)
    return {s.name: [float(v) for v in e_loc[i]] for i, s in enumerate(sessions)}


def vector_field(config, params, e=None, rec=0, *, grid=None):
    """f(z) - z on a 2-D grid of the first two latent dims (others 0), for embedding e (d_e,)
    or, for ``single-session``, recording ``rec``. Returns (Z (G, G, D), dZ (G, G, D))."""
    config, p = at_weight_medians(config, params)
    _, _, spec, nets = build(config)
    grid = np.linspace(-2, 2, 15) if grid is None else grid
    Z = np.zeros((len(grid), len(grid), spec.latent_dim), np.float32)
    Z[..., 0], Z[..., 1] = np.meshgrid(grid, grid, indexing="xy")
    dynamics, adapter = fitted_networks(nets, p)
    e = None if e is None else jnp.asarray(e, jnp.float32).reshape(1, -1)
    with handlers.substitute(data=p):
        f = models.recording_dynamics(spec, dynamics, adapter, e, jnp.asarray([rec]))
        out = np.asarray(f(jnp.asarray(Z.reshape(1, -1, spec.latent_dim))))
    return Z, out.reshape(Z.shape) - Z


def at_weight_medians(config, params):
    """(config, params) with every weight that has a prior at its posterior median (the
    AutoNormal's loc) and the weight priors dropped: a run without weight priors, for code
    that reads the networks as point values. Runs without weight priors come back as given."""
    params = jax.tree_util.tree_map(jnp.asarray, params)
    with_prior = {
        site: module
        for site, module in models.WEIGHT_PRIORS.items()
        if config["priors"].get(site) is not None
    }
    if not with_prior:
        return config, params
    priors = {k: v for k, v in config["priors"].items() if k not in with_prior}
    return dict(config, priors=priors), posterior_median_weights(params, with_prior.values())
