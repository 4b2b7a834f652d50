"""The default observation likelihood of a recording, shared by every model family."""

from __future__ import annotations

import sys

import numpy as np

COUNTS_NOTE = "note: counts in y: poisson likelihood (use --likelihood gaussian to change)"


def is_counts(y) -> bool:
    """Whether the observed values ``y`` (any shape) are non-negative integers, not all 0/1."""
    y = np.asarray(y)
    return bool(y.size and (y >= 0).all() and np.allclose(y, np.round(y)) and y.max() > 1)


def default_likelihood(y, *, note: bool = True) -> str:
    """``"poisson"`` for counts (:func:`is_counts`), else ``"gaussian"``; with ``note``, the
    choice of Poisson is said on stderr in one line (:data:`COUNTS_NOTE`)."""
    if not is_counts(y):
        return "gaussian"
    if note:
        print(COUNTS_NOTE, file=sys.stderr)
    return "poisson"
