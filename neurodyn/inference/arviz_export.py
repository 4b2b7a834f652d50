"""Posterior draws from a fitted guide as an ArviZ ``xarray.DataTree`` (``posterior.nc``).

Groups, with ArviZ's ``chain``/``draw`` conventions (one chain: the draws are i.i.d. from q):

- ``posterior``: every latent sample site the guide draws (global sites and per-trial latents);
- ``posterior_predictive``: draws of each observed site from the model given those latents;
- ``log_likelihood``: per observed site, one value per trial and draw (log p(y_i | latents);
  discrete states are already summed out inside the models' sites);
- ``observed_data``; ``sample_stats``: ``log_p`` (log joint) and ``log_q`` (guide density) per
  draw, which ``arviz_stats.loo_approximate_posterior`` needs, and the ELBO trace by step.

It works from NumPyro traces, so any model/guide pair of the package can be exported.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .importance import _plate_sum, joint_traces


def _draw(model, guide, params, batch, kwargs, local_plates):
    """One draw: latent values, predictive draws and per-trial log-likelihoods of observed sites,
    and the totals log p(latents, y) and log q(latents)."""

    def one(key):
        k_traces, k_pred = jax.random.split(key)
        guide_trace, model_trace = joint_traces(model, guide, params, batch, kwargs, k_traces)
        latents = {
            name: site["value"]
            for name, site in guide_trace.items()
            if site["type"] == "sample" and not site["is_observed"]
        }
        loglik, predictive = {}, {}
        log_p = jnp.zeros(())
        for name, site in model_trace.items():
            if site["type"] != "sample":
                continue
            lp = site["fn"].log_prob(site["value"])
            log_p = log_p + jnp.sum(lp)
            # Observed sites named after a data array (``y``); auxiliary factors are left out.
            if site["is_observed"] and name in batch:
                per_trial = _plate_sum(lp, site, local_plates)
                if per_trial is not None:
                    loglik[name] = per_trial
                    predictive[name] = site["fn"].sample(
                        jax.random.fold_in(k_pred, len(predictive))
                    )
        log_q = sum(
            jnp.sum(site["fn"].log_prob(site["value"]))
            for site in guide_trace.values()
            if site["type"] == "sample" and not site["is_observed"]
        )
        return latents, predictive, loglik, log_p, jnp.asarray(log_q, jnp.float32)

    return one


def _dims(name, value, trials, per_trial, named=None):
    """Dimension names for an array whose first two axes are (chain, draw): ``named[name]``
    when given (its leading names, for a site's per-trial log-likelihood); else a per-trial
    array's next axis is ``trial`` and the rest are ``{name}_dim_0``, ``{name}_dim_1``, ...
    (the same names as in ``observed_data``)."""
    shape = value.shape[2:]
    given = (named or {}).get(name)
    if given is not None and len(given) >= len(shape):  # log-likelihoods: the leading dims
        return ["chain", "draw", *given[: len(shape)]]
    lead = ["trial"] if name in per_trial and shape and shape[0] == trials else []
    rest = [f"{name}_dim_{i}" for i in range(len(shape) - len(lead))]
    return ["chain", "draw", *lead, *rest]


def to_datatree(
    model: Callable,
    guide: Callable,
    params: Mapping[str, Any],
    batch: Mapping[str, Any],
    *,
    key,
    num_samples: int = 100,
    model_kwargs: Mapping[str, Any] | None = None,
    losses: np.ndarray | None = None,
    local_plates=("trials",),
    dims: Mapping[str, Any] | None = None,
) -> xr.DataTree:
    """Draw ``num_samples`` latents from the guide and build the DataTree described above.

    ``model_kwargs`` must make every trial of ``batch`` count once (``num_trials`` = the batch's
    trial count). ``dims`` names the dims of sites (e.g. ``{"h": ("trial", "time",
    "latent")}``); the log-likelihood keeps the site's leading (trial) dims.
    """
    kwargs = dict(model_kwargs or {})
    one = _draw(model, guide, params, batch, kwargs, local_plates)
    latents, predictive, loglik, log_p, log_q = jax.jit(jax.vmap(one))(
        jax.random.split(key, num_samples)
    )
    trials = int(np.shape(batch["y"])[0])

    def dataset(arrays, per_trial_names):
        data = {}
        for name, value in arrays.items():
            value = np.asarray(value)[None]  # add the chain axis
            data[name] = xr.DataArray(value, dims=_dims(name, value, trials, per_trial_names, dims))
        return xr.Dataset(data, coords={"chain": [0], "draw": np.arange(num_samples)})

    names = set(loglik)

    def observed_dims(name):
        given = (dims or {}).get(name)
        if given is not None and len(given) == np.ndim(batch[name]):
            return list(given)
        return ["trial", *[f"{name}_dim_{i}" for i in range(np.ndim(batch[name]) - 1)]]

    observed = xr.Dataset(
        {name: xr.DataArray(np.asarray(batch[name]), dims=observed_dims(name)) for name in names}
    )
    stats = {
        "log_p": xr.DataArray(np.asarray(log_p)[None], dims=["chain", "draw"]),
        "log_q": xr.DataArray(np.asarray(log_q)[None], dims=["chain", "draw"]),
    }
    if losses is not None:
        stats["elbo"] = xr.DataArray(-np.asarray(losses), dims=["step"])
    groups = {
        "posterior": dataset(latents, set(latents)),
        "posterior_predictive": dataset(predictive, names),
        "log_likelihood": dataset(loglik, names),
        "observed_data": observed,
        "sample_stats": xr.Dataset(stats, coords={"chain": [0], "draw": np.arange(num_samples)}),
    }
    return xr.DataTree.from_dict(groups)


def save(tree: xr.DataTree, path) -> None:
    """Write ``tree`` as NetCDF4 groups (h5netcdf, gzip-compressed variables) atomically: a
    failed write leaves no file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(suffix=".nc", dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    # gzip: predictive draws of counts shrink about fivefold, for a fraction of a second
    encoding = {
        node.path: {
            name: {"compression": "gzip", "compression_opts": 4}
            for name, var in node.data_vars.items()
            if var.ndim  # scalars take no filter
        }
        for node in tree.subtree
        if node.data_vars
    }
    try:
        tree.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
