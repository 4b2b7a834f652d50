"""Recordings as one padded batch: stacking sessions to (M, R, T, N_max), the per-step trial
sampler, and padding of per-recording parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ...data.collection import check_input_channels, stack
from ...data.session import Session

# Per-recording parameters with a neuron axis (axis 1), padded to the run's N_max.
NEURON_AXIS = ("readout_weight", "readout_bias", "obs_scale", "readin_weight")


def match_recordings(config: dict, sessions: list[Session]) -> np.ndarray:
    """Index of each session among the run's recordings (by name); ``ValueError`` if unknown,
    if its neuron count differs from the run's recording of that name, or if its input
    channels differ from those the run was fitted with."""
    index = {r["name"]: (i, r["num_neurons"]) for i, r in enumerate(config["recordings"])}
    fitted_inputs = config.get("input_dim", 0)
    out = []
    for s in sessions:
        if s.name not in index:
            raise ValueError(
                f"recording {s.name!r} is not part of this run (it knows "
                f"{len(index)} recordings); adapt the run to it first: neurodyn adapt"
            )
        i, n = index[s.name]
        if s.num_neurons != n:
            raise ValueError(
                f"recording {s.name!r} has {s.num_neurons} neurons but the run's recording of "
                f"that name has {n}"
            )
        check_input_channels(s, fitted_inputs)
        out.append(i)
    return np.asarray(out, np.int32)


def stack_sessions(config: dict, sessions: list[Session]) -> dict:
    """Padded arrays of the sessions: y, mask (M, R, T, N_max), trial_mask (M, R), rec (M,),
    num_trials (M,), scale (M,) = 1 (full batch), and u (M, R, T, U) when the run has inputs."""
    rec = match_recordings(config, sessions)
    N = max(r["num_neurons"] for r in config["recordings"])
    stacked = stack(sessions, num_neurons=N)
    batch = dict(
        y=stacked.y,
        mask=stacked.mask,
        trial_mask=stacked.trial_mask,
        rec=rec,
        num_trials=stacked.num_trials.astype(np.float32),
        scale=np.ones(len(sessions), np.float32),
    )
    if stacked.inputs is not None:
        batch["u"] = stacked.inputs
    return batch


def observed_bins(batch) -> int:
    """Bins of real trials with at least one observed neuron."""
    mask = np.asarray(batch["mask"]).any(-1) & np.asarray(batch["trial_mask"])[..., None]
    return int(mask.sum())


def recording_sampler(batch_size: int):
    """``sample(key, data) -> batch``: ``batch_size`` trials of every recording (without
    replacement; a recording with fewer trials keeps all and pads), with per-recording ELBO
    factors num_trials_i / real trials drawn. Pure JAX."""

    def sample(key, data):
        M, R = data["trial_mask"].shape
        if batch_size >= R:
            return data
        # Real trials sort before padding; among them the order is random.
        keys = jax.random.uniform(key, (M, R)) + (~data["trial_mask"])
        idx = jnp.argsort(keys, axis=1)[:, :batch_size]

        def take(x):
            return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), 1)

        trial_mask = take(data["trial_mask"])
        drawn = jnp.maximum(trial_mask.sum(1), 1)
        drawn_trials = {k: take(data[k]) for k in ("y", "mask", "u") if k in data}
        return dict(data, **drawn_trials, trial_mask=trial_mask, scale=data["num_trials"] / drawn)

    return sample


def pad_neurons(name, value, N):
    """Pad a per-recording array's neuron axis (axis 1) to N (obs scales with 1, else 0)."""
    value = np.asarray(value)
    if name not in NEURON_AXIS or value.shape[1] == N:
        return value
    width = [(0, 0), (0, N - value.shape[1])] + [(0, 0)] * (value.ndim - 2)
    return np.pad(value, width, constant_values=1.0 if name == "obs_scale" else 0.0)
