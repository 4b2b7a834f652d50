"""Peak memory of one gradient step at T = 10000 bins, K = 8 states, 64 trials.

Each measurement runs in its own process, which reports its peak resident set size (``VmHWM``
in ``/proc/self/status``; ``ru_maxrss`` elsewhere) after compiling and running the step once.
A baseline process does everything but the step (imports, data, parameters), so the table also
shows what the step itself adds. Goal: fits in "a few GB", taken as < 4 GB peak.

* ``srnn step``: one SVI step (loss, gradient, Adam) of the NumPyro ``srnn`` program with the
  ``dkf`` guide on 64 trials x 10000 bins x 10 Gaussian neurons, K = 8, D = 3 (random data and
  modules, no warm start: the step is what is measured);
* ``srnn step, no checkpointing``: the same step with the package's checkpointing of long scans
  switched off (``neurodyn.inference.long_scan.REMAT_FROM`` raised past T, in this process
  only): the core's forward recursion, the encoder's GRUs and the DKF sampler then keep every
  step's intermediate values for the backward pass, as they do below 2048 bins;
* ``hmm core``: ``value_and_grad`` of the core's log marginal (w.r.t. the log likelihoods,
  i.e. forward-backward) on 64 sequences x 10000 bins, K = 8, ``sequential`` and ``parallel``.

    python benchmarks/bench_memory.py [--quick]      # --quick: T = 2000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
UNCHECKPOINTED = "srnn step, no checkpointing"
CASES = ("baseline", "srnn step", UNCHECKPOINTED, "hmm core (sequential)", "hmm core (parallel)")
GOAL_GB = 4.0


def peak_rss_gb() -> float:
    """Peak resident set size of this process, in GB (10^9 bytes)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def worker(case: str, T: int, K: int, B: int, N: int, D: int) -> dict:
    """Run one measurement in this process; returns its peak memory and timings."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    if case == UNCHECKPOINTED:
        from neurodyn.inference import long_scan

        long_scan.REMAT_FROM = T + 1  # this worker process only
    if case.startswith("hmm core"):
        from neurodyn.inference import hmm

        log_init = jnp.full((B, K), -np.log(K), jnp.float32)
        log_trans = jnp.asarray(np.log(np.full((B, K, K), 0.1 / K) + 0.9 * np.eye(K)), jnp.float32)
        log_lik = jnp.asarray(rng.normal(size=(B, T, K)) - 2.0, jnp.float32)
        method = "parallel" if "parallel" in case else "sequential"

        def f(a, b, c):
            return hmm.log_marginal(a, b, c, method=method)

        step = jax.jit(jax.vmap(jax.value_and_grad(f, argnums=2)))
        out = jax.block_until_ready(step(log_init, log_trans, log_lik))
        assert np.isfinite(np.asarray(out[0])).all()
    else:
        import optax
        from numpyro.infer import SVI, Trace_ELBO
        from numpyro.optim import optax_to_numpyro

        from neurodyn.data.session import make_session
        from neurodyn.families import switching as family

        y = rng.normal(size=(B, T, N)).astype(np.float32)
        session = make_session(y, name="memory")
        config = family.make_config(
            "srnn", [session], options=dict(states=K, latent_dim=D, likelihood="gaussian")
        )
        model, guide, _, _ = family.build(config)
        batch = family.batch_of(session)
        svi = SVI(model, guide, optax_to_numpyro(optax.adam(1e-3)), Trace_ELBO())
        state = svi.init(jax.random.PRNGKey(0), batch, num_trials=B)
        if case != "baseline":
            update = jax.jit(lambda state: svi.update(state, batch, num_trials=B))
            state, loss = update(state)
            assert np.isfinite(float(loss))
    return dict(
        case=case, T=T, K=K, B=B, peak_gb=peak_rss_gb(), seconds=time.perf_counter() - start
    )


def measure(case: str, T: int, K: int = 8, B: int = 64, N: int = 10, D: int = 3) -> dict:
    """Run :func:`worker` for ``case`` in a fresh process and return its report."""
    cmd = [sys.executable, __file__, "--worker", case, "--T", str(T), "--K", str(K)]
    cmd += ["--B", str(B), "--N", str(N), "--D", str(D)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
    if proc.returncode:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        return dict(case=case, T=T, K=K, B=B, error=tail[0][:300])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(T: int, K: int = 8, B: int = 64, cases=CASES, verbose=True) -> list[dict]:
    """Measure every case; returns one row per case."""
    rows = []
    if verbose:
        print(HEADER, flush=True)
    for case in cases:
        row = measure(case, T, K, B)
        rows.append(row)
        if verbose:
            print(format_row(row), flush=True)
    return rows


HEADER = (
    "| measurement | T | K | trials | peak RSS (GB) | wall (s) | < 4 GB |\n"
    "|:--|--:|--:|--:|--:|--:|:--|"
)


def format_row(row: dict) -> str:
    """One Markdown row."""
    if "error" in row:
        head = f"| {row['case']} | {row['T']} | {row['K']} | {row['B']}"
        return f"{head} | failed: {row['error']} | | no |"
    ok = "yes" if row["peak_gb"] < GOAL_GB else "no"
    return (
        f"| {row['case']} | {row['T']} | {row['K']} | {row['B']} | {row['peak_gb']:.2f} "
        f"| {row['seconds']:.1f} | {ok if row['case'] != 'baseline' else '-'} |"
    )


def main(argv=None):
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T = 2000 instead of 10000")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--T", type=int, default=None)
    parser.add_argument("--K", type=int, default=8)
    parser.add_argument("--B", type=int, default=64)
    parser.add_argument("--N", type=int, default=10)
    parser.add_argument("--D", type=int, default=3)
    parser.add_argument("--out", help="write the results as JSON to this path")
    args = parser.parse_args(argv)
    T = args.T or (2000 if args.quick else 10000)
    if args.worker:
        print(json.dumps(worker(args.worker, T, args.K, args.B, args.N, args.D)))
        return None
    from bench_hmm import machine_line

    print(machine_line(), flush=True)
    print(f"# peak RSS per process (VmHWM), one step compiled and run; pid {os.getpid()}")
    rows = run(T, args.K, args.B)
    worst = max((r for r in rows if "peak_gb" in r), key=lambda r: r["peak_gb"], default=None)
    if worst:
        print(f"# largest peak {worst['peak_gb']:.2f} GB ({worst['case']}); goal < {GOAL_GB} GB")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
