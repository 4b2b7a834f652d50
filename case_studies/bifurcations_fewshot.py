"""Case study: few-shot adaptation across bifurcations (Vermani et al. 2025, Table 1).

Train on 20 Duffing and 11 Hopf recordings (30-100 neurons each), hold out 3 recordings
(2 Duffing, 1 Hopf). For each configuration of the meta-dynamical family and n_s in {1, 8, 16},
adapt the fitted run to each held-out recording on n_s trials (new read-in and readout,
everything shared frozen) and score the 30-step forecast r^2 on the held-out recording's test
trials (the guide sees the first T - 30 bins of each test trial). Writes ``table.md``,
``metrics.json`` and ``forecast.png``; prints the table and the wall time.

The paper uses T = 300, 128 training and 64 test trials per recording; the defaults here are
smaller (``--timesteps``, ``--trials``) so that all five configurations fit in 30 minutes on 2
CPU cores. Say which settings produced a reported number.

    python case_studies/bifurcations_fewshot.py --out out/bifurcations [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from neurodyn.data.simulators.families import simulate_duffing, simulate_hopf
from neurodyn.families import meta

SHOTS = (1, 8, 16)
HORIZON = 30


def recordings(seed, trials, test_trials, T):
    """(training recordings, held-out recordings), each split into (train, test) trials."""
    common = dict(seed=seed, num_trials=trials + test_trials, num_timesteps=T, neurons=(30, 100))
    duffing = simulate_duffing(num_recordings=22, **common)
    hopf = simulate_hopf(num_recordings=12, **dict(common, seed=seed + 1))
    # Held out: 2 Duffing and 1 Hopf (an interior mu, not an end of the range).
    held = [duffing[20], duffing[21], hopf[5]]
    train = duffing[:20] + hopf[:5] + hopf[6:]

    def split(s):
        return s.select(slice(0, trials)), s.select(slice(trials, None))

    return [split(s) for s in train], [split(s) for s in held]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--timesteps", type=int, default=100)
    p.add_argument("--trials", type=int, default=64)
    p.add_argument("--test-trials", type=int, default=32)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--adapt-steps", type=int, default=300)
    p.add_argument("--models", nargs="+", default=list(meta.MODELS))
    args = p.parse_args(argv)
    if args.quick:
        args.timesteps, args.trials, args.test_trials, args.steps, args.adapt_steps = (
            50,
            16,
            8,
            40,
            30,
        )
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scores = {m: {n: [] for n in SHOTS} for m in args.models}
    for seed in args.seeds:
        train, held = recordings(seed, args.trials, args.test_trials, args.timesteps)
        fit_sessions = [tr for tr, _ in train]
        for model in args.models:
            options = dict(steps=args.steps, seed=seed, batch_size=16)
            config = meta.make_config(model, fit_sessions, options=options)
            params, fit = meta.fit(config, fit_sessions, progress=False)
            print(f"seed {seed} {model}: fitted in {fit.seconds:.0f} s", flush=True)
            for adapt_train, test in held:
                for n in SHOTS:
                    cfg, prm, result = meta.adapt(
                        config, params, adapt_train, trials=n, steps=args.adapt_steps, seed=seed
                    )
                    r2 = meta.evaluate(cfg, prm, [test], horizons=(HORIZON,), num_samples=8)
                    scores[model][n].append(r2["forecast_r2"][str(HORIZON)])
                    print(
                        f"  {test.name} n_s={n}: r2={scores[model][n][-1]:.3f} "
                        f"(adapt {result.seconds:.1f} s)",
                        flush=True,
                    )
    table = {
        m: {
            str(n): dict(mean=float(np.mean(v)), sem=float(np.std(v) / np.sqrt(len(v))))
            for n, v in per.items()
        }
        for m, per in scores.items()
    }
    lines = [
        f"| model | {' | '.join(f'n_s = {n}' for n in SHOTS)} |",
        "|---|" + "---|" * len(SHOTS),
    ]
    for m, per in table.items():
        cells = " | ".join(f"{per[str(n)]['mean']:.3f} ± {per[str(n)]['sem']:.3f}" for n in SHOTS)
        lines.append(f"| {m} | {cells} |")
    md = "\n".join(lines)
    wall = round(time.perf_counter() - start, 1)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    (out / "table.md").write_text(
        f"{HORIZON}-step forecast r^2 on held-out recordings (mean ± s.e.m.), settings "
        f"{settings}\n\n{md}\n"
    )
    (out / "metrics.json").write_text(
        json.dumps(dict(table=table, raw=scores, settings=settings, wall_seconds=wall), indent=2)
        + "\n"
    )
    plot(table, out / "forecast.png")
    print(md)
    print(f"wall time {wall} s")


def plot(table, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for m, per in table.items():
        ax.errorbar(
            SHOTS,
            [per[str(n)]["mean"] for n in SHOTS],
            [per[str(n)]["sem"] for n in SHOTS],
            marker="o",
            label=m,
            capsize=3,
        )
    ax.set(xlabel="adaptation trials n_s", ylabel=f"{HORIZON}-step forecast r^2", xscale="log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
