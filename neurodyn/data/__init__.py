"""Session files, multi-recording containers, loaders and simulators."""

from .collection import Stacked, concat_trials, stack
from .session import (
    LIKELIHOODS,
    Session,
    SessionError,
    load_session,
    load_sessions,
    make_session,
    save_session,
    split_trials,
)

__all__ = [
    "LIKELIHOODS",
    "Session",
    "SessionError",
    "Stacked",
    "concat_trials",
    "load_session",
    "load_sessions",
    "make_session",
    "save_session",
    "split_trials",
    "stack",
]
