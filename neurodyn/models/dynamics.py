"""Building blocks of the switching family: per-state dynamics and readouts (Equinox modules).

Every per-state parameter is stacked on a leading ``K`` axis and the ``K`` maps are evaluated
together (one mechanism, ``vmap`` over states), never as ``K`` copies of a module.

Dynamics forms, ``f_k(h_{t-1}, u_t)``:

* ``"rnn"``: residual tanh RNN cell, ``h_{t-1} + tanh(W_k h_{t-1} + U_k u_t + b_k)``. The SRNN
  paper writes each state's dynamics as a vanilla tanh RNN cell; we use the residual form so
  that ``W = 0, b = 0`` is the identity map (a slow, stable start for SVI) and latents are not
  confined to ``(-1, 1)``, which lets one linear readout serve all states.
* ``"linear"``: ``A_k h_{t-1} + B_k u_t + b_k`` (SLDS / rSLDS / LDS).
* ``"mlp"``: residual MLP, ``h_{t-1} + MLP_k([h_{t-1}, u_t])``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

DYNAMICS = ("rnn", "linear", "mlp")
READOUTS = ("linear", "mlp")


class StateDynamics(eqx.Module):
    """K per-state maps ``f_k: (h [D], u [U]) -> [D]`` stacked on a leading K axis.

    Attributes:
        W: [K, D, D] recurrent (``rnn``) or transition (``linear``) matrices.
        U: [K, D, U] input weights (U may be 0).
        b: [K, D] biases.
        mlp: K stacked MLPs (``mlp`` form only), else None.
    """

    form: str = eqx.field(static=True)
    W: jax.Array
    U: jax.Array
    b: jax.Array
    mlp: eqx.nn.MLP | None

    def __init__(self, form, num_states, latent_dim, input_dim=0, *, key, width=32, W=None, b=None):
        if form not in DYNAMICS:
            raise ValueError(f"unknown dynamics {form!r}; choose one of {', '.join(DYNAMICS)}")
        K, D = num_states, latent_dim
        kw, ku, km = jax.random.split(key, 3)
        self.form = form
        # linear: start at the identity (a random walk); rnn: start near the identity map.
        noise = 0.05 * jax.random.normal(kw, (K, D, D))
        default_W = noise + (jnp.eye(D) if form == "linear" else 0.0)
        self.W = default_W if W is None else jnp.asarray(W, jnp.float32)
        self.U = 0.05 * jax.random.normal(ku, (K, D, input_dim))
        self.b = jnp.zeros((K, D)) if b is None else jnp.asarray(b, jnp.float32)
        self.mlp = None
        if form == "mlp":

            def make(k):
                return eqx.nn.MLP(D + input_dim, D, width, 1, activation=jnp.tanh, key=k)

            self.mlp = eqx.filter_vmap(make)(jax.random.split(km, K))

    def __call__(self, h, u=None):
        """All states' next means. h: [D], u: [U] or None -> [K, D]."""
        u = jnp.zeros(self.U.shape[-1]) if u is None else u
        drive = jnp.einsum("kij,j->ki", self.W, h) + jnp.einsum("kij,j->ki", self.U, u) + self.b
        if self.form == "linear":
            return drive
        if self.form == "rnn":
            return h + jnp.tanh(drive)
        x = jnp.concatenate([h, u])
        return h + eqx.filter_vmap(lambda m: m(x))(self.mlp) + self.b


class Readout(eqx.Module):
    """Observation drive ``C^T h + d`` (linear) or ``MLP(h)`` (mlp): [D] -> [N]; the link
    (identity, softplus, exp) is applied by the model."""

    C: jax.Array
    d: jax.Array
    mlp: eqx.nn.MLP | None

    def __init__(self, form, latent_dim, num_neurons, *, key, C=None, d=None, width=64):
        if form not in READOUTS:
            raise ValueError(f"unknown readout {form!r}; choose one of {', '.join(READOUTS)}")
        kc, km = jax.random.split(key)
        default_C = jax.random.normal(kc, (latent_dim, num_neurons)) / jnp.sqrt(latent_dim)
        self.C = default_C if C is None else jnp.asarray(C, jnp.float32)
        self.d = jnp.zeros(num_neurons) if d is None else jnp.asarray(d, jnp.float32)
        self.mlp = None
        if form == "mlp":
            self.mlp = eqx.nn.MLP(latent_dim, num_neurons, width, 1, activation=jnp.tanh, key=km)

    def __call__(self, h):
        """h: [D] -> drive [N]."""
        linear = h @ self.C + self.d
        return linear if self.mlp is None else linear + self.mlp(h)
