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


def test_goal_on_accelerator(bench):
    """On an accelerator the parallel-core goal is decided at the largest T timed per task."""
    rows = [
        {"T": 100, "K": 8, "task": "value", "par/seq": 2.0},
        {"T": 100000, "K": 8, "task": "value", "par/seq": 0.5},
        {"T": 100000, "K": 8, "task": "value+grad", "par/seq": None},
        {"T": 10000, "K": 8, "task": "value+grad", "par/seq": 0.8},
    ]
    hmm = {"machine": {"backend": "gpu"}, "results": rows, "summary": {"par/seq": {}}}
    goal = "core: parallel faster on GPU for long T"
    found = {g: (m, v) for g, m, v in bench["run"].goals({"bench_hmm": hmm})}
    measured, verdict = found[goal]
    assert verdict == "met"
    assert "value 0.50 (T = 100000" in measured and "value+grad 0.80 (T = 10000" in measured
    rows[1]["par/seq"] = 1.5
    found = {g: (m, v) for g, m, v in bench["run"].goals({"bench_hmm": hmm})}
    assert found[goal][1] == "not met"


def test_core_method_swaps_the_core_in_the_model(bench):
    """``core_method`` puts the parallel core into the switching model's forward pass while a
    function is traced, and restores the default after."""
    import jax
    import jax.numpy as jnp

    from neurodyn.families.switching import pull
    from neurodyn.inference import hmm

    original = hmm.log_marginal
    args = (jnp.log(jnp.full(2, 0.5)), jnp.log(jnp.full((2, 2), 0.5)), jnp.zeros((20, 2)))
    jaxprs = {}
    for method in ("sequential", "parallel"):
        with bench["switching"].core_method(method):
            # A new function each time: make_jaxpr caches traces by function.
            fresh = lambda *a: pull.pulled_log_marginal(*a)  # noqa: E731
            jaxprs[method] = str(jax.make_jaxpr(fresh)(*args))
    assert hmm.log_marginal is original
    # The sequential core is a scan with a custom JVP; the parallel one an associative scan.
    assert "_sequential_log_z" in jaxprs["sequential"] and "scan[" in jaxprs["sequential"]
    assert "_sequential_log_z" not in jaxprs["parallel"] and "scan[" not in jaxprs["parallel"]


BLOCKED = ("arviz", "arviz_stats", "arviz_base", "arviz_plots", "h5netcdf", "dynamax")


def test_device_preset_quick(tmp_path):
    """``gpu.sh --quick`` (``run.py --device --quick``) runs on CPU without arviz, h5netcdf or
    dynamax (as on the GPU machine), prints its tables and writes every expected cell."""
    import json
    import os
    import subprocess

    # Hide the packages the GPU machine lacks from every process of the run.
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        f"BLOCKED = {BLOCKED!r}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError(f'hidden for this test: {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    root = BENCHMARKS.parent
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{tmp_path}", PYTHON=sys.executable)
    out = tmp_path / "results" / "gpu.json"
    proc = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu.sh"), "--quick", "--out", str(out)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    assert "| part | size | seq (ms) | par (ms) | par / seq | compile seq / par (s) |" in text
    for cell in (
        "| core value | T=16, K=2, B=4 |",
        "| core value+grad | T=16, K=2, B=4 |",
        "| srnn SVI step (K=2, D=3) | 2 trials x 50 bins |",
        "| M = 2 | 4 x 20, 2 |",
    ):
        assert cell in text, cell
    assert "dynamax not importable" in text
    assert "# devices: " in text and "JAX " in text and "s in all" in text

    result = json.loads(out.read_text())
    assert result["preset"] == "device-quick" and result["seconds"] > 0
    assert result["machine"]["devices"] and result["machine"]["jax"]
    assert {name: part["exit"] for name, part in result["parts"].items()} == dict(
        hmm=0, switching=0, meta=0
    )
    cells = result["bench_hmm"]["results"]
    assert [(c["T"], c["K"], c["task"]) for c in cells] == [
        (16, 2, "value"),
        (16, 2, "value+grad"),
    ]
    for cell in cells:
        assert _finite_positive(cell["seq"]["run_s"]) and _finite_positive(cell["par"]["run_s"])
        assert _finite_positive(cell["par/seq"]) and "not importable" in cell["dynamax"]["skipped"]
    (row,) = result["bench_switching"]["rows"]
    assert (row["model"], row["trials"], row["T"], row["K"], row["D"]) == ("srnn", 2, 50, 2, 3)
    assert _finite_positive(row["seq"]["step_s"]) and _finite_positive(row["par"]["step_s"])
    assert _finite_positive(row["par/seq"]) and row["loss_rel_diff"] < 1e-4
    (meta,) = result["bench_meta"]["rows"]
    assert meta["M"] == 2 and _finite_positive(meta["step_s"])
    assert [g["goal"] for g in result["goals"]] == [
        "core: no slower than dynamax (CPU)",
        "core: parallel faster on GPU for long T",
    ]
