"""Posterior diagnostics that need only arrays: ELBO convergence and posterior predictive checks.

- :func:`elbo_convergence`: is the loss curve still going down at its end, beyond its noise?
- :func:`rank_histogram_figure`: rank histograms of simulation-based calibration;
  (:func:`convergence_warning` says so in one line.)
- :func:`state_occupancy` / :func:`collapse_warning`: does a fit with K states use only one?
- :func:`ppc_statistics` / :func:`ppc_figure`: summary statistics of the observed data against
  the same statistics of posterior predictive draws (mean rate and Fano factor per neuron,
  autocorrelation of the population activity, dwell times of discrete states).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def elbo_convergence(losses, window_fraction: float = 0.1, min_window: int = 50) -> dict:
    """Check the end of an SVI loss curve.

    Over the last window (``window_fraction`` of the run, at least ``min_window`` steps) a least
    squares line is fitted: the drift is how much it still falls across the window, the noise is
    the standard deviation of the residuals. The fit counts as converged when the drift is below
    the noise: more steps would change the loss by less than its Monte Carlo scatter.

    Returns:
        ``{"converged", "drift", "noise", "window"}``; with too few steps, converged is False.
    """
    losses = np.asarray(losses, np.float64)
    window = max(min_window, int(window_fraction * len(losses)))
    if len(losses) < window:
        return {"converged": False, "drift": float("nan"), "noise": float("nan"), "window": window}
    tail = losses[-window:]
    steps = np.arange(window)
    slope, intercept = np.polyfit(steps, tail, 1)
    noise = float(np.std(tail - (slope * steps + intercept)))
    drift = float(-slope * window)  # positive while the loss is still falling
    return {
        "converged": bool(drift < max(noise, 1e-12)),
        "drift": drift,
        "noise": noise,
        "window": window,
    }


class FitWarning(UserWarning):
    """A fit that should not be compared as it is: it did not converge, or it collapsed onto
    one discrete state. The message is one line."""


def convergence_warning(losses, what: str = "the fit") -> str | None:
    """One line saying that the loss curve float (steps,) failed :func:`elbo_convergence`
    (None when it passed)."""
    check = elbo_convergence(losses)
    if check["converged"]:
        return None
    if len(losses) < check["window"]:
        return (
            f"{what} did not converge: {len(losses)} steps are too few to check (the check "
            f"needs {check['window']}); compare it with others only after resuming it with more "
            "--steps"
        )
    return (
        f"{what} did not converge in {len(losses)} steps: the loss still falls by "
        f"{check['drift']:.3g} over its last {check['window']} steps, more than its noise "
        f"{check['noise']:.3g}; compare it with others only after resuming it with more --steps"
    )


def state_occupancy(states, bin_mask=None, num_states: int | None = None) -> np.ndarray:
    """Fraction of observed bins in each state: float (K,). states: int (trials, T);
    bin_mask: bool (trials, T) bins that count (None = all)."""
    states = np.asarray(states)
    keep = np.ones(states.shape, bool) if bin_mask is None else np.asarray(bin_mask, bool)
    K = num_states or int(states.max()) + 1
    counts = np.bincount(states[keep].astype(int), minlength=K)[:K]
    return counts / max(int(keep.sum()), 1)


def collapse_warning(occupancy, what: str = "the fit", threshold: float = 0.95) -> str | None:
    """One line when one state holds more than ``threshold`` of the bins (None otherwise).
    occupancy: float (K,) from :func:`state_occupancy`, K > 1."""
    occupancy = np.asarray(occupancy, np.float64)
    if len(occupancy) < 2 or occupancy.max() <= threshold:
        return None
    shares = ", ".join(f"{k}: {v:.3f}" for k, v in enumerate(occupancy))
    return (
        f"{what} has {len(occupancy)} states but puts {occupancy.max():.1%} of the observed "
        f"bins in state {int(occupancy.argmax())} (state occupancies {shares})"
    )


def _autocorrelation(x, mask, max_lag):
    """Mean autocorrelation of the population activity x (trials, T) over observed bins."""
    x = np.where(mask, x, np.nan)
    x = x - np.nanmean(x)
    var = np.nanmean(x**2)
    out = [1.0]
    for lag in range(1, max_lag + 1):
        out.append(float(np.nanmean(x[:, lag:] * x[:, :-lag]) / var))
    return np.asarray(out)


def dwell_times(states, mask=None) -> np.ndarray:
    """Lengths of the runs of equal state within each trial (over observed bins)."""
    states = np.asarray(states)
    out = []
    for i, trial in enumerate(states):
        if mask is not None:
            trial = trial[np.asarray(mask[i], bool)]
        if trial.size == 0:
            continue
        change = np.flatnonzero(np.diff(trial)) + 1
        edges = np.r_[0, change, trial.size]
        out.extend(np.diff(edges))
    return np.asarray(out)


def ppc_statistics(y, mask, max_lag: int = 10) -> dict:
    """Statistics of one data set y (trials, T, N) with mask (trials, T, N)."""
    y = np.asarray(y, np.float64)
    mask = np.asarray(mask, bool)
    count = np.maximum(mask.sum((0, 1)), 1)
    mean = (y * mask).sum((0, 1)) / count
    var = (((y - mean) ** 2) * mask).sum((0, 1)) / count
    population = np.where(mask, y, 0).sum(-1)
    return {
        "mean": mean,
        "variance": var,
        "fano": var / np.maximum(np.abs(mean), 1e-9),
        "autocorrelation": _autocorrelation(population, mask.any(-1), max_lag),
    }


def ppc_figure(
    y,
    mask,
    predictive,
    out: Path,
    *,
    states=None,
    predicted_states=None,
    likelihood: str = "gaussian",
    max_lag: int = 10,
) -> Path:
    """Observed statistics against their posterior predictive distribution.

    Args:
        y, mask: (trials, T, N) observations and mask.
        predictive: (S, trials, T, N) posterior predictive draws of y.
        states: optional (trials, T) reference labels; predicted_states: optional (S', trials, T)
            or (trials, T) model states, for the dwell-time panel.
        likelihood: "poisson" shows Fano factors, "gaussian" variances.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    observed = ppc_statistics(y, mask, max_lag)
    draws = [ppc_statistics(p, mask, max_lag) for p in np.asarray(predictive)]
    spread_key = "fano" if likelihood == "poisson" else "variance"
    panels = 4 if (states is not None or predicted_states is not None) else 3
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.6))
    for ax, key, label in (
        (axes[0], "mean", "mean per neuron"),
        (axes[1], spread_key, f"{spread_key} per neuron"),
    ):
        sim = np.stack([d[key] for d in draws])
        lo, hi = np.percentile(sim, [5, 95], axis=0)
        mid = np.median(sim, axis=0)
        ax.errorbar(observed[key], mid, yerr=[mid - lo, hi - mid], fmt="o", ms=3, alpha=0.7)
        edge = [min(observed[key].min(), lo.min()), max(observed[key].max(), hi.max())]
        ax.plot(edge, edge, "k--", lw=1)
        ax.set(xlabel=f"observed {label}", ylabel="predictive (median, 90%)", title=label)
    sim = np.stack([d["autocorrelation"] for d in draws])
    lags = np.arange(max_lag + 1)
    axes[2].fill_between(
        lags, *np.percentile(sim, [5, 95], axis=0), alpha=0.3, label="predictive 90%"
    )
    axes[2].plot(lags, observed["autocorrelation"], "k.-", label="observed")
    axes[2].set(xlabel="lag (bins)", ylabel="autocorrelation", title="population activity")
    axes[2].legend(fontsize=8)
    if panels == 4:
        ax = axes[3]
        bin_mask = np.asarray(mask).any(-1)
        if states is not None:
            ax.hist(
                dwell_times(states, bin_mask), bins=20, alpha=0.5, density=True, label="reference"
            )
        if predicted_states is not None:
            pred = np.asarray(predicted_states)
            pred = pred.reshape(-1, *pred.shape[-2:])
            times = np.concatenate([dwell_times(p, bin_mask) for p in pred])
            ax.hist(times, bins=20, alpha=0.5, density=True, label="model")
        ax.set(xlabel="dwell time (bins)", ylabel="density", title="state dwell times")
        ax.legend(fontsize=8)
    fig.suptitle("posterior predictive checks")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def rank_histogram_figure(summary: dict, out: Path, band: float = 0.99) -> Path:
    """Rank histograms of simulation-based calibration, one panel per latent dimension (and
    one for the discrete state's randomised PIT when the summary has states).

    Args:
        summary: :func:`neurodyn.inference.calibration.summarize`'s dict, with its arrays
            ``ranks`` [B, T', D] (and ``state_pit`` [B, T']).
        out: the PNG to write.
        band: the grey band holds each bin's count with this probability under uniform ranks
            (binomial quantiles).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    from .calibration import histogram

    L = summary["num_draws"]
    ranks = np.asarray(summary["ranks"])
    dims = summary["per_dimension"]
    panels = [(f"h[{d}]", ranks[..., d], dims[d]) for d in range(ranks.shape[-1])]
    if "state_pit" in summary:
        pit_ranks = np.minimum((np.asarray(summary["state_pit"]) * (L + 1)).astype(int), L)
        panels.append(("state (randomised PIT)", pit_ranks, summary["states"]["pit_uniformity"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    for ax, (name, r, stat) in zip(axes[0], panels, strict=True):
        counts, expected = histogram(r, L, stat["bins"])
        x = np.arange(len(counts))
        n = r.size
        lo = stats.binom.ppf((1 - band) / 2, n, expected / n)
        hi = stats.binom.ppf((1 + band) / 2, n, expected / n)
        ax.fill_between(x, lo, hi, step="mid", color="0.85", label=f"uniform {band:.0%}")
        ax.plot(x, expected, color="0.4", lw=1)
        ax.bar(x, counts, width=0.9, color="C0", alpha=0.8)
        title = f"{name}: chi2 p = {stat['p_value']:.2g}"
        if "coverage_90" in stat:
            title += f"\ncov50 {stat['coverage_50']:.2f}, cov90 {stat['coverage_90']:.2f}"
        ax.set(title=title, xlabel=f"rank bin (of {L} draws)", ylabel="count")
        ax.title.set_fontsize(9)
    axes[0, 0].legend(fontsize=8, loc="upper center")
    fig.suptitle(
        f"simulation-based calibration: {summary['verdict']} "
        f"(coverage_90 {summary['coverage_90']:.3f}, nominal {summary['nominal_90']:.2f})"
    )
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
