"""Building blocks of the meta-dynamical model: the shared dynamics MLP and the adapters that
change its weights per recording.

Every per-recording change of a layer's weight is written as a factor pair (U, V) with

    W_l(e) = W_l + U_l(e) V_l(e)^T,                       U: (out, r), V: (in, r)

so one application rule, ``W x + U (V^T x) + b``, serves all configurations:

- low-rank hypernetwork (``meta-dssm``, Vermani et al. 2025): an MLP maps e to (U, V), rank r;
- linear adapter (``linear-adapter``): U = reshape(A_l e) (out, in), V = identity (``None``);
- lookup table (``single-session``): U = the recording's own offset (out, in), V = identity.

Layers are named ``input`` (D [+ d_e] [+ U] -> H), ``hidden`` (H -> H) and ``output`` (H -> D).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

LAYERS = ("input", "hidden", "output")


class DynamicsMLP(eqx.Module):
    """Shared latent dynamics f(z) = z + g(z) (residual) or g(z) (direct), g a tanh MLP.

    Attributes:
        weights: per layer, (out, in) arrays; biases: per layer, (out,) arrays.
    """

    weights: tuple
    biases: tuple
    residual: bool = eqx.field(static=True)
    step_size: float = eqx.field(static=True)

    def __init__(self, latent_dim, hidden, extra_input=0, residual=True, step_size=0.1, *, key):
        sizes = [(hidden, latent_dim + extra_input), (hidden, hidden), (latent_dim, hidden)]
        keys = jax.random.split(key, len(sizes))
        self.weights = tuple(
            jax.random.normal(k, s) / jnp.sqrt(s[1]) for k, s in zip(keys, sizes, strict=True)
        )
        self.biases = tuple(jnp.zeros(s[0]) for s in sizes)
        self.residual = residual
        self.step_size = step_size

    def layer_shapes(self) -> dict[str, tuple[int, int]]:
        """layer name -> (out, in)."""
        return {name: w.shape for name, w in zip(LAYERS, self.weights, strict=True)}

    def __call__(self, z, deltas=None, extra=None):
        """One transition.

        Args:
            z: (M, K, D) latents, M recordings with K points each.
            deltas: {layer: (U (M, out, r), V (M, in, r) or None = identity)}; missing = no change.
            extra: optional (M, K, d_e + U) concatenated to the input: the embedding
                (``embedding-input``) and/or known inputs.
        Returns:
            (M, K, D) the mean of the next latent.
        """
        deltas = deltas or {}
        x = z if extra is None else jnp.concatenate([z, extra], -1)
        for i, name in enumerate(LAYERS):
            x = apply_layer(x, self.weights[i], self.biases[i], deltas.get(name))
            if name != "output":
                x = jnp.tanh(x)
        return z + self.step_size * x if self.residual else x


def apply_layer(x, weight, bias, delta=None):
    """(W + U V^T) x + b without forming U V^T.

    Args:
        x: (M, K, in); weight: (out, in); bias: (out,); delta: None or (U (M, out, r),
            V (M, in, r) or None meaning the identity, in which case U is (M, out, in)).
    Returns:
        (M, K, out).
    """
    out = x @ weight.T + bias
    if delta is None:
        return out
    U, V = delta
    proj = x if V is None else jnp.einsum("mki,mir->mkr", x, V)
    return out + jnp.einsum("mkr,mor->mko", proj, U)


def explicit_weight(weight, delta):
    """W + U V^T as explicit (M, out, in) matrices (for tests and figures)."""
    U, V = delta
    return weight + (U if V is None else jnp.einsum("mor,mir->moi", U, V))


class LowRankHypernet(eqx.Module):
    """e -> {layer: (U(e), V(e))}: an MLP whose output is cut into the rank-r factors."""

    mlp: eqx.nn.MLP
    shapes: dict = eqx.field(static=True)
    rank: int = eqx.field(static=True)

    def __init__(self, embedding_dim, layer_shapes, rank, width=32, *, key):
        self.shapes = dict(layer_shapes)
        self.rank = rank
        size = sum((o + i) * rank for o, i in self.shapes.values())
        k_mlp, k_v = jax.random.split(key)
        mlp = eqx.nn.MLP(embedding_dim, size, width, 1, activation=jax.nn.tanh, key=k_mlp)
        # LoRA-style start: V(e) ~ a fixed random V_0, U(e) small with U(0) = 0, so that
        # U(e) V(e)^T starts small and odd in e. (With both factors odd in e the product is
        # even, and e and -e would give the same dynamics: two branches of embeddings.)
        is_v = jnp.concatenate(
            [
                jnp.repeat(jnp.array([0.0, 1.0]), jnp.array([o * rank, i * rank]))
                for o, i in self.shapes.values()
            ]
        )
        last = mlp.layers[-1]
        bias = is_v * jax.random.normal(k_v, (size,))
        self.mlp = eqx.tree_at(
            lambda m: (m.layers[-1].weight, m.layers[-1].bias), mlp, (0.3 * last.weight, bias)
        )

    def __call__(self, e):
        """e: (M, d_e) -> {layer: (U (M, out, r), V (M, in, r))}."""
        flat = jax.vmap(self.mlp)(e)
        out, start = {}, 0
        for name, (o, i) in self.shapes.items():
            U = flat[:, start : start + o * self.rank].reshape(-1, o, self.rank)
            start += o * self.rank
            V = flat[:, start : start + i * self.rank].reshape(-1, i, self.rank)
            start += i * self.rank
            out[name] = (U / jnp.sqrt(i), V)
        return out


class LinearAdapter(eqx.Module):
    """e -> {layer: (A_l e reshaped (out, in), identity)}: every weight linear in e."""

    maps: tuple
    shapes: dict = eqx.field(static=True)

    def __init__(self, embedding_dim, layer_shapes, *, key):
        self.shapes = dict(layer_shapes)
        keys = jax.random.split(key, len(self.shapes))
        self.maps = tuple(
            0.1 * jax.random.normal(k, (o * i, embedding_dim)) / jnp.sqrt(i * embedding_dim)
            for k, (o, i) in zip(keys, self.shapes.values(), strict=True)
        )

    def __call__(self, e):
        """e: (M, d_e) -> {layer: (U (M, out, in), None)}."""
        return {
            name: ((e @ A.T).reshape(-1, o, i), None)
            for A, (name, (o, i)) in zip(self.maps, self.shapes.items(), strict=True)
        }


def table_deltas(offsets: dict) -> dict:
    """Per-recording free offsets {layer: (M, out, in)} in the factor form (U, identity)."""
    return {name: (U, None) for name, U in offsets.items()}
