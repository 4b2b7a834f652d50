"""Case study: switching models on the Lorenz attractor (the SRNN paper's data and a simulation).

1. ``srnn_lorenz.npy`` (SRNN paper, 16 trials x 200 bins x 3 dims, no labels): lobe labels are
   derived from the trajectory as the nearer of two k-means centres (k = 2, on the 3-D points,
   best of 10 restarts). The two centres sit on the two lobes (the Lorenz fixed points
   (+-sqrt(b(r-1)), +-sqrt(b(r-1)), r-1) are each lobe's centre), so this is the sign of the
   projection on the axis joining the lobes, relative to the midpoint. Train on trials 0-11,
   test on 12-15: ``srnn`` (K=2, D=3, the acceptance floors: state_accuracy >= 0.95 and
   recon_r2 >= 0.99 on the test trials), ``slds`` and ``rslds`` for comparison.
2. ``simulate_lorenz`` with 30 Poisson neurons: ``srnn`` K=2, D=3, same split.

Run: ``python case_studies/lorenz_switching.py --data ../shared/data --out DIR [--quick]``;
writes ``metrics.json`` and figures (one folder per fit) into DIR and prints wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from neurodyn.data import make_session, split_trials
from neurodyn.data.simulators.switching import simulate_lorenz
from neurodyn.families import switching


def lobe_labels(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Nearest of two k-means centres of the points x (trials, T, 3): int (trials, T)."""

    return switching.kmeans(x.reshape(-1, x.shape[-1]), 2, seed, restarts=10).reshape(x.shape[:2])


def fit_and_score(model, train, test, out: Path, options: dict) -> dict:
    start = time.perf_counter()
    config = switching.make_config(model, [train], options=options)
    params, result = switching.fit(config, [train], out_dir=out, progress=False)
    metrics = switching.evaluate(config, params, [test], horizons=(1, 5, 10), num_samples=16)
    switching.report(config, params, [test], out)
    metrics["fit_steps"] = int(result.steps_run)
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    print(
        f"{out.name:>22}: state_accuracy {metrics.get('state_accuracy', float('nan')):.3f}  "
        f"recon_r2 {metrics['recon_r2']:.4f}  steps {result.steps_run}  "
        f"{metrics['seconds']:.0f} s",
        flush=True,
    )
    return metrics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", default="lorenz_switching_out")
    parser.add_argument("--quick", action="store_true", help="srnn fits only, fewer steps")
    args = parser.parse_args(argv)
    path = Path(args.data) / "srnn_lorenz.npy"
    if not path.exists():
        print(f"lorenz_switching: data file {path} not found (pass --data)", file=sys.stderr)
        return 2
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = 1000 if args.quick else 2000

    x = np.load(path).astype(np.float32)
    paper = make_session(x, states=lobe_labels(x), name="srnn_lorenz")
    train, test = split_trials(paper, 12)
    results = {"srnn_lorenz": {}, "simulated_poisson": {}}
    models = ("srnn",) if args.quick else ("srnn", "slds", "rslds")
    for model in models:
        options = dict(states=2, latent_dim=3, steps=steps, likelihood="gaussian")
        results["srnn_lorenz"][model] = fit_and_score(
            model, train, test, out / f"paper_{model}", options
        )

    sim = simulate_lorenz(seed=1, likelihood="poisson", num_neurons=30)
    train, test = split_trials(sim, 12)
    options = dict(states=2, latent_dim=3, steps=steps, likelihood="poisson")
    results["simulated_poisson"]["srnn"] = fit_and_score(
        "srnn", train, test, out / "poisson_srnn", options
    )

    srnn = results["srnn_lorenz"]["srnn"]
    results["floors_met"] = bool(srnn["state_accuracy"] >= 0.95 and srnn["recon_r2"] >= 0.99)
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    (out / "metrics.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"floors met (srnn on srnn_lorenz): {results['floors_met']}")
    print(f"wall time {results['wall_seconds']:.0f} s; results in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
