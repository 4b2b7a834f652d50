"""Benchmark the discrete-state core: sequential vs parallel-in-time vs ``dynamax``.

For every sequence length ``T`` and number of states ``K`` it times, over a batch of sequences
(``vmap``), both the log marginal alone (**value**) and the log marginal with the smoothed
state marginals (**value+grad**: ``value_and_grad`` w.r.t. the log likelihoods, i.e.
forward-backward) for

* ``seq``: ``neurodyn.inference.hmm.log_marginal(method="sequential")`` (``lax.scan``; rescaled
  probabilities mixed through the transitions by one matrix-vector product per step, the
  stationary matrix never broadcast over time; its gradient a written-out forward-backward pass),
* ``par``: ``method="parallel"`` (``lax.associative_scan``, differentiated by autodiff),
* ``dynamax``: ``dynamax.hidden_markov_model.hmm_filter`` (value: ``marginal_loglik``) and
  ``hmm_smoother(..., compute_trans_probs=False)`` (value+grad: ``marginal_loglik`` and
  ``smoothed_probs``, the same quantities), when ``dynamax`` can be imported;

Before timing a row, the three are checked to agree (max abs difference of the log marginals
and of the smoothed marginals). Compile time (lowering + XLA compile) is reported apart from the
steady-state time, the median of several runs after a warm-up run (at least ``--repeats``, and
for short calls as many as fill about 0.25 s, at most 200).

Cells that would not fit are skipped with a printed reason, never run: a lower bound of the
memory a method needs is checked against ``--memory-budget-gb`` before compiling, and the
compiled program's own buffer sizes (``memory_analysis``) after. Cells predicted (linearly in T
from the same method at the previous T) to take longer than ``--max-call-s`` per call are also
skipped.

    python benchmarks/bench_hmm.py            # T in {100, 1000, 10000, 100000}, K in {2, 8, 32}
    python benchmarks/bench_hmm.py --quick    # T in {100, 1000}, K in {2, 8}, a minute or two
    python benchmarks/bench_hmm.py --out results.json
    python benchmarks/bench_hmm.py --device   # accelerator preset: K = 8, T up to 100000, the
                                              # memory budget read off the device (see
                                              # ``benchmarks/gpu.sh``); with --quick, tiny sizes
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
METHODS = ("seq", "par", "dynamax")
BYTES = 4  # float32
SHORT_CALLS_S = 0.25  # short calls are repeated to fill about this many seconds ...
MAX_REPEATS = 200  # ... up to this many times


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or cpu
    ram_gb = float("nan")
    try:
        ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        pass
    return dict(
        nproc=os.cpu_count(),
        cpu=cpu,
        ram_gib=round(ram_gb, 1),
        jax=jax.__version__,
        backend=jax.default_backend(),
        devices=[f"{d} ({d.device_kind})" for d in jax.devices()],
        python=platform.python_version(),
        load_average=os.getloadavg(),
    )


def machine_line(info: dict | None = None) -> str:
    """One line naming the machine (printed at the top of every benchmark)."""
    info = info or machine()
    return (
        f"# machine: nproc {info['nproc']}, {info['cpu']}, {info['ram_gib']} GiB RAM, "
        f"JAX {info['jax']} ({info['backend']}: {', '.join(info['devices'])}), "
        f"Python {info['python']}, "
        f"load average {info['load_average'][0]:.2f} (shared machine)"
    )


def device_memory_gb(default: float) -> float:
    """90% of the first device's memory limit as JAX reports it (accelerators), else
    ``default`` (the CPU backend reports none)."""
    try:
        limit = (jax.devices()[0].memory_stats() or {}).get("bytes_limit")
    except Exception:  # noqa: BLE001 - not every backend reports it
        limit = None
    return 0.9 * limit / 2**30 if limit else default


def dynamax_or_reason():
    """``(module, None)`` when dynamax imports, else ``(None, reason)``."""
    try:
        from dynamax.hidden_markov_model import inference as dynamax_hmm
    except Exception as err:  # noqa: BLE001 - any import failure means "not comparable here"
        return None, f"dynamax not importable ({type(err).__name__}: {err})"
    return dynamax_hmm, None


def problem(num_sequences: int, num_bins: int, num_states: int, seed: int = 0):
    """Normalized random potentials: ``[B, K]``, ``[B, K, K]`` and ``[B, T, K]`` float32."""
    rng = np.random.default_rng(seed)

    def log_normalized(x):
        return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))

    log_init = log_normalized(rng.normal(size=(num_sequences, num_states)))
    log_trans = log_normalized(rng.normal(size=(num_sequences, num_states, num_states)))
    log_lik = rng.normal(size=(num_sequences, num_bins, num_states)).astype(np.float32) - 2.0
    return tuple(jnp.asarray(x, jnp.float32) for x in (log_init, log_trans, log_lik))


def batched(task: str, method: str, dynamax_hmm=None):
    """The jitted, vmapped function to time, and a function mapping the log potentials to its
    arguments. Every variant returns ``(log p(y) [B], p(s_t | y) [B, T, K] or None)``."""
    if method == "dynamax":
        if task == "value":

            def one(init, trans, log_lik):
                return dynamax_hmm.hmm_filter(init, trans, log_lik).marginal_loglik, None

        else:
            # ``hmm_smoother`` is jitted with ``compute_trans_probs`` traced; call the function
            # under the jit so that the flag stays a Python bool (no pairwise marginals: the
            # neurodyn side differentiates w.r.t. the log likelihoods only).
            smoother = getattr(dynamax_hmm.hmm_smoother, "__wrapped__", dynamax_hmm.hmm_smoother)

            def one(init, trans, log_lik):
                post = smoother(init, trans, log_lik, compute_trans_probs=False)
                return post.marginal_loglik, post.smoothed_probs

        def prepare(log_init, log_trans, log_lik):
            return jnp.exp(log_init), jnp.exp(log_trans), log_lik

        return jax.jit(jax.vmap(one)), prepare

    log_z = functools.partial(
        hmm.log_marginal, method="sequential" if method == "seq" else "parallel"
    )
    if task == "value+grad":
        log_z = jax.value_and_grad(log_z, argnums=2)
    else:
        log_z = (lambda f: lambda *a: (f(*a), None))(log_z)
    return jax.jit(jax.vmap(log_z)), lambda *a: a


def lower_bound_bytes(method: str, task: str, B: int, T: int, K: int) -> int:
    """A lower bound of the memory one call needs (used to skip a cell before compiling).

    ``seq`` keeps ``[T, K]`` messages (and a few ``[T, K]`` residuals for the gradient).
    ``par`` holds ``[T, K, K]`` transfer matrices and the same again for the scan's output (and
    residuals for the gradient).
    ``dynamax`` keeps ``[T, K]`` filtered and predicted probabilities (and the backward pass's).
    """
    if method == "par":
        per_bin = K * K * (4 if task == "value+grad" else 2)
    elif method == "dynamax":
        per_bin = K * (5 if task == "value+grad" else 2)
    else:
        per_bin = K * (4 if task == "value+grad" else 1)
    return B * T * (per_bin + K) * BYTES


def compiled_bytes(compiled) -> int | None:
    """Arguments + outputs + temporaries of a compiled program, or None if not reported."""
    try:
        m = compiled.memory_analysis()
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None


def time_one(fn, args, repeats: int, budget_bytes: float, max_call_s: float) -> dict:
    """Compile, check the memory, then time ``repeats`` calls after a warm-up call."""
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - start
    need = compiled_bytes(compiled)
    if need is not None and need > budget_bytes:
        return dict(
            skipped=f"compiled program needs {need / 2**30:.1f} GiB > budget "
            f"{budget_bytes / 2**30:.1f} GiB",
            compile_s=compile_s,
            memory_gib=need / 2**30,
        )
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))  # warm-up
    first_s = time.perf_counter() - start
    runs = []
    # Long calls: fewer repeats, so that the whole suite stays within its time budget. Short
    # ones (T = 100 takes 0.03-1 ms): enough repeats to fill about 0.25 s, since the median
    # of five sub-millisecond calls moves by tens of percent between runs.
    count = repeats if first_s < 0.2 * max_call_s else min(repeats, 2)
    count = max(count, min(MAX_REPEATS, int(SHORT_CALLS_S / max(first_s, 1e-6))))
    for _ in range(count):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - start)
    return dict(
        compile_s=compile_s,
        run_s=statistics.median(runs),
        runs_s=runs,
        memory_gib=None if need is None else need / 2**30,
        out=out,
    )


def agreement(results: dict) -> dict:
    """Differences of each method's outputs from ``seq``'s (same inputs): max relative
    difference of the log marginals, max abs difference of the smoothed marginals."""
    ref = results.get("seq", {}).get("out")
    diffs = {}
    if ref is None:
        return diffs
    for method, res in results.items():
        out = res.get("out")
        if method == "seq" or out is None:
            continue
        rel = jnp.abs(out[0] - ref[0]) / jnp.maximum(1.0, jnp.abs(ref[0]))
        d = dict(value=float(jnp.max(rel)))
        if ref[1] is not None and out[1] is not None:
            d["marginals"] = float(jnp.max(jnp.abs(out[1] - ref[1])))
        diffs[method] = d
    return diffs


def run(
    lengths,
    state_counts,
    num_sequences: int = 64,
    repeats: int = 5,
    methods=METHODS,
    budget_gb: float = 6.0,
    max_call_s: float = 60.0,
    verbose: bool = True,
    tasks=TASKS,
    deadline: float | None = None,
) -> list[dict]:
    """Time every (T, K, task) cell; returns one row per cell (see :func:`format_row`).

    ``deadline``: a ``time.perf_counter()`` value after which no further method is started
    (its cells are skipped with that reason); the first cell always runs."""
    dynamax_hmm, reason = (None, None)
    if "dynamax" in methods:
        dynamax_hmm, reason = dynamax_or_reason()
        if reason and verbose:
            print(f"# dynamax column skipped: {reason}", flush=True)
    budget = budget_gb * 2**30
    last_time = {}  # (method, task, K) -> (T, run_s): to predict the next T's time
    results = []
    for num_bins in lengths:
        for num_states in state_counts:
            args = problem(num_sequences, num_bins, num_states)
            for task in tasks:
                row = dict(T=num_bins, K=num_states, B=num_sequences, task=task)
                timed = {}
                for method in methods:
                    if method == "dynamax" and dynamax_hmm is None:
                        row[method] = dict(skipped=reason)
                        continue
                    need = lower_bound_bytes(method, task, num_sequences, num_bins, num_states)
                    prev = last_time.get((method, task, num_states))
                    predicted = None
                    if prev is not None and prev[1] is not None:
                        predicted = prev[1] * num_bins / prev[0]
                    if deadline is not None and results and time.perf_counter() > deadline:
                        row[method] = dict(skipped="the run's time budget was spent")
                    elif need > budget:
                        row[method] = dict(
                            skipped=f"needs >= {need / 2**30:.1f} GiB > budget {budget_gb:.1f} GiB"
                        )
                    elif predicted is not None and predicted > max_call_s:
                        row[method] = dict(
                            skipped=f"predicted {predicted:.0f} s per call > {max_call_s:.0f} s"
                        )
                    elif prev is not None and prev[1] is None:
                        row[method] = dict(skipped="skipped at a smaller T")
                    else:
                        fn, prepare = batched(task, method, dynamax_hmm)
                        try:
                            row[method] = time_one(fn, prepare(*args), repeats, budget, max_call_s)
                        except Exception as err:  # noqa: BLE001 - report, never crash the suite
                            row[method] = dict(skipped=f"failed: {type(err).__name__}: {err}"[:200])
                    if "run_s" in row[method]:
                        timed[method] = row[method]
                        last_time[(method, task, num_states)] = (num_bins, row[method]["run_s"])
                    else:
                        last_time[(method, task, num_states)] = (num_bins, None)
                row["agreement"] = agreement(timed)
                for res in timed.values():
                    res.pop("out", None)
                seq = row["seq"].get("run_s") if "seq" in row else None
                for method in ("par", "dynamax"):
                    other = row.get(method, {}).get("run_s")
                    row[f"{method}/seq"] = other / seq if other and seq else None
                results.append(row)
                if verbose:
                    print(format_row(row), flush=True)
                    for method, reason_ in skipped(row):
                        print(f"#   T={num_bins} K={num_states} {task} {method}: {reason_}")
    return results


def skipped(row: dict):
    """(method, reason) of each skipped method of a row."""
    return [(m, row[m]["skipped"]) for m in METHODS if m in row and "skipped" in row[m]]


HEADER = (
    "|      T |  K | task       | seq compile (s) | seq run (ms) | par compile (s) | par run (ms) "
    "| dynamax compile (s) | dynamax run (ms) | par / seq | seq / dynamax | max diff |\n"
    "|-------:|---:|:-----------|----------------:|-------------:|----------------:|-------------:"
    "|--------------------:|-----------------:|----------:|--------------:|---------:|"
)


def _cell(res: dict | None, key: str, scale: float, width: int) -> str:
    if res is None or key not in res:
        return f"{'skip':>{width}s}" if res is not None and "skipped" in res else " " * width
    return f"{scale * res[key]:{width}.2f}"


def format_row(row: dict) -> str:
    """One Markdown table row."""
    seq, par, dyn = (row.get(m) for m in METHODS)
    par_ratio = f"{row['par/seq']:9.2f}" if row.get("par/seq") else f"{'-':>9s}"
    dyn_seq = row.get("dynamax/seq")
    dyn_ratio = f"{1 / dyn_seq:13.2f}" if dyn_seq else f"{'-':>13s}"
    diffs = [v for d in row.get("agreement", {}).values() for v in d.values()]
    diff = f"{max(diffs):8.1e}" if diffs else f"{'-':>8s}"
    return (
        f"| {row['T']:6d} | {row['K']:2d} | {row['task']:<10s} "
        f"| {_cell(seq, 'compile_s', 1, 15)} | {_cell(seq, 'run_s', 1e3, 12)} "
        f"| {_cell(par, 'compile_s', 1, 15)} | {_cell(par, 'run_s', 1e3, 12)} "
        f"| {_cell(dyn, 'compile_s', 1, 19)} | {_cell(dyn, 'run_s', 1e3, 16)} "
        f"| {par_ratio} | {dyn_ratio} | {diff} |"
    )


def summary(results: list[dict]) -> dict:
    """Goal figures: seq / dynamax (CPU goal: <= 1) and par / seq over the timed cells."""
    seq_dyn = [1 / r["dynamax/seq"] for r in results if r.get("dynamax/seq")]
    par_seq = [r["par/seq"] for r in results if r.get("par/seq")]
    out = {}
    if seq_dyn:
        out["seq/dynamax"] = dict(
            median=statistics.median(seq_dyn), max=max(seq_dyn), min=min(seq_dyn), n=len(seq_dyn)
        )
        for task in TASKS:
            ratios = [
                1 / r["dynamax/seq"] for r in results if r.get("dynamax/seq") and r["task"] == task
            ]
            if ratios:
                out[f"seq/dynamax {task}"] = dict(
                    median=statistics.median(ratios),
                    max=max(ratios),
                    min=min(ratios),
                    n=len(ratios),
                    at_most_1=sum(x <= 1.0 for x in ratios),
                )
    if par_seq:
        out["par/seq"] = dict(
            median=statistics.median(par_seq), max=max(par_seq), min=min(par_seq), n=len(par_seq)
        )
    diffs = [v for r in results for d in r.get("agreement", {}).values() for v in d.values()]
    out["max_abs_diff"] = max(diffs) if diffs else None
    return out


def main(argv=None):
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="T in {100, 1000}, K in {2, 8}")
    parser.add_argument(
        "--device",
        action="store_true",
        help="accelerator preset: T in {100, 1000, 10000, 100000}, K = 8, 3 repeats, calls "
        "predicted over 15 s skipped, memory budget 90%% of the device's (with --quick: T = 16, "
        "K = 2, 4 sequences, for a check on CPU)",
    )
    parser.add_argument("--out", help="write the results as JSON to this path")
    parser.add_argument("--batch", type=int, help="sequences per call (vmap; default 64)")
    parser.add_argument("--repeats", type=int, help="timed runs after warm-up (default 5)")
    parser.add_argument("--lengths", type=int, nargs="+", help="override T")
    parser.add_argument("--states", type=int, nargs="+", help="override K")
    parser.add_argument(
        "--memory-budget-gb", type=float, help="skip cells needing more memory (default 6)"
    )
    parser.add_argument(
        "--max-call-s", type=float, help="skip cells predicted to run longer (default 30)"
    )
    parser.add_argument(
        "--budget-s", type=float, help="start no cell after this many seconds (default: none)"
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    if args.device:
        lengths, states = ((16,), (2,)) if args.quick else ((100, 1000, 10000, 100000), (8,))
        batch, repeats, max_call_s = (4, 1, 15.0) if args.quick else (64, 3, 15.0)
        budget_gb = device_memory_gb(6.0)
    else:
        lengths = (100, 1000) if args.quick else (100, 1000, 10000, 100000)
        states = (2, 8) if args.quick else (2, 8, 32)
        batch, repeats, max_call_s, budget_gb = 64, 5, 30.0, 6.0
    lengths, states = args.lengths or lengths, args.states or states
    args.batch, args.repeats = args.batch or batch, args.repeats or repeats
    args.max_call_s = args.max_call_s or max_call_s
    args.memory_budget_gb = args.memory_budget_gb or budget_gb
    info = machine()
    print(machine_line(info), flush=True)
    print(
        f"# B = {args.batch} sequences, median of {args.repeats} runs (2 for calls > "
        f"{0.2 * args.max_call_s:.0f} s; up to {MAX_REPEATS} for calls filling "
        f"{SHORT_CALLS_S} s), memory budget {args.memory_budget_gb} GiB",
        flush=True,
    )
    print(HEADER, flush=True)
    results = run(
        lengths,
        states,
        args.batch,
        args.repeats,
        budget_gb=args.memory_budget_gb,
        max_call_s=args.max_call_s,
        deadline=None if args.budget_s is None else start + args.budget_s,
    )
    s = summary(results)
    if "seq/dynamax" in s:
        d = s["seq/dynamax"]
        print(
            f"# seq / dynamax over {d['n']} cells: median {d['median']:.2f}, "
            f"min {d['min']:.2f}, max {d['max']:.2f} (goal on CPU: <= 1)"
        )
        for task in TASKS:
            if t := s.get(f"seq/dynamax {task}"):
                print(
                    f"#   {task}: median {t['median']:.2f}, min {t['min']:.2f}, "
                    f"max {t['max']:.2f}, {t['at_most_1']} of {t['n']} cells <= 1"
                )
    if "par/seq" in s:
        d = s["par/seq"]
        print(f"# par / seq over {d['n']} cells: median {d['median']:.2f}, max {d['max']:.2f}")
    print(
        "# max difference from seq (relative for log p(y), absolute for p(s_t | y)): "
        f"{s['max_abs_diff']}"
    )
    if args.out:
        with open(args.out, "w") as f:
            info["load_average_after"] = os.getloadavg()
            json.dump(
                dict(
                    machine=info,
                    preset="device" if args.device else ("quick" if args.quick else "full"),
                    batch=args.batch,
                    memory_budget_gb=args.memory_budget_gb,
                    results=results,
                    summary=s,
                    seconds=time.perf_counter() - start,
                ),
                f,
                indent=2,
            )
    return results


if __name__ == "__main__":
    main()
