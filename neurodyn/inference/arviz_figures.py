"""Figures from a run's ArviZ ``DataTree`` (:mod:`neurodyn.inference.arviz_export`), as PNGs.

arviz-plots draws what it has a figure for (rootogram and predictive densities, Pareto k,
model comparison) with its matplotlib backend; the ELBO trace is a plain matplotlib line.
Padded bins are never drawn as data: observations and predictive draws are flattened to the
entries that a mask marks observed (a ``mask`` argument, else a boolean ``observed`` or ``mask``
variable in the tree; without either, every entry counts).

Every function returns the PNG's path and raises a one-line ``ValueError`` when the tree lacks
what the figure needs.
"""

from __future__ import annotations

from pathlib import Path

import arviz_plots
import arviz_stats
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.lines import Line2D

from .importance import KHAT_THRESHOLD

SAMPLE_DIMS = ("chain", "draw")
_MASK_GROUPS = ("observed_data", "constant_data", "posterior", "state_posterior")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _group(tree: xr.DataTree, name: str, figure: str) -> xr.Dataset:
    if name not in tree.children:
        have = ", ".join(sorted(tree.children)) or "none"
        raise ValueError(f"{figure} needs the DataTree group '{name}' (groups: {have})")
    return tree[name].to_dataset()


def _variable(ds: xr.Dataset, var_name: str | None, group: str, figure: str) -> str:
    names = list(ds.data_vars)
    if var_name is None:
        if not names:
            raise ValueError(f"{figure}: group '{group}' holds no variables")
        return names[0]
    if var_name not in names:
        raise ValueError(
            f"{figure}: group '{group}' has no variable {var_name!r} (has {', '.join(names)})"
        )
    return var_name


def _find_mask(tree: xr.DataTree):
    for group in _MASK_GROUPS:
        if group in tree.children:
            ds = tree[group].to_dataset()
            for key in ("observed", "mask"):
                if key in ds and ds[key].dtype == bool:
                    return ds[key].values
    return None


def _observed_entries(observed: xr.DataArray, mask, figure: str) -> np.ndarray:
    """Flat indices of the observed entries of ``observed`` (C order), given a mask over its
    leading axes ((trials, T) or (trials, T, N))."""
    if mask is None:
        return np.arange(observed.size)
    mask = np.asarray(mask, bool)
    lead = observed.shape[: mask.ndim]
    if mask.shape != lead:
        raise ValueError(
            f"{figure}: mask shape {mask.shape} does not match the leading axes {lead} of the "
            f"observed data {observed.shape}"
        )
    full = np.broadcast_to(
        mask.reshape(mask.shape + (1,) * (observed.ndim - mask.ndim)), observed.shape
    )
    keep = np.flatnonzero(full)
    if keep.size == 0:
        raise ValueError(f"{figure}: the mask leaves no observed entry to draw")
    return keep


def _flat_ppc_tree(tree, var_name, mask, figure) -> tuple[xr.DataTree, str, int]:
    """A DataTree with ``posterior_predictive`` (chain, draw, obs) and ``observed_data`` (obs)
    holding only the observed entries of ``var_name``."""
    predictive = _group(tree, "posterior_predictive", figure)
    observed = _group(tree, "observed_data", figure)
    if var_name is None:  # the first observed variable that has predictive draws
        shared = [k for k in observed.data_vars if k in predictive.data_vars]
        var_name = shared[0] if shared else None
    name = _variable(observed, var_name, "observed_data", figure)
    _variable(predictive, name, "posterior_predictive", figure)
    obs, pred = observed[name], predictive[name]
    missing = [d for d in SAMPLE_DIMS if d not in pred.dims]
    if missing:
        raise ValueError(f"{figure}: posterior_predictive '{name}' lacks dims {missing}")
    pred = pred.transpose(*SAMPLE_DIMS, *obs.dims)
    if pred.shape[2:] != obs.shape:
        raise ValueError(
            f"{figure}: posterior_predictive '{name}' shape {pred.shape[2:]} per draw differs "
            f"from observed_data {obs.shape}"
        )
    keep = _observed_entries(obs, _find_mask(tree) if mask is None else mask, figure)
    obs_flat = obs.values.reshape(-1)[keep]
    pred_flat = pred.values.reshape(pred.shape[:2] + (-1,))[..., keep]
    flat = xr.DataTree.from_dict(
        {
            "posterior_predictive": xr.Dataset({name: (("chain", "draw", "obs"), pred_flat)}),
            "observed_data": xr.Dataset({name: (("obs",), obs_flat)}),
        }
    )
    return flat, name, keep.size


def _save(figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    _pyplot().close(figure)
    return path


def _is_counts(values: np.ndarray) -> bool:
    return bool(values.size) and (values >= 0).all() and np.array_equal(values, np.round(values))


def plot_ppc_rootogram(tree: xr.DataTree, path, *, var_name=None, mask=None) -> Path:
    """Rootogram of count observations: for each count value, how many observed bins have it
    (black) against the posterior predictive's frequency (mean and interval), on a square-root
    scale. ``mask``: optional bool (trials, T) or (trials, T, N), True = data."""
    figure = "rootogram"
    flat, name, entries = _flat_ppc_tree(tree, var_name, mask, figure)
    if not _is_counts(flat["observed_data"][name].values):
        raise ValueError(f"{figure}: '{name}' is not counts (non-negative integers); use ppc_dist")
    if not _is_counts(flat["posterior_predictive"][name].values):
        raise ValueError(f"{figure}: posterior predictive '{name}' draws are not counts")
    flat = flat.map_over_datasets(lambda ds: ds.astype(np.int64))  # sessions store counts as float
    _pyplot()
    pc = arviz_plots.plot_ppc_rootogram(flat, backend="matplotlib")
    fig = pc.viz["figure"].item()
    fig.set_size_inches(7.5, 3.5)
    ax = fig.axes[0]
    ax.set_title(
        f"posterior predictive rootogram of '{name}' ({entries} observed bin-neuron entries)"
    )
    ax.set_xlabel("count per bin")
    ax.set_ylabel("number of entries (sqrt scale)")
    _legend(
        ax,
        observed=("observed", "o", ""),
        predicted=("posterior predictive mean and interval", "D", "-"),
    )
    return _save(fig, path)


def plot_ppc_dist(tree: xr.DataTree, path, *, var_name=None, mask=None, num_samples=50) -> Path:
    """Density of continuous observations (black) against ``num_samples`` posterior predictive
    draws, pooled over the observed entries (trials, bins, neurons)."""
    figure = "ppc_dist"
    flat, name, entries = _flat_ppc_tree(tree, var_name, mask, figure)
    draws = flat["posterior_predictive"][name].sizes["draw"]
    _pyplot()
    pc = arviz_plots.plot_ppc_dist(
        flat, backend="matplotlib", num_samples=min(num_samples, draws), kind="kde"
    )
    fig = pc.viz["figure"].item()
    fig.set_size_inches(7.5, 3.5)
    ax = fig.axes[0]
    ax.set_title(
        f"posterior predictive density of '{name}' ({entries} observed bin-neuron entries)"
    )
    ax.set_xlabel(f"'{name}' value per bin and neuron")
    _legend(ax, observed=("observed", "", "-"), predicted=("posterior predictive draws", "", "-"))
    return _save(fig, path)


def plot_ppc(tree: xr.DataTree, path, *, var_name=None, mask=None) -> Path:
    """:func:`plot_ppc_rootogram` for counts, :func:`plot_ppc_dist` otherwise."""
    flat, name, _ = _flat_ppc_tree(tree, var_name, mask, "ppc")
    draw = plot_ppc_rootogram if _is_counts(flat["observed_data"][name].values) else plot_ppc_dist
    return draw(tree, path, var_name=name, mask=mask)


def _legend(ax, *, observed, predicted):
    """A legend for arviz-plots' figures, which draw the observations in black and the
    predictions in the first colour: ``observed`` / ``predicted`` are (label, marker, line)."""
    handles = [
        Line2D([], [], color=colour, marker=marker, ls=line)
        for colour, (_, marker, line) in (("k", observed), ("C0", predicted))
    ]
    ax.legend(handles, [observed[0], predicted[0]], loc="best", fontsize="small")


def elpd_data(tree: xr.DataTree, var_name=None):
    """Per-trial PSIS-LOO of the tree: ``loo_approximate_posterior`` with the draws' log p and
    log q (``sample_stats``) when present (draws from a guide, not the posterior), else ``loo``."""
    figure = "khat"
    loglik = _group(tree, "log_likelihood", figure)
    name = _variable(loglik, var_name, "log_likelihood", figure)
    stats = tree["sample_stats"].to_dataset() if "sample_stats" in tree.children else None
    if stats is not None and "log_p" in stats and "log_q" in stats:
        return arviz_stats.loo_approximate_posterior(
            tree, stats["log_p"], stats["log_q"], var_name=name
        )
    return arviz_stats.loo(tree, var_name=name)


def plot_khat(tree: xr.DataTree, path, *, var_name=None) -> Path:
    """Pareto k of each trial's importance weights (PSIS-LOO, :func:`elpd_data`), with the
    threshold above which the estimate of that trial's held-out likelihood is unreliable."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the figure shows what the warning says
        elpd = elpd_data(tree, var_name)
    _pyplot()
    pc = arviz_plots.plot_khat(elpd, backend="matplotlib", threshold=KHAT_THRESHOLD)
    fig = pc.viz["figure"].item()
    ax = fig.axes[0]
    ax.axhline(KHAT_THRESHOLD, color="C3", ls="--", lw=1, label=f"k = {KHAT_THRESHOLD}")
    ax.legend(loc="best", fontsize="small")
    ax.set_title(f"Pareto k per trial (above {KHAT_THRESHOLD}: held-out estimate unreliable)")
    ax.set_xlabel("trial")
    ax.set_ylabel("Pareto shape k")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, path)


def plot_compare(table, path) -> Path:
    """Held-out elpd differences of a model comparison table: an ``arviz_stats.compare`` /
    :func:`neurodyn.inference.comparison.compare` DataFrame, or the same as a list of dict rows
    with a ``model`` key."""
    figure = "compare"
    if isinstance(table, list):
        if not table or not all(isinstance(r, dict) and "model" in r for r in table):
            raise ValueError(f"{figure}: give a comparison table (rows with a 'model' key)")
        table = pd.DataFrame(table).set_index("model")
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"{figure}: expected a comparison DataFrame or rows, got {type(table)}")
    needed = ("elpd", "se", "elpd_diff", "dse")
    missing = [c for c in needed if c not in table.columns]
    if missing or len(table) < 2:
        raise ValueError(
            f"{figure}: the table needs at least two models and columns {', '.join(needed)}"
            + (f" (missing {', '.join(missing)})" if missing else "")
        )
    _pyplot()
    pc = arviz_plots.plot_compare(table, backend="matplotlib")
    fig = pc.viz["figure"].item()
    ax = fig.axes[0]
    ax.set_title("held-out elpd relative to the best model (higher is better)")
    ax.set_xlabel("elpd difference (nats), bar = standard error of the difference")
    fig.set_size_inches(8, 1.2 + 0.5 * len(table))
    return _save(fig, path)


def plot_elbo(tree: xr.DataTree, path) -> Path:
    """The ELBO by optimisation step (``sample_stats['elbo']``, dims ("step",))."""
    stats = _group(tree, "sample_stats", "elbo")
    if "elbo" not in stats:
        raise ValueError("elbo: group 'sample_stats' has no 'elbo' trace (the fit's losses)")
    elbo = np.asarray(stats["elbo"].values, float).reshape(-1)
    steps = np.arange(1, elbo.size + 1)
    ok = np.isfinite(elbo)
    if not ok.any():
        raise ValueError("elbo: the 'elbo' trace has no finite value")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(steps[ok], elbo[ok], lw=1, color="C0")
    title = "ELBO during the fit"
    tail = elbo[ok][len(elbo[ok]) // 10 :]
    low, high = np.min(tail), np.max(tail)
    if np.min(elbo[ok]) < low - 2 * (high - low):  # the first steps would squash the rest
        pad = 0.05 * (high - low) if high > low else 1.0
        ax.set_ylim(low - pad, high + pad)
        title += " (y axis fitted to the last 90% of steps)"
    ax.set_title(title)
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("ELBO (nats)")
    return _save(fig, path)
