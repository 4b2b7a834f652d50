"""Figures of a fitted meta-family run: embeddings, vector fields at several embeddings, and
reconstructions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .batches import match_recordings, stack_sessions
from .predict import embeddings, posterior_means, vector_field


def report(config, params, sessions, out_dir) -> list[Path]:
    """PNG figures: embeddings, vector fields at several e, reconstructions."""
    plt = _pyplot()
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
        if config.get("input_dim", 0):  # the flow drawn is that of no input
            fig.suptitle("f(z, u) - z at zero input u", fontsize=9)
        figures.append(_save(fig, out_dir / "vector_fields.png"))
    s = sessions[0]
    batch = stack_sessions(config, [s])
    y_mean, _, _ = posterior_means(config, params, batch, num_samples=4)
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
    _pyplot().close(fig)
    return path


def _pyplot():
    """matplotlib.pyplot on the non-interactive backend (imported when a figure is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
