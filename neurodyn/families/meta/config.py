"""Configuration of a meta-family run: options checked once into a JSON-able config, and the
static :class:`neurodyn.models.meta.Spec` and resolved priors rebuilt from it."""

from __future__ import annotations

import sys

import numpy as np

from ...data.collection import input_channels
from ...data.likelihood import default_likelihood
from ...data.session import Session
from ...guides import guide_option
from ...guides import meta as guides
from ...models import hypernetwork as hn
from ...models import meta as models

MODELS = tuple(models.MODEL_SETTINGS)
GUIDES = guides.GUIDES
DEFAULTS = dict(
    latent_dim=2,
    embedding_dim=2,
    rank=2,
    likelihood=None,  # None: poisson for counts in y, else gaussian
    guide="amortized",
    steps=2000,
    seed=0,
    batch_size=16,
    hidden=64,
    learning_rate=5e-3,
)
ADVANCED = ("states", "priors", "process_noise", "adapted_layers", "residual")


def make_config(model: str, sessions: list[Session], *, options: dict | None = None) -> dict:
    """A JSON-able config for ``model`` on ``sessions``; ``ValueError`` on a bad option.

    ``options`` may hold states (must be None), latent_dim, embedding_dim, rank, likelihood
    (default: poisson when every recording's observed y are counts, with a note on stderr;
    gaussian otherwise), guide (``amortized``, ``free``, or a user-written guide as a function
    or its ``"module:function"`` path; see :mod:`neurodyn.guides.meta`), priors ({site: spec}),
    steps, seed, batch_size, and the advanced keys hidden, learning_rate, process_noise,
    adapted_layers, residual; None means the default.
    """
    if model not in MODELS:
        raise ValueError(f"unknown meta-family model {model!r}; choose one of {', '.join(MODELS)}")
    options = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(options) - set(DEFAULTS) - set(ADVANCED))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for {model}")
    if options.get("states") is not None:
        raise ValueError(f"--states (discrete states) does not apply to the {model} model")
    setting = models.MODEL_SETTINGS[model]
    if not setting["embedding"] and "embedding_dim" in options:
        raise ValueError(f"--embedding-dim does not apply to {model} (it has no embedding)")
    if setting["adapter"] != "lowrank" and "rank" in options:
        raise ValueError(f"--rank does not apply to {model} (no low-rank hypernetwork)")
    cfg = {**DEFAULTS, **{k: v for k, v in options.items() if k in DEFAULTS}}
    for key in ("latent_dim", "embedding_dim", "rank", "steps", "batch_size", "hidden"):
        if not (isinstance(cfg[key], int | np.integer) and cfg[key] >= 1):
            raise ValueError(f"{key} must be a positive integer, got {cfg[key]!r}")
    if cfg["likelihood"] is not None and cfg["likelihood"] not in ("gaussian", "poisson"):
        raise ValueError(f"unknown likelihood {cfg['likelihood']!r}; choose gaussian or poisson")
    cfg["guide"] = guide_option(cfg["guide"], GUIDES, ("spec", "nets", "priors"))
    if not sessions:
        raise ValueError("no recordings given")
    names = [s.name for s in sessions]
    if len(set(names)) != len(names):
        raise ValueError("recordings must have distinct names")
    adapted = options.get(
        "adapted_layers", ("input", "hidden") if setting["adapter"] == "lowrank" else hn.LAYERS
    )
    if not set(adapted) <= set(hn.LAYERS):
        raise ValueError(f"adapted_layers must be among {', '.join(hn.LAYERS)}, got {adapted}")
    process_noise = options.get("process_noise", "shared")
    if process_noise not in ("shared", "per-recording"):
        raise ValueError("process_noise must be 'shared' or 'per-recording'")
    input_dim = _input_dim(model, sessions)
    if cfg["likelihood"] is None:
        cfg["likelihood"] = default_likelihood(np.concatenate([s.y[s.mask] for s in sessions]))
    config = dict(
        family="meta",
        model=model,
        **cfg,
        embedding=setting["embedding"],
        adapter=setting["adapter"],
        embedding_input=setting["embedding_input"],
        input_dim=input_dim,
        adapted_layers=list(adapted),
        residual=bool(options.get("residual", True)),
        process_noise=process_noise,
        priors=dict(options.get("priors") or {}),
        dt=float(sessions[0].dt),
        recordings=[
            dict(name=s.name, num_neurons=s.num_neurons, num_trials=s.num_trials) for s in sessions
        ],
    )
    priors_of(config)  # unknown sites and bad specs raise here
    return config


def _input_dim(model: str, sessions: list[Session]) -> int:
    """Input channels the shared dynamics take: those of the data, said in a one-line note
    (every recording must have the same channels, or none may have inputs)."""
    channels = input_channels(sessions)  # SessionError when only some have them, or differ
    if channels is None:
        return 0
    print(
        f"note: the data's {channels} input channel(s) drive the {model} dynamics",
        file=sys.stderr,
    )
    return channels


def spec_of(config: dict) -> models.Spec:
    """The static :class:`neurodyn.models.meta.Spec` of a config."""
    recs = config["recordings"]
    return models.Spec(
        num_recordings=len(recs),
        max_neurons=max(r["num_neurons"] for r in recs),
        latent_dim=config["latent_dim"],
        embedding_dim=config["embedding_dim"],
        embedding=config["embedding"],
        adapter=config["adapter"],
        adapted_layers=tuple(config["adapted_layers"]),
        embedding_input=config["embedding_input"],
        input_dim=config.get("input_dim", 0),  # runs written before inputs have none
        rank=config["rank"],
        hidden=config["hidden"],
        residual=config["residual"],
        process_noise=config["process_noise"],
        likelihood=config["likelihood"],
        guide=config["guide"],
        embedding_refined=bool(config.get("embedding_refined", False)),
    )


def priors_of(config: dict) -> dict:
    """The config's priors resolved over the model's defaults: site -> distribution (or None
    for a weight site without a prior); ``PriorError`` names a bad choice."""
    return models.resolve_priors(spec_of(config), config["priors"])
