"""The switching family behind the command line and the Run API (contract:
:mod:`neurodyn.families.protocol`).

Models ``srnn``, ``slds``, ``rslds``, ``hmm``, ``lds``, ``rnn`` are configurations of
:func:`neurodyn.models.switching.switching_model`; guides ``dkf`` (default), ``meanfield``,
``delta`` come from :mod:`neurodyn.guides.switching`, and a user-written guide is named by its
import path ``"module:function"`` (or given as the function; the config stores the path).
Priors are the model's (:func:`neurodyn.models.switching.resolve_priors`), given as
{site: spec string or number}.

Modules, one job each: :mod:`.config` (options and the spec), :mod:`.nets` and
:mod:`.program` (the NumPyro program of a config), :mod:`.warm_start` and :mod:`.pull`
(initialisation and the annealed pull), :mod:`.fit` (SVI, step size, stop rule),
:mod:`.predict` (states, reconstructions, forecasts, metrics), :mod:`.smc` (held-out SMC),
:mod:`.posterior` (the posterior DataTree), :mod:`.figures`, :mod:`.check` (simulation and
calibration).
"""

from __future__ import annotations

from ...guides.switching import GUIDES
from ..protocol import CHECK, SIMULATE, STATES
from .check import check, simulate
from .config import DEFAULTS, MODELS, make_config, pull_steps, spec_of
from .figures import report
from .fit import FitResult, converged, fit, floor_step, learning_rate, training_occupancy
from .posterior import posterior
from .predict import evaluate, most_likely_states, predicted_means
from .program import batch_of, build, param_template, problem
from .smc import heldout_smc, supports_smc
from .warm_start import kmeans, observed_bins, warm_start

NAME = "switching"
CAPABILITIES = frozenset({STATES, SIMULATE, CHECK})

__all__ = [
    "predicted_means",
    "CAPABILITIES",
    "DEFAULTS",
    "GUIDES",
    "MODELS",
    "NAME",
    "FitResult",
    "batch_of",
    "build",
    "check",
    "converged",
    "evaluate",
    "fit",
    "floor_step",
    "heldout_smc",
    "kmeans",
    "learning_rate",
    "make_config",
    "most_likely_states",
    "observed_bins",
    "param_template",
    "posterior",
    "problem",
    "pull_steps",
    "report",
    "simulate",
    "spec_of",
    "supports_smc",
    "training_occupancy",
    "warm_start",
]
