"""Several recordings with different neuron counts, trial counts and lengths, as padded arrays.

The meta-dynamical family trains on many recordings in one vectorised step; :func:`stack`
pads every axis to the largest recording and returns masks saying what is real.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .session import Session, SessionError


class Stacked(NamedTuple):
    """Recordings padded to common sizes.

    Attributes:
        y: float32 (M, R, T, N) with R = max trials, T = max bins, N = max neurons; 0 at padding.
        mask: bool (M, R, T, N); False at padding and at missing entries.
        trial_mask: bool (M, R); True for real trials.
        num_trials: int32 (M,).
        num_neurons: int32 (M,).
        names: the recordings' names.
    """

    y: np.ndarray
    mask: np.ndarray
    trial_mask: np.ndarray
    num_trials: np.ndarray
    num_neurons: np.ndarray
    names: tuple[str, ...]


def stack(sessions: list[Session]) -> Stacked:
    """Pad a list of sessions into one :class:`Stacked` batch."""
    if not sessions:
        raise SessionError("no recordings given")
    M = len(sessions)
    R = max(s.num_trials for s in sessions)
    T = max(s.num_timesteps for s in sessions)
    N = max(s.num_neurons for s in sessions)
    y = np.zeros((M, R, T, N), np.float32)
    mask = np.zeros((M, R, T, N), bool)
    trial_mask = np.zeros((M, R), bool)
    for i, s in enumerate(sessions):
        r, t, n = s.y.shape
        y[i, :r, :t, :n] = s.y
        mask[i, :r, :t, :n] = s.mask
        trial_mask[i, :r] = True
    return Stacked(
        y=y,
        mask=mask,
        trial_mask=trial_mask,
        num_trials=np.array([s.num_trials for s in sessions], np.int32),
        num_neurons=np.array([s.num_neurons for s in sessions], np.int32),
        names=tuple(s.name for s in sessions),
    )


def concat_trials(sessions: list[Session]) -> Session:
    """Concatenate recordings of the same neuron count along the trial axis (padding time)."""
    if not sessions:
        raise SessionError("no recordings given")
    counts = {s.num_neurons for s in sessions}
    if len(counts) > 1:
        raise SessionError(
            f"recordings have different neuron counts {sorted(counts)}; this model needs one count"
        )
    T = max(s.num_timesteps for s in sessions)

    def pad(x, fill=0):
        if x is None:
            return None
        width = [(0, 0), (0, T - x.shape[1])] + [(0, 0)] * (x.ndim - 2)
        return np.pad(x, width, constant_values=fill)

    def cat(key, fill=0):
        parts = [getattr(s, key) for s in sessions]
        if any(p is None for p in parts):
            return None
        return np.concatenate([pad(p, fill) for p in parts])

    first = sessions[0]
    return Session(
        y=cat("y"),
        mask=cat("mask", False),
        states=cat("states"),
        behavior=cat("behavior"),
        latents=cat("latents"),
        dt=first.dt,
        name="+".join(s.name for s in sessions),
        meta=first.meta if len(sessions) == 1 else {},
    )
