"""Co-smoothing (Neural Latents Benchmark): how well held-out neurons' spikes are predicted from
rates inferred with the other neurons, in bits per spike.

``co_bps`` follows nlb_tools' ``bits_per_spike``: masked (or NaN) bins are left out of both
log-likelihoods and of the spike count, each neuron's null rate is its mean count over its
observed bins, and zero rates (predicted or null) are replaced by 1e-9 before the logarithm.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.special import gammaln

ZERO_RATE = 1e-9  # nlb_tools' replacement for a zero rate


def _poisson_loglik(rates: np.ndarray, counts: np.ndarray) -> float:
    """Sum of log Poisson(counts | rates) over the given (flat) entries."""
    rates = np.where(rates == 0, ZERO_RATE, rates)
    return float(np.sum(counts * np.log(rates) - rates - gammaln(counts + 1.0)))


def co_bps(spikes, rates, mask=None) -> float:
    """Co-smoothing bits per spike of predicted ``rates`` for held-out ``spikes``.

    Args:
        spikes: (trials, T, N_heldout) non-negative counts; NaN entries count as unobserved.
        rates: (trials, T, N_heldout) predicted Poisson means per bin (>= 0).
        mask: optional bool (trials, T); False bins (padding) are left out.

    Returns:
        (log p(spikes | rates) - log p(spikes | per-neuron mean rate)) / total spikes / ln 2,
        summed over observed bins and held-out neurons. NaN when no spike is observed.

    Raises:
        ValueError (one line) on mismatched shapes, negative or non-finite observed rates.
    """
    spikes = np.asarray(spikes, dtype=np.float64)
    rates = np.asarray(rates, dtype=np.float64)
    if spikes.ndim != 3:
        raise ValueError(f"spikes must be (trials, T, N_heldout), got shape {spikes.shape}")
    if rates.shape != spikes.shape:
        raise ValueError(f"rates shape {rates.shape} differs from spikes shape {spikes.shape}")
    observed = ~np.isnan(spikes)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != spikes.shape[:2]:
            raise ValueError(
                f"mask shape {mask.shape} differs from spikes' (trials, T) {spikes.shape[:2]}"
            )
        observed &= mask.astype(bool)[..., None]
    r, n = rates[observed], spikes[observed]
    if not np.isfinite(r).all():
        raise ValueError("rates have NaN/Inf entries in observed bins")
    if (r < 0).any():
        raise ValueError("rates have negative entries; give Poisson means (>= 0)")
    if (n < 0).any():
        raise ValueError("spikes have negative entries; give counts (>= 0)")
    total = n.sum()
    if total == 0:
        return float("nan")
    counts = np.where(observed, spikes, 0.0).sum(axis=(0, 1))
    bins = observed.sum(axis=(0, 1))
    null_rate = np.divide(counts, bins, out=np.zeros_like(counts), where=bins > 0)
    null = np.broadcast_to(null_rate, spikes.shape)[observed]
    return (_poisson_loglik(r, n) - _poisson_loglik(null, n)) / total / np.log(2)


def choose_heldout_neurons(num_neurons: int, fraction: float, seed: int = 0) -> np.ndarray:
    """round(``fraction`` * ``num_neurons``) distinct neuron indices, sorted, chosen at random.

    At least 1 and at most ``num_neurons`` - 1 (some neurons must stay held in); a
    ``ValueError`` otherwise.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"held-out fraction must be between 0 and 1, got {fraction}")
    count = int(round(fraction * num_neurons))
    if not 1 <= count <= num_neurons - 1:
        raise ValueError(
            f"holding out {fraction:g} of {num_neurons} neurons gives {count}; "
            f"need between 1 and {num_neurons - 1}"
        )
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_neurons, size=count, replace=False)).astype(np.int64)


def read_neuron_indices(path, num_neurons: int) -> np.ndarray:
    """Held-out neuron indices from a file: ``.npy`` (integer array), ``.json`` (a list of
    integers) or text (integers separated by spaces, commas or newlines).

    Returns a sorted int array; a one-line ``ValueError`` naming the file when the content is
    not integers, has duplicates, is out of range 0..``num_neurons`` - 1, is empty or holds
    every neuron.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        if path.suffix == ".npy":
            values = np.load(path, allow_pickle=False)
        elif path.suffix == ".json":
            values = json.loads(path.read_text())
        else:
            text = path.read_text().replace(",", " ").split()
            values = [float(v) for v in text]
        values = np.asarray(values)
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a list of neuron indices ({e.__class__.__name__})") from None
    return check_neuron_indices(values, num_neurons, str(path))


def smoothing_baseline(
    train_heldin, train_heldout, test_heldin, *, sigma: float = 2.0, alpha: float = 1.0
) -> np.ndarray:
    """The Neural Latents Benchmark's spike-smoothing baseline: held-in spikes smoothed in time
    with a Gaussian kernel (``sigma`` bins), then a ridge regression (``alpha``) from them (and
    an intercept) to the held-out spikes, fitted on training trials; predicted rates of the
    test trials, clipped at :data:`ZERO_RATE`.

    Args:
        train_heldin: (trials, T, N_in), train_heldout: (trials, T, N_out) counts;
        test_heldin: (trials', T', N_in). Padded bins should be zero.

    Returns:
        (trials', T', N_out) rates.
    """

    def features(x):
        smooth = gaussian_filter1d(np.asarray(x, float), sigma, axis=1, mode="constant")
        flat = smooth.reshape(-1, smooth.shape[-1])
        return np.concatenate([flat, np.ones((len(flat), 1))], axis=1)

    X, Y = (
        features(train_heldin),
        np.asarray(train_heldout, float).reshape(-1, train_heldout.shape[-1]),
    )
    ridge = alpha * np.eye(X.shape[1])
    ridge[-1, -1] = 0.0  # no penalty on the intercept
    W = np.linalg.solve(X.T @ X + ridge, X.T @ Y)
    rates = features(test_heldin) @ W
    shape = (*np.shape(test_heldin)[:2], Y.shape[-1])
    return np.maximum(rates, ZERO_RATE).reshape(shape)


def check_neuron_indices(values, num_neurons: int, where: str = "neuron indices") -> np.ndarray:
    """Held-out neuron indices checked: a non-empty flat list of distinct integers in
    0..``num_neurons`` - 1 that leaves some neuron held in. Returns them sorted (int array);
    a one-line ``ValueError`` starting with ``where`` otherwise."""
    values = np.asarray(values)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{where}: expected a non-empty flat list of neuron indices")
    if not (np.issubdtype(values.dtype, np.number) and values.dtype != bool):
        raise ValueError(f"{where}: neuron indices must be integers, got {values.dtype}")
    if not (np.isfinite(values).all() and (values == np.round(values)).all()):
        raise ValueError(f"{where}: neuron indices must be integers")
    values = values.astype(np.int64)
    if values.min() < 0 or values.max() >= num_neurons:
        raise ValueError(
            f"{where}: neuron indices must lie in 0..{num_neurons - 1}, "
            f"got {values.min()}..{values.max()}"
        )
    if len(np.unique(values)) != len(values):
        raise ValueError(f"{where}: neuron indices repeat")
    if len(values) >= num_neurons:
        raise ValueError(f"{where}: holds out all {num_neurons} neurons; keep some held in")
    return np.sort(values)
