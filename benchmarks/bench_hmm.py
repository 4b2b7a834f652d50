"""Benchmark the discrete-state core: sequential (``lax.scan``) vs parallel (``associative_scan``).

For every sequence length ``T`` and number of states ``K`` it times, over a batch of sequences
(``vmap``), both the log marginal alone and the log marginal with its gradient w.r.t. the log
likelihoods (``value_and_grad``, i.e. forward-backward). Compile time (lowering + XLA compile)
is reported apart from the steady-state time, the median of several runs after a warm-up.

    python benchmarks/bench_hmm.py            # T in {100, 1000, 10000}, K in {2, 8}
    python benchmarks/bench_hmm.py --quick    # T in {100, 1000}, under a minute
    python benchmarks/bench_hmm.py --out results.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from neurodyn.inference import hmm

TASKS = ("value", "value+grad")


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or cpu
    return dict(
        nproc=os.cpu_count(),
        cpu=cpu,
        jax=jax.__version__,
        backend=jax.default_backend(),
        devices=[str(d) for d in jax.devices()],
        python=platform.python_version(),
        load_average=os.getloadavg(),
    )


def problem(num_sequences: int, num_bins: int, num_states: int, seed: int = 0):
    """Normalized random potentials: ``[B, K]``, ``[B, K, K]`` and ``[B, T, K]`` float32."""
    rng = np.random.default_rng(seed)

    def log_normalized(x):
        return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))

    log_init = log_normalized(rng.normal(size=(num_sequences, num_states)))
    log_trans = log_normalized(rng.normal(size=(num_sequences, num_states, num_states)))
    log_lik = rng.normal(size=(num_sequences, num_bins, num_states)) - 2.0
    return tuple(jnp.asarray(x, jnp.float32) for x in (log_init, log_trans, log_lik))


def batched(task: str, method: str):
    """The jitted, vmapped function to time."""
    log_z = functools.partial(hmm.log_marginal, method=method)
    if task == "value+grad":
        log_z = jax.value_and_grad(log_z, argnums=2)
    return jax.jit(jax.vmap(log_z))


def time_one(task: str, method: str, args, repeats: int) -> dict:
    """Compile time and median steady-state time (seconds) of one jitted call."""
    start = time.perf_counter()
    compiled = batched(task, method).lower(*args).compile()
    compile_s = time.perf_counter() - start

    jax.block_until_ready(compiled(*args))  # warm-up
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - start)
    return dict(compile_s=compile_s, run_s=statistics.median(runs), runs_s=runs)


def run(lengths, state_counts, num_sequences: int, repeats: int) -> list[dict]:
    results = []
    for num_bins in lengths:
        for num_states in state_counts:
            args = problem(num_sequences, num_bins, num_states)
            for task in TASKS:
                row = dict(T=num_bins, K=num_states, B=num_sequences, task=task)
                for method in hmm.METHODS:
                    row[method] = time_one(task, method, args, repeats)
                row["ratio"] = row["parallel"]["run_s"] / row["sequential"]["run_s"]
                results.append(row)
                print(format_row(row), flush=True)
    return results


HEADER = (
    "|     T |  K | task       | seq compile (s) | seq run (ms) "
    "| par compile (s) | par run (ms) | par / seq |\n"
    "|------:|---:|:-----------|----------------:|-------------:"
    "|----------------:|-------------:|----------:|"
)


def format_row(row: dict) -> str:
    seq, par = row["sequential"], row["parallel"]
    return (
        f"| {row['T']:5d} | {row['K']:2d} | {row['task']:<10s} "
        f"| {seq['compile_s']:15.2f} | {1e3 * seq['run_s']:12.2f} "
        f"| {par['compile_s']:15.2f} | {1e3 * par['run_s']:12.2f} | {row['ratio']:9.2f} |"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="T in {100, 1000} only")
    parser.add_argument("--out", help="write the results as JSON to this path")
    parser.add_argument("--batch", type=int, default=64, help="sequences per call (vmap)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs after warm-up")
    args = parser.parse_args(argv)

    lengths = (100, 1000) if args.quick else (100, 1000, 10000)
    info = machine()
    print(
        f"# {info['nproc']} x {info['cpu']}, JAX {info['jax']} ({info['backend']}), "
        f"B = {args.batch} sequences, median of {args.repeats} runs, "
        f"load average {info['load_average'][0]:.2f}",
        flush=True,
    )
    print(HEADER, flush=True)
    results = run(lengths, (2, 8), args.batch, args.repeats)
    if args.out:
        with open(args.out, "w") as f:
            info["load_average_after"] = os.getloadavg()
            json.dump(dict(machine=info, batch=args.batch, results=results), f, indent=2)


if __name__ == "__main__":
    main()
