"""Model families: what the command line and the Python API need from each family.

A family module (``neurodyn.families.switching``, ``neurodyn.families.meta``) joins a family's
NumPyro model (``neurodyn.models``), its guides (``neurodyn.guides``) and the generic engine
(``neurodyn.inference``) behind the same small set of functions:

- ``MODELS``: tuple of model names served; ``GUIDES``: tuple of guide names.
- ``make_config(model, sessions, *, states, latent_dim, likelihood, guide, priors, steps, seed,
  batch_size) -> dict``: a JSON-able config holding everything needed to rebuild the model
  (neuron counts included); raises ``ValueError`` with a one-line message on bad options.
- ``fit(config, sessions, *, out_dir, progress=True) -> (params, FitResult)``: runs
  ``neurodyn.inference.svi.fit`` (``loss.csv`` goes into ``out_dir``).
- ``param_template(config) -> params``: a params pytree of the right structure (for loading).
- ``evaluate(config, params, sessions, *, horizons, num_samples, seed) -> dict``: the metrics of
  DESIGN.md.
- ``report(config, params, sessions, out_dir) -> list[Path]``: PNG figures.
- meta family only: ``adapt(config, params, session, *, trials, steps, seed, out_dir)
  -> (config, params, FitResult)``.
- switching family only: ``simulate(config, params, *, num_trials, num_timesteps, seed)
  -> Session`` (trials simulated from the fitted model) and ``check(config, params, *,
  num_trials, num_timesteps, num_samples, every, seed) -> dict`` (simulation-based calibration
  of the guide, ``neurodyn check``).
"""

from __future__ import annotations

import importlib

_FAMILY_OF = {
    **dict.fromkeys(("srnn", "slds", "rslds", "hmm", "lds", "rnn"), "switching"),
    **dict.fromkeys(
        ("meta-dssm", "single-session", "shared-dynamics", "embedding-input", "linear-adapter"),
        "meta",
    ),
}

MODEL_NAMES = tuple(_FAMILY_OF)


def family_of(model: str):
    """The family module serving ``model``; ``ValueError`` naming the known models otherwise."""
    if model not in _FAMILY_OF:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
    return importlib.import_module(f"neurodyn.families.{_FAMILY_OF[model]}")
