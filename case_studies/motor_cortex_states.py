"""Case study: discrete states of monkey M1 during centre-out reaching (``srnn`` and ``rslds``).

Data: the DAD demo recording of monkey C (Chewie), 71 M1 units, 98 trials of 31 bins, 2-D hand
velocity (Dyer et al. 2017, Nat. Biomed. Eng., ``KordingLab/DAD``; loaded with
:func:`neurodyn.data.loaders.load_dad`). Models: the SRNN (Zhang et al., NeurIPS 2024) and the
recurrent SLDS (Linderman et al., AISTATS 2017) of :mod:`neurodyn.families.switching`.

Protocol (and why):

1. **Split.** 25% of the trials of each target (seeded shuffle) are held out as test trials;
   stratifying by target keeps all four reach directions in both parts.
2. **Reach phases from hand speed** s_t = |v_t|, per trial with peak speed p = max_t s_t:
   movement onset t_on = 1 + the last bin before the peak with s_t < 0.2 p (0 if none);
   t_half = the first bin from onset on with s_t >= 0.5 p. Labels: 0 ``hold`` (t < t_on),
   1 ``early reach`` (t_on <= t < t_half), 2 ``late reach`` (t >= t_half). Thresholds relative
   to each trial's peak make the labels independent of reach length and reproducible.
   The demo trials stop before the hand comes back, so there is no return phase: the third
   phase splits the outward reach into its slow start and its fast part. The script counts the
   trials whose speed peaks in their last bin and the bins that move against the trial's peak
   direction (``data`` in metrics.json) to show it.
3. **K by model comparison.** Each model is fitted for K in ``--states`` (default 2 3 4; D = 5,
   Poisson softplus likelihood) on the training trials. Held-out elpd on the test trials comes
   from :func:`neurodyn.inference.workflow.heldout` (importance sampling with the guide, PSIS)
   and :func:`neurodyn.inference.comparison.compare` (``arviz_stats.compare``; the same steps as
   :func:`~neurodyn.inference.workflow.compare_runs`, computed once per fit and then compared
   within each model and across all fits). The chosen K is the **smallest K whose elpd is within
   one standard error of the difference (dse) of that model's best** (a one-SE rule: extra states
   must earn their keep). The Pareto k of every fit is reported; a large k means the elpd
   estimate is unreliable and the choice is weak.
4. **States against phases** on the test trials, for every fit:
   ``state_accuracy`` / ``state_balanced_error`` from ``evaluate`` (Viterbi path, one-to-one
   Hungarian matching, so with K != 3 unmatched states or phases count as errors: at K = 2 the
   ceiling is below 1); ``accuracy_many_to_one``: each state is mapped to the phase it overlaps
   most on the *training* trials and the mapping is scored on the test trials (fair for any K);
   ``hold_vs_reach_accuracy``: the same with early and late reach merged. Baselines: the
   ``clock`` (phase predicted from the bin index alone, majority over training trials) and the
   majority phase. The phases are time-locked within trials, so the clock is strong; a model
   beats it only by reading the trial-to-trial timing of onset from the spikes.
5. **Co-smoothing** (Neural Latents Benchmark): 20% of the units (seed 0) are masked on the test
   trials while the latents are inferred, and their spikes are scored under the predicted rates
   (``co_bps``, bits per spike); baseline: the benchmark's spike smoothing (held-in spikes
   smoothed with a Gaussian of 2 bins, ridge regression to the held-out units on the training
   trials; ``co_bps_smoothing``).

Figures: ``state_rasters.png`` (test trials sorted by target and onset, aligned to movement
onset; phases and the chosen srnn / rslds Viterbi states, hand speed overlaid),
``flow_fields_srnn.png`` / ``flow_fields_rslds.png`` (per-state flows f_k(h) - h in the top two
principal components of the posterior-mean latents), ``elpd_vs_k.png``.

Run: ``python case_studies/motor_cortex_states.py --data ../shared/data --out DIR [--quick]``;
writes ``metrics.json`` and the figures into DIR and prints wall time. ``--quick`` fits K in
{2, 3} for 150 steps with fewer importance samples (for the test).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from neurodyn.api import Run
from neurodyn.api.cosmoothing import co_smoothing
from neurodyn.data import SessionError, make_session
from neurodyn.data.loaders import load_dad
from neurodyn.families import switching
from neurodyn.families.switching.predict import Fitted, reconstruct, viterbi_states
from neurodyn.inference import comparison, workflow
from neurodyn.inference.cosmoothing import choose_heldout_neurons, co_bps, smoothing_baseline

PHASES = ("hold", "early reach", "late reach")
ONSET_FRACTION, HALF_FRACTION = 0.2, 0.5
MODELS = ("srnn", "rslds")
HELDOUT_FRACTION = 0.2  # neurons held out for co-smoothing (NLB co-bps), chosen with seed 0


# ----------------------------------------------------------------------------------------------
# Data: split and reach phases
# ----------------------------------------------------------------------------------------------


def stratified_split(targets, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / test trial indices, ``test_fraction`` of each target held out. targets: (R,)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for target in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == target))
        n_test = max(1, int(round(test_fraction * len(idx))))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return np.sort(train), np.sort(test)


def reach_phases(velocity, observed) -> tuple[np.ndarray, np.ndarray]:
    """Phase labels (hold 0 / early reach 1 / late reach 2) and movement onset bins.

    Args:
        velocity: float (trials, T, 2) hand velocity; observed: bool (trials, T).
    Returns:
        labels int (trials, T) (0 on padding bins), onset int (trials,).
    """
    speed = np.where(observed, np.linalg.norm(velocity, axis=-1), 0.0)
    R, T = speed.shape
    labels, onset = np.zeros((R, T), np.int32), np.zeros(R, np.int32)
    for i in range(R):
        peak = int(np.argmax(speed[i]))
        p = speed[i, peak]
        slow = np.flatnonzero(speed[i, : peak + 1] < ONSET_FRACTION * p)
        t_on = int(slow[-1]) + 1 if len(slow) else 0
        fast = np.flatnonzero(speed[i, t_on:] >= HALF_FRACTION * p)
        t_half = t_on + int(fast[0]) if len(fast) else T
        labels[i, t_on:t_half], labels[i, t_half:] = 1, 2
        onset[i] = t_on
    return labels, onset


def return_movement(velocity, observed) -> dict:
    """Evidence for a return phase: trials whose speed peaks in their last observed bin, and bins
    whose velocity points against the trial's peak velocity (cosine < -0.3, speed > 10% of peak).
    """
    speed = np.where(observed, np.linalg.norm(velocity, axis=-1), 0.0)
    last = observed.sum(1) - 1
    peak = speed.argmax(1)
    v_peak = velocity[np.arange(len(peak)), peak]  # [R, 2]
    along = (velocity @ v_peak[:, :, None])[..., 0] / (speed.max(1, keepdims=True) + 1e-9)
    against = observed & (along < -0.3 * speed) & (speed > 0.1 * speed.max(1, keepdims=True))
    return {
        "trials_peak_in_last_bin": int((peak == last).sum()),
        "trials": int(len(peak)),
        "bins_moving_against_reach": int(against.sum()),
    }


def load(data_dir: Path):
    """Chewie as a session with phase labels as ``states``; also the onset bins (trials,)."""
    raw = load_dad(data_dir, "chewie")
    phases, onset = reach_phases(raw.behavior, raw.bin_mask)
    session = make_session(
        raw.y,
        raw.mask,
        states=phases,
        behavior=raw.behavior,
        dt=raw.dt,
        name=raw.name,
        meta=raw.meta,
        likelihood="poisson",
    )
    return session, onset


# ----------------------------------------------------------------------------------------------
# Fits and scores
# ----------------------------------------------------------------------------------------------


def posterior_paths(config, params, session, num_samples: int = 16, seed: int = 0):
    """Posterior-mean latents (trials, T, D) and their Viterbi states (trials, T)."""
    fitted = Fitted(config, params)
    y, mask = jnp.asarray(session.y), jnp.asarray(session.mask)
    key = jax.random.PRNGKey(seed)
    _, h = jax.jit(lambda y, m, k: reconstruct(fitted, y, m, num_samples, k))(y, mask, key)
    path = jax.jit(functools.partial(viterbi_states, fitted))(h, y, mask)
    return fitted, np.asarray(h), np.asarray(path)


def many_to_one(pred_train, true_train, observed, K: int, num_labels: int) -> np.ndarray:
    """Map each of K states to the label it overlaps most on training bins: int (K,)."""
    overlap = np.zeros((K, num_labels))
    np.add.at(overlap, (pred_train[observed], true_train[observed]), 1)
    return overlap.argmax(1)


def phase_scores(path_train, path_test, train, test, K: int) -> dict:
    """Many-to-one accuracies (3 phases; hold vs reach) of test Viterbi paths."""
    out = {}
    for name, merge in (("accuracy_many_to_one", (0, 1, 2)), ("hold_vs_reach_accuracy", (0, 1, 1))):
        merge = np.asarray(merge)
        tr, te = merge[train.states], merge[test.states]
        mapping = many_to_one(path_train, tr, train.bin_mask, K, int(merge.max()) + 1)
        out[name] = float(np.mean(mapping[path_test][test.bin_mask] == te[test.bin_mask]))
    return out


def baselines(train, test) -> dict:
    """Clock (majority phase per bin index on training trials) and majority-phase accuracy,
    and the spike-smoothing baseline's co-smoothing bits per spike (``co_bps_smoothing``)."""
    obs_tr, obs_te = train.bin_mask, test.bin_mask
    T = train.num_timesteps
    clock = np.array(
        [np.bincount(train.states[obs_tr[:, t], t], minlength=3).argmax() for t in range(T)]
    )
    majority = np.bincount(train.states[obs_tr], minlength=3).argmax()
    truth = test.states[obs_te]
    by_clock = np.broadcast_to(clock, test.states.shape)[obs_te]
    held = heldout_neurons(train)
    held_in = np.setdiff1d(np.arange(train.num_neurons), held)
    rates = smoothing_baseline(train.y[..., held_in], train.y[..., held], test.y[..., held_in])
    return {
        "clock_accuracy": float(np.mean(by_clock == truth)),
        "majority_accuracy": float(np.mean(truth == majority)),
        "co_bps_smoothing": co_bps(test.y[..., held], rates, obs_te),
    }


def heldout_neurons(session) -> list[int]:
    """The neurons held out for co-smoothing: :data:`HELDOUT_FRACTION` of them, seed 0."""
    return choose_heldout_neurons(session.num_neurons, HELDOUT_FRACTION, seed=0).tolist()


def fit_one(model, K, session, split, out: Path, args) -> dict:
    """Fit on the training trials; score the test trials (``evaluate`` without forecasts,
    phase accuracies, held-out elpd). split: (train indices, test indices).

    Returns {config, params, elpd (ELPDData), metrics, h (trials, T, D) posterior-mean latents
    and path (trials, T) Viterbi states of all trials}.
    """
    start = time.perf_counter()
    train, test = session.select(split[0]), session.select(split[1])
    options = dict(states=K, latent_dim=args.latent_dim, steps=args.steps, likelihood="poisson")
    config = switching.make_config(model, [train], options=options)
    params, result = switching.fit(config, [train], out_dir=out / f"{model}_K{K}", progress=False)
    metrics = switching.evaluate(config, params, [test], horizons=(), num_samples=16)
    _, h, path = posterior_paths(config, params, session)
    metrics.update(phase_scores(path[split[0]], path[split[1]], train, test, K))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto k is reported instead
        held, estimate = workflow.heldout(
            switching.problem(config, params, [test]), num_samples=args.is_samples, seed=0
        )
    metrics.update(held)
    run = Run(out / f"{model}_K{K}", switching, config, params)
    metrics.update(co_smoothing(run, [test], heldout_neurons(session), num_samples=16, seed=0))
    metrics["fit_steps"] = int(result.steps_run)
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    print(
        f"{model:>6} K={K}: acc(1-1) {metrics['state_accuracy']:.3f}  "
        f"acc(many-1) {metrics['accuracy_many_to_one']:.3f}  "
        f"hold/reach {metrics['hold_vs_reach_accuracy']:.3f}  recon_r2 {metrics['recon_r2']:.3f}  "
        f"ll/bin {metrics['heldout_loglik_per_bin']:.3f}  steps {result.steps_run}  "
        f"{metrics['seconds']:.0f} s",
        flush=True,
    )
    return {
        "config": config,
        "params": params,
        "elpd": comparison.heldout_elpd(estimate),
        "metrics": metrics,
        "h": h,
        "path": path,
    }


def choose_k(table, ks) -> int:
    """Smallest K whose elpd is within one dse of the best (table rows named by K).

    The gap is taken from the ``elpd`` column, whatever sign convention ``elpd_diff`` has."""
    gap = table["elpd"].max() - table["elpd"]
    return int(min(k for k in ks if gap[str(k)] <= table.loc[str(k), "dse"]))


def table_records(table) -> dict:
    """The comparison table as {row: {column: value}} with JSON-able values."""
    keep = ["rank", "elpd", "se", "elpd_diff", "dse", "weight", "khat_max", "khat_share_above_0.7"]
    return {
        str(name): {c: float(row[c]) for c in keep if c in row} for name, row in table.iterrows()
    }


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def aligned(labels, onset, observed, lo: int, hi: int) -> np.ndarray:
    """Labels re-indexed to offsets lo..hi-1 from onset, NaN outside a trial: (trials, hi-lo)."""
    out = np.full((len(labels), hi - lo), np.nan)
    for i in range(len(labels)):
        t = np.flatnonzero(observed[i])
        out[i, t - onset[i] - lo] = labels[i, t]
    return out


def phase_colours(path, phases, observed, K: int) -> np.ndarray:
    """Colour index of each of K states: the phase it is matched to one-to-one (Hungarian, on
    the given bins), and 3, 4, ... for states left without a phase. int (K,)."""
    n = max(K, len(PHASES))
    overlap = np.zeros((n, n))
    np.add.at(overlap, (path[observed], phases[observed]), 1)
    rows, cols = linear_sum_assignment(-overlap)
    mapping = np.arange(n)
    mapping[rows] = cols
    return mapping[:K]


def plot_rasters(test, targets, onset, paths: dict, out: Path) -> Path:
    """Phases and Viterbi states of test trials, aligned to onset, with hand speed overlaid.

    targets, onset: int (trials,); paths: {title: int (trials, T) colour index per bin}.
    """
    from matplotlib.colors import ListedColormap

    plt = _plt()
    order = np.lexsort((onset, targets))
    obs = test.bin_mask
    lo = int(-onset.max())
    hi = int((np.arange(test.num_timesteps)[None] - onset[:, None])[obs].max()) + 1
    speed = np.linalg.norm(test.behavior, axis=-1)
    top = speed[obs].max()
    panels = {"reach phases": test.states, **paths}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 0.22 * len(order) + 1.6))
    axes = np.atleast_1d(axes)
    for ax, (title, lab) in zip(axes, panels.items(), strict=True):
        img = aligned(lab[order], onset[order], obs[order], lo, hi)
        cmap = ListedColormap([f"C{k}" for k in range(10)])
        cmap.set_bad("white")
        ax.imshow(
            img,
            aspect="auto",
            cmap=cmap,
            vmin=-0.5,
            vmax=9.5,
            interpolation="nearest",
            extent=(lo - 0.5, hi - 0.5, len(order) - 0.5, -0.5),
        )
        for row, i in enumerate(order):
            t = np.flatnonzero(obs[i])
            ax.plot(t - onset[i], row + 0.45 - 0.9 * speed[i, t] / top, color="k", lw=0.6)
        ax.axvline(-0.5, color="k", ls=":", lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("bins from movement onset")
    bounds = np.flatnonzero(np.diff(targets[order])) + 0.5
    for ax in axes:
        for b in bounds:
            ax.axhline(b, color="k", lw=1.2)
    axes[0].set_yticks(
        [np.mean(np.flatnonzero(targets[order] == t)) for t in np.unique(targets)],
        [f"target {t}" for t in np.unique(targets)],
    )
    for ax in axes[1:]:
        ax.set_yticks([])
    handles = [plt.Rectangle((0, 0), 1, 1, color=f"C{k}") for k in range(3)]
    fig.legend(handles, PHASES, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("test trials aligned to movement onset (black: hand speed)", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(plt, fig, out / "state_rasters.png")


def plot_flow_fields(fitted, h, path, colour, observed, title: str, file: Path) -> Path:
    """Per-state flows f_k(h) - h projected on the top two PCs of the latents h (trials, T, D);
    the other PCs are held at the latents' mean. path: int (trials, T) Viterbi states; colour:
    int (K,) colour index (matched phase) of each state; observed: bool (trials, T)."""
    plt = _plt()
    flat, states = h[observed], path[observed]
    mean = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
    pcs = vt[:2]  # [2, D]
    z = (flat - mean) @ pcs.T
    lo, hi = z.min(0), z.max(0)
    pad = 0.1 * (hi - lo)
    gx, gy = np.meshgrid(*(np.linspace(lo[i] - pad[i], hi[i] + pad[i], 15) for i in range(2)))
    grid = mean + np.stack([gx.ravel(), gy.ravel()], 1) @ pcs  # [G, D]
    nxt = np.asarray(jax.vmap(fitted.g.dynamics)(jnp.asarray(grid, jnp.float32)))  # [G, K, D]
    steps = (nxt - grid[:, None]) @ pcs.T  # [G, K, 2]
    K = steps.shape[1]
    fig, axes = plt.subplots(1, K, figsize=(3.6 * K, 3.6), squeeze=False)
    for k, ax in enumerate(axes[0]):
        for i in range(len(h)):
            zi = (h[i][observed[i]] - mean) @ pcs.T
            ax.plot(zi[:, 0], zi[:, 1], color="0.85", lw=0.5, zorder=0)
        on = states == k
        c = int(colour[k])
        ax.scatter(z[on, 0], z[on, 1], s=3, color=f"C{c}", alpha=0.5)
        ax.quiver(gx, gy, *(steps[:, k, j].reshape(gx.shape) for j in range(2)), alpha=0.8)
        phase = PHASES[c] if c < len(PHASES) else "unmatched"
        ax.set_title(f"state {k} ~ {phase} ({on.mean():.0%} of bins)", fontsize=10)
        ax.set_xlabel("latent PC 1")
    axes[0, 0].set_ylabel("latent PC 2")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(plt, fig, file)


def plot_elpd(tables: dict, chosen: dict, out: Path) -> Path:
    """elpd difference to each model's best K, with dse error bars; chosen K circled."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for j, (model, table) in enumerate(tables.items()):
        ks = sorted(int(k) for k in table.index)
        diff = [table.loc[str(k), "elpd"] - table["elpd"].max() for k in ks]
        dse = [table.loc[str(k), "dse"] for k in ks]
        x = np.array(ks) + 0.06 * (j - 0.5)
        ax.errorbar(x, diff, yerr=dse, marker="o", capsize=3, label=model, color=f"C{j}")
        c = ks.index(chosen[model])
        ax.plot(x[c], diff[c], "o", ms=14, mfc="none", color=f"C{j}")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xticks(sorted({int(k) for t in tables.values() for k in t.index}))
    ax.set_xlabel("K (states)")
    ax.set_ylabel("held-out elpd - best (nats)")
    ax.set_title("model comparison on test trials (circle: chosen K)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(plt, fig, out / "elpd_vs_k.png")


def _save(plt, fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", default="motor_cortex_states_out")
    parser.add_argument("--quick", action="store_true", help="K in {2, 3}, 150 steps")
    parser.add_argument("--states", type=int, nargs="+", help="K values (default 2 3 4)")
    parser.add_argument("--steps", type=int, help="SVI steps per fit (default 1500)")
    parser.add_argument("--latent-dim", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    args = parser.parse_args(argv)
    args.states = sorted(set(args.states or ((2, 3) if args.quick else (2, 3, 4))))
    args.steps = args.steps or (150 if args.quick else 1500)
    args.is_samples = 20 if args.quick else 100
    if len(args.states) < 2:
        parser.error("--states needs at least two values of K to compare")
    start = time.perf_counter()
    try:
        session, onset = load(Path(args.data))
    except SessionError as e:
        print(f"motor_cortex_states: {e} (pass --data)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    targets = np.asarray(session.meta["trial_label"])
    idx_train, idx_test = stratified_split(targets, 0.25, args.seed)
    train, test = session.select(idx_train), session.select(idx_test)
    observed = session.bin_mask
    results = {
        "data": {
            "trials": session.num_trials,
            "train_trials": len(idx_train),
            "test_trials": len(idx_test),
            "neurons": session.num_neurons,
            "phases": list(PHASES),
            "phase_share": np.bincount(session.states[observed], minlength=3).tolist(),
            "onset_bin_median": float(np.median(onset)),
            "thresholds": {"onset": ONSET_FRACTION, "half": HALF_FRACTION},
            **return_movement(session.behavior, observed),
        },
        "settings": {
            "states": args.states,
            "latent_dim": args.latent_dim,
            "steps": args.steps,
            "importance_samples": args.is_samples,
            "likelihood": "poisson",
            "rule": "smallest K with elpd(best) - elpd(K) <= dse (one-SE rule, per model)",
        },
        "baselines": baselines(train, test),
    }
    print(f"data: {json.dumps(results['data'])}", flush=True)

    split = (idx_train, idx_test)
    fits = {m: {k: fit_one(m, k, session, split, out, args) for k in args.states} for m in MODELS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz's stacking on near-equal elpds, NaN k (quick)
        tables = {
            m: comparison.compare({str(k): f["elpd"] for k, f in fits[m].items()}) for m in MODELS
        }
        overall = comparison.compare(
            {f"{m}_K{k}": f["elpd"] for m in MODELS for k, f in fits[m].items()}
        )
    chosen = {m: choose_k(tables[m], args.states) for m in MODELS}
    results["comparison"] = {m: table_records(t) for m, t in tables.items()}
    results["comparison"]["all"] = table_records(overall)
    results["chosen_K"] = chosen
    results["fits"] = {f"{m}_K{k}": f["metrics"] for m in MODELS for k, f in fits[m].items()}
    results["chosen"] = {m: results["fits"][f"{m}_K{chosen[m]}"] for m in MODELS}

    figures, paths = [], {}
    for m in MODELS:
        best, K = fits[m][chosen[m]], chosen[m]
        fitted = Fitted(best["config"], best["params"])
        h, path = best["h"][idx_test], best["path"][idx_test]
        colour = phase_colours(best["path"][idx_train], train.states, train.bin_mask, K)
        paths[f"{m} (K={K})"] = colour[path]
        title = f"{m} K={K}: per-state flows in the top 2 latent PCs (test trials)"
        file = out / f"flow_fields_{m}.png"
        figures.append(plot_flow_fields(fitted, h, path, colour, test.bin_mask, title, file))
    figures.append(plot_rasters(test, targets[idx_test], onset[idx_test], paths, out))
    figures.append(plot_elpd(tables, chosen, out))
    results["figures"] = [f.name for f in figures]
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    (out / "metrics.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(overall.to_string())
    print(f"chosen K: {chosen}; baselines: {results['baselines']}")
    print(f"figures: {', '.join(results['figures'])}")
    print(f"wall time {results['wall_seconds']:.0f} s; results in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
