"""Figures of a fitted switching run: state rasters, reconstructions, per-state flow fields."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from ...inference.metrics import match_labels
from .config import fitted_session
from .predict import Fitted, _jit, inputs_of, reconstruct, viterbi_states
from .program import for_prediction

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def report(config, params, sessions, out_dir, *, num_samples=16, seed=0) -> list[Path]:
    """PNGs: ``states.png`` (Viterbi vs reference), ``reconstruction.png`` (a few neurons),
    ``flow_fields.png`` (per-state flows in the first two latent dimensions).

    Only observed data are drawn: bins without any observed neuron are blank in the state
    rasters and left out of the flow fields' trajectories, and masked entries are gaps in the
    reconstruction's data and model curves."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    session = fitted_session(config, sessions)
    fitted = Fitted(*for_prediction(config, params))
    y, mask = jnp.asarray(session.y), jnp.asarray(session.mask)
    y_hat, h_mean = _jit(reconstruct, fitted, num_samples)(y, mask, jax.random.PRNGKey(seed))
    u = inputs_of(session)
    path = np.asarray(jax.jit(functools.partial(viterbi_states, fitted))(h_mean, y, mask, u))
    K = fitted.spec.num_states
    bins = session.bin_mask  # [R, T]
    if session.states is not None:
        path = path.copy()
        path[bins] = match_labels(path[bins], session.states[bins], K)
    files = []

    trials = min(4, session.num_trials)
    rows = 2 if session.states is not None else 1
    fig, axes = plt.subplots(trials, 1, figsize=(8, 0.6 * rows * trials + 0.8), squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        raster = [path[i]] if rows == 1 else [session.states[i], path[i]]
        raster = np.where(bins[i], np.array(raster, float), np.nan)  # padding drawn blank
        ax.imshow(raster, aspect="auto", cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
        ax.set_yticks(range(rows), ["model"] if rows == 1 else ["truth", "model"])
        ax.set_ylabel(f"trial {i}", rotation=0, ha="right", va="center")
    axes[-1, 0].set_xlabel("bin")
    fig.suptitle("Viterbi states" + (" vs reference" if rows == 2 else ""))
    files.append(_save(fig, out_dir / "states.png"))

    neurons = min(4, session.num_neurons)
    fig, axes = plt.subplots(neurons, 1, figsize=(8, 1.5 * neurons), sharex=True, squeeze=False)
    seen = np.asarray(session.mask[0], bool)  # [T, N]
    for n, ax in enumerate(axes[:, 0]):
        ax.plot(np.where(seen[:, n], session.y[0, :, n], np.nan), color="0.6", lw=1, label="data")
        model_n = np.where(seen[:, n], np.asarray(y_hat)[0, :, n], np.nan)
        ax.plot(model_n, color="C3", lw=1.2, label="model")
        ax.set_ylabel(f"neuron {n}")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("bin")
    fig.suptitle("reconstruction (trial 0)")
    files.append(_save(fig, out_dir / "reconstruction.png"))

    if h_mean is not None and fitted.spec.latent_dim >= 2:
        files.append(_flow_fields(fitted, np.asarray(h_mean), path, bins, out_dir))
    return files


def _flow_fields(fitted: Fitted, h, path, bins, out_dir: Path) -> Path:
    """Arrows f_k(h) - h on a grid over dims 0, 1 (others at their mean), per state, over the
    observed bins' trajectories. h: [R, T, D]; path: int [R, T]; bins: bool [R, T]."""
    K = fitted.spec.num_states
    h = np.where(bins[..., None], h, np.nan)  # padding breaks the trajectories' lines
    flat = h.reshape(-1, h.shape[-1])
    observed = bins.reshape(-1)
    lo, hi = flat[observed, :2].min(0), flat[observed, :2].max(0)
    pad = 0.1 * (hi - lo)
    gx, gy = np.meshgrid(*(np.linspace(lo[i] - pad[i], hi[i] + pad[i], 15) for i in range(2)))
    grid = np.tile(flat[observed].mean(0), (gx.size, 1))
    grid[:, 0], grid[:, 1] = gx.ravel(), gy.ravel()
    steps = np.asarray(jax.vmap(fitted.g.dynamics)(jnp.asarray(grid, jnp.float32))) - grid[:, None]
    fig, axes = plt.subplots(1, K, figsize=(4 * K, 4), squeeze=False)
    for k, ax in enumerate(axes[0]):
        ax.quiver(
            gx,
            gy,
            steps[:, k, 0].reshape(gx.shape),
            steps[:, k, 1].reshape(gx.shape),
            color=f"C{k}",
            alpha=0.8,
        )
        on = (path.ravel() == k) & observed
        ax.plot(flat[:, 0], flat[:, 1], color="0.85", lw=0.5, zorder=0)
        ax.scatter(flat[on, 0], flat[on, 1], s=2, color=f"C{k}", alpha=0.4)
        ax.set_title(f"state {k}")
        ax.set_xlabel("h[0]")
    axes[0, 0].set_ylabel("h[1]")
    fig.suptitle("per-state flow fields (posterior-mean trajectories, Viterbi colours)")
    return _save(fig, out_dir / "flow_fields.png")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
