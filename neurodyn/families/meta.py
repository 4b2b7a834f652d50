"""The meta-dynamical family behind the family contract (see ``neurodyn.families``).

Model: :mod:`neurodyn.models.meta`; guides: :mod:`neurodyn.guides.meta`. Training is one
vectorised SVI step over all recordings: sessions are padded to (M, R, T, N_max) and
:func:`recording_sampler` draws ``batch_size`` trials per recording, with each recording's
trial-level terms scaled by num_trials_i / trials drawn.

Beyond the contract: :func:`adapt` (few-shot: a new recording's read-in and readout fitted with
everything shared frozen) and :func:`embeddings` (name -> mean of q(e)).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.infer import Trace_ELBO
from numpyro.primitives import Messenger

from ..data.session import Session
from ..guides import guide_option, load_guide
from ..guides import meta as guides
from ..guides.weights import weight_guide
from ..inference import svi
from ..inference.metrics import forecast_origins, forecast_targets, ridge_decode_r2
from ..models import hypernetwork as hn
from ..models import meta as models
from ..models.weights import posterior_median_weights
from . import protocol

MODELS = tuple(models.MODEL_SETTINGS)
NAME = "meta"
CAPABILITIES = frozenset({protocol.ADAPT, protocol.EMBEDDINGS})
GUIDES = guides.GUIDES
NEURON_AXIS = ("readout_weight", "readout_bias", "obs_scale", "readin_weight")
DEFAULTS = dict(
    latent_dim=2,
    embedding_dim=2,
    rank=2,
    likelihood="gaussian",
    guide="amortized",
    steps=2000,
    seed=0,
    batch_size=16,
    hidden=64,
    learning_rate=5e-3,
)

LR_DECAY_FLOOR = 0.1  # fit's learning rate decays (cosine) to this fraction of the initial one


# ----------------------------------------------------------------------------- configuration


def make_config(model: str, sessions: list[Session], *, options: dict | None = None) -> dict:
    """A JSON-able config for ``model`` on ``sessions``; ``ValueError`` on a bad option.

    ``options`` may hold states (must be None), latent_dim, embedding_dim, rank, likelihood,
    guide (``amortized``, ``free``, or a user-written guide as a function or its
    ``"module:function"`` path; see :mod:`neurodyn.guides.meta`), priors ({site: spec}), steps,
    seed, batch_size; None means the default.
    """
    if model not in MODELS:
        raise ValueError(f"unknown meta-family model {model!r}; choose one of {', '.join(MODELS)}")
    options = {k: v for k, v in (options or {}).items() if v is not None}
    known = set(DEFAULTS) | {"states", "priors", "process_noise", "adapted_layers", "residual"}
    unknown = sorted(set(options) - known)
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
    if cfg["likelihood"] not in ("gaussian", "poisson"):
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
    config = dict(
        family="meta",
        model=model,
        **cfg,
        embedding=setting["embedding"],
        adapter=setting["adapter"],
        embedding_input=setting["embedding_input"],
        adapted_layers=list(adapted),
        residual=bool(options.get("residual", True)),
        process_noise=options.get("process_noise", "shared"),
        priors=dict(options.get("priors") or {}),
        dt=float(sessions[0].dt),
        recordings=[
            dict(name=s.name, num_neurons=s.num_neurons, num_trials=s.num_trials) for s in sessions
        ],
    )
    if config["process_noise"] not in ("shared", "per-recording"):
        raise ValueError("process_noise must be 'shared' or 'per-recording'")
    models.resolve_priors(spec_of(config), config["priors"])  # names and specs check
    return config


def spec_of(config: dict) -> models.MetaSpec:
    """The static :class:`MetaSpec` of a config."""
    recs = config["recordings"]
    return models.MetaSpec(
        num_recordings=len(recs),
        max_neurons=max(r["num_neurons"] for r in recs),
        latent_dim=config["latent_dim"],
        embedding_dim=config["embedding_dim"],
        embedding=config["embedding"],
        adapter=config["adapter"],
        adapted_layers=tuple(config["adapted_layers"]),
        embedding_input=config["embedding_input"],
        rank=config["rank"],
        hidden=config["hidden"],
        residual=config["residual"],
        process_noise=config["process_noise"],
        likelihood=config["likelihood"],
        guide=config["guide"],
        embedding_refined=bool(config.get("embedding_refined", False)),
    )


def program(config: dict):
    """(model, guide, spec, nets) for a config; networks are seeded by ``config['seed']``."""
    spec = spec_of(config)
    nets = make_networks(spec, key=jax.random.PRNGKey(config["seed"]))
    priors = models.weight_priors(spec, config["priors"])
    modules = {"dynamics": nets.dynamics, "adapter": nets.adapter}
    nets = dataclasses.replace(nets, weight_guide=weight_guide(modules, priors))
    kw = dict(spec=spec, nets=nets, priors=config["priors"])
    guide_fn = guides.meta_guide if config["guide"] in GUIDES else load_guide(config["guide"])
    return (
        functools.partial(models.meta_model, **kw),
        functools.partial(guide_fn, **kw),
        spec,
        nets,
    )


def make_networks(spec: models.MetaSpec, *, key) -> models.Networks:
    """All modules of model and guide for ``spec`` (deterministic given ``key``)."""
    k_dyn, k_ad, k_emb, k_lat = jax.random.split(key, 4)
    d_e = spec.embedding_dim if spec.embedding else 0
    dynamics = hn.DynamicsMLP(
        spec.latent_dim,
        spec.hidden,
        extra_input=d_e if spec.embedding_input else 0,
        residual=spec.residual,
        key=k_dyn,
    )
    shapes = {k: v for k, v in dynamics.layer_shapes().items() if k in spec.adapted_layers}
    adapter = None
    if spec.adapter == "lowrank":
        adapter = hn.LowRankHypernet(d_e, shapes, spec.rank, key=k_ad)
    elif spec.adapter == "linear":
        adapter = hn.LinearAdapter(d_e, shapes, key=k_ad)
    embed_encoder = None
    if spec.embedding and spec.guide != "free":  # user guides may use the encoder too
        embed_encoder = guides.EmbeddingEncoder(
            spec.readin_dim, spec.encoder_hidden, d_e, key=k_emb
        )
    latent_encoder = guides.LatentEncoder(
        spec.readin_dim, spec.encoder_hidden, d_e, spec.latent_dim, key=k_lat
    )
    return models.Networks(dynamics, adapter, embed_encoder, latent_encoder)


# ----------------------------------------------------------------------------- data


def match_recordings(config: dict, sessions: list[Session]) -> np.ndarray:
    """Index of each session among the run's recordings (by name); ``ValueError`` if unknown or
    if its neuron count differs from the run's recording of that name."""
    index = {r["name"]: (i, r["num_neurons"]) for i, r in enumerate(config["recordings"])}
    out = []
    for s in sessions:
        if s.name not in index:
            raise ValueError(
                f"recording {s.name!r} is not part of this run (it knows "
                f"{len(index)} recordings); adapt the run to it first: neurodyn adapt"
            )
        i, n = index[s.name]
        if s.num_neurons != n:
            raise ValueError(
                f"recording {s.name!r} has {s.num_neurons} neurons but the run's recording of "
                f"that name has {n}"
            )
        out.append(i)
    return np.asarray(out, np.int32)


def stack_sessions(config: dict, sessions: list[Session], *, max_time=None) -> dict:
    """Padded arrays of the sessions: y, mask (M, R, T, N_max), trial_mask (M, R), rec (M,),
    num_trials (M,), scale (M,) = 1 (full batch)."""
    rec = match_recordings(config, sessions)
    N = max(r["num_neurons"] for r in config["recordings"])
    R = max(s.num_trials for s in sessions)
    T = max_time or max(s.num_timesteps for s in sessions)
    M = len(sessions)
    y = np.zeros((M, R, T, N), np.float32)
    mask = np.zeros((M, R, T, N), bool)
    trial_mask = np.zeros((M, R), bool)
    for i, s in enumerate(sessions):
        r, t, n = s.y.shape
        t = min(t, T)
        y[i, :r, :t, :n] = s.y[:, :t]
        mask[i, :r, :t, :n] = s.mask[:, :t]
        trial_mask[i, :r] = True
    num_trials = np.array([s.num_trials for s in sessions], np.float32)
    return dict(
        y=y,
        mask=mask,
        trial_mask=trial_mask,
        rec=rec,
        num_trials=num_trials,
        scale=np.ones(M, np.float32),
    )


def observed_bins(batch) -> int:
    """Bins of real trials with at least one observed neuron."""
    mask = np.asarray(batch["mask"]).any(-1) & np.asarray(batch["trial_mask"])[..., None]
    return int(mask.sum())


def recording_sampler(batch_size: int):
    """``sample(key, data) -> batch``: ``batch_size`` trials of every recording (without
    replacement; a recording with fewer trials keeps all and pads), with per-recording ELBO
    factors num_trials_i / real trials drawn. Pure JAX."""

    def sample(key, data):
        M, R = data["trial_mask"].shape
        if batch_size >= R:
            return data
        # Real trials sort before padding; among them the order is random.
        keys = jax.random.uniform(key, (M, R)) + (~data["trial_mask"])
        idx = jnp.argsort(keys, axis=1)[:, :batch_size]

        def take(x):
            return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), 1)

        trial_mask = take(data["trial_mask"])
        drawn = jnp.maximum(trial_mask.sum(1), 1)
        return dict(
            data,
            y=take(data["y"]),
            mask=take(data["mask"]),
            trial_mask=trial_mask,
            scale=data["num_trials"] / drawn,
        )

    return sample


def _data_init(config: dict, sessions: list[Session]) -> dict:
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


# ----------------------------------------------------------------------------- fitting


def fit(config: dict, sessions: list[Session], *, out_dir=None, progress=True, resume=False):
    """Fit model and guide to the run's recordings; returns (params, FitResult).

    The learning rate follows a cosine decay from ``config["learning_rate"]`` to a tenth of it
    over ``config["steps"]`` (:data:`LR_DECAY_FLOOR`). With a constant rate the fitted dynamics
    could end on an expanding excursion late in training: on the bifurcations case study (31
    recordings, 1500 steps, seed 0) meta-dssm's 30-step forecast r^2 on the training
    recordings' test trials was -0.89 with a constant rate (0.77 at 800 steps) and 0.83 with
    the decay.
    """
    rec = match_recordings(config, sessions)
    if sorted(rec.tolist()) != list(range(len(config["recordings"]))):
        raise ValueError("fit needs exactly the recordings named in the config")
    order = np.argsort(rec)
    sessions = [sessions[i] for i in order]
    model, guide, _, _ = program(config)
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
        init_params=_data_init(config, sessions),
        out_dir=out_dir,
        resume=resume,
        progress=progress,
    )
    return result.params, result


def param_template(config: dict) -> dict:
    """A params pytree (zeros) with the structure and shapes a fit of ``config`` returns."""
    model, guide, spec, _ = program(config)
    M, N = spec.num_recordings, spec.max_neurons
    batch = dict(
        y=jnp.zeros((M, 1, 2, N)),
        mask=jnp.ones((M, 1, 2, N), bool),
        trial_mask=jnp.ones((M, 1), bool),
        rec=jnp.arange(M),
        num_trials=jnp.ones(M),
        scale=jnp.ones(M),
    )

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


class _EmbeddingAsGlobal(Messenger):
    """Scores the per-recording embedding as a global site in per-trial workflows: importance
    weights of trial (i, j) are then log p(y_ij, z_ij | e_i) - log q(z_ij | e_i) with e_i drawn
    from q(e_i) (the posterior predictive of the trial under q(e))."""

    def process_message(self, msg):
        if msg["name"] == "embedding":
            msg["cond_indep_stack"] = [f for f in msg["cond_indep_stack"] if f.name != "recordings"]


def problem(config: dict, params: dict, sessions: list[Session], *, max_values: int | None = None):
    """The fitted model and guide on ``sessions`` for the workflow (held-out likelihood, ArviZ
    export, comparison): every trial counts once; trials are scored per (recording, trial).

    ``max_values`` (None = no limit) keeps only each recording's first R' trials, with
    R' * M * T * N_max <= max_values: the run folder's ``posterior.nc`` uses it to bound the
    size of its draws of y. Held-out scores and comparisons use every trial.
    """
    from ..inference.workflow import Problem

    model, guide, _, _ = program(config)
    N = max(r["num_neurons"] for r in config["recordings"])
    T = max(s.num_timesteps for s in sessions)
    if max_values is not None:
        keep = max(1, max_values // (len(sessions) * T * N))
        sessions = [s.select(slice(0, keep)) if s.num_trials > keep else s for s in sessions]
    batch = stack_sessions(config, sessions)
    bins = observed_bins(batch)
    return Problem(
        model=_EmbeddingAsGlobal(model),
        guide=_EmbeddingAsGlobal(guide),
        params=jax.tree_util.tree_map(jnp.asarray, params),
        batch=jax.tree_util.tree_map(jnp.asarray, batch),
        model_kwargs={"num_trials": int(batch["num_trials"].max())},
        local_plates=("recordings", "trials"),
        num_observed_bins=bins,
    )


# ----------------------------------------------------------------------------- adaptation


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
    start of :func:`_data_init`, one candidate per training recording and rotation of the
    latent frame whose read-in hands the frozen encoders the features that recording's read-in
    produced (same map from latent to read-in features); SVI starts from the candidate with
    the best ELBO on the adaptation trials. (From a random read-in, the embedding the encoder
    infers wanders across families during the fit, e.g. a Hopf recording adapted into the
    Duffing region of e.) The default learning rate (5e-3, was 2e-2) keeps the fit near that
    start: on this few data, faster optimisation reaches a better ELBO but a latent frame and
    embedding that forecast worse (chosen by adapting to training recordings left out of the
    run's per-recording tables, not by held-out scores).

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
    model, guide, _, _ = program(solo)

    def frozen(fn):
        return handlers.block(handlers.substitute(fn, data=fixed), hide=list(fixed))

    data = stack_sessions(solo, [train])
    base = _data_init(solo, [train])
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
                [_pad(name, old_rows[name], N), _pad(name, new_rows[name], N)]
            )
    return new_config, new_params, result


TRANSFER_ROTATIONS = 4  # latent-frame rotations tried per training recording (adapt)


def _transfer_inits(config: dict, params: dict, base: dict) -> dict:
    """Candidate starts of a new recording's read-in and readout, stacked on a leading axis.

    Candidate 0 is ``base`` (:func:`_data_init` of the new recording). Then, for every training
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


def _pad(name, value, N):
    """Pad a per-recording array's neuron axis (axis 1) to N (obs scales with 1, else 0)."""
    value = np.asarray(value)
    if name not in NEURON_AXIS or value.shape[1] == N:
        return value
    width = [(0, 0), (0, N - value.shape[1])] + [(0, 0)] * (value.ndim - 2)
    return np.pad(value, width, constant_values=1.0 if name == "obs_scale" else 0.0)


# ----------------------------------------------------------------------------- evaluation


def _predictor(config: dict, forecast: int):
    """jitted (params, batch, key) -> (y_mean (M,R,T,N), y_forecast or None, embedding loc)."""
    model, guide, spec, _ = program(config)

    @jax.jit
    def predict(params, batch, key):
        g = handlers.trace(handlers.seed(handlers.substitute(guide, data=params), key))
        guide_trace = g.get_trace(batch)
        values = {k: v["value"] for k, v in guide_trace.items() if v["type"] == "sample"}
        m = handlers.substitute(handlers.condition(model, data=values), data=params)
        model_trace = handlers.trace(handlers.seed(m, key)).get_trace(batch, forecast=forecast)
        y_forecast = model_trace["y_forecast"]["value"] if forecast else None
        e_loc = guide_trace["embedding"]["fn"].mean[:, 0] if spec.embedding else None
        return model_trace["y_mean"]["value"], y_forecast, e_loc

    return predict


def _posterior_means(config, params, batch, *, forecast=0, num_samples=8, seed=0):
    predict = _predictor(config, forecast)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    batch = jax.tree_util.tree_map(jnp.asarray, batch)
    total_y = total_f = None
    for s in range(num_samples):
        y_mean, y_fore, e_loc = predict(params, batch, jax.random.PRNGKey(seed * 7919 + s))
        total_y = y_mean if total_y is None else total_y + y_mean
        if forecast:
            total_f = y_fore if total_f is None else total_f + y_fore
    mean_f = None if total_f is None else np.asarray(total_f) / num_samples
    return np.asarray(total_y) / num_samples, mean_f, e_loc


def _sums(y, pred, mask):
    """(SSE, SST) per recording-neuron pooled; y, pred: (R, T, N), mask (R, T, N)."""
    w = mask.astype(np.float64)
    count = np.maximum(w.sum((0, 1)), 1)
    mean = (w * y).sum((0, 1)) / count
    return float((w * (y - pred) ** 2).sum()), float((w * (y - mean) ** 2).sum())


def evaluate(config, params, sessions, *, horizons=(1, 5, 10), num_samples=32, seed=0) -> dict:
    """``recon_r2``, ``forecast_r2`` {k: r2}, ``elbo_per_bin``, ``behavior_r2`` (with behavior),
    and the same per recording under ``per_recording``."""
    batch = stack_sessions(config, sessions)
    y, mask = batch["y"], batch["mask"] & batch["trial_mask"][..., None, None]
    y_mean, _, _ = _posterior_means(config, params, batch, num_samples=num_samples, seed=seed)
    per = {s.name: {} for s in sessions}
    sums = [_sums(y[i], y_mean[i], mask[i]) for i in range(len(sessions))]
    for s, (sse, sst) in zip(sessions, sums, strict=True):
        per[s.name]["recon_r2"] = 1 - sse / sst if sst > 0 else float("nan")
    metrics = {"recon_r2": 1 - sum(a for a, _ in sums) / max(sum(b for _, b in sums), 1e-12)}

    horizons = tuple(sorted(set(int(h) for h in horizons)))
    if horizons:
        overall, by_rec, scored = _forecast(
            config, params, sessions, batch, horizons, num_samples, seed
        )
        metrics["forecast_r2"] = overall
        metrics["forecast_trials"] = scored
        for name, scores in by_rec.items():
            per[name]["forecast_r2"] = scores

    metrics["elbo_per_bin"] = _elbo_per_bin(config, params, batch, min(num_samples, 4), seed)
    behaved = [i for i, s in enumerate(sessions) if s.behavior is not None and s.num_trials >= 2]
    if behaved:
        scores = []
        for i in behaved:
            s = sessions[i]
            r2 = ridge_decode_r2(
                y_mean[i, : s.num_trials, : s.num_timesteps, : s.num_neurons],
                s.behavior,
                s.bin_mask,
            )
            per[s.name]["behavior_r2"] = r2
            scores.append(r2)
        metrics["behavior_r2"] = float(np.nanmean(scores))
    metrics["per_recording"] = per
    return metrics


def supports_smc(config) -> bool:
    """:func:`heldout_smc` applies to every configuration with the package's guides (both give
    a Gaussian per bin), not to user-written guides."""
    return config["guide"] in GUIDES


def heldout_smc(
    config,
    params,
    sessions,
    *,
    num_particles: int | None = None,
    num_replicates: int | None = None,
    seed: int = 0,
):
    """Per-trial held-out log p(y_ij) = log int q(e_i) p(y_ij | e_i) de_i by sequential Monte
    Carlo (:mod:`neurodyn.inference.meta_smc`): the quantity importance sampling estimates, with
    a variance that grows about linearly in T instead of degenerating on long trials.
    ``num_replicates`` independent runs of ``num_particles`` (defaults
    :data:`neurodyn.inference.smc.NUM_PARTICLES`, ``NUM_REPLICATES``) are pooled by
    :func:`neurodyn.inference.smc.pool_replicates`.

    Returns (metrics, log_marginals (trials,), mcse (trials,)), the recordings' real trials in
    order; ``metrics`` as in ``pool_replicates`` plus ``smc_proposal`` (``"optimal"`` with
    Gaussian observations, else ``"guide"``). Weights with a prior are taken at their
    posterior median.
    """
    from ..inference import meta_smc, smc

    if not supports_smc(config):
        raise ValueError(
            f"SMC needs the package's guides ({', '.join(GUIDES)}), whose per-bin proposals it "
            f"uses; this run's guide is {config['guide']!r}: use importance sampling instead"
        )
    P = num_particles or smc.NUM_PARTICLES
    R = num_replicates or smc.NUM_REPLICATES
    config, params = _at_weight_medians(config, params)
    model, guide, spec, nets = program(config)
    batch = jax.tree_util.tree_map(jnp.asarray, stack_sessions(config, sessions))
    key_guide, key_smc = jax.random.split(jax.random.PRNGKey(seed))
    trials = meta_smc.guide_proposals(model, guide, params, batch, key_guide)
    dynamics, adapter = _fitted_networks(nets, params)
    estimate = meta_smc.log_marginals(
        spec, dynamics, adapter, params, config["priors"], trials, P, key_smc, R
    )
    pooled = smc.pool_replicates(estimate, P, observed_bins(batch))
    proposal = "optimal" if spec.likelihood == "gaussian" else "guide"
    return {**pooled.metrics, "smc_proposal": proposal}, pooled.log_marginals, pooled.mcse


def _at_weight_medians(config, params):
    """(config, params) with every weight that has a prior at its posterior median (the
    AutoNormal's loc) and the weight priors dropped: a run without weight priors, for code
    that reads the networks as point values. Runs without weight priors come back as given."""
    params = jax.tree_util.tree_map(jnp.asarray, params)
    with_prior = {
        site: module
        for site, module in models.WEIGHT_PRIORS.items()
        if config["priors"].get(site) is not None
    }
    if not with_prior:
        return config, params
    priors = {k: v for k, v in config["priors"].items() if k not in with_prior}
    return dict(config, priors=priors), posterior_median_weights(params, with_prior.values())


def _fitted_networks(nets, params):
    """The dynamics and adapter modules with the fitted weights."""
    dynamics = eqx.combine(params["dynamics$params"], nets.dynamics)
    adapter = eqx.combine(params["adapter$params"], nets.adapter) if nets.adapter else None
    return dynamics, adapter


def forecast_r2(config, params, sessions, *, horizons=(1, 5, 10), num_samples=32, seed=0) -> dict:
    """Only the ``forecast_r2`` part of :func:`evaluate` (no reconstruction or ELBO passes):
    {"forecast_r2": {k: r2}, "forecast_trials": {k: trials scored}, "per_recording": {name:
    {k: r2}}}."""
    batch = stack_sessions(config, sessions)
    horizons = tuple(sorted(set(int(h) for h in horizons)))
    overall, by_rec, scored = _forecast(
        config, params, sessions, batch, horizons, num_samples, seed
    )
    return {"forecast_r2": overall, "forecast_trials": scored, "per_recording": by_rec}


def _forecast(config, params, sessions, batch, horizons, num_samples, seed):
    """k-step forecast r^2 (pooled over recordings, and per recording) and the trials scored.

    Horizons count from each trial's own last observed bin (:func:`forecast_origins`): the
    guide sees bins 0..T0_i - 1 of trial i (its later bins masked out), the model rolls forward
    noise-free, and the predicted mean of y at bin T0_i - 1 + k is scored against the observed y
    over the trials whose target bin is observed (:func:`forecast_targets`). Trials are run in
    groups of equal T0_i (one compilation per group). Returns (overall {k: r2},
    per recording {name: {k: r2}}, trials scored {k: count}).
    """
    y, mask = batch["y"], batch["mask"] & batch["trial_mask"][..., None, None]
    M, R, T, N = y.shape
    K = max(horizons)
    if K >= T:
        raise ValueError(f"forecast horizon {K} needs trials longer than {T} bins")
    bins = mask.any(-1).reshape(M * R, T)
    origins = forecast_origins(bins, horizons)  # [M * R]
    real = bins.any(1)
    seen_mask = batch["mask"] & (np.arange(T) < origins.reshape(M, R, 1))[..., None]
    y_fore = np.zeros((M * R, K, N))
    for t0 in np.unique(origins[real]):
        group = dict(batch, y=y[:, :, :t0], mask=seen_mask[:, :, :t0])
        _, fore, _ = _posterior_means(
            config, params, group, forecast=K, num_samples=num_samples, seed=seed
        )
        rows = origins == t0
        y_fore[rows] = fore.reshape(M * R, K, N)[rows]
    y_fore = y_fore.reshape(M, R, K, N)
    overall, per, scored = {}, {s.name: {} for s in sessions}, {}
    for k in horizons:
        keep = (forecast_targets(bins, origins, k) & real).reshape(M, R)
        t = np.minimum(origins - 1 + k, T - 1).reshape(M, R)
        y_t = np.take_along_axis(y, t[..., None, None], 2)  # [M, R, 1, N]
        m_t = np.take_along_axis(mask, t[..., None, None], 2) & keep[..., None, None]
        parts = [_sums(y_t[i], y_fore[i, :, k - 1 : k], m_t[i]) for i in range(M)]
        scored[str(k)] = int(keep.sum())
        total_sst = sum(b for _, b in parts)
        overall[str(k)] = 1 - sum(a for a, _ in parts) / total_sst if total_sst > 0 else np.nan
        for s, (sse, sst) in zip(sessions, parts, strict=True):
            per[s.name][str(k)] = 1 - sse / sst if sst > 0 else float("nan")
    return overall, per, scored


def _elbo_per_bin(config, params, batch, num_samples, seed) -> float:
    model, guide, _, _ = program(config)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    loss = jax.jit(lambda p, b, k: Trace_ELBO().loss(k, p, model, guide, b))
    batch = jax.tree_util.tree_map(jnp.asarray, batch)
    values = [float(loss(params, batch, jax.random.PRNGKey(seed + s))) for s in range(num_samples)]
    return -float(np.mean(values)) / observed_bins(batch)


def embeddings(config: dict, params: dict, sessions: list[Session]) -> dict[str, list[float]]:
    """Recording name -> mean of q(e) (from the encoder on all of the session's trials, or the
    free Gaussian's mean); empty for models without an embedding."""
    if not config["embedding"]:
        return {}
    _, _, e_loc = _posterior_means(config, params, stack_sessions(config, sessions), num_samples=1)
    return {s.name: [float(v) for v in e_loc[i]] for i, s in enumerate(sessions)}


# ----------------------------------------------------------------------------- figures


def vector_field(config, params, e=None, rec=0, *, grid=None):
    """f(z) - z on a 2-D grid of the first two latent dims (others 0), for embedding e (d_e,)
    or, for ``single-session``, recording ``rec``. Returns (Z (G, G, D), dZ (G, G, D))."""
    config, p = _at_weight_medians(config, params)
    _, _, spec, nets = program(config)
    grid = np.linspace(-2, 2, 15) if grid is None else grid
    Z = np.zeros((len(grid), len(grid), spec.latent_dim), np.float32)
    Z[..., 0], Z[..., 1] = np.meshgrid(grid, grid, indexing="xy")
    dynamics, adapter = _fitted_networks(nets, p)
    e = None if e is None else jnp.asarray(e, jnp.float32).reshape(1, -1)
    with handlers.substitute(data=p):
        f = models.recording_dynamics(spec, dynamics, adapter, e, jnp.asarray([rec]))
        out = np.asarray(f(jnp.asarray(Z.reshape(1, -1, spec.latent_dim))))
    return Z, out.reshape(Z.shape) - Z


def report(config, params, sessions, out_dir) -> list[Path]:
    """PNG figures: embeddings, vector fields at several e, reconstructions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    emb = embeddings(config, params, sessions)
    if emb:
        E = np.array([emb[s.name] for s in sessions])
        key = _meta_key(sessions)
        x = np.array([s.meta[key] for s in sessions]) if key else np.arange(len(sessions))
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        for j in range(E.shape[1]):
            ax.scatter(x, E[:, j], label=f"e[{j}]", s=18)
        ax.set(xlabel=key or "recording", ylabel="mean of q(e)", title="embeddings")
        ax.legend()
        figures.append(_save(fig, out_dir / "embeddings.png"))
    if config["latent_dim"] >= 2:
        if emb:
            order = np.argsort(E[:, 0])
            picks = [
                ("e=" + ",".join(f"{v:.2f}" for v in E[i]), E[i], 0)
                for i in order[np.linspace(0, len(order) - 1, min(4, len(order))).astype(int)]
            ]
        elif config["adapter"] == "table":
            idx = match_recordings(config, sessions)[:4]
            picks = [(config["recordings"][i]["name"], None, int(i)) for i in idx]
        else:
            picks = [("shared", None, 0)]
        fig, axes = plt.subplots(1, len(picks), figsize=(3.2 * len(picks), 3.2), squeeze=False)
        for ax, (title, e, rec) in zip(axes[0], picks, strict=True):
            Z, dZ = vector_field(config, params, e, rec)
            ax.quiver(Z[..., 0], Z[..., 1], dZ[..., 0], dZ[..., 1])
            ax.set(title=title, xlabel="z1", ylabel="z2", aspect="equal")
        figures.append(_save(fig, out_dir / "vector_fields.png"))
    s = sessions[0]
    batch = stack_sessions(config, [s])
    y_mean, _, _ = _posterior_means(config, params, batch, num_samples=4)
    fig, axes = plt.subplots(4, 1, figsize=(6, 6), sharex=True)
    for j, ax in enumerate(axes):
        n = j % s.num_neurons
        ax.plot(s.y[0, :, n], color="0.6", label="y")
        ax.plot(y_mean[0, 0, : s.num_timesteps, n], color="C0", label="predicted mean")
        ax.set_ylabel(f"neuron {n}")
    axes[0].legend(fontsize=7)
    axes[0].set_title(f"{s.name}, trial 0")
    figures.append(_save(fig, out_dir / "reconstructions.png"))
    return figures


def _meta_key(sessions):
    for key in ("omega", "mu", "a"):
        if all(isinstance(s.meta.get(key), int | float) for s in sessions):
            return key
    return None


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


__all__ = [
    "MODELS",
    "GUIDES",
    "make_config",
    "fit",
    "param_template",
    "evaluate",
    "forecast_r2",
    "report",
    "heldout_smc",
    "supports_smc",
    "adapt",
    "embeddings",
    "problem",
    "vector_field",
    "recording_sampler",
    "stack_sessions",
    "spec_of",
    "program",
]
