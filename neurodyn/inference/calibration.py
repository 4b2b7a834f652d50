"""Simulation-based calibration (SBC, Talts et al. 2018) of an amortized posterior.

Latent values are simulated from a model together with observations, the guide is run on the
observations, and each true value is ranked among the guide's L posterior draws. If the guide's
posterior were the model's exact posterior, every rank would be uniform on {0, ..., L}; a guide
that is too narrow (over-confident) puts too many ranks at the extremes and its central
intervals cover the truth less often than their nominal level; one that is too wide
(under-confident) piles ranks in the middle and over-covers; a shifted one tilts the
histogram.

Everything here is NumPy on arrays (the simulation and the guide's draws are the family's
job, see ``neurodyn.families.switching.check``):

* :func:`ranks`: rank of each true value among its draws (ties broken at random);
* :func:`coverage`: how often the central ``level`` interval of the draws holds the truth,
  computed from the ranks, and :func:`nominal_coverage`, what an exact posterior gives with
  the same L;
* :func:`uniformity_test`: chi-square test of a rank histogram against the uniform;
* :func:`state_pit`, :func:`reliability`: the discrete state's calibration (randomised PIT of
  the true state under the posterior state probabilities; reliability of the probabilities);
* :func:`thin`: keep every few bins, so that the ranks are closer to independent;
* :func:`summarize` and :func:`verdict`: the numbers ``neurodyn check`` reports.
"""

from __future__ import annotations

import math

import numpy as np

LEVELS = (0.5, 0.9)
ALPHA = 0.01  # family-wise level of the uniformity tests behind the verdict


def ranks(truth, draws, rng=None) -> np.ndarray:
    """Rank of each true value among its posterior draws.

    Args:
        truth: [...] true values.
        draws: [L, ...] posterior draws of the same values.
        rng: ``numpy.random.Generator`` that breaks ties (draws equal to the truth, e.g. from a
            point-mass guide) uniformly at random; None = a generator seeded with 0.

    Returns:
        int [...] ranks in 0..L: the number of draws below the truth (plus a uniform share of
        the draws equal to it).
    """
    truth, draws = np.asarray(truth), np.asarray(draws)
    if draws.shape[1:] != truth.shape:
        raise ValueError(f"draws {draws.shape} do not match truth {truth.shape} after axis 0")
    rng = np.random.default_rng(0) if rng is None else rng
    below = (draws < truth).sum(0)
    ties = (draws == truth).sum(0)
    if ties.any():
        below = below + np.floor(rng.uniform(size=truth.shape) * (ties + 1)).astype(below.dtype)
    return below.astype(np.int64)


def _inside(rank, num_draws: int, level: float):
    """Whether rank r (of L draws) lies in the central ``level`` interval: the normalised rank
    (r + 1/2) / (L + 1) within ``level`` / 2 of 1/2."""
    u = (np.asarray(rank) + 0.5) / (num_draws + 1)
    return np.abs(u - 0.5) <= level / 2 + 1e-12


def coverage(rank, num_draws: int, level: float) -> float:
    """Share of true values inside the draws' central ``level`` interval.

    Args:
        rank: int [...] ranks from :func:`ranks` (any shape; all entries count).
        num_draws: L, the number of draws each rank was taken among.
        level: e.g. 0.9 for the central 90% interval.
    """
    rank = np.asarray(rank)
    return float(np.mean(_inside(rank, num_draws, level))) if rank.size else float("nan")


def nominal_coverage(num_draws: int, level: float) -> float:
    """The coverage of :func:`coverage` under exact calibration (ranks uniform on 0..L): the
    share of the L + 1 rank values inside the interval; equals ``level`` when
    ``level * (L + 1)`` is an even integer (L = 99: 0.5 and 0.9 exactly)."""
    return coverage(np.arange(num_draws + 1), num_draws, level)


def histogram(rank, num_draws: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank histogram: (counts int [bins], expected float [bins]) with the L + 1 rank values
    split into ``bins`` contiguous groups (as equal as possible) and the expected counts of
    uniform ranks. rank: int [n]."""
    rank = np.asarray(rank).ravel()
    bins = max(1, min(int(bins), num_draws + 1))
    edges = np.linspace(0, num_draws + 1, bins + 1).round().astype(int)  # rank-value groups
    counts = np.array(
        [((rank >= a) & (rank < b)).sum() for a, b in zip(edges[:-1], edges[1:], strict=True)]
    )
    expected = rank.size * np.diff(edges) / (num_draws + 1)
    return counts, expected


def default_bins(num_ranks: int, num_draws: int) -> int:
    """Histogram bins: at most 20, at least 10 expected ranks per bin, at most L + 1."""
    return int(max(2, min(20, num_ranks // 10, num_draws + 1)))


def uniformity_test(rank, num_draws: int, bins: int | None = None) -> dict:
    """Chi-square test of uniform ranks.

    Args:
        rank: int [n] ranks in 0..L (one latent dimension, all trials and kept bins).
        num_draws: L.
        bins: histogram bins (None = :func:`default_bins`).

    Returns:
        {"chi2", "dof", "p_value", "bins", "counts" [bins], "expected" [bins]}. The p-value
        assumes independent ranks; ranks of nearby bins of one trial are correlated, which makes
        it too small (see :func:`rank_autocorrelation`).
    """
    from scipy import stats

    rank = np.asarray(rank).ravel()
    bins = default_bins(rank.size, num_draws) if bins is None else int(bins)
    counts, expected = histogram(rank, num_draws, bins)
    chi2, p = stats.chisquare(counts, expected)
    return {
        "chi2": float(chi2),
        "dof": len(counts) - 1,
        "p_value": float(p),
        "bins": len(counts),
        "counts": counts.tolist(),
        "expected": expected.tolist(),
    }


def rank_autocorrelation(rank, num_draws: int) -> float:
    """Correlation of the normalised ranks of consecutive kept bins of a trial.

    rank: int [trials, T', ...] (T' kept bins; trailing axes, e.g. latent dimensions, are
    pooled). Near 0: the ranks are close to independent and the chi-square p-values hold;
    large: the kept bins are too close and the p-values are too small."""
    u = (np.asarray(rank, np.float64) + 0.5) / (num_draws + 1) - 0.5
    if u.ndim < 2 or u.shape[1] < 2:
        return float("nan")
    a, b = u[:, :-1].ravel(), u[:, 1:].ravel()
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def thin(x, every: int, axis: int = 1):
    """Every ``every``-th entry along ``axis`` (time), starting at ``every // 2``."""
    x = np.asarray(x)
    index = np.arange(every // 2, x.shape[axis], every)
    return np.take(x, index, axis=axis)


def state_pit(states, probs, rng=None) -> np.ndarray:
    """Randomised probability integral transform of the true discrete states.

    Args:
        states: int [...] true states.
        probs: [..., K] posterior probabilities of the states.
        rng: generator for the randomisation (None = seeded with 0).

    Returns:
        [...] values F(s - 1) + U * p(s) with U uniform on [0, 1) and F the cumulative
        probability in state order: uniform on [0, 1] when the probabilities are calibrated
        (for any order of the states).
    """
    states, probs = np.asarray(states), np.asarray(probs, np.float64)
    rng = np.random.default_rng(0) if rng is None else rng
    probs = probs / probs.sum(-1, keepdims=True)
    before = np.take_along_axis(np.cumsum(probs, -1) - probs, states[..., None], -1)[..., 0]
    own = np.take_along_axis(probs, states[..., None], -1)[..., 0]
    return before + rng.uniform(size=states.shape) * own


def reliability(states, probs, bins: int = 10) -> dict:
    """Reliability of the state probabilities, one-vs-rest over all states.

    Args:
        states: int [...] true states; probs: [..., K] their posterior probabilities.
        bins: equal-width bins of the predicted probability.

    Returns:
        {"predicted" [bins], "observed" [bins], "count" [bins] (NaN where a bin is empty),
        "ece"}: mean predicted probability and observed frequency of the event "state = k" per
        bin, and the expected calibration error sum_b count_b |observed_b - predicted_b| / n.
    """
    states, probs = np.asarray(states), np.asarray(probs, np.float64)
    K = probs.shape[-1]
    p = probs.reshape(-1, K).ravel()
    hit = (states.reshape(-1)[:, None] == np.arange(K)).ravel().astype(np.float64)
    which = np.clip((p * bins).astype(int), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = np.bincount(which, p, bins) / count
        observed = np.bincount(which, hit, bins) / count
    gap = np.where(count > 0, np.abs(observed - predicted), 0.0)
    return {
        "predicted": predicted.tolist(),
        "observed": observed.tolist(),
        "count": count.astype(int).tolist(),
        "ece": float((count * gap).sum() / max(count.sum(), 1)),
    }


def verdict(coverage_50: float, coverage_90: float, num_ranks: int, p_values, num_draws: int):
    """One word on a summary: "over-confident", "under-confident", "biased" or "calibrated".

    Interval coverage decides first: coverage of the 90% (or 50%) interval more than
    ``tolerance`` below its nominal value means intervals too narrow (over-confident), above
    means too wide (under-confident); the tolerance is max(0.05, 3 binomial SEs of the
    nominal coverage with ``num_ranks`` ranks) for the 90% interval, and twice that for the 50%
    one. With coverage in tolerance, a rank histogram rejected as uniform (any p-value below
    0.01 / the number of tests) means the posterior is shifted or skewed ("biased").

    Returns:
        (word, tolerance of the 90% coverage).
    """
    n = max(int(num_ranks), 1)
    nominal_50, nominal_90 = nominal_coverage(num_draws, 0.5), nominal_coverage(num_draws, 0.9)
    tol_90 = max(0.05, 3 * math.sqrt(nominal_90 * (1 - nominal_90) / n))
    tol_50 = 2 * max(0.05, 3 * math.sqrt(nominal_50 * (1 - nominal_50) / n))
    if coverage_90 < nominal_90 - tol_90 or coverage_50 < nominal_50 - tol_50:
        return "over-confident", tol_90
    if coverage_90 > nominal_90 + tol_90 or coverage_50 > nominal_50 + tol_50:
        return "under-confident", tol_90
    p_values = [p for p in p_values if np.isfinite(p)]
    if p_values and min(p_values) < ALPHA / len(p_values):
        return "biased", tol_90
    return "calibrated", tol_90


def summarize(h_true, h_draws, *, every: int = 1, states=None, state_probs=None, seed: int = 0):
    """The calibration summary of a guide on simulated trials.

    Args:
        h_true: [B, T, D] simulated latent trajectories.
        h_draws: [L, B, T, D] the guide's posterior draws given each trial's observations.
        every: keep every ``every``-th bin (see :func:`thin`) before ranking.
        states: int [B, T] simulated discrete states, or None (K = 1).
        state_probs: [B, T, K] posterior state probabilities given the guide's draws
            (averaged over draws), or None.
        seed: seed of the tie-breaking and PIT randomisation.

    Returns:
        A dict: ``num_trials``, ``num_timesteps``, ``num_draws`` (L), ``thin`` (every),
        ``num_ranks`` (per dimension), ``coverage_50``, ``coverage_90`` (overall),
        ``nominal_50``, ``nominal_90``, ``per_dimension`` (list of {coverage_50, coverage_90,
        chi2, dof, p_value, bins, counts, expected}), ``rank_autocorrelation``, ``verdict``,
        ``tolerance_90``; with states, ``states`` ({num_states, pit_uniformity,
        pit_coverage_90, reliability, mean_true_state_prob, expected_true_state_prob}); and the
        arrays ``ranks`` int [B, T', D] (and ``state_pit`` [B, T']) for the figure, which
        :func:`jsonable` drops.
    """
    rng = np.random.default_rng(seed)
    h_true, h_draws = np.asarray(h_true), np.asarray(h_draws)
    L = h_draws.shape[0]
    r = ranks(thin(h_true, every), thin(h_draws, every, axis=2), rng)  # [B, T', D]
    D = r.shape[-1]
    per_dim = []
    for d in range(D):
        test = uniformity_test(r[..., d], L)
        per_dim.append(
            {
                "coverage_50": coverage(r[..., d], L, 0.5),
                "coverage_90": coverage(r[..., d], L, 0.9),
                **test,
            }
        )
    n = int(r[..., 0].size)
    out = {
        "num_trials": int(h_true.shape[0]),
        "num_timesteps": int(h_true.shape[1]),
        "num_draws": int(L),
        "thin": int(every),
        "num_ranks": n,
        "coverage_50": coverage(r, L, 0.5),
        "coverage_90": coverage(r, L, 0.9),
        "nominal_50": nominal_coverage(L, 0.5),
        "nominal_90": nominal_coverage(L, 0.9),
        "per_dimension": per_dim,
        "rank_autocorrelation": rank_autocorrelation(r, L),
    }
    word, tol = verdict(
        out["coverage_50"], out["coverage_90"], n, [x["p_value"] for x in per_dim], L
    )
    out["verdict"], out["tolerance_90"] = word, tol
    if states is not None and state_probs is not None:
        s, p = thin(states, every), thin(state_probs, every)
        p = p / p.sum(-1, keepdims=True)
        pit = state_pit(s, p, rng)
        # ranks of the PIT among L + 1 equal-width cells, so the same test applies
        pit_ranks = np.minimum((pit * (L + 1)).astype(int), L)
        own = np.take_along_axis(p, s[..., None], -1)[..., 0]
        out["states"] = {
            "num_states": int(p.shape[-1]),
            "pit_uniformity": uniformity_test(pit_ranks, L),
            "pit_coverage_90": coverage(pit_ranks, L, 0.9),
            "reliability": reliability(s, p),
            "mean_true_state_prob": float(own.mean()),
            "expected_true_state_prob": float((p**2).sum(-1).mean()),
        }
    out["ranks"] = r  # for the figure; dropped by :func:`jsonable`
    if states is not None and state_probs is not None:
        out["state_pit"] = pit
    return out


def jsonable(summary: dict) -> dict:
    """``summary`` without its arrays and with NaN / inf as None (strict JSON)."""

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if not isinstance(v, np.ndarray)}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        if isinstance(x, float | np.floating):
            return float(x) if np.isfinite(x) else None
        if isinstance(x, np.integer):
            return int(x)
        return x

    return clean(summary)


def describe(summary: dict) -> str:
    """A short human summary and the one-line verdict."""
    lines = [
        f"SBC of the guide on {summary['num_trials']} simulated trials x "
        f"{summary['num_timesteps']} bins, {summary['num_draws']} draws, every "
        f"{summary['thin']} bins ({summary['num_ranks']} ranks per latent dimension; "
        f"lag-1 rank correlation {summary['rank_autocorrelation']:.2f})",
        f"{'dim':>5} {'cov50':>6} {'cov90':>6} {'chi2':>8} {'p':>8}",
    ]
    for d, x in enumerate(summary["per_dimension"]):
        lines.append(
            f"{d:>5} {x['coverage_50']:6.3f} {x['coverage_90']:6.3f} {x['chi2']:8.1f} "
            f"{x['p_value']:8.2g}"
        )
    if "states" in summary:
        st = summary["states"]
        lines.append(
            f"states: mean p(true state) {st['mean_true_state_prob']:.3f} (calibrated: "
            f"{st['expected_true_state_prob']:.3f}), ECE {st['reliability']['ece']:.3f}, "
            f"PIT chi2 p = {st['pit_uniformity']['p_value']:.2g}"
        )
    lines.append(
        f"verdict: {summary['verdict']} (coverage_90 {summary['coverage_90']:.3f} vs "
        f"{summary['nominal_90']:.2f} +- {summary['tolerance_90']:.3f}, coverage_50 "
        f"{summary['coverage_50']:.3f} vs {summary['nominal_50']:.2f}, min uniformity p "
        f"{min(x['p_value'] for x in summary['per_dimension']):.2g})"
    )
    return "\n".join(lines)
