"""Peak memory and run-folder size of a realistic switching fit (the issue's 90 x 76 x 61 case).

One process simulates Poisson counts of 90 trials x 76 bins x 61 neurons (the Lorenz
simulator), fits ``srnn --states 2 --latent-dim 3`` with ``neurodyn.fit`` (warm start, SVI,
post-fit evaluation and ``posterior.nc``) and reports its peak resident set size (``VmHWM``)
and the size of every file of the run folder. ``--steps`` caps the SVI steps (the peak is set
by compiling the step and by the post-fit export, not by the number of steps). ``--export``
sets posterior.nc's draws and values per draw, to compare with earlier settings in one run:

    python benchmarks/bench_run_folder.py [--steps 200] [--out results.json]
    python benchmarks/bench_run_folder.py --export 50 1000000   # the settings before the cut
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

TRIALS, BINS, NEURONS = 90, 76, 61


def peak_rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", help="also write the numbers as JSON")
    parser.add_argument(
        "--export",
        nargs=2,
        type=int,
        metavar=("DRAWS", "VALUES"),
        help="posterior.nc's draws and values of y per draw (default: the package's; "
        "50 1000000 are the settings before they were cut)",
    )
    args = parser.parse_args()
    import neurodyn
    from neurodyn.api import fitting

    if args.export:
        fitting.POSTERIOR_DRAWS, fitting.POSTERIOR_VALUES = args.export
    from neurodyn.data.simulators import get_simulator

    session = get_simulator("lorenz")(
        seed=0, likelihood="poisson", num_trials=TRIALS, num_timesteps=BINS, num_neurons=NEURONS
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = neurodyn.fit(
            "srnn",
            [session],
            out=Path(tmp) / "run",
            states=2,
            latent_dim=3,
            steps=args.steps,
            progress=False,
        )
        wall = time.perf_counter() - start
        sizes = {p.name: p.stat().st_size for p in sorted(run.path.iterdir()) if p.is_file()}
        steps = run.metrics["fit"]["steps"]
    result = {
        "shape": f"{TRIALS} x {BINS} x {NEURONS} (Poisson)",
        "steps": steps,
        "wall_seconds": round(wall, 1),
        "posterior_draws": fitting.POSTERIOR_DRAWS,
        "posterior_values_per_draw": fitting.POSTERIOR_VALUES,
        "peak_rss_gb": round(peak_rss_gb(), 2),
        "file_mb": {name: round(size / 1e6, 2) for name, size in sizes.items()},
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
