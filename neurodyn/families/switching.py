"""The switching family behind the command line (contract: :mod:`neurodyn.families`).

Models ``srnn``, ``slds``, ``rslds``, ``hmm``, ``lds``, ``rnn`` are configurations of
:func:`neurodyn.models.switching.switching_model`; guides ``dkf`` (default), ``meanfield``,
``delta`` come from :mod:`neurodyn.guides.switching`, and a user-written guide is named by its
import path ``"module:function"`` (or given as the function; the config stores the path).
Priors are the model's (:func:`neurodyn.models.switching.resolve_priors`), given as
{site: spec string or number}.

Predictions of a run with weight priors use the weights' posterior median (the AutoNormal's
loc) as point estimates; its ``elbo_per_bin`` and held-out likelihood draw the weights from
their guide.

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
   to 0 (see :mod:`neurodyn.models.switching`); none on unobserved bins (label -1). Afterwards
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
import functools
import warnings
from collections.abc import Mapping
from dataclasses import asdict

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer import Trace_ELBO

from ..data import concat_trials
from ..guides import guide_option, load_guide
from ..guides.encoders import TrajectoryEncoder
from ..guides.switching import GUIDES, GuideTrajectories, switching_guide, weight_guide
from ..inference import diagnostics, hmm, svi
from ..inference.diagnostics import FitWarning
from ..models.dynamics import Readout, StateDynamics
from ..models.switching import CONFIGS, LINKS, WEIGHT_PRIORS, Spec, resolve_priors, switching_model
from ..models.weights import posterior_median_weights
from . import protocol

MODELS = tuple(CONFIGS)
NAME = "switching"
CAPABILITIES = frozenset({protocol.STATES, protocol.SIMULATE, protocol.CHECK})
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


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


def _fitted_session(config, sessions):
    """The sessions as one, checked against the neuron count the run was fitted to."""
    session = _one_session(sessions)
    if session.num_neurons != config["spec"]["num_neurons"]:
        raise ValueError(
            f"{session.name}: has {session.num_neurons} neurons, but the run was fitted to "
            f"recordings of {config['spec']['num_neurons']}"
        )
    return session


def _one_session(sessions):
    """Several recordings of one neuron count as one session (``concat_trials`` refuses
    different counts with a one-line message)."""
    sessions = list(sessions)
    if not sessions:
        raise ValueError("no recordings given")
    return sessions[0] if len(sessions) == 1 else concat_trials(sessions)


def _default_likelihood(y) -> str:
    return (
        "poisson"
        if (y >= 0).all() and np.allclose(y, np.round(y)) and y.max() > 1
        else ("gaussian")
    )


def make_config(model: str, sessions, *, options: Mapping | None = None) -> dict:
    """A JSON-able config for ``model`` on ``sessions``; ``ValueError`` on bad options.

    Options (None = default): states (K, default 2; 1 for lds/rnn), latent_dim (D, 3),
    likelihood ("gaussian"/"poisson"; default poisson for non-negative integer counts), guide
    ("dkf", "meanfield", "delta", a user guide's "module:function" path or the function itself),
    priors ({site: spec string or number}), steps (the most steps: the fit stops earlier, as
    soon as the convergence check passes; see :func:`fit`), seed, batch_size, and the advanced
    keys link, readout, dynamics, learning_rate, lr_decay, lr_half_life, patience (a plateau
    stop on top of the convergence stop, off by default), pull_weight, pull_steps,
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
    session = _one_session(sessions)
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
    likelihood = opts.get("likelihood") or _default_likelihood(session.y[session.mask])
    if likelihood not in ("gaussian", "poisson"):
        raise ValueError(f"unknown likelihood {likelihood!r}; choose gaussian or poisson")
    guide = guide_option(opts["guide"], GUIDES, ("spec", "modules", "priors", "pull"))
    link = opts.get("link", "softplus")
    if link not in LINKS:
        raise ValueError(f"unknown link {link!r}; choose one of {', '.join(LINKS)}")
    spec = Spec(
        model=model,
        num_states=int(opts["states"]),
        latent_dim=int(opts["latent_dim"]) if model != "hmm" else 0,
        num_neurons=session.num_neurons,
        input_dim=0,
        likelihood=likelihood,
        link=link,
        readout=opts.get("readout", "linear"),
        dynamics_override=opts.get("dynamics") if model != "hmm" else None,
    )
    priors = {k: str(v) for k, v in dict(opts.get("priors") or {}).items()}
    resolve_priors(spec, priors)  # unknown sites / bad specs raise here
    _modules(spec, int(opts["encoder_hidden"]), 0)  # bad readout / dynamics names raise here
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
    return Spec(**config["spec"])


# ----------------------------------------------------------------------------------------------
# Building the program
# ----------------------------------------------------------------------------------------------


def _modules(spec: Spec, hidden: int, seed: int, init: Mapping | None = None) -> dict:
    """Equinox modules of the model and guide (random, or warm-started from ``init``)."""
    init = dict(init or {})
    if not spec.has_latent:
        return {"global_init": init.get("global_init")}
    kd, kr, ke = jax.random.split(jax.random.PRNGKey(seed), 3)
    K, D, N = spec.num_states, spec.latent_dim, spec.num_neurons
    return {
        "dynamics": StateDynamics(
            spec.dynamics, K, D, spec.input_dim, key=kd, W=init.get("W"), b=init.get("b")
        ),
        "readout": Readout(spec.readout, D, N, key=kr, C=init.get("C"), d=init.get("d")),
        "encoder": TrajectoryEncoder(
            N, D, key=ke, hidden_size=hidden, center=init.get("center"), scale=init.get("scale")
        ),
        "global_init": init.get("global_init"),
    }


def build(config, init: Mapping | None = None):
    """(spec, model, guide) with everything but ``batch``/``num_trials``/``step`` bound."""
    spec = spec_of(config)
    modules = _modules(spec, config["encoder_hidden"], config["seed"], init)
    pull = None
    if config.get("pull_weight") and spec.num_states > 1:
        pull = {"weight": float(config["pull_weight"]), "steps": pull_steps(config)}
    kw = dict(spec=spec, modules=modules, priors=config["priors"], pull=pull)
    auto = weight_guide(spec, modules, config["priors"]) if spec.has_latent else None
    if auto is not None:
        modules["weight_guide"] = auto
    model = functools.partial(switching_model, **kw)
    kind = config["guide"]
    if isinstance(kind, GuideTrajectories):  # a prediction config (see _for_prediction)
        kind = kind.name
    if kind in GUIDES:
        guide = functools.partial(switching_guide, **kw, guide=kind)
    else:
        guide = functools.partial(load_guide(kind), **kw)
    return spec, model, guide


def pull_steps(config) -> int:
    """Steps of the warm-start pull: ``pull_steps``, but at most 40% of a short step budget so
    that a short run still ends on the exact ELBO (runs made before ``pull_steps`` existed: a
    fraction ``pull_fraction`` of their step budget)."""
    if "pull_steps" in config:
        return max(1, min(int(config["pull_steps"]), int(0.4 * config["steps"])))
    return max(1, int(config["pull_fraction"] * config["steps"]))


def learning_rate(config):
    """The step size schedule of :func:`fit`, a function of the step alone (not of the budget).

    ``learning_rate`` while the warm-start pull is on, then halving every ``lr_half_life``
    steps down to the floor ``lr_decay * learning_rate``. Runs made before ``lr_half_life``
    existed decay exponentially to the floor over their step budget, as they did.
    """
    lr0, floor = float(config["learning_rate"]), float(config["lr_decay"])
    if "lr_half_life" not in config:
        return optax.exponential_decay(lr0, config["steps"], floor)
    hold = pull_steps(config) if _pulled(config) else 0
    half_life = float(config["lr_half_life"])

    def schedule(step):
        decay = 0.5 ** (jnp.maximum(step - hold, 0) / half_life)
        return lr0 * jnp.maximum(decay, floor)

    return schedule


def _pulled(config) -> bool:
    """Whether fits of ``config`` have a warm-start pull (a pull weight and K > 1)."""
    return bool(config.get("pull_weight")) and config["spec"]["num_states"] > 1


def floor_step(config) -> int:
    """The first step at which :func:`learning_rate` is at its floor: the pull's steps (if
    any) plus ``lr_half_life * log2(1 / lr_decay)``. :func:`fit` checks convergence from there
    on, so that the check judges the loss curve at its final step size."""
    hold = pull_steps(config) if _pulled(config) else 0
    halvings = np.log2(1.0 / float(config["lr_decay"])) if config["lr_decay"] < 1 else 0.0
    return hold + int(np.ceil(float(config["lr_half_life"]) * halvings))


def converged(losses) -> bool:
    """The stop rule of :func:`fit`: :func:`~neurodyn.inference.diagnostics.elbo_convergence`
    of the loss history float (steps,), the same check the run's metrics report."""
    return diagnostics.elbo_convergence(losses)["converged"]


def batch_of(session, warm=None) -> dict:
    """The arrays a step sees: y [R, T, N], mask [R, T, N] (and warm-start labels int [R, T],
    -1 on bins without any observed neuron, where the pull is off)."""
    batch = {"y": jnp.asarray(session.y), "mask": jnp.asarray(session.mask)}
    if warm is not None:
        batch["warm"] = jnp.asarray(warm, jnp.int32)
    return batch


# ----------------------------------------------------------------------------------------------
# Warm start
# ----------------------------------------------------------------------------------------------


def _kmeans(x, k: int, seed: int, restarts: int = 5, iters: int = 50) -> np.ndarray:
    """Labels of k-means (k-means++ initialisation, best of ``restarts``). x: [M, F]."""
    rng = np.random.default_rng(seed)
    best, best_cost = None, np.inf
    for _ in range(restarts):
        centres = [x[rng.integers(len(x))]]
        for _ in range(1, k):
            d2 = np.min(((x[:, None] - np.array(centres)[None]) ** 2).sum(-1), 1)
            centres.append(x[rng.choice(len(x), p=d2 / d2.sum())])
        centres = np.array(centres)
        for _ in range(iters):
            labels = np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), 1)
            centres = np.array(
                [x[labels == j].mean(0) if (labels == j).any() else centres[j] for j in range(k)]
            )
        cost = ((x - centres[labels]) ** 2).sum()
        if cost < best_cost:
            best, best_cost = labels, cost
    return best


def _ridge(x, y, alpha=1e-2):
    """W, b minimizing |y - x W - b|^2 + alpha |W|^2. x: [M, D], y: [M, D']."""
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    W = np.linalg.solve(xc.T @ xc + alpha * len(x) * np.eye(x.shape[1]), xc.T @ (y - my))
    return W, my - mx @ W


def observed_bins(mask) -> np.ndarray:
    """Bins with any observed neuron: bool [R, T] from a mask [R, T, N]."""
    return np.asarray(mask, bool).any(-1)


def _within(bins) -> np.ndarray:
    """Bins up to each trial's last observed bin (padding after it is False): bool [R, T]."""
    T = bins.shape[1]
    last = np.where(bins.any(1), T - 1 - np.argmax(bins[:, ::-1], 1), -1)
    return np.arange(T)[None] <= last[:, None]


def warm_start(spec: Spec, session, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Warm-start labels int [R, T] and initial module values from PCA + k-means + AR-HMM.

    Only observed entries count: the standardization, the PCA and the k-means use the bins with
    any observed neuron, the AR-HMM scores only steps between observed bins and ignores the
    padding after each trial's last observed bin, and the per-state ridge fits use observed
    steps. Labels of bins without any observed neuron are -1 (no pull there). Appending padded
    bins to trials leaves the labels of the observed bins unchanged.
    """
    y, mask = session.y.astype(np.float64), np.asarray(session.mask, bool)
    if spec.likelihood == "poisson":
        y = np.log1p(y)
    bins = observed_bins(mask)  # [R, T]
    count = np.maximum(mask.sum((0, 1)), 1)
    center = (y * mask).sum((0, 1)) / count
    scale = np.sqrt((((y - center) * mask) ** 2).sum((0, 1)) / count) + 1e-3
    z = np.where(mask, (y - center) / scale, 0.0)  # [R, T, N]
    R, T, N = z.shape
    D = max(spec.latent_dim, 1)
    _, sv, vt = np.linalg.svd(z[bins], full_matrices=False)
    D_eff = min(D, N, int(bins.sum()))
    loadings = vt[:D_eff]  # [D', N]
    scores = z.reshape(-1, N) @ loadings.T  # [R * T, D']
    sd = scores[bins.reshape(-1)].std(0) + 1e-6
    latent = np.zeros((R * T, D))
    latent[:, :D_eff] = scores / sd
    latent = np.where(bins.reshape(-1, 1), latent, 0.0).reshape(R, T, D)
    labels = np.full((R, T), -1)
    labels[bins] = _kmeans(latent[bins][:, : min(D_eff, 3)], spec.num_states, seed)
    labels = _arhmm(latent, labels, spec.num_states, bins)
    init = {"center": center, "scale": scale}
    if spec.likelihood == "gaussian":
        init["global_init"] = {"obs_scale": np.full(N, 0.5, np.float32) * scale}
    if not spec.has_latent:
        return labels, init
    C = np.zeros((D, N))
    C[:D_eff] = (loadings * sd[:, None]) * scale[None]  # y ~ center + latent @ C
    # Poisson: the drive ~ log1p(y) (rough: softplus ~ identity when large)
    init.update(C=C, d=center)
    init.update(_dynamics_init(spec, latent, labels, bins))
    return labels, init


def _arhmm(z, labels, K: int, bins=None, iters: int = 30, stickiness: float = 10.0):
    """Refine labels with an autoregressive HMM fitted by EM with the core.

    z_t | s_t = k ~ N(A_k z_{t-1} + b_k, diag q_k): E-step = :func:`hmm.smooth`, M-step =
    weighted ridge regressions and the sticky transition counts. z: [R, T, D]; labels int
    [R, T] the initial segmentation (-1 where unobserved); bins: bool [R, T] observed bins
    (None = all). Only steps between two observed bins are scored; after each trial's last
    observed bin the chain's transitions are flat (log 0), so trailing padding changes neither
    the smoothed marginals nor the Viterbi path of the observed bins. Returns the Viterbi
    labels int [R, T], -1 on unobserved bins.
    """
    R, T, D = z.shape
    bins = np.ones((R, T), bool) if bins is None else np.asarray(bins, bool)
    if K == 1 or T < 2:
        return np.where(bins, np.maximum(labels, 0), -1)
    pair = (bins[:, 1:] & bins[:, :-1]).reshape(-1)  # [M] steps between observed bins
    x, nxt = z[:, :-1].reshape(-1, D), z[:, 1:].reshape(-1, D)
    X = np.concatenate([x, np.ones((len(x), 1))], 1)
    resp = np.eye(K)[np.maximum(labels[:, 1:].reshape(-1), 0)] * pair[:, None]  # [M, K]
    within = _within(bins)
    flat_tail = jnp.asarray(~within[:, 1:], bool)[..., None, None]  # [R, T-1, 1, 1]
    log_A = np.log(0.9 * np.eye(K) + 0.1 / K)

    def chain(log_A):  # per-trial, per-step log transitions [R, T-1, K, K]
        return jnp.where(flat_tail, 0.0, jnp.asarray(log_A, jnp.float32))

    smooth = jax.jit(jax.vmap(hmm.smooth, (None, 0, 0)))
    for _ in range(iters):
        log_lik = np.zeros((len(x), K))
        for k in range(K):
            w = resp[:, k] + 1e-6 * pair
            Wk = np.linalg.solve(
                (X * w[:, None]).T @ X + 1e-3 * np.eye(D + 1), (X * w[:, None]).T @ nxt
            )
            err = nxt - X @ Wk
            q = np.maximum((w[:, None] * err**2).sum(0) / w.sum(), 1e-4)
            log_lik[:, k] = -0.5 * (err**2 / q + np.log(2 * np.pi * q)).sum(1)
        log_lik *= pair[:, None]
        lik = np.concatenate([np.zeros((R, 1, K)), log_lik.reshape(R, T - 1, K)], 1)
        post = smooth(jnp.full(K, -np.log(K)), chain(log_A), jnp.asarray(lik, jnp.float32))
        resp = np.asarray(post.marginals)[:, 1:].reshape(-1, K) * pair[:, None]
        steps = within[:, 1:, None, None]  # only steps inside the observed span count
        counts = (np.asarray(post.pairwise) * steps).sum((0, 1)) + stickiness * np.eye(K) + 1.0
        log_A = np.log(counts / counts.sum(1, keepdims=True))
    path = jax.vmap(hmm.viterbi, (None, 0, 0))(
        jnp.full(K, -np.log(K)), chain(log_A), jnp.asarray(lik, jnp.float32)
    )
    return np.where(bins, np.asarray(path), -1)


def _dynamics_init(spec: Spec, z, labels, bins=None) -> dict:
    """Per-state ridge fits of the step z_t -> z_{t+1} on each warm-start cluster, over steps
    between observed bins. z: [R, T, D]; labels int [R, T]; bins bool [R, T] (None = all)."""
    if spec.dynamics == "mlp":
        return {}
    K, D = spec.num_states, spec.latent_dim
    bins = np.ones(labels.shape, bool) if bins is None else np.asarray(bins, bool)
    pair = (bins[:, 1:] & bins[:, :-1]).reshape(-1)
    x, nxt, lab = z[:, :-1].reshape(-1, D), z[:, 1:].reshape(-1, D), labels[:, 1:].reshape(-1)
    W, b, resid = np.zeros((K, D, D)), np.zeros((K, D)), []
    for k in range(K):
        on = (lab == k) & pair
        if on.sum() <= D + 1:
            W[k] = np.eye(D) if spec.dynamics == "linear" else 0.0
            continue
        target = (
            nxt[on]
            if spec.dynamics == "linear"
            else np.arctanh(np.clip(nxt[on] - x[on], -0.9, 0.9))
        )
        Wk, bk = _ridge(x[on], target)
        W[k], b[k] = Wk.T, bk
        pred = x[on] @ Wk + bk
        pred = pred if spec.dynamics == "linear" else x[on] + np.tanh(pred)
        resid.append(np.std(nxt[on] - pred, 0))
    q = np.clip(np.mean(resid, 0), 0.02, 0.5) if resid else np.full(D, 0.1)
    return {"W": W, "b": b, "global_init_q": np.broadcast_to(q, (K, D)).astype(np.float32)}


def _initial_values(spec: Spec, session, seed: int):
    labels, init = warm_start(spec, session, seed)
    global_init = dict(init.pop("global_init", None) or {})
    if "global_init_q" in init:
        global_init["process_scale"] = init.pop("global_init_q")
    init["global_init"] = {k: jnp.asarray(v, jnp.float32) for k, v in global_init.items()}
    return labels, init


# ----------------------------------------------------------------------------------------------
# The contract
# ----------------------------------------------------------------------------------------------


def fit(config, sessions, *, out_dir=None, progress=True, resume=False):
    """Fit the config's model and guide by SVI; returns (params, FitResult).

    The run stops as soon as the convergence check (:func:`converged`, the check the run's
    metrics report) passes, once the warm-start pull is over and the step size has reached its
    floor (:func:`floor_step`); ``steps`` is only the most it may take. The step size
    (:func:`learning_rate`) depends on the step alone, so a longer budget does not slow the
    decay, and the stop rule is a function of the loss history alone, so a resumed run stops
    where the uninterrupted one would.
    """
    session = _one_session(sessions)
    spec = spec_of(config)
    labels, init = _initial_values(spec, session, config["seed"])
    _, model, guide = build(config, init)
    if "lr_half_life" in config:
        min_steps, stop = floor_step(config), converged
    else:  # runs made before the convergence stop: their plateau rule after the pull
        min_steps, stop = (pull_steps(config) if config.get("pull_weight") else 0), None
    result = svi.fit(
        model,
        guide,
        batch_of(session, labels if spec.num_states > 1 else None),
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
    from ..inference import switching_predict

    predict, point_params = _for_prediction(config, params)
    states = switching_predict.most_likely_states(predict, point_params, session)
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


def problem(config, params, sessions, *, max_values: int | None = None):
    """The fitted model and guide on ``sessions``, for the workflow (held-out likelihood, ArviZ
    export, comparison): every trial counts once and the warm-start pull is off.

    ``max_values`` (None = no limit) keeps only the first trials, as many as fit
    trials * T * N <= max_values (the run folder's ``posterior.nc`` uses it to bound its size).
    """
    from ..inference.workflow import LATE_STEP, Problem

    session = _fitted_session(config, sessions)
    if max_values is not None:
        per_trial = session.num_timesteps * session.num_neurons
        keep = max(1, max_values // per_trial)
        if keep < session.num_trials:
            session = session.select(slice(0, keep))
    _, model, guide = build(config)
    return Problem(
        model=model,
        guide=guide,
        params=jax.tree_util.tree_map(jnp.asarray, params),
        batch=batch_of(session),
        model_kwargs={"num_trials": session.num_trials, "step": LATE_STEP},
        local_plates=("trials",),
        num_observed_bins=int(session.bin_mask.sum()),
    )


def param_template(config):
    """A params pytree with the structure and shapes of a fit of ``config``."""
    from numpyro import handlers

    spec, model, guide = build(config)
    T = 3
    batch = {
        "y": jnp.zeros((1, T, spec.num_neurons)),
        "mask": jnp.ones((1, T, spec.num_neurons), bool),
    }
    params = {}
    for fn in (guide, model):
        with handlers.trace() as tr, handlers.seed(rng_seed=0):
            with handlers.substitute(data=params):
                fn(batch, num_trials=1)
        params.update({k: v["value"] for k, v in tr.items() if v["type"] == "param"})
    return jax.device_get(params)


def _for_prediction(config, params):
    """(config, params) as :mod:`neurodyn.inference.switching_predict` reads them: weights with
    a prior at their posterior median (the AutoNormal's loc; their priors live on the real
    line), and a user-written guide's trajectory draws as :class:`GuideTrajectories`. Runs
    with neither are returned as they are."""
    weights = [site for site in WEIGHT_PRIORS if site in config["priors"]]
    user_guide = config["guide"] not in GUIDES
    if not weights and not user_guide:
        return config, params
    params = dict(jax.tree_util.tree_map(jnp.asarray, params))
    predict = {**config, "priors": {k: v for k, v in config["priors"].items() if k not in weights}}
    if user_guide:
        predict["guide"] = GuideTrajectories(config["guide"], build(config)[2], params)
    params = posterior_median_weights(params, [WEIGHT_PRIORS[site] for site in weights])
    return predict, params


def evaluate(config, params, sessions, *, horizons=(1, 5, 10), num_samples=16, seed=0) -> dict:
    """Metrics of DESIGN.md on ``sessions`` (see :mod:`neurodyn.inference.switching_predict`)."""
    from ..inference import switching_predict

    session = _fitted_session(config, sessions)
    predict, point_params = _for_prediction(config, params)
    metrics = switching_predict.evaluate(
        predict, point_params, session, horizons=horizons, num_samples=num_samples, seed=seed
    )
    if predict["priors"] != config["priors"]:  # weight priors: the fit's own ELBO
        key = jax.random.split(jax.random.PRNGKey(seed), 3)[2]  # switching_predict's ELBO key
        metrics["elbo_per_bin"] = _elbo(config, params, session, num_samples, key) / float(
            session.bin_mask.sum()
        )
    return metrics


def _elbo(config, params, session, num_samples: int, key) -> float:
    """ELBO estimate of the fitted model and guide on ``session`` (every trial once, no pull)."""
    _, model, guide = build(config)
    batch = batch_of(session)
    params = jax.tree_util.tree_map(jnp.asarray, params)

    def loss(key):
        return Trace_ELBO(num_particles=num_samples).loss(
            key, params, model, guide, batch, num_trials=session.num_trials
        )

    return -float(jax.jit(loss)(key))


def heldout_smc(
    config,
    params,
    sessions,
    *,
    num_particles: int | None = None,
    num_replicates: int | None = None,
    seed: int = 0,
    proposal: str = "auto",
):
    """Per-trial held-out log p(y_i) by sequential Monte Carlo
    (:func:`neurodyn.inference.switching_predict.smc_log_marginals`): the fully adapted
    proposal where it is exact (Gaussian, linear readout), else the guide's per-bin Gaussian
    with a defensive prior component; ``num_replicates`` independent runs of ``num_particles``
    (defaults :data:`neurodyn.inference.smc.NUM_PARTICLES`, ``NUM_REPLICATES``) pooled by
    :func:`neurodyn.inference.smc.pool_replicates`.

    Returns (metrics, log_marginals [trials], mcse [trials]): ``metrics`` as in
    ``pool_replicates`` plus ``smc_proposal``. ``ValueError`` for ``hmm`` (exact already) and
    where no proposal applies (a Poisson or MLP readout with a ``delta`` or user guide).
    """
    from ..inference import smc, switching_predict

    P = num_particles or smc.NUM_PARTICLES
    R = num_replicates or smc.NUM_REPLICATES
    session = _fitted_session(config, sessions)
    predict, point_params = _for_prediction(config, params)
    fitted = switching_predict.Fitted(predict, point_params)
    used = switching_predict.smc_proposal(fitted, proposal)
    batch = batch_of(session)
    estimate = switching_predict.smc_log_marginals(
        fitted, batch["y"], batch["mask"], P, jax.random.PRNGKey(seed), R, used
    )
    pooled = smc.pool_replicates(estimate, P, session.bin_mask.sum())
    return {**pooled.metrics, "smc_proposal": used}, pooled.log_marginals, pooled.mcse


def supports_smc(config) -> bool:
    """Whether :func:`heldout_smc` applies to runs of ``config``: a continuous latent, and
    either Gaussian observations with a linear readout (the fully adapted proposal needs no
    guide) or a guide with a Gaussian per bin."""
    from ..inference.switching_predict import SMC_GUIDES, optimal_applies

    spec = spec_of(config)
    if not spec.has_latent:
        return False
    return optimal_applies(spec) or config["guide"] in SMC_GUIDES


def most_likely_states(config, params, sessions) -> np.ndarray:
    """Viterbi states (trials, T) given the posterior-mean trajectory (K > 1 models)."""
    from ..inference import switching_predict

    predict, params = _for_prediction(config, params)
    return switching_predict.most_likely_states(predict, params, _fitted_session(config, sessions))


def report(config, params, sessions, out_dir) -> list:
    """PNG figures: state raster vs truth, reconstructions, per-state flow fields."""
    from ..inference import switching_predict

    predict, params = _for_prediction(config, params)
    return switching_predict.report(predict, params, _fitted_session(config, sessions), out_dir)


def simulate(config, params, *, num_trials: int, num_timesteps: int, seed: int = 0):
    """A session simulated from the fitted run (fitted globals, the model's generative story;
    weights with a prior at their posterior median). Returns a
    :class:`~neurodyn.data.Session` with y [num_trials, num_timesteps, N] fully observed, and
    the simulated ``states`` [num_trials, T] and ``latents`` [num_trials, T, D].
    ``ValueError`` for ``hmm`` (no continuous latent)."""
    from ..data import make_session
    from ..inference import switching_predict

    predict, point_params = _for_prediction(config, params)
    fitted = switching_predict.Fitted(predict, point_params)
    s, h, y = switching_predict.simulate(
        fitted, jax.random.PRNGKey(seed), int(num_trials), int(num_timesteps)
    )
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
    from ..inference import calibration, switching_predict

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
    predict, point_params = _for_prediction(config, params)
    fitted = switching_predict.Fitted(predict, point_params)
    y, mask = jnp.asarray(session.y), jnp.asarray(session.mask)
    key = jax.random.PRNGKey(seed + 1)
    draws = jax.jit(
        lambda y, mask, key: switching_predict.trajectory_samples(fitted, y, mask, num_samples, key)
    )(y, mask, key)
    probs = None
    if fitted.spec.num_states > 1:
        marginals = jax.jit(
            lambda h: jax.lax.map(lambda hs: switching_predict.smoothed_states(fitted, h=hs), h)
        )
        probs = np.asarray(marginals(draws)).mean(0)  # [B, T, K]
    return calibration.summarize(
        session.latents,
        np.asarray(draws),
        every=every,
        states=session.states if probs is not None else None,
        state_probs=probs,
        seed=seed,
    )


__all__ = [
    "GUIDES",
    "MODELS",
    "build",
    "check",
    "evaluate",
    "fit",
    "heldout_smc",
    "make_config",
    "most_likely_states",
    "param_template",
    "problem",
    "report",
    "simulate",
    "supports_smc",
    "warm_start",
]
