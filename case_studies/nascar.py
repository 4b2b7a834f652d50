"""Case study: the rSLDS paper's NASCAR track (Linderman et al. 2017) with ``rslds``, K = 4.

``simulate_nascar`` draws a 2-D latent circulating an oval (two rotations on the turns, two
constant-velocity straights, chosen by position) observed through 10 Gaussian neurons. We fit
``rslds`` with K = 4, D = 2 on 12 trials and score the Viterbi states of 4 held-out trials
against the true segments (floor: state_accuracy >= 0.9).

Run: ``python case_studies/nascar.py --out DIR [--quick]`` (``--data`` is accepted and unused:
the data are simulated); writes ``metrics.json`` and figures into DIR and prints wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from neurodyn.data import split_trials
from neurodyn.data.simulators.switching import simulate_nascar
from neurodyn.families import switching


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="unused (simulated data)")
    parser.add_argument("--out", default="nascar_out")
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    session = simulate_nascar(seed=0, num_trials=16)
    train, test = split_trials(session, 12)
    options = dict(states=4, latent_dim=2, steps=1000 if args.quick else 2000)
    config = switching.make_config("rslds", [train], options=options)
    params, result = switching.fit(config, [train], out_dir=out / "run", progress=False)
    metrics = switching.evaluate(config, params, [test], horizons=(1, 5, 10), num_samples=16)
    figures = switching.report(config, params, [test], out)
    metrics["fit_steps"] = int(result.steps_run)
    metrics["floor_met"] = bool(metrics["state_accuracy"] >= 0.9)
    metrics["wall_seconds"] = round(time.perf_counter() - start, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    print(json.dumps(metrics, indent=2, default=float))
    print(f"figures: {', '.join(f.name for f in figures)}")
    print(f"wall time {metrics['wall_seconds']:.0f} s; results in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
