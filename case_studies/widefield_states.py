"""Case study: discrete states of cortex-wide widefield dynamics against behaviour (srnn).

Data: ``widefield_higley_animal1.mat`` (Higley lab, ISFN workshop: mouse dorsal cortex, 48
functional parcels, 4000 frames at 10 Hz, spontaneous behaviour) and the Allen dorsal-cortex
atlas ``widefield_higley_atlas.mat``. :func:`neurodyn.data.loaders.load_widefield` z-scores each
parcel and cuts the recording into 40 windows of 100 frames (10 s); the behavioural labels
(quiet / whisking / running) come from its documented thresholds on the wheel and whisking
traces.

Protocol: train on windows 0-29 (the first 300 s), test on windows 30-39 (the last 100 s),
contiguous in time. ``srnn`` with Gaussian observations, K = 3 states (one per behavioural
label), D = 6 latent dimensions, seeds 0-2; D = 4 and D = 8 with seed 0; and K = 2 scored
against quiet vs active (whisking or running). The states are unsupervised: the labels are used
only to score them (Hungarian matching of state to label, :mod:`neurodyn.inference.metrics`).
Baselines on the same test bins: the majority label of the training windows; k-means (K
clusters) on the first D principal components of the training frames, matched the same way;
the srnn's own test states circularly shifted against the labels (keeps their run structure,
breaks their alignment); and, as a supervised reference, a linear discriminant decoder of the
label from single frames (fitted on the training frames).

Figures: ``states_over_time.png`` (the test stretch: srnn states above the behavioural labels,
wheel and whisking traces) and ``state_maps.png`` (each state's mean z-scored activity per
parcel painted on the parcel map ``func_map``, atlas outlines from ``anatomic_parcels``; the
second row shows the same for the behavioural labels). Each fit also writes the package's
report figures into its own folder.

Run: ``python case_studies/widefield_states.py --data ../shared/data --out DIR [--quick]``;
writes ``metrics.json`` and figures into DIR and prints the wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from neurodyn.data import split_trials
from neurodyn.data.loaders import WIDEFIELD_STATES, load_widefield
from neurodyn.families import switching
from neurodyn.inference.metrics import state_scores

RECORDING = "widefield_higley_animal1.mat"
ATLAS = "widefield_higley_atlas.mat"
WINDOW = 100  # frames per window (10 s at 10 Hz)
NUM_TRAIN = 30  # windows 0-29 train, 30-39 test
STATE_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3")


# ----------------------------------------------------------------------------------------------
# Baselines
# ----------------------------------------------------------------------------------------------


def _pca(train_frames, dims: int) -> np.ndarray:
    """Loadings (N, dims) of the first ``dims`` principal components of (M, N) frames."""
    centred = train_frames - train_frames.mean(0)
    return np.linalg.svd(centred, full_matrices=False)[2][:dims].T


def kmeans_pca_states(train, test, K: int, dims: int, seed: int = 0) -> np.ndarray:
    """k-means with K clusters on the first ``dims`` PCs of the training frames; each test frame
    goes to the nearest centre. Returns int (test windows, T)."""

    frames = train.y.reshape(-1, train.num_neurons)
    loadings = _pca(frames, dims)
    z_train = (frames - frames.mean(0)) @ loadings
    labels = switching.kmeans(z_train, K, seed, restarts=10)
    centres = np.stack([z_train[labels == k].mean(0) for k in range(K)])
    z_test = (test.y.reshape(-1, test.num_neurons) - frames.mean(0)) @ loadings
    nearest = np.argmin(((z_test[:, None] - centres[None]) ** 2).sum(-1), 1)
    return nearest.reshape(test.states.shape)


def lda_decode(train, test, ridge: float = 1e-2) -> np.ndarray:
    """Supervised reference: linear discriminant (shared, shrunk covariance) of the label from
    single frames, fitted on the training frames. Returns int (test windows, T)."""
    X, y = train.y.reshape(-1, train.num_neurons), train.states.ravel()
    classes = np.unique(y)
    means = np.stack([X[y == c].mean(0) for c in classes])  # (C, N)
    resid = X - means[np.searchsorted(classes, y)]
    cov = resid.T @ resid / len(X)
    cov += ridge * np.trace(cov) / len(cov) * np.eye(len(cov))
    P = np.linalg.solve(cov, means.T)  # (N, C)
    log_prior = np.log(np.array([np.mean(y == c) for c in classes]))
    Xt = test.y.reshape(-1, test.num_neurons)
    score = Xt @ P - 0.5 * (means * P.T).sum(1) + log_prior
    return classes[np.argmax(score, 1)].reshape(test.states.shape)


def shifted_null(pred, true, min_shift: int = WINDOW // 2, step: int = 5) -> dict:
    """Scores of ``pred`` circularly shifted against ``true`` (both concatenated in time) by
    every ``step``-th offset in [min_shift, len - min_shift] (Hungarian-matched each time):
    the mean, and the best 5% (95th percentile of accuracy, 5th of balanced error)."""
    p, t = np.ravel(pred), np.ravel(true)
    runs = [state_scores(np.roll(p, s), t) for s in range(min_shift, len(p) - min_shift + 1, step)]
    out = {}
    for key in ("state_accuracy", "state_balanced_error"):
        values = np.array([r[key] for r in runs])
        best = np.percentile(values, 95 if key == "state_accuracy" else 5)
        out[key] = {"mean": float(values.mean()), "best_5pct": float(best)}
    out["num_shifts"] = len(runs)
    return out


def fixed_scores(pred, true) -> dict[str, float]:
    """``state_accuracy`` and ``state_balanced_error`` with labels taken as given (no matching).

    Args:
        pred, true: int arrays of the same shape.
    """
    p, t = np.ravel(pred), np.ravel(true)
    recalls = [np.mean(p[t == k] == k) for k in np.unique(t)]
    return {
        "state_accuracy": float(np.mean(p == t)),
        "state_balanced_error": float(1 - np.mean(recalls)),
    }


def train_mapping(pred, true, K: int) -> np.ndarray:
    """int (K,): state -> label by the Hungarian matching on (pred, true); states left over
    (K above the number of labels) map to -1, i.e. always wrong."""
    from scipy.optimize import linear_sum_assignment

    L = int(np.max(true)) + 1
    overlap = np.zeros((K, L))
    np.add.at(overlap, (np.ravel(pred), np.ravel(true)), 1)
    rows, cols = linear_sum_assignment(-overlap)
    mapping = np.full(K, -1)
    mapping[rows] = cols
    return mapping


def baselines(train, test, K: int, dims: int) -> dict:
    """Majority training label, k-means on PCA (Hungarian-matched on the test bins, as the srnn)
    and the supervised LDA decoder, scored on the test windows."""
    majority = int(np.bincount(train.states.ravel()).argmax())
    return {
        "majority_label": {
            "label": int(majority),
            **fixed_scores(np.full_like(test.states, majority), test.states),
        },
        "kmeans_pca": state_scores(kmeans_pca_states(train, test, K, dims), test.states),
        "lda_decoder_supervised": fixed_scores(lda_decode(train, test), test.states),
    }


# ----------------------------------------------------------------------------------------------
# Fits
# ----------------------------------------------------------------------------------------------


def fit_srnn(train, test, out: Path, K: int, D: int, steps: int, seed: int):
    """Fit srnn (Gaussian, K states, D latents) on ``train`` and score it on ``test``.

    Returns (metrics, paths): metrics of :func:`switching.evaluate` on the test windows plus
    in-sample scores on the training windows, test scores with the state-to-label matching fixed
    on the training windows, the shifted-state null, each state's mean (pupil, wheel, whisking)
    on the test windows (raw traces); paths = Viterbi states int
    (train windows, T) and (test windows, T) from :func:`switching.most_likely_states`.
    """
    start = time.perf_counter()
    options = dict(states=K, latent_dim=D, steps=steps, seed=seed, likelihood="gaussian")
    config = switching.make_config("srnn", [train], options=options)
    params, result = switching.fit(config, [train], out_dir=out, progress=False)
    metrics = switching.evaluate(config, params, [test], horizons=(1, 5, 10), num_samples=16)
    switching.report(config, params, [test], out)
    train_path = switching.most_likely_states(config, params, [train])
    test_path = switching.most_likely_states(config, params, [test])
    mapping = train_mapping(train_path, train.states, K)
    metrics.update(
        train_windows=state_scores(train_path, train.states),
        test_matched_on_train=fixed_scores(mapping[test_path], test.states),
        test_shifted_null=shifted_null(test_path, test.states),
        state_to_label=mapping.tolist(),
        test_state_occupancy=np.bincount(test_path.ravel(), minlength=K).tolist(),
        test_behavior_per_state=[
            None if np.isnan(row).any() else row.round(3).tolist()
            for row in state_means(test.behavior, test_path, K)
        ],
        fit_steps=int(result.steps_run),
        seconds=round(time.perf_counter() - start, 1),
    )
    print(
        f"{out.name:>14}: test state_accuracy {metrics['state_accuracy']:.3f}  "
        f"balanced_error {metrics['state_balanced_error']:.3f}  "
        f"recon_r2 {metrics['recon_r2']:.3f}  steps {result.steps_run}  "
        f"{metrics['seconds']:.0f} s",
        flush=True,
    )
    return metrics, (train_path, test_path)


def with_states(session, states):
    """A copy of ``session`` with other reference labels, int (trials, T)."""
    return dataclasses.replace(session, states=np.asarray(states, np.int32))


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def paint(func_map, values) -> np.ndarray:
    """Parcel values (P,) painted on the parcel map (H, W) whose pixels hold 1..P (0 = outside
    cortex). Returns float (H, W), NaN outside."""
    image = np.full(func_map.shape, np.nan)
    inside = func_map > 0
    image[inside] = np.asarray(values)[func_map[inside].astype(int) - 1]
    return image


def outlines(atlas) -> np.ndarray:
    """bool (H, W): pixels where the atlas label changes to a neighbour's."""
    edge = np.zeros(atlas.shape, bool)
    edge[1:] |= atlas[1:] != atlas[:-1]
    edge[:, 1:] |= atlas[:, 1:] != atlas[:, :-1]
    return edge


def state_means(y, states, K: int) -> np.ndarray:
    """Mean of y per state: y (trials, T, F), states int (trials, T) -> (K, F), NaN rows for
    states never visited."""
    flat, lab = y.reshape(-1, y.shape[-1]), np.ravel(states)
    return np.stack(
        [flat[lab == k].mean(0) if (lab == k).any() else flat[0] * np.nan for k in range(K)]
    )


def plot_states_over_time(plt, session, first: int, path, labels, out: Path) -> Path:
    """srnn states (named by their matched label) above the behavioural labels, wheel and
    whisking over the windows from ``first`` on; path, labels int (windows, T)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    T = session.num_timesteps
    frames = path.size
    t0, t1 = first * T * session.dt, (first * T + frames) * session.dt
    beh = session.behavior[first:].reshape(-1, session.behavior.shape[-1])
    t = t0 + np.arange(frames) * session.dt
    cmap = ListedColormap(STATE_COLORS[: len(WIDEFIELD_STATES)])
    fig, axes = plt.subplots(
        4, 1, figsize=(11, 5.2), sharex=True, gridspec_kw={"height_ratios": [0.6, 0.6, 1.2, 1.2]}
    )
    for ax, row, name in ((axes[0], path, "srnn state"), (axes[1], labels, "behaviour")):
        ax.imshow(
            np.ravel(row)[None],
            aspect="auto",
            cmap=cmap,
            vmin=-0.5,
            vmax=len(WIDEFIELD_STATES) - 0.5,
            interpolation="nearest",
            extent=(t0, t1, 0, 1),
        )
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
    for ax, b, name in ((axes[2], 1, "wheel"), (axes[3], 2, "whisking")):
        ax.plot(t, beh[:, b], color="0.2", lw=0.8)
        ax.set_ylabel(name)
    for ax in axes:
        for w in range(1, frames // T):
            ax.axvline(t0 + w * T * session.dt, color="0.6", lw=0.6, ls=":")
    axes[-1].set_xlabel("time in the recording (s); dotted: window boundaries")
    handles = [Patch(color=STATE_COLORS[k], label=n) for k, n in enumerate(WIDEFIELD_STATES)]
    axes[0].legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(0, 1.05),
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(
        "test windows: srnn states (matched to labels on training windows) vs behaviour", y=0.99
    )
    return _save(fig, out / "states_over_time.png")


def plot_state_maps(plt, func_map, atlas, y, path, labels, K: int, out: Path) -> Path:
    """Per-state mean z-scored activity per parcel on the parcel map (H, W) with the atlas
    (H, W) outlines; row 1: srnn states (named by their matched label), row 2: behavioural
    labels. y (windows, T, N); path, labels int (windows, T). Each panel has its own symmetric
    colour scale (running raises the whole cortex and would wash out the others)."""
    rows = [("srnn state", path, K), ("behaviour", labels, len(WIDEFIELD_STATES))]
    rr, cc = np.nonzero((func_map > 0) | (atlas > 0))
    crop = (slice(rr.min() - 2, rr.max() + 3), slice(cc.min() - 2, cc.max() + 3))
    edge = np.ma.masked_where(~outlines(atlas), np.zeros(atlas.shape))[crop]
    cols = max(k for _, _, k in rows)
    fig, axes = plt.subplots(2, cols, figsize=(2.9 * cols, 7.2), squeeze=False)
    for r, (name, p, k) in enumerate(rows):
        means = state_means(y, p, k)
        share = np.bincount(np.ravel(p)[np.ravel(p) >= 0], minlength=k) / np.size(p)
        for j in range(cols):
            ax = axes[r, j]
            ax.set_axis_off()
            if j >= k:
                continue
            vmax = float(np.nanmax(np.abs(means[j]))) if np.isfinite(means[j]).any() else 1.0
            image = ax.imshow(paint(func_map, means[j])[crop], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.imshow(edge, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            title = WIDEFIELD_STATES[j] if j < len(WIDEFIELD_STATES) else f"state {j}"
            ax.set_title(f"{name}: {title}\n{100 * share[j]:.0f}% of bins", fontsize=9)
            fig.colorbar(image, ax=ax, shrink=0.7, label="mean z-score")
    fig.suptitle("mean activity per state: parcels on the functional map, Allen atlas outlines")
    return _save(fig, out / "state_maps.png")


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    fig.clf()
    return path


# ----------------------------------------------------------------------------------------------
# The study
# ----------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", default="widefield_states_out")
    parser.add_argument("--quick", action="store_true", help="one srnn fit, fewer steps")
    args = parser.parse_args(argv)
    data = Path(args.data)
    for name in (RECORDING, ATLAS):
        if not (data / name).exists():
            print(
                f"widefield_states: data file {data / name} not found (pass --data)",
                file=sys.stderr,
            )
            return 2
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = 150 if args.quick else 2000

    session = load_widefield(data / RECORDING, window=WINDOW)
    func_map = loadmat(data / RECORDING)["func_map"]
    atlas = loadmat(data / ATLAS)["anatomic_parcels"]
    train, test = split_trials(session, NUM_TRAIN)
    D = 6
    results = {
        "protocol": {
            "windows": session.num_trials,
            "window_frames": WINDOW,
            "dt": session.dt,
            "train_windows": [0, NUM_TRAIN - 1],
            "test_windows": [NUM_TRAIN, session.num_trials - 1],
            "split": "contiguous in time: first 300 s train, last 100 s test",
            "label_names": list(WIDEFIELD_STATES),
            "test_label_share": (
                np.bincount(test.states.ravel(), minlength=3) / test.states.size
            ).tolist(),
            "train_label_share": (
                np.bincount(train.states.ravel(), minlength=3) / train.states.size
            ).tolist(),
            "steps": steps,
        },
        "baselines_K3": baselines(train, test, 3, D),
        "fits": {},
    }
    runs = [(3, D, 0)] if args.quick else [(3, D, 0), (3, D, 1), (3, D, 2), (3, 4, 0), (3, 8, 0)]
    paths = {}
    for K, dim, seed in runs:
        name = f"srnn_K{K}_D{dim}_s{seed}"
        results["fits"][name], paths[name] = fit_srnn(train, test, out / name, K, dim, steps, seed)

    if not args.quick:  # K = 2 against quiet vs active (whisking or running)
        train2 = with_states(train, train.states > 0)
        test2 = with_states(test, test.states > 0)
        results["baselines_K2_quiet_vs_active"] = baselines(train2, test2, 2, D)
        name = f"srnn_K2_D{D}_s0"
        results["fits"][name], _ = fit_srnn(train2, test2, out / name, 2, D, steps, 0)

    seeds = [v for k, v in results["fits"].items() if k.startswith(f"srnn_K3_D{D}_")]
    results["summary_K3_D6"] = {
        key: {
            "mean": float(np.mean([m[key] for m in seeds])),
            "sd": float(np.std([m[key] for m in seeds])),
            "seeds": len(seeds),
        }
        for key in ("state_accuracy", "state_balanced_error", "recon_r2")
    }

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_path, test_path = paths[f"srnn_K3_D{D}_s0"]
    mapping = np.array(results["fits"][f"srnn_K3_D{D}_s0"]["state_to_label"])
    named = mapping[np.concatenate([train_path, test_path])]  # state -> matched label
    figures = [
        plot_states_over_time(plt, session, NUM_TRAIN, named[NUM_TRAIN:], test.states, out),
        plot_state_maps(plt, func_map, atlas, session.y, named, session.states, 3, out),
    ]
    results["figures"] = [f.name for f in figures]
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    (out / "metrics.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    s = results["summary_K3_D6"]
    b = results["baselines_K3"]
    print(
        f"srnn K=3 D={D} ({s['state_accuracy']['seeds']} seed(s)), test: accuracy "
        f"{s['state_accuracy']['mean']:.3f}, balanced error {s['state_balanced_error']['mean']:.3f}"
        f"; majority {b['majority_label']['state_accuracy']:.3f}, k-means on PCA "
        f"{b['kmeans_pca']['state_accuracy']:.3f}, LDA (supervised) "
        f"{b['lda_decoder_supervised']['state_accuracy']:.3f}"
    )
    print(f"wall time {results['wall_seconds']:.0f} s; results in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
