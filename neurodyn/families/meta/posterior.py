"""The posterior of recordings under a fitted meta-family run as an ``xarray.DataTree`` (what
``neurodyn infer`` writes to ``posterior.nc``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from ...data.session import Session
from .batches import stack_sessions
from .networks import build

if TYPE_CHECKING:
    import xarray as xr

DRAWS = 50  # default number of posterior draws kept


def posterior(
    config: dict, params: dict, sessions: list[Session], *, num_samples: int = DRAWS, seed: int = 0
) -> xr.DataTree:
    """``num_samples`` draws of the guide on ``sessions`` (recordings of the run).

    Group ``posterior``:

    - ``x`` (chain, draw, trial, time, latent): latent trajectories; the trials of every
      recording in the order given, each recording's trials in order (``trial_recording``
      (trial,) names the recording of each trial); bins past a trial's end carry draws too;
    - ``observed`` (trial, time) bool: bins with at least one observed neuron;
    - models with an embedding: ``embedding`` (chain, draw, recording, embedding_dim), draws
      of q(e), and ``embedding_mean`` (recording, embedding_dim), the mean of q(e) (xarray
      refuses a variable named like one of its dimensions, hence ``embedding_dim``).

    attrs: ``draws_kept`` (= num_samples), ``family``, ``model``. ``ValueError`` when a session
    is not one of the run's recordings.
    """
    # Imported here: xarray comes with ArviZ, which a machine that only fits may lack.
    import xarray as xr

    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    batch = stack_sessions(config, sessions)
    _, guide, spec, _ = build(config)

    @jax.jit
    def draw(params, batch, key):
        fn = handlers.seed(handlers.substitute(guide, data=params), key)
        tr = handlers.trace(fn).get_trace(batch)
        if not spec.embedding:
            return tr["z"]["value"], None, None
        return tr["z"]["value"], tr["embedding"]["value"][:, 0], tr["embedding"]["fn"].mean[:, 0]

    jparams = jax.tree_util.tree_map(jnp.asarray, params)
    jbatch = jax.tree_util.tree_map(jnp.asarray, batch)
    keys = jax.random.split(jax.random.PRNGKey(seed), num_samples)
    draws = [draw(jparams, jbatch, k) for k in keys]
    z = np.stack([np.asarray(d[0]) for d in draws])  # (S, M, R, T, D)

    counts = [s.num_trials for s in sessions]
    x = np.concatenate([z[:, i, :n] for i, n in enumerate(counts)], axis=1)[None]
    observed = np.concatenate([batch["mask"][i, :n].any(-1) for i, n in enumerate(counts)], axis=0)
    names = [s.name for s in sessions]
    T, D = x.shape[-2:]
    coords = {
        "chain": [0],
        "draw": np.arange(num_samples),
        "trial": np.arange(x.shape[2]),
        "time": np.arange(T),
        "latent": np.arange(D),
        "recording": names,
        "trial_recording": ("trial", np.repeat(names, counts)),
    }
    data = {
        "x": (("chain", "draw", "trial", "time", "latent"), x),
        "observed": (("trial", "time"), observed),
    }
    if spec.embedding:
        e = np.stack([np.asarray(d[1]) for d in draws])[None]  # (1, S, M, d_e)
        data["embedding"] = (("chain", "draw", "recording", "embedding_dim"), e)
        data["embedding_mean"] = (("recording", "embedding_dim"), np.asarray(draws[0][2]))
        coords["embedding_dim"] = np.arange(e.shape[-1])
    attrs = {"draws_kept": num_samples, "family": "meta", "model": config["model"]}
    post = xr.Dataset(data, coords=coords, attrs=attrs)
    return xr.DataTree.from_dict({"posterior": post}, name="posterior")
