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
        inputs: float32 (M, R, T, U), 0 at padding; None when the recordings have no inputs.
    """

    y: np.ndarray
    mask: np.ndarray
    trial_mask: np.ndarray
    num_trials: np.ndarray
    num_neurons: np.ndarray
    names: tuple[str, ...]
    inputs: np.ndarray | None = None


def input_channels(sessions: list[Session]) -> int | None:
    """U shared by every recording's ``inputs``, or None when none has inputs; a
    :class:`SessionError` when only some have them or their channel counts differ."""
    have = [s.inputs is not None for s in sessions]
    if not any(have):
        return None
    if not all(have):
        lacking = ", ".join(s.name for s, h in zip(sessions, have, strict=True) if not h)
        raise SessionError(f"recordings {lacking} lack the 'inputs' the others have")
    channels = {s.inputs.shape[2] for s in sessions}
    if len(channels) > 1:
        raise SessionError(f"recordings have different input channel counts {sorted(channels)}")
    return channels.pop()


def check_input_channels(session: Session, fitted: int):
    """A one-line :class:`SessionError` when the session's input channels (0 without
    ``inputs``) differ from the ``fitted`` number a run was fitted with."""
    given = 0 if session.inputs is None else session.inputs.shape[-1]
    if given != fitted:
        raise SessionError(
            f"{session.name}: has {given} input channel(s), but the run was fitted with {fitted}"
        )


def stack(sessions: list[Session], *, num_neurons: int | None = None) -> Stacked:
    """Pad a list of sessions into one :class:`Stacked` batch, the neuron axis to
    ``num_neurons`` (default: the largest recording's; a run's N_max can be larger)."""
    if not sessions:
        raise SessionError("no recordings given")
    U = input_channels(sessions)
    M = len(sessions)
    R = max(s.num_trials for s in sessions)
    T = max(s.num_timesteps for s in sessions)
    N = max(s.num_neurons for s in sessions)
    if num_neurons is not None:
        if num_neurons < N:
            raise SessionError(f"a recording has {N} neurons, more than {num_neurons}")
        N = num_neurons
    y = np.zeros((M, R, T, N), np.float32)
    mask = np.zeros((M, R, T, N), bool)
    trial_mask = np.zeros((M, R), bool)
    inputs = None if U is None else np.zeros((M, R, T, U), np.float32)
    for i, s in enumerate(sessions):
        r, t, n = s.y.shape
        y[i, :r, :t, :n] = s.y
        mask[i, :r, :t, :n] = s.mask
        trial_mask[i, :r] = True
        if inputs is not None:
            inputs[i, :r, :t] = s.inputs
    return Stacked(
        y=y,
        mask=mask,
        trial_mask=trial_mask,
        num_trials=np.array([s.num_trials for s in sessions], np.int32),
        num_neurons=np.array([s.num_neurons for s in sessions], np.int32),
        names=tuple(s.name for s in sessions),
        inputs=inputs,
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
    input_channels(sessions)
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
        inputs=cat("inputs"),
        dt=first.dt,
        name="+".join(s.name for s in sessions),
        meta=first.meta if len(sessions) == 1 else {},
    )
