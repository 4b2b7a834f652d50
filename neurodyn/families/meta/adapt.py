"""Few-shot adaptation of a fitted meta-family run to a new recording: its read-in and readout
(and embedding or dynamics offsets) fitted with every shared parameter frozen."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.infer import Trace_ELBO

from ...data.session import Session
from ...inference import svi
from ...models import meta as models
from .batches import pad_neurons, recording_sampler, stack_sessions
from .fit import data_init
from .networks import build


def adapt(
    config: dict,
    params: dict,
    session: Session,
    *,
    trials: int,
    steps: int | None = None,
    seed: int = 0,
    out_dir=None,
    progress: bool = False,
    learning_rate: float = 5e-3,
    refine_embedding: bool = False,
):
    """Few-shot adaptation to a new recording (any neuron count).

    Its read-in and readout (and, with the ``free`` guide, its embedding; with
    ``single-session``, its own dynamics offsets) are fitted on its first ``trials`` trials
    with every shared parameter frozen (blocked from the optimiser, values substituted). With
    the amortized guide the embedding comes from the frozen encoder through the new read-in;
    ``refine_embedding=True`` also fits a shift of q(e)'s mean for this recording
    (``embedding_shift``, starting at 0: the encoder's guess), so the ELBO on the adaptation
    trials can move the embedding where the encoder, trained on other recordings, misplaces it.
    The returned run then carries a zero shift for every other recording.

    Starting point (:func:`_transfer_inits`, :func:`_best_init`): besides the data-driven
    start of :func:`neurodyn.families.meta.fit.data_init`, one candidate per training recording
    and rotation of the latent frame whose read-in hands the frozen encoders the features that
    recording's read-in produced (same map from latent to read-in features); SVI starts from
    the candidate with the best ELBO on the adaptation trials, at a learning rate small enough
    to stay near it.

    Returns (config, params, FitResult) of a run that knows the new recording as number M+1.
    """
    if session.name in {r["name"] for r in config["recordings"]}:
        raise ValueError(f"the run already has a recording named {session.name!r}")
    if not 1 <= trials <= session.num_trials:
        raise ValueError(f"trials must be in 1..{session.num_trials}, got {trials}")
    if refine_embedding and not (config["embedding"] and config["guide"] == "amortized"):
        raise ValueError(
            "refine_embedding applies to models with an embedding and the amortized guide "
            f"(the {config['guide']!r} guide of {config['model']!r} has nothing to refine)"
        )
    train = session.select(slice(0, trials))
    entry = dict(name=session.name, num_neurons=session.num_neurons, num_trials=trials)
    refined = bool(refine_embedding or config.get("embedding_refined", False))
    solo = dict(config, recordings=[entry], embedding_refined=refined)
    shared = {k: v for k, v in params.items() if k not in models.PER_RECORDING}
    fixed = dict(shared)
    if refined and not refine_embedding:  # a refined run, this recording kept at the encoder's e
        fixed["embedding_shift"] = np.zeros((1, config["embedding_dim"]), np.float32)
    model, guide, _, _ = build(solo)

    def frozen(fn):
        return handlers.block(handlers.substitute(fn, data=fixed), hide=list(fixed))

    data = stack_sessions(solo, [train])
    base = data_init(solo, [train])
    candidates = _transfer_inits(config, params, base)
    init = _best_init(frozen(model), frozen(guide), data, candidates, seed=seed)
    result = svi.fit(
        frozen(model),
        frozen(guide),
        data,
        num_steps=steps or 300,
        seed=seed,
        sampler=recording_sampler(config["batch_size"]),
        num_trials=trials,
        learning_rate=learning_rate,
        init_params=init,
        out_dir=out_dir,
        progress=progress,
    )
    new_config = dict(config, recordings=[*config["recordings"], entry], embedding_refined=refined)
    N = max(r["num_neurons"] for r in new_config["recordings"])
    new_params = dict(shared)
    old_rows = dict(params)
    if refined:
        zeros = np.zeros((len(config["recordings"]), config["embedding_dim"]), np.float32)
        old_rows.setdefault("embedding_shift", zeros)
    new_rows = {**result.params, **fixed}
    for name in models.PER_RECORDING:
        if name in new_rows:
            new_params[name] = np.concatenate(
                [pad_neurons(name, old_rows[name], N), pad_neurons(name, new_rows[name], N)]
            )
    return new_config, new_params, result


TRANSFER_ROTATIONS = 4  # latent-frame rotations tried per training recording (adapt)


def _transfer_inits(config: dict, params: dict, base: dict) -> dict:
    """Candidate starts of a new recording's read-in and readout, stacked on a leading axis.

    Candidate 0 is ``base`` (:func:`data_init` of the new recording). Then, for every training
    recording i and rotation R of the first two latent axes (sign flips when D = 1): readout
    C = C_pca R (C_pca: the new recording's principal-component readout of ``base``) and the
    read-in W = C (C^T C)^-1 A_i^T, b = c_i - W^T d, where A_i = W_i^T C_i and
    c_i = W_i^T d_i + b_i map a latent z to recording i's read-in pre-activations
    (W_i^T (C_i z + d_i) + b_i). The frozen encoders then see, for this recording's z, the
    features they were trained on for recording i. Other entries are those of ``base``. A run
    whose (user-written) guide has no read-in gets ``base`` alone.
    """
    if not {"readin_weight", "readin_bias"} <= set(params):
        return {k: np.asarray(v)[None] for k, v in base.items()}
    C0 = np.asarray(base["readout_weight"][0], np.float64)  # (n, D)
    d0 = np.asarray(base["readout_bias"][0], np.float64)  # (n,)
    D = C0.shape[1]
    if D >= 2:
        angles = 2 * np.pi * np.arange(TRANSFER_ROTATIONS) / TRANSFER_ROTATIONS
        turns = []
        for a in angles:
            R = np.eye(D)
            R[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
            turns.append(R)
    else:
        turns = [np.eye(1), -np.eye(1)]
    out = {k: [np.asarray(v)] for k, v in base.items()}
    for i, rec in enumerate(config["recordings"]):
        n_i = rec["num_neurons"]
        W_i = np.asarray(params["readin_weight"][i][:n_i], np.float64)  # (n_i, P)
        C_i = np.asarray(params["readout_weight"][i][:n_i], np.float64)  # (n_i, D)
        d_i = np.asarray(params["readout_bias"][i][:n_i], np.float64)
        A = W_i.T @ C_i  # (P, D)
        c = W_i.T @ d_i + np.asarray(params["readin_bias"][i], np.float64)  # (P,)
        for R in turns:
            C = C0 @ R
            W = C @ np.linalg.solve(C.T @ C + 1e-6 * np.eye(D), A.T)  # (n, P)
            b = c - W.T @ d0
            cand = dict(base, readout_weight=C[None], readin_weight=W[None], readin_bias=b[None])
            for k in out:
                out[k].append(np.asarray(cand[k], np.float32))
    return {k: np.stack(v) for k, v in out.items()}


def _best_init(model, guide, data, candidates: dict, *, seed=0, num_samples=2) -> dict:
    """The candidate (leading axis of ``candidates``) with the lowest negative ELBO on
    ``data`` (all trials; the same ``num_samples`` random draws for every candidate)."""
    batch = jax.tree_util.tree_map(jnp.asarray, data)
    keys = jax.random.split(jax.random.PRNGKey(seed), num_samples)

    def loss(per):
        return jnp.mean(jax.vmap(lambda k: Trace_ELBO().loss(k, per, model, guide, batch))(keys))

    stacked = jax.tree_util.tree_map(jnp.asarray, candidates)
    losses = np.asarray(jax.jit(lambda c: jax.lax.map(loss, c, batch_size=16))(stacked))
    best = int(np.argmin(np.where(np.isfinite(losses), losses, np.inf)))
    return {k: np.asarray(v[best]) for k, v in candidates.items()}
