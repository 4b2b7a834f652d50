"""Co-smoothing of a run (``--heldout-neurons``): predict held-out neurons from the others.

As in the Neural Latents Benchmark, the training trials show every neuron (so the readout of
the held-out ones is learned); on the evaluated trials the held-out neurons are masked while
the latents are inferred, their rates are predicted from those latents, and ``co_bps`` scores
the prediction against their spikes (:func:`neurodyn.inference.cosmoothing.co_bps`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..inference.cosmoothing import (
    check_neuron_indices,
    choose_heldout_neurons,
    co_bps,
    read_neuron_indices,
)

NOT_COUNTS = "co_bps scores Poisson rates of spike counts; this run has a gaussian likelihood"


def heldout_indices(spec, num_neurons: int, seed: int = 0) -> list[int]:
    """Neuron indices from ``spec``: a fraction in (0, 1), an index file, or a list of ints."""
    if isinstance(spec, (str, Path)) and not _is_number(spec):
        return read_neuron_indices(spec, num_neurons).tolist()
    if isinstance(spec, (list, tuple, np.ndarray)):
        return check_neuron_indices(spec, num_neurons, "--heldout-neurons").tolist()
    return choose_heldout_neurons(num_neurons, float(spec), seed).tolist()


def _is_number(text) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def co_smoothing(run, sessions, indices, *, num_samples: int, seed: int) -> dict:
    """``co_bps`` of ``run`` on ``sessions`` for the held-out neuron ``indices`` (with
    ``co_bps_neurons``); None and ``co_bps_note`` where it does not apply."""
    out = {"co_bps_neurons": [int(i) for i in indices]}
    if run.config.get("likelihood") != "poisson":
        return {**out, "co_bps": None, "co_bps_note": NOT_COUNTS}
    if len({s.num_neurons for s in sessions}) != 1:
        raise UsageError("--heldout-neurons needs recordings with the same neurons")
    held_in = [
        dataclasses.replace(s, mask=s.mask & ~np.isin(np.arange(s.num_neurons), indices))
        for s in sessions
    ]
    rates = run.family.predicted_means(
        run.config, run.params, held_in, num_samples=num_samples, seed=seed
    )
    T = max(s.num_timesteps for s in sessions)
    spikes = np.concatenate([_pad(s.y, T) for s in sessions])[..., indices]
    observed = np.concatenate([_pad(s.mask, T) for s in sessions])[..., indices]
    predicted = np.concatenate([_pad(r, T) for r in rates])[..., indices]
    spikes = np.where(observed, spikes, np.nan)  # unobserved entries are left out
    value = co_bps(spikes, predicted, observed.any(-1))
    if np.isnan(value):
        return {**out, "co_bps": None, "co_bps_note": "the held-out neurons fire no spike here"}
    return {**out, "co_bps": value}


def _pad(x, T: int):
    """(trials, t, ...) padded with zeros (False) to (trials, T, ...)."""
    x = np.asarray(x)
    return np.pad(x, [(0, 0), (0, T - x.shape[1])] + [(0, 0)] * (x.ndim - 2))
