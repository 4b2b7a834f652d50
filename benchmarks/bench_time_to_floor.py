"""Time to reach the Lorenz case study's floors, and few-shot adaptation time.

**Time to floor** (goal: under 60 s on 2 CPU cores, compile included). The protocol of
``case_studies/lorenz_switching.py``: ``srnn_lorenz.npy`` (the SRNN paper's 16 trials x 200 bins
x 3 dims, lobe labels from k-means), trials 0-11 to fit ``srnn`` (K = 2, D = 3, Gaussian), trials
12-15 to score; the floors are ``state_accuracy >= 0.95`` and ``recon_r2 >= 0.99`` on the test
trials. The step budget changes the fit itself (learning-rate decay and warm-start pull are laid
out over the budget), so the smallest budget is found by fitting with increasing budgets, each
from scratch in a fresh process (nothing compiled before), until one meets the floors. The time
reported for a budget is the wall time of ``make_config`` + ``fit`` (warm start, compilation
and SVI, plateau stop included); evaluation (``evaluate``, 16 samples) is timed apart. The CPU
time (user + system, all threads) of the fit is reported too: on a machine shared with other
jobs it bounds what the fit would take alone on 2 cores (between CPU / 2 and CPU seconds).

**Few-shot adaptation** (goal: under 20 s). A small ``meta-dssm`` run (d_e = 1) is fitted first
on 8 limit-cycle recordings (``simulate_limit_cycles``, 16 trials x 100 bins each, 300 steps;
its fit time is reported but is not part of the adaptation time), then ``meta.adapt`` (what
``neurodyn adapt`` runs: 300 steps, shared parameters frozen) fits a held-out recording on its
first N in {1, 8, 16} trials; the time is the wall time of ``adapt`` (compilation included), and
the held-out recording's remaining trials are scored (recon r^2, 10-step forecast r^2).

    python benchmarks/bench_time_to_floor.py [--quick] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"
FLOORS = dict(state_accuracy=0.95, recon_r2=0.99)
BUDGETS = (250, 500, 750, 1000, 1500, 2000)


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def fit_once(data_dir: str, steps: int) -> dict:
    """Fit ``srnn`` with a budget of ``steps`` on the case study's split; time and score it."""
    start = time.perf_counter()
    import numpy as np

    from neurodyn.data import make_session, split_trials
    from neurodyn.families import switching

    x = np.load(Path(data_dir) / "srnn_lorenz.npy").astype(np.float32)
    labels = switching.kmeans(x.reshape(-1, x.shape[-1]), 2, 0, restarts=10).reshape(x.shape[:2])
    train, test = split_trials(make_session(x, states=labels, name="srnn_lorenz"), 12)
    imported_s = time.perf_counter() - start

    start, cpu_start = time.perf_counter(), cpu_seconds()
    options = dict(states=2, latent_dim=3, steps=steps, likelihood="gaussian")
    config = switching.make_config("srnn", [train], options=options)
    params, result = switching.fit(config, [train], progress=False)
    fit_s, fit_cpu_s = time.perf_counter() - start, cpu_seconds() - cpu_start
    start = time.perf_counter()
    metrics = switching.evaluate(config, params, [test], horizons=(1,), num_samples=16)
    eval_s = time.perf_counter() - start
    return dict(
        steps=steps,
        steps_run=int(result.steps_run),
        fit_s=fit_s,
        fit_cpu_s=fit_cpu_s,
        eval_s=eval_s,
        setup_s=imported_s,
        state_accuracy=float(metrics["state_accuracy"]),
        recon_r2=float(metrics["recon_r2"]),
        met=bool(all(metrics[k] >= v for k, v in FLOORS.items())),
    )


def time_to_floor(data_dir: str, budgets=BUDGETS, verbose=True) -> dict:
    """Fit with increasing budgets (fresh process each) until one meets the floors."""
    rows = []
    for steps in budgets:
        cmd = [sys.executable, __file__, "--worker", str(steps), "--data", str(data_dir)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
        process_s = time.perf_counter() - start
        if proc.returncode:
            raise RuntimeError(f"worker for {steps} steps failed:\n{proc.stderr[-2000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["process_s"] = process_s
        rows.append(row)
        if verbose:
            print(format_floor_row(row), flush=True)
        if row["met"]:
            break
    met = [r for r in rows if r["met"]]
    return dict(rows=rows, first_met=met[0] if met else None)


FLOOR_HEADER = (
    "| step budget | steps run | fit (s, compile incl.) | fit CPU (s) | evaluate (s) "
    "| process (s) | state_accuracy | recon_r2 | floors met |\n"
    "|--:|--:|--:|--:|--:|--:|--:|--:|:--|"
)


def format_floor_row(r: dict) -> str:
    """One Markdown row of the time-to-floor table."""
    return (
        f"| {r['steps']} | {r['steps_run']} | {r['fit_s']:.1f} "
        f"| {r.get('fit_cpu_s', float('nan')):.1f} | {r['eval_s']:.1f} "
        f"| {r['process_s']:.1f} | {r['state_accuracy']:.3f} | {r['recon_r2']:.4f} "
        f"| {'yes' if r['met'] else 'no'} |"
    )


def adaptation(trial_counts=(1, 8, 16), fit_steps=300, verbose=True) -> dict:
    """Fit a small meta-dssm run, then time ``meta.adapt`` on a held-out recording."""
    from neurodyn.data.simulators.families import simulate_limit_cycles
    from neurodyn.families import meta

    R = 16
    sessions = simulate_limit_cycles(seed=0, num_recordings=9, num_trials=R + 8, num_timesteps=100)
    new = sessions.pop()
    train = [s.select(slice(0, R)) for s in sessions]
    start = time.perf_counter()
    options = dict(steps=fit_steps, seed=0, batch_size=16, embedding_dim=1)
    config = meta.make_config("meta-dssm", train, options=options)
    params, _ = meta.fit(config, train, progress=False)
    fit_s = time.perf_counter() - start
    if verbose:
        print(
            f"# meta-dssm fit: {len(train)} recordings x {R} trials, {fit_steps} steps, "
            f"{fit_s:.1f} s (not part of the adaptation time)"
        )
        print(ADAPT_HEADER, flush=True)
    rows = []
    for n in trial_counts:
        start, cpu_start = time.perf_counter(), cpu_seconds()
        cfg, prm, result = meta.adapt(config, params, new.select(slice(0, R)), trials=n)
        seconds, cpu_s = time.perf_counter() - start, cpu_seconds() - cpu_start
        metrics = meta.evaluate(cfg, prm, [new.select(slice(R, None))], horizons=(10,))
        row = dict(
            trials=n,
            adapt_s=seconds,
            adapt_cpu_s=cpu_s,
            steps=int(result.steps_run),
            recon_r2=float(metrics["recon_r2"]),
            forecast_r2_10=float(metrics["forecast_r2"]["10"]),
        )
        rows.append(row)
        if verbose:
            print(
                f"| {n} | {row['steps']} | {seconds:.1f} | {cpu_s:.1f} | {row['recon_r2']:.3f} "
                f"| {row['forecast_r2_10']:.3f} |",
                flush=True,
            )
    return dict(fit_s=fit_s, rows=rows)


ADAPT_HEADER = (
    "| trials N | steps | adapt (s, compile incl.) | adapt CPU (s) | recon r^2 (held-out trials) "
    "| forecast r^2, 10 steps |\n|--:|--:|--:|--:|--:|--:|"
)


def main(argv=None):
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="budgets 500 and 1000; N in {1, 8}")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder of srnn_lorenz.npy")
    parser.add_argument("--budgets", type=int, nargs="+", help="step budgets to try, in order")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help="write the results as JSON to this path")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(fit_once(args.data, args.worker)))
        return None
    from bench_hmm import machine_line

    print(machine_line(), flush=True)
    results = {}
    path = Path(args.data) / "srnn_lorenz.npy"
    if not path.exists():
        print(f"# time to floor skipped: {path} not found (pass --data)")
    else:
        budgets = args.budgets or ((500, 1000) if args.quick else BUDGETS)
        print(f"# srnn on srnn_lorenz.npy, floors {FLOORS}; budgets tried in order: {budgets}")
        print(FLOOR_HEADER, flush=True)
        results["floor"] = floor = time_to_floor(str(args.data), budgets)
        first = floor["first_met"]
        if first:
            print(
                f"# floors first met with a budget of {first['steps']} steps: fit "
                f"{first['fit_s']:.1f} s compile included (+ {first['eval_s']:.1f} s evaluate); "
                f"goal < 60 s: {'met' if first['fit_s'] < 60 else 'not met'}"
            )
        else:
            print("# floors not met by any budget tried")
    results["adapt"] = adaptation((1, 8) if args.quick else (1, 8, 16))
    slowest = max(r["adapt_s"] for r in results["adapt"]["rows"])
    print(
        f"# slowest adaptation {slowest:.1f} s; goal < 20 s: {'met' if slowest < 20 else 'not met'}"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
