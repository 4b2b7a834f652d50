"""Recordings as one padded batch: stacking sessions to (M, R, T, N_max), the per-step trial
sampler, and padding of per-recording parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ...data.session import Session

# Per-recording parameters with a neuron axis (axis 1), padded to the run's N_max.
NEURON_AXIS = ("readout_weight", "readout_bias", "obs_scale", "readin_weight")


def match_recordings(config: dict, sessions: list[Session]) -> np.ndarray:
    """Index of each session among the run's recordings (by name); ``ValueError`` if unknown or
    if its neuron count differs from the run's recording of that name."""
    index = {r["name"]: (i, r["num_neurons"]) for i, r in enumerate(config["recordings"])}
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
        out.append(i)
    return np.asarray(out, np.int32)


def stack_sessions(config: dict, sessions: list[Session], *, max_time=None) -> dict:
    """Padded arrays of the sessions: y, mask (M, R, T, N_max), trial_mask (M, R), rec (M,),
    num_trials (M,), scale (M,) = 1 (full batch)."""
    rec = match_recordings(config, sessions)
    N = max(r["num_neurons"] for r in config["recordings"])
    R = max(s.num_trials for s in sessions)
    T = max_time or max(s.num_timesteps for s in sessions)
    M = len(sessions)
    y = np.zeros((M, R, T, N), np.float32)
    mask = np.zeros((M, R, T, N), bool)
    trial_mask = np.zeros((M, R), bool)
    for i, s in enumerate(sessions):
        r, t, n = s.y.shape
        t = min(t, T)
        y[i, :r, :t, :n] = s.y[:, :t]
        mask[i, :r, :t, :n] = s.mask[:, :t]
        trial_mask[i, :r] = True
    num_trials = np.array([s.num_trials for s in sessions], np.float32)
    return dict(
        y=y,
        mask=mask,
        trial_mask=trial_mask,
        rec=rec,
        num_trials=num_trials,
        scale=np.ones(M, np.float32),
    )


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
        return dict(
            data,
            y=take(data["y"]),
            mask=take(data["mask"]),
            trial_mask=trial_mask,
            scale=data["num_trials"] / drawn,
        )

    return sample


def pad_neurons(name, value, N):
    """Pad a per-recording array's neuron axis (axis 1) to N (obs scales with 1, else 0)."""
    value = np.asarray(value)
    if name not in NEURON_AXIS or value.shape[1] == N:
        return value
    width = [(0, 0), (0, N - value.shape[1])] + [(0, 0)] * (value.ndim - 2)
    return np.pad(value, width, constant_values=1.0 if name == "obs_scale" else 0.0)
