"""Case study: model recovery. Does ``neurodyn compare`` rank the generating model first?

Two data sets are simulated from known configurations and both candidate models are fitted to
each; ``neurodyn compare`` (the command, with its default estimator) ranks them on held-out
trials:

1. **rslds-generated**: the rSLDS paper's NASCAR track (``simulate_nascar``, K = 4, D = 2,
   transitions that depend on the position). Candidates ``rslds`` and ``slds``, K = 4, D = 2.
   Floor: ``rslds`` ranks first with an elpd difference larger than twice its SE (``dse``).
2. **slds-generated**: ``simulate_slds`` (K = 3, D = 2, sticky Markov transitions that ignore
   the latent). Candidates ``slds`` and ``rslds``, K = 3, D = 2. ``rslds`` nests ``slds``
   (recurrence weights at zero), so it can tie but should not win by much. Floor: ``slds``
   ranks first, or ``rslds`` leads it by at most twice the ``dse``.

Both data sets: 10 Gaussian neurons, 12 training and 12 held-out trials of 100 bins (about one
NASCAR lap). Fits use the family's defaults (dkf guide, plateau stop) with a budget of 1500
steps. The JSON records each comparison table, the estimator ``compare`` used (its default),
and whether each floor is met.

Run: ``python case_studies/model_recovery.py --out DIR [--quick] [--steps N] [--seed S]``
(``--seed``: of the simulated data; the fits use seed 0); writes
``metrics.json``, the run folders and the data into DIR, and prints wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import time
from pathlib import Path

from neurodyn.api import sweeps
from neurodyn.data import save_session, split_trials
from neurodyn.data.simulators.switching import simulate_nascar, simulate_slds

FULL = dict(train=12, test=12, T=100, steps=1500)
QUICK = dict(train=4, test=4, T=40, steps=100)
# data set -> (simulator, true K, generating model, the other candidate)
DATASETS = {
    "nascar": (simulate_nascar, 4, "rslds", "slds"),
    "slds": (simulate_slds, 3, "slds", "rslds"),
}


def default_estimator() -> str:
    """The estimator ``neurodyn compare`` uses when none is given."""
    from neurodyn.cli import build_parser

    return build_parser().parse_args(["compare", "a", "b", "--data", "x"]).estimator


def compare_runs(run_dirs, test_file, out_json) -> dict:
    """``neurodyn compare RUNS --data TEST --json OUT`` (default estimator); the table as
    {run name: {rank, elpd, se, elpd_diff, dse, weight, ...}}."""
    from neurodyn.cli import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        argv = ["compare", *map(str, run_dirs), "--data", str(test_file)]
        status = main([*argv, "--json", str(out_json)])
    if status:
        raise RuntimeError(f"neurodyn compare failed with status {status}")
    return json.loads(Path(out_json).read_text())


def recover(name: str, out: Path, settings: dict, seed: int = 0) -> dict:
    """Simulate data set ``name``, fit the generating model and the other candidate, compare.

    Returns {"table", "generating", "other", "elpd_diff" (generating - other), "dse",
    "generating_first", "floor", "met", "fit_seconds", "steps_run"}; the table's ``khat_max``
    and ``khat_share_above_0.7`` are the Pareto k of ``compare``'s importance sampling (NaN when
    its estimator is SMC).
    """
    simulate, K, generating, other = DATASETS[name]
    session = simulate(
        seed=seed, num_trials=settings["train"] + settings["test"], num_timesteps=settings["T"]
    )
    train, test = split_trials(session, settings["train"])
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    test_file = save_session(folder / "test.npz", test)
    options = dict(states=K, latent_dim=2, steps=settings["steps"], likelihood="gaussian")
    runs = {}
    for model in (generating, other):
        runs[model] = sweeps.fit_and_score(
            model, [train], [test], options=options, folder=folder / model, num_samples=32
        )
    table = compare_runs([folder / generating, folder / other], test_file, folder / "compare.json")
    diff = table[generating]["elpd"] - table[other]["elpd"]
    dse = max(table[generating]["dse"], table[other]["dse"])  # the lower-ranked row holds it
    first = table[generating]["rank"] == 0
    if name == "nascar":
        floor, met = "generating model first by > 2 dse", bool(first and diff > 2 * dse)
    else:
        floor, met = "generating model not below by > 2 dse", bool(diff >= -2 * dse)
    return {
        "table": table,
        "generating": generating,
        "other": other,
        "elpd_diff": float(diff),
        "dse": float(dse),
        "generating_first": bool(first),
        "floor": floor,
        "met": met,
        "fit_seconds": {m: round(float(r.fit.seconds), 1) for m, r in runs.items()},
        "steps_run": {m: int(r.fit.steps_run) for m, r in runs.items()},
    }


def _strict(x):
    """``x`` with NaN / inf floats as None (strict JSON; SMC tables have no Pareto k)."""
    if isinstance(x, dict):
        return {k: _strict(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_strict(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="unused (simulated data)")
    parser.add_argument("--out", default="model_recovery_out")
    parser.add_argument("--quick", action="store_true", help="few short trials, short fits")
    parser.add_argument("--steps", type=int, help="SVI step budget per fit")
    parser.add_argument("--only", choices=tuple(DATASETS), help="one data set only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated data")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = dict(QUICK if args.quick else FULL)
    if args.steps:
        settings["steps"] = args.steps
    results = {}
    for name in [args.only] if args.only else DATASETS:
        results[name] = recover(name, out, settings, seed=args.seed)
        r = results[name]
        print(
            f"[{time.perf_counter() - start:6.0f} s] {name}-generated: {r['generating']} - "
            f"{r['other']} = {r['elpd_diff']:.1f} (dse {r['dse']:.1f}); floor "
            f"({r['floor']}) {'met' if r['met'] else 'NOT met'}",
            flush=True,
        )
    metrics = {
        "settings": {
            **settings,
            "seed": args.seed,
            "estimator": default_estimator(),
            "quick": args.quick,
        },
        **results,
        "floors_met": all(r["met"] for r in results.values()),
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    (out / "metrics.json").write_text(json.dumps(_strict(metrics), indent=2) + "\n")
    print(f"wall time {metrics['wall_seconds']:.0f} s; results in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
