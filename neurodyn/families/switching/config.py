"""Configs of the switching family: the options, their checks and the model's :class:`Spec`.

A config is a JSON-able dict holding everything needed to rebuild a run's program
(:func:`make_config`); :func:`spec_of` reads its static :class:`~neurodyn.models.switching.Spec`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import asdict

import numpy as np

from ...data import concat_trials
from ...data.collection import check_input_channels
from ...data.likelihood import default_likelihood
from ...guides import guide_option
from ...guides.switching import GUIDES
from ...models.switching import CONFIGS, LINKS, Spec, resolve_priors
from .nets import nets

MODELS = tuple(CONFIGS)
DEFAULTS = dict(
    states=2,
    latent_dim=3,
    guide="dkf",
    steps=20000,
    seed=0,
    batch_size=None,
    learning_rate=1e-2,
    lr_decay=0.1,
    lr_half_life=250,
    patience=None,
    pull_weight=2.0,
    pull_steps=800,
    encoder_hidden=32,
)
_NOT_HERE = ("embedding_dim", "rank")
# what a user-written guide is called with besides the batch and num_trials
GUIDE_KEYWORDS = ("spec", "modules", "priors")


def one_session(sessions):
    """Several recordings of one neuron count as one session (``concat_trials`` refuses
    different counts with a one-line message)."""
    sessions = list(sessions)
    if not sessions:
        raise ValueError("no recordings given")
    return sessions[0] if len(sessions) == 1 else concat_trials(sessions)


def fitted_session(config, sessions):
    """The sessions as one, checked against the neuron count the run was fitted to."""
    session = one_session(sessions)
    if session.num_neurons != config["spec"]["num_neurons"]:
        raise ValueError(
            f"{session.name}: has {session.num_neurons} neurons, but the run was fitted to "
            f"recordings of {config['spec']['num_neurons']}"
        )
    check_input_channels(session, config["spec"].get("input_dim", 0))
    return session


def input_dim(model: str, session) -> int:
    """Input channels the model uses: those of the data (with a one-line note), 0 for hmm."""
    if session.inputs is None:
        return 0
    U = session.inputs.shape[-1]
    if model == "hmm":
        print(f"note: {model} does not use the data's {U} input channel(s)", file=sys.stderr)
        return 0
    drives = "dynamics and transitions" if CONFIGS[model][1] == "recurrent" else "dynamics"
    print(f"note: the data's {U} input channel(s) drive the {drives}", file=sys.stderr)
    return U


def make_config(model: str, sessions, *, options: Mapping | None = None) -> dict:
    """A JSON-able config for ``model`` on ``sessions``; ``ValueError`` on bad options.

    Options (None = default): states (K, default 2; 1 for lds/rnn), latent_dim (D, 3),
    likelihood ("gaussian"/"poisson"; default poisson for non-negative integer counts), guide
    ("dkf", "meanfield", "delta", a user guide's "module:function" path or the function itself),
    priors ({site: spec string or number}), steps (the most steps: the fit stops earlier, as
    soon as the convergence check passes; see :func:`~.fit.fit`), seed, batch_size, and the
    advanced keys link, readout, dynamics, learning_rate, lr_decay, lr_half_life, patience (a
    plateau stop on top of the convergence stop, off by default), pull_weight, pull_steps,
    encoder_hidden.
    """
    if model not in CONFIGS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    options = {k: v for k, v in dict(options or {}).items() if v is not None}
    for key in _NOT_HERE:
        if key in options:
            raise ValueError(f"--{key.replace('_', '-')} does not apply to model {model}")
    known = set(DEFAULTS) | {"likelihood", "priors", "link", "readout", "dynamics"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for model {model}")
    session = one_session(sessions)
    fixed_K = CONFIGS[model][2]
    opts = {**DEFAULTS, **options}
    if fixed_K is not None:
        if "states" in options and options["states"] != fixed_K:
            raise ValueError(f"model {model} has {fixed_K} state; --states {options['states']}")
        opts["states"] = fixed_K
    for key in ("states", "latent_dim", "steps", "encoder_hidden"):
        if not isinstance(opts[key], int | np.integer) or opts[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {opts[key]!r}")
    if model == "hmm" and "latent_dim" in options:
        raise ValueError("--latent-dim does not apply to model hmm (no continuous latent)")
    likelihood = opts.get("likelihood") or default_likelihood(session.y[session.mask])
    if likelihood not in ("gaussian", "poisson"):
        raise ValueError(f"unknown likelihood {likelihood!r}; choose gaussian or poisson")
    guide = guide_option(opts["guide"], GUIDES, GUIDE_KEYWORDS)
    link = opts.get("link", "softplus")
    if link not in LINKS:
        raise ValueError(f"unknown link {link!r}; choose one of {', '.join(LINKS)}")
    spec = Spec(
        model=model,
        num_states=int(opts["states"]),
        latent_dim=int(opts["latent_dim"]) if model != "hmm" else 0,
        num_neurons=session.num_neurons,
        input_dim=input_dim(model, session),
        likelihood=likelihood,
        link=link,
        readout=opts.get("readout", "linear"),
        dynamics_override=opts.get("dynamics") if model != "hmm" else None,
    )
    priors = {k: str(v) for k, v in dict(opts.get("priors") or {}).items()}
    resolve_priors(spec, priors)  # unknown sites / bad specs raise here
    nets(spec, int(opts["encoder_hidden"]), 0)  # bad readout / dynamics names raise here
    return {
        "family": "switching",
        "model": model,
        "likelihood": likelihood,
        "spec": asdict(spec),
        "guide": guide,
        "priors": priors,
        **{k: opts[k] for k in DEFAULTS if k not in ("states", "latent_dim", "guide")},
        "neurons": session.num_neurons,
    }


def spec_of(config) -> Spec:
    """The config's static :class:`~neurodyn.models.switching.Spec`."""
    return Spec(**config["spec"])


def pulled(config) -> bool:
    """Whether fits of ``config`` have a warm-start pull (a pull weight and K > 1)."""
    return bool(config.get("pull_weight")) and config["spec"]["num_states"] > 1


def pull_steps(config) -> int:
    """Steps of the warm-start pull: ``pull_steps``, but at most 40% of a short step budget so
    that a short run still ends on the exact ELBO (runs made before ``pull_steps`` existed: a
    fraction ``pull_fraction`` of their step budget)."""
    if "pull_steps" in config:
        return max(1, min(int(config["pull_steps"]), int(0.4 * config["steps"])))
    return max(1, int(config["pull_fraction"] * config["steps"]))
