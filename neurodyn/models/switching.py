"""The switching family as one NumPyro program (SRNN, SLDS, rSLDS, HMM, LDS, RNN).

Generative model, for each trial (``K`` discrete states, latent dimension ``D``)::

    s_1 ~ Cat(pi)                          h_1 ~ p_0(h)                 (``initial_state``)
    s_t | s_{t-1}, h_{t-1} ~ Cat(softmax(log A[s_{t-1}] + R^T h_{t-1} + r))   (recurrent)
                             or Cat(A[s_{t-1}])                                (stationary)
    h_t | s_t, h_{t-1} ~ N(f_{s_t}(h_{t-1}, u_t), diag(q_{s_t}^2))
    y_t | h_t ~ N(C^T h_t + d, diag(sigma^2))  or  Poisson(link(C^T h_t + d))

The discrete path is summed out exactly: the whole trajectory ``h`` (trials, T, D) is ONE sample
site whose distribution, :class:`SwitchingTrajectory`, scores ``log sum_s p(s, h | u)`` with the
forward algorithm of :mod:`neurodyn.inference.hmm` (no enumeration, no per-step sites). Its
``sample`` runs the model forward (ancestral simulation), so the same program generates data.

Configurations (:data:`CONFIGS`): ``srnn`` (RNN dynamics, recurrent transitions), ``slds``
(linear, stationary), ``rslds`` (linear, recurrent), ``hmm`` (no continuous latent: per-state
emissions, ``log p(y)`` by the core over bins with any observed neuron), ``lds`` and ``rnn``
(K = 1). Missing entries (``mask`` False) drop out of y's likelihood only; the latent dynamics
keep running through them so the prior on h is always proper.

Priors are arguments (:func:`default_priors`, overridden by :func:`resolve_priors`, once, when
the program is built; a value is a distribution, a spec string such as ``"Gamma(10, 1)"``, or,
for a fixed hyperparameter, a number):

* ``init_probs``: Dirichlet(1, ..., 1) on pi (K > 1 only);
* ``transition``: sticky Dirichlet per row of A, A_k ~ Dirichlet(1 + kappa e_k) (K > 1 only);
  with recurrent transitions A is the baseline of the softmax;
* ``transition_stickiness``: kappa, fixed at 10 by default (a point mass). A number fixes it
  (``transition_stickiness=1000``: stickier, fewer switches; ``0``: a flat Dirichlet); a
  distribution on non-negative numbers (``Gamma(10, 1)``) makes kappa a global sample site with
  that hyperprior, fitted like the other globals. Give ``transition`` or
  ``transition_stickiness``, not both;
* ``process_scale``: LogNormal(log 0.1, 1) on each q_k[d];
* ``initial_state``: Normal(0, 1) on each coordinate of h_1;
* ``obs_scale``: LogNormal(log 0.5, 1) on each neuron's sigma (Gaussian likelihood only);
* ``dynamics_weights``, ``readout_weights`` (models with a continuous latent): none by default,
  i.e. the weights of the dynamics / readout module are parameters (``eqx_module``, point
  estimates). A distribution on the real line (``Normal(0, 1)``) is put on every entry of every
  weight array of that module (``random_eqx_module``): the weights become global sample sites
  named ``"dynamics.W"``, ``"dynamics.b"``, ``"readout.C"``, ... (see :func:`weight_sites`).

The recurrence R, r and the hmm emission means/rates are always point-estimated
(``numpyro.param``).

The fitting code's warm-start pull (:mod:`neurodyn.families.switching.pull`) reads the chain's
potentials off the two chain-marginalizing distributions (:meth:`SwitchingTrajectory.potentials`,
:meth:`HMMObservations.potentials`); the program itself has no notion of it.

``batch["y"]`` None (or absent) simulates: y is then drawn from the model (shapes from
``batch["mask"]``), so ``numpyro.infer.Predictive(model, num_samples=...)`` generates data.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import Array, Float, Int, PRNGKeyArray
from numpyro.distributions import constraints

from ..inference import hmm
from . import weights
from .priors import PriorError, resolve

# name -> (dynamics form or None, transitions, fixed K or None)
CONFIGS = {
    "srnn": ("rnn", "recurrent", None),
    "slds": ("linear", "stationary", None),
    "rslds": ("linear", "recurrent", None),
    "hmm": (None, "stationary", None),
    "lds": ("linear", "stationary", 1),
    "rnn": ("rnn", "stationary", 1),
}
LINKS = ("softplus", "exp")
DEFAULT_STICKINESS = 10.0
# weight-prior site -> the Equinox module whose weights it covers
WEIGHT_PRIORS = {"dynamics_weights": "dynamics", "readout_weights": "readout"}


@dataclasses.dataclass(frozen=True)
class Spec:
    """Everything that fixes the program's structure (hashable; JSON-able via ``asdict``)."""

    model: str
    num_states: int
    latent_dim: int
    num_neurons: int
    input_dim: int = 0
    likelihood: str = "gaussian"
    link: str = "softplus"
    readout: str = "linear"
    dynamics_override: str | None = None  # e.g. "mlp" instead of the config's form

    @property
    def dynamics(self) -> str | None:
        return self.dynamics_override or CONFIGS[self.model][0]

    @property
    def transitions(self) -> str:
        return CONFIGS[self.model][1]

    @property
    def has_latent(self) -> bool:
        return self.dynamics is not None


class Globals(NamedTuple):
    """Global quantities of one model instance (values, not sites).

    log_init [K]; log_A [K, K]; R [D, K] and r [K] (recurrent transitions, else None);
    dynamics (StateDynamics); process_scale [K, D]; initial (distribution on each h_1[d]);
    readout (Readout, or [K, N] emission means for hmm); obs_scale [N] ([K, N] for hmm) or None.
    """

    log_init: jax.Array
    log_A: jax.Array
    R: jax.Array | None
    r: jax.Array | None
    dynamics: Any
    process_scale: jax.Array | None
    initial: Any
    readout: Any
    obs_scale: jax.Array | None


# ----------------------------------------------------------------------------------------------
# Priors and globals
# ----------------------------------------------------------------------------------------------


def sticky_dirichlet(num_states: int, stickiness) -> dist.Dirichlet:
    """Rows A_k ~ Dirichlet(1 + kappa e_k): batch (K,), event (K,)."""
    K = num_states
    return dist.Dirichlet(jnp.ones((K, K)) + stickiness * jnp.eye(K))


def default_priors(spec: Spec, stickiness: float = DEFAULT_STICKINESS) -> dict:
    """The model's documented default priors (see the module docstring)."""
    K, priors = spec.num_states, {}
    if K > 1:
        priors["init_probs"] = dist.Dirichlet(jnp.ones(K))
        priors["transition"] = sticky_dirichlet(K, stickiness)
        priors["transition_stickiness"] = dist.Delta(np.float32(stickiness))
    if spec.has_latent:
        priors["process_scale"] = dist.LogNormal(jnp.log(0.1), 1.0)
        priors["initial_state"] = dist.Normal(0.0, 1.0)
    if spec.likelihood == "gaussian":
        priors["obs_scale"] = dist.LogNormal(jnp.log(0.5), 1.0)
    return priors


def resolve_priors(spec: Spec, user: Mapping | None = None) -> dict:
    """:func:`default_priors` (and ``None`` for the weight priors) overridden by ``user``
    ({site: distribution, spec string or number}); ``PriorError`` names a bad choice."""
    user = dict(user or {})
    weight_priors = dict.fromkeys(WEIGHT_PRIORS) if spec.has_latent else {}
    if "transition" in user and "transition_stickiness" in user:
        raise PriorError(
            "give a prior for transition or for transition_stickiness, not both "
            "(transition_stickiness sets the sticky Dirichlet of transition)"
        )
    priors = resolve({**default_priors(spec), **weight_priors}, user)
    if "transition_stickiness" in user:
        kappa = priors["transition_stickiness"]
        weights.check_scalar_on(
            kappa, "transition_stickiness", "non-negative numbers, e.g. Gamma(10, 1)"
        )
        if isinstance(kappa, dist.Delta):
            if float(kappa.v) < 0:
                raise PriorError(f"transition_stickiness must be >= 0, got {float(kappa.v):g}")
            priors["transition"] = sticky_dirichlet(spec.num_states, float(kappa.v))
        elif getattr(kappa.support, "lower_bound", None) is None or kappa.support.lower_bound < 0:
            raise PriorError(
                f"the prior of transition_stickiness must live on non-negative numbers, e.g. "
                f"Gamma(10, 1); {type(kappa).__name__} has support {kappa.support}"
            )
    for site in weight_priors:
        weights.check_weight_prior(priors[site], site)
    return priors


def weight_sites(spec: Spec, modules: Mapping, priors: Mapping) -> list[str]:
    """Names of the weight sample sites that the resolved ``priors`` create (empty without weight
    priors): ``"<module>.<array path>"``, e.g. ``"dynamics.W"``, ``"readout.C"``."""
    return weights.weight_sites(
        modules, {module: priors.get(site) for site, module in WEIGHT_PRIORS.items()}
    )


def global_shapes(spec: Spec) -> dict[str, tuple[int, ...]]:
    """Shapes of the global sample sites (the MAP guide's parameters)."""
    K, D, N = spec.num_states, spec.latent_dim, spec.num_neurons
    shapes = {}
    if K > 1:
        shapes["init_probs"] = (K,)
        shapes["transition"] = (K, K)
    if spec.has_latent:
        shapes["process_scale"] = (K, D)
    if spec.likelihood == "gaussian":
        shapes["obs_scale"] = (N,) if spec.has_latent else (K, N)
    return shapes


def _shaped(prior: dist.Distribution, shape) -> dist.Distribution:
    """``prior`` broadcast to a site of the given full shape, all dims as event dims."""
    event = prior.event_shape
    batch = tuple(shape[: len(shape) - len(event)])
    return prior.expand(batch).to_event(len(batch))


def sample_globals(spec: Spec, modules: Mapping, priors: Mapping) -> Globals:
    """Global sample sites and network parameters of the model; returns their values.
    ``priors`` as returned by :func:`resolve_priors`."""
    K = spec.num_states
    shapes = global_shapes(spec)

    def site(name, prior=None):
        return numpyro.sample(name, _shaped(priors[name] if prior is None else prior, shapes[name]))

    log_init, log_A = jnp.zeros(K), jnp.zeros((K, K))
    if K > 1:
        log_init = jnp.log(site("init_probs"))
        log_A = jnp.log(site("transition", _transition_prior(spec, priors)))
    R = r = None
    if K > 1 and spec.transitions == "recurrent":
        R = numpyro.param("transition_weights", jnp.zeros((spec.latent_dim + spec.input_dim, K)))
        r = numpyro.param("transition_bias", jnp.zeros(K))
    obs_scale = site("obs_scale") if "obs_scale" in shapes else None
    if not spec.has_latent:
        return Globals(log_init, log_A, None, None, None, None, None, _emissions(spec), obs_scale)
    return Globals(
        log_init=log_init,
        log_A=log_A,
        R=R,
        r=r,
        dynamics=weights.bind_network(
            "dynamics", modules["dynamics"], priors.get("dynamics_weights")
        ),
        process_scale=site("process_scale"),
        initial=priors["initial_state"],
        readout=weights.bind_network("readout", modules["readout"], priors.get("readout_weights")),
        obs_scale=obs_scale,
    )


def _transition_prior(spec: Spec, priors: Mapping) -> dist.Distribution:
    """The prior of A: ``priors["transition"]``, unless kappa has a hyperprior, in which case
    kappa is the global site ``transition_stickiness`` and A_k ~ Dirichlet(1 + kappa e_k)."""
    kappa = priors.get("transition_stickiness")
    if kappa is None or isinstance(kappa, dist.Delta):
        return priors["transition"]
    return sticky_dirichlet(spec.num_states, numpyro.sample("transition_stickiness", kappa))


def _emissions(spec: Spec) -> jax.Array:
    """hmm: per-state emission drive [K, N] (Gaussian mean, or pre-link rate)."""
    K, N = spec.num_states, spec.num_neurons
    init = jnp.linspace(-1.0, 1.0, K)[:, None] * jnp.ones((K, N))
    return numpyro.param("emission_drive", init)


# ----------------------------------------------------------------------------------------------
# The discrete chain given a trajectory
# ----------------------------------------------------------------------------------------------


def log_transitions(
    g: Globals, h_prev: Float[Array, "T D"], u: Float[Array, "T U"] | None = None
) -> Float[Array, "T K K"] | Float[Array, "K K"]:
    """Log transition matrices. h_prev: [T-1, D], u: [T-1, U] inputs of the target bins (None:
    zero inputs) -> [T-1, K, K] (recurrent) or [K, K]."""
    if g.R is None:
        return g.log_A
    x = h_prev
    if g.R.shape[0] > h_prev.shape[-1]:  # inputs drive the transitions too: R is [D + U, K]
        U = g.R.shape[0] - h_prev.shape[-1]
        u = jnp.zeros(h_prev.shape[:-1] + (U,)) if u is None else u
        x = jnp.concatenate([h_prev, u], axis=-1)
    recurrence = x @ g.R + g.r  # [T-1, K]: depends on the target state only (rSLDS)
    return jax.nn.log_softmax(g.log_A[None] + recurrence[:, None, :], axis=-1)


def dynamics_means(
    g: Globals, h_prev: Float[Array, "T D"], u: Float[Array, "T U"] | None = None
) -> Float[Array, "T K D"]:
    """All states' predicted means. h_prev: [T', D], u: [T', U] or None -> [T', K, D]."""
    if u is None:
        return jax.vmap(g.dynamics)(h_prev)
    return jax.vmap(g.dynamics)(h_prev, u)


def state_potentials(
    g: Globals, h: Float[Array, "T D"], u: Float[Array, "T U"] | None = None
) -> tuple[Float[Array, " K"], Float[Array, "T-1 K K"] | Float[Array, "K K"], Float[Array, "T K"]]:
    """The chain's potentials given one trajectory.

    Args:
        h: [T, D] trajectory; u: [T, U] inputs or None.

    Returns:
        (log_init [K], log_trans [T-1, K, K] or [K, K], log_lik [T, K]) with
        ``log_lik[t, k] = log N(h_t | f_k(h_{t-1}, u_t), q_k)``, ``log_lik[0, k] = log p_0(h_1)``.
    """
    K = g.log_init.shape[0]
    means = dynamics_means(g, h[:-1], None if u is None else u[1:])  # [T-1, K, D]
    step = dist.Normal(means, g.process_scale).log_prob(h[1:, None, :]).sum(-1)
    first = jnp.broadcast_to(g.initial.log_prob(h[0]).sum(-1), (1, K))
    log_trans = log_transitions(g, h[:-1], None if u is None else u[1:])
    return g.log_init, log_trans, jnp.concatenate([first, step], axis=0)


def trajectory_potentials(g: Globals, h, u=None):
    """:func:`state_potentials` of every trial. h: [B, T, D]; u: [B, T, U] or None ->
    (log_init [B, K], log_trans [B, T-1, K, K] or [B, K, K], log_lik [B, T, K])."""
    if u is None:
        return jax.vmap(lambda h: state_potentials(g, h))(h)
    return jax.vmap(lambda h, u: state_potentials(g, h, u))(h, u)


def trajectory_log_prob(
    g: Globals, h: Float[Array, "B T D"], u: Float[Array, "B T U"] | None = None
) -> Float[Array, " B"]:
    """``log sum_s p(s, h | u)`` per trial. h: [B, T, D]; u: [B, T, U] or None -> [B]."""
    return jax.vmap(hmm.log_marginal)(*trajectory_potentials(g, h, u))


def roll_forward(
    g: Globals,
    key: PRNGKeyArray,
    h0: Float[Array, " D"],
    s0_logits: Float[Array, " K"],
    num_steps: int,
    u: Float[Array, "S U"] | None = None,
) -> tuple[Int[Array, " S"], Float[Array, "S D"]]:
    """Simulate the model forward from a known bin.

    Args:
        h0: [D] latent at the starting bin; s0_logits: [K] log probabilities of its state.
        num_steps: bins to generate after it; u: [num_steps, U] their inputs, or None.

    Returns:
        (s int32 [num_steps], h [num_steps, D]).
    """
    D = h0.shape[-1]
    k_first, k_run = jax.random.split(key)
    inputs = jnp.zeros((num_steps, 0)) if u is None else u

    def step(carry, xs):
        s_prev, h_prev = carry
        key, u_t = xs
        k_s, k_h = jax.random.split(key)
        log_trans = log_transitions(g, h_prev[None], None if u is None else u_t[None])
        s = jax.random.categorical(k_s, log_trans.reshape(-1, *log_trans.shape[-2:])[0][s_prev])
        means = g.dynamics(h_prev, None if u is None else u_t)
        h = means[s] + g.process_scale[s] * jax.random.normal(k_h, (D,))
        return (s, h), (s.astype(jnp.int32), h)

    s0 = jax.random.categorical(k_first, s0_logits)
    _, (s, h) = jax.lax.scan(step, (s0, h0), (jax.random.split(k_run, num_steps), inputs))
    return s, h


def simulate(
    g: Globals, key: PRNGKeyArray, num_steps: int, u: Float[Array, "T U"] | None = None
) -> tuple[Int[Array, " T"], Float[Array, "T D"]]:
    """Ancestral simulation of one trial from the prior: (s int32 [T], h [T, D]); u: [T, U]."""
    K, D = g.process_scale.shape
    k_s, k_h, k_run = jax.random.split(key, 3)
    s1 = jax.random.categorical(k_s, g.log_init)
    h1 = g.initial.expand((D,)).sample(k_h)
    certain = jnp.where(jnp.arange(K) == s1, 0.0, -jnp.inf)
    s, h = roll_forward(g, k_run, h1, certain, num_steps - 1, None if u is None else u[1:])
    return jnp.concatenate([s1[None].astype(jnp.int32), s]), jnp.concatenate([h1[None], h])


class SwitchingTrajectory(dist.Distribution):
    """Prior over whole trajectories with the states summed out: event shape (T, D).

    ``log_prob(h)`` = ``log sum_s p(s, h | u)`` by the core's forward algorithm; ``sample``
    simulates the model forward. Batch shape (B,): one trajectory per trial.
    """

    arg_constraints = {}
    reparametrized_params = []
    support = constraints.independent(constraints.real, 2)

    def __init__(self, g: Globals, num_trials: int, num_timesteps: int, u=None):
        self.g, self.u = g, u
        D = g.process_scale.shape[-1]
        super().__init__(batch_shape=(num_trials,), event_shape=(num_timesteps, D))

    def potentials(self, value):
        """The chain's potentials given trajectories [B, T, D]: (log_init [B, K], log_trans,
        log_lik [B, T, K], mask None) (see :func:`trajectory_potentials`)."""
        return (*trajectory_potentials(self.g, value, self.u), None)

    def log_prob(self, value):
        return trajectory_log_prob(self.g, value, self.u)

    def sample(self, key, sample_shape=()):
        B, (T, _) = self.batch_shape[0], self.event_shape
        shape = tuple(sample_shape) + (B,)
        keys = jax.random.split(key, shape)
        u = jnp.broadcast_to(self.u, shape + self.u.shape[1:]) if self.u is not None else None

        def draw(k, u_b):
            return simulate(self.g, k, T, u_b)[1]

        for _ in shape:
            draw = jax.vmap(draw, in_axes=(0, None if u is None else 0))
        return draw(keys, u)


# ----------------------------------------------------------------------------------------------
# Observations
# ----------------------------------------------------------------------------------------------


def rate(spec: Spec, drive):
    """Poisson rate from the drive by the spec's link."""
    return jax.nn.softplus(drive) if spec.link == "softplus" else jnp.exp(drive)


def observation_dist(spec: Spec, drive, obs_scale):
    """Per-entry distribution of y given the drive [..., N]."""
    if spec.likelihood == "gaussian":
        return dist.Normal(drive, obs_scale)
    return dist.Poisson(rate(spec, drive) + 1e-6)


def predicted_mean(spec: Spec, drive):
    """E[y | drive]."""
    return drive if spec.likelihood == "gaussian" else rate(spec, drive)


def hmm_log_lik(spec: Spec, g: Globals, y, mask):
    """hmm: log p(y_t | s_t = k) [B, T, K] summing observed neurons. y, mask: [B, T, N]."""
    d = observation_dist(spec, g.readout, g.obs_scale)  # batch [K, N]
    lp = d.log_prob(y[..., None, :])  # [B, T, K, N]
    return jnp.where(mask[..., None, :], lp, 0.0).sum(-1)


# ----------------------------------------------------------------------------------------------
# The program
# ----------------------------------------------------------------------------------------------


class HMMObservations(dist.Distribution):
    """hmm: y with the discrete path summed out, event shape (T, N), batch shape (B,).

    ``log_prob(y)`` = ``log sum_s p(s, y)`` over bins with any observed neuron (masked entries
    drop out); ``sample`` draws a state path and per-state emissions.
    """

    arg_constraints = {}
    support = constraints.independent(constraints.real, 2)

    def __init__(self, spec: Spec, g: Globals, mask):
        """mask: bool [B, T, N]."""
        self.spec, self.g, self.obs_mask = spec, g, mask
        B, T, N = mask.shape
        super().__init__(batch_shape=(B,), event_shape=(T, N))

    def potentials(self, value):
        """(log_init [B, K], log_A [B, K, K], log_lik [B, T, K], bins bool [B, T])."""
        B = value.shape[0]
        log_lik = hmm_log_lik(self.spec, self.g, value, self.obs_mask)
        log_init = jnp.broadcast_to(self.g.log_init, (B,) + self.g.log_init.shape)
        log_A = jnp.broadcast_to(self.g.log_A, (B,) + self.g.log_A.shape)
        return log_init, log_A, log_lik, self.obs_mask.any(-1)

    def log_prob(self, value):
        return jax.vmap(hmm.log_marginal)(*self.potentials(value))

    def sample(self, key, sample_shape=()):
        (B,), (T, _) = self.batch_shape, self.event_shape
        shape = tuple(sample_shape) + (B,)
        k_path, k_obs = jax.random.split(key)

        def path(k):  # a Markov chain of T states, int [T]
            k_first, k_run = jax.random.split(k)

            def step(s, k):
                s = jax.random.categorical(k, self.g.log_A[s])
                return s, s

            s1 = jax.random.categorical(k_first, self.g.log_init)
            return jnp.concatenate(
                [s1[None], jax.lax.scan(step, s1, jax.random.split(k_run, T - 1))[1]]
            )

        s = jax.vmap(path)(jax.random.split(k_path, math.prod(shape))).reshape(shape + (T,))
        drive = self.g.readout[s]  # [..., B, T, N]
        scale = None if self.g.obs_scale is None else self.g.obs_scale[s]
        return observation_dist(self.spec, drive, scale).sample(k_obs)


def switching_model(batch, *, num_trials, spec: Spec, modules, priors=None):
    """The switching family's generative program.

    Args:
        batch: {"y": [B, T, N] or None (simulate), "mask": bool [B, T, N] (default: all of y
            observed; needed when y is None), optional "u": [B, T, U] inputs}.
        num_trials: number of trials in the full data (the plate's ELBO scaling).
        spec: :class:`Spec`; modules: {"dynamics", "readout"} Equinox modules (initial values).
        priors: {site: distribution} as returned by :func:`resolve_priors` (None: the
            defaults).
    """
    priors = resolve_priors(spec) if priors is None else priors
    y, mask = batch.get("y"), batch.get("mask")
    if mask is None:
        if y is None:
            raise ValueError("switching_model: give batch['mask'] [B, T, N] to simulate y")
        mask = jnp.ones(jnp.shape(y), bool)
    B, T, _ = mask.shape
    u = batch.get("u")
    if spec.input_dim and (u is None or u.shape != (B, T, spec.input_dim)):
        got = "none" if u is None else f"shape {tuple(u.shape)}"
        raise ValueError(f"switching_model: batch['u'] must be [B, T, {spec.input_dim}], got {got}")
    g = sample_globals(spec, modules, priors)
    with numpyro.plate("trials", num_trials, subsample_size=B):
        if not spec.has_latent:
            numpyro.sample("y", HMMObservations(spec, g, mask), obs=y)
            return
        h = numpyro.sample("h", SwitchingTrajectory(g, B, T, u))
        drive = jax.vmap(jax.vmap(g.readout))(h)
        obs = observation_dist(spec, drive, g.obs_scale).mask(mask).to_event(2)
        numpyro.sample("y", obs, obs=y)
