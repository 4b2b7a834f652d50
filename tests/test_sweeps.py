"""Sweep helpers: one run per setting, all scored on the same held-out trials and ranked."""

import json

import jax
import numpy as np
import pytest

from neurodyn.api.sweeps import SUMMARY_COLUMNS, sweep_meta, sweep_states
from neurodyn.data import split_trials
from neurodyn.data.simulators.families import simulate_limit_cycles
from neurodyn.data.simulators.switching import simulate_nascar
from neurodyn.families import meta, switching
from neurodyn.inference import runs

TABLE_COLUMNS = ("rank", "elpd", "se", "elpd_diff", "dse", "weight", "khat_max")


def check_table(result, names):
    table = result.table
    assert set(table.index) == set(names) and len(table) == len(names)
    for column in (*TABLE_COLUMNS, "khat_share_above_0.7"):
        assert column in table.columns
    # Ranked: rank 0..n-1 down the rows, elpd not increasing, differences to the first row.
    assert list(table["rank"]) == list(range(len(names)))
    assert np.all(np.diff(table["elpd"].to_numpy()) <= 0)
    np.testing.assert_allclose(table["elpd_diff"], table["elpd"] - table["elpd"].iloc[0])
    assert np.isclose(table["weight"].sum(), 1.0) and (table["weight"] >= 0).all()
    assert (table["se"] > 0).all() and np.isfinite(table["elpd"]).all()
    for name, run in result.runs.items():
        # The table's elpd, SE and k are those of the run's per-trial estimates.
        elpd_i = np.asarray(run.elpd.elpd_i)
        assert np.isclose(table.loc[name, "elpd"], elpd_i.sum())
        assert np.isclose(table.loc[name, "se"], np.sqrt(elpd_i.size * elpd_i.var()))
        k = np.asarray(run.elpd.pareto_k)
        assert np.isclose(table.loc[name, "khat_max"], np.nanmax(k))
        assert np.isclose(table.loc[name, "khat_share_above_0.7"], np.mean(k > 0.7))
    assert list(result.summary.index) == list(names)  # sweep order, not rank order
    assert set(SUMMARY_COLUMNS) <= set(result.summary.columns)
    assert result.best() == table.index[0] and result.within_one_se_of_best(result.best())


def test_sweep_states_fits_scores_and_ranks(tmp_path):
    session = simulate_nascar(seed=0, num_trials=6, num_timesteps=16, num_neurons=4)
    train, test = split_trials(session, 3)
    options = dict(latent_dim=2, steps=4, encoder_hidden=4)
    result = sweep_states(
        "rslds", [train], [test], states=(2, 3), options=options, num_samples=30,
        out_dir=tmp_path,
    )  # fmt: skip
    check_table(result, ["K=2", "K=3"])
    assert list(result.summary["states"]) == [2, 3]
    assert [r.config["spec"]["num_states"] for r in result.runs.values()] == [2, 3]
    for run in result.runs.values():
        assert run.elpd.n_data_points == test.num_trials
    # Run folders readable as runs; the table saved beside them.
    folder = result.runs["K=3"].folder
    assert folder == tmp_path / "K3"
    config = runs.read_config(folder)
    loaded = runs.load_params(folder / runs.PARAMS, switching.param_template(config))
    fitted = jax.tree_util.tree_leaves(result.runs["K=3"].params)
    for a, b in zip(jax.tree_util.tree_leaves(loaded), fitted, strict=True):
        np.testing.assert_array_equal(a, b)
    saved = json.loads((folder / runs.METRICS).read_text())
    assert np.isclose(saved["heldout"]["elpd"], result.table.loc["K=3", "elpd"])
    assert set(json.loads((tmp_path / "compare.json").read_text())) == {"K=2", "K=3"}


def test_sweep_ranked_by_smc_keeps_the_importance_diagnostics():
    session = simulate_nascar(seed=0, num_trials=6, num_timesteps=16, num_neurons=4)
    train, test = split_trials(session, 3)
    options = dict(latent_dim=2, steps=4, encoder_hidden=4)
    result = sweep_states(
        "slds", [train], [test], states=(1, 2), options=options, num_samples=30,
        estimator="smc", num_particles=32,
    )  # fmt: skip
    for run in result.runs.values():
        elpd_i = np.asarray(run.elpd.elpd_i)
        # the table ranks SMC estimates; the importance-sampling k stays in the run's scores
        assert np.isclose(run.heldout["heldout_loglik_per_bin_smc"] * 3 * 16, elpd_i.sum())
        assert np.isnan(np.asarray(run.elpd.pareto_k)).all()
        assert len(run.heldout["psis_khat_per_trial"]) == test.num_trials
        assert 0 < run.heldout["smc_min_ess_fraction"] <= 1
    # no k for SMC estimates: no k columns rather than NaN ones or "0% above 0.7"
    assert "khat_max" not in result.table and "khat_share_above_0.7" not in result.table
    assert np.isfinite(result.table["elpd"]).all()
    with pytest.raises(ValueError, match="unknown estimator"):
        sweep_states("slds", [train], [test], states=(1, 2), options=options, estimator="x")


def test_sweep_meta_grid_over_rank_and_embedding_dim():
    recordings = simulate_limit_cycles(seed=0, num_recordings=2, num_trials=6, num_timesteps=10)
    halves = [split_trials(s, 3) for s in recordings]
    train, test = [h[0] for h in halves], [h[1] for h in halves]
    result = sweep_meta(
        "meta-dssm", train, test, ranks=(1, 2), embedding_dims=(1,),
        options=dict(hidden=8, steps=4, batch_size=3), num_samples=30,
    )  # fmt: skip
    names = ["rank=1,d_e=1", "rank=2,d_e=1"]
    check_table(result, names)
    assert list(result.summary["rank"]) == [1, 2]
    assert list(result.summary["embedding_dim"]) == [1, 1]
    for run in result.runs.values():
        assert run.elpd.n_data_points == 2 * 3  # (recordings, trials) of the test sessions
        assert run.config["family"] == "meta"
    assert meta.spec_of(result.runs["rank=2,d_e=1"].config).rank == 2


def test_sweeps_refuse_the_other_family_and_a_single_setting():
    session = simulate_nascar(seed=0, num_trials=2, num_timesteps=8, num_neurons=3)
    with pytest.raises(ValueError, match="switching"):
        sweep_states("meta-dssm", [session], [session])
    with pytest.raises(ValueError, match="meta"):
        sweep_meta("rslds", [session], [session])
    with pytest.raises(ValueError, match="two settings"):
        sweep_states("rslds", [session], [session], states=(3,))


@pytest.mark.slow
def test_model_selection_case_study_quick(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "case_studies" / "model_selection.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path), "--quick"], check=True)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["floors"]) == {
        "nascar_K4_best_or_within_one_se",
        "nascar_rslds_beats_slds",
        "lorenz_srnn_beats_slds",
    }
    assert all(isinstance(v, bool) for v in metrics["floors"].values())
    assert set(metrics["nascar"]["rslds_sweep"]) == {"K=2", "K=3", "K=4"}
    for comparison in (metrics["nascar"]["rslds_vs_slds"], metrics["lorenz"]["srnn_vs_slds"]):
        assert {"elpd_diff", "dse", "difference_exceeds_se", "khat", "met"} <= set(comparison)
        assert comparison["difference_exceeds_se"] == (
            abs(comparison["elpd_diff"]) > comparison["dse"]
        )
    for name in ("elpd_vs_K.png", "pareto_k.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert metrics["wall_seconds"] > 0
