"""Recordings given to the Run API as paths, loaded sessions or arrays."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..data import Session, load_sessions, make_session


def as_sessions(data, likelihood: str | None = None) -> list[Session]:
    """A list of sessions from ``data``.

    ``data`` is one item or a list of items; an item is a session file or a folder of them
    (``str`` / ``Path``), a :class:`~neurodyn.data.Session`, an array ``y`` of shape
    (trials, T, N) or a mapping of session arrays (``{"y": ..., "mask": ..., "inputs": ...}``).
    ``likelihood="poisson"`` checks that counts are non-negative integers.
    """
    items = [data] if _is_item(data) else list(data)
    if not items:
        raise ValueError("no recordings given")
    sessions = []
    for i, item in enumerate(items):
        if isinstance(item, Session):
            sessions.append(item)
        elif isinstance(item, (str, Path)):
            sessions.extend(load_sessions([item], likelihood))
        elif isinstance(item, Mapping):
            arrays = dict(item)
            sessions.append(
                make_session(
                    arrays.pop("y"),
                    arrays.pop("mask", None),
                    likelihood=likelihood,
                    name=str(arrays.pop("name", f"recording{i}")),
                    **arrays,
                )
            )
        else:
            sessions.append(
                make_session(np.asarray(item), likelihood=likelihood, name=f"recording{i}")
            )
    return sessions


def _is_item(data) -> bool:
    return isinstance(data, (str, Path, Session, Mapping, np.ndarray))


def describe(data) -> str | None:
    """The data as command-line arguments, when every item is a path (for messages)."""
    items = [data] if _is_item(data) else list(data)
    if all(isinstance(x, (str, Path)) for x in items):
        return " ".join(map(str, items))
    return None
