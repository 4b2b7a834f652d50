"""Trials simulated from a fitted switching run, and simulation-based calibration of its guide
(:mod:`neurodyn.inference.calibration`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ...data import make_session
from ...inference import calibration
from .predict import Fitted, simulate_trials, smoothed_states, trajectory_samples
from .program import for_prediction


def simulate(config, params, *, num_trials: int, num_timesteps: int, seed: int = 0):
    """A session simulated from the fitted run (fitted globals, the model's generative story;
    weights with a prior at their posterior median). Returns a
    :class:`~neurodyn.data.Session` with y [num_trials, num_timesteps, N] fully observed, and
    the simulated ``states`` [num_trials, T] and ``latents`` [num_trials, T, D].
    ``ValueError`` for ``hmm`` (no continuous latent)."""
    predict, point_params = for_prediction(config, params)
    fitted = Fitted(predict, point_params)
    s, h, y = simulate_trials(fitted, jax.random.PRNGKey(seed), int(num_trials), int(num_timesteps))
    return make_session(
        np.asarray(y),
        states=np.asarray(s),
        latents=np.asarray(h),
        name=f"{config['model']}-simulated",
        meta={"simulator": "fitted run", "model": config["model"], "seed": seed},
        likelihood=config["likelihood"],
    )


def check(
    config,
    params,
    *,
    num_trials: int = 100,
    num_timesteps: int = 100,
    num_samples: int = 99,
    every: int | None = None,
    seed: int = 0,
) -> dict:
    """Simulation-based calibration of the run's guide (:mod:`neurodyn.inference.calibration`).

    ``num_trials`` trials of ``num_timesteps`` bins are simulated from the fitted model
    (:func:`simulate`); the guide draws ``num_samples`` trajectories per trial; each true
    h_{t,d} is ranked among them at every ``every``-th bin (None: T // 20, at least 1, so about
    20 bins per trial). With K > 1 the posterior state probabilities are the core's smoothed
    marginals given each draw, averaged over draws, and the true states' randomised PIT and
    reliability are reported. Returns :func:`neurodyn.inference.calibration.summarize`'s dict
    (with the arrays ``ranks`` [B, T', D] and ``state_pit`` [B, T'] for the figure).
    ``ValueError`` for ``hmm``: its state posterior is the exact forward-backward one.

    A fitted model's latent space is identified only up to transformations its parameters
    absorb; that does not matter here, because the true latents are simulated from the fitted
    model itself and so live in the guide's own coordinates.
    """
    if config["model"] == "hmm":
        raise ValueError(
            "check: hmm has no continuous latent and its state posterior is exact "
            "(forward-backward): nothing to calibrate"
        )
    if num_timesteps < 2:
        raise ValueError(f"check needs at least 2 bins per trial, got {num_timesteps}")
    every = max(1, num_timesteps // 20) if every is None else int(every)
    session = simulate(
        config, params, num_trials=num_trials, num_timesteps=num_timesteps, seed=seed
    )
    predict, point_params = for_prediction(config, params)
    fitted = Fitted(predict, point_params)
    y, mask = jnp.asarray(session.y), jnp.asarray(session.mask)
    key = jax.random.PRNGKey(seed + 1)
    draws = jax.jit(lambda y, mask, key: trajectory_samples(fitted, y, mask, num_samples, key))(
        y, mask, key
    )
    probs = None
    if fitted.spec.num_states > 1:
        marginals = jax.jit(lambda h: jax.lax.map(lambda hs: smoothed_states(fitted, h=hs), h))
        probs = np.asarray(marginals(draws)).mean(0)  # [B, T, K]
    return calibration.summarize(
        session.latents,
        np.asarray(draws),
        every=every,
        states=session.states if probs is not None else None,
        state_probs=probs,
        seed=seed,
    )
