"""What the workflow (held-out likelihood, ArviZ export, comparison) needs of a fitted run.

A light module (no ArviZ): the families build a :class:`Problem` without importing the
workflow's heavier dependencies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple


class Problem(NamedTuple):
    """What the workflow needs of a fitted run on some sessions.

    Attributes:
        model, guide: NumPyro functions ``fn(batch, **model_kwargs)``.
        params: constrained parameters of the fit.
        batch: arrays of every trial to score (leading trial axis, or recordings x trials).
        model_kwargs: e.g. ``num_trials`` = the batch's trial count.
        local_plates: the plates whose entries are scored separately (("trials",) usually).
        num_observed_bins: bins with at least one observed neuron.
        dims: names of the dims of sites, e.g. ``{"y": ("trial", "time", "neuron")}``, for
            the ArviZ export (other sites get ``<site>_dim_<i>``).
    """

    model: Callable
    guide: Callable
    params: Mapping[str, Any]
    batch: Mapping[str, Any]
    model_kwargs: Mapping[str, Any]
    local_plates: Sequence[str]
    num_observed_bins: int
    dims: Mapping[str, Sequence[str]] | None = None
