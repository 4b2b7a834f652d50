"""The posterior of recordings under a fitted switching run, as an ``xarray.DataTree``.

Groups (dims in parentheses; coords ``trial`` = 0..B-1, ``time`` = 0..T-1, ``latent``,
``state``, ``neuron``, ``chain`` = [0], ``draw``, and ``recording``, each trial's recording
name, along ``trial``):

* ``posterior``: ``h`` float (chain, draw, trial, time, latent), draws of the guide's
  trajectory (models with a continuous latent); ``states`` int (chain, draw, trial, time),
  one draw of the discrete path from the core's posterior sampler given each ``h`` draw (hmm:
  draws given y);
* ``state_posterior``: ``state_probability`` float (trial, time, state), the core's smoothed
  marginals averaged over the ``h`` draws; ``viterbi`` int (trial, time), the path
  :func:`~.predict.most_likely_states` returns;
* ``observed_data``: ``y`` (trial, time, neuron) and ``observed`` bool (trial, time), False on
  bins without any observed neuron (padding): those bins carry draws but no data.

Attributes: ``draws_kept`` (draws per trial), ``model``, ``seed``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .config import fitted_session
from .predict import (
    Fitted,
    inputs_of,
    sample_states,
    smoothed_states,
    trajectory_samples,
    viterbi_path,
)
from .program import for_prediction


def posterior(config, params, sessions, *, num_samples: int = 50, seed: int = 0) -> xr.DataTree:
    """The posterior DataTree of ``sessions`` (see the module docstring); ``num_samples`` draws
    per trial, all random numbers from ``seed``."""
    if num_samples < 1:
        raise ValueError(f"posterior needs at least 1 draw, got num_samples={num_samples}")
    sessions = list(sessions)
    session = fitted_session(config, sessions)
    fitted = Fitted(*for_prediction(config, params))
    spec, S = fitted.spec, int(num_samples)
    y, mask, u = jnp.asarray(session.y), jnp.asarray(session.mask), inputs_of(session)
    B, T, N = session.y.shape
    key_h, key_s = jax.random.split(jax.random.PRNGKey(seed))
    draws = {}
    if spec.has_latent:
        h = jax.jit(lambda y, mask: trajectory_samples(fitted, y, mask, S, key_h))(y, mask)
        keys = jax.random.split(key_s, S)

        def given(args):  # one draw of h [B, T, D] -> (p(s | h) [B, T, K], a path [B, T])
            k, h_s = args
            return (
                smoothed_states(fitted, h=h_s, u=u),
                sample_states(fitted, k, 1, h=h_s, u=u)[:, 0],
            )

        probs, states = jax.jit(lambda h: jax.lax.map(given, (keys, h)))(h)
        probs = probs.mean(0)
        draws["h"] = (("chain", "draw", "trial", "time", "latent"), np.asarray(h)[None])
    else:
        probs = smoothed_states(fitted, y=y, mask=mask)
        states = jnp.swapaxes(sample_states(fitted, key_s, S, y=y, mask=mask), 0, 1)
    states = np.asarray(states, np.int32)[None]
    draws["states"] = (("chain", "draw", "trial", "time"), states)
    viterbi = viterbi_path(fitted, y, mask, u=u).astype(np.int32)
    coords = {
        "trial": np.arange(B),
        "time": np.arange(T),
        "state": np.arange(spec.num_states),
        "neuron": np.arange(N),
        "recording": ("trial", _recording_of_trials(sessions)),
    }
    if spec.has_latent:
        coords["latent"] = np.arange(spec.latent_dim)
    groups = {
        "posterior": xr.Dataset(draws, coords={**coords, "chain": [0], "draw": np.arange(S)}),
        "state_posterior": xr.Dataset(
            {
                "state_probability": (("trial", "time", "state"), np.asarray(probs, np.float32)),
                "viterbi": (("trial", "time"), viterbi),
            },
            coords=coords,
        ),
        "observed_data": xr.Dataset(
            {
                "y": (("trial", "time", "neuron"), np.asarray(session.y)),
                "observed": (("trial", "time"), np.asarray(session.bin_mask, bool)),
            },
            coords=coords,
        ),
    }
    tree = xr.DataTree.from_dict(groups)
    tree.attrs.update(draws_kept=S, model=config["model"], seed=int(seed))
    return tree


def _recording_of_trials(sessions) -> np.ndarray:
    """Each trial's recording name, in the order the sessions' trials are concatenated."""
    return np.concatenate([np.full(s.num_trials, str(s.name), dtype=object) for s in sessions])
