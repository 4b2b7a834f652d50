"""Fitting a meta-family run: one vectorised SVI step over all recordings, started from
data-driven per-recording parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers

from ...data.session import Session
from ...inference import svi
from .batches import match_recordings, recording_sampler, stack_sessions
from .config import spec_of
from .networks import build

LR_DECAY_FLOOR = 0.1  # fit's learning rate decays (cosine) to this fraction of the initial one


def fit(config: dict, sessions: list[Session], *, out_dir=None, progress=True, resume=False):
    """Fit model and guide to the run's recordings; returns (params, FitResult).

    The learning rate follows a cosine decay from ``config["learning_rate"]`` to
    :data:`LR_DECAY_FLOOR` of it over ``config["steps"]``: with a constant rate the fitted
    dynamics can end on an expanding excursion late in training.
    """
    rec = match_recordings(config, sessions)
    if sorted(rec.tolist()) != list(range(len(config["recordings"]))):
        raise ValueError("fit needs exactly the recordings named in the config")
    order = np.argsort(rec)
    sessions = [sessions[i] for i in order]
    model, guide, _, _ = build(config)
    data = stack_sessions(config, sessions)
    result = svi.fit(
        model,
        guide,
        data,
        num_steps=config["steps"],
        seed=config["seed"],
        sampler=recording_sampler(config["batch_size"]),
        num_trials=int(data["num_trials"].max()),
        learning_rate=optax.cosine_decay_schedule(
            config.get("learning_rate", 5e-3), config["steps"], alpha=LR_DECAY_FLOOR
        ),
        init_params=data_init(config, sessions),
        out_dir=out_dir,
        resume=resume,
        progress=progress,
    )
    return result.params, result


def param_template(config: dict) -> dict:
    """A params pytree (zeros) with the structure and shapes a fit of ``config`` returns."""
    model, guide, spec, _ = build(config)
    M, N = spec.num_recordings, spec.max_neurons
    batch = dict(
        y=jnp.zeros((M, 1, 2, N)),
        mask=jnp.ones((M, 1, 2, N), bool),
        trial_mask=jnp.ones((M, 1), bool),
        rec=jnp.arange(M),
        num_trials=jnp.ones(M),
        scale=jnp.ones(M),
    )
    if spec.input_dim:
        batch["u"] = jnp.zeros((M, 1, 2, spec.input_dim))

    def initial_params():
        with handlers.seed(rng_seed=0):
            guide_trace = handlers.trace(guide).get_trace(batch)
            model_trace = handlers.trace(handlers.replay(model, guide_trace)).get_trace(batch)
        return {
            name: site["value"]
            for tr in (guide_trace, model_trace)
            for name, site in tr.items()
            if site["type"] == "param"
        }

    # Only structure and shapes matter: trace abstractly (no compilation) and fill with zeros.
    shapes = jax.eval_shape(initial_params)
    return jax.tree_util.tree_map(lambda x: np.zeros(x.shape, x.dtype), shapes)


def data_init(config: dict, sessions: list[Session]) -> dict:
    """Data-driven starting values of the per-recording parameters.

    Readout offsets (and Gaussian noise scales) start at each neuron's mean (and spread). The
    readout and the first D read-in directions start at the recording's top D principal
    components, oriented so that the flow in the (PC1, PC2) plane turns counter-clockwise: every
    recording then starts in a latent frame of the same handedness. (Frames are otherwise
    arbitrary per recording, and a recording started in a mirrored frame needs a mirrored
    dynamics - the model then spends its embedding on the handedness.)
    """
    spec = spec_of(config)
    N, D, P = spec.max_neurons, spec.latent_dim, spec.readin_dim
    rng = np.random.default_rng(config["seed"])
    M = len(sessions)
    bias = np.zeros((M, N), np.float32)
    scale = np.ones((M, N), np.float32)
    readout = np.zeros((M, N, D), np.float32)
    readin = (rng.standard_normal((M, N, P)) / np.sqrt(N)).astype(np.float32)
    readin_bias = np.zeros((M, P), np.float32)
    for i, s in enumerate(sessions):
        n = s.num_neurons
        m = s.mask.reshape(-1, n)
        y = s.y.reshape(-1, n)
        count = np.maximum(m.sum(0), 1)
        mean = (y * m).sum(0) / count
        sd = np.sqrt(((y - mean) ** 2 * m).sum(0) / count) + 1e-3
        if config["likelihood"] == "poisson":
            bias[i, :n] = np.log(np.expm1(np.maximum(mean, 1e-2)))
        else:
            bias[i, :n] = mean
            scale[i, :n] = 0.5 * sd
        k = min(D, P, n)
        _, sv, vt = np.linalg.svd((y - mean) * m, full_matrices=False)
        pcs = vt[:k].T  # (n, k)
        scores = ((s.y - mean) * s.mask) @ pcs  # (trials, T, k)
        if k >= 2:
            turn = scores[:, :-1, 0] * scores[:, 1:, 1] - scores[:, :-1, 1] * scores[:, 1:, 0]
            if turn.sum() < 0:
                pcs[:, 1] *= -1
        spread = sv[:k] / np.sqrt(max(len(y), 1)) + 1e-6
        readout[i, :n, :k] = pcs * spread * (0.5 if config["likelihood"] == "poisson" else 1.0)
        readin[i, :n, :k] = pcs / spread
        readin[i, n:] = 0.0
        readin_bias[i] = -mean @ readin[i, :n]
    init = {
        "readout_bias": bias,
        "readout_weight": readout,
        "readin_weight": readin,
        "readin_bias": readin_bias,
    }
    if config["likelihood"] == "gaussian":
        init["obs_scale"] = scale
    return init
