"""The command line end to end on a tiny simulated problem: fit, evaluate, report, compare."""

import json

import numpy as np
import pytest
import xarray as xr

from neurodyn.cli import main


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow")
    assert (
        main(
            [
                "simulate",
                "lorenz",
                "--out",
                str(root / "train.npz"),
                "--test-out",
                str(root / "test.npz"),
                "--trials",
                "8",
                "--timesteps",
                "30",
                "--neurons",
                "4",
                "--test-trials",
                "3",
            ]
        )
        == 0
    )
    for model in ("srnn", "hmm"):
        assert (
            main(
                [
                    "fit",
                    model,
                    str(root / "train.npz"),
                    "--out",
                    str(root / model),
                    "--steps",
                    "30",
                    "--quiet",
                ]
            )
            == 0
        )
    return root


def test_run_folder_contract(flow):
    run = flow / "srnn"
    for name in ("config.json", "params.npz", "loss.csv", "metrics.json", "posterior.nc"):
        assert (run / name).exists(), name
    rows = (run / "loss.csv").read_text().splitlines()
    assert rows[0] == "step,loss,seconds" and len(rows) == 31
    tree = xr.open_datatree(run / "posterior.nc")
    assert tree["log_likelihood"]["y"].dims == ("chain", "draw", "trial")
    assert json.loads((run / "config.json").read_text())["model"] == "srnn"


def test_evaluate_writes_the_metrics(flow, capsys):
    out = flow / "m.json"
    assert (
        main(
            [
                "evaluate",
                str(flow / "srnn"),
                str(flow / "test.npz"),
                "--horizon",
                "2",
                "--json",
                str(out),
                "--samples",
                "32",
            ]
        )
        == 0
    )
    metrics = json.loads(out.read_text())
    for key in (
        "recon_r2",
        "forecast_r2",
        "state_accuracy",
        "state_balanced_error",
        "elbo_per_bin",
        "heldout_loglik_per_bin",
        "heldout_loglik_mcse",
        "smc_min_ess_fraction",
        "smc_ess_fraction_median_trial_min",
    ):
        assert key in metrics, key
    assert set(metrics["forecast_r2"]) == {"2"}
    # SMC by default where it applies, and the output says so; no Pareto k then
    assert metrics["heldout_estimator"] == "smc" and "psis_khat" not in metrics
    assert metrics["smc_proposal"] == "lookahead"
    assert np.isfinite(metrics["heldout_loglik_per_bin"]) and metrics["heldout_loglik_mcse"] >= 0
    assert 0 < metrics["smc_min_ess_fraction"] <= metrics["smc_ess_fraction_median_trial_min"]
    assert metrics["smc_particles"] == 256 and metrics["smc_replicates"] == 4


def test_evaluate_by_importance_sampling_and_exactly_for_hmm(flow, capsys):
    for run, estimator in (("srnn", "importance"), ("hmm", "exact")):
        out = flow / f"{run}_is.json"
        args = ["evaluate", str(flow / run), str(flow / "test.npz"), "--json", str(out)]
        assert main(args + ["--horizon", "2", "--estimator", "importance"]) == 0
        metrics = json.loads(out.read_text())
        assert metrics["heldout_estimator"] == estimator and "psis_khat" in metrics
        assert np.isfinite(metrics["heldout_loglik_mcse"])
        if estimator == "exact":
            assert metrics["heldout_loglik_mcse"] == 0


def test_report_and_compare(flow, capsys):
    assert (
        main(["report", str(flow / "srnn"), str(flow / "test.npz"), "--out", str(flow / "fig")])
        == 0
    )
    assert sorted(p.name for p in (flow / "fig").iterdir()) == [
        "elbo.png",
        "flow_fields.png",
        "khat.png",
        "ppc.png",
        "ppc_statistics.png",
        "reconstruction.png",
        "states.png",
    ]
    capsys.readouterr()
    assert (
        main(
            [
                "compare",
                str(flow / "srnn"),
                str(flow / "hmm"),
                "--data",
                str(flow / "test.npz"),
                "--samples",
                "32",
                "--json",
                str(flow / "c.json"),
            ]
        )
        == 0
    )
    table = json.loads((flow / "c.json").read_text())
    assert set(table) == {"srnn", "hmm"} and {"elpd", "se", "mcse"} <= set(table["srnn"])
    # each run by the estimator that applies: SMC for srnn, the exact value for hmm
    assert table["srnn"]["estimator"] == "smc" and table["hmm"]["estimator"] == "exact"
    assert table["hmm"]["mcse"] == 0 and table["srnn"]["mcse"] > 0
    assert "ess_fraction_min" in table["srnn"] and "khat_max" not in table["srnn"]
    assert "NaN" not in capsys.readouterr().out


def test_compare_by_smc(flow, capsys):
    import shutil

    twin = flow / "srnn_twin"
    if not twin.exists():
        shutil.copytree(flow / "srnn", twin)
    args = ["compare", str(flow / "srnn"), str(twin), "--data", str(flow / "test.npz")]
    out = flow / "smc.json"
    assert main(args + ["--estimator", "smc", "--particles", "64", "--json", str(out)]) == 0
    table = json.loads(out.read_text())
    # the same run twice, the same particles' seed: equal elpd, nothing between them
    assert table["srnn"]["elpd"] == pytest.approx(table["srnn_twin"]["elpd"])
    assert np.isfinite(table["srnn"]["elpd"]) and table["srnn"]["elpd_diff"] == 0
    capsys.readouterr()
    # compare and evaluate report the same numbers for the same run, data and seed
    assert main(args + ["--json", str(out)]) == 0
    table = json.loads(out.read_text())
    m_path = flow / "m_compare.json"  # evaluate with its defaults, as compare's
    evaluate = ["evaluate", str(flow / "srnn"), str(flow / "test.npz")]
    assert main(evaluate + ["--json", str(m_path)]) == 0
    m = json.loads(m_path.read_text())
    bins = 3 * 30
    assert table["srnn"]["elpd"] == pytest.approx(m["heldout_loglik_per_bin"] * bins, rel=1e-5)
    assert table["srnn"]["mcse"] == pytest.approx(m["heldout_loglik_mcse"] * bins, rel=1e-5)
    assert table["srnn"]["ess_fraction_min"] == pytest.approx(m["smc_min_ess_fraction"])
    capsys.readouterr()
    # hmm's likelihood is exact already: SMC is refused in one line
    bad = ["compare", str(flow / "srnn"), str(flow / "hmm"), "--data", str(flow / "test.npz")]
    assert main(bad + ["--estimator", "smc"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "hmm" in err and "smc" in err


def test_a_recording_with_other_neurons_is_refused(flow, capsys):
    assert (
        main(
            [
                "simulate",
                "lorenz",
                "--out",
                str(flow / "other.npz"),
                "--neurons",
                "6",
                "--trials",
                "2",
                "--timesteps",
                "30",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["evaluate", str(flow / "srnn"), str(flow / "other.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has 6 neurons" in err and "fitted to recordings of 4" in err


def test_resume_continues_a_fit(flow):
    run = flow / "resumed"
    args = ["fit", "lds", str(flow / "train.npz"), "--out", str(run), "--quiet"]
    assert main([*args, "--steps", "20"]) == 0
    assert main([*args, "--steps", "40", "--resume"]) == 0
    steps = [int(r.split(",")[0]) for r in (run / "loss.csv").read_text().splitlines()[1:]]
    assert steps == list(range(40))
