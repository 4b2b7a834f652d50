"""Step time of the meta-dynamical model against the number of recordings M.

One SVI step covers every recording (padded neurons, ``--batch`` trials drawn per recording),
so the time per step should grow at most linearly in M. Recordings are random data of the
default shapes (20-100 neurons, T bins); the timing excludes compilation.

    python benchmarks/bench_meta.py [--quick] [--sizes 5 20 100 500] [--steps 10]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import optax
from numpyro.infer import SVI, Trace_ELBO
from numpyro.optim import optax_to_numpyro

from neurodyn.data.session import make_session
from neurodyn.families import meta


def step_time(M, *, trials, T, batch, steps, model="meta-dssm"):
    rng = np.random.default_rng(M)
    sessions = [
        make_session(rng.normal(size=(trials, T, rng.integers(20, 101))), name=f"r{i:04d}")
        for i in range(M)
    ]
    config = meta.make_config(model, sessions, options=dict(batch_size=batch))
    model_fn, guide_fn, _, _ = meta.program(config)
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
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in range(steps):
        state, loss = update(state, jax.random.PRNGKey(2 + s))
    jax.block_until_ready(loss)
    return (time.perf_counter() - t0) / steps, compile_s


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", help="recordings M (default 5 20 100 500)")
    p.add_argument("--quick", action="store_true", help="M in 5 20 100 only")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--timesteps", type=int, default=100)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args(argv)
    args.sizes = args.sizes or ([5, 20, 100] if args.quick else [5, 20, 100, 500])
    print(f"meta-dssm, T={args.timesteps}, {args.batch} trials/recording/step, N in [20, 100]")
    print("| M | s / step | ms / step / recording | compile s |")
    print("|---|---|---|---|")
    for M in args.sizes:
        per_step, compile_s = step_time(
            M, trials=args.trials, T=args.timesteps, batch=args.batch, steps=args.steps
        )
        print(f"| {M} | {per_step:.3f} | {1e3 * per_step / M:.2f} | {compile_s:.1f} |", flush=True)


if __name__ == "__main__":
    main()
