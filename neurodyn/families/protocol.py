"""What the Run API (:mod:`neurodyn.api`) needs from a model family, as a typed protocol.

A family (``neurodyn.families.switching``, ``neurodyn.families.meta``) is a module that
satisfies :class:`Family`. What only some families can do is declared in ``CAPABILITIES``
(not discovered with ``hasattr``); :func:`neurodyn.families.require` turns a missing
capability into the one-line error the command line prints.

Shapes: a session's ``y`` is (trials, T, N); params are a dict of arrays; ``sessions`` is a
list of :class:`neurodyn.data.session.Session`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

# Capabilities a family may declare in CAPABILITIES.
STATES = "states"  # discrete states: most_likely_states, states in infer/posterior.nc
ADAPT = "adapt"  # few-shot adaptation to a new recording: adapt
EMBEDDINGS = "embeddings"  # a per-recording embedding: embeddings
SIMULATE = "simulate"  # trials simulated from a fitted run: simulate
CHECK = "check"  # simulation-based calibration of the guide: check

KNOWN_CAPABILITIES = frozenset({STATES, ADAPT, EMBEDDINGS, SIMULATE, CHECK})


class Program(NamedTuple):
    """A family's NumPyro program for one config: ``model(batch, ...)``, ``guide(batch, ...)``,
    the static ``spec`` both were built from (a frozen dataclass of sizes and choices, named
    ``Spec`` in each model module) and ``nets``, the Equinox networks they close over."""

    model: Callable
    guide: Callable
    spec: Any
    nets: Any


@runtime_checkable
class Family(Protocol):
    """The functions and constants every family module provides."""

    NAME: str  # "switching" or "meta"
    MODELS: tuple[str, ...]  # model names it serves
    GUIDES: tuple[str, ...]  # the package's guide names for it
    CAPABILITIES: frozenset[str]  # a subset of KNOWN_CAPABILITIES

    def make_config(self, model: str, sessions: Sequence, *, options: dict | None = None) -> dict:
        """A JSON-able config that rebuilds the model (``ValueError``, one line, on bad
        options)."""

    def build(self, config: dict) -> Program:
        """The model, guide and spec of ``config``."""

    def fit(self, config: dict, sessions: Sequence, *, out_dir=None, progress=True, resume=False):
        """-> (params, FitResult); ``loss.csv`` and checkpoints go into ``out_dir``."""

    def param_template(self, config: dict) -> dict:
        """A params pytree of the right structure (for loading ``params.npz``)."""

    def problem(self, config: dict, params: dict, sessions: Sequence, *, max_values=None):
        """-> :class:`neurodyn.inference.problem.Problem` (what the ArviZ export and importance
        sampling need)."""

    def evaluate(self, config, params, sessions, *, horizons, num_samples, seed) -> dict:
        """Held-out metrics (the keys of ``neurodyn evaluate --json``)."""

    def supports_smc(self, config: dict) -> bool:
        """Whether :meth:`heldout_smc` applies to runs of ``config``."""

    def heldout_smc(
        self, config, params, sessions, *, num_particles=None, num_replicates=None, seed=0
    ):
        """-> (metrics, log_marginals (trials,), mcse (trials,))."""

    def posterior(self, config, params, sessions, *, num_samples: int, seed: int):
        """The posterior of ``sessions`` as an ``xarray.DataTree`` with named dims (``trial``,
        ``time``, ``latent``, ``neuron``, ``state``, ``recording``)."""

    def predicted_means(self, config, params, sessions, *, num_samples: int, seed: int) -> list:
        """Posterior-mean predicted mean of y (rates under Poisson) of each session given its
        observed entries: float (trials, T, N) per session (co-smoothing uses it)."""

    def report(self, config, params, sessions, out_dir) -> list[Path]:
        """PNG figures written into ``out_dir``."""
