"""Case study: model selection by held-out likelihood on simulated switching data.

1. NASCAR (``simulate_nascar``, true K = 4, 10 Gaussian neurons, 400 bins): ``rslds`` with
   D = 2 is fitted for K = 2..6 on 12 trials (2000 steps each, no plateau stop) and every fit
   is scored on 12 other trials (log p(y_i) by sequential Monte Carlo with the guide's per-bin
   proposals, 4096 particles; ``--estimator importance`` ranks by PSIS importance sampling
   instead). Floors: K = 4 ranks first or within one SE (``dse`` of ``arviz_stats.compare``)
   of the best; ``rslds`` K = 4 has a higher held-out elpd than ``slds`` K = 4.
2. Lorenz (``simulate_lorenz``, two lobes, 10 Gaussian neurons): ``srnn`` and ``slds``, K = 2,
   D = 3, 12 training and 12 held-out trials, 5000 steps each. Floor: ``srnn`` has the higher
   held-out elpd.

For each comparison the JSON gives the elpd difference, its SE, whether the difference exceeds
its SE, and the Pareto k of every run's importance-sampling estimate (k > 0.7: that estimate
is unreliable; on trials of hundreds of bins it is, for every run, which is why SMC ranks).
Figures: ``elpd_vs_K.png`` (elpd +- SE against K, and the difference to the best +- its SE),
``pareto_k.png`` (per-trial k of every run).

Run: ``python case_studies/model_selection.py --out DIR [--quick] [--samples S]
[--estimator smc|importance] [--particles P]`` (``--data``
is accepted and unused: the data are simulated); writes ``metrics.json`` and the figures into
DIR, one run folder per fit, and prints wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from neurodyn.api import sweeps
from neurodyn.data import split_trials
from neurodyn.data.simulators.switching import simulate_lorenz, simulate_nascar
from neurodyn.inference import comparison

# Lorenz fits get 5000 steps: at 2000 neither srnn nor slds has converged (the ELBO check says
# so) and srnn, the slower to train, then trails slds on held-out likelihood.
FULL = dict(
    states=(2, 3, 4, 5, 6), train=12, test=12, nascar_T=400, lorenz_T=200, steps=2000,
    lorenz_steps=5000,
)  # fmt: skip
QUICK = dict(
    states=(2, 3, 4), train=6, test=4, nascar_T=120, lorenz_T=80, steps=150, lorenz_steps=150
)
TRUE_K = 4


def pair(name_a, run_a, name_b, run_b) -> dict:
    """Held-out comparison of two runs: a beats b when its elpd is higher."""
    table = comparison.compare({name_a: run_a.elpd, name_b: run_b.elpd})
    diff = float(run_a.elpd.elpd - run_b.elpd.elpd)
    dse = float(table["dse"].max())  # the SE of the difference (on the lower-ranked row)
    return {
        "elpd": {name_a: float(run_a.elpd.elpd), name_b: float(run_b.elpd.elpd)},
        "se": {name_a: float(run_a.elpd.se), name_b: float(run_b.elpd.se)},
        "elpd_diff": diff,
        "dse": dse,
        "difference_exceeds_se": bool(abs(diff) > dse),
        "khat": {name: khat_summary(run) for name, run in ((name_a, run_a), (name_b, run_b))},
        "met": bool(diff > 0),
    }


def khat_summary(run) -> dict:
    """Pareto k of the importance-sampling estimate (reported whichever estimator ranks)."""
    k = np.asarray(run.heldout["psis_khat_per_trial"], float)
    return {"max": float(np.nanmax(k)), "share_above_0.7": float(np.mean(k > 0.7))}


def rows(table) -> dict:
    columns = ["rank", "elpd", "se", "elpd_diff", "dse", "weight", "khat_max"]
    columns.append("khat_share_above_0.7")
    columns = [c for c in columns if c in table]  # no k columns for SMC-ranked tables
    return {str(n): {c: float(table.loc[n, c]) for c in columns} for n in table.index}


def plot_elpd_vs_k(result, slds_run, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result.summary.sort_values("states")
    best = result.best()
    ks = summary["states"].to_numpy()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].errorbar(ks, summary["elpd"], yerr=summary["se"], fmt="o-", capsize=3, label="rslds")
    axes[0].errorbar(
        [TRUE_K + 0.1], [slds_run.elpd.elpd], yerr=[slds_run.elpd.se], fmt="s", capsize=3,
        color="tab:red", label=f"slds K={TRUE_K}",
    )  # fmt: skip
    axes[0].set(xlabel="K", ylabel="held-out elpd (sum over trials)", title="elpd +- SE")
    axes[0].legend()
    axes[1].errorbar(ks, summary["elpd_diff"], yerr=summary["dse"], fmt="o-", capsize=3)
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].set(xlabel="K", ylabel="elpd - best", title=f"difference to {best} +- SE")
    for ax in axes:
        ax.axvline(TRUE_K, color="grey", ls=":", lw=0.8)
        ax.set_xticks(ks)
    fig.suptitle("NASCAR (true K = 4): rslds, D = 2")
    fig.tight_layout()
    path = out / "elpd_vs_K.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_pareto_k(named_runs: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(named_runs)), 3.5))
    rng = np.random.default_rng(0)
    for i, run in enumerate(named_runs.values()):
        k = np.asarray(run.heldout["psis_khat_per_trial"], float)
        ax.scatter(i + rng.uniform(-0.15, 0.15, k.size), k, s=14)
    ax.axhline(0.7, color="tab:red", ls="--", lw=1, label="k = 0.7")
    ax.set_xticks(range(len(named_runs)), list(named_runs), rotation=30, ha="right")
    ax.set(ylabel="Pareto k per held-out trial", title="importance-sampling diagnostics")
    ax.legend()
    fig.tight_layout()
    path = out / "pareto_k.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="unused (simulated data)")
    parser.add_argument("--out", default="model_selection_out")
    parser.add_argument("--quick", action="store_true", help="K = 2..4, short fits, few trials")
    parser.add_argument("--samples", type=int, default=None, help="importance samples per trial")
    parser.add_argument(
        "--estimator", choices=("smc", "importance"), default="smc",
        help="what ranks the runs: SMC (default) or PSIS importance sampling",
    )  # fmt: skip
    parser.add_argument("--particles", type=int, default=None, help="SMC particles per trial")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    s = QUICK if args.quick else FULL
    samples = args.samples or (64 if args.quick else 1000)
    particles = args.particles or (64 if args.quick else 4096)
    score = dict(num_samples=samples, seed=0, estimator=args.estimator, num_particles=particles)
    trials = s["train"] + s["test"]

    def log(text):
        print(f"[{time.perf_counter() - start:6.0f} s] {text}", flush=True)

    # NASCAR: K sweep of rslds, and slds at the true K.
    nascar = simulate_nascar(seed=0, num_trials=trials, num_timesteps=s["nascar_T"])
    train, test = split_trials(nascar, s["train"])
    # patience=0: no plateau stop, so that every setting gets the same step budget
    options = dict(latent_dim=2, steps=s["steps"], patience=0)
    sweep = sweeps.sweep_states(
        "rslds", [train], [test], states=s["states"], options=options,
        out_dir=out / "nascar_rslds", **score,
    )  # fmt: skip
    log("NASCAR rslds sweep:\n" + sweep.summary.to_string(float_format=lambda x: f"{x:.2f}"))
    slds = sweeps.fit_and_score(
        "slds", [train], [test], options=dict(options, states=TRUE_K),
        folder=out / "nascar_slds_K4", **score,
    )  # fmt: skip
    best = sweep.best()
    true_name = f"K={TRUE_K}"
    k_floor = {
        "best": best,
        "elpd_diff_K4": float(sweep.table.loc[true_name, "elpd_diff"]),
        "dse_K4": float(sweep.table.loc[true_name, "dse"]),
        "met": sweep.within_one_se_of_best(true_name) if true_name in sweep.table.index else False,
    }
    nascar_pair = pair("rslds", sweep.runs.get(true_name) or sweep.runs[best], "slds", slds)
    log(f"NASCAR: best {best}; rslds K=4 - slds K=4 = {nascar_pair['elpd_diff']:.1f} "
        f"+- {nascar_pair['dse']:.1f}")  # fmt: skip

    # Lorenz: srnn against slds.
    lorenz = simulate_lorenz(seed=1, num_trials=trials, num_timesteps=s["lorenz_T"])
    train, test = split_trials(lorenz, s["train"])
    options = dict(
        states=2, latent_dim=3, steps=s["lorenz_steps"], likelihood="gaussian", patience=0
    )
    lorenz_runs = sweeps.sweep(
        {"srnn": ("srnn", options), "slds": ("slds", options)}, [train], [test],
        out_dir=out / "lorenz", **score,
    )  # fmt: skip
    lorenz_pair = pair("srnn", lorenz_runs.runs["srnn"], "slds", lorenz_runs.runs["slds"])
    log(f"Lorenz: srnn - slds = {lorenz_pair['elpd_diff']:.1f} +- {lorenz_pair['dse']:.1f}")

    figures = [
        plot_elpd_vs_k(sweep, slds, out),
        plot_pareto_k(
            {
                **{f"rslds {n}": r for n, r in sweep.runs.items()},
                "slds K=4": slds,
                "lorenz srnn": lorenz_runs.runs["srnn"],
                "lorenz slds": lorenz_runs.runs["slds"],
            },
            out,
        ),
    ]
    metrics = {
        "settings": {
            **{k: list(v) if isinstance(v, tuple) else v for k, v in s.items()},
            "importance_samples": samples,
            "estimator": args.estimator,
            "smc_particles": particles,
            "quick": args.quick,
        },  # fmt: skip
        "nascar": {
            "rslds_sweep": rows(sweep.table),
            "fit_steps": {n: int(r.fit.steps_run) for n, r in sweep.runs.items()},
            "K4_best_or_within_one_se": k_floor,
            "rslds_vs_slds": nascar_pair,
        },
        "lorenz": {"srnn_vs_slds": lorenz_pair},
        "floors": {
            "nascar_K4_best_or_within_one_se": k_floor["met"],
            "nascar_rslds_beats_slds": nascar_pair["met"],
            "lorenz_srnn_beats_slds": lorenz_pair["met"],
        },
        "figures": [f.name for f in figures],
    }
    metrics["floors_met"] = bool(all(metrics["floors"].values()))
    metrics["wall_seconds"] = round(time.perf_counter() - start, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    print(json.dumps(metrics["floors"], indent=2))
    print(f"wall time {metrics['wall_seconds']:.0f} s; results in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
