"""Fitting a switching model: warm start, annealed pull, step size schedule and stop rule.

Initialisation and the default remedy against state collapse (what ``fit`` does):

1. **Warm start.** PCA of the standardized observations gives D latent coordinates z (unit
   variance); k-means (K clusters, k-means++ with restarts) on z gives warm-start labels,
   refined by an autoregressive HMM. The readout starts at the PCA loadings, and each state's
   dynamics start at a ridge regression of z_{t+1} on z_t over the bins of its cluster
   (linear: A_k, b_k; rnn: W_k, b_k on the arctanh of the step), so that SVI begins from a
   segmentation and per-state flows that already explain the data roughly. Only observed bins
   count (padded, masked bins of ragged trials are left out of every step), and the labels of
   unobserved bins are -1.
2. **Decaying pull.** For the first ``pull_steps`` SVI steps (default 800) the states'
   likelihoods receive soft evidence ``w * onehot(label)`` with w decaying linearly from 2 nats
   to 0 (an effect handler, :mod:`.pull`); none on unobserved bins (label -1). Afterwards
   the objective is the exact ELBO and the model may move the boundaries where its dynamics
   say so.

Why this default: with a randomly initialised guide and dynamics, every state explains the data
equally badly at first and the ELBO's easiest ascent is to let one state take every bin (state
collapse). Geometry (k-means on PCA) is a cheap and good guess of the regimes in the settings we
target (Lorenz lobes, NASCAR track segments), and an annealed pull keeps the guess from being
forgotten before the per-state dynamics have differentiated, without biasing the final fit.
SNLDS's temperature annealing was not needed on our benchmarks and is not implemented.

When to stop: the step size is held while the pull is on, then halves every ``lr_half_life``
steps down to a floor (:func:`learning_rate`, a function of the step alone), and the run stops
as soon as the package's convergence check passes (:func:`converged`); ``steps`` is only a
ceiling. A fit that reaches the ceiling without converging, or whose posterior puts more than
95% of the training bins in one state, says so in a :class:`FitWarning` line.
"""

from __future__ import annotations

import collections
import warnings

import jax.numpy as jnp
import numpy as np
import optax

from ...inference import diagnostics, svi
from ...inference.diagnostics import FitWarning
from .config import one_session, pull_steps, pulled, spec_of
from .predict import most_likely_states
from .program import batch_of, build
from .pull import pulled_program
from .warm_start import initial_values


def learning_rate(config):
    """The step size schedule of :func:`fit`, a function of the step alone (not of the budget).

    ``learning_rate`` while the warm-start pull is on, then halving every ``lr_half_life``
    steps down to the floor ``lr_decay * learning_rate``. Runs made before ``lr_half_life``
    existed decay exponentially to the floor over their step budget, as they did.
    """
    lr0, floor = float(config["learning_rate"]), float(config["lr_decay"])
    if "lr_half_life" not in config:
        return optax.exponential_decay(lr0, config["steps"], floor)
    hold = pull_steps(config) if pulled(config) else 0
    half_life = float(config["lr_half_life"])

    def schedule(step):
        decay = 0.5 ** (jnp.maximum(step - hold, 0) / half_life)
        return lr0 * jnp.maximum(decay, floor)

    return schedule


def floor_step(config) -> int:
    """The first step at which :func:`learning_rate` is at its floor: the pull's steps (if
    any) plus ``lr_half_life * log2(1 / lr_decay)``. :func:`fit` checks convergence from there
    on, so that the check judges the loss curve at its final step size."""
    hold = pull_steps(config) if pulled(config) else 0
    halvings = np.log2(1.0 / float(config["lr_decay"])) if config["lr_decay"] < 1 else 0.0
    return hold + int(np.ceil(float(config["lr_half_life"]) * halvings))


def converged(losses) -> bool:
    """The stop rule of :func:`fit`: :func:`~neurodyn.inference.diagnostics.elbo_convergence`
    of the loss history float (steps,), the same check the run's metrics report."""
    return diagnostics.elbo_convergence(losses)["converged"]


def fit(config, sessions, *, out_dir=None, progress=True, resume=False):
    """Fit the config's model and guide by SVI; returns (params, FitResult).

    The run stops as soon as the convergence check (:func:`converged`, the check the run's
    metrics report) passes, once the warm-start pull is over and the step size has reached its
    floor (:func:`floor_step`); ``steps`` is only the most it may take. The step size
    (:func:`learning_rate`) depends on the step alone, so a longer budget does not slow the
    decay, and the stop rule is a function of the loss history alone, so a resumed run stops
    where the uninterrupted one would.
    """
    session = one_session(sessions)
    spec = spec_of(config)
    labels, init = initial_values(spec, session, config["seed"])
    program = build(config, init)
    model, guide, batch = program.model, program.guide, batch_of(session)
    if pulled(config):
        batch["warm"] = jnp.asarray(labels, jnp.int32)
        model, guide = pulled_program(
            model, guide, "warm", float(config["pull_weight"]), pull_steps(config), spec.num_states
        )
    if "lr_half_life" in config:
        min_steps, stop = floor_step(config), converged
    else:  # runs made before the convergence stop: their plateau rule after the pull
        min_steps, stop = (pull_steps(config) if config.get("pull_weight") else 0), None
    result = svi.fit(
        model,
        guide,
        batch,
        num_steps=config["steps"],
        seed=config["seed"],
        batch_size=config["batch_size"],
        learning_rate=learning_rate(config),
        patience=config.get("patience"),
        checkpoint_every=config.get("checkpoint_every", 250) if out_dir else None,
        # No stop while the warm-start pull is on: its loss curve is not the final one.
        min_steps=min_steps,
        stop=stop,
        out_dir=out_dir,
        resume=resume,
        progress=progress,
    )
    occupancy = None
    if spec.num_states > 1 and not result.interrupted:
        occupancy = training_occupancy(config, result.params, session)
    result = FitResult(*result, occupancy)
    if not result.interrupted:
        for line in _fit_warnings(config, result):
            warnings.warn(line, FitWarning, stacklevel=2)
    return result.params, result


FitResult = collections.namedtuple("FitResult", (*svi.FitResult._fields, "state_occupancy"))
FitResult.__doc__ = """:class:`neurodyn.inference.svi.FitResult`'s fields and ``state_occupancy``:
float (K,) fractions of the training data's observed bins in each state of the fitted posterior's
Viterbi path (None for K = 1 or an interrupted fit)."""


def training_occupancy(config, params, session) -> list:
    """Fractions of ``session``'s observed bins in each state (K,) on the Viterbi path given
    the guide's posterior-mean trajectory (for hmm: given y)."""
    states = most_likely_states(config, params, [session])
    K = spec_of(config).num_states
    occupancy = diagnostics.state_occupancy(states, session.bin_mask, K)
    return [float(v) for v in occupancy]


def _fit_warnings(config, result) -> list[str]:
    """One line per reason not to compare the fit as it is (no convergence, one state used)."""
    what = f"{config['model']} fit"
    lines = [diagnostics.convergence_warning(result.losses, what)]
    if result.state_occupancy is not None:
        lines.append(diagnostics.collapse_warning(result.state_occupancy, what))
    return [line for line in lines if line]
