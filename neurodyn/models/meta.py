"""The meta-dynamical state space model (Vermani et al., ICLR 2025) and its baselines.

For recordings i = 1..M (each with its own N_i neurons) and trials j:

    e_i        ~ p(e)                                   dynamical embedding (d_e small)
    theta_i    = theta + hypernet(e_i)                  W_l(e_i) = W_l + U_l(e_i) V_l(e_i)^T
    z_ij1      ~ p(z_1)
    z_ijt      ~ N(f_{theta_i}(z_ij,t-1, u_ijt), diag(q^2))   shared MLP dynamics, residual or
                                                         direct; u: optional known inputs
    y_ijt      ~ p(y | C_i z_ijt + d_i)                 Gaussian, or Poisson with softplus link

Every baseline is a setting of :class:`Spec` on this one program:

==================  ==========  =========  ==========================================
model               embedding   adapter    notes
==================  ==========  =========  ==========================================
meta-dssm           random      low-rank   hypernetwork on the input and hidden layers
linear-adapter      random      linear     every weight changes linearly in e
embedding-input     random      none       e concatenated to the dynamics input
shared-dynamics     none        none       the embedding-free special case
single-session      none        table      each recording's own weights (free offsets)
==================  ==========  =========  ==========================================

Recordings are vectorised: a batch holds M recordings padded to N_max neurons (``mask``) and B
trials each (``trial_mask``), with known inputs ``u`` (M, B, T, U) when the run has them (the
input of bin t drives the step into bin t, as in the switching family); per-recording
parameters have a leading axis over all recordings the run knows and are picked by
``batch["rec"]``. The whole trajectory z is one sample site
(M, B, T, D) scored in parallel by :class:`MarkovGaussian`. Trial-level terms are scaled by
``batch["scale"]`` (num_trials_i / trials in the batch) so the ELBO is that of the full data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jaxtyping import Array, Float, Int
from numpyro.distributions import constraints

from . import hypernetwork as hn
from . import weights
from .priors import resolve

MODEL_SETTINGS = {
    "meta-dssm": dict(embedding=True, adapter="lowrank", embedding_input=False),
    "linear-adapter": dict(embedding=True, adapter="linear", embedding_input=False),
    "embedding-input": dict(embedding=True, adapter="none", embedding_input=True),
    "shared-dynamics": dict(embedding=False, adapter="none", embedding_input=False),
    "single-session": dict(embedding=False, adapter="table", embedding_input=False),
}

# Parameters with a leading axis over recordings (fitted anew when adapting to a recording).
PER_RECORDING = (
    "readout_weight",
    "readout_bias",
    "obs_scale",
    "readin_weight",
    "readin_bias",
    "embedding_loc",
    "embedding_scale",
    "embedding_shift",
    "process_scale_per_recording",
    *(f"dynamics_offset_{name}" for name in hn.LAYERS),
)


@dataclasses.dataclass(frozen=True)
class Spec:
    """Static settings of the program (from a run's config)."""

    num_recordings: int
    max_neurons: int
    latent_dim: int = 2
    embedding_dim: int = 2
    embedding: bool = True
    adapter: str = "lowrank"  # lowrank | linear | table | none
    adapted_layers: tuple = ("input", "hidden")
    embedding_input: bool = False
    rank: int = 2
    input_dim: int = 0  # U: known input channels concatenated to the dynamics' input
    hidden: int = 64
    residual: bool = True
    process_noise: str = "shared"  # shared | per-recording
    likelihood: str = "gaussian"
    guide: str = "amortized"  # amortized | free
    embedding_refined: bool = False  # amortized q(e) mean + per-recording shift (few-shot)
    readin_dim: int = 16
    encoder_hidden: int = 32


@dataclasses.dataclass(frozen=True)
class Networks:
    """Equinox modules created outside the program (bound with ``eqx_module`` inside)."""

    dynamics: hn.DynamicsMLP
    adapter: object | None  # LowRankHypernet | LinearAdapter | None
    embed_encoder: object | None  # guide networks (see neurodyn.guides.meta)
    latent_encoder: object | None
    weight_guide: object | None = None  # AutoNormal of the weights that have a prior


# weight-prior site -> the Equinox module whose weights it covers (see :mod:`.weights`)
WEIGHT_PRIORS = {"dynamics_weights": "dynamics", "hypernetwork_weights": "adapter"}


def default_priors(spec: Spec) -> dict:
    """Site -> univariate distribution (applied elementwise).

    * ``initial``: Normal(0, 1) on each coordinate of z_1;
    * ``embedding``: Normal(0, 1) on each coordinate of e_i (models with an embedding);
    * ``dynamics_weights``, ``hypernetwork_weights`` (the latter with a ``lowrank`` or
      ``linear`` adapter): none by default, i.e. the shared dynamics MLP's / the hypernetwork's
      weights are parameters. A distribution on the real line (``Normal(0, 1)``) on every entry
      makes them global sample sites ``"dynamics.<path>"`` / ``"adapter.<path>"``, fitted by an
      ``AutoNormal`` of their own alongside the amortized guide.
    """
    priors = {"initial": dist.Normal(0.0, 1.0), "dynamics_weights": None}
    if spec.embedding:
        priors["embedding"] = dist.Normal(0.0, 1.0)
    if spec.adapter in ("lowrank", "linear"):
        priors["hypernetwork_weights"] = None
    return priors


def resolve_priors(spec: Spec, user=None) -> dict:
    """:func:`default_priors` overridden by ``user`` ({site: distribution or spec string});
    ``PriorError`` names a bad choice."""
    priors = resolve(default_priors(spec), user)
    for site in WEIGHT_PRIORS:
        if site in priors:
            weights.check_weight_prior(priors[site], site)
    return priors


def weight_priors(priors: dict) -> dict:
    """{module name: prior or None} of the weight priors among resolved ``priors``."""
    return {module: priors.get(site) for site, module in WEIGHT_PRIORS.items() if site in priors}


class MarkovGaussian(dist.Distribution):
    """Trajectories z_{1:T} of z_1 ~ p(z_1), z_t ~ N(f(z_{t-1}, u_t), diag(q^2)).

    batch shape (M, B), event shape (T, D). ``log_prob`` scores all transitions at once given z.
    ``transition`` maps z (M, K, D), u (M, K, U) or None -> (M, K, D) (the recording's
    dynamics); ``inputs`` (M, B, T, U) or None (no inputs).
    """

    arg_constraints = {}
    support = constraints.independent(constraints.real, 2)

    def __init__(self, initial, transition, noise_scale, shape, inputs=None):
        """initial: univariate prior of z_1 entries; noise_scale: (M, 1, D); shape: (M, B, T, D)."""
        self.initial, self.transition, self.noise_scale = initial, transition, noise_scale
        self.inputs = inputs
        super().__init__(batch_shape=shape[:2], event_shape=shape[2:])

    def _inputs_into(self, start, stop):
        """Inputs of bins start..stop-1 flattened to (M, B * (stop - start), U), or None."""
        if self.inputs is None:
            return None
        u = self.inputs[:, :, start:stop]
        return u.reshape(u.shape[0], -1, u.shape[-1])

    def log_prob(self, z):
        M, B, T, D = z.shape
        init = self.initial.log_prob(z[:, :, 0]).sum(-1)
        previous = z[:, :, :-1].reshape(M, B * (T - 1), D)
        mean = self.transition(previous, self._inputs_into(1, T)).reshape(M, B, T - 1, D)
        scale = self.noise_scale[:, :, None, :]
        trans = dist.Normal(mean, scale).log_prob(z[:, :, 1:]).sum((-1, -2))
        return init + trans

    def sample(self, key, sample_shape=()):
        if sample_shape:
            raise NotImplementedError("draw one batch of trajectories at a time")
        M, B = self.batch_shape
        T, D = self.event_shape
        k0, k1 = jax.random.split(key)
        z1 = self.initial.sample(k0, (M, B, D))
        # inputs of bins 1..T-1, time first for the scan: (T - 1, M, B, U); U = 0 without inputs
        u = jnp.zeros((M, B, T, 0)) if self.inputs is None else self.inputs
        u_next = jnp.moveaxis(u[:, :, 1:], 2, 0)

        def step(z, xs):
            k, u_t = xs
            u_t = None if self.inputs is None else u_t
            mean = self.transition(z, u_t).reshape(M, B, D)
            znext = mean + self.noise_scale * jax.random.normal(k, z.shape)
            return znext, znext

        _, rest = jax.lax.scan(step, z1, (jax.random.split(k1, T - 1), u_next))
        return jnp.concatenate([z1[:, :, None], jnp.moveaxis(rest, 0, 2)], 2)


def recording_dynamics(
    spec: Spec, dynamics, adapter, e: Float[Array, "M d_e"] | None, rec: Int[Array, " M"]
) -> Callable[..., Float[Array, "M K D"]]:
    """The transition (z, u) -> f_{theta(e_i)}(z, u) of each recording in the batch.

    Args:
        e: (M, d_e) embeddings or None; rec: (M,) recording indices (for table offsets).
    Returns:
        a function of z (M, K, D) and u (M, K, U) -> (M, K, D); u may be left out (or None):
        zero inputs.
    """
    if spec.adapter == "lowrank":
        deltas = {k: v for k, v in adapter(e).items() if k in spec.adapted_layers}
    elif spec.adapter == "linear":
        deltas = adapter(e)
    elif spec.adapter == "table":
        shapes = dynamics.layer_shapes()
        offsets = {
            name: numpyro.param(
                f"dynamics_offset_{name}", jnp.zeros((spec.num_recordings, *shapes[name]))
            )[rec]
            for name in spec.adapted_layers
        }
        deltas = hn.table_deltas(offsets)
    else:
        deltas = {}

    def transition(z, u=None):
        extra = []  # concatenated to z at the dynamics' input layer
        if spec.embedding_input:
            extra.append(jnp.broadcast_to(e[:, None, :], (*z.shape[:2], e.shape[-1])))
        if spec.input_dim:
            extra.append(jnp.zeros((*z.shape[:2], spec.input_dim)) if u is None else u)
        return dynamics(z, deltas, jnp.concatenate(extra, -1) if extra else None)

    return transition


def readout_mean(
    spec: Spec, z: Float[Array, "M B T D"], C: Float[Array, "M N D"], d: Float[Array, "M N"]
) -> Float[Array, "M B T N"]:
    """Mean of y: z (M, B, T, D), C (M, N, D), d (M, N) -> (M, B, T, N)."""
    x = jnp.einsum("mbtd,mnd->mbtn", z, C) + d[:, None, None, :]
    return jax.nn.softplus(x) + 1e-4 if spec.likelihood == "poisson" else x


def meta_model(batch, *, num_trials=None, spec: Spec, nets: Networks, priors: dict):
    """The generative program (see the module docstring).

    Args:
        batch: ``mask`` (M, B, T, N) bool, ``trial_mask`` (M, B) bool, ``rec`` (M,) int
            recording index, ``scale`` (M,) full-data factor per recording, ``u`` (M, B, T, U)
            float inputs when ``spec.input_dim`` = U > 0, and ``y``
            (M, B, T, N) float, or ``y`` None / absent: y is then drawn (simulation, e.g. by
            ``numpyro.infer.Predictive``).
        num_trials: unused (the per-recording factors are in ``batch["scale"]``); accepted
            because the SVI engine passes it to every model.
        priors: the resolved priors, site -> distribution (:func:`resolve_priors`).
    """
    M, B, T, N = batch["mask"].shape
    D, rec = spec.latent_dim, batch["rec"]
    u = batch.get("u") if spec.input_dim else None
    if spec.input_dim and (u is None or u.shape != (M, B, T, spec.input_dim)):
        got = "none" if u is None else f"shape {tuple(u.shape)}"
        raise ValueError(f"meta_model: batch['u'] must be {(M, B, T, spec.input_dim)}, got {got}")
    dynamics = weights.bind_network("dynamics", nets.dynamics, priors["dynamics_weights"])
    adapter = None
    if nets.adapter is not None:
        adapter = weights.bind_network("adapter", nets.adapter, priors["hypernetwork_weights"])
    C = _per_recording("readout_weight", (M, N, D), spec, rec, _random_init(0.3))
    d = _per_recording("readout_bias", (M, N), spec, rec, jnp.zeros)
    q = _process_scale(spec, rec)  # (M, 1, D)
    if spec.likelihood == "gaussian":
        r = _per_recording("obs_scale", (M, N), spec, rec, jnp.ones, constraints.positive)

    with numpyro.plate("recordings", M, dim=-2):
        e = None
        if spec.embedding:
            e_prior = priors["embedding"].expand((M, 1, spec.embedding_dim)).to_event(1)
            e = numpyro.sample("embedding", e_prior)[:, 0]  # (M, d_e)
        f = recording_dynamics(spec, dynamics, adapter, e, rec)

        with (
            numpyro.plate("trials", B, dim=-1),
            numpyro.handlers.scale(scale=batch["scale"][:, None]),
            numpyro.handlers.mask(mask=batch["trial_mask"]),
        ):
            z = numpyro.sample("z", MarkovGaussian(priors["initial"], f, q, (M, B, T, D), u))
            mean = numpyro.deterministic("y_mean", readout_mean(spec, z, C, d))
            if spec.likelihood == "gaussian":
                obs = dist.Normal(mean, r[:, None, None, :])
            else:
                obs = dist.Poisson(mean)
            numpyro.sample("y", obs.mask(batch["mask"]).to_event(2), obs=batch.get("y"))


def _process_scale(spec: Spec, rec):
    """Process noise q: (M, 1, D), shared or one per recording."""
    init = jnp.full((spec.latent_dim,), 0.1)
    if spec.process_noise == "per-recording":
        name, shape = "process_scale_per_recording", (spec.num_recordings, spec.latent_dim)
        q = numpyro.param(name, jnp.broadcast_to(init, shape), constraint=constraints.positive)
        return q[rec][:, None, :]
    q = numpyro.param("process_scale", init, constraint=constraints.positive)
    return jnp.broadcast_to(q, (rec.shape[0], 1, spec.latent_dim))


def _random_init(scale):
    return lambda shape, key: scale * jax.random.normal(key, shape)


def _per_recording(name, shape, spec, rec, init, constraint=constraints.real):
    """A parameter (num_recordings, *shape[1:]) of all recordings, picked at ``rec``."""
    full = (spec.num_recordings, *shape[1:])
    if init is jnp.zeros or init is jnp.ones:
        value = init(full)
    else:
        value = lambda key: init(full, key)  # noqa: E731  (numpyro calls it with a PRNG key)
    return numpyro.param(name, value, constraint=constraint)[rec]
