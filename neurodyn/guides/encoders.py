"""Encoders for amortized trajectory guides (Equinox modules, bound with ``eqx_module``).

* :class:`BiGRU`: a bidirectional GRU (``eqx.nn.GRUCell`` scanned with ``lax.scan``) over the
  masked, standardized observations and the mask itself, giving per-bin features.
* :class:`TrajectoryEncoder`: the BiGRU plus the heads every guide needs: an autoregressive
  combiner (DKF) ``[h_{t-1}, features_t] -> (loc_t, scale_t)`` and a per-bin head (mean field,
  delta) ``features_t -> (loc_t, scale_t)``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..inference import long_scan


class BiGRU(eqx.Module):
    """Bidirectional GRU: x [T, F] -> features [T, 2H]."""

    forward: eqx.nn.GRUCell
    backward: eqx.nn.GRUCell

    def __init__(self, input_size: int, hidden_size: int, *, key):
        kf, kb = jax.random.split(key)
        self.forward = eqx.nn.GRUCell(input_size, hidden_size, key=kf)
        self.backward = eqx.nn.GRUCell(input_size, hidden_size, key=kb)

    def __call__(self, x):
        def run(cell, x):
            def step(state, x_t):
                state = cell(x_t, state)
                return state, state

            return long_scan.scan(step, jnp.zeros(cell.hidden_size), x)[1]

        return jnp.concatenate([run(self.forward, x), run(self.backward, x[::-1])[::-1]], -1)


class TrajectoryEncoder(eqx.Module):
    """Features of one trial's observations and the guides' Gaussian heads.

    Attributes:
        center, scale: [N] standardization of y (data statistics; not trained).
        rnn: BiGRU over [standardized y * mask, mask] ([T, 2N]).
        combiner: MLP [D + 2H] -> [2D] (DKF: loc and raw scale of h_t given h_{t-1}).
        head: Linear [2H] -> [2D] (mean field / delta: loc and raw scale of h_t).
    """

    center: jax.Array
    scale: jax.Array
    rnn: BiGRU
    combiner: eqx.nn.MLP
    head: eqx.nn.Linear

    def __init__(self, num_neurons, latent_dim, *, key, hidden_size=32, center=None, scale=None):
        kr, kc, kh = jax.random.split(key, 3)
        N, D, H = num_neurons, latent_dim, hidden_size
        self.center = jnp.zeros(N) if center is None else jnp.asarray(center, jnp.float32)
        self.scale = jnp.ones(N) if scale is None else jnp.asarray(scale, jnp.float32)
        self.rnn = BiGRU(2 * N, H, key=kr)
        self.combiner = eqx.nn.MLP(D + 2 * H, 2 * D, H, 1, activation=jnp.tanh, key=kc)
        self.head = eqx.nn.Linear(2 * H, 2 * D, key=kh)

    def features(self, y, mask):
        """y: [T, N], mask: bool [T, N] -> [T, 2H]; masked entries are zeroed and flagged."""
        center, scale = jax.lax.stop_gradient((self.center, self.scale))
        z = jnp.where(mask, (y - center) / scale, 0.0)
        return self.rnn(jnp.concatenate([z, mask.astype(z.dtype)], -1))

    def combine(self, h_prev, features_t):
        """DKF step. h_prev: [D], features_t: [2H] -> (loc [D], scale [D])."""
        return _gaussian(self.combiner(jnp.concatenate([h_prev, features_t])))

    def per_bin(self, features_t):
        """Mean-field head. features_t: [2H] -> (loc [D], scale [D])."""
        return _gaussian(self.head(features_t))


def _gaussian(out):
    loc, raw = jnp.split(out, 2)
    # offset so that a fresh encoder starts with a small posterior scale (~0.05)
    return loc, jax.nn.softplus(raw - 3.0) + 1e-4
