"""Case study: few-shot adaptation across monkey motor cortex recordings (DAD reaching data).

Data: the three DAD centre-out reaching recordings of the shared data folder (Dyer et al. 2017,
Nat. Biomed. Eng.; loaded by :func:`neurodyn.data.loaders.load_dad`): Chewie (71 units, 98
trials of 31 bins), Mihi-a (174 units, 74 trials of 7-11 bins), Mihi-b (187 units, 102 trials of
6-11 bins); 200 ms bins, spike counts (Poisson likelihood), hand velocity as behaviour.

Protocol (each recording held out in turn):

1. Fit each model (``meta-dssm``, ``single-session``, ``shared-dynamics``; Vermani et al., ICLR
   2025) on all trials of the two other recordings.
2. Split the held-out recording in trial order: the last 30% of its trials are test trials, the
   rest is the pool. Adapt the fit (:func:`neurodyn.families.meta.adapt`: new read-in and
   readout, every shared parameter frozen; ``single-session`` also fits its own full-rank
   offsets of every dynamics weight, from the shared base) on the first n pool trials,
   n in {4, 8, 16, all}.
3. Score the test trials (the amortized guide infers q(e) by pooling over the trials it is
   given, here the test trials, through the adapted read-in):

   - ``heldout_loglik_per_bin``: log p(y) of each test trial by importance sampling with the
     guide as proposal (the estimator of :func:`neurodyn.inference.workflow.heldout`, Pareto
     smoothed), summed and divided by the observed bins; ``psis_khat`` says how far to trust it.
   - ``recon_r2``: variance-weighted r^2 of the posterior-mean predicted rates (mean over
     draws of q) against the counts, padding excluded.
   - ``forecast_r2`` {k: r^2}, k in {1, 3, 5} (Mihi trials are only 6-11 bins long, so longer
     horizons do not fit): trials are ragged, so each test trial of length L is cut at its own
     end: the guide sees bins 0..L-6 (the later bins are masked, like padding), the model rolls
     the last seen latent forward noise-free, and the predicted rate k bins past the last seen
     bin (bin L-6+k) is scored against the counts, pooled over trials.
   - ``velocity_r2_recon``: a ridge decoder (standardised features, alpha = 1, the formula of
     :func:`neurodyn.inference.metrics.ridge_decode_r2`) from the model's predicted rates to
     2-D hand velocity in the same bin, fitted on the reconstructed rates of all pool trials
     (the first 70% of the recording; velocity is used only here, as a calibration), scored
     (variance-weighted r^2) on the reconstructed rates of the test trials.
   - ``velocity_r2_forecast`` {k: r^2}: the same decoder applied to the k-step forecast rates
     of the test trials, scored against the true velocity at the forecast bins.
   - ``co_bps`` (Neural Latents Benchmark co-smoothing): 20% of the units (seed 0) are masked
     on the test trials while the latents are inferred; their spikes are scored under the
     predicted rates, in bits per spike (the adapted readout has seen them on the pool trials).
   - ``reference``: the same decoder on the recorded counts (pool -> test trials, and at the
     forecast bins only), and ``co_bps_smoothing``, the benchmark's spike-smoothing baseline
     (held-in spikes smoothed over 2 bins, ridge to the held-out units on the pool trials);
     neither depends on any model.

``meta_beats_single_session`` holds, for each n <= 16, whether the mean over held-out
recordings of meta-dssm's held-out log-likelihood per bin exceeds single-session's;
``meta_beats_single_session_by_metric`` does the same for every metric; ``mean`` also holds
the share of test trials with Pareto k > 0.7 (where the log-likelihood estimate is unreliable).
Figures:
``embeddings.png`` (meta-dssm's q(e) means of the training recordings and of the held-out one
at each n), ``velocity_decoding.png`` (decoded vs true velocity on test trials at n = 16) and
``fewshot_metrics.png`` (metrics against n, mean over held-out recordings).

    python case_studies/motor_cortex_fewshot.py --data ../shared/data --out out/motor [--quick]
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from neurodyn.api import Run
from neurodyn.api.cosmoothing import co_smoothing
from neurodyn.data import Session
from neurodyn.data.loaders import load_dad
from neurodyn.families import meta
from neurodyn.inference import importance
from neurodyn.inference.cosmoothing import choose_heldout_neurons, co_bps, smoothing_baseline
from neurodyn.inference.metrics import r2_variance_weighted

RECORDINGS = ("chewie", "mihi-a", "mihi-b")
MODELS = ("meta-dssm", "single-session", "shared-dynamics")
HELDOUT_FRACTION = 0.2  # units held out of the test trials for co-smoothing (seed 0)
SHOTS = (4, 8, 16, "all")
HORIZONS = (1, 3, 5)
TEST_FRACTION = 0.3
METRICS = (
    "heldout_loglik_per_bin",
    "co_bps",
    "recon_r2",
    "forecast_r2",
    "velocity_r2_recon",
    "velocity_r2_forecast",
)


# ----------------------------------------------------------------------------- data


def split_recording(session: Session, test_fraction: float = TEST_FRACTION):
    """(pool, test): the first trials and the last ``test_fraction`` of trials, in order."""
    num_test = max(1, int(round(test_fraction * session.num_trials)))
    cut = session.num_trials - num_test
    return session.select(slice(0, cut)), session.select(slice(cut, None))


def forecast_cut(session: Session, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Per trial of length L: the last bin the guide sees, L - horizon - 1, and whether the
    trial is long enough (L > horizon). Returns (last int (R,), valid bool (R,))."""
    lengths = session.bin_mask.sum(1)
    valid = lengths > horizon
    return np.where(valid, lengths - horizon - 1, 0).astype(np.int32), valid


# ----------------------------------------------------------------------------- predictions

# Compiled functions per (spec, seed, horizon): reused across n, whose runs share every shape.
_COMPILED: dict = {}


def _compiled(config: dict, horizon: int):
    """(draw, log_weights), both jitted with params and data as arguments.

    draw(params, full, seen, last, key) -> (y_mean (M,R,T,N), y_forecast (M,R,K,N),
    e_loc (M, d_e)): one draw of q on ``full``; and on ``seen`` (the same trials with the
    forecast bins masked) the noise-free roll-forward of the latent at bin ``last`` (M, R).
    log_weights(params, batch, keys (S, 2)) -> (S, M, R) log p(y, z) - log q(z) per trial.
    """
    key = (meta.spec_of(config), config["seed"], horizon)
    if key in _COMPILED:
        return _COMPILED[key]
    model, guide, spec, nets = meta.build(config)
    roll = functools.partial(
        meta.predict.forecast_mean, spec=spec, nets=nets, priors=meta.priors_of(config)
    )

    def conditioned(fn, params, rng, values=None):
        if values is not None:
            fn = handlers.condition(fn, data=values)
        return handlers.seed(handlers.substitute(fn, data=params), rng)

    def trace(fn, params, rng, batch, values=None):
        return handlers.trace(conditioned(fn, params, rng, values)).get_trace(batch)

    def draw(params, full, seen, last, rng):
        g = trace(guide, params, rng, full)
        values = {k: g[k]["value"] for k in ("z", "embedding") if k in g}
        y_mean = trace(model, params, rng, full, values)["y_mean"]["value"]
        gs = trace(guide, params, rng, seen)
        z = gs["z"]["value"]  # (M, R, T, D)
        # Roll forward from each trial's last seen latent.
        z_last = jnp.take_along_axis(z, last[:, :, None, None], axis=2)[:, :, 0]
        values = {k: gs[k]["value"] for k in gs if gs[k]["type"] == "sample"}
        e = values["embedding"][:, 0] if spec.embedding else None
        y_fore = conditioned(roll, params, rng, values)(seen["rec"], e, z_last, horizon)
        M = full["y"].shape[0]
        e_loc = g["embedding"]["fn"].mean[:, 0] if spec.embedding else jnp.zeros((M, 0))
        return y_mean, y_fore, e_loc

    def one_weight(params, batch, rng):
        g, m = importance.joint_traces(model, guide, params, batch, {}, rng)
        log_p = m["z"]["fn"].log_prob(m["z"]["value"]) + m["y"]["fn"].log_prob(m["y"]["value"])
        return log_p - g["z"]["fn"].log_prob(g["z"]["value"])

    out = (jax.jit(draw), jax.jit(jax.vmap(one_weight, in_axes=(None, None, 0))))
    _COMPILED[key] = out
    return out


def predict(config, params, pool, test, *, horizon, num_samples, seed=0) -> dict:
    """Posterior-mean predicted rates of pool and test trials and k-step forecasts of the test
    trials (mean over ``num_samples`` draws of q).

    Returns dict(pool (R_p, T, N), test (R_t, T, N), forecast (R_t, horizon, N), e_pool (d_e,),
    e_test (d_e,)), N the held-out recording's neurons.
    """
    draw, _ = _compiled(config, horizon)
    full = meta.stack_sessions(config, [pool, test])
    last, _ = forecast_cut(test, horizon)
    last_all = np.zeros(full["trial_mask"].shape, np.int32)
    last_all[1, : test.num_trials] = last
    seen = dict(full, mask=full["mask"].copy())
    cut = np.arange(full["y"].shape[2])[None, None, :] > last_all[..., None]  # (M, R, T)
    seen["mask"][cut] = False
    seen["y"] = np.where(seen["mask"], full["y"], 0.0).astype(np.float32)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    full, seen = (jax.tree_util.tree_map(jnp.asarray, b) for b in (full, seen))
    total = None
    for s in range(num_samples):
        rng = jax.random.PRNGKey(seed * 7919 + s)
        parts = draw(params, full, seen, jnp.asarray(last_all), rng)
        parts = [np.asarray(p, np.float64) for p in parts]
        total = parts if total is None else [a + b for a, b in zip(total, parts, strict=True)]
    y_mean, y_fore, e_loc = (t / num_samples for t in total)
    n, Rp, Rt = test.num_neurons, pool.num_trials, test.num_trials
    return dict(
        pool=y_mean[0, :Rp, :, :n],
        test=y_mean[1, :Rt, :, :n],
        forecast=y_fore[1, :Rt, :, :n],
        e_pool=e_loc[0],
        e_test=e_loc[1],
    )


def heldout_loglik(config, params, test, *, horizon, num_samples, seed=0) -> dict:
    """``heldout_loglik_per_bin`` and ``psis_khat`` of the test trials (see module docstring)."""
    _, log_weights = _compiled(config, horizon)
    batch = jax.tree_util.tree_map(jnp.asarray, meta.stack_sessions(config, [test]))
    params = jax.tree_util.tree_map(jnp.asarray, params)
    keys = jax.random.split(jax.random.PRNGKey(seed), num_samples)
    lw = np.asarray(log_weights(params, batch, keys))  # (S, 1, R)
    estimate = importance.summarize(lw[:, 0, : test.num_trials])
    return importance.heldout_metrics(estimate, int(test.bin_mask.sum()))


# ----------------------------------------------------------------------------- scores


def ridge_fit(X, Y, alpha: float = 1.0):
    """Ridge regression on standardised features (as ``ridge_decode_r2``); X (S, F), Y (S, B).
    Returns predict: (..., F) -> (..., B)."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    mu_x, mu_y, sd_x = X.mean(0), Y.mean(0), X.std(0) + 1e-8
    Xs = (X - mu_x) / sd_x
    W = np.linalg.solve(Xs.T @ Xs + alpha * np.eye(Xs.shape[1]), Xs.T @ (Y - mu_y))
    return lambda F: ((np.asarray(F, np.float64) - mu_x) / sd_x) @ W + mu_y


def at_forecast_bins(x, last, valid, k):
    """x (R, T, ...) at bin last + k of each valid trial -> (V, ...)."""
    rows = np.flatnonzero(valid)
    return x[rows, last[rows] + k]


def velocity_scores(features_pool, features_test, features_fore, pool, test, horizons):
    """Decoder fitted on pool features -> velocity; r^2 on test features and on forecasts.

    features_*: (R, T, F) per bin (forecasts: (R_t, K, F), entry k-1 = k bins ahead).
    Returns (r2 on the test trials, {k: r2 at the forecast bins}).
    """
    pm, tm = pool.bin_mask, test.bin_mask
    decode = ridge_fit(features_pool[pm], pool.behavior[pm])
    recon = r2_variance_weighted(test.behavior[tm], decode(features_test[tm]))
    last, valid = forecast_cut(test, max(horizons))
    fore = {}
    for k in horizons:
        truth = at_forecast_bins(test.behavior, last, valid, k)
        fore[str(k)] = r2_variance_weighted(truth, decode(features_fore[valid, k - 1]))
    return recon, fore


def score(pred: dict, pool: Session, test: Session, horizons) -> dict:
    """recon_r2, forecast_r2, velocity_r2_recon and velocity_r2_forecast of one adapted run."""
    last, valid = forecast_cut(test, max(horizons))
    forecast = {}
    for k in horizons:
        truth = at_forecast_bins(test.y, last, valid, k)
        mask = at_forecast_bins(test.mask, last, valid, k)
        forecast[str(k)] = r2_variance_weighted(truth, pred["forecast"][valid, k - 1], mask)
    v_recon, v_fore = velocity_scores(
        pred["pool"], pred["test"], pred["forecast"], pool, test, horizons
    )
    return dict(
        recon_r2=r2_variance_weighted(test.y, pred["test"], test.mask),
        forecast_r2=forecast,
        velocity_r2_recon=v_recon,
        velocity_r2_forecast=v_fore,
    )


def reference_scores(pool: Session, test: Session, horizons) -> dict:
    """Velocity r^2 of the same decoder on the recorded counts (no model), and the NLB
    spike-smoothing baseline's co-smoothing bits per spike (``co_bps_smoothing``)."""
    last, _ = forecast_cut(test, max(horizons))
    K = max(horizons)
    # Recorded counts at the forecast bins laid out like forecasts: entry k-1 = bin last + k.
    idx = np.clip(last[:, None] + np.arange(1, K + 1)[None], 0, test.num_timesteps - 1)
    counts_fore = np.take_along_axis(test.y, idx[..., None], axis=1)
    recon, fore = velocity_scores(pool.y, test.y, counts_fore, pool, test, horizons)
    held = heldout_neurons(test)
    held_in = np.setdiff1d(np.arange(test.num_neurons), held)
    rates = smoothing_baseline(pool.y[..., held_in], pool.y[..., held], test.y[..., held_in])
    return dict(
        velocity_r2_spikes=recon,
        velocity_r2_spikes_forecast_bins=fore,
        co_bps_smoothing=co_bps(test.y[..., held], rates, test.bin_mask),
    )


def heldout_neurons(session: Session) -> list[int]:
    """The units held out for co-smoothing: :data:`HELDOUT_FRACTION` of them, seed 0."""
    return choose_heldout_neurons(session.num_neurons, HELDOUT_FRACTION, seed=0).tolist()


# ----------------------------------------------------------------------------- summaries


def _flat(entry: dict) -> dict:
    """{metric or metric@k: value} of one result entry, plus the share of test trials whose
    importance weights have Pareto k > 0.7 (the log-likelihood estimate is unreliable there)."""
    out = {"psis_share_above_0.7": entry["psis_khat"]["share_above_0.7"]}
    for m in METRICS:
        v = entry[m]
        if isinstance(v, dict):
            out.update({f"{m}@{k}": x for k, x in v.items()})
        else:
            out[m] = v
    return out


def summarise(results: dict, shots) -> tuple[dict, dict, dict]:
    """(mean over held-out recordings {model: {n: {metric: mean}}}, meta_beats_single_session
    {n: bool} on held-out log-likelihood, the same {n: {metric: bool}} for every metric)."""
    mean = {}
    for model in MODELS:
        per_n = {}
        for n in map(str, shots):
            rows = [_flat(r[model][n]) for r in results.values() if model in r]
            if rows:
                per_n[n] = {k: float(np.mean([row[k] for row in rows])) for k in rows[0]}
        if per_n:
            mean[model] = per_n
    beats, by_metric = {}, {}
    if {"meta-dssm", "single-session"} <= set(mean):
        for n in [str(n) for n in shots if n != "all" and n <= 16]:
            a, b = mean["meta-dssm"][n], mean["single-session"][n]
            by_metric[n] = {k: bool(a[k] > b[k]) for k in a if not k.startswith("psis")}
            beats[n] = by_metric[n]["heldout_loglik_per_bin"]
    return mean, beats, by_metric


# ----------------------------------------------------------------------------- main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data", help="folder with the DAD .mat files")
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true", help="one held-out recording, n in {4, 16}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=2000, help="SVI steps of each training fit")
    p.add_argument("--adapt-steps", type=int, default=500)
    p.add_argument("--latent-dim", type=int, default=8)
    p.add_argument("--samples", type=int, default=8, help="draws of q for predictions")
    p.add_argument("--is-samples", type=int, default=64, help="importance samples per trial")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--held-out", nargs="+", default=list(RECORDINGS), choices=RECORDINGS)
    args = p.parse_args(argv)
    shots = SHOTS
    if args.quick:
        args.held_out, shots = ["mihi-a"], (4, 16)
        args.steps, args.adapt_steps, args.samples, args.is_samples = 150, 100, 2, 32
    start, cpu_start = time.perf_counter(), time.process_time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sessions = {r: load_dad(args.data, r) for r in RECORDINGS}
    K = max(HORIZONS)
    results, reference, embeddings, fits, shown = {}, {}, {}, {}, {}
    for held in args.held_out:
        train = [sessions[r] for r in RECORDINGS if r != held]
        pool, test = split_recording(sessions[held])
        reference[held] = reference_scores(pool, test, HORIZONS)
        results[held], fits[held] = {}, {}
        for model in args.models:
            options = dict(
                latent_dim=args.latent_dim,
                likelihood="poisson",
                steps=args.steps,
                seed=args.seed,
                batch_size=16,
            )
            config = meta.make_config(model, train, options=options)
            params, fit = meta.fit(config, train, progress=False)
            fits[held][model] = dict(
                seconds=round(fit.seconds, 1), final_loss=float(np.mean(fit.losses[-50:]))
            )
            print(f"held out {held}, {model}: fitted in {fit.seconds:.0f} s", flush=True)
            if model == "meta-dssm":
                embeddings[held] = {"train": meta.embeddings(config, params, train), "adapted": {}}
            results[held][model] = {}
            for n in shots:
                trials = pool.num_trials if n == "all" else n
                cfg, prm, adapted = meta.adapt(
                    config, params, pool, trials=trials, steps=args.adapt_steps, seed=args.seed
                )
                pred = predict(cfg, prm, pool, test, horizon=K, num_samples=args.samples)
                entry = heldout_loglik(cfg, prm, test, horizon=K, num_samples=args.is_samples)
                entry.update(score(pred, pool, test, HORIZONS))
                run = Run(out, meta, cfg, prm)
                held_out = heldout_neurons(test)
                entry.update(co_smoothing(run, [test], held_out, num_samples=args.samples, seed=0))
                entry.update(adapt_trials=trials, adapt_seconds=round(adapted.seconds, 1))
                if model == "meta-dssm":
                    entry["embedding_test"] = pred["e_test"].tolist()
                    embeddings[held]["adapted"][str(n)] = pred["e_test"].tolist()
                if n == 16:
                    shown.setdefault(held, {})[model] = pred
                results[held][model][str(n)] = entry
                print(
                    f"  n={n}: loglik/bin {entry['heldout_loglik_per_bin']:.2f} "
                    f"recon {entry['recon_r2']:.3f} forecast@1 {entry['forecast_r2']['1']:.3f} "
                    f"vel {entry['velocity_r2_recon']:.3f} (adapt {adapted.seconds:.0f} s)",
                    flush=True,
                )
    mean, beats, by_metric = summarise(results, shots)
    wall = round(time.perf_counter() - start, 1)
    cpu = round(time.process_time() - cpu_start, 1)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "data")}
    settings.update(shots=[str(n) for n in shots], horizons=list(HORIZONS))
    settings["test_fraction"] = TEST_FRACTION
    summary = dict(
        results=results,
        mean=mean,
        meta_beats_single_session=beats,
        meta_beats_single_session_by_metric=by_metric,
        reference=reference,
        embeddings=embeddings,
        fits=fits,
        settings=settings,
        wall_seconds=wall,
        cpu_seconds=cpu,
    )
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    figures(summary, shown, sessions, out)
    print(table(mean, shots))
    print("meta-dssm beats single-session (held-out log-lik.):", json.dumps(beats))
    print(f"wall time {wall} s (process CPU time {cpu} s)")


def table(mean: dict, shots) -> str:
    """Markdown table of the mean over held-out recordings."""
    cols = ("heldout_loglik_per_bin", "co_bps", "recon_r2", "forecast_r2@1", "forecast_r2@5")
    cols += ("velocity_r2_recon", "velocity_r2_forecast@1")
    lines = ["| model | n | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for model, per_n in mean.items():
        for n in map(str, shots):
            cells = " | ".join(f"{per_n[n][c]:.3f}" for c in cols)
            lines.append(f"| {model} | {n} | {cells} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- figures


def figures(summary: dict, shown: dict, sessions: dict, out: Path):
    """embeddings.png, velocity_decoding.png, fewshot_metrics.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    emb = summary["embeddings"]
    if emb:
        fig, axes = plt.subplots(1, len(emb), figsize=(4 * len(emb), 3.6), squeeze=False)
        for ax, (held, e) in zip(axes[0], emb.items(), strict=True):
            for j, (name, v) in enumerate(e["train"].items()):
                ax.scatter(v[0], v[1], s=120, marker="s", color=f"C{j}", label=f"{name} (train)")
            pts = np.array(list(e["adapted"].values()))
            ax.plot(pts[:, 0], pts[:, 1], "o-", color="k", label=f"{held}, adapted")
            for n, v in e["adapted"].items():
                ax.annotate(f"n={n}", v[:2], fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.set(title=f"held out: {held}", xlabel="e[0]", ylabel="e[1]")
            ax.legend(fontsize=7)
        _save(fig, out / "embeddings.png")

    if shown:
        fig, axes = plt.subplots(2, len(shown), figsize=(4.5 * len(shown), 5), squeeze=False)
        for col, (held, preds) in enumerate(shown.items()):
            pool, test = split_recording(sessions[held])
            last, valid = forecast_cut(test, max(HORIZONS))
            trials = np.arange(min(4, test.num_trials))
            tm = test.bin_mask[trials]
            for model, pred in preds.items():
                pm = pool.bin_mask
                decode = ridge_fit(pred["pool"][pm], pool.behavior[pm])
                decoded = decode(pred["test"][trials])[tm]
                for row in range(2):
                    axes[row, col].plot(decoded[:, row], label=f"{model} (reconstructed)")
                if model == "meta-dssm":  # forecast-decoded velocity at the forecast bins
                    fore = decode(pred["forecast"][trials])  # (trials, K, 2)
                    offsets = np.r_[0, np.cumsum(tm.sum(1))[:-1]]
                    for i in np.flatnonzero(valid[trials]):
                        x = offsets[i] + last[i] + np.arange(1, fore.shape[1] + 1)
                        for row in range(2):
                            axes[row, col].plot(x, fore[i, :, row], "x", color="C3", ms=4)
            true = test.behavior[trials][tm]
            for row, name in enumerate(("x", "y")):
                axes[row, col].plot(true[:, row], color="k", lw=1.5, label="true")
                axes[row, col].set(ylabel=f"hand velocity {name}", xlabel="test bins (4 trials)")
            axes[0, col].set_title(f"{held}, n = 16 (x: meta-dssm forecast)")
        axes[0, 0].legend(fontsize=7)
        _save(fig, out / "velocity_decoding.png")

    mean = summary["mean"]
    shots = summary["settings"]["shots"]
    panels = ("heldout_loglik_per_bin", "recon_r2", "forecast_r2@1", "velocity_r2_recon")
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for ax, metric in zip(axes, panels, strict=True):
        for model, per_n in mean.items():
            ax.plot(shots, [per_n[n][metric] for n in shots], "o-", label=model)
        ax.set(xlabel="adaptation trials n", title=metric)
    axes[0].legend(fontsize=7)
    _save(fig, out / "fewshot_metrics.png")


def _save(fig, path):
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
