"""The meta-dynamical family behind the family protocol (:mod:`neurodyn.families.protocol`).

Model: :mod:`neurodyn.models.meta`; guides: :mod:`neurodyn.guides.meta`. Five models are
configurations of one program (meta-dssm, linear-adapter, embedding-input, shared-dynamics,
single-session). Training is one vectorised SVI step over all recordings: sessions are padded
to (M, R, T, N_max) and :func:`recording_sampler` draws ``batch_size`` trials per recording,
with each recording's trial-level terms scaled by num_trials_i / trials drawn.

Modules: :mod:`.config` (options -> config, spec, priors), :mod:`.batches` (stacking,
sampling, padding), :mod:`.networks` (:func:`build`), :mod:`.fit`, :mod:`.adapt` (few-shot),
:mod:`.predict` (evaluate, forecasts, embeddings, vector fields), :mod:`.heldout` (workflow
problem and SMC), :mod:`.posterior`, :mod:`.figures` (report).
"""

from __future__ import annotations

from ..protocol import ADAPT, EMBEDDINGS
from .adapt import adapt
from .batches import (
    NEURON_AXIS,
    match_recordings,
    observed_bins,
    recording_sampler,
    stack_sessions,
)
from .config import DEFAULTS, GUIDES, MODELS, make_config, priors_of, spec_of
from .figures import report
from .fit import LR_DECAY_FLOOR, fit, param_template
from .heldout import heldout_smc, problem, supports_smc
from .networks import build, make_networks
from .posterior import posterior
from .predict import embeddings, evaluate, forecast_r2, predicted_means, vector_field

NAME = "meta"
CAPABILITIES = frozenset({ADAPT, EMBEDDINGS})

__all__ = [
    "predicted_means",
    "CAPABILITIES",
    "DEFAULTS",
    "GUIDES",
    "LR_DECAY_FLOOR",
    "MODELS",
    "NAME",
    "NEURON_AXIS",
    "adapt",
    "build",
    "embeddings",
    "evaluate",
    "fit",
    "forecast_r2",
    "heldout_smc",
    "make_config",
    "make_networks",
    "match_recordings",
    "observed_bins",
    "param_template",
    "posterior",
    "priors_of",
    "problem",
    "recording_sampler",
    "report",
    "spec_of",
    "stack_sessions",
    "supports_smc",
    "vector_field",
]
