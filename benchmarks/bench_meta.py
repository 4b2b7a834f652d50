"""Step time of the meta-dynamical model against the number of recordings M.

One SVI step covers every recording (padded neurons, ``--batch`` trials drawn per recording),
so the time per step should grow at most linearly in M (goal: linear or better). Recordings are
random data of the default shapes (20-100 neurons, T bins). Every M's step is compiled first
(compile time reported apart: one compilation per M, the shapes change); the steps are then
timed side by side, alternating between the values of M in rounds (median round reported), so
that load on a shared machine hits every M alike. The CPU time (user + system, all threads) per
step is reported too, being less sensitive to other jobs than the wall time.

    python benchmarks/bench_meta.py [--quick] [--sizes 5 20 100 500] [--steps 5] [--rounds 3]
    python benchmarks/bench_meta.py --device   # accelerator preset: M in 5 500 (see
                                               # benchmarks/gpu.sh); with --quick, tiny sizes
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import time

import jax
import numpy as np
import optax
from numpyro.infer import SVI, Trace_ELBO
from numpyro.optim import optax_to_numpyro

from neurodyn.data.session import make_session
from neurodyn.families import meta


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def compiled_step(M, *, trials, T, batch, model="meta-dssm"):
    """(update, state, compile seconds) of one jitted SVI step over M random recordings."""
    rng = np.random.default_rng(M)
    sessions = [
        make_session(rng.normal(size=(trials, T, rng.integers(20, 101))), name=f"r{i:04d}")
        for i in range(M)
    ]
    config = meta.make_config(model, sessions, options=dict(batch_size=batch))
    model_fn, guide_fn, _, _ = meta.build(config)
    data = jax.tree_util.tree_map(jax.numpy.asarray, meta.stack_sessions(config, sessions))
    sample = meta.recording_sampler(batch)
    svi = SVI(model_fn, guide_fn, optax_to_numpyro(optax.adam(1e-3)), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(0), sample(jax.random.PRNGKey(0), data))

    @jax.jit
    def update(state, key):
        return svi.update(state, sample(key, data))

    t0 = time.perf_counter()
    state, loss = update(state, jax.random.PRNGKey(1))
    jax.block_until_ready(loss)
    return update, state, time.perf_counter() - t0


def scaling(rows: list[dict], key: str = "step_s") -> dict:
    """Log-log slope of step time against M between the smallest and largest M, and the ratio
    of their per-recording times (linear: slope <= 1, ratio <= 1 up to noise)."""
    a, b = rows[0], rows[-1]
    slope = math.log(b[key] / a[key]) / math.log(b["M"] / a["M"])
    return dict(slope=slope, per_recording_ratio=(b[key] / b["M"]) / (a[key] / a["M"]))


def run(
    sizes, trials=16, T=100, batch=8, steps=5, rounds=3, verbose=True, deadline=None
) -> list[dict]:
    """Compile a step for each M, then time them in alternating rounds; one row per M.
    ``deadline``: a ``time.perf_counter()`` value after which no further M is set up (the
    values of M not reached are left out, with a printed line)."""
    steps_of = {}
    for M in sizes:
        if deadline is not None and time.perf_counter() > deadline and steps_of:
            if verbose:
                print(f"# M = {M} skipped: the time budget was spent", flush=True)
            continue
        steps_of[M] = list(compiled_step(M, trials=trials, T=T, batch=batch))
        if verbose:
            print(f"# compiled M = {M} in {steps_of[M][2]:.1f} s", flush=True)
    sizes = list(steps_of)
    wall = {M: [] for M in sizes}
    cpu = {M: [] for M in sizes}
    for r in range(rounds):
        for M in sizes:
            update, state, _ = steps_of[M]
            t0, c0 = time.perf_counter(), cpu_seconds()
            for s in range(steps):
                state, loss = update(state, jax.random.PRNGKey(2 + r * steps + s))
            jax.block_until_ready(loss)
            wall[M].append((time.perf_counter() - t0) / steps)
            cpu[M].append((cpu_seconds() - c0) / steps)
            steps_of[M][1] = state
    rows = [  # in increasing M, whatever the order they were set up in
        dict(
            M=M,
            step_s=statistics.median(wall[M]),
            cpu_s=statistics.median(cpu[M]),
            compile_s=steps_of[M][2],
            rounds_s=wall[M],
        )
        for M in sorted(sizes)
    ]
    if verbose:
        print("| M | s / step | ms / step / recording | CPU s / step | compile (s) |")
        print("|---:|---:|---:|---:|---:|")
        for row in rows:
            print(
                f"| {row['M']} | {row['step_s']:.3f} | {1e3 * row['step_s'] / row['M']:.2f} "
                f"| {row['cpu_s']:.3f} | {row['compile_s']:.1f} |",
                flush=True,
            )
    return rows


def main(argv=None):
    """Command line: see the module docstring."""
    from bench_hmm import machine, machine_line

    start = time.perf_counter()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", help="recordings M (default 5 20 100 500)")
    p.add_argument("--quick", action="store_true", help="M in 5 20 100 only")
    p.add_argument(
        "--device",
        action="store_true",
        help="M in 500 5, set up in that order (with --quick: M = 2, 4 trials x 20 bins, 2 "
        "trials per step)",
    )
    p.add_argument("--steps", type=int, default=5, help="steps per round")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    p.add_argument("--trials", type=int, help="trials per recording (default 16)")
    p.add_argument("--timesteps", type=int, help="bins per trial (default 100)")
    p.add_argument("--batch", type=int, help="trials per recording per step (default 8)")
    p.add_argument("--budget-s", type=float, help="set up no further M after this many seconds")
    p.add_argument("--out", help="write the results as JSON to this path")
    args = p.parse_args(argv)
    if args.device and args.quick:
        sizes, trials, timesteps, batch = [2], 4, 20, 2
        args.steps, args.rounds = 1, 1
    else:
        sizes = [500, 5] if args.device else [5, 20, 100] if args.quick else [5, 20, 100, 500]
        trials, timesteps, batch = 16, 100, 8
    args.sizes = args.sizes or sizes
    args.trials, args.timesteps = args.trials or trials, args.timesteps or timesteps
    args.batch = args.batch or batch
    info = machine()
    print(machine_line(info), flush=True)
    print(
        f"# meta-dssm, T={args.timesteps}, {args.batch} trials/recording/step, N in [20, 100], "
        f"{args.rounds} alternating rounds of {args.steps} steps, median round"
    )
    deadline = None if args.budget_s is None else start + args.budget_s
    rows = run(
        args.sizes,
        args.trials,
        args.timesteps,
        args.batch,
        args.steps,
        args.rounds,
        deadline=deadline,
    )
    result = dict(rows=rows, machine=info, trials=args.trials, timesteps=args.timesteps)
    result["batch"] = args.batch
    if len(rows) >= 2:  # step time against M
        s, s_cpu = scaling(rows), scaling(rows, "cpu_s")
        result.update(scaling=s, scaling_cpu=s_cpu)
        print(
            f"# M {rows[0]['M']} -> {rows[-1]['M']}: log-log slope {s['slope']:.2f} (wall), "
            f"{s_cpu['slope']:.2f} (CPU); per-recording time ratio "
            f"{s['per_recording_ratio']:.2f} (wall), {s_cpu['per_recording_ratio']:.2f} (CPU); "
            "goal: linear or better, slope <= 1"
        )
    if args.out:
        result["seconds"] = time.perf_counter() - start
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
