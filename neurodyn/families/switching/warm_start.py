"""Warm start of a switching fit: PCA, k-means and an autoregressive HMM (masks respected).

PCA of the standardized observations gives D latent coordinates z (unit variance); k-means
(K clusters, k-means++ with restarts) on z gives labels, refined by an autoregressive HMM fitted
by EM with the core. The readout starts at the PCA loadings, and each state's dynamics at a ridge
regression of z_{t+1} on z_t over the bins of its cluster (linear: A_k, b_k; rnn: W_k, b_k on
the arctanh of the step). Only observed bins count (padded, masked bins of ragged trials are left
out of every step), and the labels of unobserved bins are -1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ...inference import hmm
from ...models.switching import Spec


def kmeans(x, k: int, seed: int, restarts: int = 5, iters: int = 50) -> np.ndarray:
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


def ridge(x, y, alpha=1e-2):
    """W, b minimizing |y - x W - b|^2 + alpha |W|^2. x: [M, D], y: [M, D']."""
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    W = np.linalg.solve(xc.T @ xc + alpha * len(x) * np.eye(x.shape[1]), xc.T @ (y - my))
    return W, my - mx @ W


def observed_bins(mask) -> np.ndarray:
    """Bins with any observed neuron: bool [R, T] from a mask [R, T, N]."""
    return np.asarray(mask, bool).any(-1)


def within(bins) -> np.ndarray:
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
    labels[bins] = kmeans(latent[bins][:, : min(D_eff, 3)], spec.num_states, seed)
    labels = arhmm(latent, labels, spec.num_states, bins)
    init = {"center": center, "scale": scale}
    if spec.likelihood == "gaussian":
        init["global_init"] = {"obs_scale": np.full(N, 0.5, np.float32) * scale}
    if not spec.has_latent:
        return labels, init
    C = np.zeros((D, N))
    C[:D_eff] = (loadings * sd[:, None]) * scale[None]  # y ~ center + latent @ C
    # Poisson: the drive ~ log1p(y) (rough: softplus ~ identity when large)
    init.update(C=C, d=center)
    init.update(dynamics_init(spec, latent, labels, bins))
    return labels, init


def arhmm(z, labels, K: int, bins=None, iters: int = 30, stickiness: float = 10.0):
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
    inside = within(bins)
    flat_tail = jnp.asarray(~inside[:, 1:], bool)[..., None, None]  # [R, T-1, 1, 1]
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
        steps = inside[:, 1:, None, None]  # only steps inside the observed span count
        counts = (np.asarray(post.pairwise) * steps).sum((0, 1)) + stickiness * np.eye(K) + 1.0
        log_A = np.log(counts / counts.sum(1, keepdims=True))
    path = jax.vmap(hmm.viterbi, (None, 0, 0))(
        jnp.full(K, -np.log(K)), chain(log_A), jnp.asarray(lik, jnp.float32)
    )
    return np.where(bins, np.asarray(path), -1)


def dynamics_init(spec: Spec, z, labels, bins=None) -> dict:
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
        Wk, bk = ridge(x[on], target)
        W[k], b[k] = Wk.T, bk
        pred = x[on] @ Wk + bk
        pred = pred if spec.dynamics == "linear" else x[on] + np.tanh(pred)
        resid.append(np.std(nxt[on] - pred, 0))
    q = np.clip(np.mean(resid, 0), 0.02, 0.5) if resid else np.full(D, 0.1)
    return {"W": W, "b": b, "global_init_q": np.broadcast_to(q, (K, D)).astype(np.float32)}


def initial_values(spec: Spec, session, seed: int):
    """:func:`warm_start`'s labels and its initial values as :func:`~.nets.nets` and the MAP
    guide take them (``global_init``: {site: float32 array})."""
    labels, init = warm_start(spec, session, seed)
    global_init = dict(init.pop("global_init", None) or {})
    if "global_init_q" in init:
        global_init["process_scale"] = init.pop("global_init_q")
    init["global_init"] = {k: jnp.asarray(v, jnp.float32) for k, v in global_init.items()}
    return labels, init
