"""Scores of fitted models against data (docs/design.md, "Metrics"). Plain NumPy/SciPy.

All functions take observations with a leading trial axis and a mask of the same leading
shape; masked entries never count.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

R2_UNDEFINED = "undefined: the observed values have no variance, which r^2 divides by"


def r2_variance_weighted(y_true, y_pred, mask=None) -> float:
    """r^2 pooled over outputs, weighted by each output's variance (sklearn's
    ``r2_score(..., multioutput="variance_weighted")``): 1 - sum SSE / sum SST over neurons.

    Args:
        y_true, y_pred: (..., N) arrays; all leading axes are samples.
        mask: bool broadcastable to ``y_true``; False entries are excluded per neuron.

    Returns NaN (reason: :data:`R2_UNDEFINED`) when the observed values have no variance.
    """
    y_true = np.asarray(y_true, np.float64)
    y_pred = np.asarray(y_pred, np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shapes differ: {y_true.shape} vs {y_pred.shape}")
    N = y_true.shape[-1]
    w = np.ones_like(y_true) if mask is None else np.broadcast_to(mask, y_true.shape).astype(float)
    yt, yp, w = y_true.reshape(-1, N), y_pred.reshape(-1, N), w.reshape(-1, N)
    count = w.sum(0)
    mean = (w * yt).sum(0) / np.maximum(count, 1)
    sst = (w * (yt - mean) ** 2).sum(0)
    sse = (w * (yt - yp) ** 2).sum(0)
    if sst.sum() <= 0:
        return float("nan")
    return float(1.0 - sse.sum() / sst.sum())


def forecast_origins(bins, horizons) -> np.ndarray:
    """Per-trial forecast origins T0_i: int [B], the number of bins the guide sees.

    Horizons count from each trial's own last observed bin L_i (its padding after L_i does not
    count): T0_i = L_i + 1 - max(horizons), at least 1, so that the largest horizon lands on
    L_i when the trial is long enough; a shorter trial keeps the horizons that fit in it (see
    :func:`forecast_targets`). bins: bool [B, T] bins with any observed neuron.
    """
    bins = np.asarray(bins, bool)
    T = bins.shape[1]
    length = np.where(bins.any(1), T - np.argmax(bins[:, ::-1], 1), 0)  # L_i + 1
    return np.maximum(length - max(horizons), 1).astype(np.int32)


def forecast_targets(bins, origins, k: int) -> np.ndarray:
    """Trials scored at horizon k: bool [B], those whose target bin T0_i - 1 + k is observed
    (so inside the trial). bins: bool [B, T]; origins: int [B] from :func:`forecast_origins`."""
    bins = np.asarray(bins, bool)
    t = np.asarray(origins) - 1 + k
    inside = t < bins.shape[1]
    return inside & bins[np.arange(len(t)), np.minimum(t, bins.shape[1] - 1)]


def match_labels(pred, true, num_states: int | None = None) -> np.ndarray:
    """Relabel ``pred`` by the one-to-one matching of labels that maximises agreement with
    ``true`` (Hungarian algorithm). Returns the relabelled copy of ``pred``."""
    pred = np.asarray(pred).astype(int)
    true = np.asarray(true).astype(int)
    K = max(int(pred.max()) + 1, int(true.max()) + 1, num_states or 0)
    overlap = np.zeros((K, K))
    np.add.at(overlap, (pred.ravel(), true.ravel()), 1)
    rows, cols = linear_sum_assignment(-overlap)
    mapping = np.arange(K)
    mapping[rows] = cols
    return mapping[pred]


def state_scores(pred, true, mask=None) -> dict[str, float]:
    """``state_accuracy`` and ``state_balanced_error`` (1 - balanced accuracy) after matching.

    Args:
        pred, true: int (trials, T) state labels; mask: bool (trials, T) bins to score.
    """
    pred, true = np.asarray(pred), np.asarray(true)
    keep = np.ones(true.shape, bool) if mask is None else np.asarray(mask, bool)
    p, t = pred[keep], true[keep]
    matched = match_labels(p, t)
    recalls = [np.mean(matched[t == k] == k) for k in np.unique(t)]
    return {
        "state_accuracy": float(np.mean(matched == t)),
        "state_balanced_error": float(1.0 - np.mean(recalls)),
    }


def ridge_decode_r2(features, target, mask=None, train_fraction=0.8, alpha=1.0) -> float:
    """Decode ``target`` from ``features`` with ridge regression fitted on the first
    ``train_fraction`` of trials and scored (variance-weighted r^2) on the rest.

    Args:
        features: (trials, T, F); target: (trials, T, B); mask: bool (trials, T).
    """
    features, target = np.asarray(features, np.float64), np.asarray(target, np.float64)
    trials = features.shape[0]
    n_train = int(np.clip(round(train_fraction * trials), 1, trials - 1))
    keep = np.ones(features.shape[:2], bool) if mask is None else np.asarray(mask, bool)
    X, Y = features[:n_train][keep[:n_train]], target[:n_train][keep[:n_train]]
    mu_x, mu_y = X.mean(0), Y.mean(0)
    sd_x = X.std(0) + 1e-8
    Xs = (X - mu_x) / sd_x
    W = np.linalg.solve(Xs.T @ Xs + alpha * np.eye(Xs.shape[1]), Xs.T @ (Y - mu_y))
    Xt = (features[n_train:] - mu_x) / sd_x
    pred = Xt @ W + mu_y
    return r2_variance_weighted(target[n_train:], pred, keep[n_train:, :, None])
