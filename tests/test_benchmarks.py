"""Keep the benchmark scripts from rotting: run their cheap paths in-process at tiny sizes."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    """The benchmark modules, imported from ``benchmarks/`` (not a package)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_hmm
        import bench_meta
        import bench_switching
        import run

        yield dict(hmm=bench_hmm, meta=bench_meta, switching=bench_switching, run=run)
    finally:
        sys.path.remove(str(BENCHMARKS))


def _finite_positive(x):
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_hmm_benchmark_rows(bench):
    """Tiny sizes: every cell is timed, the methods agree, ratios are positive and finite, and
    a cell over the memory budget is skipped with a reason instead of run."""
    hmm = bench["hmm"]
    rows = hmm.run(
        (8, 16),
        (2,),
        num_sequences=3,
        repeats=1,
        methods=("seq", "par"),
        verbose=False,
        tasks=("value+grad",),
    )
    assert [(r["T"], r["task"]) for r in rows] == [(8, "value+grad"), (16, "value+grad")]
    for row in rows:
        assert _finite_positive(row["seq"]["run_s"]) and _finite_positive(row["par"]["run_s"])
        assert _finite_positive(row["par/seq"])
        assert row["agreement"]["par"]["value"] < 1e-5
        assert row["agreement"]["par"]["marginals"] < 1e-5
        assert hmm.format_row(row).count("|") == hmm.HEADER.splitlines()[0].count("|")
    skipped = hmm.run(
        (16,), (2,), num_sequences=3, repeats=1, methods=("seq",), budget_gb=1e-9, verbose=False
    )
    assert len(skipped) == 2
    assert all("budget" in r["seq"]["skipped"] for r in skipped)


def test_handwritten_hmm_loss_matches_numpyro(bench):
    """The hand-written ELBO the overhead benchmark times equals the NumPyro program's."""
    import jax
    import optax
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.optim import optax_to_numpyro

    sw = bench["switching"]
    config, spec, model_fn, guide_fn, batch = sw.switching_setup("hmm", warm=False)
    n = batch["y"].shape[0]
    svi = SVI(model_fn, guide_fn, optax_to_numpyro(optax.adam(1e-3)), Trace_ELBO())
    params = svi.get_params(svi.init(jax.random.PRNGKey(0), batch, num_trials=n))
    loss, hw_params = sw.handwritten_switching(spec, model_fn, batch, params, config["guide"])
    key = jax.random.PRNGKey(1)
    elbo = jax.jit(lambda p: Trace_ELBO().loss(key, p, model_fn, guide_fn, batch, num_trials=n))
    expected, got = float(elbo(params)), float(jax.jit(loss)(hw_params, key))
    assert abs(got - expected) < 1e-5 * abs(expected)


def test_goal_summary(bench):
    """The summary of goals reads the benchmarks' JSON results and decides each goal."""
    results = {
        "bench_hmm": {
            "summary": {
                "seq/dynamax": dict(median=2.0, min=0.5, max=3.0, n=4),
                "par/seq": dict(median=10.0, min=5.0, max=20.0, n=4),
            }
        },
        "bench_switching": [dict(model="srnn", ratio=1.1), dict(model="hmm", ratio=1.4)],
        "bench_meta": {
            "rows": [dict(M=5, step_s=0.01), dict(M=500, step_s=1.0)],
            "scaling": bench["meta"].scaling([dict(M=5, step_s=0.01), dict(M=500, step_s=1.0)]),
        },
        "bench_memory": [
            dict(case="baseline", T=10, K=8, B=64, peak_gb=0.5),
            dict(case="srnn step", T=10, K=8, B=64, peak_gb=1.5),
            dict(case="hmm core (parallel)", T=10, K=8, B=64, peak_gb=4.5),
        ],
    }
    verdicts = {g: v for g, _, v in bench["run"].goals(results)}
    assert verdicts["core: sequential no slower than dynamax (CPU)"] == "partly met"
    assert verdicts["SVI step overhead vs hand-written JAX <= 1.3x"] == "not met"
    assert verdicts["meta-dssm step time linear or better in M"] == "met"
    assert verdicts["peak memory T=10, K=8, 64 trials < 4 GB"] == "met"
